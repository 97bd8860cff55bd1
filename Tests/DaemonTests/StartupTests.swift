import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon fails loudly, never busily (issue 11, point 5), on the real `lockstep serve`.
/// Before the fix, a taken listen port made the service group cancel the poll loop, which
/// only watched for a drain: it spun at 100% CPU logging thousands of lines a second, never
/// listened, never exited and ignored SIGTERM.
@Suite(.serialized)
struct StartupTests {
    @Test("listen port taken: the daemon exits non-zero within seconds with one line naming the address and the errno text, without spinning")
    func portTaken() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let holder = try occupyPort(world.port)
        defer { close(holder) }
        let daemon = try world.startDaemon()
        let exited = try await world.waitForExit(daemon, seconds: 15)
        #expect(exited, "the daemon must exit when it cannot listen: \(world.daemonLogs.suffix(2_000))")
        guard exited else { return }
        #expect(daemon.terminationReason == .exit && daemon.terminationStatus != 0, "status \(daemon.terminationStatus)")
        let log = world.daemonLogs
        let line = log.split(separator: "\n").last { $0.hasPrefix("lockstep serve:") }.map(String.init) ?? ""
        #expect(line.contains("cannot listen on 127.0.0.1:\(world.port)"), "\(line)")
        #expect(line.contains("Address already in use"), "the system's reason is named: \(line)")
        let lines = log.split(separator: "\n").count
        #expect(lines < 60, "a start that fails writes a few lines, not a flood (\(lines) lines)")
    }

    @Test("SIGTERM during the port fight: the daemon is gone within seconds whatever state it was in")
    func sigtermDuringPortFight() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let holder = try occupyPort(world.port)
        defer { close(holder) }
        for delay in [0, 150, 400] {
            let daemon = try world.startDaemon()
            try await Task.sleep(for: .milliseconds(delay))
            kill(daemon.processIdentifier, SIGTERM)
            let exited = try await world.waitForExit(daemon, seconds: 10)
            #expect(exited, "SIGTERM \(delay) ms after start must end the daemon: \(world.daemonLogs.suffix(2_000))")
            if !exited { world.kill9(daemon) }
        }
    }

    @Test("remote unreachable: failed passes back off (a bounded number of log lines) and SIGTERM stops the daemon at once with status 0")
    func sigtermWhileRemoteUnreachable() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try FileManager.default.moveItem(at: world.remote, to: world.scratch.appendingPathComponent("remote-away.git"))
        let daemon = try world.startDaemon()
        try await eventually("/readyz to report the remote down", seconds: 30) {
            let ready = try? world.http("GET", "/readyz", as: nil)
            return ready?.status == 503 && (ready?.json["status"] as? String ?? "").contains("remote unreachable")
        }
        let start = Date()
        try await Task.sleep(for: .seconds(8))
        let elapsed = Date().timeIntervalSince(start)
        let failures = world.daemonLogs.components(separatedBy: "delivery repository unreachable").count - 1
        // A 1 s poll that never backed off would log one per second (9 or more by now);
        // doubling waits (1, 2, 4, 8 s) log at most 5 in the first ~9 s.
        #expect(failures >= 2 && failures <= 6, "\(failures) failed passes logged in \(Int(elapsed)) s plus start")
        #expect(daemon.isRunning)

        kill(daemon.processIdentifier, SIGTERM)
        let exited = try await world.waitForExit(daemon, seconds: 10)
        #expect(exited, "SIGTERM while the remote is down: \(world.daemonLogs.suffix(2_000))")
        if exited {
            #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0)
        }
    }

    @Test("an environment that requires signed tags with a signer file that cannot be read stops the start, naming the file")
    func missingSignerFile() async throws {
        let world = try DaemonWorld(pipeline: .devOnly)
        defer { world.cleanup() }
        let missing = world.scratch.appendingPathComponent("no-such-allowed-signers").path
        var config = try String(contentsOfFile: world.configPath, encoding: .utf8)
        let anchor = "tagger_may_approve: true\n"
        let line = try #require(config.split(separator: "\n").first { $0.contains(anchor.dropLast()) })
        let indent = String(line.prefix { $0 == " " })
        config = config.replacingOccurrences(of: anchor, with: anchor + """
            \(indent)require_signed_tags: true
            \(indent)allowed_signers_file: \(missing)

            """)
        try config.write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let daemon = try world.startDaemon()
        let exited = try await world.waitForExit(daemon, seconds: 30)
        #expect(exited && daemon.terminationStatus != 0)
        #expect(world.daemonLogs.contains("the allowed_signers_file of dev (\(missing)) cannot be read"), "\(world.daemonLogs.suffix(1_000))")
    }
}
