import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// What breaks one apply precondition of an approved run, and what the trigger must do.
struct PreconditionCase: Sendable, CustomTestStringConvertible {
    enum Change: Sendable {
        case tamperSealedPlan, removeSealedPlan, moveTag, deleteTag, waitPastApprovalTTL
        /// The daemon restarted with this `environments:` block.
        case restartWith(String)
    }

    var name: String
    var environmentYAML = unitDev + "\n    approval_ttl: 1h"
    var change: Change
    var failures: [ApplyPreconditionFailure.Code]
    /// The run's state after the trigger.
    var state: RunState
    /// The alert raised on the run, if any.
    var alert: RunAlert.Code?
    var testDescription: String { name }
}

@Suite("Gate unit: apply preconditions (trigger → applied, refused or waiting)")
struct ApplyPreconditionUnitTests {
    static let cases: [PreconditionCase] = [
        PreconditionCase(name: "the sealed plan no longer has the approved digest", change: .tamperSealedPlan,
                         failures: [.planDigestMismatch], state: .failed, alert: .approvedPlanChanged),
        PreconditionCase(name: "the sealed plan is gone", change: .removeSealedPlan,
                         failures: [.planFileMissing], state: .failed, alert: .approvedPlanChanged),
        PreconditionCase(name: "the release tag moved after approval", change: .moveTag,
                         failures: [.tagMoved], state: .failed, alert: .approvedPlanChanged),
        PreconditionCase(name: "the release tag was deleted after approval", change: .deleteTag,
                         failures: [.tagDeleted], state: .failed, alert: .approvedPlanChanged),
        PreconditionCase(name: "the approvals expired before apply", change: .waitPastApprovalTTL,
                         failures: [.insufficientApprovals], state: .awaitingApproval),
        PreconditionCase(name: "the checks no longer pass under the agent's policy",
                         change: .restartWith(unitDev + "\n    allowed_resource_types: [aws_instance]"),
                         failures: [.checksNotPassed], state: .failed),
        PreconditionCase(name: "this agent no longer serves the environment",
                         change: .restartWith(unitDev.replacingOccurrences(of: "serves: true", with: "serves: false")),
                         failures: [.environmentNotServed], state: .failed),
    ]

    @Test("each failed precondition is recorded, the run goes where the report says, and terraform apply never runs",
          arguments: cases)
    func preconditionFails(_ precondition: PreconditionCase) async throws {
        let world = try UnitWorld(environmentsYAML: precondition.environmentYAML)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        #expect(run.state == .approved)
        var gate = world.gate
        switch precondition.change {
        case .tamperSealedPlan:
            try Data("another plan".utf8).write(to: world.sealedPlanFile(run.id))
        case .removeSealedPlan:
            try FileManager.default.removeItem(at: world.sealedPlanFile(run.id))
        case .moveTag:
            await world.source.tag("dev/1.0.0", at: await world.release("1.0.0-other"))
        case .deleteTag:
            await world.source.deleteTag("dev/1.0.0")
        case .waitPastApprovalTTL:
            world.clock.advance(seconds: 3_601)
        case .restartWith(let yaml):
            gate = try world.restarted(environmentsYAML: yaml)
        }
        let callsBefore = await world.runner.calls

        let outcome = try await gate.apply(run: run.id)

        guard case .preconditionsFailed(let report, let state) = outcome else {
            Issue.record("not refused by a precondition: \(outcome)"); return
        }
        #expect(report.failures.map(\.code) == precondition.failures)
        #expect(state == precondition.state)
        #expect(try await world.store.run(run.id)?.state == precondition.state)
        #expect(try await world.store.applyPreconditions(of: run.id).last == report)
        #expect(try await world.path(run.id).last?.hasPrefix("\(precondition.state.rawValue):") == true)
        #expect(await world.runner.calls == callsBefore, "nothing ran: not init, not apply")
        let alerts = try await world.store.alerts(target: world.target("dev")).filter { $0.runID == run.id }.map(\.alert.code)
        if let alert = precondition.alert {
            #expect(alerts.contains(alert), "\(alerts)")
        }
        if precondition.state.isFinal {
            #expect(!FileManager.default.fileExists(atPath: world.sealedPlanFile(run.id).path), "an ended run keeps no plan")
        }
    }

    @Test("outside the apply window the run stays approved and nothing runs; a trigger inside it applies")
    func applyWindow() async throws {
        // The clock starts on a Sunday at 17:46 UTC.
        let world = try UnitWorld(environmentsYAML: unitDev + "\n    apply_windows:\n      - {days: [sun], from: \"18:00\", to: \"19:00\"}")
        defer { world.cleanup() }
        let run = try await world.approvedRun()

        #expect(try await world.gate.apply(run: run.id) == .waitingForApplyWindow)
        #expect(try await world.store.run(run.id)?.state == .approved)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .approved)
        #expect(await world.runner.applies.isEmpty)

        world.clock.advance(seconds: 15 * 60)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .verified)
        #expect(await world.runner.applies == [try #require(run.planDigest)])
    }

    @Test("a run that is not approved is not applied by a trigger")
    func notApproved() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        guard case .notApplied = try await world.gate.apply(run: run.id) else { Issue.record("applied a waiting run"); return }
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("when the tag cannot be re-resolved nothing is decided: the run stays approved")
    func factsUnavailable() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        await world.source.script { $0.syncFailure = .init(.network, "remote unreachable") }
        guard case .deferred = try await world.gate.apply(run: run.id) else { Issue.record("not deferred"); return }
        #expect(try await world.store.run(run.id)?.state == .approved)
        #expect(await world.runner.applies.isEmpty)
    }
}

@Suite("Gate unit: apply and verify (approved → applying → applied → verified or failed)")
struct ApplyAndVerifyUnitTests {
    @Test("every precondition holds: exactly the approved plan is applied once, from a fresh export, and the run is verified")
    func happyPath() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        let digest = try #require(run.planDigest)

        #expect(try await world.gate.apply(run: run.id) == .applied(.verified))

        #expect(try await world.path(run.id).suffix(3) == ["applying:preconditions_held", "applied:apply_succeeded",
                                                           "verified:no_verify_configured"])
        #expect(await world.runner.applies == [digest])
        #expect(await world.runner.calls.suffix(4) == [.initialize, .stateHead, .apply(digest), .outputs])
        #expect(await world.source.exports == [run.run.commit, run.run.commit], "one export for the plan, a fresh one for apply")
        #expect(try await world.store.outputs(of: world.target("dev"), storedBy: run.id)?.contains("example.test") == true)
        #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).path), "the plan never outlives its run")
        // A second trigger applies nothing.
        guard case .notApplied = try await world.gate.apply(run: run.id) else { Issue.record("applied twice"); return }
        #expect(await world.runner.applies == [digest])
    }

    static let applyFailures: [(CommandOutcome, String)] = [
        (.stalePlan, "stale plan"),
        (.stateLocked(lockID: "lock-9"), "the state is locked by another process (lock lock-9)"),
        (.timedOut, "did not finish within apply_timeout"),
        (.failed(exitCode: 1), "terraform apply failed with exit status 1"),
    ]

    @Test("terraform apply ending badly fails the run with the reason and an alert", arguments: applyFailures)
    func applyFails(_ outcome: CommandOutcome, _ reason: String) async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.runner.script { $0.applyOutcome = outcome }
        let run = try await world.approvedRun()

        guard case .applyFailed(let shown) = try await world.gate.apply(run: run.id) else { Issue.record("not failed"); return }
        #expect(shown.contains(reason), "\(shown)")
        #expect(try await world.path(run.id).last == "failed:apply_failed")
        #expect(try await world.alertCodes("dev").contains("apply_failed"))
        #expect(await world.runner.applies.count == 1)
        #expect(!FileManager.default.fileExists(atPath: world.sealedPlanFile(run.id).path))
    }

    @Test("verify commands that succeed verify the run")
    func verifySucceeds() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev, verify: ["dev": ["true", "--smoke"]])
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        #expect(run.run.hasVerifyCommands)

        #expect(try await world.gate.apply(run: run.id) == .applied(.verified))

        #expect(try await world.path(run.id).suffix(3) == ["applied:apply_succeeded", "verifying:verify_started",
                                                           "verified:verify_succeeded"])
        #expect(await world.runner.calls.last == .program("true"))
        #expect(await world.source.exports.count == 3, "plan, apply and verify each read their own export")
    }

    static let verifyFailures: [(argv: [String], outcome: CommandOutcome, reason: String)] = [
        (["true"], .failed(exitCode: 3), "verify command 1 (true) failed with exit status 3"),
        (["true"], .timedOut, "verify command 1 (true) did not finish within its time limit"),
        (["no-such-program-on-this-agent"], .succeeded, "was not found on the agent's PATH"),
    ]

    @Test("a verify command that fails ends the run failed with the reason", arguments: verifyFailures)
    func verifyFails(_ verify: (argv: [String], outcome: CommandOutcome, reason: String)) async throws {
        let world = try UnitWorld(environmentsYAML: unitDev, verify: ["dev": verify.argv])
        defer { world.cleanup() }
        await world.runner.script { $0.programOutcomes = [verify.outcome] }
        let run = try await world.approvedRun()

        #expect(try await world.gate.apply(run: run.id) == .applied(.failed))

        #expect(try await world.path(run.id).suffix(2) == ["verifying:verify_started", "failed:verify_failed"])
        let reason = try #require(try await world.lastReason(run.id))
        #expect(reason.contains(verify.reason), "\(reason)")
    }
}
