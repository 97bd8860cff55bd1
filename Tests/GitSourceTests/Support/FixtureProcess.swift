import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure of a test fixture (git command, server start-up, key generation).
///
/// Test-support code only. `description` carries the failing command's stderr
/// because a fixture that fails must say why loudly; fixtures only ever hold
/// throw-away test credentials.
struct FixtureError: Error, CustomStringConvertible {
    /// What went wrong; a struct with static members so it can grow.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        let rawValue: String
        var description: String { rawValue }

        static let commandFailed = Code(rawValue: "commandFailed")
        static let serverNotReady = Code(rawValue: "serverNotReady")
        static let serverExited = Code(rawValue: "serverExited")
        static let missingTool = Code(rawValue: "missingTool")
        static let io = Code(rawValue: "io")
    }

    let code: Code
    /// The command or fixture step, e.g. `git tag -a v1`.
    let context: String
    /// stderr of the command, or the server's log.
    let detail: String

    var description: String {
        detail.isEmpty ? "\(code): \(context)" : "\(code): \(context)\n\(detail)"
    }
}

/// The outcome of one finished command.
struct ProcessResult: Sendable {
    let status: Int32
    let stdout: Data
    let stderr: Data

    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    var succeeded: Bool { status == 0 }
}

/// Runs commands without a shell: an argument array, an explicit environment.
///
/// Children are started with `posix_spawn`, not Foundation.Process: on Linux,
/// Foundation learns that a child exited when a socket the child inherited is
/// closed, so a child that closes inherited descriptors (sshd does, at start)
/// makes Foundation block in `waitpid` on a live process and stop reaping
/// every other child. Every child here also gets a clean signal mask (the
/// spawning dispatch thread blocks SIGTERM, which children would inherit and
/// then ignore `stop()`), its own process group, and no inherited descriptors
/// beyond 0-2 (a server holding another child's pipe would stall that child).
enum FixtureProcess {
    /// Runs `executable` to completion.
    ///
    /// stdin/stdout/stderr go through temporary files, not pipes: a pipe that
    /// fills while we wait for exit deadlocks.
    static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String],
        directory: URL? = nil,
        input: Data? = nil
    ) throws -> ProcessResult {
        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-proc-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let inURL = tmp.appendingPathComponent("in")
        let outURL = tmp.appendingPathComponent("out")
        let errURL = tmp.appendingPathComponent("err")
        try (input ?? Data()).write(to: inURL)
        let pid = try spawn(
            executable, arguments, environment: environment, directory: directory?.path,
            stdin: inURL.path, stdout: outURL.path, stderr: errURL.path)
        let status = waitForExit(pid, blocking: true) ?? -1
        return ProcessResult(
            status: status,
            stdout: (try? Data(contentsOf: outURL)) ?? Data(),
            stderr: (try? Data(contentsOf: errURL)) ?? Data())
    }

    /// Like `run`, but a non-zero exit throws with the command's stderr.
    @discardableResult
    static func check(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String],
        directory: URL? = nil,
        input: Data? = nil
    ) throws -> ProcessResult {
        let result = try run(executable, arguments, environment: environment, directory: directory, input: input)
        guard result.succeeded else {
            throw FixtureError(
                code: .commandFailed,
                context: "\((executable as NSString).lastPathComponent) \(arguments.joined(separator: " ")) exited \(result.status)",
                detail: result.stderrText)
        }
        return result
    }

    /// The first existing executable among `candidates`.
    static func findExecutable(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts a child in its own process group; `stderr == nil` shares stdout's file.
    static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String], directory: String?,
        stdin: String, stdout: String, stderr: String?
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        guard let closeFrom = GlibcSpawnExtensions.addCloseFrom, let changeDirectory = GlibcSpawnExtensions.addChdir else {
            throw FixtureError(code: .missingTool, context: "glibc >= 2.34 needed (posix_spawn_file_actions_addclosefrom_np)", detail: "")
        }
        _ = closeFrom(&actions, 3)
        if let directory { _ = changeDirectory(&actions, directory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else {
            throw FixtureError(
                code: .missingTool, context: "cannot start \(executable)", detail: String(cString: strerror(rc)))
        }
        return pid
    }

    /// Reaps `pid`: its exit status (128+signal when killed), or nil if it
    /// is still running and `blocking` is false.
    static func waitForExit(_ pid: pid_t, blocking: Bool) -> Int32? {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if rc == pid { break }
            if rc == 0 { return nil }
            if errno == EINTR { continue }
            return -1  // ECHILD: already reaped elsewhere
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// glibc's `_np` spawn actions are hidden from Swift's Glibc module (they
/// need `_GNU_SOURCE`), so look them up at run time.
private enum GlibcSpawnExtensions {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias Chdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static let addCloseFrom: CloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")
    static let addChdir: Chdir? = symbol("posix_spawn_file_actions_addchdir_np")

    private static func symbol<T>(_ name: String) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: T.self)
    }
}

/// A long-running child (a server) that the fixture owns and must stop.
final class BackgroundProcess {
    let pid: pid_t
    let logURL: URL
    private var exitStatus: Int32?

    /// Starts `executable`; stdout and stderr go to `logURL`.
    init(_ executable: String, _ arguments: [String], environment: [String: String], logURL: URL) throws {
        self.logURL = logURL
        try Data().write(to: logURL)
        pid = try FixtureProcess.spawn(
            executable, arguments, environment: environment, directory: nil,
            stdin: "/dev/null", stdout: logURL.path, stderr: nil)
    }

    var isRunning: Bool {
        if exitStatus == nil { exitStatus = FixtureProcess.waitForExit(pid, blocking: false) }
        return exitStatus == nil
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Stops the child and everything in its process group, and reaps it.
    ///
    /// Signalling the group also reaches sshd's per-connection children and
    /// in-flight CGI processes; SIGKILL follows if SIGTERM is ignored for 5 s.
    /// Returns once the whole group is gone (or after a 10 s deadline).
    func stop() {
        if isRunning {
            _ = kill(-pid, SIGTERM)
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while isRunning && ContinuousClock.now < deadline { usleep(5_000) }
            if isRunning {
                _ = kill(-pid, SIGKILL)
                exitStatus = FixtureProcess.waitForExit(pid, blocking: true)
            }
        }
        // Orphaned group members (already signalled) are reaped by init; wait
        // for that so "no server process left" holds when stop() returns.
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while !processGroupIsGone(pid) && ContinuousClock.now < deadline { usleep(5_000) }
        if !processGroupIsGone(pid) { _ = kill(-pid, SIGKILL) }
    }

    deinit {
        // A test that forgot stop() must not leave a server behind.
        if exitStatus == nil { stop() }
    }
}

/// Loopback TCP helpers used to pick ports and wait for readiness.
enum LoopbackTCP {
    /// A port that was free a moment ago (bind to port 0, read it back, close).
    ///
    /// Only for servers that cannot report the port they bound (sshd); callers
    /// retry with a new port if the server then fails with "address in use".
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError(code: .io, context: "socket()", detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        var addr = loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw FixtureError(code: .io, context: "bind(127.0.0.1:0)", detail: String(cString: strerror(errno))) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard named == 0 else { throw FixtureError(code: .io, context: "getsockname", detail: String(cString: strerror(errno))) }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Connects once; returns the first bytes the server sends within 1 s
    /// (empty when `readBanner` is false), or nil if the connection failed.
    static func probe(port: UInt16, readBanner: Bool) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = loopback(port: port)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        guard readBanner else { return "" }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// Polls until the port accepts (and, when `bannerPrefix` is set, sends a
    /// banner starting with it), the child dies, or the deadline passes.
    static func waitUntilReady(
        port: UInt16, bannerPrefix: String?, child: BackgroundProcess, timeout: Duration = .seconds(15), what: String
    ) throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            guard child.isRunning else {
                throw FixtureError(code: .serverExited, context: "\(what) exited before it was ready", detail: child.log)
            }
            if let received = probe(port: port, readBanner: bannerPrefix != nil),
               bannerPrefix.map({ received.hasPrefix($0) }) ?? true {
                return
            }
            usleep(20_000)
        }
        throw FixtureError(code: .serverNotReady, context: "\(what) not ready on 127.0.0.1:\(port) within \(timeout)", detail: child.log)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }
}

/// True when no process with this pid exists any more (it was reaped).
func processIsGone(_ pid: Int32) -> Bool {
    kill(pid, 0) != 0 && errno == ESRCH
}

/// True when no process in the group led by `pid` is left (nothing it forked survived).
func processGroupIsGone(_ pid: Int32) -> Bool {
    kill(-pid, 0) != 0 && errno == ESRCH
}
