import Foundation
import Testing

/// One sample of a Prometheus text page: its name, labels and value.
struct MetricSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

extension DaemonWorld {
    /// `GET /metrics` on `port` (default: the API's): status, content type and samples.
    func scrape(port: Int? = nil) throws -> (status: Int, contentType: String, samples: [MetricSample], text: String) {
        let result = try run("/usr/bin/curl", ["-s", "-S", "--max-time", "30", "-D", "-", "http://127.0.0.1:\(port ?? self.port)/metrics"])
        let parts = result.out.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let text = parts.dropFirst().joined(separator: "\r\n\r\n")
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let contentType = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }
            .map { String($0.dropFirst("content-type:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
        var samples: [MetricSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let open = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = String(series[..<open])
                let inner = series[series.index(after: open)..<series.index(before: series.endIndex)]
                for pair in inner.split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2 else { continue }
                    labels[String(kv[0])] = String(kv[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            }
            samples.append(MetricSample(name: name, labels: labels, value: value))
        }
        return (status, contentType, samples, text)
    }
}

extension [MetricSample] {
    /// The value of the one sample named `name` with exactly `labels`; nil when there is none.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { $0.name == name && $0.labels == labels }?.value
    }
}

/// `/metrics` read from the running daemon after real runs: values, not just names.
@Suite("Metrics on the running daemon", .serialized)
struct MetricsDaemonTests {
    @Test("after a release is planned, approved, applied and verified, /metrics says so with bounded labels")
    func afterARealRun() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.useWebhooks()
        try await world.startReadyDaemon()
        try world.release("1.0.0")
        // A tag on a branch that was never merged is rejected.
        _ = try world.git(["checkout", "-q", "-b", "unmerged"])
        try "never merged\n".write(to: world.work.appendingPathComponent("unmerged.txt"), atomically: true, encoding: .utf8)
        _ = try world.git(["add", "-A"])
        _ = try world.git(["commit", "-q", "-m", "not merged"])
        _ = try world.git(["tag", "-a", "-m", "dev/v0.9.0", "dev/v0.9.0"])
        _ = try world.git(["checkout", "-q", "main"])
        try world.publish()
        #expect(try world.deliver(signature: "sha256=" + String(repeating: "0", count: 64)).status == 401)
        #expect(try world.deliver().status == 202)
        let id = try await world.waitForRun(in: ["awaiting_approval"])

        let waiting = try world.scrape()
        #expect(waiting.status == 200)
        #expect(waiting.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(waiting.samples.value("lockstep_approvals_waiting", ["environment": "dev"]) == 1)
        #expect(waiting.samples.value("lockstep_runs", ["environment": "dev", "state": "awaiting_approval"]) == 1)
        #expect((waiting.samples.value("lockstep_approval_oldest_wait_seconds", ["environment": "dev"]) ?? -1) >= 0)

        #expect(try world.approve(id, digest: try world.planDigest(of: id)).status == 200)
        try await eventually("the run to be verified") { try world.runState(id) == "verified" }

        let after = try world.scrape()
        let samples = after.samples
        #expect(samples.value("lockstep_runs", ["environment": "dev", "state": "verified"]) == 1)
        #expect(samples.value("lockstep_runs", ["environment": "dev", "state": "awaiting_approval"]) == 0)
        #expect(samples.value("lockstep_runs", ["environment": "dev", "state": "interrupted"]) == 0)
        #expect(samples.value("lockstep_approvals_waiting", ["environment": "dev"]) == 0)
        #expect(samples.value("lockstep_approval_oldest_wait_seconds", ["environment": "dev"]) == 0)
        #expect(samples.value("lockstep_plan_duration_seconds_count", ["environment": "dev", "outcome": "changes"]) == 1)
        #expect((samples.value("lockstep_plan_duration_seconds_sum", ["environment": "dev", "outcome": "changes"]) ?? 0) > 0)
        #expect(samples.value("lockstep_apply_duration_seconds_count", ["environment": "dev", "outcome": "succeeded"]) == 1)
        #expect((samples.value("lockstep_fetch_duration_seconds_count", ["outcome": "succeeded"]) ?? 0) >= 1)
        let tags = try world.http("GET", "/api/v1/environments/dev/tags").json
        #expect(samples.value("lockstep_tag_rejections_total", ["environment": "dev", "reason": "not_reachable_from_protected_branch"]) == 1,
                "\(samples.filter { $0.name.hasPrefix("lockstep_tag") }) \(tags)")
        #expect(samples.value("lockstep_webhook_deliveries_total", ["forge": "generic", "result": "unauthorized"]) == 1)
        #expect((samples.value("lockstep_webhook_deliveries_total", ["forge": "generic", "result": "accepted"]) ?? 0) >= 1)

        // Low cardinality: no run id, tag, commit or project in any series.
        let commit = try world.git(["rev-parse", "dev/v1.0.0^{commit}"]).trimmingCharacters(in: .whitespacesAndNewlines)
        for forbidden in [id, "v1.0.0", "dev/v0.9.0", commit] {
            #expect(!samples.contains { $0.labels.values.contains { $0.contains(forbidden) } }, "\(forbidden) in a label")
        }
        let labelNames = Set(samples.flatMap(\.labels.keys))
        #expect(labelNames.isSubset(of: ["environment", "state", "outcome", "reason", "forge", "result", "destination", "le"]),
                "\(labelNames)")
    }

    @Test("metrics_listen: /metrics on its own address, and not on the API's")
    func ownAddress() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let metricsPort = try freePort()
        try world.appendToConfig("metrics_listen: 127.0.0.1:\(metricsPort)\n")
        try await world.startReadyDaemon()
        try await eventually("metrics to answer on their own port") { (try? world.scrape(port: metricsPort))?.status == 200 }
        let own = try world.scrape(port: metricsPort)
        #expect(own.samples.value("lockstep_runs", ["environment": "dev", "state": "queued"]) != nil)
        #expect(try world.scrape().status == 404)
    }
}
