import Foundation
import LockstepCore
import LockstepGate
import LockstepHTTP
import Logging
import RunStore
import LockstepConfig
import ServiceLifecycle
import Synchronization

/// The gate as a long-lived service: a poll loop that reconciles every `poll_interval`, and
/// an apply worker for runs the API approved. It never stops on a fault it meets (remote
/// down, terraform failing, bad repository content): it logs it, says so in `STATUS=` and
/// `/readyz`, and tries again on the next poll.
///
/// Graceful shutdown (SIGTERM/SIGINT through the ServiceGroup):
/// * new work is refused at once (API decisions answer `shutting_down`, no new poll starts,
///   queued apply requests are dropped; their runs stay `approved` for the next start);
/// * an apply that is running is let finish, with its verify: killing terraform half-way
///   through an apply is the one thing that can leave infrastructure in an unknown state;
/// * a pass that is only planning is cancelled: the runner stops terraform's process
///   group and the gate puts each stopped run back to `queued` (`plan_cancelled`, audited),
///   so the next start plans it again; only a kill -9 leaves one in `planning`, for
///   ``Gate/recover()`` to re-queue.
public final class DaemonService: Service, Sendable {
    let gate: Gate
    let store: any RunStore
    let pollInterval: Duration
    let status: DaemonStatus
    let logger: Logger
    private let applyRequests: AsyncStream<Work>
    private let applyContinuation: AsyncStream<Work>.Continuation

    /// What the worker does for a run, one at a time: both run commands for minutes, so
    /// neither runs inside the API request that caused it.
    enum Work: Sendable {
        /// Apply an approved run.
        case apply(RunID)
        /// Verify a run an operator resolved as applied.
        case verify(RunID)
    }
    /// The run the apply worker is applying, if any.
    private let applyingNow = Mutex<RunID?>(nil)
    /// The problems the last pass reported: each is logged when it appears and when it is
    /// gone, not on every poll (a rejected tag or a broken layout would otherwise write the
    /// same warning every few seconds for as long as it stays).
    private let reportedProblems = Mutex<Set<String>>([])
    /// What the last pass left for the next one to compare (``Gate/poll(after:decided:)``):
    /// a poll that finds nothing changed skips the pass.
    private let quietPass = Mutex<QuietPass?>(nil)
    /// The audit head last written to the log (docs/CONTRACT.md §5: a witness outside the store).
    private let publishedHead = Mutex<AuditHash?>(nil)
    /// The open-run counts the status line was last built from. A skipped pass changed no
    /// run, so it reuses them instead of reading every open run again.
    private let openRunCounts = Mutex<OpenRunCounts?>(nil)

    /// Whether a pass did work since idle memory was last released, and when that was: it is
    /// released on a skipped poll once work was done, at most every ``memoryReleaseInterval``
    /// (``ResidentMemory``). A release held back by the interval happens on a later skipped poll.
    private let quietSince = Mutex<(workSinceRelease: Bool, released: ContinuousClock.Instant?)>((false, nil))
    static let memoryReleaseInterval: Duration = .seconds(15)

    struct OpenRunCounts: Sendable, Equatable {
        var interrupted = 0
        var awaiting = 0
        var applying = 0
    }

    public init(gate: Gate, store: any RunStore, pollInterval: Duration, status: DaemonStatus, logger: Logger) {
        self.trigger = PassTrigger()
        self.gate = gate
        self.store = store
        self.pollInterval = pollInterval
        self.status = status
        self.logger = logger
        (applyRequests, applyContinuation) = AsyncStream.makeStream(of: Work.self, bufferingPolicy: .bufferingNewest(256))
    }

    /// Whether the daemon is stopping (then it takes no new work).
    public var isDraining: Bool { status.isDraining }

    /// Asks for a pass now instead of at the next poll (an accepted webhook delivery). Never
    /// blocks; requests are coalesced (``PassTrigger``).
    public func requestPass() { trigger.request() }

    /// Coalesces pass requests between passes.
    let trigger: PassTrigger

    /// Queues an apply trigger for an approved run. False when the daemon is stopping.
    @discardableResult
    public func requestApply(_ id: RunID) -> Bool {
        request(.apply(id))
    }

    /// Queues the verify of a run resolved as applied. False when the daemon is stopping (the
    /// next start verifies it: a run left `verifying` is verified by recovery).
    @discardableResult
    public func requestVerify(_ id: RunID) -> Bool {
        request(.verify(id))
    }

    private func request(_ work: Work) -> Bool {
        guard !status.isDraining else { return false }
        if case .enqueued = applyContinuation.yield(work) { return true }
        return false
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.applyWorker() }
                group.addTask { await self.pollLoop() }
                group.addTask { await self.backgroundLoop() }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.beginDrain()
        }
        logger.info("daemon stopped")
    }

    private func beginDrain() {
        guard status.beginDrain() else { return }
        applyContinuation.finish()
        logger.notice("stopping: new work is refused; a running apply is let finish")
        status.stopping("stopping: refusing new work, letting a running apply finish")
    }

    // MARK: Apply worker

    private func applyWorker() async {
        for await work in applyRequests {
            let id: RunID
            switch work {
            case .apply(let run), .verify(let run): id = run
            }
            applyingNow.withLock { $0 = id }
            do {
                switch work {
                case .apply:
                    let outcome = try await gate.apply(run: id)
                    logger.info("apply trigger", metadata: ["run.id": "\(id)", "outcome": "\(outcome)"])
                case .verify:
                    if let state = try await gate.verifyResolved(run: id) {
                        logger.info("verify after resolve", metadata: ["run.id": "\(id)", "run.state": "\(state)"])
                    }
                }
            } catch {
                logger.error("apply worker failed", metadata: ["run.id": "\(id)", "error": "\(readable(error))"])
            }
            applyingNow.withLock { $0 = nil }
            await refreshStatus(problem: nil)
        }
    }

    // MARK: Poll loop

    /// Polls every `poll_interval` while passes succeed; after a failed pass the wait grows
    /// (``Backoff``, up to ``maximumFailureWait``) so a remote that stays down costs a few
    /// log lines a minute, not a busy loop. It ends on a drain *and* on cancellation: the
    /// ServiceGroup cancels every service when one of them fails, and a loop that only
    /// watched for the drain would then spin forever with every sleep cut short, keep the
    /// group from ending and so leave SIGTERM unanswered.
    private func pollLoop() async {
        var backoff = Backoff(initial: pollInterval, maximum: max(pollInterval, Self.maximumFailureWait))
        while !stopping {
            let succeeded = await passUnlessDraining()
            if stopping { break }
            let wait: Duration
            if succeeded {
                backoff.succeeded()
                wait = pollInterval
            } else {
                wait = backoff.failed()
                logger.debug("next pass after a failure", metadata: ["retry.in_ms": "\(wait.components.seconds * 1_000 + wait.components.attoseconds / 1_000_000_000_000_000)",
                                                                      "retry.failures": "\(backoff.failures)"])
            }
            // Ends early on a webhook's request, and on a drain (the wait is cancelled when
            // graceful shutdown begins). A failing remote is not retried faster for a webhook.
            if succeeded {
                _ = try? await cancelWhenGracefulShutdown { await self.trigger.wait(upTo: wait) }
            } else {
                _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            }
        }
    }

    // MARK: Background checks

    /// How often the background loop looks for work: a new branch tip to validate, a target
    /// whose drift check is due (each environment's `drift.interval` says how often).
    static let backgroundLookInterval: Duration = .seconds(15)

    /// While the agent validates its branch (`validate_branch`) or some environment it serves has
    /// `drift:`: validates each new tip of the protected branch, then runs the drift checks that
    /// are due. Apart from the poll loop, so a validation or a drift plan never delays a pass. A
    /// stop cancels what runs (neither changes anything).
    private func backgroundLoop() async {
        let drift = gate.agent.environments.values.contains { $0.serves && $0.driftInterval != nil }
        guard drift || gate.agent.validateBranch else { return }
        while !stopping {
            do {
                let validated = try await cancelWhenGracefulShutdown { await self.gate.validateBranchIfNew() }
                let checks = drift ? try await cancelWhenGracefulShutdown { try await self.gate.driftPass() } : []
                if validated != nil || !checks.isEmpty { await refreshStatus(problem: nil) }
            } catch {
                if stopping { break }
                logger.warning("background checks failed", metadata: ["error": "\(readable(error))"])
            }
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.backgroundLookInterval) }
        }
    }

    /// A drain began (graceful shutdown reached this service) or the task was cancelled.
    private var stopping: Bool {
        status.isDraining || Task.isShuttingDownGracefully || Task.isCancelled
    }

    /// The longest wait between passes while they keep failing.
    static let maximumFailureWait: Duration = .seconds(30)

    /// Runs one pass; true when it succeeded. When a drain starts during it, the pass is
    /// cancelled unless an apply runs in it (then it is let finish). Not
    /// `cancelWhenGracefulShutdown`: that cancels at once, and a running apply must not be cut off.
    private func passUnlessDraining() async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await self.pass() }
            // Returns when graceful shutdown begins (or throws when the pass ended first and cancelled it).
            group.addTask { try? await gracefulShutdown(); return nil }
            while let result = await group.next() {
                if let succeeded = result { group.cancelAll(); return succeeded }
                if Task.isCancelled { group.cancelAll(); continue }
                if await applyRunningInPass() {
                    logger.notice("waiting for the running apply to finish before stopping")
                } else {
                    group.cancelAll()
                }
            }
            return false
        }
    }

    /// Whether a run other than the apply worker's is applying or verifying now.
    private func applyRunningInPass() async -> Bool {
        let worker = applyingNow.withLock { $0 }
        let running = (try? await store.runSummaries(target: nil, states: [.applying, .verifying])) ?? []
        return running.contains { $0.id != worker }
    }

    /// Logs the store's audit head when it changed since the last one logged: under systemd the
    /// journal keeps it, so `lockstep audit verify --expect-head` has a witness the store's
    /// own user cannot rewrite. Read after every pass, whether it ran or was skipped.
    private func publishAuditHead() async {
        guard let head = try? await store.auditHead() else { return }
        let changed = publishedHead.withLock { last in
            defer { last = head }
            return last != head
        }
        guard changed, head != AuditHash.genesis else { return }
        logger.notice("audit head", metadata: ["audit.head": "\(head.hex)"])
    }

    @discardableResult
    private func pass() async -> Bool {
        let ran = await reconcileOnce()
        await publishAuditHead()
        return ran
    }

    private func reconcileOnce() async -> Bool {
        let clock = ContinuousClock()
        let started = clock.now
        var visited = 0
        defer {
            let elapsed = clock.now - started
            logger.debug("pass ended", metadata: [
                "pass.duration_ms": "\(elapsed.components.seconds * 1_000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
                "pass.targets.visited": "\(visited)"])
        }
        // Every request made before this point is answered by this pass's fetch.
        trigger.passStarting()
        do {
            // Ready once the fetch is done and the tags are decided; plans go on afterwards.
            let memo = quietPass.withLock { $0 }
            let poll: PollResult
            do {
                poll = try await gate.poll(after: memo) { [self] decided in
                    // Only the first pass has readiness to give; later passes report once, below.
                    guard !status.isReadyForTraffic else { return }
                    status.fetchSucceeded()
                    await refreshStatus(problem: decided.problems.first)
                    status.firstPassDone()
                }
            } catch {
                quietPass.withLock { $0 = nil }
                throw error
            }
            quietPass.withLock { $0 = poll.quiet }
            releaseMemoryIfQuiet(skipped: poll.skipped)
            let report = poll.report
            visited = report.targetsVisited.count
            logChanges(in: report.problems)
            if !report.runsAdvanced.isEmpty || !report.runsCreated.isEmpty {
                logger.info("reconcile pass", metadata: ["runs.created": "\(report.runsCreated.count)",
                                                         "runs.advanced": "\(report.runsAdvanced.count)",
                                                         "tags.created": "\(report.tagsCreated.count)"])
            }
            status.fetchSucceeded()
            await refreshStatus(problem: report.problems.first, runsUnchanged: poll.skipped)
            status.firstPassDone()
            return true
        } catch is CancellationError {
            return false
        } catch let error as GateError where error.code == .repository {
            status.fetchFailed(error.description)
            logger.error("delivery repository unreachable", metadata: ["error": "\(error.description)"])
            await refreshStatus(problem: error.description)
        } catch {
            if Task.isCancelled { return false }
            logger.error("reconcile pass failed", metadata: ["error": "\(readable(error))"])
            await refreshStatus(problem: "reconcile failed: \(readable(error))")
        }
        status.firstPassDone()
        return false
    }

    /// Releases idle memory on a skipped poll after passes that did work (held back until the
    /// interval since the last release has passed: a poll skipped just after a release waits for
    /// a later one, where it used to wait for the next burst of work).
    private func releaseMemoryIfQuiet(skipped: Bool) {
        let now = ContinuousClock.now
        let due = quietSince.withLock { state -> Bool in
            guard skipped else {
                state.workSinceRelease = true
                return false
            }
            guard state.workSinceRelease else { return false }
            if let released = state.released, now - released < Self.memoryReleaseInterval { return false }
            state.released = now
            state.workSinceRelease = false
            return true
        }
        guard due else { return }
        let advised = ResidentMemory.release()
        logger.debug("idle memory released", metadata: ["memory.advised_bytes": "\(advised ?? 0)"])
    }

    /// Logs the problems that are new since the last pass, and says which are gone.
    private func logChanges(in problems: [String]) {
        let now = Set(problems)
        let (appeared, cleared) = reportedProblems.withLock { last in
            defer { last = now }
            return (problems.filter { !last.contains($0) }, last.subtracting(now).sorted())
        }
        for problem in appeared { logger.warning("reconcile problem", metadata: ["problem": "\(problem)"]) }
        for problem in cleared { logger.info("reconcile problem gone", metadata: ["problem": "\(problem)"]) }
    }

    /// One status line: what needs a human first, then what the daemon waits for.
    /// - Parameter runsUnchanged: the caller knows no run changed since the last refresh (a
    ///   skipped pass): the counts of that refresh are used again.
    private func refreshStatus(problem: String?, runsUnchanged: Bool = false) async {
        var counts = runsUnchanged ? openRunCounts.withLock { $0 } : nil
        if counts == nil {
            let open = (try? await store.runSummaries(target: nil, states: [.interrupted, .awaitingApproval, .applying,
                                                                         .verifying])) ?? []
            let fresh = OpenRunCounts(interrupted: open.filter { $0.state == .interrupted }.count,
                                      awaiting: open.filter { $0.state == .awaitingApproval }.count,
                                      applying: open.filter { $0.state == .applying || $0.state == .verifying }.count)
            openRunCounts.withLock { $0 = fresh }
            counts = fresh
        }
        let (interrupted, awaiting, applying) = (counts?.interrupted ?? 0, counts?.awaiting ?? 0, counts?.applying ?? 0)
        var parts: [String] = []
        if interrupted > 0 { parts.append("ATTENTION: \(interrupted) interrupted run(s) need `lockstep resolve`") }
        if let fetch = status.fetchProblem { parts.append("remote unreachable: \(fetch)") }
        let layout = await gate.branchLayoutProblem
        if let layout { parts.append("LAYOUT NOT USED: \(layout)") }
        if status.fetchProblem == nil, let problem, problem != layout { parts.append("problem: \(problem)") }
        if applying > 0 { parts.append("applying \(applying)") }
        parts.append("\(awaiting) awaiting approval")
        parts.append("polling every \(pollInterval.components.seconds)s")
        status.setStatus(parts.joined(separator: "; "))
    }
}

/// An error as a log line or status says it: its own description when it has one, never a
/// dump of its fields (which reads as noise and may carry values nobody meant to log).
func readable(_ error: any Error) -> String {
    switch error {
    case let error as GateError: error.description
    case let error as StoreError: error.description
    case let error as DaemonError: error.description
    case is CancellationError: "cancelled"
    default: "an unexpected \(type(of: error))"
    }
}

/// What the daemon is doing, for `/readyz`, `STATUS=` and the drain. Synchronous (a
/// mutex, not an actor) because the graceful-shutdown handler cannot await.
public final class DaemonStatus: Sendable {
    struct State {
        var line = "starting"
        var listening = false
        var firstPass = false
        var readySent = false
        var draining = false
        var fetchProblem: String?
    }

    private let state = Mutex(State())
    private let notifier: SystemdNotifier
    private let logger: Logger

    public init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    public var isDraining: Bool { state.withLock { $0.draining } }
    /// Whether the first pass has decided its tags (readiness no longer waits for anything).
    var isReadyForTraffic: Bool { state.withLock { $0.firstPass } }
    var fetchProblem: String? { state.withLock { $0.fetchProblem } }

    /// `/readyz`: ready once listening and the first pass is done, while the remote answers
    /// and the daemon is not stopping.
    public func readiness() -> APIReadiness {
        state.withLock { s in
            APIReadiness(ready: s.listening && s.firstPass && !s.draining && s.fetchProblem == nil, status: s.line)
        }
    }

    func setStatus(_ line: String) {
        let changed = state.withLock { s in
            defer { s.line = line }
            return s.line != line
        }
        if changed { notify { try notifier.status(line) } }
        sendReadyIfDue()
    }

    public func listening() {
        state.withLock { $0.listening = true }
        sendReadyIfDue()
    }

    func firstPassDone() {
        state.withLock { $0.firstPass = true }
        sendReadyIfDue()
    }

    func fetchSucceeded() { state.withLock { $0.fetchProblem = nil } }
    func fetchFailed(_ description: String) { state.withLock { $0.fetchProblem = description } }

    /// `READY=1` once: the store is open (before the group started), the API listens and the
    /// first fetch was attempted (its outcome is in `STATUS=` and `/readyz`).
    private func sendReadyIfDue() {
        let line: String? = state.withLock { s in
            guard s.listening, s.firstPass, !s.readySent, !s.draining else { return nil }
            s.readySent = true
            return s.line
        }
        if let line { notify { try notifier.ready(status: line) } }
    }

    /// Returns true the first time: the caller starts the drain. Code that must wait for the
    /// drain awaits service-lifecycle's `gracefulShutdown()`; this flag is for synchronous
    /// readers (the API's request handlers, `/readyz`).
    func beginDrain() -> Bool {
        state.withLock { s in
            guard !s.draining else { return false }
            s.draining = true
            return true
        }
    }

    func stopping(_ line: String) {
        state.withLock { $0.line = line }
        notify { try notifier.stopping(status: line) }
    }

    private func notify(_ send: () throws -> Bool) {
        do {
            _ = try send()
        } catch {
            logger.warning("systemd notification failed", metadata: ["error": "\(error)"])
        }
    }
}
