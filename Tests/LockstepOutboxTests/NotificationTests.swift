import Crypto
import Foundation
import ForgeMock
import LockstepConfig
import LockstepCore
@testable import LockstepOutbox
import NameLiterals
import RunStore
import Testing

/// Notifications: Lockstep's signed JSON and Slack's incoming-webhook body, sent for the events
/// an environment asked for and no other.
@Suite("Notifications: signed JSON and Slack bodies, the events asked for and no other")
struct NotificationTests {
    static func signature(_ body: Data) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data("hmac-key-for-tests".utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    @Test("JSON: one signed delivery per event of the environment, in order, with the run's facts and no plan body")
    func signedJSON() async throws {
        let world = try await OutboxWorld(forge: nil, notifications: ["{url: URL, format: json, secret_file: hook-secret}"])
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.awaitingRun("d1", "dev")
        try await world.approveAndVerify()
        try await world.delivered()

        let sent = world.mock.notifications("ops")
        #expect(sent.map { $0.headers["x-lockstep-event"] ?? "" } == [
            "awaiting_approval", "approval_recorded", "approval_recorded", "applied", "verified",
        ], "dev's run is not prod's notification; planning, approved, applying, verifying are not events")
        #expect(Set(sent.map { $0.headers["x-lockstep-delivery"] ?? "" }).count == sent.count, "a delivery id per event")
        for request in sent {
            #expect(request.headers["x-lockstep-signature-256"] == Self.signature(request.body))
            #expect(request.headers["content-type"] == "application/json")
            #expect(!String(decoding: request.body, as: UTF8.self).contains("RAW-PLAN-RENDERING"))
        }
        let awaiting = sent[0].json
        #expect(awaiting["event"] as? String == "awaiting_approval")
        #expect(awaiting["environment"] as? String == "prod" && awaiting["project"] as? String == "network")
        #expect(awaiting["delivery"] as? String == sent[0].headers["x-lockstep-delivery"])
        let run = try #require(awaiting["run"] as? [String: Any])
        #expect(run["id"] as? String == "r1" && run["tag"] as? String == "prod/v1.4.0" && run["version"] as? String == "1.4.0")
        #expect(run["digest"] as? String == OutboxWorld.digest && run["state"] as? String == "awaiting_approval")
        #expect(run["url"] as? String == "https://lockstep.example.com/ui/runs/r1")
        #expect(awaiting["plan"] as? [String: Int] == ["create": 1, "update": 0, "replace": 0, "delete": 1])
        let second = try #require(sent[2].json["approvals"] as? [String: Any])
        #expect(second["required"] as? Int == 2 && second["approved_by"] as? [String] == ["alice", "bob"])
        // Each carries the audit head at sending: a real entry's hash, never going backwards.
        let hashes = try await world.store.auditEntries().map(\.hash.hex)
        let heads = sent.compactMap { $0.json["audit_head"] as? String }
        #expect(heads.count == sent.count)
        let positions = heads.compactMap { hashes.firstIndex(of: $0) }
        #expect(positions.count == heads.count && positions == positions.sorted(), "\(heads)")
    }

    @Test("events: only the ones listed are sent; a rejected tag is one")
    func chosenEvents() async throws {
        let world = try await OutboxWorld(forge: nil, notifications: ["{url: URL, format: json, secret_file: hook-secret, events: [tag_rejected, failed]}"])
        defer { Task { await world.close() } }
        world.startWorker()
        try await world.awaitingRun()
        try await world.move("r1", .awaitingApproval, .rejected, .rejected)
        let decision = StoredTagDecision(target: OutboxWorld.target(), tagName: "prod/v9.9.9", tagObject: try GitObjectID(String(repeating: "9", count: 40)),
                                         commit: nil, version: nil, accepted: false,
                                         rejections: [TagRejection(code: .notAnnotated, description: "tag \"prod/v9.9.9\" is lightweight")])
        try await world.store.recordTagDecision(decision, at: Date(), actor: "lockstep")
        try await world.delivered()
        let sent = world.mock.notifications("ops")
        #expect(sent.map { $0.headers["x-lockstep-event"] ?? "" } == ["tag_rejected"])
        let body = try #require(sent.first).json
        #expect(body["tag"] as? String == "prod/v9.9.9" && body["rejections"] as? [String] == ["tag \"prod/v9.9.9\" is lightweight"])
        #expect(body["run"] == nil)
    }

    @Test("Slack: a text body with Slack's control characters escaped, so a tag name cannot mention @channel or forge a link")
    func slackEscaping() async throws {
        let world = try await OutboxWorld(forge: nil, notifications: ["{url_file: hook-url, format: slack}"])
        defer { Task { await world.close() } }
        world.startWorker()
        let decision = StoredTagDecision(target: OutboxWorld.target(), tagName: "prod/<!channel>&<https://evil.example|click>",
                                         tagObject: try GitObjectID(String(repeating: "9", count: 40)), commit: nil, version: nil,
                                         accepted: false, rejections: [TagRejection(code: .versionUnparsable, description: "not a version")])
        try await world.store.recordTagDecision(decision, at: Date(), actor: "lockstep")
        try await world.awaitingRun()
        try await world.delivered()
        let sent = world.mock.notifications("ops")
        #expect(sent.count == 2)
        #expect(sent.allSatisfy { $0.headers["x-lockstep-signature-256"] == nil })
        let texts = sent.compactMap { $0.json["text"] as? String }
        #expect(texts.count == 2 && sent.allSatisfy { $0.json.count == 1 }, "Slack's body is {\"text\": …}")
        #expect(texts[0].contains("prod/&lt;!channel&gt;&amp;&lt;https://evil.example|click&gt;"))
        #expect(!texts.joined().contains("<!channel>") && !texts.joined().contains("<https://evil"))
        #expect(texts[1].contains("<https://lockstep.example.com/ui/runs/r1|run r1>"))
        #expect(texts[1].contains("`lockstep approve r1 --digest \(OutboxWorld.digest)`"))
    }
}
