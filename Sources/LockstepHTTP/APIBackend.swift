public import LockstepCore

/// What the JSON API asks of the gate. The daemon implements it over the gate and the
/// store; the HTTP layer only authenticates, validates input and maps outcomes to responses.
///
/// Rules for implementations:
/// * `identity` is always the authenticated caller, taken from the bearer token by the
///   HTTP layer, never from a request field: a client cannot approve as someone else.
/// * Every decision (may this identity approve this environment? is the digest right?)
///   is the backend's; a refusal comes back as ``APIOutcome/refused(_:)`` and is never thrown.
/// * Messages in refusals and values in DTOs must already be client-safe: redacted,
///   untrusted text escaped. The HTTP layer shows them as they are.
/// * A thrown error means the backend failed (store down, disk full). The client then sees
///   `internal` and a fixed message; the error itself only goes to the daemon's log.
public protocol APIBackend: Sendable {
    /// Environments in promotion order, each with its targets.
    func environments() async throws -> [APIEnvironment]
    /// What keeps the daemon from following the repository right now (shown with the board).
    func problems() async throws -> [APIProblem]
    /// The daemon's own latest decision on every release tag of `environment` (only
    /// `project`'s when given), with the reasons for each rejection. Nil when this agent
    /// does not know the environment, or serves no such project in it.
    func tagDecisions(environment: EnvironmentName, project: ProjectName?) async throws -> APITagDecisionList?
    /// Runs matching `filter`, newest first, at most `filter.limit`.
    func runs(_ filter: APIRunFilter) async throws -> [APIRunSummary]
    /// One run, or nil when there is no such run.
    func run(_ id: RunID) async throws -> APIRunDetail?
    /// Records `identity`'s approval of the plan with `digest` (docs/CONTRACT.md §4).
    func approve(_ run: RunID, identity: IdentityName, digest: Digest) async throws -> APIOutcome<APIRunDetail>
    /// Rejects the run; it ends in `rejected`.
    func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail>
    /// Starts a gated rollback run of an earlier accepted version (docs/CONTRACT.md §3), for `project` or,
    /// when nil, for every project of the environment.
    func rollback(_ request: APIRollbackRequest, identity: IdentityName) async throws -> APIOutcome<APIRollbackResult>
    /// Settles an `interrupted` run after an operator looked at the infrastructure (docs/CONTRACT.md §4, crash).
    func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
                 identity: IdentityName) async throws -> APIOutcome<APIRunDetail>
}

/// Which runs `GET /api/v1/runs` lists.
public struct APIRunFilter: Sendable, Hashable {
    /// Only runs of this target (nil: every target).
    public var target: TargetID?
    /// Only runs in one of these states (nil: every state).
    public var states: Set<RunState>?
    /// At most this many runs, newest first.
    public var limit: Int

    public init(target: TargetID? = nil, states: Set<RunState>? = nil, limit: Int) {
        self.target = target
        self.states = states
        self.limit = limit
    }
}

/// A validated `POST /api/v1/rollback` request.
public struct APIRollbackRequest: Sendable, Hashable {
    public var environment: EnvironmentName
    public var project: ProjectName?
    public var version: SemanticVersion

    public init(environment: EnvironmentName, project: ProjectName?, version: SemanticVersion) {
        self.environment = environment
        self.project = project
        self.version = version
    }
}

/// The outcome of a request that changes something.
public enum APIOutcome<Value: Sendable>: Sendable {
    /// Done; the value is the state afterwards.
    case ok(Value)
    /// The gate refused; nothing changed. Maps to 403 or 409 with `refused_<code>`.
    case refused(APIRefusal)
    /// The run, environment or project does not exist. The message is client-safe.
    case notFound(String)
}

/// Why the gate refused a request. `message` is client-safe and shown as it is.
public struct APIRefusal: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason; the error code is `refused_<rawValue>`.
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Carries an approval refusal's code over unchanged (`wrong_digest`, `identity_not_allowed`, …).
        public init(_ code: ApprovalRefusal.Code) { self.rawValue = code.rawValue }

        // Approval refusals (ApprovalRefusal.Code), repeated here so callers of the API see one list.
        public static let wrongRun = Code(ApprovalRefusal.Code.wrongRun)
        public static let runNotAwaitingApproval = Code(ApprovalRefusal.Code.runNotAwaitingApproval)
        public static let wrongDigest = Code(ApprovalRefusal.Code.wrongDigest)
        public static let unknownIdentity = Code(ApprovalRefusal.Code.unknownIdentity)
        public static let identityNotAllowed = Code(ApprovalRefusal.Code.identityNotAllowed)
        public static let taggerSelfApproval = Code(ApprovalRefusal.Code.taggerSelfApproval)
        public static let duplicateIdentity = Code(ApprovalRefusal.Code.duplicateIdentity)
        public static let expired = Code(ApprovalRefusal.Code.expired)
        public static let timeInFuture = Code(ApprovalRefusal.Code.timeInFuture)
        // Other requests.
        /// The run is not in a state the request applies to (reject after apply, resolve of a run that is not interrupted).
        public static let runStateInvalid = Code(rawValue: "run_state_invalid")
        /// The rollback version was never accepted for the environment.
        public static let rollbackVersionNotAccepted = Code(rawValue: "rollback_version_not_accepted")
        /// The target already has a run in progress.
        public static let targetBusy = Code(rawValue: "target_busy")
        /// This agent does not serve the environment.
        public static let environmentNotServed = Code(rawValue: "environment_not_served")
        /// The daemon is stopping and takes no new work.
        public static let shuttingDown = Code(rawValue: "shutting_down")

        /// Refusals about *who* is asking rather than the run's state: answered with 403
        /// (and reported as refused access), everything else with 409.
        public var isForbidden: Bool {
            self == .identityNotAllowed || self == .unknownIdentity || self == .taggerSelfApproval
        }
    }

    public let code: Code
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// Carries a core approval refusal over with its code and description.
    public init(_ refusal: ApprovalRefusal) {
        self.init(code: Code(refusal.code), message: refusal.description)
    }

    public var description: String { "\(code): \(message)" }
}
