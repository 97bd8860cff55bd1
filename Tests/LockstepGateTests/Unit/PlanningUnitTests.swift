import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// dev served; staging known to the agent but served elsewhere.
private let devAndStaging = unitDev + """

  staging:
    approvals: 1
    approvers: [alice]
"""

/// One way planning can end badly: what is scripted, the reason the run must give, and what
/// the runner must (and must not) have been asked.
struct PlanFailureCase: Sendable, CustomTestStringConvertible {
    var name: String
    var environmentYAML = devAndStaging
    /// `lockstep.yaml` at the tagged commit (nil: the valid one).
    var layout: String?
    var source: @Sendable (isolated ScriptedReleaseSource) -> Void = { _ in }
    var runner: @Sendable (isolated ScriptedPlanRunner) -> Void = { _ in }
    var reason: String
    var calls: [RunnerCall]
    var testDescription: String { name }
}

@Suite("Gate unit: planning (failure classes → failed run with its reason)")
struct PlanningUnitTests {
    static let failures: [PlanFailureCase] = [
        PlanFailureCase(name: "the export fails", source: { $0.exportFailure = GitError(.exportLimit, "the tree has more than 20000 files") },
                        reason: "the tagged commit could not be exported", calls: []),
        PlanFailureCase(name: "the exported tree is not the one the tag decision saw",
                        source: { $0.exportedTreeOverride = try! GitObjectID(String(repeating: "e", count: 40)) },
                        reason: "is not the tree", calls: []),
        PlanFailureCase(name: "lockstep.yaml at the commit tries to set a trust decision",
                        layout: UnitWorld.layout(environments: ["dev"]) + "approvals: 0\n",
                        reason: "lockstep.yaml was refused", calls: []),
        PlanFailureCase(name: "lockstep.yaml at the commit is not YAML", layout: "projects: [\n",
                        reason: "lockstep.yaml was refused", calls: []),
        PlanFailureCase(name: "lockstep.yaml at the commit names an environment the agent does not know",
                        layout: UnitWorld.layout(environments: ["dev", "qa"]),
                        reason: "a repo config cannot add environments", calls: []),
        PlanFailureCase(name: "lockstep.yaml at the commit has no such project",
                        layout: UnitWorld.layout(environments: ["dev"], project: "web"),
                        reason: "defines no project \"app\"", calls: []),
        PlanFailureCase(name: "lockstep.yaml at the commit does not list the environment for the project",
                        layout: UnitWorld.layout(environments: ["staging"]),
                        reason: "lists no environment \"dev\"", calls: []),
        PlanFailureCase(name: "the plan credentials cannot be read",
                        environmentYAML: unitDev + "\n    plan_credentials_file: /nonexistent/plan.env",
                        reason: "the plan credentials could not be read", calls: []),
        PlanFailureCase(name: "terraform init cannot run", runner: { $0.initThrows = true },
                        reason: "terraform init could not run", calls: [.initialize]),
        PlanFailureCase(name: "terraform init fails",
                        runner: { $0.initOutcome = .failed(exitCode: 1); $0.initOutput = "│ Error: Backend initialization required\n" },
                        reason: "terraform init failed with exit status 1: Error: Backend initialization required",
                        calls: [.initialize]),
        PlanFailureCase(name: "terraform plan cannot run", runner: { $0.planScript = .throwing },
                        reason: "terraform plan could not run", calls: [.initialize, .plan]),
        PlanFailureCase(name: "terraform plan fails",
                        runner: { $0.planScript = .ends(.failed(exitCode: 1), output: "Error: Reference to undeclared resource\n") },
                        reason: "terraform plan failed with exit status 1: Error: Reference to undeclared resource",
                        calls: [.initialize, .plan]),
        PlanFailureCase(name: "the state is locked",
                        runner: { $0.planScript = .ends(.stateLocked(lockID: "lock-1234"), output: "Error: Error acquiring the state lock\n") },
                        reason: "state_locked (lock lock-1234)", calls: [.initialize, .plan]),
        PlanFailureCase(name: "the plan times out", runner: { $0.planScript = .ends(.timedOut, output: "") },
                        reason: "terraform plan timed_out", calls: [.initialize, .plan]),
        PlanFailureCase(name: "the plan JSON is larger than limits.plan_json_bytes",
                        runner: { $0.showError = TerraformRunnerError(.planJSONTooLarge, "too large", context: ["bytes": "9000000"]) },
                        reason: "larger than limits.plan_json_bytes", calls: [.initialize, .plan, .show]),
        PlanFailureCase(name: "terraform show cannot read the plan",
                        runner: { $0.showError = TerraformRunnerError(.malformedOutput, "not JSON") },
                        reason: "terraform show could not read the plan", calls: [.initialize, .plan, .show]),
    ]

    @Test("each planning failure fails the run with its reason, stores no plan and leaves nothing on disk", arguments: failures)
    func planningFailure(_ failure: PlanFailureCase) async throws {
        let world = try UnitWorld(environmentsYAML: failure.environmentYAML)
        defer { world.cleanup() }
        await world.source.script(failure.source)
        await world.runner.script(failure.runner)
        // Off the branch (reachability is scripted): the branch keeps its valid layout and targets.
        let commit = await world.release("1.0.0", layout: failure.layout, onBranch: false)
        await world.source.tag("dev/1.0.0", at: commit)

        let report = try await world.gate.reconcile()

        let run = try await world.newestRun("dev")
        #expect(run.state == .failed)
        #expect(report.runsAdvanced[run.id] == .failed)
        let path = try await world.path(run.id)
        #expect(path == ["planning:plan_started", "failed:plan_failed"], "\(path)")
        let reason = try #require(try await world.lastReason(run.id))
        #expect(reason.contains(failure.reason), "\(reason)")
        #expect(!reason.contains(world.scratch.path), "reviewers never see the agent's folders: \(reason)")
        #expect(run.plan == nil)
        #expect(await world.runner.calls == failure.calls)
        #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).path))
        #expect(try await world.store.log(of: run.id).contains("plan failed"))
    }

    @Test("a text rendering that fails leaves the run awaiting approval on its complete JSON, the rendering marked failed with the reason")
    func renderingFailureDoesNotFailTheRun() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.runner.script { $0.renderError = TerraformRunnerError(.commandFailed, "terraform show did not succeed (killed)") }
        let run = try await world.plannedRun()

        #expect(run.state == .awaitingApproval)
        #expect(await world.runner.calls == [.initialize, .plan, .show, .render])
        let plan = try #require(run.plan)
        #expect(plan.renderingState == .failed)
        #expect(plan.rendering.contains("terraform show did not succeed"), "\(plan.rendering)")
        #expect(!plan.rendering.contains(world.scratch.path), "reviewers never see the agent's folders")
        #expect(plan.planJSON.contains("null_resource.app"), "the JSON, the summary and the checks are complete")
        #expect(try await world.store.log(of: run.id).contains("the plan's text could not be rendered"))
        // No copy of the plan is left behind by the rendering.
        #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).appendingPathComponent("render-plan").path))
        // The run is approvable as ever: the approval binds the digest, not the text.
        let outcome = try await world.gate.approve(run: run.id, identity: "alice", digest: try #require(run.planDigest))
        guard case .approved = outcome else { Issue.record("\(outcome)"); return }
    }

    @Test("a plan with no changes ends the run as no_changes: nothing to show, approve or apply")
    func noChanges() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.runner.script { $0.planScript = .noChanges }
        let run = try await world.plannedRun()

        #expect(run.state == .noChanges)
        #expect(try await world.path(run.id).last == "no_changes:no_changes")
        #expect(await world.runner.calls == [.initialize, .plan])
        let digest = try #require(run.planDigest)
        let outcome = try await world.gate.approve(run: run.id, identity: "alice", digest: digest)
        guard case .refused(let refusal) = outcome else { Issue.record("approved a run with no changes: \(outcome)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
        #expect(!FileManager.default.fileExists(atPath: world.sealedPlanFile(run.id).path))
    }

    @Test("a plan with changes is stored, sealed with its digest, and awaits approval")
    func planAwaitsApproval() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun()

        #expect(run.state == .awaitingApproval)
        let path = try await world.path(run.id)
        #expect(path == ["planning:plan_started", "checking:plan_succeeded",
                         "awaiting_approval:checks_passed"], "\(path)")
        let digest = try #require(run.planDigest)
        let sealed = try #require(FileManager.default.contents(atPath: world.sealedPlanFile(run.id).path))
        #expect(Digest.sha256(of: sealed) == digest)
        #expect(run.plan?.planJSON.contains("null_resource.app") == true)
        #expect(await world.runner.calls == [.initialize, .plan, .show, .render])
        #expect(run.plan?.rendering == "the plan, as text\n" && run.plan?.renderingState == .ready)
        #expect(await world.source.exports == [run.run.commit], "one export for the plan")
    }
}
