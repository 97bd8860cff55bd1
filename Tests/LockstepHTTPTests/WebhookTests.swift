import APITestSupport
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepCore
import LockstepHTTP
import Synchronization
import Testing

/// How many fetches the webhook routes asked for.
final class TriggerCount: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// The secrets these tests configure: two for GitHub (a rotation in progress), one for each other forge.
enum Hooks {
    static let old = Array("github-secret-being-retired".utf8)
    static let new = Array("github-secret-rolled-in-today".utf8)
    static let gitlab = Array("gitlab-token-of-sixteen-plus".utf8)
    static let gitea = Array("gitea-secret-long-enough-1".utf8)
    static let generic = Array("generic-secret-long-enough".utf8)
    static let body = Array(#"{"ref":"refs/tags/prod/v9.9.9","after":"not trusted"}"#.utf8)

    static func signature(_ body: [UInt8], _ secret: [UInt8]) -> String {
        HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
    }

    static func harness(maximumBodyBytes: Int = 4_096) throws -> (Harness, TriggerCount) {
        var harness = try Harness()
        let triggers = TriggerCount()
        harness.webhooks = WebhookReceiver(secrets: [.github: [old, new], .gitlab: [gitlab], .gitea: [gitea], .generic: [generic]],
                                           maximumBodyBytes: maximumBodyBytes, trigger: { triggers.add() })
        return (harness, triggers)
    }

    static func github(_ body: [UInt8] = body, secret: [UInt8] = new, delivery: String = UUID().uuidString,
                       event: String = "push") -> HTTPFields {
        [HTTPField.Name("X-Hub-Signature-256")!: "sha256=" + signature(body, secret),
         HTTPField.Name("X-GitHub-Delivery")!: delivery, HTTPField.Name("X-GitHub-Event")!: event,
         .contentType: "application/json"]
    }
}

@Suite("Webhooks: authenticated over the exact body, de-duplicated, and only ever a request to fetch")
struct WebhookTests {
    func status(_ response: TestResponse) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: String])?["status"]
    }

    @Test("each forge's own proof is accepted with 202 and asks for one fetch")
    func eachForge() async throws {
        let (harness, triggers) = try Hooks.harness()
        let body = Hooks.body
        let deliveries: [(String, HTTPFields)] = [
            ("github", Hooks.github()),
            ("github", Hooks.github(secret: Hooks.old)),  // the secret being rotated out still works
            ("gitlab", [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Hooks.gitlab, as: UTF8.self),
                        HTTPField.Name("X-Gitlab-Event")!: "Tag Push Hook", HTTPField.Name("Idempotency-Key")!: "gl-1"]),
            ("gitea", [HTTPField.Name("X-Gitea-Signature")!: Hooks.signature(body, Hooks.gitea),
                       HTTPField.Name("X-Gitea-Delivery")!: "gt-1", HTTPField.Name("X-Gitea-Event")!: "create"]),
            ("gitea", [HTTPField.Name("X-Forgejo-Signature")!: Hooks.signature(body, Hooks.gitea),
                       HTTPField.Name("X-Forgejo-Delivery")!: "fj-1", HTTPField.Name("X-Forgejo-Event")!: "push"]),
            ("generic", [HTTPField.Name("X-Lockstep-Signature-256")!: "sha256=" + Hooks.signature(body, Hooks.generic),
                         HTTPField.Name("X-Lockstep-Delivery")!: "gen-1"]),
        ]
        try await harness.application().test(.router) { client in
            for (forge, headers) in deliveries {
                let response = try await client.execute(uri: "/webhooks/\(forge)", method: .post, headers: headers,
                                                        body: ByteBuffer(bytes: body))
                #expect(response.status == .accepted, "\(forge): \(String(buffer: response.body))")
                #expect(status(response) == "accepted", "\(forge)")
            }
        }
        #expect(triggers.value == deliveries.count)
        #expect(harness.webhooks?.counts.accepted == deliveries.count)
        #expect(harness.refusals.all.isEmpty)
        #expect(harness.backend.calls.all.isEmpty, "a webhook reaches the gate only through a fetch")
    }

    /// Headers of a forged GitHub delivery, by what is wrong with them.
    static func forgedHeaders(_ label: String) -> HTTPFields {
        let signature = HTTPField.Name("X-Hub-Signature-256")!
        var headers = Hooks.github()
        switch label {
        case "a wrong secret": headers = Hooks.github(secret: Array("guessed-secret-0000000".utf8))
        case "a body changed after signing": headers = Hooks.github(Array(#"{"ref":"refs/heads/main"}"#.utf8))
        case "no signature": headers[signature] = nil
        case "two signatures": headers.append(HTTPField(name: signature, value: "sha256=" + String(repeating: "0", count: 64)))
        case "the sha1 header GitHub also sends":
            let value = headers[signature]!
            headers[signature] = nil
            headers[HTTPField.Name("X-Hub-Signature")!] = value
        case "a truncated signature": headers[signature] = String(headers[signature]!.dropLast(2))
        case "a bearer token instead":
            headers[signature] = nil
            headers[.authorization] = "Bearer alice-token-for-tests"
        default: Issue.record("unknown forgery \(label)")
        }
        return headers
    }

    @Test("forged deliveries are 401, reported, never a fetch, and never echo what was presented",
          arguments: ["a wrong secret", "a body changed after signing", "no signature", "two signatures",
                      "the sha1 header GitHub also sends", "a truncated signature", "a bearer token instead"])
    func forged(_ label: String) async throws {
        let (harness, triggers) = try Hooks.harness()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(uri: "/webhooks/github", method: .post, headers: Self.forgedHeaders(label),
                                                    body: ByteBuffer(bytes: Hooks.body))
            try expectError(response, .unauthorized, .unauthorized)
            #expect(!String(buffer: response.body).contains("guessed"), "\(label)")
        }
        #expect(triggers.value == 0, "\(label)")
        let refusal = try #require(harness.refusals.all.first, "\(label)")
        #expect(refusal.authenticationFailure == .webhookSignature && refusal.path == "/webhooks/github")
        #expect(harness.webhooks?.counts.unauthorized == 1)
    }

    @Test("GitLab's token must match one secret exactly, and another forge's secret proves nothing")
    func crossForge() async throws {
        let (harness, triggers) = try Hooks.harness()
        let attempts: [(String, HTTPFields)] = [
            ("gitlab", [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Hooks.gitlab.dropLast(), as: UTF8.self),
                        HTTPField.Name("X-Gitlab-Event")!: "Push Hook"]),
            ("gitlab", [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Hooks.new, as: UTF8.self),
                        HTTPField.Name("X-Gitlab-Event")!: "Push Hook"]),
            ("gitea", [HTTPField.Name("X-Gitea-Signature")!: Hooks.signature(Hooks.body, Hooks.new),
                       HTTPField.Name("X-Gitea-Delivery")!: "gt-2", HTTPField.Name("X-Gitea-Event")!: "push"]),
            // Forgejo's own header is the one checked when present: a good Gitea one does not rescue a bad one.
            ("gitea", [HTTPField.Name("X-Forgejo-Signature")!: String(repeating: "a", count: 64),
                       HTTPField.Name("X-Gitea-Signature")!: Hooks.signature(Hooks.body, Hooks.gitea),
                       HTTPField.Name("X-Gitea-Delivery")!: "gt-3", HTTPField.Name("X-Gitea-Event")!: "push"]),
            ("generic", Hooks.github(secret: Hooks.generic)),
        ]
        try await harness.application().test(.router) { client in
            for (forge, headers) in attempts {
                let response = try await client.execute(uri: "/webhooks/\(forge)", method: .post, headers: headers,
                                                        body: ByteBuffer(bytes: Hooks.body))
                try expectError(response, .unauthorized, .unauthorized)
            }
        }
        #expect(triggers.value == 0)
        #expect(harness.refusals.all.count == attempts.count)
    }

    @Test("a redelivery is 202 duplicate and asks for nothing; an event that moves no ref is 202 ignored")
    func duplicatesAndEvents() async throws {
        let (harness, triggers) = try Hooks.harness()
        try await harness.application().test(.router) { client in
            let first = try await client.execute(uri: "/webhooks/github", method: .post, headers: Hooks.github(delivery: "d-1"),
                                                 body: ByteBuffer(bytes: Hooks.body))
            #expect(status(first) == "accepted")
            // Redelivered, even signed with the other secret.
            let again = try await client.execute(uri: "/webhooks/github", method: .post,
                                                 headers: Hooks.github(secret: Hooks.old, delivery: "d-1"),
                                                 body: ByteBuffer(bytes: Hooks.body))
            #expect(again.status == .accepted && status(again) == "duplicate")
            for event in ["ping", "issues", "pull_request", "star"] {
                let response = try await client.execute(uri: "/webhooks/github", method: .post,
                                                         headers: Hooks.github(event: event), body: ByteBuffer(bytes: Hooks.body))
                #expect(response.status == .accepted && status(response) == "ignored", "\(event)")
            }
            let gitlabMerge = try await client.execute(
                uri: "/webhooks/gitlab", method: .post,
                headers: [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Hooks.gitlab, as: UTF8.self),
                          HTTPField.Name("X-Gitlab-Event")!: "Merge Request Hook"],
                body: ByteBuffer(bytes: Hooks.body))
            #expect(status(gitlabMerge) == "ignored")
        }
        #expect(triggers.value == 1)
        #expect(harness.webhooks?.counts == WebhookReceiver.Counts(accepted: 1, duplicate: 1, ignored: 5))
    }

    @Test("an unsigned request cannot spend a delivery id: the real delivery that follows is still accepted")
    func forgedIDsAreNotRemembered() async throws {
        let (harness, triggers) = try Hooks.harness()
        try await harness.application().test(.router) { client in
            var forged = Hooks.github(delivery: "d-real")
            forged[HTTPField.Name("X-Hub-Signature-256")!] = "sha256=" + String(repeating: "f", count: 64)
            let refused = try await client.execute(uri: "/webhooks/github", method: .post, headers: forged,
                                                   body: ByteBuffer(bytes: Hooks.body))
            #expect(refused.status == .unauthorized)
            let real = try await client.execute(uri: "/webhooks/github", method: .post, headers: Hooks.github(delivery: "d-real"),
                                                body: ByteBuffer(bytes: Hooks.body))
            #expect(status(real) == "accepted")
        }
        #expect(triggers.value == 1)
    }

    @Test("a body over the limit is 413 before it is read, declared or not; a bad delivery id is 400; an unconfigured forge is 404")
    func limitsAndShapes() async throws {
        let (harness, triggers) = try Hooks.harness(maximumBodyBytes: 1_024)
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 4_096)
        try await harness.application().test(.router) { client in
            let declared = try await client.execute(uri: "/webhooks/github", method: .post, headers: Hooks.github(big),
                                                    body: ByteBuffer(bytes: big))
            try expectError(declared, .contentTooLarge, .payloadTooLarge)
            var missing = Hooks.github()
            missing[HTTPField.Name("X-GitHub-Delivery")!] = nil
            try expectError(try await client.execute(uri: "/webhooks/github", method: .post, headers: missing,
                                                     body: ByteBuffer(bytes: Hooks.body)), .badRequest, .badRequest)
            let control = try await client.execute(uri: "/webhooks/github", method: .post,
                                                   headers: Hooks.github(delivery: "id\twith tab"), body: ByteBuffer(bytes: Hooks.body))
            try expectError(control, .badRequest, .badRequest)
            let get = try await client.execute(uri: "/webhooks/github", method: .get)
            #expect(get.status == .methodNotAllowed)
        }
        var without = try Harness()
        without.webhooks = nil
        try await without.application().test(.router) { client in
            try expectError(try await client.execute(uri: "/webhooks/github", method: .post, headers: Hooks.github(),
                                                     body: ByteBuffer(bytes: Hooks.body)), .notFound, .notFound)
        }
        #expect(triggers.value == 0)
    }

    @Test("delivery ids are remembered per forge up to a bound: the oldest is forgotten first")
    func boundedMemory() async throws {
        var harness = try Harness()
        let triggers = TriggerCount()
        harness.webhooks = WebhookReceiver(secrets: [.github: [Hooks.new]], maximumBodyBytes: 4_096, rememberedDeliveries: 3,
                                           trigger: { triggers.add() })
        try await harness.application().test(.router) { client in
            for id in ["a", "b", "c", "d", "b", "a"] {
                _ = try await client.execute(uri: "/webhooks/github", method: .post, headers: Hooks.github(delivery: id),
                                             body: ByteBuffer(bytes: Hooks.body))
            }
        }
        // a, b, c, d are new; b is still remembered; a was pushed out by d.
        #expect(harness.webhooks?.counts.accepted == 5 && harness.webhooks?.counts.duplicate == 1)
        #expect(triggers.value == 5)
    }
}
