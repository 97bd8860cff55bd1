import Foundation
import Testing
@testable import TerraformRunner
#if canImport(Glibc)
import Glibc
#endif

/// The process edge every terraform and verify command goes through, attacked with a process
/// left behind that keeps the command's output open (`setsid sleep 100000 &`, which plan-time
/// code can start): without the launcher the call still returns once its output drain is over
/// and says the output was cut; through the launcher (``Confinement``, with or without Landlock)
/// the leftover is gone when the call returns and no output is cut. Also: a command sees no
/// descriptor of the caller but stdin, stdout and stderr, and running commands leaks none.
///
/// Leftovers write their pid read from /proc/self/stat (the caller's view even inside the
/// launcher's PID namespace) and carry a unique `sleep` argument, so a reused pid is never
/// taken for them.
@Suite("Process containment", .serialized)
struct ContainmentTests {
    /// How commands are started in these tests: directly, through the launcher without
    /// Landlock (`terraform.confine: false`), through the launcher with Landlock.
    enum Edge: String, CaseIterable, CustomTestStringConvertible {
        case direct, processesOnly, landlock
        var testDescription: String { rawValue }

        func confinement() throws -> Confinement? {
            switch self {
            case .direct: return nil
            case .processesOnly: return .processesOnly(launcher: try ConfinementTests.launcher())
            case .landlock: return Confinement(launcher: try ConfinementTests.launcher(), hiddenPaths: [])
            }
        }
    }

    /// `sh -c script` in `directory` (writable under Landlock), through `edge`.
    static func request(_ script: String, in directory: URL, edge: Edge, drain: Duration = .seconds(2)) throws -> ProcessRequest {
        var executable = "/bin/sh"
        var arguments = ["-c", script]
        if let confinement = try edge.confinement() {
            arguments = confinement.arguments(program: executable, readable: [], writable: [directory]) + arguments
            executable = confinement.launcher.path
        }
        return ProcessRequest(
            executable: executable, arguments: arguments, directory: directory, environment: ["PATH": "/usr/bin:/bin"],
            timeout: .seconds(60), gracePeriod: .seconds(1), captureStdoutLimit: nil, retainedBytes: 64 * 1024,
            maxLineBytes: 4096, redactor: Redactor(), sink: DiscardingOutputSink(), outputDrain: drain)
    }

    /// A shell fragment that leaves `sleep MARKER` behind in a new session, holding the
    /// command's stdout and stderr, after it wrote its pid to `pid`; waits for the pid.
    static func leaveSleeper(_ marker: String) -> String {
        """
        setsid sh -c 'read -r p _ < /proc/self/stat; echo "$p" > pid; exec sleep \(marker)' &
        until [ -s pid ]; do sleep 0.01; done
        echo command-done
        """
    }

    static func marker() -> String { "100000.\(UInt32.random(in: 1_000_000...9_999_999))" }

    static func pid(in directory: URL) throws -> pid_t {
        let text = try String(contentsOf: directory.appendingPathComponent("pid"), encoding: .utf8)
        return try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    static func running(_ pid: pid_t, _ marker: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker)
    }

    /// Polls `condition` until it holds or `seconds` passed; whether it held.
    static func within(seconds: Double, _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    @Test("unconfined, a leftover holding stdout open: the call returns after the output drain, says the output was cut, and the leftover is still there")
    func unconfinedLeftoverCutsOutput() async throws {
        let scratch = try Fixtures.scratch()
        let marker = Self.marker()
        let drain = Duration.milliseconds(500)
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await ProcessExecution.run(try Self.request(Self.leaveSleeper(marker), in: scratch, edge: .direct, drain: drain))
        let elapsed = clock.now - started
        let leftover = try Self.pid(in: scratch)
        defer { kill(leftover, SIGKILL) }

        #expect(result.exitCode == 0)
        #expect(result.outputCut, "the leftover held stdout: the output must be reported cut")
        #expect(result.tail.contains("command-done"))
        #expect(result.tail.contains("output cut"))
        // Without the bound this call would wait the leftover's 100000 seconds: it returned
        // while the leftover still holds the pipe (no wall-clock bound: a loaded machine
        // stretches every duration, not the order of events).
        #expect(Self.running(leftover, marker), "the control: the leftover survives an unconfined command (returned after \(elapsed))")
    }

    @Test("through the launcher the leftover is gone when the call returns and no output is cut",
          arguments: [Edge.processesOnly, Edge.landlock])
    func launcherKillsLeftover(edge: Edge) async throws {
        let scratch = try Fixtures.scratch()
        let marker = Self.marker()
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await ProcessExecution.run(try Self.request(Self.leaveSleeper(marker), in: scratch, edge: edge))
        let elapsed = clock.now - started
        let leftover = try Self.pid(in: scratch)
        let gone = try await Self.within(seconds: 2) { !Self.running(leftover, marker) }
        if !gone { kill(leftover, SIGKILL) }

        #expect(gone, "the leftover \(leftover) outlived its command")
        #expect(result.exitCode == 0, "\(result.tail)")
        #expect(!result.outputCut)
        #expect(result.tail.contains("command-done"))
        // Not cut: end-of-file came with the command's end, before the drain bound (after \(elapsed)).
        #expect(!result.tail.contains("output cut"), "returned after \(elapsed)")
    }

    @Test("a verify command (ExternalProgram) through Confinement.processesOnly: its leftover is gone and it succeeds")
    func verifyCommandLeftover() async throws {
        let scratch = try Fixtures.scratch()
        let marker = Self.marker()
        let result = try await ExternalProgram.run(ExternalProgram.Request(
            executable: "/bin/sh", arguments: ["-c", Self.leaveSleeper(marker)], directory: scratch,
            environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(60),
            confinement: .processesOnly(launcher: try ConfinementTests.launcher())))
        let leftover = try Self.pid(in: scratch)
        let gone = try await Self.within(seconds: 2) { !Self.running(leftover, marker) }
        if !gone { kill(leftover, SIGKILL) }
        #expect(gone, "the verify command's leftover \(leftover) outlived it")
        #expect(result.outcome == .succeeded, "\(result.output)")
        #expect(!result.output.contains("output cut"), "end-of-file came with the command's end (after \(result.duration))")
    }

    @Test("a command inherits only descriptors 0, 1 and 2, even when the caller holds descriptors without close-on-exec",
          arguments: Edge.allCases)
    func onlyThreeDescriptors(edge: Edge) async throws {
        let scratch = try Fixtures.scratch()
        // Descriptors a careless part of the daemon could hold: a file and a socket pair,
        // neither close-on-exec.
        let file = open("/dev/null", O_RDONLY)
        var pair: [Int32] = [-1, -1]
        try #require(file >= 0 && socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer {
            close(file)
            close(pair[0])
            close(pair[1])
        }
        // The shell's own descriptors, probed one by one with lstat (`[ -L ]`): listing the
        // folder (ls, a glob) would open a descriptor of its own and list it.
        let script = """
            read -r p _ < /proc/self/stat
            n=0
            while [ $n -lt 1024 ]; do
              if [ -L /proc/$p/fd/$n ]; then echo "fd $n -> $(readlink /proc/$p/fd/$n)"; fi
              n=$((n + 1))
            done
            """
        let sink = LineRecorder()
        var request = try Self.request(script, in: scratch, edge: edge)
        request.sink = sink
        let result = try await ProcessExecution.run(request)
        #expect(result.exitCode == 0, "\(result.tail)")
        let lines = sink.all.filter { $0.stream == .stdout }.map(\.text)
        #expect(lines.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == ["fd 0", "fd 1", "fd 2"],
                "inherited: \(lines)")
        #expect(lines.first?.hasSuffix("/dev/null") == true, "stdin is /dev/null: \(lines)")
        #expect(lines.dropFirst().allSatisfy { $0.contains("pipe:") }, "stdout and stderr are the caller's pipes: \(lines)")
    }

    @Test("50 commands leak no descriptor of the caller", arguments: [Edge.direct, Edge.processesOnly])
    func noDescriptorLeak(edge: Edge) async throws {
        let scratch = try Fixtures.scratch()
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        _ = try await ProcessExecution.run(try Self.request("true", in: scratch, edge: edge))  // one-time setup (dlsym, threads)
        // Other tests running at the same time in this process open and close descriptors in
        // between; a leak of one per command shows in every round (+50), so one round out of
        // three that grew by less than half of that is required.
        var rounds: [(before: Int, after: Int)] = []
        for _ in 0..<3 {
            let before = openDescriptors()
            for _ in 0..<50 {
                let result = try await ProcessExecution.run(try Self.request("echo out; echo err >&2", in: scratch, edge: edge))
                #expect(result.exitCode == 0)
            }
            let after = openDescriptors()
            rounds.append((before, after))
            if after - before < 25 { break }
        }
        #expect(rounds.contains { $0.after - $0.before < 25 }, "descriptors before and after 50 commands: \(rounds)")
    }

    @Test("a program that cannot be started is a launch_failed error naming it, and 50 such attempts leak no descriptor")
    func launchFailureLeaksNothing() async throws {
        let scratch = try Fixtures.scratch()
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        var request = try Self.request("true", in: scratch, edge: .direct)
        request.executable = scratch.appendingPathComponent("no-such-program").path
        let error = await #expect(throws: TerraformRunnerError.self) { try await ProcessExecution.run(request) }
        #expect(error?.code == .launchFailed)
        #expect(error?.description.contains("no-such-program") == true, "\(String(describing: error))")
        // Every attempt makes three pipes; one leaked end per attempt shows as +50 in a round.
        var rounds: [(before: Int, after: Int)] = []
        for _ in 0..<3 {
            let before = openDescriptors()
            for _ in 0..<50 {
                await #expect(throws: TerraformRunnerError.self) { try await ProcessExecution.run(request) }
            }
            let after = openDescriptors()
            rounds.append((before, after))
            if after - before < 25 { break }
        }
        #expect(rounds.contains { $0.after - $0.before < 25 }, "descriptors before and after 50 failed launches: \(rounds)")
    }
}
