import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Logging
import Synchronization
import Testing

// MARK: - The HTTP tests' backend
//
// CannedBackend (APITestSupport) is a canned test backend: it does not plan, apply or
// store anything, and approvals are judged by the real core rules. These tests use it to
// show what the HTTP layer does with what a backend returns: authentication, validation,
// status codes, JSON.

extension CannedBackend {
    /// Two environments and three runs; an approval leaves the run's state as it was, so
    /// these tests see exactly what the backend answered.
    init() {
        self.init(environments: Fixture.environments, runs: [Fixture.devRun, Fixture.prodRun, Fixture.interruptedRun])
    }
}

/// A backend failure whose text must never reach a client.
struct BackendExploded: Error, CustomStringConvertible {
    var description: String { "SQLITE_FULL: database or disk is full at /var/lib/lockstep/store.sqlite" }
}

// MARK: - Canned values of the HTTP tests (the shared ones are in APITestSupport)

extension Fixture {
    static let prodTarget = appProdTarget(alerts: 1)

    static let environments = [
        APIEnvironment(name: environment("dev"), promoteFrom: nil, requiredApprovals: 1, approvers: [alice, bob, carol],
                       served: true, targets: [appDev]),
        APIEnvironment(name: environment("prod"), promoteFrom: environment("dev"), requiredApprovals: 2,
                       approvers: [alice, bob], served: true, targets: [prodTarget]),
    ]

    static let interruptedRun = run("run-dev-0", environment: "dev", state: .interrupted, version: v1_1_0, commit: "a")
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
    var webhooks: WebhookReceiver?
    var metrics: (@Sendable () async -> [UInt8])?
    var secureCookies = false
    let sessions = UISessions()

    func sessionsCount() -> Int { sessions.count }

    init(backend: CannedBackend = CannedBackend()) throws {
        self.backend = backend
        self.tokens = try APITokenTable(Fixture.credentials)
    }

    func server() -> APIServer {
        let refusals = refusals
        let readiness = readiness
        return APIServer(backend: backend, tokens: tokens, limits: limits,
                         readiness: { readiness.current }, onRefusal: { refusals.add($0) }, webhooks: webhooks,
                         metrics: metrics, sessions: sessions, secureCookies: secureCookies,
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
