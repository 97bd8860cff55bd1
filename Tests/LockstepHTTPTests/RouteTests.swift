import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
@testable import LockstepHTTP
import Testing

@Suite("API routes: every route's happy path, filters, not found, wrong method, backend failure")
struct RouteTests {
    @Test("GET /api/v1/environments lists environments in order with their targets")
    func environments() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/environments", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(response.status == .ok)
            #expect(response.headers[.cacheControl] == "no-store")
            let list = try decode(APIEnvironmentList.self, response)
            #expect(list == APIEnvironmentList(environments: Fixture.environments))
        }
    }

    @Test("GET /api/v1/targets lists every target with desired, applied, pending, pin and alerts")
    func targets() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/targets", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(response.status == .ok)
            let list = try decode(APITargetList.self, response)
            #expect(list.targets == [Fixture.appDev, Fixture.prodTarget])
            #expect(list.targets.last?.pin == APIPin(version: Fixture.v1_1_0, ceiling: Fixture.v1_2_0))
        }
    }

    @Test("GET /api/v1/runs passes target, states and limit to the backend")
    func runsFiltered() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let all = try await client.execute(uri: "/api/v1/runs", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(try decode(APIRunList.self, all).runs.count == 3)

            let filtered = try await client.execute(
                uri: "/api/v1/runs?target=app%2Fdev&state=interrupted&state=failed,awaiting_approval&limit=1",
                method: .get, headers: bearer(Fixture.aliceToken))
            #expect(filtered.status == .ok)
            let runs = try decode(APIRunList.self, filtered).runs
            #expect(runs.map(\.id) == [Fixture.id("run-dev-1")])
        }
        #expect(harness.backend.calls.all == [
            "runs target=* states=* limit=100",
            "runs target=app/dev states=awaiting_approval,failed,interrupted limit=1",
        ])
    }

    @Test("GET /api/v1/runs refuses a bad filter with 400 naming the parameter",
          arguments: [
              ("state=appplied", "state"),
              ("target=app", "target"),
              ("target=app/prod/x", "target"),
              ("target=app/..", "target"),
              ("target=app/dev&target=app/prod", "target"),
              ("limit=0", "limit"),
              ("limit=1001", "limit"),
              ("limit=ten", "limit"),
              ("project=app", "project"),
          ])
    func runsBadFilter(query: String, parameter: String) async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/runs?\(query)", method: .get, headers: bearer(Fixture.aliceToken))
            let message = try expectError(response, .badRequest, .badRequest)
            #expect(message.contains("\"\(parameter)\""), "\(message)")
        }
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("GET /api/v1/runs/{id} returns the detail a reviewer needs; an unknown run is 404; an invalid id is 400")
    func runDetail() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/runs/run-prod-1", method: .get, headers: bearer(Fixture.bobToken))
            #expect(response.status == .ok)
            let detail = try decode(APIRunDetail.self, response)
            #expect(detail == Fixture.prodRun)
            #expect(detail.digest == Fixture.planDigest)
            #expect(detail.mayApprove == [Fixture.alice, Fixture.bob])
            #expect(detail.requiredApprovals == 2)

            let missing = try await client.execute(uri: "/api/v1/runs/run-nope", method: .get, headers: bearer(Fixture.bobToken))
            try expectError(missing, .notFound, .notFound)

            let invalid = try await client.execute(uri: "/api/v1/runs/run%0Aid", method: .get, headers: bearer(Fixture.bobToken))
            let message = try expectError(invalid, .badRequest, .badRequest)
            #expect(message.hasPrefix("run id"))
        }
    }

    @Test("POST approve records the caller's approval and returns the run; a second identity completes prod")
    func approve() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"digest":"\#(Fixture.planDigest.rawValue.uppercased())"}"#))
            #expect(response.status == .ok)
            let detail = try decode(APIRunDetail.self, response)
            #expect(detail.approvals == [APIApproval(identity: Fixture.alice, digest: Fixture.planDigest, time: Fixture.now)])
            #expect(detail.mayApprove == [Fixture.bob])
        }
        #expect(harness.backend.calls.all.first == "approve run-prod-1 by alice digest \(Fixture.planDigest)")
        #expect(harness.backend.calls.mutations == ["accepted approve run-prod-1 by alice"])
        #expect(harness.refusals.all.isEmpty)
    }

    @Test("POST approve quoting another digest: 409 refused_wrong_digest, not reported as an access refusal")
    func approveWrongDigest() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"digest":"\#(Fixture.otherDigest)"}"#))
            try expectError(response, .conflict, .refused(.wrongDigest))
        }
        #expect(harness.backend.calls.mutations.isEmpty)
        #expect(harness.refusals.all.isEmpty)
    }

    @Test("POST reject rejects with the caller's identity and reason; too late is 409 refused_run_state_invalid")
    func reject() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/reject", method: .post, headers: bearer(Fixture.bobToken),
                body: json(#"{"reason":"  wrong variables for dev  "}"#))
            #expect(response.status == .ok)
            #expect(try decode(APIRunDetail.self, response).state == .rejected)

            let late = try await client.execute(
                uri: "/api/v1/runs/run-dev-0/reject", method: .post, headers: bearer(Fixture.bobToken),
                body: json(#"{"reason":"too late"}"#))
            try expectError(late, .conflict, .refused(.runStateInvalid))
        }
        #expect(harness.backend.calls.all.first == "reject run-dev-1 by bob reason wrong variables for dev")
        #expect(harness.backend.calls.mutations == ["accepted reject run-dev-1 by bob"])
    }

    @Test("POST rollback starts a rollback run (201); an unknown version is 409, an unknown environment 404")
    func rollback() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/rollback", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"environment":"dev","project":"app","version":"v1.1.0"}"#))
            #expect(response.status == .created)
            let result = try decode(APIRollbackResult.self, response)
            #expect(result.runs.map(\.rollback) == [true])
            #expect(result.runs.first?.version == Fixture.v1_1_0)

            let everyProject = try await client.execute(
                uri: "/api/v1/rollback", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"environment":"dev","project":null,"version":"1.1.0"}"#))
            #expect(everyProject.status == .created)

            let unknownVersion = try await client.execute(
                uri: "/api/v1/rollback", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"environment":"dev","version":"0.9.0"}"#))
            try expectError(unknownVersion, .conflict, .refused(.rollbackVersionNotAccepted))

            let unknownEnvironment = try await client.execute(
                uri: "/api/v1/rollback", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"environment":"qa","version":"1.1.0"}"#))
            try expectError(unknownEnvironment, .notFound, .notFound)
        }
        #expect(harness.backend.calls.all.prefix(2) == [
            "rollback dev project app to 1.1.0 by alice",
            "accepted rollback dev by alice",
        ])
        #expect(harness.backend.calls.all.contains("rollback dev project * to 1.1.0 by alice"))
    }

    @Test("POST resolve settles an interrupted run as applied or failed; a run that is not interrupted is 409")
    func resolve() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let applied = try await client.execute(
                uri: "/api/v1/runs/run-dev-0/resolve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"as":"applied","reason":"checked the console: the apply finished"}"#))
            #expect(applied.status == .ok)
            #expect(try decode(APIRunDetail.self, applied).state == .verifying)

            let failed = try await client.execute(
                uri: "/api/v1/runs/run-dev-0/resolve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"as":"failed","reason":"half applied; fixed by hand"}"#))
            #expect(try decode(APIRunDetail.self, failed).state == .failed)

            let notInterrupted = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/resolve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"as":"applied","reason":"x"}"#))
            try expectError(notInterrupted, .conflict, .refused(.runStateInvalid))

            let badAs = try await client.execute(
                uri: "/api/v1/runs/run-dev-0/resolve", method: .post, headers: bearer(Fixture.aliceToken),
                body: json(#"{"as":"verified","reason":"x"}"#))
            let message = try expectError(badAs, .badRequest, .badRequest)
            #expect(message.contains("\"as\""))
        }
        #expect(harness.backend.calls.mutations == ["accepted resolve run-dev-0 by alice", "accepted resolve run-dev-0 by alice"])
    }

    @Test("/readyz follows the daemon's readiness closure: 503 until ready, then 200")
    func readiness() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let starting = try await client.execute(uri: "/readyz", method: .get)
            #expect(starting.status == .serviceUnavailable)
            #expect(try decode(APIReadiness.self, starting) == APIReadiness(ready: false, status: "opening the store"))

            harness.readiness.set(APIReadiness(ready: true, status: "serving 2 targets"))
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            #expect(try decode(APIReadiness.self, ready).ready)

            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(String(buffer: health.body) == #"{"status":"ok"}"#)
        }
    }

    @Test("an unknown path is a JSON 404, inside and outside /api/v1")
    func unknownRoute() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            try expectError(try await client.execute(uri: "/nope", method: .get), .notFound, .notFound)
            try expectError(try await client.execute(uri: "/api/v1/nope", method: .get, headers: bearer(Fixture.aliceToken)),
                            .notFound, .notFound)
            try expectError(try await client.execute(uri: "/api/v2/runs", method: .get), .notFound, .notFound)
        }
    }

    @Test("a known path with the wrong method is a JSON 405 with Allow")
    func wrongMethod() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let delete = try await client.execute(uri: "/api/v1/runs/run-dev-1", method: .delete, headers: bearer(Fixture.aliceToken))
            try expectError(delete, .methodNotAllowed, .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET")

            let getApprove = try await client.execute(uri: "/api/v1/runs/run-dev-1/approve", method: .get,
                                                      headers: bearer(Fixture.aliceToken))
            try expectError(getApprove, .methodNotAllowed, .methodNotAllowed)
            #expect(getApprove.headers[.allow] == "POST")

            let postHealth = try await client.execute(uri: "/healthz", method: .post)
            #expect(postHealth.status == .methodNotAllowed)
        }
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("every route in the table answers its method (neither 404 nor 405), so the 405 table matches the router")
    func routeTableMatchesRouter() async throws {
        var harness = try Harness()
        // Every forge configured: an unconfigured one answers 404 by design.
        harness.webhooks = WebhookReceiver(secrets: Dictionary(uniqueKeysWithValues: WebhookForge.allCases.map { ($0, [Array("s".utf8)]) }),
                                           maximumBodyBytes: 1_024, trigger: {})
        harness.metrics = { Array("lockstep_up 1\n".utf8) }
        try await harness.application().test(.router) { client in
            for route in APIServer.routes {
                let uri = "/" + route.path.replacingOccurrences(of: ":id", with: "run-dev-0")
                let response = try await client.execute(uri: uri, method: route.method, headers: bearer(Fixture.aliceToken),
                                                        body: route.method == .post ? json("{}") : nil)
                #expect(response.status != .notFound && response.status != .methodNotAllowed, "\(route.method) \(uri)")
            }
        }
    }

    @Test("/metrics: the Prometheus text page without a token and never cached; 404 when it is served on its own address")
    func metricsPage() async throws {
        var harness = try Harness()
        harness.metrics = { Array("# TYPE lockstep_up gauge\nlockstep_up 1\n".utf8) }
        try await harness.application().test(.router) { client in
            let page = try await client.execute(uri: "/metrics", method: .get)
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(page.headers[.cacheControl] == "no-store")
            #expect(String(buffer: page.body) == "# TYPE lockstep_up gauge\nlockstep_up 1\n")
        }
        harness.metrics = nil
        try await harness.application().test(.router) { client in
            let page = try await client.execute(uri: "/metrics", method: .get)
            #expect(page.status == .notFound)
            #expect(String(buffer: page.body).contains("metrics_listen"))
        }
        #expect(harness.refusals.all.isEmpty, "no token is asked for, so none is refused")
    }

    @Test("a backend failure is a 500 `internal` with a fixed message: the error's text never reaches the client")
    func backendFailure() async throws {
        var backend = CannedBackend()
        backend.failure = BackendExploded()
        let harness = try Harness(backend: backend)
        try await harness.application().test(.router) { client in
            for (uri, method, body) in [("/api/v1/targets", HTTPRequest.Method.get, nil),
                                        ("/api/v1/runs/run-dev-1", .get, nil),
                                        ("/api/v1/runs/run-dev-1/approve", .post, json(#"{"digest":"\#(Fixture.planDigest)"}"#))] {
                let response = try await client.execute(uri: uri, method: method, headers: bearer(Fixture.aliceToken), body: body)
                try expectError(response, .internalServerError, .internal)
                let text = String(buffer: response.body)
                #expect(!text.contains("SQLITE"))
                #expect(!text.contains("/var/lib"))
            }
        }
    }
}
