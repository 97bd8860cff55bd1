import Foundation
import ForgeMock
import LockstepConfig
import LockstepCore
@testable import LockstepOutbox
import Logging
import NameLiterals
import RunStore
import Testing

/// What each forge receives as a run moves: one comment per run, edited in place, and one
/// commit status per target, in the forge's own words (docs/ARCHITECTURE.md, "The outbox").
@Suite("Outbox to the forge: the exact comment and status sequences on GitHub, GitLab and Gitea")
struct ForgeSequenceTests {
    /// The comment's headline after each event that writes it, in order.
    static let commentStates = [
        "Plan ready: awaiting approval (0 of 2)", "Plan ready: awaiting approval (1 of 2)",
        "Plan ready: awaiting approval (2 of 2)", "Approved: waiting to apply", "Applying", "Applied: verifying",
        "Applied and verified",
    ]

    @Test("planned → approved by whom → applied → verified: one comment written once and edited six times, statuses in the forge's words",
          arguments: ForgeMock.Forge.allCases, OutboxWorld.StoreKind.allCases)
    func wholeRun(_ forge: ForgeMock.Forge, _ kind: OutboxWorld.StoreKind) async throws {
        let world = try await OutboxWorld(forge: forge, store: kind)
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        // The plan is up before anyone approves: the comment reviewers act on.
        let first = try #require(world.mock.comments.first)
        #expect(first.pull == 12)
        #expect(first.body.hasPrefix(RunReport.marker(try RunID("r1"))))
        #expect(first.body.contains("lockstep approve r1 --digest \(OutboxWorld.digest)"))
        #expect(first.body.contains("| 1 | 0 | 0 | 1 | 0 |"), "the counts table")
        #expect(first.body.contains("**Destroyed: 1**") && first.body.contains("null_resource.old"))
        #expect(first.body.contains("2 more approvals needed (2 in all) from: alice, bob"))
        #expect(first.body.contains("https://lockstep.example.com/ui/runs/r1"))
        #expect(first.body.contains("Plan digest `\(OutboxWorld.digest)`"))

        try await world.approveAndVerify()
        try await world.delivered()

        let comments = world.mock.comments
        #expect(comments.count == 1, "one comment per run, never one per event")
        let history = try #require(comments.first).history
        #expect(history.count == Self.commentStates.count)
        for (body, state) in zip(history, Self.commentStates) {
            #expect(body.contains("**") && body.contains(state), "expected \(state) in \(body.prefix(300))")
        }
        #expect(history[1].contains("Approved by: alice") && history[2].contains("Approved by: alice, bob"))
        #expect(history.last?.contains("Approved by: alice, bob") == true)
        #expect(!history.contains { $0.contains("RAW-PLAN-RENDERING") || $0.contains("raw_plan_json") },
                "the plan's body is never posted")

        let requests = world.mock.requests.filter { $0.path.contains("comments") || $0.path.contains("notes") }
        let writes = requests.filter { $0.method != "GET" }
        #expect(writes.filter { $0.method == "POST" }.count == 1)
        #expect(writes.filter { $0.method == (forge == .gitlab ? "PUT" : "PATCH") }.count == 6)
        #expect(writes.allSatisfy { $0.status < 300 })

        let statuses = world.mock.statuses
        let context = "lockstep/network/prod"
        #expect(statuses.allSatisfy { $0.commit == OutboxWorld.commit && $0.context == context })
        #expect(statuses.allSatisfy { $0.targetURL == "https://lockstep.example.com/ui/runs/r1" })
        switch forge {
        case .github, .gitea:
            #expect(statuses.map(\.state) == Array(repeating: "pending", count: 7) + ["success"])
            #expect(statuses.map(\.description) == [
                "Planning", "Plan +1 ~0 ±0 -1: 0 of 2 approvals", "Plan +1 ~0 ±0 -1: 1 of 2 approvals",
                "Plan +1 ~0 ±0 -1: 2 of 2 approvals", "Approved; waiting to apply", "Applying", "Applied; verifying",
                "Applied and verified",
            ])
        case .gitlab:
            // GitLab refuses a status equal to the one it has; the sink takes that as done.
            #expect(statuses.map(\.state) == ["pending", "running", "success"])
            #expect(statuses.map(\.description) == ["Planning", "Applying", "Applied and verified"])
        }
        // Every call carried the forge's own authentication (the mock answers 401 otherwise).
        #expect(world.mock.requests.allSatisfy { $0.status != 401 })
    }

    @Test("a failed run says failed with its reason, as a failure status", arguments: ForgeMock.Forge.allCases)
    func failedRun(_ forge: ForgeMock.Forge) async throws {
        let world = try await OutboxWorld(forge: forge)
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.approve("r1", "alice", completing: false)
        try await world.approve("r1", "bob", completing: true)
        try await world.move("r1", .approved, .applying, .preconditionsHeld)
        try await world.move("r1", .applying, .failed, .applyFailed, detail: "Error: creating bucket: AccessDenied\n```\n# not a heading")
        try await world.delivered()

        let comment = try #require(world.mock.comments.first)
        #expect(world.mock.comments.count == 1)
        #expect(comment.body.contains("❌ Failed") && comment.body.contains("Reason: `apply_failed`"))
        // The detail is quoted in a fence no line of it can close.
        #expect(comment.body.contains("````\nError: creating bucket: AccessDenied\n```\n# not a heading\n````"))
        let last = try #require(world.mock.statuses.last)
        #expect(last.state == (forge == .gitlab ? "failed" : "failure"))
        #expect(last.description == "Failed: apply_failed")
    }

    @Test("no pull request for the commit: statuses only, no comment, and the sink goes on")
    func noPullRequest() async throws {
        let world = try await OutboxWorld(forge: .github, pull: false)
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.approveAndVerify()
        try await world.delivered()
        #expect(world.mock.comments.isEmpty)
        #expect(world.mock.statuses.last?.state == "success")
        // The lookup was made once and its answer kept.
        #expect(world.mock.requests.filter { $0.path.hasSuffix("/pulls") }.count == 1)
    }

    @Test("a daemon that posted the comment but died before keeping its id edits that comment, never writes a second")
    func lostCommentID() async throws {
        let world = try await OutboxWorld(forge: .github)
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        await world.stopWorker()
        // What a kill -9 between the POST and the store write leaves: the pull known, no comment id.
        let sink = try #require(world.sinks.first).name
        try await world.store.recordForgeThread(ForgeThread(pull: "12", comment: nil), sink: sink, runID: try RunID("r1"), at: Date())

        try await world.approve("r1", "alice", completing: false)
        world.startWorker()
        try await world.delivered()
        #expect(world.mock.comments.count == 1)
        #expect(world.mock.comments.first?.history.count == 2)
        #expect(world.mock.comments.first?.body.contains("Approved by: alice") == true)
        let kept = try await world.store.forgeThread(sink: sink, runID: try RunID("r1"))
        #expect(kept?.comment == world.mock.comments.first.map { String($0.id) })
    }

    @Test("a sink seen for the first time starts with the next event: configuring a forge does not replay the store's history")
    func newSinkSkipsHistory() async throws {
        let world = try await OutboxWorld(forge: .github)
        defer { Task { await world.close() } }
        try await world.awaitingRun("old")
        let worker = OutboxWorker(store: world.store, sinks: [RenamedSink(inner: try #require(world.sinks.first))],
                                  logger: { var l = Logger(label: "outbox-tests"); l.logLevel = .critical; return l }())
        let task = Task { await worker.run() }
        defer { task.cancel() }
        try await eventually("the new sink has a position") {
            try await world.store.outboxPosition(of: "renamed") != nil
        }
        #expect(try await world.store.outboxPosition(of: "renamed") == world.store.outboxLastEventID())
        try await world.move("old", .awaitingApproval, .rejected, .rejected)
        try await eventually("the rejection reached the forge") { world.mock.statuses.count == 1 }
        #expect(world.mock.statuses.map(\.description) == ["Rejected"])
    }
}

/// A sink under a name no store has seen.
struct RenamedSink: OutboxSink {
    let inner: any OutboxSink
    var name: String { "renamed" }
    func deliver(_ event: OutboxEvent) async throws(SendFailure) -> Bool { try await inner.deliver(event) }
}
