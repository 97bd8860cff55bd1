import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Plan-time code that leaves a process behind (`setsid sleep 100000 &`, holding terraform's
/// stdout and stderr, which are the daemon's pipes) once kept terraform a zombie, the run in
/// `planning` past its timeout, every target's polling stalled and SIGTERM ignored. On the real
/// daemon, with Landlock (the default) and with `terraform.confine: false`: the run still
/// reaches awaiting_approval, the leftover is gone when plan ends, the health endpoints answer
/// throughout and SIGTERM stops the daemon promptly.
@Suite(.serialized)
struct LeftoverProcessTests {
    @Test("a setsid leftover of terraform plan dies with it; the run reaches awaiting_approval, health answers, SIGTERM stops the daemon",
          arguments: [true, false])
    func leftoverOfPlan(confine: Bool) async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let marker = "100000.\(UInt32.random(in: 1_000_000...9_999_999))"
        try world.leaveSleeperAtPlan(marker: marker)
        if !confine { try world.turnOffFileConfinement() }
        let daemon = try await world.startReadyDaemon()
        let mode = confine ? "terraform runs confined" : "terraform runs without the file-system sandbox"
        #expect(world.daemonLogs.contains(mode), "\(world.daemonLogs)")
        #expect(world.daemonLogs.contains("pid namespace"), "the check's answer is logged: \(world.daemonLogs)")

        try world.release("1.0.0")
        let pidFile = world.control.appendingPathComponent("leftover.pid")
        try await eventually("plan-time code to leave its process") {
            ((try? String(contentsOf: pidFile, encoding: .utf8)) ?? "").hasSuffix("\n")
        }
        let leftover = try #require(pid_t(try String(contentsOf: pidFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { if world.leftoverRunning(leftover, marker: marker) { kill(leftover, SIGKILL) } }
        #expect(try world.http("GET", "/healthz", as: nil).status == 200, "the daemon answers while the plan runs")

        let id = try await world.waitForRun(in: ["awaiting_approval", "failed"])
        let detail = try world.raw("/api/v1/runs/\(id)")
        #expect(try world.runState(id) == "awaiting_approval", "\(detail)")
        try await eventually("the leftover to be gone", seconds: 5) { !world.leftoverRunning(leftover, marker: marker) }
        // End-of-file came when plan ended: the output was read whole, never cut at the drain.
        let log = try run("/usr/bin/sqlite3", [world.storePath, "SELECT text FROM run_log_chunks WHERE run_id = '\(id)'"])
        #expect(log.status == 0 && !log.out.contains("output cut"), "\(log)")
        #expect(try world.http("GET", "/healthz", as: nil).status == 200)
        #expect(try world.http("GET", "/readyz", as: nil).status == 200)

        kill(daemon.processIdentifier, SIGTERM)
        #expect(try await world.waitForExit(daemon, seconds: 20), "SIGTERM must stop the daemon: \(world.daemonLogs)")
        #expect(daemon.terminationStatus == 0)
    }

    @Test("SIGTERM while a plan with a leftover holding its output runs: the daemon exits promptly, nothing is left; a restart is ready and plans the run again")
    func sigtermDuringPlanWithLeftover() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let marker = "100000.\(UInt32.random(in: 1_000_000...9_999_999))"
        try world.leaveSleeperAtPlan(marker: marker)
        try world.block("plan")
        let daemon = try await world.startReadyDaemon()
        try world.release("1.0.0")
        // The leftover is started, then the wrapper waits before the real terraform.
        try await eventually("terraform plan to start") { world.started("plan") }
        let pidFile = world.control.appendingPathComponent("leftover.pid")
        let leftover = try #require(pid_t(try String(contentsOf: pidFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { if world.leftoverRunning(leftover, marker: marker) { kill(leftover, SIGKILL) } }
        #expect(world.leftoverRunning(leftover, marker: marker))
        #expect(try world.http("GET", "/healthz", as: nil).status == 200, "the daemon answers while the plan runs")

        kill(daemon.processIdentifier, SIGTERM)
        #expect(try await world.waitForExit(daemon, seconds: 20), "SIGTERM must stop the daemon: \(world.daemonLogs)")
        #expect(daemon.terminationStatus == 0, "\(world.daemonLogs)")
        try await eventually("the leftover to be gone", seconds: 5) { !world.leftoverRunning(leftover, marker: marker) }

        // A restart is ready at once and plans the interrupted run again, to the end.
        world.unblockFuture("plan")
        try FileManager.default.removeItem(at: pidFile)
        _ = try await world.startReadyDaemon()
        let id = try await world.waitForRun(in: ["awaiting_approval", "failed"])
        let detail = try world.raw("/api/v1/runs/\(id)")
        #expect(try world.runState(id) == "awaiting_approval", "\(detail)")
        let second = try #require(pid_t(try String(contentsOf: pidFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { if world.leftoverRunning(second, marker: marker) { kill(second, SIGKILL) } }
        try await eventually("the second leftover to be gone", seconds: 5) { !world.leftoverRunning(second, marker: marker) }
    }

    @Test("with terraform.confine: false the daemon refuses to start when the launcher cannot contain commands; nothing is served")
    func processesOnlyNeedsTheLauncher() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.turnOffFileConfinement()
        // A copy of the daemon whose lockstep-confine beside it always fails, as on a kernel
        // or a unit that forbids user or PID namespaces.
        let bin = world.scratch.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let copy = bin.appendingPathComponent("lockstep")
        // A hard link where it can (same file system), else a copy: a symlink would be
        // resolved back to the real lockstep-confine.
        if link(try Paths.lockstep().path, copy.path) != 0 {
            try FileManager.default.copyItem(at: try Paths.lockstep(), to: copy)
        }
        let launcher = bin.appendingPathComponent("lockstep-confine")
        try """
        #!/bin/sh
        echo "lockstep-confine: cannot create a PID namespace: Operation not permitted" >&2
        exit 126

        """.write(to: launcher, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: launcher.path)

        let daemon = try world.startDaemon(executable: copy)
        #expect(try await world.waitForExit(daemon, seconds: 60), "the daemon must refuse to start")
        #expect(daemon.terminationStatus != 0)
        #expect(world.daemonLogs.contains("cannot create a PID namespace"), "\(world.daemonLogs)")
        #expect(world.daemonLogs.contains("RestrictNamespaces=user pid"), "\(world.daemonLogs)")
        #expect((try? world.http("GET", "/readyz", as: nil)) == nil, "nothing listens")
    }
}

extension DaemonWorld {
    /// Puts a wrapper in front of the terraform wrapper: before `plan` it leaves
    /// `sleep MARKER` behind in a new session, holding plan's stdout and stderr, and waits
    /// until it wrote its pid (read from /proc/self/stat: the daemon's view, also inside the
    /// launcher's PID namespace) to `control/leftover.pid`.
    func leaveSleeperAtPlan(marker: String) throws {
        let inner = scratch.appendingPathComponent("terraform-wrapper.sh")
        let outer = scratch.appendingPathComponent("leftover-wrapper.sh")
        let pidFile = control.appendingPathComponent("leftover.pid").path
        try """
        #!/bin/sh
        if [ "$1" = plan ]; then
          setsid sh -c 'read -r p _ < /proc/self/stat; echo "$p" > \(pidFile); exec sleep \(marker)' &
          until [ -s '\(pidFile)' ]; do sleep 0.01; done
        fi
        exec '\(inner.path)' "$@"

        """.write(to: outer, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: outer.path)
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        try #require(config.contains("binary: \(inner.path)\n"))
        try config.replacingOccurrences(of: "binary: \(inner.path)\n", with: "binary: \(outer.path)\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// `terraform.confine: false` in the agent config.
    func turnOffFileConfinement() throws {
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        try #require(config.contains("terraform:\n"))
        try config.replacingOccurrences(of: "terraform:\n", with: "terraform:\n  confine: false\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Whether `pid` is still the leftover (`sleep MARKER`); a zombie or a reused pid is not.
    func leftoverRunning(_ pid: pid_t, marker: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker)
    }
}
