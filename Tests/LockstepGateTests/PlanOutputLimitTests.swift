import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// `count` null resources whose plan text is about 800 bytes each, appended to the release.
func bulkyRelease(_ count: Int) -> String {
    """
    resource "null_resource" "bulk" {
      count    = \(count)
      triggers = {
        payload = "${count.index}-${join("", [for i in range(40) : "0123456789abcdef"])}"
      }
    }
    """
}

@Suite("Gate: bounded plan output (limits:)")
struct PlanOutputLimitTests {
    @Test("a plan whose text is over limits.plan_text_bytes is stored cut, marked truncated with its full size, and stays approvable: the summary counts every resource")
    func truncatedTextStaysApprovable() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"], agentExtraYAML: """
            limits:
              plan_text_bytes: 64KiB
              command_output_bytes: 64KiB
            """)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"], extra: bulkyRelease(300))
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        try #require(run.state == .awaitingApproval, "\(run.state)")
        let plan = try #require(run.plan)
        #expect(plan.renderingTruncated)
        #expect(plan.rendering.utf8.count <= 64 << 10)
        #expect(plan.renderingBytes > 3 * (64 << 10), "the full size is recorded: \(plan.renderingBytes)")
        let summary = try JSONDecoder().decode(PlanModel.self, from: Data(plan.summaryJSON.utf8))
        #expect(summary.create == 301, "app + 300 bulk resources, from the complete JSON")
        #expect(plan.planJSON.contains("null_resource.bulk[299]"), "the stored JSON is whole")

        // The run log says what was cut, and the command output kept is bounded with its notice.
        let log = try await world.store.log(of: run.id)
        #expect(log.contains("the plan's text is"), "\(log.prefix(2000))")
        #expect(log.contains("limits.plan_text_bytes"))
        #expect(log.contains(" of output not kept …]"), "the plan command's output was over command_output_bytes")
        #expect(log.utf8.count <= 3 * (64 << 10) + 4096, "init, plan and lockstep lines, each bounded: \(log.utf8.count)")

        // Approvable with the digest bound to the whole plan.
        #expect(try await world.approve(run, by: ["alice"]) == [.approved])
        #expect(try await world.store.run(run.id)?.state == .approved)
    }

    @Test("a plan whose JSON is over limits.plan_json_bytes fails with a reason naming the key, stores no plan and can never be approved")
    func oversizeJSONFails() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"], agentExtraYAML: """
            limits:
              plan_json_bytes: 64KiB
            """)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"], extra: bulkyRelease(300))
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        #expect(run.state == .failed)
        #expect(run.lastReason == .planFailed)
        #expect(run.plan == nil, "nothing of the plan is stored")
        let detail = try #require(try await world.store.transitions(of: run.id).last?.transition.reason.detail)
        #expect(detail.contains("limits.plan_json_bytes"), "\(detail)")
        #expect(detail.contains("64.0 KiB"), "\(detail)")
        #expect(detail.contains("raise"), "\(detail)")
        #expect(!detail.contains("/"), "no agent path in a reason reviewers see: \(detail)")
        // An approval quoting the digest the plan had is refused: the run is not awaiting approval.
        let outcomes = try await world.gate.approve(run: run.id, identity: identity("alice"),
                                                    digest: try Digest(String(repeating: "a", count: 64)))
        guard case .refused = outcomes else { Issue.record("a failed run took an approval: \(outcomes)"); return }
        #expect(world.planFilesOnDisk().isEmpty)
        #expect(try world.applied("dev") == nil)
    }

    @Test("an unreadable plan credentials file fails the run with a reason naming the config key, never the file's path")
    func credentialsReasonHasNoPath() async throws {
        let world = try World(environmentsYAML: """
              dev:
                serves: true
                approvals: 1
                approvers: [alice, bob]
                plan_credentials_file: /nonexistent/lockstep-secret-folder/dev-plan.env
            """, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        #expect(run.state == .failed)
        let detail = try #require(try await world.store.transitions(of: run.id).last?.transition.reason.detail)
        #expect(detail.contains("plan_credentials_file"), "\(detail)")
        #expect(!detail.contains("lockstep-secret-folder"), "\(detail)")
        #expect(world.logs.text.contains("lockstep-secret-folder"), "the daemon's own log keeps the detail")
    }
}
