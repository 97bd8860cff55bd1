import APITestSupport
import Foundation
import LockstepCore
import LockstepHTTP
import Testing

@Suite("lockstep show: a truncated plan text is said plainly")
struct TruncatedPlanTests {
    @Test("show of a run whose rendering was cut says how much is shown of how much, and that the summary and checks cover the whole plan; --json carries the flag and the size")
    func truncatedNotice() async throws {
        let home = try Scratch()
        var backend = CannedBackend()
        let index = try #require(backend.runDetails.firstIndex { $0.id == Fixture.prodRun.id })
        backend.runDetails[index].planRendering = String(repeating: "  # null_resource.bulk will be created\n", count: 107_547)
        backend.runDetails[index].planRenderingTruncated = true
        backend.runDetails[index].planRenderingBytes = 54_900_000
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["show", "run-prod-1"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            let notice = "!! plan text truncated: showing the first 4.0 MiB of 52.3 MiB; the summary and the checks cover the whole plan"
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines.filter { $0 == notice }.count == 2, "once under the summary, once where the text stops")
            #expect(result.stdout.contains("--- plan text cut here ---\n" + notice))
            #expect(!result.stdout.contains("--- end of plan ---"))
            #expect(lines.last { !$0.isEmpty } == "lockstep approve run-prod-1 --digest \(Fixture.planDigest.rawValue)",
                    "still approvable")

            let json = try await VerbTests.run(["show", "run-prod-1", "--json"], url: url, home: home)
            let detail = try decodeJSON(APIRunDetail.self, json)
            #expect(detail.planRenderingTruncated)
            #expect(detail.planRenderingBytes == 54_900_000)
        }

        // A whole rendering gets no notice.
        try await withServer { url in
            let result = try await VerbTests.run(["show", "run-prod-1"], url: url, home: home)
            #expect(!result.stdout.contains("truncated"))
            #expect(result.stdout.contains("--- end of plan ---"))
        }
    }

    @Test("show of a run whose text is still being rendered, or could not be, says so and stays approvable; a failure reason from the server is shown terminal-safe")
    func pendingAndFailedRendering() async throws {
        let home = try Scratch()
        var backend = CannedBackend()
        let index = try #require(backend.runDetails.firstIndex { $0.id == Fixture.prodRun.id })
        backend.runDetails[index].planRendering = ""
        backend.runDetails[index].planRenderingState = .pending
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["show", "run-prod-1"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("terraform is still rendering this plan's text"))
            #expect(!result.stdout.contains("--- end of plan ---"))
            #expect(result.stdout.contains("lockstep approve run-prod-1 --digest \(Fixture.planDigest.rawValue)"))
        }
        backend.runDetails[index].planRendering = "terraform show timed out\u{1b}[2J"
        backend.runDetails[index].planRenderingState = .failed
        try await withServer(backend) { url in
            let result = try await VerbTests.run(["show", "run-prod-1"], url: url, home: home)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("the plan's text could not be rendered: terraform show timed out"))
            #expect(!result.stdout.contains("\u{1b}"), "no terminal escape from the server reaches the terminal")
        }
    }
}
