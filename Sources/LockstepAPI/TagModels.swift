public import LockstepCore

// Release tags as the daemon decided them (docs/CONTRACT.md §3).

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
