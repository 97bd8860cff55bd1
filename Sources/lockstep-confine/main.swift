/// lockstep-confine: starts one program (terraform) inside a Landlock file-system sandbox and a
/// PID namespace of its own, so that nothing it starts outlives it.
///
/// Why: `terraform plan` runs code from the delivery repository before anyone approved it
/// (`external` data sources, providers, `local-exec`). Unconfined it runs as the daemon's user and
/// can read the apply credentials (docs/THREAT-MODEL.md §1.2), forge approvals in the SQLite store, poison the shared
/// plugin cache or read other runs' directories. The daemon starts every terraform through this
/// launcher with those paths hidden and only the run's own directory writable. The same code can
/// also leave a process behind (`setsid`, a double fork) that rewrites files after the command
/// ended or holds the daemon's output pipes open; the PID namespace stops that.
///
/// Usage:
///     lockstep-confine [--hide PATH]... [--read PATH]... [--write PATH]... -- /abs/program [ARG...]
///     lockstep-confine --no-landlock -- /abs/program [ARG...]
///     lockstep-confine [--no-landlock] --check
///
/// What it guarantees, for the program and every process it starts (Landlock is inherited
/// and cannot be removed):
/// - nothing under a `--hide` path can be read, listed, executed or written, except what
///   `--read` (read and execute) or `--write` grants again; hidden paths are resolved through
///   symlinks, so hiding `/var/run/x` hides the real `/run/x`;
/// - nothing is writable except `--write` paths and the sinks `/dev/null`, `/dev/zero`, `/dev/full`
///   (shells and terraform open `/dev/null` for writing);
/// - with Landlock ABI 6 or newer it cannot signal processes outside the sandbox (the daemon);
/// - no process it starts outlives it: the program runs in a new PID namespace (inside a user
///   namespace that maps only the caller's own uid and gid, so no privilege is gained) whose
///   PID 1 is a small init of this launcher's. The init reaps orphans and exits with the
///   program's status as soon as the program exits; the kernel then kills everything still in
///   the namespace, whatever it did (`setsid`, double forks, ignoring SIGTERM, closing its
///   descriptors). Killing the launcher (SIGKILL) kills the init (parent-death signal) and so
///   the whole namespace;
/// - if any of that cannot be set up, the program is not started (exit 126): never unconfined.
///
/// `--no-landlock` skips the file-system sandbox and keeps the PID namespace: the daemon's
/// `terraform.confine: false` still gets descendants contained. It cannot be combined with
/// `--hide`, `--read` or `--write` (a caller must not believe paths are hidden when they are not).
///
/// Signals: the launcher, the init and the program share the caller's process group. The caller
/// interrupts the program by signalling that group (SIGINT, then SIGKILL); the launcher and the
/// init ignore SIGINT, SIGTERM, SIGHUP and SIGQUIT and forward nothing, so the program receives
/// the group's signal exactly once (a second SIGINT makes terraform abort without cleaning up).
/// The program starts with the signal mask the launcher was started with.
///
/// What it does not do: network access is untouched (terraform must reach clouds); before ABI 6
/// signals are not restricted; abstract unix sockets are not scoped and connecting to a named
/// unix socket is not a file access Landlock controls; every file outside the hidden paths stays
/// readable; processes of the same user that run outside the sandbox are unaffected (it confines
/// the program, not the user); files opened before the exec (inherited descriptors) stay usable
/// (the caller passes only stdin, stdout and stderr); whether a hidden file exists, and its
/// metadata (`stat`), stays visible: Landlock controls opening, not looking up, so hide
/// directories rather than rely on unguessable names. `/proc` is the caller's, so the program
/// sees the namespace's processes under their outer process ids.
///
/// Grants only add: a `--hide` inside a `--read` or `--write` path is overridden by that grant,
/// so the caller must keep hidden paths out of the granted ones.
///
/// For the caller: terraform writes temporary files and its providers' unix sockets under
/// `TMPDIR`, so `TMPDIR` must point inside a `--write` path (with `/tmp` unwritable, terraform
/// stops at "Couldn't set up logging tempfile").
///
/// Side effects of reading "everything but": the directories above a hidden path (`/`, `/run`, …)
/// cannot be listed, only their entries opened by name, and an entry created in one of them after
/// the launch is not readable (the rules are a snapshot; this fails closed).
///
/// Exit codes: 125 usage error, 126 Landlock or the PID namespace unavailable, or a rule could not
/// be added, 127 the program could not be executed; otherwise the program's own status, or
/// 128 + N when a signal N ended it (as a shell reports it).
///
/// Under systemd the unit must allow user and PID namespaces (`RestrictNamespaces=user pid`).
///
/// No Foundation on purpose: the launcher is small enough to audit in one sitting.

import CLandlock
import Glibc

// MARK: - Failing

/// Why the launch stopped. The code is the exit status, so a caller can tell a bad command line
/// (its bug) from a kernel that cannot confine (the host's problem) from a missing program.
/// The description names a path or an argument and the errno text, nothing else.
struct ConfineError: Error, CustomStringConvertible {
    enum Code: Int32 {
        case usage = 125
        case sandbox = 126
        case exec = 127
    }

    let code: Code
    let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// Writes one `lockstep-confine: ` line to stderr.
func report(_ error: ConfineError) {
    let line = Array("lockstep-confine: \(error.description)\n".utf8)
    line.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(2, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
            if written <= 0 { break }
            offset += written
        }
    }
}

func errorText(_ number: Int32) -> String {
    String(cString: strerror(number))
}

// MARK: - Paths

/// An absolute path as its components, kept as bytes: file names need not be UTF-8 and a hidden
/// path compared after a lossy decode would hide the wrong file.
typealias Components = [[UInt8]]

func display(_ components: Components) -> String {
    "/" + components.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
}

func cPath(_ components: Components) -> [CChar] {
    var bytes: [UInt8] = []
    for component in components {
        bytes.append(UInt8(ascii: "/"))
        bytes.append(contentsOf: component)
    }
    if bytes.isEmpty { bytes.append(UInt8(ascii: "/")) }
    bytes.append(0)
    return bytes.map { CChar(bitPattern: $0) }
}

/// Absolute, with `//`, `.` and a trailing `/` removed. `..` is refused rather than resolved:
/// lexical `..` through a symlink means something else to the kernel, and a sandbox must not
/// guess which directory the caller meant.
func normalise(_ raw: [UInt8], option: String) throws(ConfineError) -> Components {
    let shown = "\(option) \(String(decoding: raw, as: UTF8.self))"
    guard raw.first == UInt8(ascii: "/") else { throw ConfineError(.usage, "\(shown): the path must be absolute") }
    var components: Components = []
    for part in raw.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
        if part.elementsEqual([UInt8(ascii: ".")]) { continue }
        if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
            throw ConfineError(.usage, "\(shown): '..' is not allowed in a path")
        }
        components.append(Array(part))
    }
    return components
}

/// The real location of a hidden path: realpath of its longest existing prefix plus the rest.
/// Landlock judges the file a name resolves to, so hiding a symlink's name would hide nothing.
/// A path that does not exist yet is still hidden where it would be created.
func resolveHidden(_ components: Components) throws(ConfineError) -> Components {
    var length = components.count
    while length > 0 {
        let prefix = Array(components[0..<length])
        if let real = realpath(cPath(prefix), nil) {
            defer { free(real) }
            let bytes = Array(UnsafeBufferPointer(start: real, count: strlen(real))).map { UInt8(bitPattern: $0) }
            return try normalise(bytes, option: "--hide") + components[length...]
        }
        length -= 1
    }
    return components
}

// MARK: - Arguments

struct Request {
    /// False only with `--no-landlock`: the PID namespace without the file-system sandbox.
    var landlock = true
    var hide: [Components] = []
    var read: [Components] = []
    var write: [Components] = []
    var program: UnsafeMutablePointer<CChar>
    /// argv for the program, nil-terminated, pointing into our own argv (no re-encoding).
    var programArguments: [UnsafeMutablePointer<CChar>?]
}

func bytes(_ argument: UnsafeMutablePointer<CChar>) -> [UInt8] {
    Array(UnsafeBufferPointer(start: argument, count: strlen(argument))).map { UInt8(bitPattern: $0) }
}

enum Mode {
    case check(landlock: Bool)
    case run(Request)
}

func parse(_ argv: [UnsafeMutablePointer<CChar>]) throws(ConfineError) -> Mode {
    var arguments = argv.dropFirst()
    var landlock = true
    if let first = arguments.first, bytes(first) == Array("--no-landlock".utf8) {
        landlock = false
        arguments = arguments.dropFirst()
    }
    if arguments.count == 1, let only = arguments.first, bytes(only) == Array("--check".utf8) {
        return .check(landlock: landlock)
    }
    var hide: [Components] = []
    var read: [Components] = []
    var write: [Components] = []
    var index = arguments.startIndex
    while index < arguments.endIndex {
        let option = String(decoding: bytes(arguments[index]), as: UTF8.self)
        switch option {
        case "--hide", "--read", "--write":
            guard landlock else { throw ConfineError(.usage, "\(option) cannot be combined with --no-landlock") }
            let valueIndex = index + 1
            guard valueIndex < arguments.endIndex else { throw ConfineError(.usage, "\(option) needs a PATH") }
            let path = try normalise(bytes(arguments[valueIndex]), option: option)
            if option == "--hide" { hide.append(path) } else if option == "--read" { read.append(path) } else { write.append(path) }
            index = valueIndex + 1
        case "--":
            let programIndex = index + 1
            guard programIndex < arguments.endIndex else { throw ConfineError(.usage, "-- needs a program") }
            let program = arguments[programIndex]
            guard bytes(program).first == UInt8(ascii: "/") else {
                throw ConfineError(.usage, "program \(String(decoding: bytes(program), as: UTF8.self)): must be an absolute path")
            }
            let programArguments = arguments[programIndex...].map { Optional($0) } + [nil]
            return .run(Request(landlock: landlock, hide: hide, read: read, write: write, program: program,
                                programArguments: programArguments))
        case "--check":
            throw ConfineError(.usage, "--check takes no other arguments (but a leading --no-landlock)")
        case "--no-landlock":
            throw ConfineError(.usage, "--no-landlock must come first")
        default:
            throw ConfineError(.usage, "unknown argument '\(option)' (expected --hide, --read, --write, --no-landlock or -- /abs/program)")
        }
    }
    throw ConfineError(.usage, "missing '-- /abs/program'")
}

// MARK: - Rights

/// The rights a kernel of this ABI knows. Handling a right the kernel does not know is refused
/// by it, and a right left unhandled is simply allowed, so every known one is handled.
func handledRights(abi: Int32) -> UInt64 {
    var rights: UInt64 = LS_ACCESS_FS_EXECUTE | LS_ACCESS_FS_WRITE_FILE | LS_ACCESS_FS_READ_FILE
        | LS_ACCESS_FS_READ_DIR | LS_ACCESS_FS_REMOVE_DIR | LS_ACCESS_FS_REMOVE_FILE | LS_ACCESS_FS_MAKE_CHAR
        | LS_ACCESS_FS_MAKE_DIR | LS_ACCESS_FS_MAKE_REG | LS_ACCESS_FS_MAKE_SOCK | LS_ACCESS_FS_MAKE_FIFO
        | LS_ACCESS_FS_MAKE_BLOCK | LS_ACCESS_FS_MAKE_SYM
    if abi >= 2 { rights |= LS_ACCESS_FS_REFER }
    if abi >= 3 { rights |= LS_ACCESS_FS_TRUNCATE }
    if abi >= 5 { rights |= LS_ACCESS_FS_IOCTL_DEV }
    return rights
}

/// Rights that make sense on a file rule; the kernel refuses directory rights there.
let fileRights: UInt64 = LS_ACCESS_FS_EXECUTE | LS_ACCESS_FS_WRITE_FILE | LS_ACCESS_FS_READ_FILE
    | LS_ACCESS_FS_TRUNCATE | LS_ACCESS_FS_IOCTL_DEV

let readRights: UInt64 = LS_ACCESS_FS_EXECUTE | LS_ACCESS_FS_READ_FILE | LS_ACCESS_FS_READ_DIR

/// Read, execute, write, create (files, directories, symlinks, fifos, sockets: providers talk
/// over unix sockets), remove, rename and truncate. Device nodes are not creatable.
let writeRights: UInt64 = readRights | LS_ACCESS_FS_WRITE_FILE | LS_ACCESS_FS_REMOVE_DIR
    | LS_ACCESS_FS_REMOVE_FILE | LS_ACCESS_FS_MAKE_DIR | LS_ACCESS_FS_MAKE_REG | LS_ACCESS_FS_MAKE_SOCK
    | LS_ACCESS_FS_MAKE_FIFO | LS_ACCESS_FS_MAKE_SYM | LS_ACCESS_FS_REFER | LS_ACCESS_FS_TRUNCATE

/// The data sinks every shell and terraform open for writing; they hold nothing to steal.
let sinks: [Components] = [
    [Array("dev".utf8), Array("null".utf8)],
    [Array("dev".utf8), Array("zero".utf8)],
    [Array("dev".utf8), Array("full".utf8)],
]
let sinkRights: UInt64 = LS_ACCESS_FS_READ_FILE | LS_ACCESS_FS_WRITE_FILE | LS_ACCESS_FS_TRUNCATE

// MARK: - Ruleset

struct Ruleset {
    let fd: Int32
    let handled: UInt64

    /// Adds `rights` beneath the object `pathFD` refers to, trimmed to file rights for a
    /// non-directory and to what this kernel handles. Any failure stops the launch.
    func allow(_ rights: UInt64, on pathFD: Int32, named name: Components) throws(ConfineError) {
        var status = stat()
        guard fstat(pathFD, &status) == 0 else {
            throw ConfineError(.sandbox, "cannot stat \(display(name)): \(errorText(errno))")
        }
        let isDirectory = (status.st_mode & S_IFMT) == S_IFDIR
        let allowed = (isDirectory ? rights : rights & fileRights) & handled
        guard ls_landlock_add_path_rule(fd, pathFD, allowed) == 0 else {
            throw ConfineError(.sandbox, "cannot add a rule for \(display(name)): \(errorText(errno))")
        }
    }

    /// A `--read`/`--write` path; it must exist (a typo must not silently grant nothing).
    func allow(_ rights: UInt64, on path: Components, option: String) throws(ConfineError) {
        let pathFD = open(cPath(path), ls_o_path() | O_CLOEXEC)
        guard pathFD >= 0 else {
            let number = errno
            let code: ConfineError.Code = number == ENOENT || number == ENOTDIR ? .usage : .sandbox
            throw ConfineError(code, "\(option) \(display(path)): \(errorText(number))")
        }
        defer { close(pathFD) }
        try allow(rights, on: pathFD, named: path)
    }

    /// Read and execute everywhere except under the hidden paths, as the complement: Landlock
    /// only grants, and a rule on a directory covers its whole subtree, so the hidden paths'
    /// ancestors get no rule; their other entries get one each, and the walk descends only
    /// into ancestors. Symlinks get no rule: access is judged where they point.
    func allowAllExcept(_ hidden: [Components]) throws(ConfineError) {
        if hidden.contains(where: \.isEmpty) { return }  // hiding "/" leaves nothing readable
        let root = open("/", ls_o_path() | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw ConfineError(.sandbox, "cannot open /: \(errorText(errno))") }
        defer { close(root) }
        try walk(directory: root, at: [], hidden: hidden)
    }

    private func walk(directory: Int32, at path: Components, hidden: [Components]) throws(ConfineError) {
        let listingFD = openat(directory, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard listingFD >= 0, let stream = fdopendir(listingFD) else {
            throw ConfineError(.sandbox, "cannot list \(display(path)): \(errorText(errno))")
        }
        defer { closedir(stream) }
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw ConfineError(.sandbox, "cannot list \(display(path)): \(errorText(errno))") }
                return
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) {
                    Array(UnsafeBufferPointer(start: $0, count: strlen($0))).map { UInt8(bitPattern: $0) }
                }
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            let child = path + [name]
            if hidden.contains(child) { continue }
            let childFD = openat(directory, name.map { CChar(bitPattern: $0) } + [0], ls_o_path() | O_NOFOLLOW | O_CLOEXEC)
            guard childFD >= 0 else {
                if errno == ENOENT { continue }  // removed while we listed: nothing to grant
                throw ConfineError(.sandbox, "cannot open \(display(child)): \(errorText(errno))")
            }
            defer { close(childFD) }
            var status = stat()
            guard fstat(childFD, &status) == 0 else {
                throw ConfineError(.sandbox, "cannot stat \(display(child)): \(errorText(errno))")
            }
            let kind = status.st_mode & S_IFMT
            if kind == S_IFLNK { continue }
            let isAncestor = hidden.contains { $0.count > child.count && Array($0[0..<child.count]) == child }
            if isAncestor && kind == S_IFDIR {
                try walk(directory: childFD, at: child, hidden: hidden)
            } else {
                try allow(readRights, on: childFD, named: child)
            }
        }
    }
}

// MARK: - Main

func landlockABI() throws(ConfineError) -> Int32 {
    let abi = ls_landlock_abi_version()
    guard abi >= 1 else { throw ConfineError(.sandbox, "Landlock is unavailable: \(errorText(errno))") }
    return abi
}

/// Confines this process, starts the program in its namespace and exits with its status;
/// returns only by throwing, before the program was started.
func launch() throws(ConfineError) -> Never {
    let argv = (0..<Int(CommandLine.argc)).compactMap { CommandLine.unsafeArgv[$0] }
    switch try parse(argv) {
    case .check(let landlock):
        let files = landlock ? "landlock abi \(try landlockABI()), " : "no landlock, "
        try checkNamespace()
        let line = Array("\(files)pid namespace\n".utf8)
        _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        exit(0)
    case .run(let request):
        var rulesetFD: Int32 = -1
        if request.landlock {
            let abi = try landlockABI()
            let handled = handledRights(abi: abi)
            // ABI 6: the program cannot signal (kill, SIGSTOP, …) the daemon or other runs.
            let scoped: UInt64 = abi >= 6 ? LS_SCOPE_SIGNAL : 0
            rulesetFD = ls_landlock_create_ruleset(handled, scoped)
            guard rulesetFD >= 0 else { throw ConfineError(.sandbox, "cannot create a Landlock ruleset: \(errorText(errno))") }
            let ruleset = Ruleset(fd: rulesetFD, handled: handled)
            try ruleset.allowAllExcept(request.hide.map(resolveHidden))
            for path in request.read { try ruleset.allow(readRights, on: path, option: "--read") }
            for path in request.write { try ruleset.allow(writeRights, on: path, option: "--write") }
            for sink in sinks {
                let sinkFD = open(cPath(sink), ls_o_path() | O_CLOEXEC)
                if sinkFD < 0 { continue }  // a minimal /dev without it: nothing to grant
                try ruleset.allow(sinkRights, on: sinkFD, named: sink)
                close(sinkFD)
            }
        }
        // Before the ruleset is enforced: writing the id maps under /proc/self is a write the
        // sandbox would refuse.
        try enterNamespace()
        if rulesetFD >= 0 {
            guard ls_landlock_restrict_self(rulesetFD) == 0 else {
                throw ConfineError(.sandbox, "cannot enforce the Landlock ruleset: \(errorText(errno))")
            }
            close(rulesetFD)
        }
        try supervise(request)
    }
}

do {
    try launch()
} catch {
    report(error)
    exit(error.code.rawValue)
}
