import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Testing

@Suite("API authentication: bearer tokens, revocation, refusals reported")
struct AuthenticationTests {
    @Test("ConstantTime.equal: equal only for identical bytes, whatever position or length differs")
    func constantTimeEqual() {
        let hash = Array(Digest.sha256(of: "token".utf8).rawValue.utf8)
        #expect(ConstantTime.equal(hash, hash))
        #expect(ConstantTime.equal([], []))
        // One byte changed at every position, first to last: all unequal.
        for index in hash.indices {
            var changed = hash
            changed[index] ^= 0x01
            #expect(!ConstantTime.equal(hash, changed), "differs at \(index)")
        }
        // A prefix, an extension and an empty input are not equal to the whole.
        #expect(!ConstantTime.equal(hash, Array(hash.dropLast())))
        #expect(!ConstantTime.equal(Array(hash.dropLast()), hash))
        #expect(!ConstantTime.equal(hash, hash + [0]))
        #expect(!ConstantTime.equal(hash, []))
        // Padding with zero bytes must not make a shorter input equal.
        #expect(!ConstantTime.equal([0x61], [0x61, 0x00]))
    }

    @Test("the token table maps a token to its identity by SHA-256 and knows nothing else")
    func tokenTable() throws {
        let table = try APITokenTable(Fixture.credentials)
        #expect(table.identity(forToken: Fixture.aliceToken) == Fixture.alice)
        #expect(table.identity(forToken: Fixture.carolToken) == Fixture.carol)
        #expect(table.identity(forToken: "alice-token-7f3a9c2e41d8b7") == nil)
        // The configured hash itself is not a token: knowing the config does not let you in.
        #expect(table.identity(forToken: Digest.sha256(of: Fixture.aliceToken.utf8).rawValue) == nil)
        #expect(table.identity(forToken: "") == nil)
    }

    @Test("two identities with one token hash are refused: one token would count as two approvers")
    func duplicateTokenRefused() throws {
        let hash = Digest.sha256(of: "shared".utf8)
        let error = #expect(throws: APICredentialError.self) {
            try APITokenTable([APICredential(identity: Fixture.alice, tokenSHA256: hash),
                               APICredential(identity: Fixture.bob, tokenSHA256: hash)])
        }
        #expect(error?.code == .duplicateToken)
        // Replacing with an invalid list keeps the old one working.
        let table = try APITokenTable(Fixture.credentials)
        #expect(throws: APICredentialError.self) {
            try table.replace(with: [APICredential(identity: Fixture.alice, tokenSHA256: hash),
                                     APICredential(identity: Fixture.bob, tokenSHA256: hash)])
        }
        #expect(table.identity(forToken: Fixture.bobToken) == Fixture.bob)
    }

    @Test("no Authorization header: 401 JSON, WWW-Authenticate, refusal reported without identity, backend untouched")
    func missingToken() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/environments", method: .get)
            try expectError(response, .unauthorized, .unauthorized)
            #expect(response.headers[.wwwAuthenticate] == "Bearer realm=\"lockstep\"")
        }
        let refusals = harness.refusals.all
        #expect(refusals.count == 1)
        #expect(refusals.first?.status == 401)
        #expect(refusals.first?.authenticationFailure == .missingToken)
        #expect(refusals.first?.identity == nil)
        #expect(refusals.first?.path == "/api/v1/environments")
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("a wrong token: 401, reported as unknown_token, and the token appears in neither response nor report")
    func wrongToken() async throws {
        let harness = try Harness()
        let guess = "alice-token-guessed-00000"
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/approve", method: .post, headers: bearer(guess),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            let message = try expectError(response, .unauthorized, .unauthorized)
            #expect(!String(buffer: response.body).contains(guess))
            #expect(!message.contains(guess))
        }
        let refusal = try #require(harness.refusals.all.first)
        #expect(refusal.authenticationFailure == .unknownToken)
        #expect(refusal.code == .unauthorized)
        #expect(!"\(refusal)".contains(guess))
        #expect(harness.backend.calls.all.isEmpty, "nothing reached the gate")
    }

    @Test("malformed Authorization headers are 401 malformed_authorization",
          arguments: [
              ["Basic YWxpY2U6c2VjcmV0"],
              ["Bearer"],
              ["Bearer    "],
              ["Bearer alice token with spaces"],
              ["Bearer \(Fixture.aliceToken);x"],
              ["Bearer \"\(Fixture.aliceToken)\""],
              ["Bearer \(Fixture.aliceToken)", "Bearer \(Fixture.bobToken)"],
              ["Bearer " + String(repeating: "a", count: 5000)],
          ])
    func malformedAuthorization(values: [String]) async throws {
        let harness = try Harness()
        var headers = HTTPFields()
        for value in values { headers.append(HTTPField(name: .authorization, value: value)) }
        let sent = headers
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/targets", method: .get, headers: sent)
            try expectError(response, .unauthorized, .unauthorized)
        }
        let refusal = try #require(harness.refusals.all.first)
        #expect(refusal.authenticationFailure == .malformedAuthorization || refusal.authenticationFailure == .missingToken)
        #expect(harness.backend.calls.all.isEmpty)
    }

    @Test("the Bearer scheme is case-insensitive (RFC 6750) and the identity comes from the token")
    func schemeCaseInsensitive() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/approve", method: .post,
                headers: [.authorization: "bearer \(Fixture.bobToken)"],
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            #expect(response.status == .ok)
        }
        #expect(harness.backend.calls.mutations == ["accepted approve run-dev-1 by bob"])
    }

    @Test("a revoked identity (removed from config) is refused on its next request; nothing reaches the gate")
    func revokedToken() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let before = try await client.execute(uri: "/api/v1/targets", method: .get, headers: bearer(Fixture.carolToken))
            #expect(before.status == .ok)

            // Config reload without carol.
            try harness.tokens.replace(with: Fixture.credentials.filter { $0.identity != Fixture.carol })

            let after = try await client.execute(
                uri: "/api/v1/runs/run-dev-1/approve", method: .post, headers: bearer(Fixture.carolToken),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            try expectError(after, .unauthorized, .unauthorized)
            // Others keep working.
            let alice = try await client.execute(uri: "/api/v1/targets", method: .get, headers: bearer(Fixture.aliceToken))
            #expect(alice.status == .ok)
        }
        #expect(harness.backend.calls.all == ["environments", "environments"], "carol's approval never reached the gate")
        #expect(harness.refusals.all.map(\.authenticationFailure) == [.unknownToken])
    }

    @Test("an identity approving an environment it may not: 403 refused_identity_not_allowed, reported with the identity, nothing recorded")
    func identityNotAllowed() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            // carol may approve dev but not prod.
            let response = try await client.execute(
                uri: "/api/v1/runs/run-prod-1/approve", method: .post, headers: bearer(Fixture.carolToken),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            let message = try expectError(response, .forbidden, .refused(.identityNotAllowed))
            #expect(message.contains("carol may not approve"))
        }
        #expect(harness.backend.calls.mutations.isEmpty, "no approval was recorded")
        let refusal = try #require(harness.refusals.all.first)
        #expect(refusal.status == 403)
        #expect(refusal.identity == Fixture.carol)
        #expect(refusal.code == .refused(.identityNotAllowed))
        #expect(refusal.authenticationFailure == nil)
    }

    @Test("the tagger approving their own release is a 403 too (core rule, mapped by the layer)")
    func taggerSelfApproval() async throws {
        var backend = CannedBackend()
        // staging allows carol, but carol cut the tag and staging forbids self-approval.
        backend.runDetails = [Fixture.run("run-x", environment: "staging", state: .awaitingApproval,
                                          version: Fixture.v1_2_0, commit: "c")]
        let harness = try Harness(backend: backend)
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/runs/run-x/approve", method: .post, headers: bearer(Fixture.carolToken),
                body: json(#"{"digest":"\#(Fixture.planDigest)"}"#))
            try expectError(response, .forbidden, .refused(.taggerSelfApproval))
        }
        #expect(harness.backend.calls.mutations.isEmpty)
        #expect(harness.refusals.all.map(\.identity) == [Fixture.carol])
    }

    @Test("/healthz and /readyz need no token; /api/v1 always does")
    func healthNeedsNoToken() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
            try expectError(try await client.execute(uri: "/api/v1/runs/run-dev-1", method: .get), .unauthorized, .unauthorized)
        }
        #expect(harness.refusals.all.count == 1)
    }
}
