import Foundation
import ForgeMock
import LockstepConfig
import LockstepCore
@testable import LockstepOutbox
import Logging
import NameLiterals
import RunStore
import Synchronization
import Testing

/// One outbox under test: a real store (SQLite file or in memory), the local forge, an agent
/// config naming it, and the worker delivering to it.
final class OutboxWorld: Sendable {
    enum StoreKind: String, CaseIterable, Sendable { case sqlite, memory }

    static let commit = String(repeating: "c", count: 40)
    static let digest = String(repeating: "d", count: 64)
    /// A plan credential's value: it must never reach the forge or a notification.
    static let canary = "canary-7Qx!pl4nS3cret"

    let path: String
    let mock: ForgeMock
    let store: any RunStore
    let agent: AgentConfig
    let http = OutboundHTTP(timeout: .seconds(10))
    let sinks: [any OutboxSink]
    private let worker = Mutex<Task<Void, Never>?>(nil)

    /// - Parameters:
    ///   - forge: the forge the agent posts to (nil: none).
    ///   - notifications: `environments.prod.notifications` entries, as YAML flow mappings;
    ///     `URL` is replaced by the mock's `/notify/ops` address.
    ///   - pull: whether the forge knows a pull request for the run's commit.
    init(forge: ForgeMock.Forge?, notifications: [String] = [], pull: Bool = true, store kind: StoreKind = .sqlite,
         name: String = #function) async throws {
        path = NSTemporaryDirectory() + "lockstep-outbox-tests/\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mock = ForgeMock(token: "forge-token-\(UUID().uuidString)")
        self.mock = mock
        try await mock.start()
        if pull { mock.addPull(12, mergeCommit: Self.commit) }
        try Data(mock.token.utf8).write(to: URL(fileURLWithPath: path + "/forge-token"))
        try Data("TF_VAR_db_password=\(Self.canary)\n".utf8).write(to: URL(fileURLWithPath: path + "/plan.env"))
        try Data("AWS_SECRET_ACCESS_KEY=apply-only-secret-value\n".utf8).write(to: URL(fileURLWithPath: path + "/apply.env"))
        try Data("hmac-key-for-tests".utf8).write(to: URL(fileURLWithPath: path + "/hook-secret"))
        var yaml = """
            repository:
              url: https://git.example.com/infra/delivery.git
            mirror_dir: \(path)/mirror
            terraform:
              binary: /usr/bin/terraform
            store:
              sqlite: \(path)/store.sqlite
            public_url: https://lockstep.example.com/

            """
        if let forge {
            yaml += """
                forge:
                  kind: \(forge.rawValue)
                  api_url: \(mock.baseURL(forge))
                  repository: acme/delivery
                  token_file: forge-token

                """
        }
        yaml += """
            environments:
              dev:
                serves: true
                approvers: [alice]
              prod:
                serves: true
                approvers: [alice, bob]
                approvals: 2
                plan_credentials_file: plan.env
                apply_credentials_file: apply.env

            """
        if !notifications.isEmpty {
            yaml += "    notifications:\n" + notifications.map {
                "      - " + $0.replacingOccurrences(of: "URL", with: mock.notifyURL("ops")) + "\n"
            }.joined()
        }
        yaml += """
            identities:
              alice:
                token_sha256: \(String(repeating: "a", count: 64))
              bob:
                token_sha256: \(String(repeating: "b", count: 64))

            """
        agent = try AgentConfig.parse(yaml: yaml, file: "agent.yaml", baseDirectory: path)
        switch kind {
        case .sqlite: store = try SQLiteRunStore(path: path + "/store.sqlite")
        case .memory: store = InMemoryRunStore()
        }
        var logger = Logger(label: "outbox-tests")
        logger.logLevel = .critical
        var sinks: [any OutboxSink] = []
        if let forge = agent.forge {
            sinks.append(ForgeSink(settings: forge, token: mock.token, store: store, agent: agent, http: http, logger: logger))
        }
        for settings in agent.environments["prod"]?.notifications ?? [] {
            sinks.append(NotificationSink(environment: "prod", settings: settings, url: mock.notifyURL("ops"),
                                          secret: settings.secretFile.map { _ in Array("hmac-key-for-tests".utf8) },
                                          store: store, agent: agent, http: http))
        }
        self.sinks = sinks
        // Every sink starts at the first event (a new sink would otherwise skip the store's history).
        for sink in sinks { try await store.setOutboxPosition(of: sink.name, to: 0, at: Date()) }
    }

    /// Starts delivering (a new worker, as after a restart).
    func startWorker() {
        var logger = Logger(label: "outbox-tests")
        logger.logLevel = .critical
        let worker = OutboxWorker(store: store, sinks: sinks, logger: logger, firstBackoff: .milliseconds(100))
        let task = Task { await worker.run() }
        self.worker.withLock { $0 = task }
    }

    func stopWorker() async {
        let task = worker.withLock { task in defer { task = nil }; return task }
        task?.cancel()
        await task?.value
    }

    func close() async {
        await stopWorker()
        await http.shutdown()
        await mock.stop()
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Waits until every sink has delivered (or given up) every event in the store.
    func delivered(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await eventually("every sink reached the last event", timeout: .seconds(180), sourceLocation: sourceLocation) {
            let last = try await store.outboxLastEventID()
            for sink in sinks where try await store.outboxPosition(of: sink.name) != last { return false }
            return true
        }
    }

    // MARK: Runs

    static func target(_ environment: EnvironmentName = "prod") -> TargetID { TargetID(project: "network", environment: environment) }

    /// A plan that creates one resource and destroys `deleted` (and replaces `replaced`).
    static func plan(deleted: [String] = ["null_resource.old"], replaced: [String] = []) throws -> StoredPlan {
        var changes = [PlanModel.ResourceChange(address: "null_resource.new", managed: true, type: "null_resource", action: .create)]
        changes += deleted.map { .init(address: $0, managed: true, type: "null_resource", action: .delete) }
        changes += replaced.map { .init(address: $0, managed: true, type: "null_resource", action: .replace) }
        let model = PlanModel(formatVersion: "1.0", terraformVersion: "1.0.3", resourceChanges: changes, outputChanges: [])
        return StoredPlan(summaryJSON: String(decoding: try JSONEncoder().encode(model), as: UTF8.self),
                          rendering: "RAW-PLAN-RENDERING must never be posted", planJSON: #"{"raw_plan_json":"never posted"}"#)
    }

    /// Creates run `id` and plans it: it waits for approval.
    func awaitingRun(_ id: String = "r1", _ environment: EnvironmentName = "prod", plan: StoredPlan? = nil) async throws {
        let run = NewRun(id: try RunID(id), target: Self.target(environment), tagName: "\(environment.rawValue)/v1.4.0",
                         tagObject: try GitObjectID(String(repeating: "a", count: 40)), version: try SemanticVersion("1.4.0"),
                         commit: try GitObjectID(Self.commit), tree: try GitObjectID(String(repeating: "e", count: 40)),
                         taggerEmail: "carol@example.com", rollbackPin: nil, hasVerifyCommands: true)
        _ = try await store.createRun(run, at: Date(), actor: "lockstep")
        try await move(id, .queued, .planning, .planStarted)
        #expect(try await store.transition(try RunID(id), RunTransition(from: .planning, to: .checking, reason: TransitionReason(.planSucceeded)),
                                           update: RunUpdate(planDigest: try Digest(Self.digest), plan: try plan ?? Self.plan()),
                                           at: Date(), actor: "lockstep"))
        try await move(id, .checking, .awaitingApproval, .checksPassed)
    }

    func move(_ id: String, _ from: RunState, _ to: RunState, _ code: TransitionReason.Code, detail: String? = nil,
              sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let moved = try await store.transition(try RunID(id), RunTransition(from: from, to: to, reason: TransitionReason(code, detail: detail)),
                                               update: RunUpdate(), at: Date(), actor: "lockstep")
        #expect(moved, "run \(id) did not move \(from) → \(to)", sourceLocation: sourceLocation)
    }

    func approve(_ id: String, _ who: IdentityName, completing: Bool) async throws {
        let approval = Approval(runID: try RunID(id), identity: who, digest: try Digest(Self.digest), time: Date())
        let transition = completing ? RunTransition(from: .awaitingApproval, to: .approved, reason: TransitionReason(.approvalsSatisfied)) : nil
        #expect(try await store.recordApproval(approval, completing: transition, at: Date(), actor: who.rawValue))
    }

    /// Approves (two of two) and applies run `id` to `verified`.
    func approveAndVerify(_ id: String = "r1") async throws {
        try await approve(id, "alice", completing: false)
        try await approve(id, "bob", completing: true)
        try await move(id, .approved, .applying, .preconditionsHeld)
        try await move(id, .applying, .applied, .applySucceeded)
        try await move(id, .applied, .verifying, .verifyStarted)
        try await move(id, .verifying, .verified, .verifySucceeded)
    }
}

/// Polls `condition` every 20 ms until it holds, failing the test after `timeout`: a wait for
/// something to happen, never a sleep standing in for it.
func eventually(_ what: String, timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
                _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
    throw CancellationError()
}
