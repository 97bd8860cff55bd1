import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Nothing a command started through lockstep-confine outlives it. Each way plan-time code can
// try to leave a process behind (a new session, a double fork, closing every descriptor,
// ignoring SIGTERM and SIGINT) is run twice: without the launcher, where the process is shown
// to survive the command (the control: the escape works), and through the launcher, where it
// must be gone when the launcher returns.
//
// The leftover writes its own pid, read from /proc/self/stat: inside the launcher's PID
// namespace `$$` and `$!` are namespace pids, while /proc is the test's, so /proc/self names
// the process as this test sees it. A leftover is recognised by a marker in its command line
// (`sleep 100000.<digits>`, unique per test), so a reused pid is never mistaken for it.

/// One started process: its pid, and where its stdout and stderr went.
struct Spawned {
    let pid: pid_t
    let stdout: String
    let stderr: String
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` and `…_addchdir_np`, hidden from
/// Swift's Glibc module (declared only under `_GNU_SOURCE`).
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32)? = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32).self)
}()
private let addChdir: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32)? = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32).self)
}()

/// Starts `executable` with stdin on /dev/null, stdout and stderr in files of `scratch` and no
/// other descriptor of the test (so a leftover cannot hold anything of ours), in `scratch`.
/// Not Foundation.Process: its exit notification rides on a descriptor the child inherits, so
/// a leftover of the control run would make waiting for the shell wait for the leftover.
func spawn(_ executable: String, _ arguments: [String], in scratch: Scratch) throws -> Spawned {
    let stdout = scratch.at("stdout-\(UUID().uuidString.prefix(8))")
    let stderr = scratch.at("stderr-\(UUID().uuidString.prefix(8))")
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if rc == 0 { rc = posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600) }
    if rc == 0 { rc = posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600) }
    let closeFrom = try #require(addCloseFrom, "glibc 2.34 or newer is needed")
    let chdir = try #require(addChdir, "glibc 2.29 or newer is needed")
    if rc == 0 { rc = closeFrom(&actions, 3) }
    if rc == 0 { rc = scratch.path.withCString { chdir(&actions, $0) } }
    try #require(rc == 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let environment: [String] = ["PATH=/usr/bin:/bin", "LANG=C"]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    try #require(rc == 0, "cannot start \(executable): \(String(cString: strerror(rc)))")
    return Spawned(pid: pid, stdout: stdout, stderr: stderr)
}

/// Waits for `pid` and returns its exit status (128 + N for a signal, as a shell says).
func waitExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Whether a process whose command line contains `marker` runs as `pid` (a zombie has no
/// command line: it is dead).
func running(_ pid: pid_t, marker: String) -> Bool {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
    return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker)
}

/// Polls until `condition` holds or `seconds` passed; whether it held.
func within(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// The pid a leftover wrote to `file` (waiting for it: the leftover writes it asynchronously).
func leftoverPID(_ scratch: Scratch, _ file: String) throws -> pid_t {
    #expect(within(seconds: 10) { ((try? scratch.read(file)) ?? "").hasSuffix("\n") }, "the leftover never wrote its pid")
    return try #require(pid_t(try scratch.read(file).trimmingCharacters(in: .whitespacesAndNewlines)))
}

/// A way to leave a process behind. `body(marker)` is a shell fragment that starts the
/// leftover in the background; the leftover writes its outer pid to `pid` first.
struct Escape: CustomTestStringConvertible, Sendable {
    let name: String
    let body: @Sendable (String) -> String
    var testDescription: String { name }

    /// A shell script (for `sh -c`) that writes its pid to `pid`, then runs `then`.
    static func leftover(_ marker: String, then: String) -> String {
        "read -r p _ < /proc/self/stat; echo \"$p\" > pid; \(then) exec sleep \(marker)"
    }

    static let all: [Escape] = [
        Escape(name: "setsid (a new session and process group)") { marker in
            "setsid sh -c '\(leftover(marker, then: ""))' &"
        },
        Escape(name: "a double fork (reparented away from the command)") { marker in
            "( ( sh -c '\(leftover(marker, then: ""))' & ) & )"
        },
        Escape(name: "a process that closes all its descriptors") { marker in
            "setsid sh -c '\(leftover(marker, then: "exec 0<&- 1>&- 2>&-;"))' &"
        },
        Escape(name: "a process that ignores SIGTERM, SIGINT and SIGHUP") { marker in
            "sh -c '\(leftover(marker, then: "trap \"\" TERM INT HUP;"))' &"
        },
    ]
}

/// A unique `sleep` argument: 100000 seconds and random decimals, found in /proc.
func uniqueMarker() -> String { "100000.\(UInt32.random(in: 1_000_000...9_999_999))" }

@Suite("lockstep-confine containment")
struct ContainmentTests {
    @Test("a leftover survives its command without the launcher and is gone when the launcher returns", arguments: Escape.all)
    func leftoverDies(escape: Escape) throws {
        // The control: the same script without the launcher leaves the process running.
        let control = try Scratch()
        let controlMarker = uniqueMarker()
        let controlRun = try spawn("/bin/sh", ["-c", escape.body(controlMarker) + "\nuntil [ -s pid ]; do sleep 0.01; done"], in: control)
        #expect(waitExit(controlRun.pid) == 0)
        let survivor = try leftoverPID(control, "pid")
        #expect(within(seconds: 5) { running(survivor, marker: controlMarker) },
                "without the launcher the escape must work, or this test proves nothing")
        kill(survivor, SIGKILL)
        #expect(within(seconds: 5) { !running(survivor, marker: controlMarker) })

        // Through the launcher (Landlock on, only the scratch folder writable).
        let scratch = try Scratch()
        let marker = uniqueMarker()
        let launched = try spawn(try Paths.confine(), ["--write", scratch.path, "--", "/bin/sh", "-c",
                                                       escape.body(marker) + "\nuntil [ -s pid ]; do sleep 0.01; done; echo started"],
                                 in: scratch)
        let status = waitExit(launched.pid)
        let leftover = try leftoverPID(scratch, "pid")
        let stderr = try String(contentsOfFile: launched.stderr, encoding: .utf8)
        #expect(status == 0, "\(stderr)")
        #expect(try String(contentsOfFile: launched.stdout, encoding: .utf8) == "started\n")
        let gone = within(seconds: 2) { !running(leftover, marker: marker) }
        #expect(gone, "the leftover \(leftover) outlived the launcher")
        if !gone { kill(leftover, SIGKILL) }
    }

    @Test("--no-landlock: the PID namespace without the sandbox; the program writes anywhere it may and its leftover still dies")
    func processesOnly() throws {
        let scratch = try Scratch()
        let marker = uniqueMarker()
        let script = "echo \"pid=$$\"; echo written > outside.txt; \(Escape.all[0].body(marker))\nuntil [ -s pid ]; do sleep 0.01; done"

        // Landlock on and nothing granted: the same write is refused (the sandbox is real).
        let sandboxed = try spawn(try Paths.confine(), ["--", "/bin/sh", "-c", "echo written > outside.txt"], in: scratch)
        #expect(waitExit(sandboxed.pid) != 0)
        #expect(!scratch.exists("outside.txt"))

        let launched = try spawn(try Paths.confine(), ["--no-landlock", "--", "/bin/sh", "-c", script], in: scratch)
        let status = waitExit(launched.pid)
        let stderr = try String(contentsOfFile: launched.stderr, encoding: .utf8)
        #expect(status == 0, "\(stderr)")
        // PID 1 is the launcher's init; the program is its first child.
        #expect(try String(contentsOfFile: launched.stdout, encoding: .utf8) == "pid=2\n")
        #expect(try scratch.read("outside.txt") == "written\n")
        let leftover = try leftoverPID(scratch, "pid")
        let gone = within(seconds: 2) { !running(leftover, marker: marker) }
        #expect(gone, "the leftover \(leftover) outlived the launcher")
        if !gone { kill(leftover, SIGKILL) }
    }

    @Test("--no-landlock cannot be combined with --hide, --read or --write: exit 125, the program never runs",
          arguments: ["--hide", "--read", "--write"])
    func processesOnlyRefusesPaths(option: String) throws {
        let scratch = try Scratch()
        let marker = scratch.at("marker")
        let launched = try spawn(try Paths.confine(), ["--no-landlock", option, scratch.path, "--", "/usr/bin/touch", marker],
                                 in: scratch)
        #expect(waitExit(launched.pid) == 125)
        let stderr = try String(contentsOfFile: launched.stderr, encoding: .utf8)
        #expect(stderr.hasPrefix("lockstep-confine: "))
        #expect(stderr.contains(option) && stderr.contains("--no-landlock"), "\(stderr)")
        #expect(!scratch.exists("marker"))
    }

    @Test("where no user namespace can be created the launcher refuses: exit 126, the program never runs, --check fails; never unconfined",
          arguments: [false, true])
    func noNamespaceRefused(landlock: Bool) throws {
        let scratch = try Scratch()
        let marker = scratch.at("marker")
        let options = landlock ? ["--write", scratch.path] : ["--no-landlock"]
        // A user namespace of the test's own whose limit on further user namespaces is 0 (as
        // user.max_user_namespaces=0 or a unit's RestrictNamespaces= would make it); the control
        // leaves the limit alone.
        func limited(_ limit: Bool, _ arguments: [String]) throws -> (status: Int32, stderr: String) {
            let script = (limit ? "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; " : "") + "exec \"$@\""
            let launched = try spawn("/usr/bin/unshare", ["--user", "--map-root-user", "/bin/sh", "-c", script, "sh",
                                                          try Paths.confine()] + arguments, in: scratch)
            let status = waitExit(launched.pid)
            return (status, try String(contentsOfFile: launched.stderr, encoding: .utf8))
        }

        let control = try limited(false, options + ["--", "/usr/bin/touch", marker])
        #expect(control.status == 0, "\(control.stderr)")
        #expect(scratch.exists("marker"), "the control: the launcher runs the program inside a user namespace")
        try FileManager.default.removeItem(atPath: marker)

        let refused = try limited(true, options + ["--", "/usr/bin/touch", marker])
        #expect(refused.status == 126, "\(refused.stderr)")
        #expect(refused.stderr.hasPrefix("lockstep-confine: cannot create a PID namespace"), "\(refused.stderr)")
        #expect(refused.stderr.contains("RestrictNamespaces="))
        #expect(!scratch.exists("marker"))
        let check = try limited(true, (landlock ? [] : ["--no-landlock"]) + ["--check"])
        #expect(check.status == 126, "\(check.stderr)")
    }

    @Test("SIGKILL of the launcher kills the whole namespace: the program and its setsid leftover",
          arguments: [false, true])
    func killedLauncher(landlock: Bool) throws {
        let scratch = try Scratch()
        let marker = uniqueMarker()
        let programMarker = uniqueMarker()
        // The program writes its own pid, starts the leftover, then stays in the foreground.
        let script = """
            read -r p _ < /proc/self/stat; echo "$p" > program.tmp
            \(Escape.all[0].body(marker))
            until [ -s pid ]; do sleep 0.01; done; mv program.tmp program
            exec sleep \(programMarker)
            """
        let options = landlock ? ["--write", scratch.path] : ["--no-landlock"]
        let launched = try spawn(try Paths.confine(), options + ["--", "/bin/sh", "-c", script], in: scratch)
        #expect(within(seconds: 10) { scratch.exists("program") }, "the program never started")
        let program = try #require(pid_t(try scratch.read("program").trimmingCharacters(in: .whitespacesAndNewlines)))
        let leftover = try leftoverPID(scratch, "pid")
        #expect(within(seconds: 5) { running(program, marker: programMarker) })
        #expect(running(leftover, marker: marker))

        kill(launched.pid, SIGKILL)
        #expect(waitExit(launched.pid) == 128 + SIGKILL)
        let gone = within(seconds: 5) { !running(program, marker: programMarker) && !running(leftover, marker: marker) }
        #expect(gone, "the namespace outlived its launcher")
        if !gone {
            kill(program, SIGKILL)
            kill(leftover, SIGKILL)
        }
    }
}
