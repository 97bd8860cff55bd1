public import Foundation
public import LockstepCore

// Runs: the list, one run in full, and what a rollback created.

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
    /// Why it failed (redacted), or nil; for an external check, how its program ended.
    public var detail: String?
    /// For an external check: whether an approver may override its failure.
    public var mayOverride: Bool?
    /// For an external check: the end of its output, redacted and bounded.
    public var output: String?

    public init(name: String, passed: Bool, detail: String?, mayOverride: Bool? = nil, output: String? = nil) {
        self.name = name
        self.passed = passed
        self.detail = detail
        self.mayOverride = mayOverride
        self.output = output
    }

    public init(_ result: CheckResult) {
        self.init(name: result.name, passed: result.passed, detail: result.outcome, mayOverride: result.mayOverride,
                  output: result.output)
    }

    enum CodingKeys: String, CodingKey {
        case name, passed, detail, output
        case mayOverride = "may_override"
    }
}

/// An approval given so far.
public struct APIApproval: Sendable, Hashable, Codable {
    public var identity: IdentityName
    public var digest: Digest
    public var time: Date
    /// Failed external checks this approval overrode.
    public var overrideChecks: [String]?
    /// A break-glass approval (emergency path through freezes and windows).
    public var breakGlass: Bool?
    public var reason: String?

    public init(identity: IdentityName, digest: Digest, time: Date, overrideChecks: [String]? = nil,
                breakGlass: Bool? = nil, reason: String? = nil) {
        self.identity = identity
        self.digest = digest
        self.time = time
        self.overrideChecks = overrideChecks
        self.breakGlass = breakGlass
        self.reason = reason
    }

    public init(_ approval: Approval) {
        self.init(identity: approval.identity, digest: approval.digest, time: approval.time,
                  overrideChecks: approval.overrideChecks.isEmpty ? nil : approval.overrideChecks,
                  breakGlass: approval.breakGlass ? true : nil, reason: approval.reason)
    }

    enum CodingKeys: String, CodingKey {
        case identity, digest, time, reason
        case overrideChecks = "override_checks"
        case breakGlass = "break_glass"
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
    /// Whether `planRendering` is terraform's text yet: `ready`, `pending` (the plan is stored
    /// and reviewable from its summary and checks; its text follows within moments) or `failed`
    /// (`planRendering` says why). Nil before a plan was stored.
    public var planRenderingState: APIRenderingState?
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
    /// Who cut the tag (`Name <email>`, as git recorded it) and its message without the
    /// signature block: text from the repository, shown escaped. Nil when the tag moved since the
    /// run was made, is gone, or is lightweight.
    public var tagger: String?
    public var tagMessage: String?
    /// The message of the run's commit: for a merged pull request, the merge's ("Merge pull
    /// request #N …" and what the forge wrote). Repository text, shown escaped.
    public var commitMessage: String?
    /// Who signed the release tag, as verified against the environment's signer files when
    /// the tag was accepted; nil where the environment does not require signed tags.
    public var signer: TagSigner?
    /// The state the plan was made against (lineage and serial inside the saved plan), checked
    /// again right before apply; nil before a plan with changes was stored.
    public var priorState: StateBinding?
    /// An approved run held back by a closed apply window or a freeze: why, when it will apply
    /// (nil: no window opens within a year) and when its approvals stop sufficing (it expires
    /// then if it has not applied). All nil for any other run.
    public var heldBecause: String?
    public var appliesAt: Date?
    public var approvalsExpireAt: Date?

    public init(id: RunID, project: ProjectName, environment: EnvironmentName, tag: String, version: SemanticVersion,
                commit: GitObjectID, tree: GitObjectID, state: RunState, digest: Digest?, rollback: Bool,
                summary: APIPlanSummary?, planRendering: String?, checks: [APICheck], approvals: [APIApproval],
                requiredApprovals: Int, mayApprove: [IdentityName], refusals: [APIApprovalRefusal],
                transitions: [APITransition], alerts: [APIAlert], createdAt: Date, updatedAt: Date,
                planRenderingTruncated: Bool = false, planRenderingBytes: Int? = nil,
                planRenderingState: APIRenderingState? = nil, tagger: String? = nil, tagMessage: String? = nil,
                commitMessage: String? = nil, signer: TagSigner? = nil, priorState: StateBinding? = nil) {
        self.priorState = priorState
        self.commitMessage = commitMessage
        self.signer = signer
        self.tagger = tagger
        self.tagMessage = tagMessage
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
        self.planRenderingState = planRenderingState ?? (planRendering == nil ? nil : .ready)
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
        case planRenderingState = "plan_rendering_state"
        case tagger
        case tagMessage = "tag_message"
        case commitMessage = "commit_message"
        case signer
        case priorState = "prior_state"
        case heldBecause = "held_because"
        case appliesAt = "applies_at"
        case approvalsExpireAt = "approvals_expire_at"
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
            planRenderingBytes: try c.decodeIfPresent(Int.self, forKey: .planRenderingBytes),
            planRenderingState: try c.decodeIfPresent(APIRenderingState.self, forKey: .planRenderingState),
            tagger: try c.decodeIfPresent(String.self, forKey: .tagger),
            tagMessage: try c.decodeIfPresent(String.self, forKey: .tagMessage),
            commitMessage: try c.decodeIfPresent(String.self, forKey: .commitMessage),
            signer: try c.decodeIfPresent(TagSigner.self, forKey: .signer),
            priorState: try c.decodeIfPresent(StateBinding.self, forKey: .priorState))
        heldBecause = try c.decodeIfPresent(String.self, forKey: .heldBecause)
        appliesAt = try c.decodeIfPresent(Date.self, forKey: .appliesAt)
        approvalsExpireAt = try c.decodeIfPresent(Date.self, forKey: .approvalsExpireAt)
    }
}

/// Where a plan's text rendering is (``APIRunDetail/planRenderingState``).
public enum APIRenderingState: String, Sendable, Hashable, Codable {
    case ready, pending, failed
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
