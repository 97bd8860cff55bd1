import Foundation
import Testing
@testable import LockstepCore

/// The run state machine (docs/CONTRACT.md §4): an event → action table for every transition and
/// exit, refusal of everything else, persist-before-side-effect, and apply at most once.
@Suite struct RunStateMachineTests {
    static let d = digest("a")
    static let alice = identity("alice")
    static let approval = Approval(runID: runID("run-1"), identity: alice, digest: d, time: t0)
    static let foreignApproval = Approval(runID: runID("run-1"), identity: alice, digest: digest("b"), time: t0)
    static let refusal = ApprovalRefusal(code: .unknownIdentity, approval: approval, description: "nope")
    static let allHold = ApplyPreconditionReport(failures: [])
    static let windowClosed = ApplyPreconditionReport(failures: [.init(code: .applyWindowClosed, description: "closed")])
    static let approvalsShort = ApplyPreconditionReport(failures: [.init(code: .insufficientApprovals, description: "1 of 2")])
    static let tagMovedReport = ApplyPreconditionReport(failures: [.init(code: .tagMoved, description: "moved")])
    static let staleReport = ApplyPreconditionReport(failures: [.init(code: .targetAppliedSincePlan, description: "stale")])

    /// Every kind of event, by a short label.
    static let events: [String: RunEvent] = [
        "planStarted": .planStarted,
        "planSucceeded": .planSucceeded(digest: d, hasChanges: true),
        "planSucceededNoChanges": .planSucceeded(digest: d, hasChanges: false),
        "planFailed": .planFailed(reason: "boom"),
        "planCancelled": .planCancelled(reason: "stopping"),
        "checksPassed": .checksPassed,
        "checksFailed": .checksFailed(reasons: ["r1", "r2"]),
        "approvalPartial": .approvalRecorded(.accepted(approval, validApprovals: 1, required: 2)),
        "approvalEnough": .approvalRecorded(.accepted(approval, validApprovals: 2, required: 2)),
        "approvalWrongDigest": .approvalRecorded(.accepted(foreignApproval, validApprovals: 2, required: 2)),
        "approvalRefused": .approvalRecorded(.refused(refusal)),
        "rejected": .rejected(by: alice, reason: "no"),
        "superseded": .superseded(by: runID("run-2")),
        "tagMoved": .tagMoved,
        "approvalsExpired": .approvalsExpired,
        "preconditionsHold": .applyPreconditions(allHold),
        "preconditionsWindowClosed": .applyPreconditions(windowClosed),
        "preconditionsApprovalsShort": .applyPreconditions(approvalsShort),
        "preconditionsTagMoved": .applyPreconditions(tagMovedReport),
        "preconditionsStale": .applyPreconditions(staleReport),
        "applySucceeded": .applySucceeded,
        "applyFailed": .applyFailed(reason: "boom"),
        "verifySucceeded": .verifySucceeded,
        "verifyFailed": .verifyFailed(reason: "smoke"),
        "recovered": .recoveredAfterCrash,
        "resolvedApplied": .operatorResolved(as: .applied, by: alice),
        "resolvedFailed": .operatorResolved(as: .failed, by: alice),
    ]

    struct Row: Sendable, CustomTestStringConvertible {
        let state: RunState
        let event: String
        let verify: Bool
        let next: RunState
        let actions: [RunAction]
        var testDescription: String { "\(state) + \(event)\(verify ? "" : " (no verify)") → \(next)" }
    }

    static func p(_ from: RunState, _ to: RunState, _ code: TransitionReason.Code, _ detail: String? = nil) -> RunAction {
        .persist(RunTransition(from: from, to: to, reason: TransitionReason(code, detail: detail)))
    }

    static func row(_ state: RunState, _ event: String, _ next: RunState, _ actions: [RunAction], verify: Bool = true) -> Row {
        Row(state: state, event: event, verify: verify, next: next, actions: actions)
    }

    static let preApply: [RunState] = [.queued, .planning, .checking, .awaitingApproval, .approved]

    /// Cleanup when a run ends before apply: cancel a running plan, delete any plan file.
    static func cleanup(_ state: RunState) -> [RunAction] {
        switch state {
        case .queued: []
        case .planning: [.cancelPlan, .deletePlanFile]
        default: [.deletePlanFile]
        }
    }

    /// The full table of everything that is not a plain refusal.
    static let rows: [Row] = {
        var rows: [Row] = [
            row(.queued, "planStarted", .planning, [p(.queued, .planning, .planStarted), .startPlan]),
            row(.planning, "planSucceeded", .checking, [p(.planning, .checking, .planSucceeded, "digest \(d)"), .runChecks(d)]),
            row(.planning, "planSucceededNoChanges", .noChanges, [p(.planning, .noChanges, .noChanges), .deletePlanFile]),
            row(.planning, "planFailed", .failed, [p(.planning, .failed, .planFailed, "boom"), .deletePlanFile]),
            // A stopped plan is re-queued with its reason, never failed.
            row(.planning, "planCancelled", .queued, [p(.planning, .queued, .planCancelled, "stopping"), .deletePlanFile]),
            row(.checking, "checksPassed", .awaitingApproval, [p(.checking, .awaitingApproval, .checksPassed), .requestApprovals(d)]),
            row(.checking, "checksFailed", .failed, [p(.checking, .failed, .checksFailed, "r1; r2"), .deletePlanFile]),
            row(.awaitingApproval, "approvalPartial", .awaitingApproval, [.recordApproval(approval)]),
            row(.awaitingApproval, "approvalEnough", .approved,
                [.recordApproval(approval), p(.awaitingApproval, .approved, .approvalsSatisfied, "2 of 2"), .checkApplyPreconditions]),
            row(.awaitingApproval, "approvalWrongDigest", .awaitingApproval,
                [.recordApprovalRefusal(ApprovalRefusal(code: .wrongDigest, approval: foreignApproval,
                                                        description: "the approval quotes digest \(digest("b")), not this run's plan digest"))]),
            row(.approved, "preconditionsHold", .applying,
                [.recordApplyPreconditions(allHold), p(.approved, .applying, .preconditionsHeld), .startApply(d)]),
            row(.approved, "preconditionsWindowClosed", .approved, [.recordApplyPreconditions(windowClosed), .waitForApplyWindow]),
            row(.approved, "preconditionsApprovalsShort", .awaitingApproval,
                [.recordApplyPreconditions(approvalsShort), p(.approved, .awaitingApproval, .approvalsNoLongerSufficient, "1 of 2"),
                 .requestApprovals(d)]),
            row(.approved, "preconditionsTagMoved", .failed,
                [.recordApplyPreconditions(tagMovedReport), p(.approved, .failed, .preconditionsFailed, "moved"), .deletePlanFile,
                 .raiseAlert(RunAlert(code: .approvedPlanChanged, description: "what was approved changed before apply: moved"))]),
            row(.approved, "preconditionsStale", .failed,
                [.recordApplyPreconditions(staleReport), p(.approved, .failed, .preconditionsFailed, "stale"), .deletePlanFile]),
            row(.applying, "applySucceeded", .verifying,
                [p(.applying, .applied, .applySucceeded), .deletePlanFile, p(.applied, .verifying, .verifyStarted), .startVerify]),
            row(.applying, "applySucceeded", .verified,
                [p(.applying, .applied, .applySucceeded), .deletePlanFile, p(.applied, .verified, .noVerifyConfigured)], verify: false),
            row(.applying, "applyFailed", .failed,
                [p(.applying, .failed, .applyFailed, "boom"), .deletePlanFile,
                 .raiseAlert(RunAlert(code: .applyFailed, description: "apply failed; the target may be partly changed"))]),
            row(.verifying, "verifySucceeded", .verified, [p(.verifying, .verified, .verifySucceeded)]),
            row(.verifying, "verifyFailed", .failed, [p(.verifying, .failed, .verifyFailed, "smoke")]),
            row(.planning, "recovered", .queued, [p(.planning, .queued, .requeuedAfterCrash), .deletePlanFile]),
            row(.checking, "recovered", .checking, [.runChecks(d)]),
            row(.applying, "recovered", .interrupted,
                [p(.applying, .interrupted, .interruptedByCrash),
                 .raiseAlert(RunAlert(code: .applyInterrupted, description: "an apply was interrupted; it will not be retried until an operator resolves it"))]),
            row(.interrupted, "recovered", .interrupted,
                [.raiseAlert(RunAlert(code: .applyInterrupted, description: "an interrupted apply is still waiting for an operator"))]),
            row(.applied, "recovered", .verifying, [p(.applied, .verifying, .verifyStarted), .startVerify]),
            row(.applied, "recovered", .verified, [p(.applied, .verified, .noVerifyConfigured)], verify: false),
            row(.verifying, "recovered", .verifying, [.startVerify]),
            row(.interrupted, "resolvedApplied", .verifying,
                [p(.interrupted, .applied, .operatorResolvedApplied, "by alice"), .deletePlanFile, p(.applied, .verifying, .verifyStarted), .startVerify]),
            row(.interrupted, "resolvedApplied", .verified,
                [p(.interrupted, .applied, .operatorResolvedApplied, "by alice"), .deletePlanFile, p(.applied, .verified, .noVerifyConfigured)],
                verify: false),
            row(.interrupted, "resolvedFailed", .failed, [p(.interrupted, .failed, .operatorResolvedFailed, "by alice"), .deletePlanFile]),
            row(.awaitingApproval, "approvalsExpired", .expired, [p(.awaitingApproval, .expired, .approvalsExpired), .deletePlanFile]),
            row(.approved, "approvalsExpired", .expired, [p(.approved, .expired, .approvalsExpired), .deletePlanFile]),
        ]
        for state in preApply {
            rows.append(row(state, "rejected", .rejected, [p(state, .rejected, .rejected, "by alice: no")] + cleanup(state)))
            rows.append(row(state, "superseded", .superseded, [p(state, .superseded, .superseded, "by run run-2")] + cleanup(state)))
            rows.append(row(state, "tagMoved", .failed, [p(state, .failed, .tagMoved, "the release tag moved or was deleted")] + cleanup(state)
                            + [.raiseAlert(RunAlert(code: .tagMoved, description: "the release tag of this run moved or was deleted; the run was stopped"))]))
        }
        for state in [RunState.applying, .applied, .verifying, .verified, .interrupted] {
            rows.append(row(state, "tagMoved", state, [.raiseAlert(RunAlert(
                code: .tagMovedAfterApplyStarted, description: "the release tag of this run moved or was deleted after apply started"))]))
        }
        for state in RunState.allCases {
            // Every approval attempt is recorded, accepted or refused, so refusals reach the audit log.
            rows.append(row(state, "approvalRefused", state, [.recordApprovalRefusal(refusal)]))
            if state != .awaitingApproval {
                for label in ["approvalPartial", "approvalEnough", "approvalWrongDigest"] {
                    let quoted = label == "approvalWrongDigest" ? foreignApproval : approval
                    rows.append(row(state, label, state, [.recordApprovalRefusal(ApprovalRefusal(
                        code: .runNotAwaitingApproval, approval: quoted, description: "run run-1 is \(state), not awaiting approval"))]))
                }
            }
            // Nothing to resume in these states after a restart.
            if [.queued, .awaitingApproval, .approved].contains(state) || state.isFinal {
                rows.append(row(state, "recovered", state, []))
            }
        }
        return rows
    }()

    static func machine(_ state: RunState, verify: Bool) -> RunStateMachine {
        let needsDigest = ![RunState.queued, .planning].contains(state)
        return try! RunStateMachine(restoring: state, planDigest: needsDigest ? d : nil, hasVerifyCommands: verify)
    }

    /// Each table row: the exact actions, in order, and the resulting state.
    @Test(arguments: rows)
    func transitionTable(row: Row) throws {
        var machine = Self.machine(row.state, verify: row.verify)
        let actions = machine.handle(try #require(Self.events[row.event]))
        #expect(actions == row.actions)
        #expect(machine.state == row.next)
    }

    /// Every (state, event) pair outside the table is refused: one typed refusal, no side effect, no state change.
    @Test(arguments: RunState.allCases)
    func everythingElseIsRefused(state: RunState) throws {
        for (label, event) in Self.events.sorted(by: { $0.key < $1.key }) {
            for verify in [true, false] {
                guard !Self.rows.contains(where: { $0.state == state && $0.event == label }) else { continue }
                var machine = Self.machine(state, verify: verify)
                let actions = machine.handle(event)
                #expect(actions == [.refuse(RunEventRefusal(state: state, event: event.name,
                                                            description: "\(event.name) is not valid while the run is \(state)"))],
                        "\(state) + \(label)")
                #expect(machine.state == state)
            }
        }
    }

    /// Every exit state is reached by at least one row, and no final state has a way out.
    @Test func everyExitIsCoveredAndFinal() {
        let exits: [RunState] = [.noChanges, .rejected, .superseded, .failed, .interrupted, .expired]
        for exit in exits + [.verified] {
            #expect(Self.rows.contains { $0.next == exit && $0.state != exit }, "no row reaches \(exit)")
        }
        for row in Self.rows where row.state.isFinal {
            #expect(row.next == row.state, "\(row.testDescription) leaves a final state")
        }
    }

    static func isSideEffect(_ action: RunAction) -> Bool {
        switch action {
        case .startPlan, .cancelPlan, .runChecks, .requestApprovals, .checkApplyPreconditions, .waitForApplyWindow,
             .startApply, .deletePlanFile, .startVerify: true
        default: false
        }
    }

    /// For every state and event: when a list changes state, a persist comes before every side effect,
    /// the persists chain from the old state to the new one, and the machine ends where the last persist says.
    @Test func persistComesBeforeEverySideEffect() {
        for state in RunState.allCases {
            for (label, event) in Self.events {
                for verify in [true, false] {
                    var machine = Self.machine(state, verify: verify)
                    let actions = machine.handle(event)
                    let persists = actions.compactMap { if case .persist(let t) = $0 { t } else { nil } }
                    if persists.isEmpty {
                        #expect(machine.state == state, "\(state) + \(label) changed state without persisting")
                        continue
                    }
                    let firstPersist = actions.firstIndex { if case .persist = $0 { true } else { false } }!
                    #expect(!actions[..<firstPersist].contains(where: Self.isSideEffect), "\(state) + \(label): side effect before persist")
                    var current = state
                    for transition in persists {
                        #expect(transition.from == current, "\(state) + \(label): broken persist chain")
                        current = transition.to
                    }
                    #expect(machine.state == current)
                }
            }
        }
    }

    /// All machines reachable from `start` by any event sequence, with the actions of each step.
    static func reachable(from start: RunStateMachine) -> [(RunStateMachine, [RunAction])] {
        var seen: Set<RunStateMachine> = [start]
        var queue = [start]
        var steps: [(RunStateMachine, [RunAction])] = []
        while let machine = queue.popLast() {
            for event in events.values {
                var next = machine
                let actions = next.handle(event)
                steps.append((machine, actions))
                if seen.insert(next).inserted { queue.append(next) }
            }
        }
        return steps
    }

    /// From `applying` or `interrupted`, no event sequence of any length yields another apply.
    /// (The machine has finitely many values, so exploring all reachable ones covers every sequence.)
    @Test(arguments: [RunState.applying, .interrupted, .applied, .verifying, .verified, .failed])
    func noSecondApplyAfterApplyStarted(state: RunState) {
        for verify in [true, false] {
            let steps = Self.reachable(from: Self.machine(state, verify: verify))
            #expect(!steps.isEmpty)
            for (machine, actions) in steps {
                #expect(!actions.contains { if case .startApply = $0 { true } else { false } },
                        "apply emitted from \(machine.state)")
            }
        }
    }

    /// From `queued`, exactly one reachable step emits startApply: approved + preconditions held.
    @Test func applyIsOnlyStartedFromApprovedWithPreconditionsHeld() {
        let steps = Self.reachable(from: RunStateMachine(hasVerifyCommands: true))
        let applies = steps.filter { $0.1.contains { if case .startApply = $0 { true } else { false } } }
        #expect(!applies.isEmpty)
        #expect(applies.allSatisfy { $0.0.state == .approved && $0.1.contains(.persist(RunTransition(
            from: .approved, to: .applying, reason: TransitionReason(.preconditionsHeld)))) })
        // The happy path, end to end.
        var machine = RunStateMachine(hasVerifyCommands: true)
        for label in ["planStarted", "planSucceeded", "checksPassed", "approvalPartial", "approvalEnough", "preconditionsHold",
                      "applySucceeded", "verifySucceeded"] {
            _ = machine.handle(Self.events[label]!)
        }
        #expect(machine.state == .verified)
        #expect(machine.planDigest == Self.d)
    }

    /// A crash during apply followed by restarts never re-applies, and the run stays loud until resolved.
    @Test func crashDuringApplyIsInterruptedNotReapplied() {
        var machine = Self.machine(.applying, verify: true)
        _ = machine.handle(.recoveredAfterCrash)
        #expect(machine.state == .interrupted)
        for _ in 0..<3 {
            let actions = machine.handle(.recoveredAfterCrash)
            #expect(actions.count == 1)
            #expect(machine.state == .interrupted)
        }
        #expect(machine.handle(.applyPreconditions(Self.allHold)).allSatisfy { if case .refuse = $0 { true } else { false } })
    }

    /// A restored run past planning must carry its plan digest.
    @Test(arguments: [RunState.checking, .awaitingApproval, .approved])
    func restoringWithoutDigestIsRefused(state: RunState) {
        #expect(throws: CoreError.self) { try RunStateMachine(restoring: state, planDigest: nil, hasVerifyCommands: true) }
    }

    /// States are stored as stable strings, never ordinals.
    @Test func statesHaveStoreFriendlyRawValues() throws {
        #expect(RunState.allCases.map(\.rawValue) == [
            "queued", "planning", "checking", "awaiting_approval", "approved", "applying", "applied", "verifying", "verified",
            "no_changes", "rejected", "superseded", "failed", "interrupted", "expired"])
        #expect(try JSONDecoder().decode(RunState.self, from: JSONEncoder().encode(RunState.awaitingApproval)) == .awaitingApproval)
        #expect(RunState(rawValue: "awaitingApproval") == nil)
    }
}
