import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// dev alone, one approval.
let devOnly = """
  dev:
    serves: true
    approvals: 1
    approvers: [alice, bob]
"""

@Suite("Gate: run lifecycle")
struct RunLifecycleTests {
    @Test("two tags in quick succession: the older waiting run is superseded and can no longer be approved or applied")
    func newerTagSupersedes() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let older = try await world.run("dev", "1.0.0")
        #expect(older.state == .awaitingApproval)

        try world.release("1.1.0", to: ["dev"])
        let report = try await world.gate.reconcile()
        #expect(report.runsSuperseded == [older.id])
        #expect(try await world.store.run(older.id)?.state == .superseded)
        let newer = try await world.run("dev", "1.1.0")
        #expect(newer.state == .awaitingApproval)
        #expect(try await world.store.runs(target: world.target("dev"), states: Gate.openStates).map(\.id) == [newer.id])

        let late = try await world.approve(older, by: ["alice"])
        guard case .refused(let refusal) = late.first else { Issue.record("approval of a superseded run: \(late)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
        guard case .notApplied = try await world.gate.apply(run: older.id) else { Issue.record("superseded run applied"); return }

        #expect(try await world.approve(newer, by: ["alice"]) == [.approved])
        #expect(try await world.gate.apply(run: newer.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.1.0")
        #expect(world.applyLog == ["dev:1.1.0"])
        #expect(world.planFilesOnDisk().isEmpty)
    }

    @Test("a tag moved after approval: nothing is applied, the run fails, an alert is raised and the moved tag is not followed")
    func movedTagAfterApproval() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        #expect(try await world.approve(run, by: ["bob"]) == [.approved])

        // Someone re-points the approved tag at another merged commit.
        let other = try world.mergeRelease("9.9.9")
        try world.tag("dev/v1.0.0", at: other, force: true)
        try world.publish()

        let outcome = try await world.gate.apply(run: run.id)
        guard case .preconditionsFailed(let report, let state) = outcome else { Issue.record("moved tag: \(outcome)"); return }
        #expect(state == .failed)
        #expect(report.failures.map(\.code) == [.tagMoved])
        let alerts = try await world.store.alerts(target: world.target("dev"))
        #expect(alerts.contains { $0.runID == run.id && $0.alert.code == .approvedPlanChanged })
        #expect(try await world.store.applyPreconditions(of: run.id).first?.failures.map(\.code) == [.tagMoved])
        #expect(try world.applied("dev") == nil)
        #expect(world.applyLog.isEmpty)
        #expect(world.planFilesOnDisk().isEmpty)

        // The next pass does not plan the moved tag: it says so instead.
        let next = try await world.gate.reconcile()
        #expect(next.runsCreated.isEmpty)
        #expect(next.alertsRaised.contains { $0.code == Gate.tagNotFollowed })
        #expect(try await world.runs("dev").count == 1)
    }

    @Test("a tag moved while its run waits for approval: the run is invalidated by the next reconcile, with an alert")
    func movedTagInvalidatesWaitingRun() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        try world.git(["tag", "-d", "dev/v1.0.0"])
        try world.publish()

        let report = try await world.gate.reconcile()
        #expect(report.runsInvalidated == [run.id])
        #expect(try await world.store.run(run.id)?.state == .failed)
        #expect(try await world.store.run(run.id)?.lastReason == .tagMoved)
        let alerts = try await world.store.alerts(target: world.target("dev"))
        #expect(alerts.contains { $0.runID == run.id && $0.alert.code == .tagMoved })
        #expect(alerts.contains { $0.runID == nil && $0.alert.code == .tagMoved })
        #expect(world.planFilesOnDisk().isEmpty)
    }

    @Test("a staging plan that fails: the run fails with terraform's reason, nothing is applied, prod stays rejected")
    func stagingPlanFails() async throws {
        let world = try World(environmentsYAML: """
          staging:
            serves: true
            approvals: 1
            approvers: [alice]
          prod:
            serves: true
            promote_from: staging
            approvals: 1
            approvers: [alice, bob]
        """, environments: ["staging", "prod"])
        defer { world.cleanup() }
        let commit = try world.mergePR(files: world.appFiles(release: "1.0.0")
                                       .merging(["app/staging.tfvars": "size = 50\nenv = \"staging\"\n"]) { _, new in new })
        try world.tag("staging/v1.0.0", at: commit)
        try world.tag("prod/v1.0.0", at: commit)
        try world.publish()

        _ = try await world.gate.reconcile()
        let run = try await world.run("staging", "1.0.0")
        #expect(run.state == .failed)
        #expect(run.lastReason == .planFailed)
        let detail = try #require(try await world.store.transitions(of: run.id).last?.transition.reason.detail)
        #expect(detail.contains("terraform plan"), "\(detail)")
        #expect(detail.contains("Invalid value for variable"), "\(detail)")
        #expect(try await world.store.log(of: run.id).contains("The size must be below 10"))
        #expect(try await world.decision("prod", "prod/v1.0.0")?.rejections.map(\.code) == [.promotionSourceNotVerified])
        #expect(try await world.runs("prod").isEmpty)
        #expect(try world.applied("staging") == nil)
        #expect(world.planFilesOnDisk().isEmpty)
        // The failed tag is not planned again on every poll.
        let again = try await world.gate.reconcile()
        #expect(again.runsCreated.isEmpty)
    }

    @Test("state changed under an approved plan: apply is refused as the state moved, applies nothing, and a second apply is refused")
    func stalePlan() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))

        try world.release("1.1.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.1.0")
        #expect(try await world.approve(run, by: ["alice"]) == [.approved])

        // Someone writes the state outside Lockstep (its serial moves on).
        let stateFile = world.stateDirectory.appendingPathComponent("dev.tfstate")
        var state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: stateFile)) as? [String: Any])
        state["serial"] = ((state["serial"] as? Int) ?? 0) + 1
        try JSONSerialization.data(withJSONObject: state).write(to: stateFile)

        let outcome = try await world.gate.apply(run: run.id)
        guard case .applyFailed(let reason) = outcome else { Issue.record("stale plan: \(outcome)"); return }
        // Lockstep's own check of the plan's prior state answers before terraform's stale-plan check.
        #expect(reason.contains("the state moved since the plan"), "\(reason)")
        #expect(try await world.store.run(run.id)?.state == .failed)
        #expect(try await world.store.run(run.id)?.lastReason == .applyFailed)
        #expect(try world.applied("dev")?["release"] == "1.0.0")
        #expect(world.applyLog == ["dev:1.0.0"])
        #expect(world.planFilesOnDisk().isEmpty)

        guard case .notApplied = try await world.gate.apply(run: run.id) else { Issue.record("second apply ran"); return }
        #expect(world.applyLog == ["dev:1.0.0"])
        let applying = try await world.store.transitions(of: run.id).filter { $0.transition.to == .applying }
        #expect(applying.count == 1)
    }

    @Test("three concurrent apply triggers from two gates over one store: exactly one terraform apply")
    func concurrentApplyTriggers() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        #expect(try await world.approve(run, by: ["alice"]) == [.approved])
        let (other, _) = try world.secondGate()
        let gate = world.gate

        async let a = gate.apply(run: run.id)
        async let b = other.apply(run: run.id)
        async let c = gate.apply(run: run.id)
        let outcomes = try await [a, b, c]

        let applied = outcomes.filter { if case .applied = $0 { true } else { false } }
        #expect(applied == [.applied(.verified)], "\(outcomes)")
        #expect(outcomes.filter { if case .notApplied = $0 { true } else { false } }.count == 2, "\(outcomes)")
        #expect(world.applyLog == ["dev:1.0.0"])
        let transitions = try await world.store.transitions(of: run.id)
        #expect(transitions.filter { $0.transition.to == .applying }.count == 1)
        #expect(try world.applied("dev")?["release"] == "1.0.0")
    }

    @Test("a gate starting over a store with a run in planning and one in applying: re-queued and interrupted, never re-applied")
    func recoveryAfterCrash() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
          staging:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev", "staging"])
        defer { world.cleanup() }
        let commit = try world.release("1.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let dev = try await world.run("dev", "1.0.0")
        #expect(try await world.approve(dev, by: ["alice"]) == [.approved])

        // The first process dies right after committing approved → applying …
        let crashed = RunTransition(from: .approved, to: .applying, reason: TransitionReason(.preconditionsHeld))
        #expect(try await world.store.transition(dev.id, crashed, update: RunUpdate(), at: world.clock.now, actor: "lockstep"))
        // … while another run of staging was planning.
        try world.tag("staging/v1.0.0", at: commit)
        try world.publish()
        let tagObject = try world.git(["rev-parse", "staging/v1.0.0"])
        let staging = NewRun(id: try RunID("staging-run"), target: world.target("staging"), tagName: "staging/v1.0.0",
                             tagObject: try GitObjectID(tagObject), version: semver("1.0.0"),
                             commit: try GitObjectID(commit), tree: try GitObjectID(try world.git(["rev-parse", "\(commit)^{tree}"])),
                             taggerEmail: "dave@example.com", rollbackPin: nil, hasVerifyCommands: false)
        _ = try await world.store.createRun(staging, at: world.clock.now, actor: "lockstep")
        let planning = RunTransition(from: .queued, to: .planning, reason: TransitionReason(.planStarted))
        #expect(try await world.store.transition(staging.id, planning, update: RunUpdate(), at: world.clock.now, actor: "lockstep"))

        // A new process over the same store file.
        let (gate, store) = try world.secondGate()
        let recovered = try await gate.recover()
        #expect(recovered[dev.id] == .interrupted)
        #expect(recovered[staging.id] == .queued)
        #expect(try await store.alerts(target: world.target("dev")).contains { $0.runID == dev.id && $0.alert.code == .applyInterrupted })

        guard case .notApplied = try await gate.apply(run: dev.id) else { Issue.record("interrupted run applied"); return }
        let report = try await gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await store.run(dev.id)?.state == .interrupted)
        #expect(try await store.run(staging.id)?.state == .awaitingApproval)
        #expect(report.runsCreated.isEmpty)
        #expect(world.applyLog.isEmpty)
        #expect(try world.applied("dev") == nil)

        // Only an approver resolves it; resolving as failed deletes its plan file.
        #expect(try await gate.resolve(run: dev.id, as: .failed, identity: identity("dave"), reason: "not mine")
                == .refused("dave may not resolve runs of dev"))
        #expect(try await gate.resolve(run: dev.id, as: .failed, identity: identity("alice"), reason: "nothing changed")
                == .done(.failed))
        #expect(world.planFilesOnDisk().count == 1)  // staging's, awaiting approval
        #expect(world.applyLog.isEmpty)
    }
}
