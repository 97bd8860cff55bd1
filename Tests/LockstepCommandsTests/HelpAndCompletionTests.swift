import APITestSupport
import Foundation
import Testing

/// The help an operator reads, pinned by golden files, and shell completion: the scripts
/// swift-argument-parser generates, and run ids and environments completed from the daemon.
///
/// Regenerate the golden files after an intended change with
/// `LOCKSTEP_UPDATE_GOLDEN=1 swift test --skip-build --filter HelpAndCompletionTests`, then
/// read the diff before committing it.
@Suite("lockstep help and completion")
struct HelpAndCompletionTests {
    static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    /// Compares `text` with the golden file, or rewrites the file when LOCKSTEP_UPDATE_GOLDEN is set.
    private func expectGolden(_ text: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = Self.goldenDirectory.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["LOCKSTEP_UPDATE_GOLDEN"] != nil {
            try FileManager.default.createDirectory(at: Self.goldenDirectory, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: file)
            return
        }
        let expected = try #require(try? String(contentsOf: file, encoding: .utf8),
                                    "no golden file \(file.path); run with LOCKSTEP_UPDATE_GOLDEN=1 to create it",
                                    sourceLocation: sourceLocation)
        #expect(text == expected, "help changed; if intended, regenerate with LOCKSTEP_UPDATE_GOLDEN=1", sourceLocation: sourceLocation)
    }

    @Test("lockstep --help matches its golden file")
    func rootHelp() async throws {
        let result = try await CLI.run(["--help"], home: try Scratch())
        #expect(result.status == 0)
        try expectGolden(result.stdout, "lockstep-help.txt")
    }

    @Test("lockstep approve --help matches its golden file")
    func approveHelp() async throws {
        let result = try await CLI.run(["approve", "--help"], home: try Scratch())
        #expect(result.status == 0)
        try expectGolden(result.stdout, "approve-help.txt")
    }

    @Test("every client command documents the exit statuses and where the token comes from", arguments: [
        "status", "runs", "show", "approve", "reject", "rollback", "resolve",
    ])
    func helpDocumentsExitStatuses(command: String) async throws {
        // One line per paragraph, so the checks do not depend on where help wraps.
        let result = try await CLI.run([command, "--help"], home: try Scratch(), environment: ["COLUMNS": "2000"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Exit status: 0 done; 1 usage or other error"))
        for status in ["3 refused", "4 not found", "5 the daemon is unreachable", "6 unauthorized"] {
            #expect(result.stdout.contains(status), "\(command) --help does not document \(status)")
        }
        #expect(result.stdout.contains("No option takes the token itself"))
        #expect(result.stdout.contains("--json"))
    }

    @Test("completion scripts generate for bash, zsh and fish, and the bash one parses")
    func completionScripts() async throws {
        let home = try Scratch()
        for shell in ["bash", "zsh", "fish"] {
            let result = try await CLI.run(["--generate-completion-script", shell], home: home)
            #expect(result.status == 0, "\(shell): \(result.stderr)")
            for word in ["approve", "resolve", "rollback", "awaiting_approval", "---completion approve"] {
                #expect(result.stdout.contains(word), "\(shell) script lacks \(word)")
            }
        }
        let bash = try await CLI.run(["--generate-completion-script", "bash"], home: home)
        let script = try home.write("lockstep.bash", bash.stdout, mode: 0o644)
        let check = try await Shell.run("bash", ["-n", script], home: home)
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test("TAB in bash completes run ids and environments from the daemon")
    func bashCompletesFromTheDaemon() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        let token = try home.tokenFile(Fixture.aliceToken)
        let bash = try await CLI.run(["--generate-completion-script", "bash"], home: home)
        let script = try home.write("lockstep.bash", bash.stdout, mode: 0o644)
        try await withServer(backend) { url in
            // A loaded CI machine may need more than the interactive 3 s; the test is about
            // which candidates come back, not about speed.
            let environment = ["LOCKSTEP_SERVER": url, "LOCKSTEP_TOKEN_FILE": token, "LOCKSTEP_COMPLETION_TIMEOUT": "60"]
            let approve = try await Shell.complete(script: script, line: "lockstep approve ", home: home, environment: environment)
            #expect(approve == ["run-dev-1", "run-prod-1"], "only runs awaiting approval")
            let resolve = try await Shell.complete(script: script, line: "lockstep resolve run-", home: home, environment: environment)
            #expect(resolve == ["run-stg-0"], "only interrupted runs")
            let show = try await Shell.complete(script: script, line: "lockstep show run-d", home: home, environment: environment)
            #expect(show == ["run-dev-1", "run-dev-2"], "open runs with the typed prefix")
            let rollback = try await Shell.complete(script: script, line: "lockstep rollback ", home: home, environment: environment)
            #expect(rollback == ["dev", "prod", "staging"])
            let target = try await Shell.complete(script: script, line: "lockstep runs --target app/", home: home,
                                                  environment: environment)
            #expect(target == ["app/dev", "app/prod", "app/staging"])
            let state = try await Shell.complete(script: script, line: "lockstep runs --state inter", home: home,
                                                 environment: environment)
            #expect(state == ["interrupted"])
            // Connection flags typed on the line are used too.
            let typed = try await Shell.complete(script: script, line: "lockstep approve --server \(url) --token-file \(token) ",
                                                 home: home, environment: ["LOCKSTEP_COMPLETION_TIMEOUT": "60"])
            #expect(typed == ["run-dev-1", "run-prod-1"])
        }
        // With the daemon gone (or a wrong token) a completion offers nothing and prints no error into the shell.
        let closed = try BoundSocket(listening: false)
        let down = try await Shell.complete(script: script, line: "lockstep approve ", home: home,
                                            environment: ["LOCKSTEP_SERVER": "http://127.0.0.1:\(closed.port)", "LOCKSTEP_TOKEN_FILE": token])
        #expect(down.isEmpty)
        #expect(backend.calls.mutations.isEmpty)
    }
}

/// Runs programs other than lockstep (bash) for the completion tests.
enum Shell {
    static func run(_ program: String, _ arguments: [String], home: Scratch,
                    environment: [String: String] = [:]) async throws -> CLIResult {
        let environment = ["PATH": CLI.binary.deletingLastPathComponent().path + ":/usr/bin:/bin", "HOME": home.url.path,
                           "LANG": "C.UTF-8"].merging(environment) { $1 }
        return try await Subprocess.run(URL(fileURLWithPath: "/usr/bin/env"), [program] + arguments, environment: environment,
                                        home: home)
    }

    /// What bash offers for TAB at the end of `line`, using the generated completion script.
    static func complete(script: String, line: String, home: Scratch, environment: [String: String]) async throws -> [String] {
        let driver = """
            source "$1"
            line="$2"
            read -r -a COMP_WORDS <<< "$line"
            [[ "$line" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE="$line"
            COMP_POINT=${#line}
            cur="${COMP_WORDS[COMP_CWORD]}"
            prev="${COMP_WORDS[COMP_CWORD-1]}"
            COMPREPLY=()
            _lockstep lockstep "$cur" "$prev"
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let result = try await run("bash", ["-c", driver, "driver", script, line], home: home, environment: environment)
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init).filter { !$0.isEmpty }.sorted()
    }
}
