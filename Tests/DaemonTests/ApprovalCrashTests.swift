import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An approval and the transition it causes are one transaction, shown on the real
/// `lockstep serve` process: the daemon is killed with SIGKILL between the two writes
/// (inside the transaction) and the store file is read directly afterwards.
@Suite(.serialized)
struct ApprovalCrashTests {
    /// Every approval row of a run belongs to a run that also stored `approved` (each run
    /// of these worlds needs one approval): "an approval without its transition" counted
    /// straight from the file, outside Lockstep.
    static func approvalsWithoutTransition(_ world: DaemonWorld) throws -> Int {
        let out = try run("/usr/bin/sqlite3", ["-batch", "-bail", world.storePath], input: """
            SELECT count(*) FROM approvals
            WHERE run_id NOT IN (SELECT run_id FROM transitions WHERE to_state = 'approved');
            """)
        try #require(out.status == 0, "sqlite3 failed: \(out.err)")
        return try #require(Int(out.out.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    static func approvalCount(_ world: DaemonWorld) throws -> Int {
        let out = try run("/usr/bin/sqlite3", ["-batch", "-bail", world.storePath], input: "SELECT count(*) FROM approvals;")
        try #require(out.status == 0, "sqlite3 failed: \(out.err)")
        return try #require(Int(out.out.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test("kill -9 after the approval row is written and before `approved` is: neither is stored; the same approver approves again (no duplicate refusal) and the run is applied once")
    func killBetweenApprovalAndTransition() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        // The test-only kill point (debug builds, armed from the daemon's own environment).
        let first = try world.startDaemon(environment: ["LOCKSTEP_TEST_KILL_AT": "approval-recorded-before-transition"])
        try await eventually("the daemon to be ready") {
            guard first.isRunning else { throw TimedOut(what: "the daemon exited: \(world.daemonLogs)") }
            return (try? world.http("GET", "/readyz"))?.status == 200
        }
        try world.release("1.0.0")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        let digest = try world.planDigest(of: id)
        let before = try await world.auditEntries()

        // The daemon dies inside the approval's transaction: curl gets no answer.
        let answer = try? world.approve(id, digest: digest)
        first.waitUntilExit()
        #expect(answer == nil, "the daemon answered: \(answer.map { "\($0.status) \($0.json)" } ?? "")")
        #expect(first.terminationReason == .uncaughtSignal && first.terminationStatus == SIGKILL,
                "killed at the kill point, not exited: \(world.daemonLogs)")

        // The store as the kill left it: the approval went with the transaction.
        #expect(try Self.approvalCount(world) == 0, "the approval was rolled back with its transition")
        #expect(try Self.approvalsWithoutTransition(world) == 0)
        let store = try SQLiteRunStore.openReadOnly(path: world.storePath)
        let stored = try #require(try await store.run(runID(id)))
        #expect(stored.state == .awaitingApproval)
        #expect(try await store.approvals(of: runID(id)).isEmpty)
        try store.close()
        let afterKill = try await world.expectAuditKept(before)
        #expect(afterKill.count == before.count, "no audit entry of the interrupted approval survived")

        // Restarted without the kill point: alice approves again and is not a duplicate.
        try await world.startReadyDaemon()
        let again = try world.approve(id, digest: digest)
        #expect(again.status == 200, "\(again.json)")
        try await eventually("the run to be applied after the restart") {
            let state = try world.runState(id)
            return state == "verified" || state == "applied"
        }
        #expect(world.applyCount == 1)
        #expect(try Self.approvalCount(world) == 1)
        #expect(try Self.approvalsWithoutTransition(world) == 0)
        try await world.expectAuditKept(before)
    }

    @Test("a store that kept an approval without its transition (a crash in a version that wrote them apart): after restart the approver's retry moves the run and it is applied once")
    func retryHealsApprovalStoredAlone() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let first = try await world.startReadyDaemon()
        try world.release("1.0.0")
        let id: String
        do { id = try await world.waitForRun(in: ["awaiting_approval"]) } catch { print("DBG", world.daemonLogs.suffix(6000)); print("DBG runs", try world.runs()); throw error }
        let digest = try world.planDigest(of: id)
        world.kill9(first)

        // The state such a crash left: the approval row and its audit entry, no transition.
        let writer = try SQLiteRunStore(path: world.storePath)
        try await writer.recordApproval(Approval(runID: runID(id), identity: try IdentityName("alice"),
                                                 digest: try Digest(digest), time: Date()), actor: "alice")
        try writer.close()
        #expect(try Self.approvalsWithoutTransition(world) == 1)
        let before = try await world.auditEntries()

        try await world.startReadyDaemon()
        #expect(try world.runState(id) == "awaiting_approval")
        let retry = try world.approve(id, digest: digest)
        #expect(retry.status == 200, "the retry is not refused as a duplicate: \(retry.json)")
        try await eventually("the run to be applied") {
            let state = try world.runState(id)
            return state == "verified" || state == "applied"
        }
        #expect(world.applyCount == 1)
        #expect(try Self.approvalCount(world) == 1, "nothing was recorded twice")
        #expect(try Self.approvalsWithoutTransition(world) == 0)
        try await world.expectAuditKept(before)
    }

    @Test("kill -9 right after the approve call returned: the approval and `approved` are both stored; after restart the run is applied once")
    func killAfterApprovalReturned() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        // The apply is held so the kill lands before anything after `approved` happens.
        let (first, id) = try await world.approveWithApplyHeld()
        world.kill9(first)
        world.killBlocked("apply")
        world.unblockFuture("apply")

        #expect(try Self.approvalCount(world) == 1)
        #expect(try Self.approvalsWithoutTransition(world) == 0, "the approval never stands without its transition")
        let before = try await world.auditEntries()

        try await world.startReadyDaemon()
        try await eventually("the run to end after the restart") {
            let state = try world.runState(id)
            return ["verified", "applied", "interrupted"].contains(state ?? "")
        }
        // Killed before apply started: applied once after the restart. Killed while the
        // held apply was starting: interrupted, never applied again.
        let state = try world.runState(id)
        #expect(state == "interrupted" ? world.applyCount == 0 : world.applyCount == 1, "\(state ?? "-")")
        try await world.expectAuditKept(before)
    }
}
