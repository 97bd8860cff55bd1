import Foundation
import ForgeMock
import LockstepConfig
import LockstepCore
@testable import LockstepOutbox
import NameLiterals
import RunStore
import TerraformRunner
import Testing

/// A forge that fails, limits, answers garbage or is handed a huge plan: delivery waits, tries
/// again, gives up what cannot succeed, never loses an event, and never posts more than the
/// forge takes or anything secret.
@Suite("Outbox faults: retries, rate limits, garbage, size caps and redaction")
struct ForgeFaultTests {
    @Test("a 502 is tried again: the same request succeeds next, and nothing is posted twice")
    func retryAfter502() async throws {
        let world = try await OutboxWorld(forge: .github)
        defer { Task { await world.close() } }
        world.mock.fail(next: [.status(502), .status(503)])
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        let requests = world.mock.requests
        #expect(requests.prefix(3).map(\.status) == [502, 503, 201])
        #expect(Set(requests.prefix(3).map(\.path)).count == 1 && requests.prefix(3).allSatisfy { $0.method == "POST" },
                "the failed status post is what is tried again")
        #expect(world.mock.comments.count == 1)
        #expect(world.mock.statuses.map(\.description) == ["Planning", "Plan +1 ~0 ±0 -1: 0 of 2 approvals"])
    }

    @Test("a 429 with Retry-After: 2 is tried again no sooner than two seconds later")
    func retryAfter429() async throws {
        let world = try await OutboxWorld(forge: .gitea)
        defer { Task { await world.close() } }
        world.mock.fail(next: [.rateLimited(retryAfterSeconds: 2)])
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        let requests = world.mock.requests
        let limited = try #require(requests.first)
        #expect(limited.status == 429)
        let next = try #require(requests.dropFirst().first)
        #expect(next.path == limited.path && next.status == 201)
        #expect(next.time.timeIntervalSince(limited.time) >= 2.0, "the wait the forge asked for is honoured")
        #expect(world.mock.comments.count == 1)
    }

    @Test("GitHub's spent quota (403, remaining 0, a reset time) waits for the reset and is not given up")
    func quotaReset() async throws {
        let world = try await OutboxWorld(forge: .github)
        defer { Task { await world.close() } }
        world.mock.fail(next: [.quotaUsed(resetInSeconds: 2)])
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        let requests = world.mock.requests
        #expect(requests.first?.status == 403)
        let next = try #require(requests.dropFirst().first)
        #expect(next.path == requests.first?.path && next.status == 201)
        // The reset is a whole epoch second: the wait is at least what was left of it.
        #expect(next.time.timeIntervalSince(requests[0].time) >= 1.0)
        #expect(world.mock.statuses.count == 2)
    }

    @Test("a pull request lookup answered with garbage is tried five times, then the event is given up")
    func garbageLookup() async throws {
        let world = try await OutboxWorld(forge: .gitlab)
        defer { Task { await world.close() } }
        // The `planning` status takes the first (a status's answer is not read); each try of the
        // `awaiting_approval` event then takes two: its status, and the lookup that cannot be read.
        world.mock.fail(next: Array(repeating: .garbage, count: 11))
        world.startWorker()
        try await world.awaitingRun()
        try await world.delivered()
        let lookup = { world.mock.requests.filter { $0.path.hasSuffix("/merge_requests") } }
        #expect(lookup().count == 5)
        #expect(world.mock.comments.isEmpty)
        try await world.approve("r1", "alice", completing: false)
        try await world.delivered()
        #expect(lookup().count == 6)
        #expect(world.mock.comments.count == 1, "the next event writes the comment")
    }

    @Test("a 5,000-resource plan gives a comment under GitHub's 65,536 characters that still names the count of every address")
    func hugePlan() async throws {
        let world = try await OutboxWorld(forge: .github)
        defer { Task { await world.close() } }
        let deleted = (0..<2_500).map { "module.fleet[\"host-\($0)\"].null_resource.server_with_a_long_descriptive_name" }
        let replaced = (0..<2_500).map { "module.fleet[\"host-\($0)\"].null_resource.disk_attachment_replaced" }
        world.startWorker()
        try await world.awaitingRun(plan: try OutboxWorld.plan(deleted: deleted, replaced: replaced))
        try await world.delivered()
        let comment = try #require(world.mock.comments.first)
        #expect(comment.body.count <= RunReport.commentLimit && comment.body.count < 65_536)
        #expect(comment.body.contains("**Destroyed: 2500**") && comment.body.contains("**Replaced (destroyed and created again): 2500**"))
        let more = try #require(comment.body.split(separator: "\n").first { $0.hasPrefix("… and ") })
        let lines = Set(comment.body.split(separator: "\n").map(String.init))
        let shown = deleted.count { lines.contains($0) }
        #expect(more == "… and \(2_500 - shown) more, listed on the run page.")
        #expect(shown > 100, "the budget is used, not thrown away")
        #expect(comment.body.contains("lockstep approve r1 --digest"), "the approve command survives the cut")
    }

    @Test("a plan credential in a stored address or failure detail never reaches the forge; nor does the forge token in a body")
    func canaryRedacted() async throws {
        let world = try await OutboxWorld(forge: .github, notifications: ["{url: URL, format: json, secret_file: hook-secret}"])
        defer { Task { await world.close() } }
        world.startWorker()
        let leaky = "null_resource.db[\"\(OutboxWorld.canary)\"]"
        try await world.awaitingRun(plan: try OutboxWorld.plan(deleted: [leaky]))
        try await world.approve("r1", "alice", completing: false)
        try await world.approve("r1", "bob", completing: true)
        try await world.move("r1", .approved, .applying, .preconditionsHeld)
        try await world.move("r1", .applying, .failed, .applyFailed,
                             detail: "Error: password \(OutboxWorld.canary) rejected; token \(world.mock.token)")
        try await world.delivered()

        let bodies = world.mock.requests.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(!bodies.isEmpty)
        #expect(!bodies.contains { $0.contains(OutboxWorld.canary) || $0.contains("7Qx!pl4nS3cret") })
        #expect(!world.mock.requests.filter { !$0.path.hasPrefix("/notify/") }
            .contains { String(decoding: $0.body, as: UTF8.self).contains(world.mock.token) })
        let comment = try #require(world.mock.comments.first).body
        #expect(comment.contains("null_resource.db[\"\(Redactor.placeholder)\"]"))
        #expect(comment.contains("Error: password \(Redactor.placeholder) rejected"))
        let notification = try #require(world.mock.notifications("ops").last)
        #expect(String(decoding: notification.body, as: UTF8.self).contains(Redactor.placeholder))
    }

    @Test("status descriptions stay within 140 characters and comments within the limit, whatever the failure says")
    func reportLimits() async throws {
        let world = try await OutboxWorld(forge: nil)
        defer { Task { await world.close() } }
        try await world.awaitingRun()
        try await world.move("r1", .awaitingApproval, .rejected, .rejected, detail: String(repeating: "x`", count: 50_000))
        let run = try #require(try await world.store.run(try RunID("r1")))
        let events = try await world.store.outboxEvents(after: 0, limit: 100)
        for event in events {
            let report = RunReport(run: run, event: event, policy: world.agent.environments["prod"], publicURL: nil)
            #expect(report.statusDescription.count <= 140)
            #expect(report.comment().count <= RunReport.commentLimit)
            #expect(report.comment(limit: 3_000).count <= 3_000)
        }
        let rejected = try #require(events.last)
        let comment = RunReport(run: run, event: rejected, policy: world.agent.environments["prod"], publicURL: nil).comment()
        #expect(comment.contains("(cut; the whole text is on the run page)"))
        #expect(comment.contains("`lockstep show r1`"), "without a public URL the comment says how to see the plan")
    }
}
