import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Testing

@Suite("API request bodies: malformed, mistyped, unknown, missing and oversized bodies are refused and change nothing")
struct BodyTests {
    static let digest = Fixture.planDigest.rawValue

    @Test("a bad approve body is a 400 that names the problem, and the gate is never called",
          arguments: [
              ("", "empty"),
              ("{", "not valid JSON"),
              ("{\"digest\": \"\(digest)\"} trailing", "not valid JSON"),
              ("[\"\(digest)\"]", "must be a JSON object"),
              ("\"\(digest)\"", "must be a JSON object"),
              ("{}", "missing field \"digest\""),
              ("{\"digest\": 42}", "field \"digest\" must be a string"),
              ("{\"digest\": null}", "field \"digest\" must be a string, not null"),
              ("{\"digest\": \"abc\"}", "digest: digest \"abc\" is not 64 hexadecimal characters"),
              ("{\"digest\": \"\(digest)\", \"identity\": \"alice\"}", "unknown field \"identity\""),
              ("{\"diguest\": \"\(digest)\"}", "unknown field \"diguest\""),
          ])
    func badApproveBody(body: String, expected: String) async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/runs/run-dev-1/approve", method: .post,
                                                    headers: bearer(Fixture.bobToken), body: json(body))
            let message = try expectError(response, .badRequest, .badRequest)
            #expect(message.contains(expected), "\(message)")
        }
        #expect(harness.backend.calls.all.isEmpty, "nothing reached the gate")
    }

    @Test("a client cannot approve as someone else: an identity field is refused, not honoured")
    func identityFieldRefused() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            // carol may not approve prod; naming alice in the body must not help.
            let response = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.carolToken),
                body: json(#"{"digest":"\#(BodyTests.digest)","identity":"alice"}"#))
            try expectError(response, .badRequest, .badRequest)
        }
        #expect(harness.backend.calls.mutations.isEmpty)
    }

    @Test("bad reject, resolve and rollback bodies name the field",
          arguments: [
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": \"\"}", "\"reason\" is empty"),
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": \"   \"}", "\"reason\" is empty"),
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": \"ok\\nREADY=1\"}", "\"reason\" contains control characters"),
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": \"\\u001b[31mred\"}", "\"reason\" contains control characters"),
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": \"\(String(repeating: "x", count: 1025))\"}", "longer than 1024 bytes"),
              ("/api/v1/runs/run-dev-1/reject", "{\"reason\": [\"x\"]}", "field \"reason\" must be a string"),
              ("/api/v1/runs/run-dev-0/resolve", "{\"as\": \"applied\"}", "missing field \"reason\""),
              ("/api/v1/runs/run-dev-0/resolve", "{\"as\": true, \"reason\": \"x\"}", "field \"as\" must be a string"),
              ("/api/v1/rollback", "{\"version\": \"1.1.0\"}", "missing field \"environment\""),
              ("/api/v1/rollback", "{\"environment\": \"dev\"}", "missing field \"version\""),
              ("/api/v1/rollback", "{\"environment\": \"dev\", \"version\": \"1.1\"}", "version:"),
              ("/api/v1/rollback", "{\"environment\": \"dev/../prod\", \"version\": \"1.1.0\"}", "environment:"),
              ("/api/v1/rollback", "{\"environment\": \"dev\", \"project\": \"a b\", \"version\": \"1.1.0\"}", "project:"),
              ("/api/v1/rollback", "{\"environment\": \"dev\", \"version\": \"1.1.0\", \"to\": \"1.0.0\"}", "unknown field \"to\""),
          ])
    func badOtherBodies(path: String, body: String, expected: String) async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: path, method: .post, headers: bearer(Fixture.aliceToken), body: json(body))
            let message = try expectError(response, .badRequest, .badRequest)
            #expect(message.contains(expected), "\(message)")
        }
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("a body over 64 KiB is a 413 payload_too_large and never parsed; exactly 64 KiB is read")
    func oversizedBody() async throws {
        let harness = try Harness()
        let limit = APILimits().maximumBodyBytes
        // Valid JSON padded with spaces: only the size is wrong.
        let valid = #"{"digest":"\#(BodyTests.digest)"}"#
        let atLimit = valid + String(repeating: " ", count: limit - valid.utf8.count)
        let overLimit = atLimit + " "
        try await harness.application().test(.router) { client in
            let over = try await client.execute(uri: "/api/v1/runs/run-dev-1/approve", method: .post,
                                                headers: bearer(Fixture.bobToken), body: json(overLimit))
            let message = try expectError(over, .contentTooLarge, .payloadTooLarge)
            #expect(message.contains("\(limit) bytes"))

            let at = try await client.execute(uri: "/api/v1/runs/run-dev-1/approve", method: .post,
                                              headers: bearer(Fixture.bobToken), body: json(atLimit))
            #expect(at.status == .ok)
        }
        #expect(harness.backend.calls.mutations == ["accepted approve run-dev-1 by bob"])
    }

    @Test("a declared Content-Length over the limit is refused before the body is read")
    func declaredLengthTooLarge() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            // The router test client keeps a declared length only when it sends no body itself:
            // the layer must refuse on the header alone, without reading anything.
            var headers = bearer(Fixture.bobToken)
            headers[.contentLength] = "10000000"
            let response = try await client.execute(uri: "/api/v1/runs/run-dev-1/reject", method: .post,
                                                    headers: headers)
            try expectError(response, .contentTooLarge, .payloadTooLarge)
        }
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("authentication comes before the body: an unauthenticated oversized body is a 401")
    func authBeforeBody() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/runs/run-dev-1/approve", method: .post,
                                                    body: json(String(repeating: "x", count: 100_000)))
            try expectError(response, .unauthorized, .unauthorized)
        }
    }
}
