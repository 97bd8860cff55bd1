import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Testing

/// `GET /api/v1/environments/{env}/tags` and the board's `problems`: authenticated like every
/// `/api/v1` route, input validated before the backend is asked.
@Suite("API: tag decisions and daemon problems")
struct TagRouteTests {
    @Test("GET /api/v1/environments/dev/tags returns the backend's decisions with their reasons; ?project= narrows them")
    func tagDecisions() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/environments/dev/tags", method: .get,
                                                    headers: bearer(Fixture.aliceToken))
            #expect(response.status == .ok)
            #expect(try decode(APITagDecisionList.self, response) == Fixture.devTagDecisions)
            let text = String(buffer: response.body)
            #expect(text.contains(#""tag_object":"#) && text.contains(#""code":"not_reachable_from_protected_branch""#))

            let narrowed = try await client.execute(uri: "/api/v1/environments/dev/tags?project=app", method: .get,
                                                    headers: bearer(Fixture.aliceToken))
            #expect(narrowed.status == .ok)
            let missing = try await client.execute(uri: "/api/v1/environments/dev/tags?project=net", method: .get,
                                                   headers: bearer(Fixture.aliceToken))
            try expectError(missing, .notFound, .notFound)
        }
        #expect(harness.backend.calls.all == ["tags dev project *", "tags dev project app", "tags dev project net"])
    }

    @Test("tags: no token is 401 and an unknown environment 404; a bad name, a bad project or an unknown query parameter is 400 and never reaches the backend")
    func tagDecisionsRefusals() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let anonymous = try await client.execute(uri: "/api/v1/environments/dev/tags", method: .get)
            try expectError(anonymous, .unauthorized, .unauthorized)
            for uri in ["/api/v1/environments/DEV%0A/tags", "/api/v1/environments/dev/tags?project=..%2Fx",
                        "/api/v1/environments/dev/tags?since=1", "/api/v1/environments/dev/tags?project=a&project=b"] {
                let response = try await client.execute(uri: uri, method: .get, headers: bearer(Fixture.aliceToken))
                try expectError(response, .badRequest, .badRequest)
            }
            #expect(harness.backend.calls.all.isEmpty)
            let unknown = try await client.execute(uri: "/api/v1/environments/qa/tags", method: .get,
                                                   headers: bearer(Fixture.aliceToken))
            let message = try expectError(unknown, .notFound, .notFound)
            #expect(message.contains("does not know environment qa"))
            let post = try await client.execute(uri: "/api/v1/environments/dev/tags", method: .post,
                                                headers: bearer(Fixture.aliceToken))
            try expectError(post, .methodNotAllowed, .methodNotAllowed)
        }
    }

    @Test("GET /api/v1/environments carries the backend's problems next to the environments")
    func problems() async throws {
        var backend = CannedBackend()
        backend.problemList = [APIProblem(code: .fetchFailed, message: "the last fetch failed: remote unreachable")]
        let expected = backend.problemList
        let harness = try Harness(backend: backend)
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/environments", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(response.status == .ok)
            let list = try decode(APIEnvironmentList.self, response)
            #expect(list.problems == expected)
            #expect(String(buffer: response.body).contains(#""problems":[{"code":"fetch_failed""#))
        }
    }

    @Test("a board from a daemon without `problems` decodes as no problems")
    func problemsMissing() throws {
        let list = try APIJSON.makeDecoder().decode(APIEnvironmentList.self, from: Data(#"{"environments":[]}"#.utf8))
        #expect(list.problems.isEmpty)
    }
}
