import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

// Freezes, the break-glass path and external check overrides (docs/CONTRACT.md §4), through the
// gate with the scripted doubles. The clock starts on Sunday 2030-03-17 at 17:46:40 UTC.

/// A freeze from the start of the test's day until 20:00 UTC that day.
private let freezeUntil20 = """
    freezes:
      - {from: "2030-03-17", to: "2030-03-17 20:00", timezone: UTC, reason: quarter close}
"""

private let breakGlass = """

    break_glass: {group: oncall, members: [carol, erin]}
"""

private func utc(_ text: String) -> Date {
    let formatter = ISO8601DateFormatter()
    return formatter.date(from: text)!
}

private func refusalCode(_ outcome: ApprovalOutcome) -> String? {
    if case .refused(let refusal) = outcome { return refusal.code.rawValue }
    return nil
}

@Suite("Gate unit: freezes and the break-glass path")
struct FreezeUnitTests {
    @Test("inside a freeze an approved run stays approved, says when it will apply, and applies when the freeze ends")
    func freezeHolds() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev + "\n" + freezeUntil20)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        #expect(run.state == .approved)

        #expect(try await world.gate.apply(run: run.id) == .waitingForApplyWindow)
        let report = try #require(try await world.store.applyPreconditions(of: run.id).last)
        #expect(report.failures.map(\.code) == [.frozen])
        #expect(report.failures.first?.description.contains("quarter close") == true)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .approved)
        #expect(await world.runner.applies.isEmpty)

        let held = try #require(try await world.store.run(run.id))
        let schedule = try #require(try await world.gate.applySchedule(of: held))
        #expect(schedule.appliesAt == utc("2030-03-17T20:00:00Z"))
        #expect(schedule.heldBecause.contains("frozen"))
        #expect(schedule.approvalsExpireAt == run.updatedAt.addingTimeInterval(86_400))

        world.clock.advance(seconds: 2 * 3_600 + 14 * 60)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .verified)
        #expect(await world.runner.applies == [try #require(run.planDigest)])
    }

    @Test("approvals that expire while the run waits for its window end it as expired, never shown as approved")
    func expiresWhileHeld() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev + "\n    approval_ttl: 1h\n"
                                  + "    apply_windows:\n      - {days: [mon], from: \"09:00\", to: \"10:00\"}")
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        let schedule = try #require(try await world.gate.applySchedule(of: run))
        #expect(schedule.appliesAt == utc("2030-03-18T09:00:00Z"))
        let expiry = try #require(schedule.approvalsExpireAt)
        #expect(expiry < schedule.appliesAt!, "the approval (1h) ends before Monday's window")

        world.clock.advance(seconds: 1_800)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .approved, "still valid after 30 minutes")

        world.clock.advance(seconds: 1_801)
        _ = try await world.gate.reconcile()
        #expect(try await world.store.run(run.id)?.state == .expired)
        #expect(try await world.path(run.id).last == "expired:approvals_expired")
        world.clock.advance(seconds: 16 * 3_600)
        _ = try await world.gate.reconcile()
        #expect(await world.runner.applies.isEmpty, "an expired run never applies when the window opens")
    }

    @Test("two break-glass members with reasons apply inside a freeze, with an alert and a marked transition")
    func breakGlassApplies() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev + "\n" + freezeUntil20 + breakGlass)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        let digest = try #require(run.planDigest)

        let first = try await world.gate.approve(run: run.id, identity: identity("carol"), digest: digest,
                                                 terms: ApprovalTerms(breakGlass: true, reason: "payments down, fix in v1.0.0"))
        #expect(refusalCode(first) == nil)
        #expect(try await world.gate.apply(run: run.id) == .waitingForApplyWindow, "one member is not enough")
        #expect(await world.runner.applies.isEmpty)

        _ = try await world.gate.approve(run: run.id, identity: identity("erin"), digest: digest,
                                         terms: ApprovalTerms(breakGlass: true, reason: "confirmed with carol"))
        let outcome = try await world.gate.apply(run: run.id)
        #expect(outcome == .applied(.verified))
        #expect(await world.runner.applies == [digest])

        let transitions = try await world.store.transitions(of: run.id)
        let applying = try #require(transitions.first { $0.transition.to == .applying })
        #expect(applying.transition.reason.code == .breakGlass)
        #expect(applying.transition.reason.detail?.contains("carol, erin") == true)
        #expect(applying.transition.reason.detail?.contains("frozen") == true)
        #expect(try await world.alertCodes("dev").contains("break_glass_apply"))
        let approvals = try await world.store.auditEntries().filter { $0.runID == run.id && $0.kind == .approval }
        let glass = approvals.filter { $0.payload["break_glass"] == "true" }
        #expect(glass.map { $0.payload["identity"] } == ["carol", "erin"])
        #expect(glass.first?.payload["approver_reason"] == "payments down, fix in v1.0.0")
    }

    @Test("break-glass approvals are refused without a group, from a non-member, or without a reason; the run stays held",
          arguments: [
            (unitDev + "\n" + freezeUntil20, "carol", "why", "break_glass_not_allowed"),
            (unitDev + "\n" + freezeUntil20 + breakGlass, "bob", "why", "break_glass_not_allowed"),
            (unitDev + "\n" + freezeUntil20 + breakGlass, "carol", "  ", "reason_required"),
          ])
    func breakGlassRefused(yaml: String, who: String, reason: String, code: String) async throws {
        let world = try UnitWorld(environmentsYAML: yaml)
        defer { world.cleanup() }
        let run = try await world.approvedRun()
        let outcome = try await world.gate.approve(run: run.id, identity: identity(who), digest: try #require(run.planDigest),
                                                   terms: ApprovalTerms(breakGlass: true, reason: reason))
        #expect(refusalCode(outcome) == code)
        #expect(try await world.store.approvalRefusals(of: run.id).last?.code.rawValue == code)
        #expect(try await world.gate.apply(run: run.id) == .waitingForApplyWindow)
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("a freeze's bounds: a date alone as `to` includes that day, in the freeze's own time zone")
    func freezeBounds() throws {
        let yaml = unitDev + "\n    freezes:\n      - {from: \"2030-12-24\", to: \"2030-12-26\", timezone: Europe/Berlin}"
        let agent = try UnitWorld.agent(environmentsYAML: yaml, scratch: URL(fileURLWithPath: NSTemporaryDirectory()))
        let policy = try #require(agent.environments[envName("dev")])
        #expect(policy.freeze(at: utc("2030-12-23T22:59:59Z")) == nil)
        #expect(policy.freeze(at: utc("2030-12-23T23:00:00Z")) != nil, "midnight in Berlin")
        #expect(policy.freeze(at: utc("2030-12-26T22:59:59Z")) != nil)
        #expect(policy.freeze(at: utc("2030-12-26T23:00:00Z")) == nil)
        #expect(policy.nextApplyTime(after: utc("2030-12-25T12:00:00Z")) == utc("2030-12-26T23:00:00Z"))
    }
}

@Suite("Gate unit: external checks and their overrides")
struct ExternalCheckUnitTests {
    static func yaml(mayOverride: Bool, timeout: String = "1m") -> String {
        """
          dev:
            serves: true
            approvals: 1
            approvers: [alice, bob]
            checks:
              - {name: scan, command: [/usr/bin/scanner, "{plan_json}", "{tree}"], may_override: \(mayOverride), timeout: \(timeout)}
        """
    }

    @Test("a check that passes: the run awaits the usual approvals and the result is stored with the plan")
    func passes() async throws {
        let world = try UnitWorld(environmentsYAML: Self.yaml(mayOverride: false))
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        #expect(run.state == .awaitingApproval)
        #expect(run.plan?.checkResults.map(\.name) == ["scan"])
        #expect(run.plan?.checkResults.first?.passed == true)
        #expect(await world.runner.calls.contains(.program("scanner")))
        #expect(try await world.path(run.id).contains { $0.hasPrefix("checking:") })
        let outcome = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: try #require(run.planDigest))
        #expect(outcome == .approved)
    }

    @Test("a failed check that may not be overridden fails the run, naming the check; nothing can approve it",
          arguments: [CommandOutcome.failed(exitCode: 1), .timedOut])
    func blocks(outcome: CommandOutcome) async throws {
        let world = try UnitWorld(environmentsYAML: Self.yaml(mayOverride: false))
        defer { world.cleanup() }
        await world.runner.script { $0.programOutcomes = [outcome] }
        let run = try await world.plannedRun()
        #expect(run.state == .failed)
        let reason = try #require(try await world.store.transitions(of: run.id).last?.transition.reason)
        #expect(reason.code == .checksFailed)
        #expect(reason.detail?.contains("check scan") == true)
        if outcome == .timedOut { #expect(reason.detail?.contains("timed out") == true) }
        let approval = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: try #require(run.planDigest),
                                                    terms: ApprovalTerms(overrideChecks: ["scan"], reason: "I know"))
        #expect(refusalCode(approval) == "run_not_awaiting_approval")
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("an overridable failure where the environment has too few approvers for one approval more fails the run, saying so")
    func tooFewApproversToOverride() async throws {
        let yaml = Self.yaml(mayOverride: true).replacingOccurrences(of: "approvers: [alice, bob]", with: "approvers: [alice]")
        let world = try UnitWorld(environmentsYAML: yaml)
        defer { world.cleanup() }
        await world.runner.script { $0.programOutcomes = [.failed(exitCode: 1)] }
        let run = try await world.plannedRun()
        #expect(run.state == .failed)
        let detail = try #require(try await world.lastReason(run.id))
        #expect(detail.contains("check scan failed; overriding it needs 2 approvals, but only 1 approvers are configured"), "\(detail)")
    }

    @Test("an overridable failure: every approval must override it by name with a reason, and one more approval is needed")
    func overridden() async throws {
        let world = try UnitWorld(environmentsYAML: Self.yaml(mayOverride: true))
        defer { world.cleanup() }
        await world.runner.script { $0.programOutcomes = [.failed(exitCode: 1)] }
        let run = try await world.plannedRun()
        #expect(run.state == .awaitingApproval)
        #expect(try await world.path(run.id).last == "awaiting_approval:checks_failed_overridable")
        let digest = try #require(run.planDigest)
        #expect(try await world.gate.reviewFacts(of: run).requiredApprovals == 2)

        let plain = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest)
        #expect(refusalCode(plain) == "check_failed")
        let noReason = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest,
                                                    terms: ApprovalTerms(overrideChecks: ["scan"]))
        #expect(refusalCode(noReason) == "reason_required")
        let wrong = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest,
                                                 terms: ApprovalTerms(overrideChecks: ["scan", "other"], reason: "r"))
        #expect(refusalCode(wrong) == "override_not_needed")

        let first = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest,
                                                 terms: ApprovalTerms(overrideChecks: ["scan"], reason: "false positive, ticket SEC-12"))
        #expect(first == .recorded(valid: 1, required: 2))
        let second = try await world.gate.approve(run: run.id, identity: identity("bob"), digest: digest,
                                                  terms: ApprovalTerms(overrideChecks: ["scan"], reason: "agreed"))
        #expect(second == .approved)
        #expect(try await world.gate.apply(run: run.id) == .applied(.verified))
        let approvals = try await world.store.auditEntries().filter { $0.runID == run.id && $0.kind == .approval }
        #expect(approvals.map { $0.payload["override_checks"] } == ["scan", "scan"])
        #expect(approvals.first?.payload["approver_reason"] == "false positive, ticket SEC-12")
        let refusals = try await world.store.auditEntries().filter { $0.runID == run.id && $0.kind == .approvalRefusal }
        #expect(refusals.compactMap { $0.payload["code"] } == ["check_failed", "reason_required", "override_not_needed"])
    }
}
