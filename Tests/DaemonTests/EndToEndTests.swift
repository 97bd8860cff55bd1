import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The main job end to end on the real `lockstep serve` process, operated only through the
/// real `lockstep` client verbs (docs/CONTRACT.md §2, §5): a merged release goes dev → staging → prod,
/// each step planned by the daemon, shown, approved by people who did not tag it, applied by
/// real terraform and verified; prod needs two of its two allowed approvers, and approvals the
/// gate refuses (an identity prod does not trust, a digest that is not the plan's) change
/// nothing that was stored or applied.
@Suite(.serialized)
struct EndToEndTests {
    @Test("dev → staging → prod through the CLI: two approvers for prod, refused approvals change nothing, audit intact after SIGTERM")
    func promotionThroughTheCLI() async throws {
        let world = try DaemonWorld(pipeline: .devStagingProd)
        defer { world.cleanup() }
        try world.writeTokenFiles()
        let daemon = try await world.startReadyDaemon()

        // A merged pull request tagged dev/v1.0.0 by the releaser (dave, no identity here).
        try world.release("1.0.0")
        let commit = try world.git(["rev-parse", "dev/v1.0.0^{commit}"])

        let dev = try await world.waitThroughCLI(tag: "dev/v1.0.0", state: "awaiting_approval")
        try world.approveThroughCLI(dev, as: "alice")
        _ = try await world.waitThroughCLI(tag: "dev/v1.0.0", state: "verified")

        // The same commit promoted to staging.
        try world.git(["tag", "-a", "-m", "staging/v1.0.0", "staging/v1.0.0", commit])
        try world.publish()
        let staging = try await world.waitThroughCLI(tag: "staging/v1.0.0", state: "awaiting_approval")
        try world.approveThroughCLI(staging, as: "bob")
        _ = try await world.waitThroughCLI(tag: "staging/v1.0.0", state: "verified")

        // And to prod, which needs alice and bob.
        try world.git(["tag", "-a", "-m", "prod/v1.0.0", "prod/v1.0.0", commit])
        try world.publish()
        let prod = try await world.waitThroughCLI(tag: "prod/v1.0.0", state: "awaiting_approval")
        let digest = try world.digestShown(prod)
        let before = try world.evidence(prod)
        #expect(before.state == "awaiting_approval")
        #expect(before.approvals.isEmpty)
        #expect(before.prodState == nil, "prod was never applied before its approvals")

        // Refused: carol is an approver elsewhere, but not for prod.
        let carol = try world.cli(["approve", prod, "--digest", digest, "--json"], as: "carol")
        #expect(carol.status == 3, "refused is exit 3: \(carol)")
        #expect(carol.out.contains("refused_identity_not_allowed"), "\(carol.out)")
        #expect(try world.evidence(prod) == before, "carol's refused approval changed nothing")

        // Refused: alice quotes a digest that is not the plan's (one hex digit changed).
        let wrong = String(digest.dropLast()) + (digest.hasSuffix("0") ? "1" : "0")
        let quotedWrong = try world.cli(["approve", prod, "--digest", wrong, "--json"], as: "alice")
        #expect(quotedWrong.status == 3, "refused is exit 3: \(quotedWrong)")
        #expect(quotedWrong.out.contains("refused_wrong_digest"), "\(quotedWrong.out)")
        #expect(try world.evidence(prod) == before, "a wrong digest changed nothing")

        // alice approves: 1 of 2, still waiting and still not applied.
        try world.approveThroughCLI(prod, as: "alice")
        let oneOfTwo = try world.evidence(prod)
        #expect(oneOfTwo.state == "awaiting_approval", "one approval of two does not release prod")
        #expect(oneOfTwo.approvals == ["alice"])
        #expect(oneOfTwo.prodState == nil && oneOfTwo.applies == before.applies)

        // bob approves: applied and verified.
        try world.approveThroughCLI(prod, as: "bob")
        _ = try await world.waitThroughCLI(tag: "prod/v1.0.0", state: "verified")
        let after = try world.evidence(prod)
        #expect(after.approvals.sorted() == ["alice", "bob"])

        // Terraform really applied each environment once, with release 1.0.0.
        #expect(world.applyCount == 3)
        #expect(after.applies == ["dev:1.0.0", "staging:1.0.0", "prod:1.0.0"])
        for environment in ["dev", "staging", "prod"] {
            let state = try String(contentsOf: world.stateFile(environment), encoding: .utf8)
            #expect(state.contains(#""release": "1.0.0""#), "\(environment).tfstate holds the applied release")
        }

        // The board through the CLI: 1.0.0 applied from the one commit in all three.
        let board = try world.cliJSON(["status", "--json"])
        let environments = board["environments"] as? [[String: Any]] ?? []
        #expect(environments.compactMap { $0["name"] as? String } == ["dev", "staging", "prod"])
        for environment in environments {
            let target = (environment["targets"] as? [[String: Any]])?.first
            let applied = target?["applied"] as? [String: Any]
            #expect(applied?["version"] as? String == "1.0.0", "\(environment)")
            #expect(applied?["commit"] as? String == commit, "\(environment)")
            #expect(target?["pending"] == nil || target?["pending"] is NSNull, "\(environment)")
        }

        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        #expect(daemon.terminationReason == .exit)
        #expect(daemon.terminationStatus == 0, "\(world.daemonLogs)")
        let audit = try run(try Paths.lockstep().path, ["audit", "verify", "--store", world.storePath])
        #expect(audit.status == 0, "\(audit)")
        #expect(audit.out.contains("audit log intact"), "\(audit.out)")
        #expect(!world.daemonLogs.contains("token-for-tests"), "no API token reaches the daemon's log")
    }
}

/// What a refused approval must leave alone: the run's state and approvals as the CLI shows
/// them, and what terraform applied (the apply log and prod's state file).
struct Evidence: Equatable {
    var state: String?
    var approvals: [String]
    var applies: [String]
    var prodState: Data?
}

extension DaemonWorld {
    func tokenFile(_ identity: String) -> String {
        scratch.appendingPathComponent("tokens/\(identity).token").path
    }

    /// One 0600 token file per identity, as an operator keeps them.
    func writeTokenFiles() throws {
        let directory = scratch.appendingPathComponent("tokens")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        for (identity, token) in tokens {
            let path = tokenFile(identity)
            try Data("\(token)\n".utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        }
    }

    /// The real client binary, talking to this world's daemon as `identity`.
    func cli(_ arguments: [String], as identity: String = "alice") throws -> (status: Int32, out: String, err: String) {
        try run(try Paths.lockstep().path, arguments, environment: [
            "PATH": "/usr/bin:/bin", "HOME": scratch.path, "LANG": "C",
            "LOCKSTEP_SERVER": "http://127.0.0.1:\(port)", "LOCKSTEP_TOKEN_FILE": tokenFile(identity),
        ])
    }

    func cliJSON(_ arguments: [String], as identity: String = "alice") throws -> [String: Any] {
        let result = try cli(arguments, as: identity)
        try #require(result.status == 0, "lockstep \(arguments) failed: \(result)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
    }

    /// Polls `lockstep runs --json` until the run of `tag` is in `state`; returns its id.
    /// A run that ends anywhere else fails at once, with the daemon's log.
    func waitThroughCLI(tag: String, state: String) async throws -> String {
        var found: String?
        try await eventually("\(tag) to reach \(state)", seconds: 45) {
            let runs = try cliJSON(["runs", "--json"])["runs"] as? [[String: Any]] ?? []
            guard let run = runs.first(where: { $0["tag"] as? String == tag }),
                  let current = run["state"] as? String else { return false }
            if ["failed", "rejected", "superseded", "expired", "interrupted", "no_changes"].contains(current) {
                Issue.record("the run of \(tag) ended \(current), not \(state): \(daemonLogs)")
                throw TimedOut(what: "\(tag) ended \(current)")
            }
            found = run["id"] as? String
            return current == state
        }
        return try #require(found)
    }

    /// The digest `lockstep show` prints for a reviewer to quote, checked against the API's.
    func digestShown(_ run: String) throws -> String {
        let shown = try cli(["show", run])
        try #require(shown.status == 0, "\(shown)")
        let lines = shown.out.split(separator: "\n").map(String.init)
        let index = try #require(lines.firstIndex(of: "digest to quote:"), "\(shown.out)")
        let digest = try #require(index + 1 < lines.count ? lines[index + 1] : nil)
        #expect(try cliJSON(["show", run, "--json"])["digest"] as? String == digest)
        #expect(shown.out.contains("lockstep approve \(run) --digest \(digest)"))
        return digest
    }

    /// `lockstep approve` with the digest `show` printed; exit 0 is required.
    func approveThroughCLI(_ run: String, as identity: String) throws {
        let digest = try digestShown(run)
        let approved = try cli(["approve", run, "--digest", digest], as: identity)
        try #require(approved.status == 0, "\(identity) could not approve \(run): \(approved)")
    }

    func evidence(_ run: String) throws -> Evidence {
        let detail = try cliJSON(["show", run, "--json"])
        let approvals = (detail["approvals"] as? [[String: Any]] ?? []).compactMap { $0["identity"] as? String }
        return Evidence(state: detail["state"] as? String, approvals: approvals, applies: appliedReleases,
                        prodState: try? Data(contentsOf: stateFile("prod")))
    }
}
