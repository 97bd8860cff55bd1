import APITestSupport
import Foundation
import LockstepCore
import LockstepHTTP
import Testing

/// `lockstep tags ENV` shows the daemon's own decisions, and `lockstep status` shows what
/// keeps the daemon from following the repository: the built binary against a real API server.
@Suite("lockstep tags and status problems")
struct TagsAndProblemsTests {
    @Test("tags ENV: every tag with its version and decision, each rejection with its reason and code; --json is the API's JSON")
    func tags() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["tags", "dev"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("PROJECT  TAG") == true, "\(lines)")
            let rejected = try #require(lines.first { $0.contains("dev/v9.9.9") })
            #expect(rejected.contains("9.9.9") && rejected.contains("REJECTED") && rejected.contains("99999999"))
            #expect(rejected.contains("points to a commit that is not on the protected branch [not_reachable_from_protected_branch]"))
            let accepted = try #require(lines.first { $0.contains("dev/v1.2.0") })
            #expect(accepted.contains("accepted") && accepted.contains("bbbbbbbb"))
            #expect(try #require(lines.first { $0.contains("dev/vnext") }).contains("[version_unparsable]"))
            #expect(lines.last == "2 tags accepted, 2 rejected")

            let json = try await VerbTests.run(["tags", "dev", "--json"], url: url, home: home)
            #expect(json.status == 0)
            #expect(try decodeJSON(APITagDecisionList.self, json) == Fixture.devTagDecisions)
            #expect(try isCanonicalJSON(APITagDecisionList.self, json.stdout))
        }
        #expect(backend.calls.all.filter { $0.hasPrefix("tags") } == ["tags dev project *", "tags dev project *"])
    }

    @Test("tags: --project is passed to the API; an environment the daemon does not know exits 4; offline options without --offline are refused")
    func tagsArguments() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let one = try await VerbTests.run(["tags", "dev", "--project", "app"], url: url, home: home)
            #expect(one.status == 0, "\(one.stderr)")
            let unknown = try await VerbTests.run(["tags", "qa"], url: url, home: home)
            #expect(unknown.status == 4, "\(unknown.stderr)")
            #expect(unknown.stderr.contains("does not know environment qa"))
            let bad = try await VerbTests.run(["tags", "dev", "--store", "/tmp/x.sqlite"], url: url, home: home)
            #expect(bad.status == 1)
            #expect(bad.stderr.contains("--store is only for --offline"))
            let badName = try await VerbTests.run(["tags", "../etc"], url: url, home: home)
            #expect(badName.status == 1)
        }
        #expect(backend.calls.all.filter { $0.hasPrefix("tags") } == ["tags dev project app", "tags qa project *"])
    }

    @Test("tags --offline without --config or --mirror says what is missing and contacts nothing")
    func offlineNeedsConfig() async throws {
        let home = try Scratch()
        let noConfig = try await CLI.run(["tags", "dev", "--offline"], home: home)
        #expect(noConfig.status == 1)
        #expect(noConfig.stderr.contains("--offline needs --config"))
        let noMirror = try await CLI.run(["tags", "dev", "--offline", "--config", "/nonexistent/agent.yaml"], home: home)
        #expect(noMirror.status == 1)
        #expect(noMirror.stderr.contains("--offline needs --mirror"))
    }

    @Test("tags: escape sequences in a tag name or reason from the repository never reach the terminal raw")
    func tagsTerminalSafe() async throws {
        let home = try Scratch()
        var backend = CannedBackend()
        var list = Fixture.devTagDecisions
        list.decisions[0].tag = "dev/v9.9.9\u{1B}]0;owned\u{07}"
        list.decisions[0].rejections = [APITagRejection(code: .notReachable, message: "bad \u{1B}[31mred\u{1B}[0m")]
        backend.tagDecisionLists[Fixture.environment("dev")] = list
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["tags", "dev"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(!result.stdout.contains("\u{1B}"))
            #expect(!result.stdout.contains("\u{07}"))
        }
    }

    @Test("status: a failing fetch and an invalid layout on the branch are listed first under PROBLEMS; --json carries them")
    func statusProblems() async throws {
        let home = try Scratch()
        var backend = CannedBackend()
        backend.problemList = [
            APIProblem(code: .fetchFailed, message: "the last fetch of the delivery repository failed: remote unreachable"),
            APIProblem(code: .layoutInvalid,
                       message: "lockstep.yaml at main (abc1234) is invalid: projects.app.dir: expected a relative path"),
        ]
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["status"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.hasPrefix("""
                PROBLEMS
                !! the last fetch of the delivery repository failed: remote unreachable
                !! lockstep.yaml at main (abc1234) is invalid: projects.app.dir: expected a relative path

                PROJECT
                """), "\(result.stdout)")
            let json = try await VerbTests.run(["status", "--json"], url: url, home: home)
            #expect(try decodeJSON(APIEnvironmentList.self, json).problems.map(\.code) == [.fetchFailed, .layoutInvalid])
        }
        // Without problems the board starts as before.
        try await withServer { url in
            let result = try await VerbTests.run(["status"], url: url, home: home)
            #expect(result.stdout.hasPrefix("PROJECT"))
            #expect(!result.stdout.contains("PROBLEMS"))
        }
    }
}
