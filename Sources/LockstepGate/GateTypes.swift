import Foundation
import LockstepCore
import RunStore

/// A gate failure. `description` is safe to show a client (no secrets, no plan bodies,
/// untrusted text escaped); detail for operators goes to the log.
public struct GateError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// No run with this id.
        public static let runNotFound = Code(rawValue: "run_not_found")
        /// The environment or project is not one this agent knows or serves.
        public static let unknownTarget = Code(rawValue: "unknown_target")
        /// The identity may not perform this action on this environment.
        public static let notAllowed = Code(rawValue: "not_allowed")
        /// The target already has a run that cannot be set aside (apply started).
        public static let targetBusy = Code(rawValue: "target_busy")
        /// A rollback named a version that is not an accepted version of the target.
        public static let versionNotAccepted = Code(rawValue: "version_not_accepted")
        /// The delivery repository could not be fetched or read.
        public static let repository = Code(rawValue: "repository")
        /// The store failed.
        public static let store = Code(rawValue: "store")
        /// The layout at the protected branch tip could not be read (no targets known).
        public static let layout = Code(rawValue: "layout")
        /// A stored run cannot be restored into the state machine.
        public static let corruptRun = Code(rawValue: "corrupt_run")
        /// A file the agent config names (signer files, …) cannot be used.
        public static let configuration = Code(rawValue: "configuration")
        /// A program Lockstep runs besides terraform (ssh-keygen, gpg) failed to run.
        public static let program = Code(rawValue: "program")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// What one ``Gate/reconcile()`` pass did. Everything here is also in the store; the
/// report is for logs, metrics and tests.
public struct ReconcileReport: Sendable, Hashable {
    /// Tags the fetch of this pass found created, moved (same name, new object) or deleted.
    public var tagsCreated: [String] = []
    public var tagsMoved: [String] = []
    public var tagsDeleted: [String] = []
    /// Tags whose decision changed (recorded in the store), per target.
    public var decisionsRecorded: [TargetID: [String]] = [:]
    public var runsCreated: [RunID] = []
    public var runsSuperseded: [RunID] = []
    /// Runs invalidated because their tag moved or was deleted.
    public var runsInvalidated: [RunID] = []
    /// Runs that reached a new state in this pass, with that state.
    public var runsAdvanced: [RunID: RunState] = [:]
    public var alertsRaised: [RunAlert] = []
    /// Problems that did not stop the pass (a target whose tags could not be read, …).
    public var problems: [String] = []
    /// The targets this pass visited, in order. The others were skipped: nothing they read had
    /// changed since a visit that left them settled (docs/ARCHITECTURE.md, "Targets a pass skips").
    public var targetsVisited: [TargetID] = []
    /// How many targets the agent serves now.
    public var targetsServed = 0

    public init() {}
}

/// The result of an approval attempt: never an exception for a refused approval, so a
/// client sees the reason as data and the refusal is already recorded in the store.
public enum ApprovalOutcome: Sendable, Hashable {
    /// Recorded; more approvals are needed.
    case recorded(valid: Int, required: Int)
    /// Recorded and the run is `approved`: apply may be triggered (``Gate/apply(run:)``).
    case approved
    /// Refused with a reason; recorded and audited, nothing else changed.
    case refused(ApprovalRefusal)
}

/// The result of ``Gate/reject(run:identity:reason:)`` and ``Gate/resolve(run:as:identity:reason:)``.
public enum RunDecisionOutcome: Sendable, Hashable {
    /// The run moved to this state.
    case done(RunState)
    /// Refused: the run is in a state where this does not apply, or the identity may not do it.
    case refused(String)
}

/// The result of one apply trigger.
public enum ApplyOutcome: Sendable, Hashable {
    /// This trigger applied the plan; the run is now in `state` (`verified`, `verifying`,
    /// `failed` after verify, …).
    case applied(RunState)
    /// This trigger ran terraform apply and it failed (stale plan, lock, error): the run is failed.
    case applyFailed(reason: String)
    /// A precondition failed; the run went back to awaiting approval or ended, as the report says.
    case preconditionsFailed(ApplyPreconditionReport, state: RunState)
    /// Only the apply window is closed: the run stays approved and is retried later.
    case waitingForApplyWindow
    /// Another trigger or process moved the run first (the compare-and-set was lost), or the
    /// run is not `approved`: nothing was applied by this call.
    case notApplied(String)
    /// The tag could not be re-resolved (the remote was unreachable): nothing was decided,
    /// the run stays approved and is retried later.
    case deferred(String)
}
