import Foundation
public import LockstepCore

// The outbox: what the daemon tells forges and chat about runs (docs/ARCHITECTURE.md,
// "The outbox"). An event is written by the store in the same transaction as the write it
// reports (a transition, an approval, a rejected tag), so no crash can leave a transition
// stored without its event or an event for a transition that never happened. Delivery is
// someone else's job: each sink (a forge, a notification endpoint) keeps its own position
// in the event list and moves it only after delivering, so an event is delivered at least
// once, after any restart, and a sink that is down delays only itself, never a run.

/// One event of the outbox, with the facts it reports as they were when it was written.
public struct OutboxEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A run changed state.
        case transition
        /// An approval was recorded (whether or not it completed the approvals needed).
        case approval
        /// A tag was rejected for a target (recorded once per tag object, like the decision).
        case tagRejected = "tag_rejected"
        /// A drift check found drift, or could not run.
        case drift
    }

    /// Increases with every event in the store: the order sinks deliver in.
    public var id: Int64
    public var kind: Kind
    public var target: TargetID
    public var runID: RunID?
    public var time: Date
    public var facts: OutboxFacts

    public init(id: Int64, kind: Kind, target: TargetID, runID: RunID?, time: Date, facts: OutboxFacts) {
        self.id = id
        self.kind = kind
        self.target = target
        self.runID = runID
        self.time = time
        self.facts = facts
    }
}

/// What an event says, frozen when it was written: a sink that delivers it an hour late still
/// says what happened then, so what a forge shows follows the run step by step.
public struct OutboxFacts: Sendable, Hashable, Codable {
    /// Transitions: the states and the reason (its detail is the stored, redacted detail).
    public var from: RunState?
    public var to: RunState?
    public var reason: String?
    public var detail: String?
    /// Approvals: who approved with this event.
    public var approvedBy: String?
    /// Every identity that had approved the run when the event was written, in order.
    public var approvers: [String]
    /// Rejected tags: the tag's name and every reason it was rejected.
    public var tagName: String?
    public var rejections: [String]

    public init(from: RunState? = nil, to: RunState? = nil, reason: String? = nil, detail: String? = nil,
                approvedBy: String? = nil, approvers: [String] = [], tagName: String? = nil, rejections: [String] = []) {
        self.from = from
        self.to = to
        self.reason = reason
        self.detail = detail
        self.approvedBy = approvedBy
        self.approvers = approvers
        self.tagName = tagName
        self.rejections = rejections
    }
}

/// Where a forge sink put a run: the pull request it found for the run's commit (nil when the
/// forge knows none) and the comment it keeps editing (nil until it wrote one). Kept in the
/// store so that a restarted daemon edits the same comment instead of writing a second.
public struct ForgeThread: Sendable, Hashable {
    public var pull: String?
    public var comment: String?

    public init(pull: String?, comment: String?) {
        self.pull = pull
        self.comment = comment
    }
}

/// The outbox's side of the store port (see ``RunStore``): events are written by the other
/// calls; these read them and keep each sink's place. None of these writes is gate state, so
/// none appends an audit entry.
public protocol OutboxStore: Sendable {
    /// Events with an id above `id`, oldest first, at most `limit`.
    func outboxEvents(after id: Int64, limit: Int) async throws -> [OutboxEvent]
    /// The id of the newest event (0 when there is none).
    func outboxLastEventID() async throws -> Int64
    /// The last event `sink` delivered (or gave up on), nil for a sink never seen.
    func outboxPosition(of sink: String) async throws -> Int64?
    /// Records that `sink` is done with every event up to `id`.
    func setOutboxPosition(of sink: String, to id: Int64, at time: Date) async throws
    func forgeThread(sink: String, runID: RunID) async throws -> ForgeThread?
    func recordForgeThread(_ thread: ForgeThread, sink: String, runID: RunID, at time: Date) async throws
}
