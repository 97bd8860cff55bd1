import ArgumentParser
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14's webhook figures for `lockstep serve`, from one run:
/// 1. a new tag pushed to a local bare repo → its run in `planning`: with a signed webhook sent
///    from this process over a socket right after the push (poll_interval 1h, so only the webhook
///    can start the pass), against the
///    polling path (poll_interval 1 s, no webhook); times from the push's return to the
///    `planning` transition, in milliseconds from the store;
/// 2. signed deliveries per second: a burst of distinct deliveries from one `curl --parallel`,
///    every answer counted.
/// Before each release the daemon is let finish the last one (its text rendering is part of the
/// pass) and a random 0.5–1.5 s pause follows. Prints Markdown tables.
struct WebhookBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks",
        abstract: "Benchmark webhooks: push + webhook → run planning against polling, and signed deliveries per second."
    )

    @OptionGroup var tools: DaemonTools
    var lockstep: String { tools.lockstep }
    var terraform: String { tools.terraform }
    var mirror: String { tools.mirror }
    var example: String { tools.example }

    @Option(help: "Releases timed on each path (medians reported).")
    var repetitions: Int = 15

    @Option(help: "Signed deliveries in the throughput burst.")
    var deliveries: Int = 5_000

    @Option(help: "Connections the burst keeps open at once.")
    var parallel: Int = 64

    @Option(help: "Scratch directory (kept afterwards: each daemon's lockstep.log is there).")
    var workDirectory: String = ".bench/webhooks"

    @Option(help: "First TCP port used by the daemons.")
    var port: Int = 18_520

    static let secret = "webhook-benchmark-secret-0123456789"

    mutating func run() async throws {
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : cwd + "/" + path }
        let work = URL(fileURLWithPath: absolute(workDirectory), isDirectory: true)
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let (tf, mirrorPath, lockstepBin) = (absolute(terraform), absolute(mirror), absolute(lockstep))

        var out: [String] = []
        var rows: [(String, [Double])] = []
        for path in ["webhook", "poll"] {
            let dir = work.appendingPathComponent(path)
            try await DaemonRepos.makeExample(dir, from: absolute(example))
            let daemonPort = port + (path == "webhook" ? 0 : 1)
            try DaemonRepos.writeAgentConfig(dir, port: daemonPort, pollInterval: path == "webhook" ? 3_600 : 1, tf: tf, mirror: mirrorPath)
            if path == "webhook" { try Self.addWebhooks(dir) }
            let daemon = try DaemonProcess(dir: dir, binary: lockstepBin, logLevel: "info")
            defer { daemon.stop() }
            let server = "http://127.0.0.1:\(daemonPort)"
            _ = try await daemon.waitReady(server, timeout: 120)
            if path == "webhook" { _ = try await Self.deliver(port: daemonPort, id: "first") }
            _ = try await daemon.waitRun(server, target: "app/dev", tag: "dev/v1.0.0", timeout: 300)
            var latencies: [Double] = []
            for n in 1...repetitions {
                let version = "1.0.\(n)", tag = "dev/v\(version)"
                // The daemon idle again (the last run's text rendered and its pass ended), then a
                // random pause, so the poll's phase is random too.
                try await Task.sleep(for: .milliseconds(500 + Int.random(in: 0..<1_000)))
                try await Child.sh(DaemonRepos.releaseScript(repo: dir, file: "app/release.auto.tfvars", version: version, tag: tag))
                let pushed = Date()
                if path == "webhook" { try Self.post(port: daemonPort, id: "release-\(n)") }
                let (id, _) = try await daemon.waitRun(server, target: "app/dev", tag: tag, timeout: 120)
                guard let planning = await Self.planningTime(id: id, store: dir.appendingPathComponent("lockstep.sqlite")) else {
                    throw ValidationError("no planning transition stored for run \(id)")
                }
                latencies.append(planning.timeIntervalSince(pushed))
                for _ in 0..<100 {
                    if await API.json("\(server)/api/v1/runs/\(id)")?["plan_rendering_state"] as? String != "pending" { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                DaemonBenchmark.note("\(path) release \(n)/\(repetitions): push → planning \(Self.ms(latencies.last!)) ms")
            }
            rows.append((path == "webhook" ? "signed webhook sent right after the push (poll_interval 1h)"
                                            : "polling only (poll_interval 1 s)", latencies))

            if path == "webhook" {
                let start = ContinuousClock.now
                let statuses = try await Self.burst(port: daemonPort, count: deliveries, parallel: parallel, dir: dir)
                let seconds = DaemonBenchmark.seconds(ContinuousClock.now - start)
                let accepted = statuses.filter { $0 == 202 }.count
                out.append("| signed deliveries, \(deliveries) distinct ids, one `curl --parallel --parallel-max \(parallel)` on the same 2 cores | |")
                out.append("|---|---:|")
                out.append("| answered 202 | \(accepted) of \(deliveries) (other answers: \(statuses.count - accepted)) |")
                out.append("| wall time | \(String(format: "%.2f", seconds)) s |")
                out.append("| deliveries per second (target ≥ 2,000) | \(Int(Double(accepted) / seconds)) |")
                out.append("")
            }
        }
        var table = ["| a new tag → its run in `planning` (push returned → the store's `planning` transition, ms), \(repetitions) releases | median (ms) | min (ms) | max (ms) |",
                     "|---|---:|---:|---:|"]
        for (label, values) in rows {
            table.append("| \(label) | \(Self.ms(DaemonBenchmark.median(values))) | \(Self.ms(values.min() ?? .nan)) | \(Self.ms(values.max() ?? .nan)) |")
        }
        print((table + [""] + out).joined(separator: "\n"))
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
        print("\nCommand: `lockstep-bench webhooks --lockstep \(lockstep) --repetitions \(repetitions) --deliveries \(deliveries)`; load average at the end \(load)")
    }

    static func ms(_ seconds: Double) -> String { String(format: "%.0f", seconds * 1_000) }

    /// `webhooks.generic` with the benchmark's secret.
    static func addWebhooks(_ dir: URL) throws {
        let file = dir.appendingPathComponent("secrets/generic-webhook")
        try (secret + "\n").write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        let config = dir.appendingPathComponent("agent.yaml")
        let text = try String(contentsOf: config, encoding: .utf8)
        try (text + "\nwebhooks:\n  generic:\n    secret_files: [\(file.path)]\n").write(to: config, atomically: true, encoding: .utf8)
    }

    static let body = Data(#"{"event":"push"}"#.utf8)

    static var signature: String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// One signed delivery; returns its HTTP status.
    static func deliver(port: Int, id: String) async throws -> Int {
        let text = await Child.capture("/usr/bin/curl", [
            "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data-binary", String(decoding: body, as: UTF8.self),
            "-H", "Content-Type: application/json", "-H", "X-Lockstep-Delivery: \(id)", "-H", "X-Lockstep-Signature-256: \(signature)",
            "http://127.0.0.1:\(port)/webhooks/generic"])
        guard let status = text.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }), status == 202 else {
            throw ValidationError("a signed delivery was not accepted: \(text ?? "no answer")")
        }
        return status
    }

    /// One signed delivery from this process over a plain socket (starting curl would add more
    /// than the daemon's whole reaction); fails unless the answer is 202.
    static func post(port: Int, id: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ValidationError("connect: \(errno)") }
        let head = "POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + "X-Lockstep-Delivery: \(id)\r\nX-Lockstep-Signature-256: \(signature)\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8) + Array(body)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
            throw ValidationError("send: \(errno)")
        }
        var answer = [UInt8](repeating: 0, count: 64)
        let read = answer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard read > 12, String(decoding: answer[9..<12], as: UTF8.self) == "202" else {
            throw ValidationError("a signed delivery was not accepted: \(String(decoding: answer.prefix(max(0, read)), as: UTF8.self))")
        }
    }

    /// `count` distinct signed deliveries from one curl; the status of each.
    static func burst(port: Int, count: Int, parallel: Int, dir: URL) async throws -> [Int] {
        // The body inline: a body file would be opened once per transfer.
        var config = ""
        config.reserveCapacity(count * 300)
        for index in 0..<count {
            config += "url = \"http://127.0.0.1:\(port)/webhooks/generic\"\nrequest = \"POST\"\n"
                + "header = \"X-Lockstep-Delivery: burst-\(index)\"\nheader = \"X-Lockstep-Signature-256: \(signature)\"\n"
                + "data-binary = \"\(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\"", with: "\\\""))\"\nwrite-out = \"%{http_code}\\n\"\noutput = \"/dev/null\"\n"
                + (index + 1 < count ? "next\n" : "")
        }
        let configFile = dir.appendingPathComponent("burst.curlrc")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        let text = await Child.capture("/usr/bin/curl", ["-s", "--no-progress-meter", "--parallel", "--parallel-max", "\(parallel)", "-K", configFile.path]) ?? ""
        return text.split(separator: "\n").compactMap { Int($0) }
    }

    /// When the run moved to `planning`, from the store (milliseconds).
    static func planningTime(id: String, store: URL) async -> Date? {
        guard id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }),
              let text = await Child.capture("/usr/bin/sqlite3", [
                  "-readonly", store.path,
                  "select time_ms from transitions where run_id = '\(id)' and to_state = 'planning' order by sequence limit 1;"]),
              let ms = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return Date(timeIntervalSince1970: ms / 1_000)
    }
}
