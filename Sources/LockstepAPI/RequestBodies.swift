public import LockstepCore

// The bodies of the API's POST requests. The daemon decodes them strictly (exactly these
// fields, an unknown one is refused) and the client encodes them, so both read this one
// definition. Fields are strings on the wire: the daemon validates each into its domain type
// itself so every error names the field it is about; a client builds them from typed values.

/// `POST /api/v1/runs/{id}/approve`: the plan digest the approver reviewed (docs/CONTRACT.md §4).
public struct APIApproveBody: Sendable, Hashable, Codable {
    /// The JSON keys the daemon accepts.
    public static let fields: Set<String> = ["digest", "override_checks", "break_glass", "reason"]
    public var digest: String
    /// Failed external checks this approval overrides (where the agent config allows it).
    public var overrideChecks: [String]?
    /// An emergency approval by a member of the environment's break-glass group.
    public var breakGlass: Bool?
    /// Required with `override_checks` or `break_glass`; stored and audited.
    public var reason: String?

    public init(digest: Digest, overrideChecks: [String]? = nil, breakGlass: Bool? = nil, reason: String? = nil) {
        self.digest = digest.rawValue
        self.overrideChecks = overrideChecks
        self.breakGlass = breakGlass
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case digest, reason
        case overrideChecks = "override_checks"
        case breakGlass = "break_glass"
    }
}

/// `POST /api/v1/runs/{id}/reject`.
public struct APIRejectBody: Sendable, Hashable, Codable {
    public static let fields: Set<String> = ["reason"]
    public var reason: String

    public init(reason: String) { self.reason = reason }

    enum CodingKeys: String, CodingKey { case reason }
}

/// `POST /api/v1/rollback`: roll `project` (every project when absent) of `environment` back to `version`.
public struct APIRollbackBody: Sendable, Hashable, Codable {
    public static let fields: Set<String> = ["environment", "project", "version"]
    public var environment: String
    public var project: String?
    public var version: String

    public init(environment: EnvironmentName, project: ProjectName?, version: SemanticVersion) {
        self.environment = environment.rawValue
        self.project = project?.rawValue
        self.version = version.description
    }

    enum CodingKeys: String, CodingKey { case environment, project, version }
}

/// `POST /api/v1/runs/{id}/resolve`: settle an interrupted run as `applied` or `failed`.
public struct APIResolveBody: Sendable, Hashable, Codable {
    public static let fields: Set<String> = ["as", "reason"]
    public var `as`: String
    public var reason: String

    public init(as resolution: OperatorResolution, reason: String) {
        self.as = resolution.rawValue
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey { case `as`, reason }
}
