import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Logging
import Synchronization
import Testing

// MARK: - Test backend for the HTTP layer
//
// THIS IS A TEST BACKEND FOR THE HTTP LAYER ONLY. It is a plain struct holding canned
// LockstepCore values so these tests can show what the HTTP layer does with what a
// backend returns: authentication, validation, status codes, JSON. It does not plan,
// apply or store anything. Approvals are judged by the real core rules
// (ApprovalRules.decide) so refusals carry real core codes. End-to-end tests through
// the real gate and store come when the daemon wires the gate behind APIBackend.

/// Every call the HTTP layer made, in order, as one readable line each.
final class CallLog: Sendable {
    private let lines = Mutex<[String]>([])
    func record(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
    /// Calls that would change something (approve, reject, rollback, resolve) and were accepted.
    var mutations: [String] { all.filter { $0.hasPrefix("accepted ") } }
}

struct CannedBackend: APIBackend {
    let calls = CallLog()
    var environmentList: [APIEnvironment] = Fixture.environments
    var runDetails: [APIRunDetail] = [Fixture.devRun, Fixture.prodRun, Fixture.interruptedRun]
    /// When set, every call throws this (a backend failure, such as the store being down).
    var failure: (any Error & Sendable)?

    func environments() async throws -> [APIEnvironment] {
        calls.record("environments")
        if let failure { throw failure }
        return environmentList
    }

    func runs(_ filter: APIRunFilter) async throws -> [APIRunSummary] {
        let states = filter.states.map { $0.map(\.rawValue).sorted().joined(separator: ",") } ?? "*"
        calls.record("runs target=\(filter.target?.description ?? "*") states=\(states) limit=\(filter.limit)")
        if let failure { throw failure }
        return runDetails
            .filter { filter.target == nil || $0.target == filter.target }
            .filter { filter.states?.contains($0.state) ?? true }
            .prefix(filter.limit)
            .map(Fixture.summary)
    }

    func run(_ id: RunID) async throws -> APIRunDetail? {
        calls.record("run \(id)")
        if let failure { throw failure }
        return runDetails.first { $0.id == id }
    }

    func approve(_ run: RunID, identity: IdentityName, digest: Digest) async throws -> APIOutcome<APIRunDetail> {
        calls.record("approve \(run) by \(identity) digest \(digest)")
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
            return .ok(detail)
        }
    }

    func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail> {
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

    func rollback(_ request: APIRollbackRequest, identity: IdentityName) async throws -> APIOutcome<APIRollbackResult> {
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
        return .ok(APIRollbackResult(runs: [run]))
    }

    func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
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

/// A backend failure whose text must never reach a client.
struct BackendExploded: Error, CustomStringConvertible {
    var description: String { "SQLITE_FULL: database or disk is full at /var/lib/lockstep/store.sqlite" }
}

// MARK: - Canned values

enum Fixture {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func id(_ raw: String) -> RunID { try! RunID(raw) }
    static func identity(_ raw: String) -> IdentityName { try! IdentityName(raw) }
    static func environment(_ raw: String) -> EnvironmentName { try! EnvironmentName(raw) }
    static func object(_ character: Character) -> GitObjectID { try! GitObjectID(String(repeating: character, count: 40)) }
    static func version(_ raw: String) -> SemanticVersion { try! SemanticVersion(raw) }

    static let alice = identity("alice")
    static let bob = identity("bob")
    static let carol = identity("carol")
    static let knownIdentities: Set<IdentityName> = [alice, bob, carol]

    /// Tokens as a client holds them; the server only ever sees their hashes.
    static let aliceToken = "alice-token-7f3a9c2e41d8b6"
    static let bobToken = "bob-token-52e1f0aa9c7d43"
    static let carolToken = "carol-token-0c9b8a7d6e5f41"

    static var credentials: [APICredential] {
        [(alice, aliceToken), (bob, bobToken), (carol, carolToken)].map {
            APICredential(identity: $0.0, tokenSHA256: Digest.sha256(of: $0.1.utf8))
        }
    }

    /// dev: anyone of the three, one approval. prod: alice and bob only, two approvals.
    static let policies: [String: ApprovalPolicy] = [
        "dev": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol], taggerMayApprove: true,
                                   approvalLifetime: 86_400),
        "staging": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol],
                                       taggerMayApprove: false, approvalLifetime: 86_400),
        "prod": try! ApprovalPolicy(requiredApprovals: 2, allowedIdentities: [alice, bob], taggerMayApprove: false,
                                    approvalLifetime: 86_400),
    ]

    static let app = try! ProjectName("app")
    static let v1_1_0 = version("1.1.0")
    static let v1_2_0 = version("1.2.0")
    static let planDigest = Digest.sha256(of: "the plan file".utf8)
    static let otherDigest = Digest.sha256(of: "another plan file".utf8)

    static let devTarget = APITarget(
        project: app, environment: environment("dev"),
        desired: APIRevision(version: v1_2_0, tag: "dev/v1.2.0", commit: object("b")),
        applied: APIRevision(version: v1_1_0, tag: "dev/v1.1.0", commit: object("a")),
        pending: APIPendingRevision(runID: id("run-dev-1"), state: .awaitingApproval, version: v1_2_0, tag: "dev/v1.2.0",
                                    commit: object("b")),
        pin: nil, alerts: 0)
    static let prodTarget = APITarget(
        project: app, environment: environment("prod"),
        desired: APIRevision(version: v1_1_0, tag: "prod/v1.1.0", commit: object("a")),
        applied: nil,
        pending: APIPendingRevision(runID: id("run-prod-1"), state: .awaitingApproval, version: v1_1_0,
                                    tag: "prod/v1.1.0", commit: object("a")),
        pin: APIPin(version: v1_1_0, ceiling: v1_2_0), alerts: 1)

    static let environments = [
        APIEnvironment(name: environment("dev"), promoteFrom: nil, requiredApprovals: 1, approvers: [alice, bob, carol],
                       served: true, targets: [devTarget]),
        APIEnvironment(name: environment("prod"), promoteFrom: environment("dev"), requiredApprovals: 2,
                       approvers: [alice, bob], served: true, targets: [prodTarget]),
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
    static let interruptedRun = run("run-dev-0", environment: "dev", state: .interrupted, version: v1_1_0, commit: "a")

    static func summary(_ detail: APIRunDetail) -> APIRunSummary {
        APIRunSummary(id: detail.id, project: detail.project, environment: detail.environment, tag: detail.tag,
                      version: detail.version, commit: detail.commit, state: detail.state, digest: detail.digest,
                      rollback: detail.rollback, createdAt: detail.createdAt, updatedAt: detail.updatedAt)
    }
}

// MARK: - Harness

/// Refusals the server reported, as the daemon's audit would receive them.
final class RefusalLog: Sendable {
    private let entries = Mutex<[APIAccessRefusal]>([])
    func add(_ refusal: APIAccessRefusal) { entries.withLock { $0.append(refusal) } }
    var all: [APIAccessRefusal] { entries.withLock { $0 } }
}

final class ReadinessFlag: Sendable {
    private let value = Mutex(APIReadiness(ready: false, status: "opening the store"))
    func set(_ readiness: APIReadiness) { value.withLock { $0 = readiness } }
    var current: APIReadiness { value.withLock { $0 } }
}

struct Harness {
    var backend = CannedBackend()
    let tokens: APITokenTable
    let refusals = RefusalLog()
    let readiness = ReadinessFlag()
    var limits = APILimits()

    init(backend: CannedBackend = CannedBackend()) throws {
        self.backend = backend
        self.tokens = try APITokenTable(Fixture.credentials)
    }

    func server() -> APIServer {
        let refusals = refusals
        let readiness = readiness
        return APIServer(backend: backend, tokens: tokens, limits: limits,
                         readiness: { readiness.current }, onRefusal: { refusals.add($0) },
                         logger: Logger(label: "lockstep.http.test"))
    }

    /// The router alone, for `.router` tests.
    func application() -> some ApplicationProtocol {
        Application(router: server().buildRouter())
    }
}

func bearer(_ token: String) -> HTTPFields {
    [.authorization: "Bearer \(token)"]
}

func json(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
    try APIJSON.makeDecoder().decode(T.self, from: Data(response.body.readableBytesView))
}

/// Checks an error response: status, `error.code`, JSON content type; returns the message.
@discardableResult
func expectError(_ response: TestResponse, _ status: HTTPResponse.Status, _ code: APIErrorCode,
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    #expect(response.status == status, "body: \(String(buffer: response.body))", sourceLocation: sourceLocation)
    #expect(response.headers[.contentType] == "application/json; charset=utf-8", sourceLocation: sourceLocation)
    let body = try decode(APIErrorBody.self, response)
    #expect(body.error.code == code, sourceLocation: sourceLocation)
    return body.error.message
}
