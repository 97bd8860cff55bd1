import Foundation
import LockstepCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A broken `lockstep.yaml` on the branch never empties the board, on the real `lockstep
/// serve` across a restart: before, the restarted daemon served no target, ignored new valid
/// tags and said only "no valid lockstep.yaml has been seen".
@Suite(.serialized)
struct BrokenLayoutTests {
    @Test("a broken layout merged while the daemon was down: after the restart a valid tag is planned, and /readyz and the problems name the parse error")
    func brokenLayoutAcrossRestart() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let first = try await world.startReadyDaemon()
        kill(first.processIdentifier, SIGTERM)
        #expect(try await world.waitForExit(first, seconds: 30))

        // While it is down: release 1.0.0 is merged (not tagged yet), then a layout that does
        // not parse is merged after it; then 1.0.0 is tagged.
        let valid = try world.mergeUntagged(world.appFiles("1.0.0"))
        _ = try world.mergeUntagged(["lockstep.yaml": "projects: [\n"])
        try world.git(["tag", "-a", "-m", "dev/v1.0.0", "dev/v1.0.0", valid])
        try world.publish()

        let daemon = try world.startDaemon()
        try await eventually("/readyz to name the broken layout") {
            guard let ready = try? world.http("GET", "/readyz", as: nil) else { return false }
            return (ready.json["status"] as? String ?? "").contains("LAYOUT NOT USED")
        }
        let status = try world.http("GET", "/readyz", as: nil).json["status"] as? String ?? ""
        #expect(status.contains("lockstep.yaml at main"), "\(status)")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        #expect(try world.http("GET", "/api/v1/runs/\(id)").json["version"] as? String == "1.0.0")
        let problems = try world.http("GET", "/api/v1/environments").json["problems"] as? [[String: Any]] ?? []
        let layout = problems.first { $0["code"] as? String == "layout_invalid" }
        let message = layout?["message"] as? String ?? ""
        #expect(message.contains("the targets of the last valid layout are still followed"), "\(problems)")
        // Said once in the log, not on every poll.
        let said = world.daemonLogs.components(separatedBy: "the layout at the protected branch is not used").count - 1
        #expect(said == 1, "logged \(said) times")
        #expect(daemon.isRunning)
    }
}

extension DaemonWorld {
    /// Merges a pull request that writes `files`, without tagging or publishing; returns the
    /// merge commit.
    func mergeUntagged(_ files: [String: String]) throws -> String {
        let branch = "untagged-\(UUID().uuidString.prefix(8))"
        try git(["checkout", "-q", "-b", branch])
        for (path, text) in files {
            let url = work.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try git(["add", "-A"])
        try git(["commit", "-q", "-m", "change on \(branch)"])
        try git(["checkout", "-q", "main"])
        try git(["merge", "-q", "--no-ff", "-m", "Merge \(branch)", branch])
        return try git(["rev-parse", "HEAD"])
    }
}
