import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Crash safety and shutdown shown on the real `lockstep serve` process (docs/CONTRACT.md §4, §5):
/// the terraform wrapper stops at an exact point (before plan or apply runs), the test
/// kills the daemon there, restarts it and reads the outcome through the real API and
/// the store file. Serialized: each test runs terraform and a daemon on 2 shared cores.
@Suite(.serialized)
struct CrashTests {
    @Test("kill -9 while planning: the run is re-queued on restart and planned again; nothing stored is lost")
    func killWhilePlanning() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.block("plan")
        let first = try await world.startReadyDaemon()
        try world.release("1.0.0")
        try await eventually("terraform plan to start") { world.started("plan") }
        let id = try await world.waitForRun(in: ["planning"])
        let before = try await world.auditEntries()

        world.kill9(first)
        world.killBlocked("plan")
        world.unblockFuture("plan")
        try await world.startReadyDaemon()

        try await eventually("the same run to be planned again") {
            try world.runState(id) == "awaiting_approval"
        }
        let detail = try world.http("GET", "/api/v1/runs/\(id)").json
        let reasons = (detail["transitions"] as? [[String: Any]] ?? []).compactMap { $0["reason"] as? String }
        #expect(reasons.contains("requeued_after_crash"), "\(reasons)")
        #expect(try world.runs().count == 1, "one run, re-queued; no second run was created")
        #expect(detail["digest"] is String)
        #expect(world.applyCount == 0)

        try await world.expectAuditKept(before)
    }

    @Test("kill -9 while applying: the run is interrupted, never applied again, loud until resolved; resolve is audited")
    func killWhileApplying() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let (first, id) = try await world.approveWithApplyHeld()
        try await eventually("terraform apply to start") { world.started("apply") }
        #expect(try world.runState(id) == "applying")
        let before = try await world.auditEntries()

        world.kill9(first)
        world.killBlocked("apply")
        world.unblockFuture("apply")
        try await world.startReadyDaemon()

        #expect(try world.runState(id) == "interrupted")
        #expect(world.applyCount == 0, "the interrupted apply was never run again")
        let detail = try world.http("GET", "/api/v1/runs/\(id)").json
        let alerts = (detail["alerts"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        #expect(alerts.contains("apply_interrupted"), "\(alerts)")
        let ready = try world.http("GET", "/readyz", as: nil).json["status"] as? String ?? ""
        #expect(ready.contains("interrupted"), "the status line says so: \(ready)")
        let board = try world.http("GET", "/api/v1/targets").json["targets"] as? [[String: Any]] ?? []
        let pending = board.first?["pending"] as? [String: Any]
        #expect(pending?["state"] as? String == "interrupted")

        let resolved = try world.http("POST", "/api/v1/runs/\(id)/resolve",
                                      body: #"{"as":"failed","reason":"checked: nothing was created"}"#)
        #expect(resolved.status == 200, "\(resolved.json)")
        #expect(try world.runState(id) == "failed")
        #expect(world.applyCount == 0)

        let after = try await world.expectAuditKept(before)
        #expect(after.contains { $0.actor == "alice" && $0.runID == runID(id) && $0.kind == .transition },
                "the resolution is audited with who did it")
    }

    @Test("kill -9 after `approved` is stored, before the apply started: on restart the run is still approved and applied exactly once")
    func killWhileApproved() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let first = try await world.startReadyDaemon()
        try world.release("1.0.0")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        let digest = try world.planDigest(of: id)
        // The apply trigger re-resolves the tag with a fetch before it may store `applying`;
        // with the remote away it defers and stores nothing. That holds the run at exactly
        // the point between the stored `approved` and its side effect, for as long as the
        // test needs, without a race against the apply worker.
        let aside = world.scratch.appendingPathComponent("remote-away.git")
        try FileManager.default.moveItem(at: world.remote, to: aside)
        let approved = try world.approve(id, digest: digest)
        #expect(approved.status == 200, "\(approved.json)")
        try await eventually("the apply trigger to defer") {
            world.daemonLogs.contains("apply trigger") && world.daemonLogs.contains("deferred")
        }
        #expect(try world.runState(id) == "approved")
        #expect(world.applyCount == 0)
        let before = try await world.auditEntries()

        world.kill9(first)
        try FileManager.default.moveItem(at: aside, to: world.remote)
        let second = try await world.startReadyDaemon()

        try await eventually("the approved run to be applied after the restart") {
            let state = try world.runState(id)
            return state == "verified" || state == "applied"
        }
        #expect(world.applyCount == 1, "applied once after the restart")
        let detail = try world.http("GET", "/api/v1/runs/\(id)").json
        let states = (detail["transitions"] as? [[String: Any]] ?? []).compactMap { $0["to"] as? String }
        #expect(states.filter { $0 == "applying" }.count == 1, "one approved → applying step: \(states)")

        // Another restart runs a full first pass (ready means it ran): still applied once.
        world.kill9(second)
        try await world.startReadyDaemon()
        #expect(world.applyCount == 1, "a later start does not apply the run again")

        try await world.expectAuditKept(before)
    }

    @Test("a second daemon on the same store refuses to start, naming the lock file and the holder's pid")
    func secondDaemonRefuses() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let first = try await world.startReadyDaemon()
        let second = try world.startDaemon()
        second.waitUntilExit()
        #expect(second.terminationStatus == 3)
        let message = try String(contentsOfFile: world.scratch.appendingPathComponent("daemon-1.log").path, encoding: .utf8)
        #expect(message.contains(world.storePath + ".lock"), "\(message)")
        #expect(message.contains("pid \(first.processIdentifier)"), "\(message)")
        #expect(first.isRunning)
        #expect(try world.http("GET", "/readyz", as: nil).status == 200, "the first daemon still serves")
    }

    @Test("SIGTERM during apply: new work is refused, the apply finishes, the daemon exits 0")
    func sigtermDuringApply() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let (daemon, id) = try await world.approveWithApplyHeld()
        try await eventually("terraform apply to start") { world.started("apply") }

        kill(daemon.processIdentifier, SIGTERM)
        try await eventually("the daemon to refuse new work") {
            let answer = try world.http("POST", "/api/v1/runs/\(id)/reject", body: #"{"reason":"too late"}"#)
            return answer.status == 409
                && (answer.json["error"] as? [String: Any])?["code"] as? String == "refused_shutting_down"
        }
        #expect(try world.http("GET", "/readyz", as: nil).status == 503)
        #expect(daemon.isRunning, "the daemon waits for the apply")
        try world.release(blocked: "apply")
        daemon.waitUntilExit()
        #expect(daemon.terminationReason == .exit)
        #expect(daemon.terminationStatus == 0, "\(world.daemonLogs)")
        #expect(world.applyCount == 1)

        let store = try SQLiteRunStore.openReadOnly(path: world.storePath)
        defer { try? store.close() }
        let run = try #require(try await store.run(runID(id)))
        #expect(run.state == .verified || run.state == .applied, "\(run.state)")
        #expect(AuditChain.verify(try await store.auditEntries()).isIntact)
        #expect(!world.daemonLogs.contains("token-for-tests"), "no API token reaches the daemon's log")
    }

    @Test("the remote going away: the daemon keeps running, /readyz says why (503), and recovers when it is back")
    func remoteDownAndBack() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let daemon = try await world.startReadyDaemon()
        let aside = world.scratch.appendingPathComponent("remote-away.git")
        try FileManager.default.moveItem(at: world.remote, to: aside)
        try await eventually("/readyz to report the remote down") {
            let ready = try world.http("GET", "/readyz", as: nil)
            return ready.status == 503 && (ready.json["status"] as? String ?? "").contains("remote unreachable")
        }
        #expect(daemon.isRunning)
        #expect(try world.http("GET", "/api/v1/runs").status == 200, "the API still answers")
        try FileManager.default.moveItem(at: aside, to: world.remote)
        try world.release("1.0.0")
        try await eventually("the daemon to be ready again") { try world.http("GET", "/readyz", as: nil).status == 200 }
        _ = try await world.waitForRun(in: ["awaiting_approval"])
    }
}
