import Foundation
import Testing
@testable import LockstepCore

/// `approvalsAlreadySufficient`: a run whose stored approvals already meet the policy moves
/// to `approved` without recording anything again, and only from `awaiting_approval`.
@Suite struct ApprovalRetryStateMachineTests {
    static let d = digest("a")

    @Test("awaiting approval with enough stored approvals: persist approved, then check the apply preconditions; nothing is recorded")
    func moves() throws {
        var machine = try RunStateMachine(restoring: .awaitingApproval, planDigest: Self.d, hasVerifyCommands: true)
        let actions = machine.handle(.approvalsAlreadySufficient(validApprovals: 2, required: 2))
        #expect(actions == [
            .persist(RunTransition(from: .awaitingApproval, to: .approved,
                                   reason: TransitionReason(.approvalsSatisfied, detail: "2 of 2, already recorded"))),
            .checkApplyPreconditions,
        ])
        #expect(machine.state == .approved)
    }

    @Test("too few approvals, or any other state, is refused and changes nothing", arguments: [
        (RunState.awaitingApproval, 1, 2), (.awaitingApproval, 0, 0), (.approved, 2, 2), (.checking, 2, 2),
        (.applying, 2, 2), (.rejected, 2, 2), (.expired, 2, 2),
    ])
    func refused(state: RunState, valid: Int, required: Int) throws {
        var machine = try RunStateMachine(restoring: state, planDigest: Self.d, hasVerifyCommands: true)
        let actions = machine.handle(.approvalsAlreadySufficient(validApprovals: valid, required: required))
        #expect(actions.count == 1)
        guard case .refuse(let refusal) = actions.first else { Issue.record("not refused: \(actions)"); return }
        #expect(refusal.event == "approvals_already_sufficient")
        #expect(machine.state == state)
    }
}
