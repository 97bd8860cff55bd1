import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Logging
import Testing

/// Failed authentication is rate-limited and refusals are aggregated for the audit log
/// (threat: unauthenticated floods exhaust disk or descriptors).
@Suite("Refusals: per-address limit (429), aggregation for the audit log")
struct RefusalLimitTests {
    static func refusal(source: String?, status: Int = 401, failure: APIAuthenticationFailure.Code? = .unknownToken,
                        path: String = "/api/v1/runs") -> APIAccessRefusal {
        APIAccessRefusal(status: status, code: status == 429 ? .rateLimited : .unauthorized, authenticationFailure: failure,
                         identity: nil, method: "GET", path: path, remoteAddress: nil, remoteHost: source,
                         message: "the bearer token is not valid")
    }

    @Test("the limiter answers 401 up to the per-address limit, then 429 with the seconds left; other addresses are unaffected; a new window starts afresh")
    func perAddressLimit() {
        let start = ContinuousClock.now
        let limiter = FailedAuthenticationLimiter(policy: RefusalPolicy(window: .seconds(60), perSourceLimit: 3, globalLimit: 100),
                                                  now: start)
        let first = (0..<3).map { _ in limiter.recordFailure(source: "10.0.0.1", now: start) }
        #expect(first == [nil, nil, nil])
        #expect(limiter.recordFailure(source: "10.0.0.1", now: start + .seconds(15)) == 45)
        #expect(limiter.recordFailure(source: "10.0.0.2", now: start + .seconds(15)) == nil, "another address has its own count")
        #expect(limiter.recordFailure(source: "10.0.0.1", now: start + .seconds(61)) == nil, "a new window")
        #expect(limiter.totals == (failed: 6, throttled: 1))
    }

    @Test("the global limit throttles a flood spread over many addresses; addresses past the key limit share one count")
    func globalLimitAndKeyCap() {
        let start = ContinuousClock.now
        let limiter = FailedAuthenticationLimiter(
            policy: RefusalPolicy(window: .seconds(60), perSourceLimit: 1_000, globalLimit: 10, maximumKeys: 4), now: start)
        let answers = (0..<12).map { limiter.recordFailure(source: "10.0.0.\($0)", now: start) }
        #expect(answers.prefix(10).allSatisfy { $0 == nil })
        #expect(answers.suffix(2).allSatisfy { $0 != nil }, "past 10 failures in all, every failure is a 429")
    }

    @Test("the ledger audits the first refusal of a kind per address at once, counts the rest, and closes the window into one summary each")
    func ledgerAggregates() {
        let start = ContinuousClock.now
        let ledger = RefusalLedger(policy: RefusalPolicy(window: .seconds(60), samplesPerKey: 2), now: start)
        #expect(ledger.record(Self.refusal(source: "10.0.0.1"), now: start) == .auditNow)
        for _ in 0..<499 { #expect(ledger.record(Self.refusal(source: "10.0.0.1", status: 429), now: start) == .counted) }
        #expect(ledger.record(Self.refusal(source: "10.0.0.1", failure: .missingToken), now: start) == .auditNow,
                "another kind of refusal is audited on its own")
        #expect(ledger.record(Self.refusal(source: "10.0.0.2"), now: start) == .auditNow)
        #expect(ledger.takeSummaries(now: start + .seconds(30)).isEmpty, "the window is still open")

        let summaries = ledger.takeSummaries(now: start + .seconds(60))
        #expect(summaries.count == 1, "only the kind seen more than once gets a summary: \(summaries)")
        let summary = summaries[0]
        #expect(summary.count == 500 && summary.throttled == 499)
        #expect(summary.samples == ["GET /api/v1/runs 401", "GET /api/v1/runs 429"])
        #expect(summary.payload["event"] == "api_access_aggregated" && summary.payload["source"] == "10.0.0.1")
        #expect(summary.payload["count"] == "500")
        #expect(ledger.record(Self.refusal(source: "10.0.0.1"), now: start + .seconds(61)) == .auditNow,
                "a new window audits the first refusal again")
        #expect(ledger.takeSummaries(now: start + .seconds(62), closing: true).isEmpty)
        #expect(ledger.totals.refusals == 503)
    }

    @Test("a flood from many addresses cannot grow the number of summary rows past the key limit")
    func ledgerKeyCap() {
        let start = ContinuousClock.now
        let ledger = RefusalLedger(policy: RefusalPolicy(window: .seconds(60), maximumKeys: 8), now: start)
        var immediate = 0
        for round in 0..<3 {
            for host in 0..<1_000 where ledger.record(Self.refusal(source: "10.1.\(host / 250).\(host % 250)"), now: start + .milliseconds(round)) == .auditNow {
                immediate += 1
            }
        }
        let summaries = ledger.takeSummaries(now: start + .seconds(60))
        #expect(immediate == 9, "8 addresses and one shared bucket: \(immediate)")
        #expect(summaries.count == 9)
        #expect(summaries.reduce(0) { $0 + $1.count } == 3_000, "every refusal is counted")
        #expect(summaries.contains { $0.key.source == FailedAuthenticationLimiter.otherSources })
    }

    @Test("through the router: bad tokens past the limit get 429 with Retry-After; a valid token still gets 200; every refusal is reported")
    func routerThrottles() async throws {
        let harness = try Harness()
        let refusals = harness.refusals
        let server = APIServer(backend: harness.backend, tokens: harness.tokens, readiness: { harness.readiness.current },
                               onRefusal: { refusals.add($0) },
                               // A window far longer than the test, however slow the machine.
                               limiter: FailedAuthenticationLimiter(policy: RefusalPolicy(window: .seconds(3_600), perSourceLimit: 5)),
                               logger: Logger(label: "lockstep.http.test"))
        try await Application(router: server.buildRouter()).test(.router) { client in
            for _ in 0..<5 {
                let response = try await client.execute(uri: "/api/v1/runs", method: .get, headers: bearer("wrong-token"))
                try expectError(response, .unauthorized, .unauthorized)
            }
            let throttled = try await client.execute(uri: "/api/v1/runs", method: .get, headers: bearer("wrong-token"))
            let message = try expectError(throttled, .tooManyRequests, .rateLimited)
            #expect(message.contains("retry after"))
            #expect(Int(throttled.headers[.retryAfter] ?? "") ?? 0 >= 1)
            let valid = try await client.execute(uri: "/api/v1/runs", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(valid.status == .ok, "a valid token is never throttled")
        }
        #expect(refusals.all.map(\.status) == [401, 401, 401, 401, 401, 429])
        #expect(refusals.all.last?.code == .rateLimited)
    }

    @Test("past the connection cap only a health check's request line is let through")
    func healthCheckLines() {
        #expect(ConnectionGuard.admitsPastCap(requestLine: "GET /healthz HTTP/1.1\r"))
        #expect(ConnectionGuard.admitsPastCap(requestLine: "GET /readyz?verbose HTTP/1.1\r"))
        #expect(!ConnectionGuard.admitsPastCap(requestLine: "GET /healthzz HTTP/1.1\r"))
        #expect(!ConnectionGuard.admitsPastCap(requestLine: "POST /healthz HTTP/1.1\r"))
        #expect(!ConnectionGuard.admitsPastCap(requestLine: "GET /api/v1/runs HTTP/1.1\r"))
    }
}
