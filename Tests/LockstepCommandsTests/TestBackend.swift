import Foundation
import LockstepCore
import LockstepHTTP
import Synchronization

// MARK: - Test backend for the CLI
//
// THIS IS A TEST BACKEND, copied from LockstepHTTPTests' CannedBackend and shaped for the
// CLI's screens. It holds canned LockstepCore values behind the real APIServer so these
// tests can show what the `lockstep` client binary does with real HTTP answers: output,
// exit statuses, credentials. It does not plan, apply or store anything. Approvals are
// judged by the real core rules (ApprovalRules.decide), so refusals carry real codes.
// The daemon's end-to-end tests drive the real gate behind the same API.

/// Every call the server made into the backend, in order, one readable line each.
final class CallLog: Sendable {
    private let lines = Mutex<[String]>([])
    func record(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
    /// Calls that changed something and were accepted.
    var mutations: [String] { all.filter { $0.hasPrefix("accepted ") } }
}

struct TestBackend: APIBackend {
    let calls = CallLog()
    var environmentList: [APIEnvironment] = Fixture.environments
    var runDetails: [APIRunDetail] = Fixture.runs

    func environments() async throws -> [APIEnvironment] {
        calls.record("environments")
        return environmentList
    }

    func runs(_ filter: APIRunFilter) async throws -> [APIRunSummary] {
        let states = filter.states.map { $0.map(\.rawValue).sorted().joined(separator: ",") } ?? "*"
        calls.record("runs target=\(filter.target?.description ?? "*") states=\(states) limit=\(filter.limit)")
        return runDetails
            .filter { filter.target == nil || $0.target == filter.target }
            .filter { filter.states?.contains($0.state) ?? true }
            .prefix(filter.limit)
            .map(Fixture.summary)
    }

    func run(_ id: RunID) async throws -> APIRunDetail? {
        calls.record("run \(id)")
        return runDetails.first { $0.id == id }
    }

    func approve(_ run: RunID, identity: IdentityName, digest: Digest) async throws -> APIOutcome<APIRunDetail> {
        calls.record("approve \(run) by \(identity) digest \(digest)")
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
            if detail.approvals.count >= detail.requiredApprovals { detail.state = .approved }
            return .ok(detail)
        }
    }

    func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail> {
        calls.record("reject \(run) by \(identity) reason \(reason)")
        guard var detail = runDetails.first(where: { $0.id == run }) else { return .notFound("there is no run \(run)") }
        guard detail.state.isBeforeApply else {
            return .refused(APIRefusal(code: .runStateInvalid, message: "run \(run) is \(detail.state), too late to reject"))
        }
        calls.record("accepted reject \(run) by \(identity)")
        detail.state = .rejected
        return .ok(detail)
    }

    func rollback(_ request: APIRollbackRequest, identity: IdentityName) async throws -> APIOutcome<APIRollbackResult> {
        calls.record("rollback \(request.environment) project \(request.project?.rawValue ?? "*") to \(request.version) by \(identity)")
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

    func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
                 identity: IdentityName) async throws -> APIOutcome<APIRunDetail> {
        calls.record("resolve \(run) as \(resolution.rawValue) by \(identity) reason \(reason)")
        guard var detail = runDetails.first(where: { $0.id == run }) else { return .notFound("there is no run \(run)") }
        guard detail.state == .interrupted else {
            return .refused(APIRefusal(code: .runStateInvalid, message: "run \(run) is \(detail.state), not interrupted"))
        }
        calls.record("accepted resolve \(run) by \(identity)")
        detail.state = resolution == .applied ? .verifying : .failed
        return .ok(detail)
    }
}

// MARK: - Canned values

enum Fixture {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func id(_ raw: String) -> RunID { try! RunID(raw) }
    static func identity(_ raw: String) -> IdentityName { try! IdentityName(raw) }
    static func environment(_ raw: String) -> EnvironmentName { try! EnvironmentName(raw) }
    static func project(_ raw: String) -> ProjectName { try! ProjectName(raw) }
    static func object(_ character: Character) -> GitObjectID { try! GitObjectID(String(repeating: character, count: 40)) }
    static func version(_ raw: String) -> SemanticVersion { try! SemanticVersion(raw) }

    static let alice = identity("alice")
    static let bob = identity("bob")
    static let carol = identity("carol")
    static let knownIdentities: Set<IdentityName> = [alice, bob, carol]

    /// Tokens as a client holds them; the server only ever sees their hashes. Each is
    /// distinctive so a test can search every byte of output for it.
    static let aliceToken = "alice-token-7f3a9c2e41d8b6"
    static let bobToken = "bob-token-52e1f0aa9c7d43"
    static let carolToken = "carol-token-0c9b8a7d6e5f41"
    /// Issued to nobody: the server answers 401.
    static let strangerToken = "stranger-token-99aa88bb77cc"
    static let allTokens = [aliceToken, bobToken, carolToken, strangerToken]

    static var credentials: [APICredential] {
        [(alice, aliceToken), (bob, bobToken), (carol, carolToken)].map {
            APICredential(identity: $0.0, tokenSHA256: Digest.sha256(of: $0.1.utf8))
        }
    }

    /// dev, staging: anyone of the three, one approval. prod: alice and bob only, two approvals.
    static let policies: [String: ApprovalPolicy] = [
        "dev": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol], taggerMayApprove: true,
                                   approvalLifetime: 86_400),
        "staging": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol],
                                       taggerMayApprove: false, approvalLifetime: 86_400),
        "prod": try! ApprovalPolicy(requiredApprovals: 2, allowedIdentities: [alice, bob], taggerMayApprove: false,
                                    approvalLifetime: 86_400),
    ]

    static let app = project("app")
    static let net = project("net")
    static let v1_0_0 = version("1.0.0")
    static let v1_1_0 = version("1.1.0")
    static let v1_2_0 = version("1.2.0")
    static let v2_0_0 = version("2.0.0")
    static let planDigest = Digest.sha256(of: "the plan file".utf8)
    static let otherDigest = Digest.sha256(of: "another plan file".utf8)

    static let appDev = APITarget(
        project: app, environment: environment("dev"),
        desired: APIRevision(version: v1_2_0, tag: "dev/v1.2.0", commit: object("b")),
        applied: APIRevision(version: v1_1_0, tag: "dev/v1.1.0", commit: object("a")),
        pending: APIPendingRevision(runID: id("run-dev-1"), state: .awaitingApproval, version: v1_2_0, tag: "dev/v1.2.0",
                                    commit: object("b")),
        pin: nil, alerts: 0)
    static let netDev = APITarget(
        project: net, environment: environment("dev"),
        desired: APIRevision(version: v2_0_0, tag: "net/dev/v2.0.0", commit: object("c")),
        applied: APIRevision(version: v2_0_0, tag: "net/dev/v2.0.0", commit: object("c")),
        pending: nil, pin: nil, alerts: 0)
    /// The apply of run-stg-0 was cut off: the target is blocked until someone resolves it.
    static let appStaging = APITarget(
        project: app, environment: environment("staging"),
        desired: APIRevision(version: v1_1_0, tag: "staging/v1.1.0", commit: object("a")),
        applied: APIRevision(version: v1_0_0, tag: "staging/v1.0.0", commit: object("9")),
        pending: APIPendingRevision(runID: id("run-stg-0"), state: .interrupted, version: v1_1_0, tag: "staging/v1.1.0",
                                    commit: object("a")),
        pin: nil, alerts: 1)
    static let appProd = APITarget(
        project: app, environment: environment("prod"),
        desired: APIRevision(version: v1_1_0, tag: "prod/v1.1.0", commit: object("a")),
        applied: nil,
        pending: APIPendingRevision(runID: id("run-prod-1"), state: .awaitingApproval, version: v1_1_0,
                                    tag: "prod/v1.1.0", commit: object("a")),
        pin: APIPin(version: v1_1_0, ceiling: v1_2_0), alerts: 0)

    static let environments = [
        APIEnvironment(name: environment("dev"), promoteFrom: nil, requiredApprovals: 1, approvers: [alice, bob, carol],
                       served: true, targets: [appDev, netDev]),
        APIEnvironment(name: environment("staging"), promoteFrom: environment("dev"), requiredApprovals: 1,
                       approvers: [alice, bob, carol], served: true, targets: [appStaging]),
        APIEnvironment(name: environment("prod"), promoteFrom: environment("staging"), requiredApprovals: 2,
                       approvers: [alice, bob], served: true, targets: [appProd]),
    ]

    static func run(_ runID: String, environment env: String, state: RunState, version: SemanticVersion,
                    commit: Character) -> APIRunDetail {
        APIRunDetail(
            id: id(runID), project: app, environment: environment(env), tag: "\(env)/v\(version)", version: version,
            commit: object(commit), tree: object("e"), state: state, digest: planDigest, rollback: false,
            summary: APIPlanSummary(create: 1, update: 0, delete: 1, replace: 0, destroyedAddresses: ["null_resource.old"]),
            planRendering: "  # null_resource.old will be destroyed\n  - resource \"null_resource\" \"old\" {}\n",
            checks: [APICheck(name: "allowed_resource_types", passed: true, detail: nil)],
            approvals: [], requiredApprovals: env == "prod" ? 2 : 1,
            mayApprove: env == "prod" ? [alice, bob] : [alice, bob, carol], refusals: [],
            transitions: [APITransition(from: .checking, to: state, reason: .checksPassed, detail: nil,
                                        actor: "lockstep", time: now)],
            alerts: [], createdAt: now, updatedAt: now)
    }

    static let devRun = run("run-dev-1", environment: "dev", state: .awaitingApproval, version: v1_2_0, commit: "b")
    static let prodRun = run("run-prod-1", environment: "prod", state: .awaitingApproval, version: v1_1_0, commit: "a")
    static let interruptedRun: APIRunDetail = {
        var run = Fixture.run("run-stg-0", environment: "staging", state: .interrupted, version: v1_1_0, commit: "a")
        run.alerts = [APIAlert(code: .applyInterrupted,
                               message: "the daemon stopped while this run was applying", time: now)]
        return run
    }()
    static let verifiedRun = run("run-dev-0", environment: "dev", state: .verified, version: v1_1_0, commit: "a")

    /// Repo-derived text with terminal escapes: a title change, a carriage return that would
    /// overwrite the line, and a bidi override that reorders what the eye reads.
    static let hostileRendering = "  # null_resource.x will be created\n\u{1B}]0;owned\u{07}\u{1B}[2Jhidden\rfake digest\u{202E}gnp.exe\n"
    static let hostileRun: APIRunDetail = {
        var run = Fixture.run("run-dev-2", environment: "dev", state: .checking, version: v1_2_0, commit: "b")
        run.planRendering = hostileRendering
        run.checks = [APICheck(name: "policy", passed: false, detail: "bad\u{1B}[31m red\u{9B}31m")]
        return run
    }()

    static let runs = [devRun, prodRun, interruptedRun, verifiedRun, hostileRun]

    static func summary(_ detail: APIRunDetail) -> APIRunSummary {
        APIRunSummary(id: detail.id, project: detail.project, environment: detail.environment, tag: detail.tag,
                      version: detail.version, commit: detail.commit, state: detail.state, digest: detail.digest,
                      rollback: detail.rollback, createdAt: detail.createdAt, updatedAt: detail.updatedAt)
    }
}
