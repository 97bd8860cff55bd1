import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A full disk on the real `lockstep serve` process (issue 6: the daemon keeps running and
/// reports when the disk is full). The runs folder is a small tmpfs mounted for the test
/// and filled to ENOSPC with `dd`: a real full file system, not a simulated error.
///
/// Needs root (mount). CI runs as root; anywhere else the test fails with the reason rather
/// than skipping, so a missing capability is never mistaken for a pass.
@Suite(.serialized)
struct DiskFullTests {
    @Test("disk full: the run fails with the reason, the daemon stays up and says so (log, STATUS=, /readyz 503); freed, the next tag plans; nothing stored is lost")
    func diskFull() async throws {
        let world = try DaemonWorld()
        let runs = world.scratch.appendingPathComponent("var/runs", isDirectory: true)
        try FileManager.default.createDirectory(at: runs, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try #require(getuid() == 0, "this test mounts a small tmpfs and needs root (CI runs as root)")
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", runs.path])
        try #require(mounted.status == 0, "mount -t tmpfs failed (needs CAP_SYS_ADMIN): \(mounted.err)")
        defer {
            for daemon in world.daemons where daemon.isRunning { world.kill9(daemon) }
            // Lazy: a terraform child of a killed daemon may still hold a file in it.
            _ = umount2(runs.path, Int32(MNT_DETACH))
            world.cleanup()
        }
        let notify = try NotifySocket(path: world.scratch.appendingPathComponent("notify.sock").path)
        let daemon = try world.startDaemon(environment: ["NOTIFY_SOCKET": notify.path])
        _ = try notify.receive(until: "READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(try world.http("GET", "/readyz", as: nil).status == 200)
        let before = try await world.auditEntries()

        let filler = runs.appendingPathComponent("filler").path
        let filled = try run("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=1M"])
        #expect(filled.status != 0 && filled.err.contains("No space left on device"), "\(filled.err)")

        let status = try notify.receive(until: "a STATUS= line about the full disk") {
            $0.hasPrefix("STATUS=DISK FULL") && $0.contains("runs folder")
        }
        #expect(!status.match.contains(runs.path), "STATUS= names the folder's role, not its path")
        notify.stop()
        let ready = try world.http("GET", "/readyz", as: nil)
        #expect(ready.status == 503)
        let readyStatus = ready.json["status"] as? String ?? ""
        #expect(readyStatus.contains("DISK FULL") && readyStatus.contains("runs folder"), "\(ready.json)")
        #expect(!readyStatus.contains(runs.path), "/readyz answers anyone: it names the folder's role, not its path")
        try await eventually("the log to say the disk is full") { world.daemonLogs.contains("disk full") }

        try world.release("1.0.0")
        let failed = try await world.waitForRun(in: ["failed", "awaiting_approval"])
        #expect(try world.runState(failed) == "failed", "a plan cannot be made on a full disk")
        let detail = try world.http("GET", "/api/v1/runs/\(failed)").json
        let reasons = (detail["transitions"] as? [[String: Any]] ?? []).compactMap { $0["detail"] as? String }
        #expect(reasons.contains { $0.contains("No space left on device") }, "the run says why it failed: \(reasons)")
        #expect(daemon.isRunning, "the daemon keeps running on a full disk: \(world.daemonLogs)")
        #expect(try world.http("GET", "/api/v1/runs").status == 200, "the API still answers")
        #expect(world.applyCount == 0)

        try FileManager.default.removeItem(atPath: filler)
        try await eventually("/readyz to be ready once space is back") {
            try world.http("GET", "/readyz", as: nil).status == 200
        }
        try await eventually("the log to say space is back") { world.daemonLogs.contains("disk space is back") }
        try world.release("1.1.0")
        try await eventually("the next tag to plan normally") {
            try world.runs().contains { $0["state"] as? String == "awaiting_approval" }
        }
        #expect(daemon.isRunning)

        let after = try await world.auditEntries()
        #expect(Array(after.prefix(before.count)) == before, "every audit entry stored before the disk filled is still there")
        let verify = try run(try Paths.lockstep().path, ["audit", "verify", "--store", world.storePath])
        #expect(verify.status == 0, "lockstep audit verify: \(verify.out) \(verify.err)")
    }
}
