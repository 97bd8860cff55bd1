import ArgumentParser
import Foundation
import GitSource
import Logging

/// Issue 3's figures: listing and peeling 10,000 tags, and a no-op fetch with 100 and 10,000
/// tags over file:// and over smart HTTP, side by side with `git ls-remote` and `git fetch` of
/// the same remote in the same run.
///
/// The machine is shared with other builds, so the three contenders are interleaved (one run of
/// each per round, in a rotating order) rather than measured one after the other: a burst of
/// load then hits all of them alike. Medians and minimums are both reported.
struct GitBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "git", abstract: "Benchmark GitSource against the git CLI.")

    enum Transport: String, ExpressibleByArgument, CaseIterable {
        case file, http
    }

    @Option(help: "Rounds per measurement (median and minimum are reported).")
    var repetitions = 7

    @Option(name: .customLong("tags"), parsing: .upToNextOption, help: "Tag counts to measure.")
    var tagCounts: [Int] = [100, 10_000]

    @Option(name: .customLong("transport"), parsing: .upToNextOption, help: "Transports to measure: file, http.")
    var transports: [Transport] = [.file, .http]

    @Option(help: "The smart-HTTP test server script (default: scripts/git-http-server.py of this checkout).")
    var httpServer: String = GitBenchmark.defaultServerScript

    @Flag(help: "Leave the source repository's refs loose, as `git push` wrote them (a server normally has them packed).")
    var looseSource = false

    @Flag(help: "Only run Lockstep's no-op sync `repetitions` times (for valgrind/callgrind), print nothing else.")
    var profileSync = false

    func run() async throws {
        if !profileSync {
            print("| transport | tags | Lockstep no-op fetch ms, median (min) | git ls-remote ms, median (min) | git fetch --prune ms, median (min) | Lockstep / ls-remote (medians) | list + peel all tags ms, median (min) |")
            print("|---|---:|---:|---:|---:|---:|---:|")
        }
        for transport in transports {
            for count in tagCounts {
                try await measure(transport: transport, tags: count)
            }
        }
    }

    private func measure(transport: Transport, tags count: Int) async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = scratch.appendingPathComponent("served")
        let source = root.appendingPathComponent("source.git").path
        try git(["init", "-q", "--bare", source])
        let work = scratch.appendingPathComponent("work").path
        try git(["init", "-q", "-b", "main", work])
        try git(["-C", work, "commit", "-q", "--allow-empty", "-m", "base"])
        let head = try git(["-C", work, "rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let updates = (0..<count).map { "create refs/tags/dev/v1.0.\($0) \(head)\n" }.joined()
        try git(["-C", work, "update-ref", "--stdin"], input: updates)
        try git(["-C", work, "push", "-q", source, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        // A server's repository has its refs packed (gc does it); `git push` leaves them loose.
        if !looseSource { try git(["-C", source, "pack-refs", "--all"]) }

        var server: HTTPServer?
        defer { server?.stop() }
        let url: String
        switch transport {
        case .file:
            url = "file://" + source
        case .http:
            let started = try HTTPServer(script: httpServer, root: root.path, stateDir: scratch.appendingPathComponent("server").path)
            server = started
            url = "http://127.0.0.1:\(started.port)/source.git"
        }

        let mirror = GitMirror(remote: Remote(url: url), path: scratch.appendingPathComponent("mirror.git").path, logger: Logger(label: "bench"))
        _ = try await mirror.sync()
        if profileSync {
            for _ in 0..<repetitions { _ = try await mirror.sync() }
            return
        }
        let cliMirror = scratch.appendingPathComponent("cli.git").path
        try git(["clone", "-q", "--mirror", url, cliMirror])

        var fetch: [Duration] = [], lsRemote: [Duration] = [], cliFetch: [Duration] = []
        for round in 0..<repetitions {
            // Rotate who goes first so that no contender always runs on a warm (or cold) cache.
            for slot in 0..<3 {
                switch (slot + round) % 3 {
                case 0: fetch.append(try await time { let report = try await mirror.sync(); precondition(!report.changed) })
                case 1: lsRemote.append(try await time { try gitQuiet(["ls-remote", url]) })
                default: cliFetch.append(try await time { try gitQuiet(["-C", cliMirror, "fetch", "-q", "--prune", "origin"]) })
                }
            }
        }
        var list: [Duration] = []
        for _ in 0..<repetitions { list.append(try await time { _ = try await mirror.tags(matching: "*", components: 2) }) }
        let ratio = milliseconds(median(fetch)) / milliseconds(median(lsRemote))
        print("| \(transport.rawValue)\(looseSource ? " (loose source refs)" : "") | \(count) | \(summary(fetch)) | \(summary(lsRemote)) | \(summary(cliFetch)) | \(String(format: "%.2f", ratio))x | \(summary(list)) |")
    }

    private func summary(_ samples: [Duration]) -> String {
        String(format: "%.1f (%.1f)", milliseconds(median(samples)), milliseconds(samples.min() ?? .zero))
    }

    private func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000
    }

    private func median(_ samples: [Duration]) -> Duration {
        samples.sorted()[samples.count / 2]
    }

    private func time(_ body: () async throws -> Void) async throws -> Duration {
        let start = ContinuousClock.now
        try await body()
        return ContinuousClock.now - start
    }

    /// Runs git to completion and returns its standard output.
    @discardableResult
    private func git(_ arguments: [String], input: String? = nil) throws -> String {
        let io = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-io-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: io + ".in"); try? FileManager.default.removeItem(atPath: io + ".out") }
        try Data((input ?? "").utf8).write(to: URL(fileURLWithPath: io + ".in"))
        let pid = try Spawn.start("/usr/bin/git", arguments, environment: Self.gitEnvironment, stdin: io + ".in", stdout: io + ".out")
        guard Spawn.wait(pid) == 0 else { throw ValidationError("git \(arguments.first ?? "") failed") }
        return (try? String(contentsOfFile: io + ".out", encoding: .utf8)) ?? ""
    }

    /// Runs git with its output thrown away: what is timed is git, not the capture of its output.
    private func gitQuiet(_ arguments: [String]) throws {
        let pid = try Spawn.start("/usr/bin/git", arguments, environment: Self.gitEnvironment, stdin: "/dev/null", stdout: "/dev/null")
        guard Spawn.wait(pid) == 0 else { throw ValidationError("git \(arguments.first ?? "") failed") }
    }

    private static let gitEnvironment = [
        "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": NSTemporaryDirectory(),
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.test",
    ]

    /// `Sources/lockstep-bench/GitBenchmark.swift` → `<package>/scripts/git-http-server.py`.
    static var defaultServerScript: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/git-http-server.py").path
    }
}

/// The test suite's smart-HTTP server (`git http-backend` behind Python on 127.0.0.1), started
/// for one measurement and killed after it.
private final class HTTPServer {
    let port: Int
    private let pid: pid_t

    init(script: String, root: String, stateDir: String) throws {
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        let portFile = stateDir + "/port"
        let pid = try Spawn.start("/usr/bin/python3", [script, "--root", root, "--port-file", portFile, "--stats-file", stateDir + "/stats.json"],
                              environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], stdin: "/dev/null", stdout: "/dev/null")
        // The script writes the port file (by rename) only once its socket listens.
        let deadline = ContinuousClock.now.advanced(by: .seconds(15))
        while true {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8),
               let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                self.port = port
                self.pid = pid
                return
            }
            guard kill(pid, 0) == 0, ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                _ = Spawn.wait(pid)
                throw ValidationError("the git HTTP server did not start")
            }
            usleep(20_000)
        }
    }

    func stop() {
        kill(pid, SIGTERM)
        _ = Spawn.wait(pid)
    }
}

/// Starts children with `posix_spawn` and a clean signal state. Foundation's `Process` hands its
/// children the signal mask of the dispatch thread that spawns them, which blocks SIGTERM and
/// others: a server started that way ignores `terminate()`, and git children measured that way
/// would not run as they do from a shell.
private enum Spawn {
    static func start(_ executable: String, _ arguments: [String], environment: [String: String],
                      stdin: String, stdout: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        if let closeFrom { _ = closeFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw ValidationError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The child's exit status (128 + signal when killed).
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` is hidden from Swift (it needs
    /// `_GNU_SOURCE`): looked up at run time, so no descriptor of this process leaks into a child.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(address, to: CloseFrom.self)
    }()
}
