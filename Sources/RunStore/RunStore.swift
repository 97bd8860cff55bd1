import Foundation
public import LockstepCore

// The store port: SQLite now, PostgreSQL later, all behind this one protocol.
//
// Invariants every implementation keeps (docs/CONTRACT.md §4, §6; docs/THREAT-MODEL.md §4.3, §5.1):
// * Every write is one transaction that also appends its audit entry; a write
//   either happened with its audit entry or not at all.
// * ``RunStore/transition(_:_:update:at:actor:)`` is a compare-and-set on the
//   run's current state: it changes nothing and returns `false` when the run is
//   not in `transition.from`. This is what makes `approved → applying` happen at
//   most once across triggers and processes.
// * At most one non-final run per target (``RunState/isFinal``) exists at any
//   time; ``RunStore/createRun(_:at:actor:)`` refuses a second one with
//   ``StoreError/Code/targetBusy``.
// * Nothing is ever deleted: runs, transitions, approvals, refusals, decisions and
//   audit entries are append-only (logs are bounded by truncation, said so in the log).
// * Times are passed in by the caller (a controllable clock in tests).

/// A run to create, in state `queued`.
public struct NewRun: Sendable, Hashable, Codable {
    public var id: RunID
    public var target: TargetID
    /// The release tag's name and the object its ref named when the run was created.
    public var tagName: String
    public var tagObject: GitObjectID
    public var version: SemanticVersion
    public var commit: GitObjectID
    public var tree: GitObjectID
    /// The tagger's e-mail address (annotated tags), used for the self-approval rule.
    public var taggerEmail: String?
    /// Set on a rollback run (docs/CONTRACT.md §3): the store pins the target in the same transaction.
    public var rollbackPin: RollbackPin?
    /// Whether the repo config had verify commands for the environment.
    public var hasVerifyCommands: Bool
    /// Who signed the release tag, as verified when the tag was accepted (environments that
    /// require signed tags); shown to reviewers and written to the audit log.
    public var signer: TagSigner?

    public init(id: RunID, target: TargetID, tagName: String, tagObject: GitObjectID, version: SemanticVersion,
                commit: GitObjectID, tree: GitObjectID, taggerEmail: String?, rollbackPin: RollbackPin?,
                hasVerifyCommands: Bool, signer: TagSigner? = nil) {
        self.id = id
        self.signer = signer
        self.target = target
        self.tagName = tagName
        self.tagObject = tagObject
        self.version = version
        self.commit = commit
        self.tree = tree
        self.taggerEmail = taggerEmail
        self.rollbackPin = rollbackPin
        self.hasVerifyCommands = hasVerifyCommands
    }
}

/// What Lockstep keeps of a plan for display: all of it already redacted by the runner.
public struct StoredPlan: Sendable, Hashable, Codable {
    /// The typed summary, encoded as JSON by the caller.
    public var summaryJSON: String
    /// Terraform's own `show` text, redacted: all of it, or its start when `renderingTruncated`.
    public var rendering: String
    /// `show -json` output, redacted. Always complete: the summary and the checks are read
    /// from it, so a plan whose JSON was over its limit is never stored.
    public var planJSON: String
    /// The rendering holds only the start of the text (the agent's `limits.plan_text_bytes`).
    public var renderingTruncated: Bool
    /// Bytes of the whole text terraform printed (the rendering's own size when not truncated).
    public var renderingBytes: Int
    /// Whether ``rendering`` is terraform's text yet. A plan is stored (and reviewable from its
    /// summary, checks and JSON) before its text is rendered; the text is attached right after
    /// (``RunStore/attachRendering(_:rendering:truncated:bytes:state:)``).
    public var renderingState: RenderingState
    /// The state the plan was made against (lineage and serial inside the saved plan), checked
    /// again right before apply. Nil for plans stored before Lockstep recorded it.
    public var priorState: StateBinding?
    /// The external checks' results (docs/CONTRACT.md §4), stored when they finished; empty
    /// when the environment has none (or before they ran).
    public var checkResults: [CheckResult] = []

    public init(summaryJSON: String, rendering: String, planJSON: String, renderingTruncated: Bool = false,
                renderingBytes: Int? = nil, renderingState: RenderingState = .ready, priorState: StateBinding? = nil) {
        self.priorState = priorState
        self.summaryJSON = summaryJSON
        self.rendering = rendering
        self.planJSON = planJSON
        self.renderingTruncated = renderingTruncated
        self.renderingBytes = renderingBytes ?? rendering.utf8.count
        self.renderingState = renderingState
    }
}

/// Where a stored plan's text rendering is.
public enum RenderingState: String, Sendable, Hashable, Codable {
    /// ``StoredPlan/rendering`` is terraform's text (or its start).
    case ready
    /// Terraform is rendering it; ``StoredPlan/rendering`` is empty.
    case pending
    /// It could not be rendered; ``StoredPlan/rendering`` says why (the summary, checks and JSON
    /// are complete all the same).
    case failed
}

/// A run as stored: its summary and, once planned, its plan.
public struct StoredRun: Sendable, Hashable, Codable {
    public var summary: RunSummary
    public var plan: StoredPlan?

    public init(summary: RunSummary, plan: StoredPlan?) {
        self.summary = summary
        self.plan = plan
    }

    public init(run: NewRun, state: RunState, planDigest: Digest?, plan: StoredPlan?,
                lastReason: TransitionReason.Code?, createdAt: Date, updatedAt: Date) {
        self.init(summary: RunSummary(run: run, state: state, planDigest: planDigest, lastReason: lastReason,
                                      createdAt: createdAt, updatedAt: updatedAt),
                  plan: plan)
    }

    public var run: NewRun {
        get { summary.run }
        set { summary.run = newValue }
    }
    public var state: RunState {
        get { summary.state }
        set { summary.state = newValue }
    }
    public var planDigest: Digest? {
        get { summary.planDigest }
        set { summary.planDigest = newValue }
    }
    /// Code of the transition that put the run in `state`.
    public var lastReason: TransitionReason.Code? {
        get { summary.lastReason }
        set { summary.lastReason = newValue }
    }
    public var createdAt: Date {
        get { summary.createdAt }
        set { summary.createdAt = newValue }
    }
    public var updatedAt: Date {
        get { summary.updatedAt }
        set { summary.updatedAt = newValue }
    }
    public var id: RunID { summary.id }
    public var target: TargetID { summary.target }
    /// The view the promotion rule needs.
    public var record: RunRecord { summary.record }
}

/// A run without its plan: what a listing needs. A plan's JSON and rendering are large, so
/// they are read only for one run (``RunStore/run(_:)``), never for a list.
public struct RunSummary: Sendable, Hashable, Codable {
    public var run: NewRun
    public var state: RunState
    public var planDigest: Digest?
    /// Code of the transition that put the run in `state`.
    public var lastReason: TransitionReason.Code?
    public var createdAt: Date
    public var updatedAt: Date

    public init(run: NewRun, state: RunState, planDigest: Digest?, lastReason: TransitionReason.Code?,
                createdAt: Date, updatedAt: Date) {
        self.run = run
        self.state = state
        self.planDigest = planDigest
        self.lastReason = lastReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var id: RunID { run.id }
    public var target: TargetID { run.target }

    /// The view the promotion rule needs.
    public var record: RunRecord {
        RunRecord(runID: run.id, target: run.target, commit: run.commit, tree: run.tree, state: state,
                  lastReason: lastReason)
    }
}

/// Fields written together with a transition (nil leaves a field as it is).
public struct RunUpdate: Sendable, Hashable {
    public var planDigest: Digest?
    public var plan: StoredPlan?
    /// The external checks' results, stored with the plan already stored.
    public var checkResults: [CheckResult]?

    public init(planDigest: Digest? = nil, plan: StoredPlan? = nil, checkResults: [CheckResult]? = nil) {
        self.planDigest = planDigest
        self.plan = plan
        self.checkResults = checkResults
    }
}

/// One step of ``RunStore/transition(_:through:at:actor:)``.
public struct RunStep: Sendable, Hashable {
    public var transition: RunTransition
    public var update: RunUpdate

    public init(_ transition: RunTransition, update: RunUpdate = RunUpdate()) {
        self.transition = transition
        self.update = update
    }
}

/// One stored transition of a run.
public struct StoredTransition: Sendable, Hashable, Codable {
    /// Increases with every transition in the store (across runs): orders events.
    public var sequence: Int64
    public var runID: RunID
    public var transition: RunTransition
    public var actor: String
    public var time: Date

    public init(sequence: Int64, runID: RunID, transition: RunTransition, actor: String, time: Date) {
        self.sequence = sequence
        self.runID = runID
        self.transition = transition
        self.actor = actor
        self.time = time
    }
}

/// The last `lockstep.yaml` that was valid at the protected branch tip, kept so that a broken
/// layout merged later, even across a restart, never makes the agent forget its targets.
public struct StoredBranchLayout: Sendable, Hashable {
    public var branch: String
    /// The branch tip whose `lockstep.yaml` this is.
    public var commit: GitObjectID
    /// The file's text as it was read and validated.
    public var yaml: String

    public init(branch: String, commit: GitObjectID, yaml: String) {
        self.branch = branch
        self.commit = commit
        self.yaml = yaml
    }
}

/// A tag decision for one environment (and project), as recorded.
public struct StoredTagDecision: Sendable, Hashable, Codable {
    public var target: TargetID
    public var tagName: String
    /// The object the tag ref named when decided.
    public var tagObject: GitObjectID
    public var commit: GitObjectID?
    public var version: SemanticVersion?
    public var accepted: Bool
    /// Every reason it was rejected (empty when accepted).
    public var rejections: [TagRejection]

    public init(target: TargetID, tagName: String, tagObject: GitObjectID, commit: GitObjectID?,
                version: SemanticVersion?, accepted: Bool, rejections: [TagRejection]) {
        self.target = target
        self.tagName = tagName
        self.tagObject = tagObject
        self.commit = commit
        self.version = version
        self.accepted = accepted
        self.rejections = rejections
    }
}

/// An alert raised for a run or a target; shown until acknowledged.
public struct StoredAlert: Sendable, Hashable, Codable {
    public var id: Int64
    public var target: TargetID?
    public var runID: RunID?
    public var alert: RunAlert
    public var time: Date

    public init(id: Int64, target: TargetID?, runID: RunID?, alert: RunAlert, time: Date) {
        self.id = id
        self.target = target
        self.runID = runID
        self.alert = alert
        self.time = time
    }
}

/// Which stream a log line came from.
public enum LogStream: String, Sendable, Hashable, Codable {
    case plan, apply, verify, checks, lockstep
}

/// A store failure. `description` is safe to show a client.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The file cannot be opened, is not a Lockstep store, or was written by a newer version.
        public static let unusable = Code(rawValue: "store_unusable")
        /// The database refused or failed a write (disk full, I/O error, locked too long).
        public static let writeFailed = Code(rawValue: "store_write_failed")
        public static let notFound = Code(rawValue: "not_found")
        /// A non-final run already exists for the target.
        public static let targetBusy = Code(rawValue: "target_busy")
        /// A row read back does not parse into domain types (the file was edited).
        public static let corrupt = Code(rawValue: "store_corrupt")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// The store port: everything the gate remembers. Implementations are safe to call from any task.
public protocol RunStore: OutboxStore {
    // MARK: Runs

    /// Creates a `queued` run (with its audit entry). A rollback run also pins its target
    /// (``pin(for:)``) in the same transaction. Throws ``StoreError/Code/targetBusy`` when
    /// the target already has a non-final run.
    func createRun(_ run: NewRun, at time: Date, actor: String) async throws -> StoredRun
    /// Compare-and-set: moves the run from `transition.from` to `transition.to`, stores the
    /// transition, the update and an audit entry, in one transaction. Returns `false`, having
    /// written nothing, when the run is not in `transition.from`.
    func transition(_ runID: RunID, _ transition: RunTransition, update: RunUpdate, at time: Date,
                    actor: String) async throws -> Bool
    /// Several transitions of one run in one transaction, each a compare-and-set on the state
    /// the one before left (a plan and its checks' verdict). Returns `false`, having written
    /// nothing, when any step finds the run elsewhere.
    func transition(_ runID: RunID, through steps: [RunStep], at time: Date, actor: String) async throws -> Bool
    func run(_ id: RunID) async throws -> StoredRun?
    /// Runs with their plans, newest first; nil filters match everything. Reads every matching
    /// run's plan: for a list, use ``runSummaries(target:states:)``.
    func runs(target: TargetID?, states: Set<RunState>?) async throws -> [StoredRun]
    /// The same runs as ``runs(target:states:)`` without their plans (no plan text is read).
    func runSummaries(target: TargetID?, states: Set<RunState>?) async throws -> [RunSummary]
    func transitions(of runID: RunID) async throws -> [StoredTransition]
    /// Runs of `target` that entered `applying` after `runID` finished planning
    /// (its `planning → checking` transition): "no other apply reached the target since the plan".
    func appliesStarted(on target: TargetID, sincePlanOf runID: RunID) async throws -> [RunID]

    // MARK: Approvals

    /// Records an approval and, when `transition` is given, the transition it completes
    /// (`awaiting_approval → approved`), in one transaction with both audit entries: no
    /// crash can leave a run waiting with the approval that should have moved it stored
    /// (the approver would then be refused as a duplicate). `transition` is a
    /// compare-and-set on the run's state like ``transition(_:_:update:at:actor:)``: when
    /// the run is no longer in `transition.from`, nothing at all is written (not even the
    /// approval) and `false` is returned. Without a transition the approval alone is
    /// recorded and `true` returned. The approval's audit entry carries `approval.time`,
    /// the transition's carries `time`.
    func recordApproval(_ approval: Approval, completing transition: RunTransition?, at time: Date,
                        actor: String) async throws -> Bool
    func recordApprovalRefusal(_ refusal: ApprovalRefusal, at time: Date, actor: String) async throws
    func approvals(of runID: RunID) async throws -> [Approval]
    func approvalRefusals(of runID: RunID) async throws -> [ApprovalRefusal]

    // MARK: Decisions, checks, alerts, outputs, logs

    /// Attaches the text rendering of a run's plan, or why there is none (`state` `.ready` or
    /// `.failed`). Only a plan whose rendering is `.pending` changes: returns `false`, having
    /// written nothing, otherwise (no plan, or already attached).
    func attachRendering(_ runID: RunID, rendering: String, truncated: Bool, bytes: Int, state: RenderingState) async throws -> Bool

    /// Records a tag decision when it differs from the last one recorded for the same
    /// target, tag name and tag object (so a poll loop does not flood the audit log).
    /// Returns whether it was recorded.
    @discardableResult
    func recordTagDecision(_ decision: StoredTagDecision, at time: Date, actor: String) async throws -> Bool
    /// ``recordTagDecision(_:at:actor:)`` for several decisions in one transaction (a first pass
    /// decides every tag of the repository: one wait for the disk per target, not per tag).
    /// Returns, in order, whether each was recorded.
    func recordTagDecisions(_ decisions: [StoredTagDecision], at time: Date, actor: String) async throws -> [Bool]
    /// The latest decision per tag name for `target`.
    func tagDecisions(for target: TargetID) async throws -> [StoredTagDecision]
    func recordApplyPreconditions(_ report: ApplyPreconditionReport, runID: RunID, at time: Date,
                                  actor: String) async throws
    func applyPreconditions(of runID: RunID) async throws -> [ApplyPreconditionReport]
    func raiseAlert(_ alert: RunAlert, target: TargetID?, runID: RunID?, at time: Date, actor: String) async throws
    func alerts(target: TargetID?) async throws -> [StoredAlert]
    /// Keeps `layout` as the last valid layout of its branch (replacing the previous one).
    func recordValidLayout(_ layout: StoredBranchLayout, at time: Date) async throws
    /// The last valid layout recorded for `branch`, if any.
    func lastValidLayout(branch: String) async throws -> StoredBranchLayout?
    /// Outputs of a target after an apply (JSON, redacted by the caller).
    func setOutputs(_ json: String, target: TargetID, runID: RunID, at time: Date) async throws
    func outputs(of target: TargetID) async throws -> String?
    /// The outputs `runID` stored for its target (the newest, if it stored several), or nil
    /// when that run stored none: verify must not read another run's outputs as its own.
    func outputs(of target: TargetID, storedBy runID: RunID) async throws -> String?
    /// Appends to a run's log, keeping at most the store's configured bytes per run
    /// (older text is cut, and the cut is marked).
    func appendLog(_ text: String, stream: LogStream, runID: RunID, at time: Date) async throws
    func log(of runID: RunID) async throws -> String

    // MARK: Drift

    /// Records a drift check with its audit entry; a check that found drift (or could not run)
    /// is also written to the outbox for notifications.
    func recordDriftCheck(_ check: DriftCheck, actor: String) async throws
    /// The drift checks of `target`, newest first, at most `limit`.
    func driftChecks(of target: TargetID, limit: Int) async throws -> [DriftCheck]

    // MARK: Rollback pins

    func pin(for target: TargetID) async throws -> RollbackPin?
    /// Removes a pin (a higher version than the ceiling was accepted), with an audit entry.
    func clearPin(for target: TargetID, at time: Date, actor: String) async throws

    // MARK: Audit

    /// Appends an entry that is not covered by the calls above (e.g. a refused API request).
    func appendAudit(kind: AuditKind, target: TargetID?, runID: RunID?, payload: [String: String], at time: Date,
                     actor: String) async throws
    /// Every audit entry in stored order.
    func auditEntries() async throws -> [AuditEntry]
    /// The hash of the last audit entry (``AuditHash/genesis`` when there is none): keep it
    /// outside the store and pass it to `audit verify --expect-head` to detect a cut-off or
    /// rewritten chain.
    func auditHead() async throws -> AuditHash
    /// The targets named by the audit entries after `sequence` (or all of them, when nil), and
    /// the last sequence now: what changed in the store since an earlier moment, by target.
    /// ``AuditTargets/untargeted`` is true when an entry names no target, or the log is shorter
    /// than `sequence` (another store): then anything may have changed. Refusals are left out:
    /// a refused request changes nothing but the log.
    func auditTargets(after sequence: UInt64?) async throws -> AuditTargets
}

/// Which targets the store's audit log names after a sequence (``RunStore/auditTargets(after:)``).
public struct AuditTargets: Sendable, Equatable {
    /// The log's last sequence now (0 when the log is empty: sequences start at 1).
    public var lastSequence: UInt64
    /// Targets with an entry after the sequence asked about.
    public var targets: Set<TargetID>
    /// True when an entry after it names no target, or the log is shorter than it.
    public var untargeted: Bool

    public init(lastSequence: UInt64, targets: Set<TargetID>, untargeted: Bool) {
        self.lastSequence = lastSequence
        self.targets = targets
        self.untargeted = untargeted
    }
}

extension RunStore {
    /// Records an approval that completes nothing (more approvals are needed).
    public func recordApproval(_ approval: Approval, actor: String) async throws {
        _ = try await recordApproval(approval, completing: nil, at: approval.time, actor: actor)
    }
}

/// One drift check (docs/CONTRACT.md §4, drift): the target's applied revision planned again with
/// the plan credentials. Changes in that plan are infrastructure that moved away from what was
/// applied.
public struct DriftCheck: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// The plan of the applied revision has no changes.
        case noDrift = "no_drift"
        /// It has changes: the infrastructure differs from what was applied.
        case drift
        /// The check could not run to the end (`detail` says why); nothing is known.
        case failed
    }

    public var target: TargetID
    /// The run that applied the revision checked.
    public var runID: RunID
    public var tagName: String
    public var version: SemanticVersion
    public var commit: GitObjectID
    public var time: Date
    public var outcome: Outcome
    /// A one-line summary (counts, or why it failed); never a plan body.
    public var detail: String
    /// Addresses of the resources the plan would change, sorted, at most 200.
    public var addresses: [String]

    public init(target: TargetID, runID: RunID, tagName: String, version: SemanticVersion, commit: GitObjectID,
                time: Date, outcome: Outcome, detail: String, addresses: [String] = []) {
        self.target = target
        self.runID = runID
        self.tagName = tagName
        self.version = version
        self.commit = commit
        self.time = time
        self.outcome = outcome
        self.detail = detail
        self.addresses = addresses
    }
}
