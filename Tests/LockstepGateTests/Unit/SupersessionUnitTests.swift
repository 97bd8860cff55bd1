import NameLiterals
import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

@Suite("Gate unit: supersession (newer accepted tag → the waiting run steps aside)")
struct SupersessionUnitTests {
    @Test("a newer accepted tag supersedes a run that waits for approval, or is approved", arguments: [false, true])
    func newerTagSupersedes(approved: Bool) async throws {
        // The apply window is closed (the clock is on a Sunday), so an approved run stays approved.
        let world = try UnitWorld(environmentsYAML: unitDev + "\n    apply_windows:\n      - {days: [mon], from: \"00:00\", to: \"00:01\"}")
        defer { world.cleanup() }
        let old = approved ? try await world.approvedRun("1.0.0") : try await world.plannedRun("1.0.0")
        #expect(old.state == (approved ? .approved : .awaitingApproval))
        await world.releaseTagged("1.1.0", in: ["dev"])

        let report = try await world.gate.reconcile()

        #expect(report.runsSuperseded == [old.id])
        let new = try await world.newestRun("dev")
        #expect(new.id != old.id && new.run.version == semver("1.1.0"))
        #expect(new.state == .awaitingApproval)
        #expect(try await world.store.run(old.id)?.state == .superseded)
        #expect(try await world.lastReason(old.id) == "by run \(new.id)")
        #expect(await world.runner.applies.isEmpty)
        // The superseded run's plan can no longer be approved.
        let outcome = try await world.gate.approve(run: old.id, identity: "alice", digest: try #require(old.planDigest))
        guard case .refused(let refusal) = outcome else { Issue.record("approved a superseded run: \(outcome)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
    }

    @Test("a run whose apply started is never superseded: the newer tag waits for it")
    func applyingRunIsNotSuperseded() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let old = try await world.approvedRun("1.0.0")
        // Another process won approved → applying and is running terraform apply now.
        let moved = try await world.store.transition(old.id, RunTransition(from: .approved, to: .applying,
                                                                         reason: TransitionReason(.preconditionsHeld)),
                                                     update: RunUpdate(), at: world.clock.now, actor: "other-process")
        #expect(moved)
        await world.releaseTagged("1.1.0", in: ["dev"])

        let report = try await world.gate.reconcile()

        #expect(report.runsSuperseded.isEmpty)
        #expect(report.runsCreated.isEmpty)
        #expect(try await world.store.run(old.id)?.state == .applying)
        #expect(try await world.runs("dev").count == 1)
        #expect(try await world.decision("dev", "dev/1.1.0")?.accepted == true, "the tag is accepted, its run waits")
        #expect(await world.runner.applies.isEmpty, "this gate applied nothing")
    }

    @Test("a lower accepted version does not supersede the highest one")
    func lowerVersionDoesNotSupersede() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun("1.0.0")
        await world.releaseTagged("0.9.0", in: ["dev"])

        let report = try await world.gate.reconcile()

        #expect(report.runsSuperseded.isEmpty && report.runsCreated.isEmpty)
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
    }
}
