import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

@Suite("Gate unit: stops and restarts (cancelled plan, crash recovery, operator resolution)")
struct RecoveryUnitTests {
    @Test("a pass cancelled while terraform plans puts the run back in the queue, and the next pass plans it from scratch")
    func cancelledPlanIsQueuedAgain() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.runner.script { $0.planScript = .untilCancelled }
        await world.releaseTagged("1.0.0", in: ["dev"])
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }
        try await world.runner.waitForCall(.plan)

        pass.cancel()
        _ = try? await pass.value

        let run = try await world.newestRun("dev")
        #expect(run.state == .queued)
        #expect(try await world.path(run.id) == ["planning:plan_started", "queued:plan_cancelled"])
        #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).path))
        await world.runner.script { $0.planScript = .changes }
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(await world.source.exports == [run.run.commit, run.run.commit], "planned again from a fresh export")
    }

    @Test("after a crash a run found planning is queued again and planned by the next pass")
    func planningIsRequeued() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        // A release whose plan a crash interrupted: its run is left `planning` in the store.
        await world.releaseTagged("1.1.0", in: ["dev"])
        let tag = try await world.source.tag(named: "dev/1.1.0")
        let created = try await world.store.createRun(
            NewRun(id: try RunID("crashed-run"), target: world.target("dev"), tagName: "dev/1.1.0",
                   tagObject: tag.target, version: semver("1.1.0"), commit: tag.commit, tree: tag.tree, taggerEmail: "dave@example.com",
                   rollbackPin: nil, hasVerifyCommands: false),
            at: world.clock.now, actor: "lockstep")
        #expect(try await world.store.transition(created.id, RunTransition(from: .queued, to: .planning,
                                                                          reason: TransitionReason(.planStarted)),
                                                 update: RunUpdate(), at: world.clock.now, actor: "lockstep"))

        let states = try await world.gate.recover()

        #expect(states[created.id] == .queued)
        #expect(try await world.path(created.id).last == "queued:requeued_after_crash")
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(created.id)?.state == .awaitingApproval)
    }

    @Test("after a crash a run found applying is interrupted with an alert, never applied again, and settled only by an approver")
    func applyingIsInterrupted() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        // The process died after approved → applying was stored.
        #expect(try await world.store.transition(run.id, RunTransition(from: .approved, to: .applying,
                                                                      reason: TransitionReason(.preconditionsHeld)),
                                                 update: RunUpdate(), at: world.clock.now, actor: "lockstep"))

        let states = try await world.gate.recover()

        #expect(states[run.id] == .interrupted)
        #expect(try await world.alertCodes("dev").contains("apply_interrupted"))
        _ = try await world.gate.reconcile()
        guard case .notApplied = try await world.gate.apply(run: run.id) else { Issue.record("applied again"); return }
        #expect(await world.runner.applies.isEmpty)

        guard case .refused = try await world.gate.resolve(run: run.id, as: .failed, identity: "erin", reason: "x") else {
            Issue.record("erin resolved a run she may not approve"); return
        }
        #expect(try await world.gate.resolve(run: run.id, as: .failed, identity: "alice", reason: "checked: nothing changed")
                == .done(.failed))
        #expect(try await world.path(run.id).last == "failed:operator_resolved_failed")
    }
}
