import Foundation
import LockstepCore
import Testing
@testable import TerraformRunner

/// A project whose plan prints far more text than a small limit: `count` null resources with
/// long triggers (about 800 bytes of rendering each).
func bulkyResources(_ count: Int, marker: String = "0123456789abcdef") -> String {
    """
    resource "null_resource" "bulk" {
      count    = \(count)
      triggers = {
        payload = "${count.index}-${join("", [for i in range(40) : "\(marker)"])}"
      }
    }
    """
}

@Suite("Runner: bounded plan text, plan JSON and command output")
struct OutputLimitTests {
    /// Plans `files` and returns the runner (with the given limits), the invocation and the saved plan file.
    func planned(_ scratch: URL, files: [String: String], planTextBytes: Int, planJSONBytes: Int,
                 commandOutputBytes: Int = 256 * 1024, logs: LogRecorder = LogRecorder(),
                 credentials: [String: String] = [:])
        async throws -> (TerraformRunner, TerraformRunner.Invocation, URL, PlanResult) {
        let runner = try Fixtures.runner(scratch: scratch, logs: logs)
            .limitingOutput(planTextBytes: planTextBytes, planJSONBytes: planJSONBytes, commandOutputBytes: commandOutputBytes)
        let directory = try Fixtures.project(scratch, files: files)
        let invocation = TerraformRunner.Invocation(directory: directory, credentials: credentials)
        let initialized = try await runner.initialize(invocation)
        try #require(initialized.outcome == .succeeded, "\(initialized.output)")
        let planFile = scratch.appendingPathComponent("plan.tfplan")
        let result = try await runner.plan(invocation, planFile: planFile)
        try #require(result.plan?.changes == .changesPresent, "\(result.command.output)")
        return (runner, invocation, planFile, result)
    }

    @Test("show keeps at most plan_text_bytes of the text, cut at a line end, says it was cut and how big the text was; the summary is complete")
    func truncatedText() async throws {
        let scratch = try Fixtures.scratch()
        let limit = 64 << 10
        let (runner, invocation, planFile, _) = try await planned(
            scratch, files: ["main.tf": bulkyResources(300)], planTextBytes: limit, planJSONBytes: 64 << 20)
        let shown = try await runner.show(invocation, planFile: planFile)
        #expect(shown.renderingTruncated)
        #expect(shown.rendering.utf8.count <= limit)
        #expect(shown.rendering.utf8.count > limit - 4096, "only the last partial line is dropped")
        #expect(shown.rendering.hasSuffix("\n"), "cut at a line end")
        #expect(shown.renderingBytes > 3 * limit, "the full size of the text is known: \(shown.renderingBytes)")
        #expect(shown.plan.create == 300, "the summary comes from the complete JSON")

        // The same plan under a limit above its text: nothing is cut, and it is the same text.
        let whole = try await runner.limitingOutput(planTextBytes: 64 << 20, planJSONBytes: 64 << 20, commandOutputBytes: 1 << 20)
            .show(invocation, planFile: planFile)
        #expect(!whole.renderingTruncated)
        #expect(whole.renderingBytes == shown.renderingBytes)
        #expect(whole.rendering.utf8.count == whole.renderingBytes)
        #expect(whole.rendering.hasPrefix(shown.rendering))
    }

    @Test("show -json over plan_json_bytes is refused with plan_json_too_large naming both sizes, whatever the text limit")
    func oversizeJSON() async throws {
        let scratch = try Fixtures.scratch()
        let limit = 64 << 10
        let logs = LogRecorder()
        let (runner, invocation, planFile, _) = try await planned(
            scratch, files: ["main.tf": bulkyResources(300)], planTextBytes: 64 << 20, planJSONBytes: limit, logs: logs)
        do {
            _ = try await runner.show(invocation, planFile: planFile)
            Issue.record("a plan whose JSON is over the limit was shown")
        } catch let error as TerraformRunnerError {
            #expect(error.code == .planJSONTooLarge)
            #expect(error.context["limit_bytes"] == "\(limit)")
            let bytes = try #require(error.context["bytes"].flatMap(Int.init))
            #expect(bytes > limit, "the JSON was drained and counted to its end: \(bytes)")
            #expect(error.description.contains("larger than the limit of 64.0 KiB"), "\(error.description)")
        }
        #expect(logs.text.contains("terraform output over its limit was not kept"))
    }

    @Test("a secret crossing the text limit is never left half in clear: the cut moves before it")
    func secretAtTheCut() {
        let secret = "s3cr3t-VALUE-0123456789"
        let redactor = Redactor(secrets: [secret])
        // No line end before the limit, so only the secret decides where the cut goes.
        let text = String(repeating: "x", count: 90) + secret + "\n" + String(repeating: "y", count: 100)
        let limit = 100  // inside the secret (which starts at byte 90)
        let rendering = Array(text.utf8).withUnsafeBytes {
            TerraformRunner.rendering(of: UnsafeRawBufferPointer(rebasing: $0[0..<min($0.count, limit + redactor.longestPatternBytes)]),
                                      cutAt: limit, redactor: redactor)
        }
        #expect(rendering == String(repeating: "x", count: 90))
        #expect(!rendering.contains("s3cr3t"))

        // Before the limit, a secret is redacted like anywhere else, and the cut is at the line end.
        let early = "a " + secret + "\n" + String(repeating: "z", count: 200)
        let kept = Array(early.utf8).withUnsafeBytes {
            TerraformRunner.rendering(of: UnsafeRawBufferPointer(rebasing: $0[0..<(60 + redactor.longestPatternBytes)]),
                                      cutAt: 60, redactor: redactor)
        }
        #expect(kept == "a \(Redactor.placeholder)\n")
    }

    @Test("a cut without line ends stays on a UTF-8 character boundary")
    func utf8Boundary() {
        let text = String(repeating: "é", count: 100)  // two bytes each
        let rendering = Array(text.utf8).withUnsafeBytes {
            TerraformRunner.rendering(of: $0, cutAt: 51, redactor: Redactor())
        }
        #expect(rendering == String(repeating: "é", count: 25))
    }

    @Test("command output keeps at most command_output_bytes, and its first line says how much was not kept")
    func commandOutputNotice() async throws {
        let scratch = try Fixtures.scratch()
        let limit = 64 << 10
        let (_, _, _, result) = try await planned(
            scratch, files: ["main.tf": bulkyResources(300)], planTextBytes: 64 << 20, planJSONBytes: 64 << 20,
            commandOutputBytes: limit)
        let output = result.command.output
        #expect(output.utf8.count <= limit)
        #expect(result.command.droppedOutputBytes > 0)
        let first = try #require(output.split(separator: "\n").first)
        #expect(first.hasPrefix("[… ") && first.hasSuffix(" of output not kept …]"), "\(first)")
        #expect(output.contains("Plan: 300 to add"), "the end of the output is what is kept")
    }

    @Test("the notice line makes room for itself and counts what it displaced")
    func noticeWithinLimit() {
        let tail = (1...50).map { "line \($0)" }.joined(separator: "\n")
        let output = OutputNotice.output(tail, dropped: 1000, limit: tail.utf8.count)
        #expect(output.utf8.count <= tail.utf8.count)
        #expect(output.hasSuffix("line 50"))
        #expect(output.hasPrefix("[… 1"))
        #expect(OutputNotice.output("abc", dropped: 0, limit: 1) == "abc")
        #expect(ByteSize(51_130_573).description == "48.7 MiB")
        #expect(ByteSize(65_536).description == "64.0 KiB")
        #expect(ByteSize(812).description == "812 bytes")
    }

    @Test("terraform finished logs a plan that found changes as changes_present, never as a failure")
    func planOutcomeWording() async throws {
        let scratch = try Fixtures.scratch()
        let logs = LogRecorder()
        _ = try await planned(scratch, files: ["main.tf": Fixtures.nullResources(1)], planTextBytes: 1 << 20,
                              planJSONBytes: 1 << 20, logs: logs)
        let finished = logs.text.split(separator: "\n").filter { $0.contains("terraform finished") && $0.contains("plan") }
        #expect(finished.count == 1)
        #expect(finished.allSatisfy { $0.contains("changes_present") && !$0.contains("failed") }, "\(finished)")
        #expect(CommandOutcome.failed(exitCode: 1).description == "failed with exit status 1")
        #expect(CommandOutcome.succeeded.planDescription == "no_changes")
    }
}
