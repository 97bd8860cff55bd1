import Crypto
import Foundation
import ForgeMock
import LockstepCore
import Testing

extension DaemonWorld {
    static let notificationSecret = "notification-hmac-secret-for-tests"

    /// Posts to `mock` as GitHub (token in `secrets/forge-token`), with a public URL, and sends
    /// dev's notifications as signed JSON to the mock's `/notify/dev`.
    func useForge(_ mock: ForgeMock) throws {
        let secrets = scratch.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        try (mock.token + "\n").write(to: secrets.appendingPathComponent("forge-token"), atomically: true, encoding: .utf8)
        try Self.notificationSecret.write(to: secrets.appendingPathComponent("notify-key"), atomically: true, encoding: .utf8)
        var config = try String(contentsOfFile: configPath, encoding: .utf8)
        let anchor = "plan_credentials_file: secrets/dev-plan.env\n"
        let line = try #require(config.split(separator: "\n").first { $0.contains(anchor.dropLast()) })
        let indent = String(line.prefix { $0 == " " })
        config = config.replacingOccurrences(of: anchor, with: anchor + """
            \(indent)notifications:
            \(indent)  - {url: "\(mock.notifyURL("dev"))", format: json, secret_file: secrets/notify-key}

            """)
        config += """

            public_url: https://lockstep.example.com
            forge:
              kind: github
              api_url: \(mock.baseURL(.github))
              repository: acme/delivery
              token_file: secrets/forge-token

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Releases `version` as pull request `pull` on the forge: the forge knows the pull request
    /// before the plan ends (as a real one does from the merge on), so the lookup cannot miss it.
    func release(_ version: String, pull: Int, on mock: ForgeMock, extra: [String: String] = [:]) async throws {
        try block("plan")
        try release(version, extra: extra)
        mock.addPull(pull, mergeCommit: try taggedCommit(version))
        try await eventually("the plan of \(version) to start") { started("plan") }
        unblockFuture("plan")
        try FileManager.default.removeItem(at: control.appendingPathComponent("plan.started"))
        try release(blocked: "plan")
    }

    /// A local forge answering as GitHub, and this world's agent config posting to it.
    func startForge() async throws -> ForgeMock {
        let mock = ForgeMock(token: "ghp_forge-token-\(UUID().uuidString.prefix(8))")
        try await mock.start()
        try useForge(mock)
        return mock
    }

    /// The merge commit the release tag `dev/vVERSION` points at.
    func taggedCommit(_ version: String) throws -> String {
        try git(["rev-parse", "dev/v\(version)^{commit}"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The outbox on the real daemon: a forge that is down never touches the gate, posts pending at
/// a kill -9 are delivered after the restart exactly once, and nothing secret reaches the forge.
@Suite("The forge and notifications on the running daemon", .serialized)
struct ForgeDaemonTests {
    @Test("the forge answers 502 while the run plans: the gate goes on; kill -9 with posts pending; after the restart one comment, edited to verified")
    func killWithPostsPending() async throws {
        let world = try DaemonWorld(pipeline: .devWithCredentials)
        defer { world.cleanup() }
        let mock = try await world.startForge()
        defer { Task { await mock.stop() } }
        mock.fail(next: Array(repeating: .status(502), count: 100_000))
        let first = try await world.startReadyDaemon()

        try world.release("1.0.0")
        mock.addPull(41, mergeCommit: try world.taggedCommit("1.0.0"))
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        try await eventually("the daemon to have tried the forge") { mock.requests.contains { $0.status == 502 } }
        #expect(mock.comments.isEmpty && mock.statuses.isEmpty, "nothing got through the 502s")

        world.kill9(first)
        mock.clearFaults()
        let restartedAt = Date()
        try await world.startReadyDaemon()
        try await eventually("the pending comment to reach the pull request") {
            mock.comments.first?.body.contains("awaiting approval") == true
        }
        let digest = try world.planDigest(of: id)
        let comment = try #require(mock.comments.first)
        #expect(comment.pull == 41)
        #expect(comment.body.contains("lockstep approve \(id) --digest \(digest)"))
        #expect(comment.body.contains("https://lockstep.example.com/ui/runs/\(id)"))

        #expect(try world.approve(id, digest: digest).status == 200)
        try await eventually("the run to be verified") { try world.runState(id) == "verified" }
        try await eventually("the comment to say verified") {
            mock.comments.first?.body.contains("Applied and verified") == true
        }
        #expect(mock.comments.count == 1, "one comment per run, across the kill and the restart")
        let history = try #require(mock.comments.first).history
        #expect(history.first?.contains("awaiting approval (0 of 1)") == true)
        #expect(history.contains { $0.contains("Approved by: alice") })
        let commit = try world.taggedCommit("1.0.0")
        try await eventually("the success status") { mock.statuses.last?.state == "success" }
        #expect(mock.statuses.allSatisfy { $0.commit == commit && $0.context == "lockstep/app/dev" })
        // Planning was reported before the kill only as a failed post: after the restart the
        // worker resumed at the first event not delivered, so `Planning` comes first.
        #expect(mock.statuses.first?.description == "Planning")
        #expect(mock.statuses.map(\.description).last == "Applied and verified")

        // Notifications of the same outbox (a sink of its own, with its own pace), signed.
        try await eventually("the verified notification") {
            mock.notifications("dev").contains { $0.headers["x-lockstep-event"] == "verified" }
        }
        // Delivery is at least once: the notification the first daemon sent just before the kill
        // (its position not yet stored) is sent again, with the same delivery id for the
        // receiver to drop.
        let notifications = mock.notifications("dev")
        var seen: [String: String] = [:]
        var distinct: [String] = []
        for request in notifications {
            let delivery = request.headers["x-lockstep-delivery"] ?? ""
            let event = request.headers["x-lockstep-event"] ?? ""
            if let earlier = seen[delivery] {
                #expect(earlier == event, "a delivery id names one event")
            } else {
                seen[delivery] = event
                distinct.append(event)
            }
        }
        #expect(distinct == ["awaiting_approval", "approval_recorded", "applied", "verified"])
        #expect(notifications.count <= distinct.count + 1, "at most the event in flight at the kill is sent twice")
        for request in notifications {
            let mac = HMAC<SHA256>.authenticationCode(for: request.body, using: SymmetricKey(data: Data(DaemonWorld.notificationSecret.utf8)))
            #expect(request.headers["x-lockstep-signature-256"] == "sha256=" + mac.map { String(format: "%02x", $0) }.joined())
        }
        // The outbox's counts since the restart, and every metric the shipped alert rules use, on
        // the real page.
        let metrics = try world.scrape().samples
        let forgeWrites = mock.requests.filter { $0.time >= restartedAt && $0.method != "GET" && $0.status < 300 }.count
        #expect((metrics.value("lockstep_outbox_deliveries_total", ["destination": "forge", "result": "sent"]) ?? 0) >= 6)
        #expect((metrics.value("lockstep_outbox_deliveries_total", ["destination": "forge", "result": "sent"]) ?? .infinity) <= Double(forgeWrites))
        let notificationsSent = metrics.value("lockstep_outbox_deliveries_total", ["destination": "notification", "result": "sent"]) ?? 0
        #expect(notificationsSent >= 3 && notificationsSent <= Double(notifications.count))
        let rules = try String(contentsOfFile: Paths.root.appendingPathComponent("deploy/prometheus/lockstep-alerts.yaml").path, encoding: .utf8)
        let used = Set(rules.matches(of: /lockstep_[a-z_]+/).map { String($0.output) })
        #expect(used.count >= 4)
        for name in used {
            #expect(metrics.contains { $0.name == name }, "the alert rules use \(name), which /metrics does not have")
        }

        // Nothing secret in anything the forge or the notification endpoint received.
        let bodies = mock.requests.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(!bodies.contains { $0.contains(world.planSecret) || $0.contains(world.applySecret) || $0.contains(mock.token) })
    }

    @Test("a plan credential inside a destroyed resource's address reaches the forge redacted")
    func canaryInAddress() async throws {
        let world = try DaemonWorld(pipeline: .devWithCredentials)
        defer { world.cleanup() }
        let mock = try await world.startForge()
        defer { Task { await mock.stop() } }
        try await world.startReadyDaemon()

        // 1.0.0 creates a resource keyed by the secret (as a careless for_each would); 1.1.0 drops it.
        let leaky = """
            resource "null_resource" "leak" {
              for_each = toset(["\(world.planSecret)"])
            }

            """
        try await world.release("1.0.0", pull: 1, on: mock, extra: ["app/leak.tf": leaky])
        let first = try await world.waitForRun(in: ["awaiting_approval"])
        #expect(try world.approve(first, digest: try world.planDigest(of: first)).status == 200)
        try await eventually("1.0.0 to be verified") { try world.runState(first) == "verified" }

        try await world.release("1.1.0", pull: 2, on: mock, extra: ["app/leak.tf": "\n"])
        try await eventually("the 1.1.0 comment, listing what it destroys") {
            mock.comments.contains { $0.pull == 2 && $0.body.contains("Destroyed: 1") }
        }
        let comment = try #require(mock.comments.first { $0.pull == 2 })
        #expect(comment.body.contains("null_resource.leak[\"(redacted)\"]"), "\(comment.body)")
        let bodies = mock.requests.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(!bodies.contains { $0.contains(world.planSecret) })
    }

    @Test("a forge token file that is missing, or that holds more than one line, stops the start with the file named and nothing of it printed")
    func badTokenFile() async throws {
        let world = try DaemonWorld(pipeline: .devWithCredentials)
        defer { world.cleanup() }
        let mock = ForgeMock(token: "ghp_forge-token-\(UUID().uuidString.prefix(8))")
        try world.useForge(mock)
        let tokenFile = world.scratch.appendingPathComponent("secrets/forge-token")
        for contents in [nil, "ghp_first-line-of-two\nghp_second-line-secret\n"] {
            if let contents {
                try contents.write(to: tokenFile, atomically: true, encoding: .utf8)
            } else {
                try FileManager.default.removeItem(at: tokenFile)
            }
            let daemon = try world.startDaemon()
            let exited = try await world.waitForExit(daemon, seconds: 30)
            #expect(exited && daemon.terminationStatus != 0)
            let log = world.daemonLogs
            #expect(log.contains("github token file \(tokenFile.path)"), "\(log.suffix(1_000))")
            #expect(!log.contains("ghp_first-line-of-two") && !log.contains("ghp_second-line-secret"))
        }
    }
}
