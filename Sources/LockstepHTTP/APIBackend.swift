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
    func approve(_ run: RunID, identity: IdentityName, digest: Digest, terms: ApprovalTerms) async throws -> APIOutcome<APIRunDetail>
    /// Rejects the run; it ends in `rejected`.
    func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail>
    /// Starts a gated rollback run of an earlier accepted version (docs/CONTRACT.md §3), for `project` or,
    /// when nil, for every project of the environment.
    func rollback(_ request: APIRollbackRequest, identity: IdentityName) async throws -> APIOutcome<APIRollbackResult>
    /// Settles an `interrupted` run after an operator looked at the infrastructure (docs/CONTRACT.md §4, crash).
    func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
                 identity: IdentityName) async throws -> APIOutcome<APIRunDetail>
    /// The run's output so far (terraform and verify commands, already redacted when stored),
    /// nil when there is no such run. Shown on the review UI's run page.
    func runLog(_ id: RunID) async throws -> String?
    /// The daemon's last `lockstep validate` of the protected branch's tip; nil when it runs none.
    func branchValidation() async -> APIBranchValidation?
}

extension APIBackend {
    /// A backend that keeps no output shows none.
    public func runLog(_ id: RunID) async throws -> String? { nil }
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

extension APIBackend {
    /// A backend that validates no branch says so.
    public func branchValidation() async -> APIBranchValidation? { nil }
}
