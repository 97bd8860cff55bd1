/// The states of a run (docs/CONTRACT.md §4). Raw values are what the store keeps: strings, never ordinals.
public enum RunState: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case queued
    case planning
    case checking
    case awaitingApproval = "awaiting_approval"
    case approved
    case applying
    case applied
    case verifying
    case verified
    case noChanges = "no_changes"
    case rejected
    case superseded
    case failed
    case interrupted
    case expired

    public var description: String { rawValue }

    /// No event moves a run out of a final state. `interrupted` is not final: it
    /// waits, loudly, for an operator.
    public var isFinal: Bool {
        switch self {
        case .verified, .noChanges, .rejected, .superseded, .failed, .expired: true
        default: false
        }
    }

    /// States before apply started, from which a run may still be abandoned without touching infrastructure.
    public var isBeforeApply: Bool {
        switch self {
        case .queued, .planning, .checking, .awaitingApproval, .approved: true
        default: false
        }
    }
}

/// Why a transition happened; stored with it and written to the audit log.
public struct TransitionReason: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let planStarted = Code(rawValue: "plan_started")
        public static let planSucceeded = Code(rawValue: "plan_succeeded")
        public static let noChanges = Code(rawValue: "no_changes")
        public static let planFailed = Code(rawValue: "plan_failed")
        public static let planCancelled = Code(rawValue: "plan_cancelled")
        public static let checksPassed = Code(rawValue: "checks_passed")
        public static let checksFailed = Code(rawValue: "checks_failed")
        public static let checksFailedOverridable = Code(rawValue: "checks_failed_overridable")
        public static let breakGlass = Code(rawValue: "break_glass")
        public static let approvalsSatisfied = Code(rawValue: "approvals_satisfied")
        public static let rejected = Code(rawValue: "rejected")
        public static let superseded = Code(rawValue: "superseded")
        public static let tagMoved = Code(rawValue: "tag_moved")
        public static let approvalsExpired = Code(rawValue: "approvals_expired")
        public static let preconditionsHeld = Code(rawValue: "preconditions_held")
        public static let preconditionsFailed = Code(rawValue: "preconditions_failed")
        public static let approvalsNoLongerSufficient = Code(rawValue: "approvals_no_longer_sufficient")
        public static let applySucceeded = Code(rawValue: "apply_succeeded")
        public static let applyFailed = Code(rawValue: "apply_failed")
        public static let verifyStarted = Code(rawValue: "verify_started")
        public static let noVerifyConfigured = Code(rawValue: "no_verify_configured")
        public static let verifySucceeded = Code(rawValue: "verify_succeeded")
        public static let verifyFailed = Code(rawValue: "verify_failed")
        public static let requeuedAfterCrash = Code(rawValue: "requeued_after_crash")
        public static let interruptedByCrash = Code(rawValue: "interrupted_by_crash")
        public static let operatorResolvedApplied = Code(rawValue: "operator_resolved_applied")
        public static let operatorResolvedFailed = Code(rawValue: "operator_resolved_failed")
    }

    public let code: Code
    /// Caller-supplied detail (already redacted: never a secret or a plan body).
    public let detail: String?

    public init(_ code: Code, detail: String? = nil) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail.map { "\(code): \($0)" } ?? code.rawValue }
}

/// One state change, to be committed to the store before any side effect that follows it.
public struct RunTransition: Sendable, Hashable, Codable {
    public let from: RunState
    public let to: RunState
    public let reason: TransitionReason

    public init(from: RunState, to: RunState, reason: TransitionReason) {
        self.from = from
        self.to = to
        self.reason = reason
    }
}
