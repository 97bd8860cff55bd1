public import Foundation
public import LockstepCore

// The JSON shapes of `/api/v1` (docs/CONTRACT.md §5). Every key is spelled out in `CodingKeys`, so
// renaming a Swift property can never change what a script reading the API sees; the
// golden test in LockstepHTTPTests pins the keys. Times are ISO 8601 in UTC (see APIJSON).
// Lists are wrapped in an object (`{"runs": [...]}`) so fields can be added without
// breaking a client.

/// A release of a target: which version, from which tag, at which commit.
public struct APIRevision: Sendable, Hashable, Codable {
    public var version: SemanticVersion
    public var tag: String
    public var commit: GitObjectID

    public init(version: SemanticVersion, tag: String, commit: GitObjectID) {
        self.version = version
        self.tag = tag
        self.commit = commit
    }

    enum CodingKeys: String, CodingKey {
        case version, tag, commit
    }
}

/// The run a target is working on (not final yet): what it will change to and how far it got.
public struct APIPendingRevision: Sendable, Hashable, Codable {
    public var runID: RunID
    public var state: RunState
    public var version: SemanticVersion
    public var tag: String
    public var commit: GitObjectID

    public init(runID: RunID, state: RunState, version: SemanticVersion, tag: String, commit: GitObjectID) {
        self.runID = runID
        self.state = state
        self.version = version
        self.tag = tag
        self.commit = commit
    }

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case state, version, tag, commit
    }
}

/// A rollback pin (docs/CONTRACT.md §3): the target stays at `version` until a tag above `ceiling` is accepted.
public struct APIPin: Sendable, Hashable, Codable {
    public var version: SemanticVersion
    public var ceiling: SemanticVersion

    public init(version: SemanticVersion, ceiling: SemanticVersion) {
        self.version = version
        self.ceiling = ceiling
    }

    public init(_ pin: RollbackPin) {
        self.init(version: pin.version, ceiling: pin.ceiling)
    }

    enum CodingKeys: String, CodingKey {
        case version, ceiling
    }
}

/// One target (project × environment) as the status board shows it.
public struct APITarget: Sendable, Hashable, Codable {
    public var project: ProjectName
    public var environment: EnvironmentName
    /// The highest accepted version (or the pinned one).
    public var desired: APIRevision?
    /// What the last successful apply put in place.
    public var applied: APIRevision?
    /// The run in progress, if any.
    public var pending: APIPendingRevision?
    public var pin: APIPin?
    /// Alerts raised for the target or its runs and not yet acknowledged.
    public var alerts: Int

    public init(project: ProjectName, environment: EnvironmentName, desired: APIRevision?, applied: APIRevision?,
                pending: APIPendingRevision?, pin: APIPin?, alerts: Int) {
        self.project = project
        self.environment = environment
        self.desired = desired
        self.applied = applied
        self.pending = pending
        self.pin = pin
        self.alerts = alerts
    }

    public var target: TargetID { TargetID(project: project, environment: environment) }

    enum CodingKeys: String, CodingKey {
        case project, environment, desired, applied, pending, pin, alerts
    }
}

/// One environment, in promotion order, with its approval policy and its targets.
public struct APIEnvironment: Sendable, Hashable, Codable {
    public var name: EnvironmentName
    public var promoteFrom: EnvironmentName?
    public var requiredApprovals: Int
    /// Identities allowed to approve runs of this environment.
    public var approvers: [IdentityName]
    /// Whether this agent serves (plans and applies) the environment.
    public var served: Bool
    public var targets: [APITarget]

    public init(name: EnvironmentName, promoteFrom: EnvironmentName?, requiredApprovals: Int,
                approvers: [IdentityName], served: Bool, targets: [APITarget]) {
        self.name = name
        self.promoteFrom = promoteFrom
        self.requiredApprovals = requiredApprovals
        self.approvers = approvers
        self.served = served
        self.targets = targets
    }

    enum CodingKeys: String, CodingKey {
        case name
        case promoteFrom = "promote_from"
        case requiredApprovals = "required_approvals"
        case approvers, served, targets
    }
}

/// A run in a list.
public struct APIRunSummary: Sendable, Hashable, Codable {
    public var id: RunID
    public var project: ProjectName
    public var environment: EnvironmentName
    public var tag: String
    public var version: SemanticVersion
    public var commit: GitObjectID
    public var state: RunState
    /// The plan digest an approval must quote (once planned).
    public var digest: Digest?
    /// Whether the run is a rollback (docs/CONTRACT.md §3).
    public var rollback: Bool
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: RunID, project: ProjectName, environment: EnvironmentName, tag: String, version: SemanticVersion,
                commit: GitObjectID, state: RunState, digest: Digest?, rollback: Bool, createdAt: Date,
                updatedAt: Date) {
        self.id = id
        self.project = project
        self.environment = environment
        self.tag = tag
        self.version = version
        self.commit = commit
        self.state = state
        self.digest = digest
        self.rollback = rollback
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var target: TargetID { TargetID(project: project, environment: environment) }

    enum CodingKeys: String, CodingKey {
        case id, project, environment, tag, version, commit, state, digest, rollback
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// What a plan would do, counted by action, with the addresses of resources it destroys.
public struct APIPlanSummary: Sendable, Hashable, Codable {
    public var create: Int
    public var update: Int
    public var delete: Int
    public var replace: Int
    /// Addresses of resources deleted or replaced: what a reviewer must look at first.
    public var destroyedAddresses: [String]

    public init(create: Int, update: Int, delete: Int, replace: Int, destroyedAddresses: [String]) {
        self.create = create
        self.update = update
        self.delete = delete
        self.replace = replace
        self.destroyedAddresses = destroyedAddresses
    }

    enum CodingKeys: String, CodingKey {
        case create, update, delete, replace
        case destroyedAddresses = "destroyed_addresses"
    }
}

/// The result of one policy check on the plan.
public struct APICheck: Sendable, Hashable, Codable {
    public var name: String
    public var passed: Bool
    /// Why it failed (redacted), or nil.
    public var detail: String?

    public init(name: String, passed: Bool, detail: String?) {
        self.name = name
        self.passed = passed
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case name, passed, detail
    }
}

/// An approval given so far.
public struct APIApproval: Sendable, Hashable, Codable {
    public var identity: IdentityName
    public var digest: Digest
    public var time: Date

    public init(identity: IdentityName, digest: Digest, time: Date) {
        self.identity = identity
        self.digest = digest
        self.time = time
    }

    public init(_ approval: Approval) {
        self.init(identity: approval.identity, digest: approval.digest, time: approval.time)
    }

    enum CodingKeys: String, CodingKey {
        case identity, digest, time
    }
}

/// An approval that was refused, and why.
public struct APIApprovalRefusal: Sendable, Hashable, Codable {
    public var identity: IdentityName
    public var code: ApprovalRefusal.Code
    public var message: String
    public var time: Date

    public init(identity: IdentityName, code: ApprovalRefusal.Code, message: String, time: Date) {
        self.identity = identity
        self.code = code
        self.message = message
        self.time = time
    }

    public init(_ refusal: ApprovalRefusal) {
        self.init(identity: refusal.approval.identity, code: refusal.code, message: refusal.description,
                  time: refusal.approval.time)
    }

    enum CodingKeys: String, CodingKey {
        case identity, code, message, time
    }
}

/// One stored state change of a run.
public struct APITransition: Sendable, Hashable, Codable {
    public var from: RunState
    public var to: RunState
    public var reason: TransitionReason.Code
    public var detail: String?
    /// Who caused it: an identity, or the daemon itself.
    public var actor: String
    public var time: Date

    public init(from: RunState, to: RunState, reason: TransitionReason.Code, detail: String?, actor: String,
                time: Date) {
        self.from = from
        self.to = to
        self.reason = reason
        self.detail = detail
        self.actor = actor
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case from, to, reason, detail, actor, time
    }
}

/// An alert raised for a run.
public struct APIAlert: Sendable, Hashable, Codable {
    public var code: RunAlert.Code
    public var message: String
    public var time: Date

    public init(code: RunAlert.Code, message: String, time: Date) {
        self.code = code
        self.message = message
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case code, message, time
    }
}

/// Everything a reviewer needs to decide on a run.
public struct APIRunDetail: Sendable, Hashable, Codable {
    public var id: RunID
    public var project: ProjectName
    public var environment: EnvironmentName
    public var tag: String
    public var version: SemanticVersion
    public var commit: GitObjectID
    public var tree: GitObjectID
    public var state: RunState
    /// The plan digest to quote in an approval (once planned).
    public var digest: Digest?
    public var rollback: Bool
    public var summary: APIPlanSummary?
    /// Terraform's human rendering of the plan, redacted before it was stored.
    public var planRendering: String?
    /// True when `planRendering` is only the start of terraform's text (the agent keeps at
    /// most `limits.plan_text_bytes`). The summary and the checks still cover the whole plan:
    /// they come from the plan's complete JSON, bound to the digest.
    public var planRenderingTruncated: Bool
    /// Bytes of the whole text terraform printed (nil before a plan was stored).
    public var planRenderingBytes: Int?
    public var checks: [APICheck]
    public var approvals: [APIApproval]
    public var requiredApprovals: Int
    /// Identities who may still approve (allowed, not the tagger unless permitted, not yet approved).
    public var mayApprove: [IdentityName]
    public var refusals: [APIApprovalRefusal]
    public var transitions: [APITransition]
    public var alerts: [APIAlert]
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: RunID, project: ProjectName, environment: EnvironmentName, tag: String, version: SemanticVersion,
                commit: GitObjectID, tree: GitObjectID, state: RunState, digest: Digest?, rollback: Bool,
                summary: APIPlanSummary?, planRendering: String?, checks: [APICheck], approvals: [APIApproval],
                requiredApprovals: Int, mayApprove: [IdentityName], refusals: [APIApprovalRefusal],
                transitions: [APITransition], alerts: [APIAlert], createdAt: Date, updatedAt: Date,
                planRenderingTruncated: Bool = false, planRenderingBytes: Int? = nil) {
        self.id = id
        self.project = project
        self.environment = environment
        self.tag = tag
        self.version = version
        self.commit = commit
        self.tree = tree
        self.state = state
        self.digest = digest
        self.rollback = rollback
        self.summary = summary
        self.planRendering = planRendering
        self.planRenderingTruncated = planRenderingTruncated
        self.planRenderingBytes = planRenderingBytes ?? planRendering?.utf8.count
        self.checks = checks
        self.approvals = approvals
        self.requiredApprovals = requiredApprovals
        self.mayApprove = mayApprove
        self.refusals = refusals
        self.transitions = transitions
        self.alerts = alerts
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var target: TargetID { TargetID(project: project, environment: environment) }

    enum CodingKeys: String, CodingKey {
        case id, project, environment, tag, version, commit, tree, state, digest, rollback, summary
        case planRendering = "plan_rendering"
        case planRenderingTruncated = "plan_rendering_truncated"
        case planRenderingBytes = "plan_rendering_bytes"
        case checks, approvals
        case requiredApprovals = "required_approvals"
        case mayApprove = "may_approve"
        case refusals, transitions, alerts
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    /// A daemon from before truncation existed sends neither field: its renderings were whole.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try c.decode(RunID.self, forKey: .id), project: try c.decode(ProjectName.self, forKey: .project),
            environment: try c.decode(EnvironmentName.self, forKey: .environment), tag: try c.decode(String.self, forKey: .tag),
            version: try c.decode(SemanticVersion.self, forKey: .version), commit: try c.decode(GitObjectID.self, forKey: .commit),
            tree: try c.decode(GitObjectID.self, forKey: .tree), state: try c.decode(RunState.self, forKey: .state),
            digest: try c.decodeIfPresent(Digest.self, forKey: .digest), rollback: try c.decode(Bool.self, forKey: .rollback),
            summary: try c.decodeIfPresent(APIPlanSummary.self, forKey: .summary),
            planRendering: try c.decodeIfPresent(String.self, forKey: .planRendering),
            checks: try c.decode([APICheck].self, forKey: .checks), approvals: try c.decode([APIApproval].self, forKey: .approvals),
            requiredApprovals: try c.decode(Int.self, forKey: .requiredApprovals),
            mayApprove: try c.decode([IdentityName].self, forKey: .mayApprove),
            refusals: try c.decode([APIApprovalRefusal].self, forKey: .refusals),
            transitions: try c.decode([APITransition].self, forKey: .transitions),
            alerts: try c.decode([APIAlert].self, forKey: .alerts), createdAt: try c.decode(Date.self, forKey: .createdAt),
            updatedAt: try c.decode(Date.self, forKey: .updatedAt),
            planRenderingTruncated: try c.decodeIfPresent(Bool.self, forKey: .planRenderingTruncated) ?? false,
            planRenderingBytes: try c.decodeIfPresent(Int.self, forKey: .planRenderingBytes))
    }
}

/// `GET /api/v1/environments`.
public struct APIEnvironmentList: Sendable, Hashable, Codable {
    public var environments: [APIEnvironment]
    /// What keeps the daemon from following the repository right now (the last fetch
    /// failed, the branch's `lockstep.yaml` is invalid); empty when nothing does.
    public var problems: [APIProblem]

    public init(environments: [APIEnvironment], problems: [APIProblem] = []) {
        self.environments = environments
        self.problems = problems
    }

    /// A daemon from before `problems` existed sends none: read as no problems.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        environments = try container.decode([APIEnvironment].self, forKey: .environments)
        problems = try container.decodeIfPresent([APIProblem].self, forKey: .problems) ?? []
    }

    enum CodingKeys: String, CodingKey { case environments, problems }
}

/// Something that keeps the daemon from following the delivery repository, shown on the
/// board (not only in `/readyz`). `message` is client-safe.
public struct APIProblem: Sendable, Hashable, Codable {
    /// A stable, machine-readable kind (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The last fetch of the delivery repository failed: new tags are not seen.
        public static let fetchFailed = Code(rawValue: "fetch_failed")
        /// The `lockstep.yaml` at the protected branch tip is invalid or unreadable: the
        /// targets still come from the last valid layout.
        public static let layoutInvalid = Code(rawValue: "layout_invalid")
        /// A ref of the delivery repository cannot be mirrored (it points at a tree or a
        /// blob, its name is too long or invalid): it is skipped, every other ref is fetched.
        public static let refSkipped = Code(rawValue: "ref_skipped")
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    enum CodingKeys: String, CodingKey { case code, message }
}

/// One reason a tag was rejected.
public struct APITagRejection: Sendable, Hashable, Codable {
    public var code: TagRejection.Code
    public var message: String

    public init(code: TagRejection.Code, message: String) {
        self.code = code
        self.message = message
    }

    public init(_ rejection: TagRejection) {
        self.init(code: rejection.code, message: rejection.description)
    }

    enum CodingKeys: String, CodingKey { case code, message }
}

/// A release tag of one target as the daemon last decided it (docs/CONTRACT.md §3).
public struct APITagDecision: Sendable, Hashable, Codable {
    public var project: ProjectName
    public var environment: EnvironmentName
    /// The tag's name, display-safe.
    public var tag: String
    /// The object the tag ref named when it was decided.
    public var tagObject: GitObjectID
    public var commit: GitObjectID?
    /// Nil when the version did not parse (the rejection says why).
    public var version: SemanticVersion?
    public var accepted: Bool
    /// Every rule the tag broke; empty when accepted.
    public var rejections: [APITagRejection]

    public init(project: ProjectName, environment: EnvironmentName, tag: String, tagObject: GitObjectID,
                commit: GitObjectID?, version: SemanticVersion?, accepted: Bool, rejections: [APITagRejection]) {
        self.project = project
        self.environment = environment
        self.tag = tag
        self.tagObject = tagObject
        self.commit = commit
        self.version = version
        self.accepted = accepted
        self.rejections = rejections
    }

    public var target: TargetID { TargetID(project: project, environment: environment) }

    enum CodingKeys: String, CodingKey {
        case project, environment, tag
        case tagObject = "tag_object"
        case commit, version, accepted, rejections
    }
}

/// `GET /api/v1/environments/{env}/tags`: the daemon's own decisions, per project, newest
/// version first.
public struct APITagDecisionList: Sendable, Hashable, Codable {
    public var environment: EnvironmentName
    public var decisions: [APITagDecision]

    public init(environment: EnvironmentName, decisions: [APITagDecision]) {
        self.environment = environment
        self.decisions = decisions
    }

    enum CodingKeys: String, CodingKey { case environment, decisions }
}

/// `GET /api/v1/targets`.
public struct APITargetList: Sendable, Hashable, Codable {
    public var targets: [APITarget]
    public init(targets: [APITarget]) { self.targets = targets }
    enum CodingKeys: String, CodingKey { case targets }
}

/// `GET /api/v1/runs`.
public struct APIRunList: Sendable, Hashable, Codable {
    public var runs: [APIRunSummary]
    public init(runs: [APIRunSummary]) { self.runs = runs }
    enum CodingKeys: String, CodingKey { case runs }
}

/// `POST /api/v1/rollback`: the rollback runs created (one per project rolled back).
public struct APIRollbackResult: Sendable, Hashable, Codable {
    public var runs: [APIRunDetail]
    public init(runs: [APIRunDetail]) { self.runs = runs }
    enum CodingKeys: String, CodingKey { case runs }
}

/// What `/readyz` reports; the daemon's closure decides.
public struct APIReadiness: Sendable, Hashable, Codable {
    public var ready: Bool
    /// A short, client-safe line: what the daemon is doing or waiting for.
    public var status: String

    public init(ready: Bool, status: String) {
        self.ready = ready
        self.status = status
    }

    enum CodingKeys: String, CodingKey { case ready, status }
}

/// The body of every error response: `{"error":{"code":"...","message":"..."}}`.
public struct APIErrorBody: Sendable, Hashable, Codable {
    public struct Detail: Sendable, Hashable, Codable {
        public var code: APIErrorCode
        public var message: String
        public init(code: APIErrorCode, message: String) {
            self.code = code
            self.message = message
        }
        enum CodingKeys: String, CodingKey { case code, message }
    }

    public var error: Detail

    public init(code: APIErrorCode, message: String) {
        self.error = Detail(code: code, message: message)
    }

    enum CodingKeys: String, CodingKey { case error }
}

/// The stable `code` of an error response. A struct with static members so new codes
/// never break a client; a client branches on these, never on the message.
public struct APIErrorCode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// No, a malformed, an unknown or a revoked bearer token (401).
    public static let unauthorized = APIErrorCode(rawValue: "unauthorized")
    /// Authenticated, but not allowed (403); backend refusals of this kind use `refused_<reason>`.
    public static let forbidden = APIErrorCode(rawValue: "forbidden")
    public static let notFound = APIErrorCode(rawValue: "not_found")
    public static let methodNotAllowed = APIErrorCode(rawValue: "method_not_allowed")
    /// Malformed JSON, a wrong type, an unknown or missing field, an invalid value (400).
    public static let badRequest = APIErrorCode(rawValue: "bad_request")
    public static let payloadTooLarge = APIErrorCode(rawValue: "payload_too_large")
    /// Something failed inside the daemon; the detail is in its log, never in the response.
    public static let `internal` = APIErrorCode(rawValue: "internal")

    /// `refused_<reason>`: the gate refused the request for `reason`.
    public static func refused(_ reason: APIRefusal.Code) -> APIErrorCode {
        APIErrorCode(rawValue: "refused_\(reason.rawValue)")
    }

    /// The refusal reason when this is a `refused_<reason>` code.
    public var refusalReason: APIRefusal.Code? {
        guard rawValue.hasPrefix("refused_") else { return nil }
        return APIRefusal.Code(rawValue: String(rawValue.dropFirst("refused_".count)))
    }
}
