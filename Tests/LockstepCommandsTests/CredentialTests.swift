import APITestSupport
import Foundation
import LockstepCore
import Testing

/// Where the server URL and the token come from: flags, then the environment, then the
/// client config; and that a token, wherever it came from, is never printed.
///
/// The acting identity is read off the backend's call log: each token belongs to one
/// identity, so "reject … by bob" proves bob's token was the one sent.
@Suite("lockstep client credentials")
struct CredentialTests {
    /// Rejects run-dev-1 and returns the identity the server saw, or nil when nothing was accepted.
    private func actingIdentity(_ arguments: [String], home: Scratch, environment: [String: String] = [:],
                                backend: CannedBackend, sourceLocation: SourceLocation = #_sourceLocation) async throws -> (CLIResult, String?) {
        let before = backend.calls.mutations.count
        let result = try await CLI.run(["reject", "run-dev-1", "--reason", "precedence"] + arguments, home: home,
                                       environment: environment, sourceLocation: sourceLocation)
        let line = backend.calls.mutations.dropFirst(before).first
        return (result, line.map { String($0.split(separator: " ").last ?? "") })
    }

    @Test("the token: --token-file over the environment over the client config")
    func tokenPrecedence() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        let alice = try home.tokenFile(Fixture.aliceToken, name: "alice.token")
        let bob = try home.tokenFile(Fixture.bobToken, name: "bob.token")
        let carol = try home.tokenFile(Fixture.carolToken, name: "carol.token")
        try await withServer(backend) { url in
            // The default client config names carol's token file, relative to the config's folder.
            try home.write(".config/lockstep/client.yaml", "server: \(url)\ntoken_file: ../../carol.token\n")

            let flag = try await actingIdentity(["--token-file", alice], home: home,
                                                environment: ["LOCKSTEP_TOKEN": Fixture.bobToken], backend: backend)
            #expect(flag.0.status == 0 && flag.1 == "alice", "\(flag.0.stderr)")

            let envValue = try await actingIdentity([], home: home, environment: ["LOCKSTEP_TOKEN": Fixture.bobToken], backend: backend)
            #expect(envValue.0.status == 0 && envValue.1 == "bob", "\(envValue.0.stderr)")

            let envFile = try await actingIdentity([], home: home, environment: ["LOCKSTEP_TOKEN_FILE": bob], backend: backend)
            #expect(envFile.0.status == 0 && envFile.1 == "bob", "\(envFile.0.stderr)")

            let config = try await actingIdentity([], home: home, backend: backend)
            #expect(config.0.status == 0 && config.1 == "carol", "\(config.0.stderr)")

            // XDG_CONFIG_HOME moves the default client config.
            try home.write("xdg/lockstep/client.yaml", "server: \(url)\ntoken_file: \(alice)\n")
            let xdg = try await actingIdentity([], home: home, environment: ["XDG_CONFIG_HOME": home.url.path + "/xdg"], backend: backend)
            #expect(xdg.0.status == 0 && xdg.1 == "alice", "\(xdg.0.stderr)")

            // --client-config replaces the default file, and ~/ means HOME.
            let other = try home.write("other.yaml", "server: \(url)\ntoken_file: ~/bob.token\n")
            let named = try await actingIdentity(["--client-config", other], home: home, backend: backend)
            #expect(named.0.status == 0 && named.1 == "bob", "\(named.0.stderr)")

            // Both variables at once is ambiguous about who acts: refused, nothing sent.
            let both = try await actingIdentity([], home: home,
                                                environment: ["LOCKSTEP_TOKEN": Fixture.bobToken, "LOCKSTEP_TOKEN_FILE": carol],
                                                backend: backend)
            #expect(both.0.status == 1 && both.1 == nil)
            #expect(both.0.stderr.contains("both LOCKSTEP_TOKEN_FILE and LOCKSTEP_TOKEN are set"))
        }
    }

    @Test("the server: --server over LOCKSTEP_SERVER over the client config")
    func serverPrecedence() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        let closed = try BoundSocket(listening: false)
        let dead = "http://127.0.0.1:\(closed.port)"
        let token = try home.tokenFile(Fixture.aliceToken)
        try await withServer(backend) { url in
            try home.write(".config/lockstep/client.yaml", "server: \(dead)\ntoken_file: \(token)\n")
            let flag = try await CLI.run(["status", "--server", url], home: home, environment: ["LOCKSTEP_SERVER": dead])
            #expect(flag.status == 0, "\(flag.stderr)")
            let env = try await CLI.run(["status"], home: home, environment: ["LOCKSTEP_SERVER": url])
            #expect(env.status == 0, "\(env.stderr)")
            let file = try await CLI.run(["status"], home: home)
            #expect(file.status == 5, "the config's server is the dead one")
            try home.write(".config/lockstep/client.yaml", "server: \(url)/\ntoken_file: \(token)\n")
            let fixed = try await CLI.run(["status"], home: home)
            #expect(fixed.status == 0, "a trailing slash is fine: \(fixed.stderr)")
        }
    }

    @Test("missing settings are named with every place they may come from")
    func missing() async throws {
        let home = try Scratch()
        let nothing = try await CLI.run(["status"], home: home)
        #expect(nothing.status == 1)
        #expect(nothing.stderr == "error: configuration: no server: pass --server URL, set LOCKSTEP_SERVER, or put server: in "
                + "\(home.url.path)/.config/lockstep/client.yaml; no token: pass --token-file FILE, set LOCKSTEP_TOKEN_FILE "
                + "(or LOCKSTEP_TOKEN), or put token_file: in \(home.url.path)/.config/lockstep/client.yaml\n")
        let noToken = try await CLI.run(["status", "--server", "http://127.0.0.1:1"], home: home)
        #expect(noToken.status == 1)
        #expect(noToken.stderr.contains("no token: ") && !noToken.stderr.contains("no server"))
        let noFile = try await CLI.run(["status", "--client-config", home.url.path + "/absent.yaml"], home: home)
        #expect(noFile.status == 1 && noFile.stderr.contains("absent.yaml does not exist"))
        let absentToken = try await CLI.run(["status", "--server", "http://127.0.0.1:1", "--token-file", "/nonexistent/token"],
                                            home: home)
        #expect(absentToken.status == 1 && absentToken.stderr.contains("/nonexistent/token (--token-file) does not exist"))
    }

    @Test("client config and token files are checked without ever quoting a secret")
    func badFiles() async throws {
        let home = try Scratch()
        // A token pasted into the config instead of a file: refused, and not echoed.
        let pasted = try home.write("pasted.yaml", "server: http://127.0.0.1:1\ntoken: \(Fixture.aliceToken)\n")
        let refused = try await CLI.run(["status", "--client-config", pasted], home: home)
        #expect(refused.status == 1 && refused.stderr.contains("token: is not accepted"))
        let unknown = try home.write("unknown.yaml", "server: http://127.0.0.1:1\nsever: x\n")
        let typo = try await CLI.run(["status", "--client-config", unknown], home: home)
        #expect(typo.status == 1 && typo.stderr.contains("unknown key \"sever\""))
        let broken = try home.write("broken.yaml", "server: [\(Fixture.bobToken)\n")
        let syntax = try await CLI.run(["status", "--client-config", broken], home: home)
        #expect(syntax.status == 1 && syntax.stderr.contains("not valid YAML"))
        // Two tokens in one file, or a token with a space: refused before anything is sent.
        let twoLines = try home.write("two.token", "\(Fixture.aliceToken)\n\(Fixture.bobToken)\n")
        let two = try await CLI.run(["status", "--server", "http://127.0.0.1:1", "--token-file", twoLines], home: home)
        #expect(two.status == 1 && two.stderr.contains("does not hold a single well-formed token"))
        let badValue = try await CLI.run(["status", "--server", "http://127.0.0.1:1"], home: home,
                                         environment: ["LOCKSTEP_TOKEN": "\(Fixture.carolToken) \(Fixture.aliceToken)"])
        #expect(badValue.status == 1 && badValue.stderr.contains("LOCKSTEP_TOKEN does not hold a single well-formed token"))
        let empty = try home.write("empty.token", "\n")
        let none = try await CLI.run(["status", "--server", "http://127.0.0.1:1", "--token-file", empty], home: home)
        #expect(none.status == 1 && none.stderr.contains("holds no token"))
    }

    @Test("a token file other users can read draws a warning; the command still works")
    func readableTokenFile() async throws {
        let home = try Scratch()
        let open = try home.write("open.token", Fixture.aliceToken + "\n", mode: 0o644)
        try await withServer { url in
            let result = try await CLI.run(["status", "--server", url, "--token-file", open], home: home)
            #expect(result.status == 0)
            #expect(result.stderr == "warning: the token file \(open) can be read by other users (mode 644); run chmod 600 \(open)\n")
        }
    }

    @Test("token files: a symlink is judged by its target, /dev/stdin works, and /dev/zero costs nothing")
    func specialTokenFiles() async throws {
        let home = try Scratch()
        let target = try home.tokenFile(Fixture.aliceToken, name: "real.token")
        let link = home.url.appendingPathComponent("link.token").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let zero = home.url.appendingPathComponent("zero.token").path
        try FileManager.default.createSymbolicLink(atPath: zero, withDestinationPath: "/dev/zero")
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let linked = try await CLI.run(["status", "--server", url, "--token-file", link], home: home)
            #expect(linked.status == 0 && linked.stderr.isEmpty, "no warning about the link's own mode 777: \(linked.stderr)")
            let piped = try await CLI.run(["reject", "run-dev-1", "--reason", "stdin", "--server", url, "--token-file", "/dev/stdin"],
                                          home: home, stdin: try home.tokenFile(Fixture.bobToken))
            #expect(piped.status == 0, "\(piped.stderr)")
            let endless = try await CLI.run(["status", "--server", url, "--token-file", zero], home: home)
            #expect(endless.status == 1 && endless.stderr.contains("is larger than 8192 bytes"))
        }
        #expect(backend.calls.mutations == ["accepted reject run-dev-1 by bob"])
    }

    @Test("a token over plain http to another host draws a warning")
    func plainHTTPWarning() async throws {
        let home = try Scratch()
        let result = try await CLI.run(["status", "--server", "http://lockstep.invalid:8420", "--timeout", "5"], home: home,
                                       environment: ["LOCKSTEP_TOKEN": Fixture.aliceToken])
        #expect(result.stderr.hasPrefix("warning: the token is sent to lockstep.invalid over plain http"))
        #expect(result.status == 5)
    }

    @Test("no option takes a token value, and help says why")
    func noTokenOption() async throws {
        let home = try Scratch()
        // The parser refuses it, and (checked by CLI.run) does not echo the value back.
        let attempt = try await CLI.run(["status", "--server", "http://127.0.0.1:1", "--token", Fixture.aliceToken], home: home)
        #expect(attempt.status == 64)
        let joined = try await CLI.run(["approve", "run-dev-1", "--token=\(Fixture.bobToken)"], home: home)
        #expect(joined.status == 64)
        let help = try await CLI.run(["status", "--help"], home: home)
        #expect(help.stdout.contains("No option takes the token itself"))
    }
}
