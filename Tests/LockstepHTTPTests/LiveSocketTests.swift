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

final class PortBox: Sendable {
    private let value = Mutex<Int?>(nil)
    func set(_ port: Int?) { value.withLock { $0 = port } }
    var port: Int? { value.withLock { $0 } }
}

@Suite("API over a real socket")
struct LiveSocketTests {
    @Test("the application the daemon runs answers over TCP: auth, reads, an approval, refusals and limits")
    func liveServer() async throws {
        let harness = try Harness()
        // The same entry point the daemon uses; the test framework binds it to localhost:0.
        let listening = PortBox()
        // Timeouts far longer than the test: on a loaded machine this client's task can wait
        // long between requests, and the server would rightly close an idle connection.
        let connections = ConnectionGuard(limits: HTTPConnectionLimits(headerTimeout: .seconds(3_600), idleTimeout: .seconds(3_600),
                                                                       requestReadTimeout: .seconds(3_600)),
                                          logger: Logger(label: "lockstep.http.test"))
        let application = harness.server().makeApplication(address: .hostname("127.0.0.1", port: 8420), connections: connections,
                                                           onListening: { listening.set($0) })
        try await application.test(.live) { client in
            #expect(listening.port != nil && listening.port == client.port, "onListening reports the bound port")
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)

            let noToken = try await client.execute(uri: "/api/v1/targets", method: .get)
            try expectError(noToken, .unauthorized, .unauthorized)

            let targets = try await client.execute(uri: "/api/v1/targets", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(targets.status == .ok)
            #expect(try decode(APITargetList.self, targets).targets.count == 2)

            let forbidden = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.carolToken),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            try expectError(forbidden, .forbidden, .refused(.identityNotAllowed))

            let approved = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.bobToken),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            #expect(approved.status == .ok)
            #expect(try decode(APIRunDetail.self, approved).approvals.map(\.identity) == [Fixture.bob])

            let oversized = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/reject", method: .post, headers: bearer(Fixture.bobToken),
                body: json(#"{"reason":""# + String(repeating: "x", count: 70_000) + #""}"#))
            try expectError(oversized, .contentTooLarge, .payloadTooLarge)

            let malformed = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/reject", method: .post, headers: bearer(Fixture.bobToken), body: json("{reason"))
            try expectError(malformed, .badRequest, .badRequest)

            try expectError(try await client.execute(uri: "/nowhere", method: .get), .notFound, .notFound)
        }
        #expect(harness.backend.calls.mutations == ["accepted approve run-prod-1 by bob"])
        let refusals = harness.refusals.all
        #expect(refusals.map(\.status) == [401, 403])
        // Over a socket the peer's address is known and reported for the audit.
        #expect(refusals.allSatisfy { $0.remoteAddress?.contains("127.0.0.1") == true || $0.remoteAddress?.contains("::1") == true },
                "\(refusals.map(\.remoteAddress))")
    }
}
