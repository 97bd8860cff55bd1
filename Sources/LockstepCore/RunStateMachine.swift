/// Something that happened to a run, fed to ``RunStateMachine/handle(_:)``.
public enum RunEvent: Sendable, Hashable {
    /// The scheduler holds the target and starts planning.
    case planStarted
    case planSucceeded(digest: Digest, hasChanges: Bool)
    case planFailed(reason: String)
    /// The plan was stopped before it finished (the agent is shutting down): terraform's
    /// process group was killed, so nothing was decided about this revision. The run goes
    /// back to `queued` (never `failed`: a stop is not a verdict on the release) and is
    /// planned again from scratch by the next pass.
    case planCancelled(reason: String)
    case checksPassed
    case checksFailed(reasons: [String])
    /// Only external checks that the agent config lets an approver override failed: the run
    /// awaits approvals that each override them by name (one approval more than usual).
    case checksFailedOverridable(names: [String])
    /// An approval attempt, already judged by ``ApprovalRules``.
    case approvalRecorded(ApprovalDecision)
    /// The approvals already stored for the run meet the policy, though the run is still
    /// awaiting approval (found when an approver retries: a store written by an older
    /// version could keep an approval without the transition it caused, or the policy now
    /// asks for fewer). The run moves on without recording the approval again.
    case approvalsAlreadySufficient(validApprovals: Int, required: Int)
    case rejected(by: IdentityName, reason: String)
    /// A newer accepted tag for the same target.
    case superseded(by: RunID?)
    /// The run's tag now names another object, or was deleted.
    case tagMoved
    case approvalsExpired
    /// The apply preconditions, evaluated right before apply.
    case applyPreconditions(ApplyPreconditionReport)
    case applySucceeded
    case applyFailed(reason: String)
    case verifySucceeded
    case verifyFailed(reason: String)
    /// The process started over the store and found the run in its current state.
    case recoveredAfterCrash
    /// An operator settled an `interrupted` run after looking at the infrastructure.
    case operatorResolved(as: OperatorResolution, by: IdentityName)

    /// Stable event name for refusals and logs.
    public var name: String {
        switch self {
        case .planStarted: "plan_started"
        case .planSucceeded: "plan_succeeded"
        case .planFailed: "plan_failed"
        case .planCancelled: "plan_cancelled"
        case .checksPassed: "checks_passed"
        case .checksFailed: "checks_failed"
        case .checksFailedOverridable: "checks_failed_overridable"
        case .approvalRecorded: "approval_recorded"
        case .approvalsAlreadySufficient: "approvals_already_sufficient"
        case .rejected: "rejected"
        case .superseded: "superseded"
        case .tagMoved: "tag_moved"
        case .approvalsExpired: "approvals_expired"
        case .applyPreconditions: "apply_preconditions"
        case .applySucceeded: "apply_succeeded"
        case .applyFailed: "apply_failed"
        case .verifySucceeded: "verify_succeeded"
        case .verifyFailed: "verify_failed"
        case .recoveredAfterCrash: "recovered_after_crash"
        case .operatorResolved: "operator_resolved"
        }
    }
}

/// How an operator settles an interrupted apply.
public enum OperatorResolution: String, Sendable, Hashable, Codable {
    /// The apply completed: continue with verify.
    case applied
    /// The apply did not complete (or left damage): the run ends as failed.
    case failed
}

/// Something that needs a human's attention beyond a status line.
public struct RunAlert: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let tagMoved = Code(rawValue: "tag_moved")
        public static let tagMovedAfterApplyStarted = Code(rawValue: "tag_moved_after_apply_started")
        public static let applyInterrupted = Code(rawValue: "apply_interrupted")
        public static let applyFailed = Code(rawValue: "apply_failed")
        public static let approvedPlanChanged = Code(rawValue: "approved_plan_changed")
        /// An apply started inside a freeze or outside the apply windows on break-glass approvals.
        public static let breakGlassApply = Code(rawValue: "break_glass_apply")
    }

    public let code: Code
    public let description: String

    public init(code: Code, description: String) {
        self.code = code
        self.description = description
    }
}

/// An event the machine refused in its current state. Nothing happened; the caller
/// reports (and audits) the refusal.
public struct RunEventRefusal: Sendable, Hashable, Codable, CustomStringConvertible {
    public let state: RunState
    public let event: String
    public let description: String

    public init(state: RunState, event: String, description: String) {
        self.state = state
        self.event = event
        self.description = description
    }
}

/// What the caller must do, in order. ``persist(_:)`` always comes before the side
/// effects that depend on it; if a persist fails (including its compare-and-set on
/// `from`), the caller must drop every action after it.
public enum RunAction: Sendable, Hashable {
    /// Commit the transition to the store as a compare-and-set on `from`, with its audit entry.
    case persist(RunTransition)
    case startPlan
    case cancelPlan
    case runChecks(Digest)
    case requestApprovals(Digest)
    case recordApproval(Approval)
    case recordApprovalRefusal(ApprovalRefusal)
    case recordApplyPreconditions(ApplyPreconditionReport)
    /// Gather ``ApplyFacts`` and send ``RunEvent/applyPreconditions(_:)``.
    case checkApplyPreconditions
    case waitForApplyWindow
    /// Apply exactly the plan file with this digest, once.
    case startApply(Digest)
    /// Delete the run's plan file (after apply, whatever the outcome; or when the run ends before apply).
    case deletePlanFile
    case startVerify
    case raiseAlert(RunAlert)
    case refuse(RunEventRefusal)
}

/// The run lifecycle of docs/CONTRACT.md §4 as a pure value: events in, actions out, no I/O.
///
/// Production invariants:
/// * **Persist first.** Every action list that changes state starts the change with
///   ``RunAction/persist(_:)``; a side effect never precedes the persist it depends on,
///   so after a kill -9 the store never shows less than what was done.
/// * **Apply at most once.** ``RunAction/startApply(_:)`` is only emitted on
///   `approved → applying`, and no path leads from `applying` (or anything after it)
///   back to `approved`. Together with the store's compare-and-set on `from`, two
///   triggers or two processes can never apply one plan twice, and a crash during
///   apply becomes `interrupted`, never a re-apply.
/// * **Approvals bind a digest.** An accepted approval whose digest differs from the
///   plan digest this machine holds is refused, even if the caller's rules said yes.
/// * **Refusals change nothing.** An event that does not apply in the current state
///   yields only ``RunAction/refuse(_:)`` (or a recorded approval refusal).
public struct RunStateMachine: Sendable, Hashable {
    public private(set) var state: RunState
    public private(set) var planDigest: Digest?
    /// Whether the repo config had verify commands for this environment when the run planned.
    public let hasVerifyCommands: Bool

    /// A new run, `queued`.
    public init(hasVerifyCommands: Bool) {
        state = .queued
        planDigest = nil
        self.hasVerifyCommands = hasVerifyCommands
    }

    /// A run read back from the store. States after planning need the plan digest.
    public init(restoring state: RunState, planDigest: Digest?, hasVerifyCommands: Bool) throws(CoreError) {
        if [.checking, .awaitingApproval, .approved].contains(state) && planDigest == nil {
            throw CoreError(.runStateInvalid, "a run in state \(state) must have a plan digest")
        }
        self.state = state
        self.planDigest = planDigest
        self.hasVerifyCommands = hasVerifyCommands
    }

    /// Feeds one event; returns what the caller must do, in order.
    public mutating func handle(_ event: RunEvent) -> [RunAction] {
        switch (state, event) {
        case (.queued, .planStarted):
            return [move(to: .planning, .planStarted), .startPlan]

        case (.planning, .planSucceeded(let digest, let hasChanges)):
            planDigest = digest
            if !hasChanges {
                return [move(to: .noChanges, .noChanges), .deletePlanFile]
            }
            return [move(to: .checking, .planSucceeded, detail: "digest \(digest)"), .runChecks(digest)]
        case (.planning, .planFailed(let reason)):
            return [move(to: .failed, .planFailed, detail: reason), .deletePlanFile]
        case (.planning, .planCancelled(let reason)):
            // A half-written plan is worthless, as after a crash; plan again from scratch.
            return [move(to: .queued, .planCancelled, detail: reason), .deletePlanFile]

        case (.checking, .checksPassed):
            guard let digest = planDigest else { return refuse(event, "the run has no plan digest") }
            return [move(to: .awaitingApproval, .checksPassed), .requestApprovals(digest)]
        case (.checking, .checksFailedOverridable(let names)):
            guard let digest = planDigest else { return refuse(event, "the run has no plan digest") }
            return [move(to: .awaitingApproval, .checksFailedOverridable,
                         detail: "failed: \(names.joined(separator: ", ")); each approval must override them, and one more approval is needed"),
                    .requestApprovals(digest)]
        case (.checking, .checksFailed(let reasons)):
            return [move(to: .failed, .checksFailed, detail: reasons.joined(separator: "; ")), .deletePlanFile]

        case (_, .approvalRecorded(let decision)):
            return approval(decision)
        case (.awaitingApproval, .approvalsAlreadySufficient(let valid, let required)) where valid >= required && required >= 1:
            return [move(to: .approved, .approvalsSatisfied, detail: "\(valid) of \(required), already recorded"),
                    .checkApplyPreconditions]

        case (_, .rejected(let identity, let reason)) where state.isBeforeApply:
            return abandon(to: .rejected, .rejected, detail: "by \(identity): \(reason)")
        case (_, .superseded(let newer)) where state.isBeforeApply:
            return abandon(to: .superseded, .superseded, detail: newer.map { "by run \($0)" })
        case (_, .tagMoved) where state.isBeforeApply:
            return abandon(to: .failed, .tagMoved, detail: "the release tag moved or was deleted")
                + [.raiseAlert(RunAlert(code: .tagMoved, description: "the release tag of this run moved or was deleted; the run was stopped"))]
        case (.applying, .tagMoved), (.applied, .tagMoved), (.verifying, .tagMoved), (.verified, .tagMoved),
             (.interrupted, .tagMoved):
            return [.raiseAlert(RunAlert(code: .tagMovedAfterApplyStarted,
                                         description: "the release tag of this run moved or was deleted after apply started"))]

        case (.awaitingApproval, .approvalsExpired), (.approved, .approvalsExpired):
            return abandon(to: .expired, .approvalsExpired)

        case (.approved, .applyPreconditions(let report)):
            return preconditions(report)

        case (.applying, .applySucceeded):
            return [move(to: .applied, .applySucceeded), .deletePlanFile] + afterApplied()
        case (.applying, .applyFailed(let reason)):
            return [move(to: .failed, .applyFailed, detail: reason), .deletePlanFile,
                    .raiseAlert(RunAlert(code: .applyFailed, description: "apply failed; the target may be partly changed"))]

        case (.verifying, .verifySucceeded):
            return [move(to: .verified, .verifySucceeded)]
        case (.verifying, .verifyFailed(let reason)):
            return [move(to: .failed, .verifyFailed, detail: reason)]

        case (_, .recoveredAfterCrash):
            return recover()

        case (.interrupted, .operatorResolved(let resolution, let identity)):
            switch resolution {
            case .applied:
                return [move(to: .applied, .operatorResolvedApplied, detail: "by \(identity)"), .deletePlanFile] + afterApplied()
            case .failed:
                return [move(to: .failed, .operatorResolvedFailed, detail: "by \(identity)"), .deletePlanFile]
            }

        default:
            return refuse(event, "\(event.name) is not valid while the run is \(state)")
        }
    }

    // MARK: - Transitions

    private mutating func move(to next: RunState, _ code: TransitionReason.Code, detail: String? = nil) -> RunAction {
        let transition = RunTransition(from: state, to: next, reason: TransitionReason(code, detail: detail))
        state = next
        return .persist(transition)
    }

    private func refuse(_ event: RunEvent, _ why: String) -> [RunAction] {
        [.refuse(RunEventRefusal(state: state, event: event.name, description: why))]
    }

    /// Ends a run before apply, undoing only what exists in that state.
    private mutating func abandon(to next: RunState, _ code: TransitionReason.Code, detail: String? = nil) -> [RunAction] {
        let from = state
        var actions = [move(to: next, code, detail: detail)]
        if from == .planning { actions.append(.cancelPlan) }
        if from != .queued { actions.append(.deletePlanFile) }
        return actions
    }

    private mutating func afterApplied() -> [RunAction] {
        if hasVerifyCommands {
            return [move(to: .verifying, .verifyStarted), .startVerify]
        }
        return [move(to: .verified, .noVerifyConfigured)]
    }

    private mutating func approval(_ decision: ApprovalDecision) -> [RunAction] {
        switch decision {
        case .refused(let refusal):
            return [.recordApprovalRefusal(refusal)]
        case .accepted(let approval, let valid, let required):
            if state == .approved, approval.breakGlass, let digest = planDigest, approval.digest == digest {
                // An approved run held by a freeze or a closed window: the break-glass approval
                // is recorded and the apply preconditions judged again.
                return [.recordApproval(approval), .checkApplyPreconditions]
            }
            guard state == .awaitingApproval else {
                return [.recordApprovalRefusal(ApprovalRefusal(
                    code: .runNotAwaitingApproval, approval: approval,
                    description: "run \(approval.runID) is \(state), not awaiting approval"))]
            }
            guard let digest = planDigest, approval.digest == digest else {
                return [.recordApprovalRefusal(ApprovalRefusal(
                    code: .wrongDigest, approval: approval,
                    description: "the approval quotes digest \(approval.digest), not this run's plan digest"))]
            }
            guard valid >= required else { return [.recordApproval(approval)] }
            return [.recordApproval(approval),
                    move(to: .approved, .approvalsSatisfied, detail: "\(valid) of \(required)"),
                    .checkApplyPreconditions]
        }
    }

    private mutating func preconditions(_ report: ApplyPreconditionReport) -> [RunAction] {
        let summary = report.failures.map(\.description).joined(separator: "; ")
        switch report.disposition {
        case .apply:
            guard let digest = planDigest else {
                return [.recordApplyPreconditions(report)] + abandon(to: .failed, .preconditionsFailed, detail: "no plan digest")
            }
            guard let breakGlass = report.breakGlass else {
                return [.recordApplyPreconditions(report), move(to: .applying, .preconditionsHeld), .startApply(digest)]
            }
            return [.recordApplyPreconditions(report),
                    move(to: .applying, .breakGlass, detail: breakGlass.description),
                    .raiseAlert(RunAlert(code: .breakGlassApply, description: "apply started on break-glass approvals: \(breakGlass)")),
                    .startApply(digest)]
        case .waitForApplyWindow:
            return [.recordApplyPreconditions(report), .waitForApplyWindow]
        case .awaitApprovals:
            guard let digest = planDigest else { return [.recordApplyPreconditions(report)] }
            return [.recordApplyPreconditions(report),
                    move(to: .awaitingApproval, .approvalsNoLongerSufficient, detail: summary),
                    .requestApprovals(digest)]
        case .abandon:
            var actions = [.recordApplyPreconditions(report)] + abandon(to: .failed, .preconditionsFailed, detail: summary)
            if report.failures.contains(where: \.isAlarming) {
                actions.append(.raiseAlert(RunAlert(code: .approvedPlanChanged,
                                                    description: "what was approved changed before apply: \(summary)")))
            }
            return actions
        }
    }

    /// Start-up over an existing store (docs/CONTRACT.md §4, crash).
    private mutating func recover() -> [RunAction] {
        switch state {
        case .planning:
            // A half-written plan is worthless; plan again from scratch.
            return [move(to: .queued, .requeuedAfterCrash), .deletePlanFile]
        case .checking:
            guard let digest = planDigest else { return [] }
            return [.runChecks(digest)]
        case .applying:
            // Never re-apply: the plan may be half applied. A human decides.
            return [move(to: .interrupted, .interruptedByCrash),
                    .raiseAlert(RunAlert(code: .applyInterrupted,
                                         description: "an apply was interrupted; it will not be retried until an operator resolves it"))]
        case .interrupted:
            return [.raiseAlert(RunAlert(code: .applyInterrupted,
                                         description: "an interrupted apply is still waiting for an operator"))]
        case .applied:
            // Killed between recording the apply and starting verify: continue with verify.
            return afterApplied()
        case .verifying:
            // Verify commands are smoke tests without apply credentials: safe to run again.
            return [.startVerify]
        default:
            return []
        }
    }
}
