public import Foundation
public import LockstepCore

// The board: environments, targets and what keeps the daemon from following the repository.

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
    /// An approved run held by a closed apply window or a freeze: why, and when it will apply.
    public var heldBecause: String?
    public var appliesAt: Date?

    public init(runID: RunID, state: RunState, version: SemanticVersion, tag: String, commit: GitObjectID,
                heldBecause: String? = nil, appliesAt: Date? = nil) {
        self.runID = runID
        self.state = state
        self.version = version
        self.tag = tag
        self.commit = commit
        self.heldBecause = heldBecause
        self.appliesAt = appliesAt
    }

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case state, version, tag, commit
        case heldBecause = "held_because"
        case appliesAt = "applies_at"
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
    /// The last drift check of the applied revision (nil: none, or the environment has no `drift:`).
    public var drift: APIDrift?

    public init(project: ProjectName, environment: EnvironmentName, desired: APIRevision?, applied: APIRevision?,
                pending: APIPendingRevision?, pin: APIPin?, alerts: Int, drift: APIDrift? = nil) {
        self.project = project
        self.environment = environment
        self.desired = desired
        self.applied = applied
        self.pending = pending
        self.pin = pin
        self.alerts = alerts
        self.drift = drift
    }

    public var target: TargetID { TargetID(project: project, environment: environment) }

    enum CodingKeys: String, CodingKey {
        case project, environment, desired, applied, pending, pin, alerts, drift
    }
}

/// A drift check of a target's applied revision (docs/CONTRACT.md §4, drift).
public struct APIDrift: Sendable, Hashable, Codable {
    /// `no_drift`, `drift` or `failed`.
    public var outcome: String
    public var checkedAt: Date
    public var version: SemanticVersion
    public var tag: String
    public var detail: String
    /// Addresses the plan of the applied revision would change.
    public var addresses: [String]

    public init(outcome: String, checkedAt: Date, version: SemanticVersion, tag: String, detail: String, addresses: [String]) {
        self.outcome = outcome
        self.checkedAt = checkedAt
        self.version = version
        self.tag = tag
        self.detail = detail
        self.addresses = addresses
    }

    enum CodingKeys: String, CodingKey {
        case outcome, version, tag, detail, addresses
        case checkedAt = "checked_at"
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

/// `GET /api/v1/environments`.
public struct APIEnvironmentList: Sendable, Hashable, Codable {
    public var environments: [APIEnvironment]
    /// What keeps the daemon from following the repository right now (the last fetch
    /// failed, the branch's `lockstep.yaml` is invalid); empty when nothing does.
    public var problems: [APIProblem]

    /// `lockstep validate` of the protected branch's tip, when the agent runs it (`validate_branch`).
    public var validation: APIBranchValidation?

    public init(environments: [APIEnvironment], problems: [APIProblem] = [], validation: APIBranchValidation? = nil) {
        self.environments = environments
        self.problems = problems
        self.validation = validation
    }

    /// A daemon from before `problems` existed sends none: read as no problems.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        environments = try container.decode([APIEnvironment].self, forKey: .environments)
        problems = try container.decodeIfPresent([APIProblem].self, forKey: .problems) ?? []
        validation = try container.decodeIfPresent(APIBranchValidation.self, forKey: .validation)
    }

    enum CodingKeys: String, CodingKey { case environments, problems, validation }
}

/// The daemon's `lockstep validate` of the protected branch's tip (docs/CONTRACT.md §5).
public struct APIBranchValidation: Sendable, Hashable, Codable {
    public var commit: GitObjectID
    public var checkedAt: Date
    /// `lockstep validate`'s exit status: 0 all good, 1 problems, 2 could not validate.
    public var exitStatus: Int
    /// One line per problem, the worst first (at most 50).
    public var problems: [String]

    public init(commit: GitObjectID, checkedAt: Date, exitStatus: Int, problems: [String]) {
        self.commit = commit
        self.checkedAt = checkedAt
        self.exitStatus = exitStatus
        self.problems = problems
    }

    enum CodingKeys: String, CodingKey {
        case commit, problems
        case checkedAt = "checked_at"
        case exitStatus = "exit_status"
    }
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

/// `GET /api/v1/targets`.
public struct APITargetList: Sendable, Hashable, Codable {
    public var targets: [APITarget]
    public init(targets: [APITarget]) { self.targets = targets }
    enum CodingKeys: String, CodingKey { case targets }
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
