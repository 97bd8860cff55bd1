import Foundation
import LockstepCore
import Testing

@Suite("Drift checks on the running daemon")
struct DriftDaemonTests {
    @Test("the daemon checks a verified release for drift on its own, audits it, and shows it in the API and in lockstep status")
    func daemonChecksDrift() async throws {
        let world = try DaemonWorld(pipeline: .devOnly, environmentExtraYAML: "drift: {interval: 5m}")
        defer { world.cleanup() }
        _ = try await world.startReadyDaemon()
        try world.release("1.0.0")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        #expect(try world.approve(id, digest: try world.planDigest(of: id)).status == 200)
        // No request asks for it: the daemon's background loop finds the check due after the apply.
        var board = ""
        try await eventually("a drift check of the applied release") {
            board = try world.raw("/api/v1/environments")
            return board.contains("\"drift\"")
        }
        #expect(try world.runState(id) == "verified")
        #expect(board.contains("\"outcome\":\"no_drift\""), "\(board)")
        let audited = try await world.auditEntries().filter { $0.kind == .drift }
        #expect(audited.map { $0.payload["outcome"] } == ["no_drift"])
        #expect(audited.first?.payload["applied_run"] == id)
        try world.writeTokenFiles()
        let status = try world.cli(["status"])
        #expect(status.out.contains("drift    none (checked"), "\(status)")
    }
}
