import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// lockstep-confine attacked through real processes: a shell that tries to read what it must not,
// write where it must not and signal the process that started it. Every attack has an
// unconfined control run of the same command, so a test cannot pass because the command was wrong.

enum Paths {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// The real launcher, built by `swift build --build-tests` with the tests.
    static func confine() throws -> String {
        let path = root.appendingPathComponent(".build/debug/lockstep-confine").path
        try #require(FileManager.default.isExecutableFile(atPath: path), "build first: \(path) is missing")
        return path
    }
}

/// A scratch directory of its own per test, removed afterwards.
final class Scratch {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("confine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func at(_ relative: String) -> String { (path as NSString).appendingPathComponent(relative) }

    @discardableResult
    func file(_ relative: String, _ content: String) throws -> String {
        let target = at(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try content.write(toFile: target, atomically: false, encoding: .utf8)
        return target
    }

    func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: at(relative)) }

    func read(_ relative: String) throws -> String { try String(contentsOfFile: at(relative), encoding: .utf8) }
}

struct Outcome {
    let status: Int32
    let stdout: String
    let stderr: String
    var output: String { stdout + stderr }
}

/// Runs `executable` with output captured in files outside the scratch directory (the sandbox
/// writes to the inherited descriptors; a pipe could fill up and hang the test).
func run(_ executable: String, _ arguments: [String], in directory: String,
         environment: [String: String] = [:]) throws -> Outcome {
    let outputs = try Scratch()
    let outPath = outputs.at("stdout")
    let errPath = outputs.at("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.environment = ["PATH": "/usr/bin:/bin", "LANG": "C"].merging(environment) { _, new in new }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return Outcome(status: process.terminationStatus,
                   stdout: try outputs.read("stdout"), stderr: try outputs.read("stderr"))
}

/// `lockstep-confine OPTIONS -- /bin/sh -c SCRIPT`, run in the scratch directory.
func confinedShell(_ options: [String], _ script: String, in scratch: Scratch,
                   environment: [String: String] = [:]) throws -> Outcome {
    try run(try Paths.confine(), options + ["--", "/bin/sh", "-c", script], in: scratch.path, environment: environment)
}

/// The same script without the sandbox: the control that shows the attack works otherwise.
func unconfinedShell(_ script: String, in scratch: Scratch) throws -> Outcome {
    try run("/bin/sh", ["-c", script], in: scratch.path)
}

func landlockABI() throws -> Int {
    let check = try run(try Paths.confine(), ["--check"], in: "/")
    try #require(check.status == 0, "Landlock unavailable: \(check.stderr)")
    // "landlock abi 7, pid namespace"
    let fields = check.stdout.split(whereSeparator: { $0 == " " || $0 == "," })
    let number = fields.firstIndex(of: "abi").flatMap { fields.index(after: $0) < fields.endIndex ? Int(fields[fields.index(after: $0)]) : nil }
    return try #require(number)
}

@Suite("lockstep-confine")
struct ConfineTests {
    @Test("a hidden file cannot be read and its content appears nowhere; a sibling, other files and the environment are there")
    func hiddenFile() throws {
        let scratch = try Scratch()
        let secret = "apply-credential-\(UUID().uuidString)"
        let hidden = try scratch.file("secret.txt", secret)
        try scratch.file("sibling.txt", "sibling-content")
        let script = "cat sibling.txt; cat /bin/sh >/dev/null && echo elsewhere-ok; echo \"env=$PROBE\"; cat secret.txt"

        let control = try unconfinedShell(script, in: scratch)
        #expect(control.stdout.contains(secret))

        let attack = try confinedShell(["--hide", hidden], script, in: scratch, environment: ["PROBE": "inherited"])
        #expect(attack.status != 0)
        #expect(!attack.output.contains(secret))
        #expect(attack.stdout.contains("sibling-content"))
        #expect(attack.stdout.contains("elsewhere-ok"))
        #expect(attack.stdout.contains("env=inherited"))
        #expect(attack.stderr.contains("Permission denied"))
    }

    @Test("a hidden directory cannot be listed or read; --read inside it grants reading, not writing")
    func hiddenDirectory() throws {
        let scratch = try Scratch()
        let topSecret = "state-key-\(UUID().uuidString)"
        try scratch.file("vault/a.txt", topSecret)
        try scratch.file("vault/sub/b.txt", "granted-content")
        let script = """
            ls vault || echo list-denied; cat vault/a.txt || echo read-denied
            cat vault/sub/b.txt; echo more >> vault/sub/b.txt || echo write-denied
            touch vault/sub/new || echo create-denied; ls vault/sub
            """

        let control = try unconfinedShell("ls vault; cat vault/a.txt", in: scratch)
        #expect(control.stdout.contains(topSecret))
        #expect(control.stdout.contains("sub"))

        let attack = try confinedShell(["--hide", scratch.at("vault"), "--read", scratch.at("vault/sub")], script, in: scratch)
        #expect(!attack.output.contains(topSecret))
        #expect(attack.stdout.contains("list-denied"))
        #expect(attack.stdout.contains("read-denied"))
        #expect(attack.stdout.contains("granted-content"))
        #expect(attack.stdout.contains("write-denied"))
        #expect(attack.stdout.contains("create-denied"))
        #expect(try scratch.read("vault/sub/b.txt") == "granted-content")
        #expect(!scratch.exists("vault/sub/new"))
    }

    @Test("--write DIR allows create, write, rename, truncate and remove inside it; the scratch dir and /tmp stay unwritable")
    func writeDirectory() throws {
        let scratch = try Scratch()
        try FileManager.default.createDirectory(atPath: scratch.at("work"), withIntermediateDirectories: true)
        let tmpProbe = "/tmp/confine-probe-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: tmpProbe) }
        let script = """
            set -e
            echo data > work/f; mv work/f work/g; mkdir work/d; mv work/g work/d/h; cat work/d/h
            echo long-content > work/kept; : > work/kept; rm work/d/h; rmdir work/d; echo inside-done
            set +e
            echo x > outside.txt || echo scratch-denied; echo x > \(tmpProbe) || echo tmp-denied
            mkdir newdir || echo mkdir-denied
            """

        let outcome = try confinedShell(["--write", scratch.at("work")], script, in: scratch)
        #expect(outcome.stdout.contains("data"))
        #expect(outcome.stdout.contains("inside-done"))
        #expect(try scratch.read("work/kept") == "")
        #expect(!scratch.exists("work/d"))
        #expect(outcome.stdout.contains("scratch-denied"))
        #expect(outcome.stdout.contains("tmp-denied"))
        #expect(outcome.stdout.contains("mkdir-denied"))
        #expect(!scratch.exists("outside.txt"))
        #expect(!scratch.exists("newdir"))
        #expect(!FileManager.default.fileExists(atPath: tmpProbe))
    }

    @Test("--write FILE allows rewriting that file only")
    func writeFile() throws {
        let scratch = try Scratch()
        let granted = try scratch.file("plan.out", "old")
        let outcome = try confinedShell(["--write", granted],
                                        "echo new > plan.out; echo x > other.out || echo other-denied", in: scratch)
        #expect(try scratch.read("plan.out") == "new\n")
        #expect(outcome.stdout.contains("other-denied"))
        #expect(!scratch.exists("other.out"))
    }

    @Test("hiding a symlink hides its target; a hidden path that does not exist yet is accepted")
    func symlinkAndMissing() throws {
        let scratch = try Scratch()
        let secret = "token-\(UUID().uuidString)"
        try scratch.file("real/secret", secret)
        try FileManager.default.createSymbolicLink(atPath: scratch.at("link"), withDestinationPath: scratch.at("real"))
        let script = "cat real/secret; cat link/secret; echo ran"

        let control = try unconfinedShell(script, in: scratch)
        #expect(control.stdout.contains(secret))

        let attack = try confinedShell(["--hide", scratch.at("link")], script, in: scratch)
        #expect(!attack.output.contains(secret))
        #expect(attack.stdout.contains("ran"))

        let missing = try confinedShell(["--hide", scratch.at("not/yet/there")], "cat real/secret", in: scratch)
        #expect(missing.status == 0)
        #expect(missing.stdout.contains(secret))
    }

    @Test("children inherit the sandbox: a grandchild shell cannot read the hidden file")
    func childrenInherit() throws {
        let scratch = try Scratch()
        let secret = "nested-\(UUID().uuidString)"
        let hidden = try scratch.file("secret", secret)
        let script = "sh -c 'sh -c \"cat secret\"'"

        let control = try unconfinedShell(script, in: scratch)
        #expect(control.stdout.contains(secret))

        let attack = try confinedShell(["--hide", hidden], script, in: scratch)
        #expect(attack.status != 0)
        #expect(!attack.output.contains(secret))
    }

    @Test("the sandboxed program cannot signal the process that started it (Landlock ABI 6 signal scope)")
    func cannotSignalOutside() throws {
        // The signal scope exists from ABI 6 on; below that the launcher cannot restrict signals
        // (documented in its doc comment), so there is nothing to assert.
        guard try landlockABI() >= 6 else { return }
        let scratch = try Scratch()
        let script = "kill -0 \(getpid()) && echo signalled || echo refused; kill -0 $$ && echo self-ok"

        let control = try unconfinedShell(script, in: scratch)
        #expect(control.stdout.contains("signalled"))

        let attack = try confinedShell([], script, in: scratch)
        #expect(attack.stdout.contains("refused"))
        #expect(!attack.stdout.contains("signalled"))
        #expect(attack.stdout.contains("self-ok"))
    }

    @Test("usage errors exit 125, name the argument and never start the program",
          arguments: [
              (["/usr/bin/touch", "MARKER"], "--"),
              (["--", "usr/bin/touch", "MARKER"], "usr/bin/touch"),
              (["--hide", "SCRATCH/../etc", "--", "/usr/bin/touch", "MARKER"], "SCRATCH/../etc"),
              (["--write", "SCRATCH/missing", "--", "/usr/bin/touch", "MARKER"], "SCRATCH/missing"),
              (["--read", "relative", "--", "/usr/bin/touch", "MARKER"], "relative"),
              (["--frobnicate", "--", "/usr/bin/touch", "MARKER"], "--frobnicate"),
              (["--hide"], "--hide"),
          ])
    func usageErrors(arguments: [String], named: String) throws {
        let scratch = try Scratch()
        let marker = scratch.at("marker")
        func expand(_ text: String) -> String {
            text.replacingOccurrences(of: "MARKER", with: marker).replacingOccurrences(of: "SCRATCH", with: scratch.path)
        }

        let control = try run(try Paths.confine(), ["--write", scratch.path, "--", "/usr/bin/touch", marker], in: scratch.path)
        #expect(control.status == 0)
        #expect(scratch.exists("marker"))
        try FileManager.default.removeItem(atPath: marker)

        let outcome = try run(try Paths.confine(), arguments.map(expand), in: scratch.path)
        #expect(outcome.status == 125)
        #expect(outcome.stderr.hasPrefix("lockstep-confine: "))
        #expect(outcome.stderr.contains(expand(named)))
        #expect(!scratch.exists("marker"))
    }

    @Test("--check reports the Landlock ABI and the PID namespace and exits 0; --no-landlock --check only the namespace")
    func check() throws {
        let outcome = try run(try Paths.confine(), ["--check"], in: "/")
        #expect(outcome.status == 0)
        #expect(outcome.stdout.hasPrefix("landlock abi "))
        #expect(outcome.stdout.hasSuffix(", pid namespace\n"))
        #expect(try landlockABI() >= 1)
        let processesOnly = try run(try Paths.confine(), ["--no-landlock", "--check"], in: "/")
        #expect(processesOnly.status == 0)
        #expect(processesOnly.stdout == "no landlock, pid namespace\n")
    }

    @Test("a program that cannot be executed exits 127 and is named")
    func execFailure() throws {
        let scratch = try Scratch()
        let notExecutable = try scratch.file("plain.txt", "not a program")
        for program in [scratch.at("no-such-program"), notExecutable] {
            let outcome = try run(try Paths.confine(), ["--", program], in: scratch.path)
            #expect(outcome.status == 127)
            #expect(outcome.stderr.hasPrefix("lockstep-confine: "))
            #expect(outcome.stderr.contains(program))
        }
    }
}
