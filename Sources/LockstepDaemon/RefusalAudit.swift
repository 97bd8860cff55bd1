import Foundation
import LockstepCore
import LockstepHTTP
import Logging
import RunStore
import ServiceLifecycle

/// Writes refused API requests to the audit log, aggregated (see ``RefusalLedger``): the
/// first refusal of each kind from each address in a window at once, the rest as one
/// summary row per kind and address when the window ends (or when the daemon stops), with
/// the count and a few samples. A flood of bad tokens therefore adds a bounded number of
/// rows per window, yet every refusal is still counted where an auditor looks.
final class RefusalAudit: Service, Sendable {
    let ledger: RefusalLedger
    let limiter: FailedAuthenticationLimiter
    let store: SQLiteRunStore
    let logger: Logger

    init(policy: RefusalPolicy, store: SQLiteRunStore, logger: Logger) {
        self.ledger = RefusalLedger(policy: policy)
        self.limiter = FailedAuthenticationLimiter(policy: policy)
        self.store = store
        self.logger = logger
    }

    /// The API's `onRefusal`: counts every refusal, writes a row only for the first of its kind.
    func record(_ refusal: APIAccessRefusal) async {
        guard ledger.record(refusal) == .auditNow else { return }
        var payload = ["event": "api_access", "status": "\(refusal.status)", "code": refusal.code.rawValue,
                       "method": refusal.method, "path": refusal.path, "source": RefusalLedger.source(of: refusal),
                       "note": "further refusals of this kind from this source in the next \(ledger.policy.window.components.seconds) s are counted in one summary entry"]
        if let failure = refusal.authenticationFailure { payload["auth_failure"] = failure.rawValue }
        if let identity = refusal.identity { payload["identity"] = identity.rawValue }
        await write(payload, actor: refusal.identity?.rawValue ?? "anonymous")
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.flush(closing: false)
                do {
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    break
                }
            }
        }
        // Stopping: what was counted in the open window is written now, not lost.
        await flush(closing: true)
    }

    private func flush(closing: Bool) async {
        let summaries = ledger.takeSummaries(closing: closing)
        guard !summaries.isEmpty else { return }
        let total = summaries.reduce(0) { $0 + $1.count }
        let throttled = summaries.reduce(0) { $0 + $1.throttled }
        logger.warning("refused API requests, aggregated in the audit log",
                       metadata: ["refusals.count": "\(total)", "refusals.throttled": "\(throttled)",
                                  "refusals.sources": "\(Set(summaries.map(\.key.source)).count)",
                                  "refusals.total_since_start": "\(ledger.totals.refusals)"])
        for summary in summaries {
            await write(summary.payload, actor: summary.key.identity?.rawValue ?? "anonymous")
        }
    }

    private func write(_ payload: [String: String], actor: String) async {
        do {
            try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: payload, at: Date(), actor: actor)
        } catch {
            logger.error("could not audit a refused request", metadata: ["error": "\(error)"])
        }
    }
}
