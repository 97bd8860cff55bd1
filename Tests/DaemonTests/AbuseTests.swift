import Foundation
import LockstepCore
import RunStore
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP server holds under abuse (issue 11, point 8), on the real `lockstep serve` over
/// 127.0.0.1 only, with bounded request and connection counts. Before the fix each
/// unauthenticated request wrote one synchronous audit row, and slow connections were never
/// closed.
@Suite(.serialized)
struct AbuseTests {
    /// Progress of a flood running on another thread.
    final class Counter: Sendable {
        private let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var current: Int { value.withLock { $0 } }
    }

    @Test("a flood of bad tokens: 401 up to the per-address limit, then 429; the audit log gets one entry at once and one summary with the count at the end; /healthz and an authenticated approval succeed during it")
    func unauthenticatedFlood() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        // One window for the whole flood, however slow the machine (the default is a minute).
        try world.appendToConfig("""
        http:
          failed_auth_window: 1h

        """)
        let daemon = try await world.startReadyDaemon()
        try world.release("1.0.0")
        let id: String
        do {
            id = try await world.waitForRun(in: ["awaiting_approval"])
        } catch {
            print("DEBUGLOG runs: \(try world.runs())\n\(world.daemonLogs)")
            throw error
        }
        let digest = try world.planDigest(of: id)
        #expect(try await world.refusalEntries().isEmpty)

        let total = 3_000
        let port = world.port
        let sent = Counter()
        // Blocking socket calls on a thread of its own: on the cooperative pool (two threads on
        // a two-core machine) the flood would starve every other test in this process.
        let flood = Task {
            await onOwnThread { () -> [Int: Int] in
                var statuses: [Int: Int] = [:]
                for index in 0..<total {
                    let status = rawRequest(port: port, "GET", "/api/v1/runs", headers: ["Authorization: Bearer guess-\(index)"])
                    statuses[status ?? 0, default: 0] += 1
                    sent.increment()
                }
                return statuses
            }
        }
        try await eventually("the flood to be under way", seconds: 60) { sent.current >= 300 }
        let health = try world.http("GET", "/healthz", as: nil)
        let approval = try world.approve(id, digest: digest)
        let sentAtChecks = sent.current
        let statuses = await flood.value
        #expect(health.status == 200)
        #expect(approval.status == 200, "a valid token is served even from an address being throttled: \(approval.json)")
        #expect(sentAtChecks < total, "the checks ran while the flood was going on (\(sentAtChecks) of \(total) sent)")
        #expect(statuses[401] == 20, "the first 20 failures of the window are plain 401s: \(statuses)")
        #expect(statuses[429] == total - 20, "the rest are 429: \(statuses)")

        let during = try await world.refusalEntries()
        #expect(during.count == 1, "one audit entry for the first refusal, not one per request: \(during.count)")
        #expect(during.first?["source"] == "127.0.0.1" && during.first?["auth_failure"] == "unknown_token")

        kill(daemon.processIdentifier, SIGTERM)
        #expect(try await world.waitForExit(daemon, seconds: 120))
        let after = try await world.refusalEntries()
        #expect(after.count == 2, "the window's refusals are written as one summary when the daemon stops: \(after)")
        let summary = try #require(after.last)
        #expect(summary["event"] == "api_access_aggregated")
        #expect(summary["count"] == "\(total)", "the summary stands for every refusal: \(summary)")
        #expect(summary["throttled"] == "\(total - 20)")
        #expect(summary["samples"]?.contains("GET /api/v1/runs 401") == true)
        #expect(!(summary["samples"] ?? "").contains("guess-"), "no presented token reaches the audit log")
        #expect(AuditChain.verify(try await world.auditEntries()).isIntact)
        #expect(world.daemonLogs.components(separatedBy: "\n").count < 200, "the flood did not turn into a log flood")
    }

    @Test("slowloris: connections that never finish their headers are closed after the header timeout; at the cap the oldest slow ones make room; /healthz and the API answer throughout; the daemon's descriptors fall back")
    func slowConnections() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.appendToConfig("""
        http:
          header_timeout: 3s
          max_connections: 100
          reserved_for_health_checks: 4

        """)
        let daemon = try await world.startReadyDaemon()
        let pid = daemon.processIdentifier
        // Concurrent reads first: the store opens reader connections (each with its own
        // descriptors) only as concurrent reads need them, and the baseline must count them.
        let url = "http://127.0.0.1:\(world.port)/api/v1/runs"
        for _ in 0..<3 {
            _ = try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "--parallel", "--parallel-max", "12",
                                          "-H", "Authorization: Bearer \(world.tokens["alice"]!)"] + Array(repeating: url, count: 24))
        }
        try await Task.sleep(for: .milliseconds(500))
        let baseline = openDescriptors(pid)

        var slow: [Int32] = []
        defer { slow.forEach { close($0) } }
        for _ in 0..<300 {
            guard let fd = connectLocal(world.port, timeoutSeconds: 2) else { continue }
            sendAll(fd, "GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(fd)
        }
        #expect(slow.count >= 250, "the client opened its connections (\(slow.count))")
        var peak = 0
        // Trickle one header line a second on every connection, as a slowloris does.
        for round in 0..<3 {
            for fd in slow { _ = sendAll(fd, "X-Slow-\(round): 1\r\n") }
            peak = max(peak, openDescriptors(pid))
            #expect(try world.http("GET", "/healthz", as: nil).status == 200, "health check in round \(round)")
            #expect(try world.http("GET", "/api/v1/runs").status == 200, "an authenticated read in round \(round)")
            try await Task.sleep(for: .seconds(1))
        }
        // Measured from the last header byte sent: how long the rounds above took depends on the
        // machine's load, the header timeout runs from then.
        let trickleEnded = Date()
        #expect(peak <= baseline + 104 + 20, "the cap bounds the daemon's descriptors: peak \(peak), baseline \(baseline)")

        try await eventually("every slow connection to be closed by the daemon", seconds: 15) {
            slow.allSatisfy { fd in
                var byte: UInt8 = 0
                let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
                return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            }
        }
        #expect(Date().timeIntervalSince(trickleEnded) < 12, "closed by the 3 s header timeout, not by chance")
        try await eventually("the daemon's descriptors to fall back", seconds: 15) { openDescriptors(pid) <= baseline + 5 }
        #expect(try world.http("GET", "/healthz", as: nil).status == 200)
        #expect(daemon.isRunning)
    }
}

/// Runs blocking work on a dedicated thread and waits for it without holding a thread of the
/// cooperative pool.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}
