import Crypto
import Foundation
import LockstepCore
import Testing

extension DaemonWorld {
    /// The generic sender's secret, written to `secrets/generic-webhook` (0600).
    static let webhookSecret = "generic-webhook-secret-for-tests"

    /// Polls once an hour (so only a webhook can make a pass soon) and takes generic webhooks.
    func useWebhooks() throws {
        let secrets = scratch.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        let file = secrets.appendingPathComponent("generic-webhook")
        try (Self.webhookSecret + "\n").write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "poll_interval: 1s\n", with: "poll_interval: 1h\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        try appendToConfig("webhooks:\n  generic:\n    secret_files: [secrets/generic-webhook]\n  max_body_bytes: 2048\n")
    }

    static func signature(_ body: Data, secret: String = webhookSecret) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// One delivery with curl: returns the status and the body.
    func deliver(_ body: String = #"{"ref":"refs/tags/dev/v9.9.9"}"#, delivery: String = UUID().uuidString,
                 signature: String? = nil) throws -> (status: Int, body: String) {
        let data = Data(body.utf8)
        let bodyFile = scratch.appendingPathComponent("delivery-\(UUID().uuidString).json")
        try data.write(to: bodyFile)
        let result = try run("/usr/bin/curl", ["-s", "-S", "--max-time", "30", "-X", "POST", "-w", "\n%{http_code}",
                                               "-H", "Content-Type: application/json",
                                               "-H", "X-Lockstep-Delivery: \(delivery)",
                                               "-H", "X-Lockstep-Signature-256: \(signature ?? Self.signature(data))",
                                               "--data-binary", "@\(bodyFile.path)", "http://127.0.0.1:\(port)/webhooks/generic"])
        let lines = result.out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// `count` signed deliveries, `parallel` at a time, from one curl (each its own delivery id; a
    /// `next` after the last would start a transfer without a URL, which fails the ones running).
    func deliverBurst(_ count: Int, parallel: Int) throws -> [Int] {
        // The body inline: a body file would be opened once per transfer, and a thousand at once
        // exhaust curl's descriptors.
        let body = Data("burst".utf8)
        var config = ""
        for index in 0..<count {
            config += """
            url = "http://127.0.0.1:\(port)/webhooks/generic"
            request = "POST"
            header = "X-Lockstep-Delivery: burst-\(index)"
            header = "X-Lockstep-Signature-256: \(Self.signature(body))"
            data-binary = "burst"
            write-out = "%{http_code}\\n"
            output = "/dev/null"
            \(index + 1 < count ? "next" : "")

            """
        }
        let configFile = scratch.appendingPathComponent("burst.curlrc")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        let result = try run("/usr/bin/curl", ["-s", "--no-progress-meter", "--parallel", "--parallel-max", "\(parallel)", "-K", configFile.path])
        return result.out.split(separator: "\n").compactMap { Int($0) }
    }

    /// The daemon's passes so far (its debug log says when each ends).
    func passesLogged(_ index: Int = 0) -> Int {
        let log = (try? String(contentsOfFile: scratch.appendingPathComponent("daemon-\(index).log").path, encoding: .utf8)) ?? ""
        return log.components(separatedBy: "pass ended").count - 1
    }
}

@Suite("Webhooks against the running daemon: a signed delivery makes a pass at once; nothing else does", .serialized)
struct WebhookDaemonTests {
    @Test("forged, replayed, oversized and well-formed deliveries over real HTTP: only the signed new one makes a pass, and its tag is planned within seconds though the poll is an hour")
    func deliveries() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.useWebhooks()
        try await world.startReadyDaemon(arguments: ["--log-level", "debug"])
        let passesAtStart = world.passesLogged()
        try world.release("1.0.0")

        // Forged: a wrong secret, a body changed after signing, no signature at all.
        let body = #"{"ref":"refs/tags/dev/v1.0.0"}"#
        #expect(try world.deliver(body, signature: DaemonWorld.signature(Data(body.utf8), secret: "guessed-secret-000000")).status == 401)
        #expect(try world.deliver(body + " ", signature: DaemonWorld.signature(Data(body.utf8))).status == 401)
        #expect(try world.deliver(body, signature: "").status == 401)
        #expect(try world.deliver(String(repeating: "x", count: 4_096)).status == 413)
        // None of them made a pass: within three seconds no run appears (the poll is an hour).
        for _ in 0..<30 {
            #expect(try world.runs().isEmpty, "a refused delivery made a pass")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(world.passesLogged() == passesAtStart)

        let accepted = try world.deliver(body, delivery: "delivery-1")
        #expect(accepted.status == 202 && accepted.body.contains("accepted"), "\(accepted)")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        #expect(try world.runState(id) == "awaiting_approval")
        let replay = try world.deliver(body, delivery: "delivery-1")
        #expect(replay.status == 202 && replay.body.contains("duplicate"))

        // The refusals are in the audit log, without the signatures presented.
        try await eventually("the refused deliveries to be audited", seconds: 90) {
            try await world.auditEntries().contains { $0.kind == .refusal && "\($0.payload)".contains("/webhooks/generic") }
        }
        let audit = try await world.auditEntries().map { "\($0.payload)" }.joined()
        #expect(!audit.contains(DaemonWorld.signature(Data(body.utf8))))
        #expect(!world.daemonLogs.contains(DaemonWorld.webhookSecret))
    }

    @Test("a burst of 1,000 signed deliveries while tags are pushed: every one answered 202, every tag decided, passes bounded, the API answers throughout")
    func burst() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.useWebhooks()
        try await world.startReadyDaemon(arguments: ["--log-level", "debug"])
        let passesAtStart = world.passesLogged()

        let pushes = Task {
            for minor in 0..<5 {
                try world.release("2.\(minor).0")
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        let statuses = try world.deliverBurst(1_000, parallel: 32)
        #expect(try world.http("GET", "/api/v1/runs").status == 200, "the API answers during and after the burst")
        try await pushes.value
        // The last push may have landed after the burst's last pass began: one more delivery.
        #expect(try world.deliver(delivery: "after-the-burst").status == 202)

        #expect(statuses.count == 1_000 && statuses.allSatisfy { $0 == 202 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        try await eventually("every pushed tag to be decided", seconds: 120) {
            let decisions = try world.http("GET", "/api/v1/environments/dev/tags").json["decisions"] as? [[String: Any]] ?? []
            let names = Set(decisions.compactMap { $0["tag"] as? String })
            return (0..<5).allSatisfy { names.contains("dev/v2.\($0).0") }
        }
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        #expect(try world.http("GET", "/api/v1/runs/\(id)").json["tag"] as? String == "dev/v2.4.0")
        let passes = world.passesLogged() - passesAtStart
        #expect(passes >= 1 && passes <= 60, "1,001 deliveries made \(passes) passes")
    }
}
