import APITestSupport
import Foundation
import LockstepCore
import LockstepHTTP
import Testing

/// Each client verb, run as the built binary against a real API server: the human form
/// shows what an operator needs, and `--json` is exactly the API's JSON.
@Suite("lockstep client verbs")
struct VerbTests {
    /// Runs `lockstep ARGS --server URL --token-file (alice's)`.
    static func run(_ arguments: [String], url: String, home: Scratch, token: String = Fixture.aliceToken,
                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> CLIResult {
        let tokenFile = try home.tokenFile(token)
        return try await CLI.run(arguments + ["--server", url, "--token-file", tokenFile], home: home,
                                 sourceLocation: sourceLocation)
    }

    @Test("status: a board with projects as rows, environments as columns in API order, and loud interrupted runs")
    func status() async throws {
        let home = try Scratch()
        try await withServer { url in
            let result = try await Self.run(["status"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let header = try #require(lines.first)
            // Columns in the order the API returns them (promotion order), not sorted.
            let dev = try #require(header.range(of: "dev"))
            let staging = try #require(header.range(of: "staging"))
            let prod = try #require(header.range(of: "prod (2 approvals)"))
            #expect(header.hasPrefix("PROJECT"))
            #expect(dev.lowerBound < staging.lowerBound && staging.lowerBound < prod.lowerBound)
            // Rows: app and net; net has no target in staging or prod.
            let appRow = try #require(lines.firstIndex { $0.hasPrefix("app ") })
            let netRow = try #require(lines.firstIndex { $0.hasPrefix("net ") })
            #expect(appRow < netRow)
            #expect(lines[appRow].contains("applied  1.1.0") && lines[appRow].contains("applied  1.0.0")
                    && lines[appRow].contains("applied  -"))
            #expect(lines[appRow + 1].contains("desired  1.2.0") && lines[appRow + 1].contains("desired  1.1.0 (pinned until a tag above 1.2.0)"))
            #expect(lines[appRow + 2].contains("pending  1.2.0 awaiting_approval")
                    && lines[appRow + 2].contains("pending  1.1.0 INTERRUPTED!!"))
            #expect(lines[netRow].contains("applied  2.0.0") && lines[netRow].hasSuffix("-"))
            // The applied value sits under its environment's column.
            let stagingColumn = header.distance(from: header.startIndex, to: staging.lowerBound)
            let appliedStaging = try #require(lines[appRow].range(of: "applied  1.0.0"))
            #expect(lines[appRow].distance(from: lines[appRow].startIndex, to: appliedStaging.lowerBound) == stagingColumn)

            #expect(!result.stdout.contains("!! INTERRUPTED run-stg-0"), "said once in the cell, on its pending line")
            #expect(result.stdout.contains("!! 1 ALERT"))
            #expect(result.stdout.contains("ATTENTION\n!! app/staging: run run-stg-0 is INTERRUPTED"))
            #expect(result.stdout.contains("lockstep resolve run-stg-0 --as applied|failed --reason"))
            #expect(result.stdout.contains("!! app/staging: 1 alert not yet acknowledged; see lockstep show run-stg-0"))

            let json = try await Self.run(["status", "--json"], url: url, home: home)
            #expect(json.status == 0)
            #expect(try decodeJSON(APIEnvironmentList.self, json).environments == Fixture.environments)
            #expect(try isCanonicalJSON(APIEnvironmentList.self, json.stdout), "keys sorted, as the API encodes them")
            #expect(json.stderr.isEmpty)
        }
    }

    @Test("status: an interrupted run is loud even when its target reports nothing pending")
    func statusAsksForInterruptedRuns() async throws {
        let home = try Scratch()
        var backend = CannedBackend()
        var stray = Fixture.run("run-net-7", environment: "dev", state: .interrupted, version: Fixture.v2_0_0, commit: "c")
        stray.project = Fixture.net
        backend.runDetails.append(stray)
        try await withServer(backend) { url in
            let result = try await Self.run(["status"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            let netRow = try #require(lines.firstIndex { $0.hasPrefix("net ") })
            #expect(lines[netRow + 3].contains("!! INTERRUPTED run-net-7"), "in net's dev cell")
            #expect(result.stdout.contains("!! net/dev: run run-net-7 is INTERRUPTED"))
            #expect(result.stdout.contains("lockstep resolve run-net-7 --as applied|failed"))
        }
        #expect(backend.calls.all.contains("runs target=* states=interrupted limit=100"))
    }

    @Test("runs: a table, filters passed to the API, and --json")
    func runs() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let all = try await Self.run(["runs"], url: url, home: home)
            #expect(all.status == 0, "\(all.stderr)")
            let lines = all.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("RUN") == true && lines.first?.contains("DIGEST") == true)
            #expect(lines.count == 1 + Fixture.runs.count)
            let prod = try #require(lines.first { $0.hasPrefix("run-prod-1 ") })
            #expect(prod.contains("app/prod") && prod.contains("prod/v1.1.0") && prod.contains("awaiting_approval")
                    && prod.contains(String(Fixture.planDigest.rawValue.prefix(12))) && prod.contains("2027-01-15T08:00:00Z"))
            #expect(lines.contains { $0.hasPrefix("run-stg-0 ") && $0.contains("INTERRUPTED!!") })

            let filtered = try await Self.run(["runs", "--target", "app/dev", "--state", "awaiting_approval", "--state", "checking",
                                               "--limit", "5"], url: url, home: home)
            #expect(filtered.status == 0)
            #expect(backend.calls.all.contains("runs target=app/dev states=awaiting_approval,checking limit=5"))
            #expect(filtered.stdout.split(separator: "\n").dropFirst().map { String($0.prefix(10)) } == ["run-dev-1 ", "run-dev-2 "])

            let none = try await Self.run(["runs", "--state", "expired"], url: url, home: home)
            #expect(none.stdout == "no runs match\n")

            let json = try await Self.run(["runs", "--json", "--state", "interrupted"], url: url, home: home)
            #expect(try decodeJSON(APIRunList.self, json).runs == [Fixture.summary(Fixture.interruptedRun)])
            #expect(try isCanonicalJSON(APIRunList.self, json.stdout))
        }
    }

    @Test("show: summary, destroyed addresses, redacted plan, approvals, who may approve, and the digest with the exact approve command")
    func show() async throws {
        let home = try Scratch()
        try await withServer { url in
            let result = try await Self.run(["show", "run-prod-1"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let text = result.stdout
            for expected in ["run        run-prod-1", "target     app/prod", "state      awaiting_approval",
                             "tag        prod/v1.1.0 (version 1.1.0)", "commit     " + String(repeating: "a", count: 40),
                             "plan       1 to create, 0 to update, 1 to delete, 0 to replace",
                             "destroys   1 resource:\n  - null_resource.old",
                             "checks\n  passed allowed_resource_types",
                             "approvals  0 of 2", "may still approve: alice, bob",
                             "--- plan (redacted) ---\n  # null_resource.old will be destroyed\n  - resource \"null_resource\" \"old\" {}\n--- end of plan ---"] {
                #expect(text.contains(expected), "missing: \(expected)")
            }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // The digest stands alone on its line, and the last line is the command to copy.
            #expect(lines.contains(Fixture.planDigest.rawValue))
            #expect(lines.last { !$0.isEmpty } == "lockstep approve run-prod-1 --digest \(Fixture.planDigest.rawValue)")

            let interrupted = try await Self.run(["show", "run-stg-0"], url: url, home: home)
            #expect(interrupted.stdout.contains("state      INTERRUPTED!!"))
            #expect(interrupted.stdout.contains("!! This run is INTERRUPTED"))
            #expect(interrupted.stdout.contains("ALERTS\n  !! 2027-01-15T08:00:00Z apply_interrupted: the daemon stopped"))
            #expect(!interrupted.stdout.contains("lockstep approve"), "no approve command for a run that takes no approvals")
            #expect(!interrupted.stdout.contains("may still approve"))

            let json = try await Self.run(["show", "run-prod-1", "--json"], url: url, home: home)
            #expect(try decodeJSON(APIRunDetail.self, json) == Fixture.prodRun)
            #expect(try isCanonicalJSON(APIRunDetail.self, json.stdout))
        }
    }

    @Test("show: escape sequences in repo-derived text never reach the terminal raw")
    func showIsTerminalSafe() async throws {
        let home = try Scratch()
        try await withServer { url in
            let result = try await Self.run(["show", "run-dev-2"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let scalars = result.stdout.unicodeScalars
            #expect(!scalars.contains("\u{1B}") && !scalars.contains("\u{07}") && !scalars.contains("\r")
                    && !scalars.contains("\u{9B}") && !scalars.contains("\u{202E}"))
            #expect(result.stdout.contains("\\u{1b}]0;owned\\u{7}"), "shown escaped, so a reviewer sees the attempt")
            #expect(result.stdout.contains("FAILED policy: bad\\u{1b}[31m red\\u{9b}31m"))
            // The tag's and the merge's messages are repository text too.
            #expect(result.stdout.contains("tagger     Mallory <m@example.com>\\u{1b}[8m"))
            #expect(result.stdout.contains("merge      Merge pull request #9 from m/x\\u{7}"))
            #expect(result.stdout.contains("tag message:\n  Release notes\n  \\u{1b}[1Aapproved by alice\\u{d}sure"))
            // --json stays the API's JSON, where the encoder escapes control characters itself.
            let json = try await Self.run(["show", "run-dev-2", "--json"], url: url, home: home)
            #expect(!json.stdout.unicodeScalars.contains("\u{1B}"))
            #expect(try decodeJSON(APIRunDetail.self, json).planRendering == Fixture.hostileRendering)
        }
    }

    @Test("approve, reject, rollback and resolve: the change, said plainly, and the API's JSON")
    func changes() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let approve = try await Self.run(["approve", "run-prod-1", "--digest", Fixture.planDigest.rawValue.uppercased()],
                                             url: url, home: home, token: Fixture.bobToken)
            #expect(approve.status == 0, "\(approve.stderr)")
            #expect(approve.stdout == """
                approval recorded for run run-prod-1 (app/prod): 1 of 2
                state: awaiting_approval
                may still approve: alice

                """)
            let approveJSON = try await Self.run(["approve", "run-dev-1", "--digest", Fixture.planDigest.rawValue, "--json"],
                                                 url: url, home: home)
            let approved = try decodeJSON(APIRunDetail.self, approveJSON)
            #expect(approved.approvals.map(\.identity) == [Fixture.alice] && approved.state == .approved)
            #expect(try isCanonicalJSON(APIRunDetail.self, approveJSON.stdout))

            let reject = try await Self.run(["reject", "run-dev-1", "--reason", "wrong branch merged"], url: url, home: home)
            #expect(reject.status == 0)
            #expect(reject.stdout == "run run-dev-1 (app/dev) rejected; state: rejected\n")

            let rollback = try await Self.run(["rollback", "dev", "--to", "v1.1.0", "--project", "app"], url: url, home: home)
            #expect(rollback.status == 0, "\(rollback.stderr)")
            #expect(rollback.stdout.hasPrefix("rollback run run-rollback: app/dev to 1.1.0 (tag dev/v1.1.0), state queued\n"))
            let rollbackJSON = try await Self.run(["rollback", "dev", "--to", "1.1.0", "--json"], url: url, home: home)
            #expect(try decodeJSON(APIRollbackResult.self, rollbackJSON).runs.map(\.id.rawValue) == ["run-rollback"])

            let resolve = try await Self.run(["resolve", "run-stg-0", "--as", "applied", "--reason", "checked the console: applied"],
                                             url: url, home: home, token: Fixture.carolToken)
            #expect(resolve.status == 0)
            #expect(resolve.stdout == "run run-stg-0 (app/staging) resolved as applied; state: verifying\n")
            let resolveJSON = try await Self.run(["resolve", "run-stg-0", "--as", "failed", "--reason", "half applied", "--json"],
                                                 url: url, home: home)
            #expect(try decodeJSON(APIRunDetail.self, resolveJSON).state == .failed)
        }
        // Identity is the token's; the body carried only what the verb needs.
        #expect(backend.calls.mutations == [
            "accepted approve run-prod-1 by bob", "accepted approve run-dev-1 by alice", "accepted reject run-dev-1 by alice",
            "accepted rollback dev by alice", "accepted rollback dev by alice", "accepted resolve run-stg-0 by carol",
            "accepted resolve run-stg-0 by alice",
        ])
        #expect(backend.calls.all.contains("rollback dev project app to 1.1.0 by alice"))
        #expect(backend.calls.all.contains("rollback dev project * to 1.1.0 by alice"))
        #expect(backend.calls.all.contains("resolve run-stg-0 as applied by carol reason checked the console: applied"))
    }
}
