import Foundation
import LockstepCore
import LockstepHTTP
import Synchronization

// MARK: - Canned test backend, shared by the HTTP and CLI tests
//
// THIS IS A TEST BACKEND. It is a plain struct holding canned LockstepCore values behind
// APIBackend, so the HTTP tests can show what the HTTP layer does with what a backend
// returns (authentication, validation, status codes, JSON) and the CLI tests can show
// what the `lockstep` client binary does with real HTTP answers (output, exit statuses,
// credentials). It does not plan, apply or store anything. Approvals are judged by the
// real core rules (ApprovalRules.decide), so refusals carry real core codes. The daemon's
// end-to-end tests drive the real gate and store behind the same API.
//
// It lives in a test-only target (never a product) so both test targets exercise one
// backend: a fix to it reaches both, instead of two copies drifting apart.

/// Every call the server made into the backend, in order, one readable line each.
public final class CallLog: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    public func record(_ line: String) { lines.withLock { $0.append(line) } }
    public var all: [String] { lines.withLock { $0 } }
    /// Calls that would change something (approve, reject, rollback, resolve) and were accepted.
    public var mutations: [String] { all.filter { $0.hasPrefix("accepted ") } }
}

public struct CannedBackend: APIBackend {
    public let calls = CallLog()
    public var environmentList: [APIEnvironment]
    public var runDetails: [APIRunDetail]
    /// When set, every call throws this (a backend failure, such as the store being down),
    /// so a test can show the failure's text never reaches a client.
    public var failure: (any Error & Sendable)?
    /// When set, an accepted approval that completes the required count moves the run to
    /// `approved`, as the gate does, so a client's screen shows the state an operator
    /// would see next. Off, the run stays where it was and only the approval is added.
    public var promotesWhenApproved: Bool
    /// What ``problems()`` answers (none by default).
    public var problemList: [APIProblem] = []
    /// What ``tagDecisions(environment:project:)`` answers, per environment.
    public var tagDecisionLists: [EnvironmentName: APITagDecisionList] = [Fixture.environment("dev"): Fixture.devTagDecisions]

    /// Each test target passes its own environments and runs; the rules (policies, the
    /// tagger, known identities, the clock) are the shared `Fixture` values.
    public init(environments: [APIEnvironment], runs: [APIRunDetail],
                failure: (any Error & Sendable)? = nil, promotesWhenApproved: Bool = false) {
        self.environmentList = environments
        self.runDetails = runs
        self.failure = failure
        self.promotesWhenApproved = promotesWhenApproved
    }

    public func environments() async throws -> [APIEnvironment] {
        calls.record("environments")
        if let failure { throw failure }
        return environmentList
    }

    public func problems() async throws -> [APIProblem] {
        calls.record("problems")
        if let failure { throw failure }
        return problemList
    }

    public func tagDecisions(environment: EnvironmentName, project: ProjectName?) async throws -> APITagDecisionList? {
        calls.record("tags \(environment) project \(project?.rawValue ?? "*")")
        if let failure { throw failure }
        guard var list = tagDecisionLists[environment] else { return nil }
        if let project {
            list.decisions = list.decisions.filter { $0.project == project }
            if list.decisions.isEmpty { return nil }
        }
        return list
    }

    public func runs(_ filter: APIRunFilter) async throws -> [APIRunSummary] {
        let states = filter.states.map { $0.map(\.rawValue).sorted().joined(separator: ",") } ?? "*"
        calls.record("runs target=\(filter.target?.description ?? "*") states=\(states) limit=\(filter.limit)")
        if let failure { throw failure }
        return runDetails
            .filter { filter.target == nil || $0.target == filter.target }
            .filter { filter.states?.contains($0.state) ?? true }
            .prefix(filter.limit)
            .map(Fixture.summary)
    }

    public func run(_ id: RunID) async throws -> APIRunDetail? {
        calls.record("run \(id)")
        if let failure { throw failure }
        return runDetails.first { $0.id == id }
    }

    public func approve(_ run: RunID, identity: IdentityName, digest: Digest, terms: ApprovalTerms) async throws -> APIOutcome<APIRunDetail> {
        calls.record("approve \(run) by \(identity) digest \(digest)"
                     + (terms.overrideChecks.isEmpty ? "" : " overriding \(terms.overrideChecks.joined(separator: ","))")
                     + (terms.breakGlass ? " break-glass" : "") + (terms.reason.map { ": \($0)" } ?? ""))
        if let failure { throw failure }
        guard var detail = runDetails.first(where: { $0.id == run }), let planDigest = detail.digest else {
            return .notFound("there is no run \(run)")
        }
        guard let policy = Fixture.policies[detail.environment.rawValue] else {
            return .notFound("there is no environment \(detail.environment)")
        }
        let context = ApprovalContext(runID: run, state: detail.state, planDigest: planDigest,
                                      taggerIdentities: [Fixture.carol], knownIdentities: Fixture.knownIdentities)
        let approval = Approval(runID: run, identity: identity, digest: digest, time: Fixture.now)
        let existing = detail.approvals.map { Approval(runID: run, identity: $0.identity, digest: $0.digest, time: $0.time) }
        switch ApprovalRules.decide(approval, for: context, existing: existing, policy: policy, now: Fixture.now) {
        case .refused(let refusal):
            calls.record("refused \(refusal.code)")
            return .refused(APIRefusal(refusal))
        case .accepted(let accepted, _, _):
            calls.record("accepted approve \(run) by \(identity)")
            detail.approvals.append(APIApproval(accepted))
            detail.mayApprove.removeAll { $0 == identity }
            if promotesWhenApproved && detail.approvals.count >= detail.requiredApprovals { detail.state = .approved }
            return .ok(detail)
        }
    }

    public func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail> {
        calls.record("reject \(run) by \(identity) reason \(reason)")
        if let failure { throw failure }
        guard var detail = runDetails.first(where: { $0.id == run }) else { return .notFound("there is no run \(run)") }
        guard detail.state.isBeforeApply else {
            return .refused(APIRefusal(code: .runStateInvalid, message: "run \(run) is \(detail.state), too late to reject"))
        }
        calls.record("accepted reject \(run) by \(identity)")
        detail.state = .rejected
        return .ok(detail)
    }

    /// Accepts only 1.1.0 (the version the fixtures applied before) and answers with one
    /// queued rollback run. A queued run has not planned yet, so it carries no digest, no
    /// summary and no rendering, as the gate's would.
    public func rollback(_ request: APIRollbackRequest,
                         identity: IdentityName) async throws -> APIOutcome<APIRollbackResult> {
        calls.record("rollback \(request.environment) project \(request.project?.rawValue ?? "*") to \(request.version) by \(identity)")
        if let failure { throw failure }
        guard environmentList.contains(where: { $0.name == request.environment }) else {
            return .notFound("there is no environment \(request.environment)")
        }
        guard request.version == Fixture.v1_1_0 else {
            return .refused(APIRefusal(code: .rollbackVersionNotAccepted,
                                       message: "\(request.version) was never accepted for \(request.environment)"))
        }
        calls.record("accepted rollback \(request.environment) by \(identity)")
        var run = Fixture.devRun
        run.id = Fixture.id("run-rollback")
        run.version = Fixture.v1_1_0
        run.tag = "dev/v1.1.0"
        run.state = .queued
        run.rollback = true
        run.digest = nil
        run.summary = nil
        run.planRendering = nil
        return .ok(APIRollbackResult(runs: [run]))
    }

    public func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
                        identity: IdentityName) async throws -> APIOutcome<APIRunDetail> {
        calls.record("resolve \(run) as \(resolution.rawValue) by \(identity) reason \(reason)")
        if let failure { throw failure }
        guard var detail = runDetails.first(where: { $0.id == run }) else { return .notFound("there is no run \(run)") }
        guard detail.state == .interrupted else {
            return .refused(APIRefusal(code: .runStateInvalid, message: "run \(run) is \(detail.state), not interrupted"))
        }
        calls.record("accepted resolve \(run) by \(identity)")
        detail.state = resolution == .applied ? .verifying : .failed
        return .ok(detail)
    }
}
