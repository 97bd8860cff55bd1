import Foundation
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The receiving end of `NOTIFY_SOCKET`: a unix datagram socket bound in a scratch folder,
/// as systemd binds one for a `Type=notify` unit.
final class NotifySocket {
    let path: String
    private var descriptor: Int32

    init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(descriptor >= 0, "socket: \(String(cString: strerror(errno)))")
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        try #require(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long: \(path)")
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0, "bind \(path): \(String(cString: strerror(errno)))")
    }

    deinit { stop() }

    /// Closes and removes the socket: the daemon's later notifications then fail at once
    /// (and are logged) instead of filling the socket's queue, which would block the sender.
    func stop() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
        unlink(path)
    }

    /// The next datagram, or nil when none arrives before `deadline` (poll(2) waits; no sleep).
    func receive(before deadline: Date) -> String? {
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(left, 5) * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { continue }
            return String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    /// Reads datagrams until one satisfies `match`; returns it and every datagram before it.
    func receive(until what: String, seconds: Double = 120,
                 _ match: (String) -> Bool) throws -> (match: String, before: [String]) {
        let deadline = Date().addingTimeInterval(seconds)
        var before: [String] = []
        while let message = receive(before: deadline) {
            if match(message) { return (message, before) }
            before.append(message)
        }
        Issue.record("no \(what) on NOTIFY_SOCKET within \(seconds)s; received: \(before)")
        throw TimedOut(what: what)
    }
}

/// systemd `Type=notify` readiness (docs/CONTRACT.md §5) on the real `lockstep serve` process: systemd
/// starts units ordered after lockstep once `READY=1` arrives, so it must not arrive before
/// the daemon can serve (store open, API listening, first fetch tried), and must still
/// arrive when the remote is down (else systemd kills the unit at its start timeout and a
/// network outage becomes a restart loop).
@Suite(.serialized)
struct NotifyTests {
    @Test("READY=1 arrives after the store is open and the first pass ran, then STATUS= lines, then STOPPING=1 on SIGTERM")
    func readyStatusStopping() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let notify = try NotifySocket(path: world.scratch.appendingPathComponent("notify.sock").path)
        let daemon = try world.startDaemon(environment: ["NOTIFY_SOCKET": notify.path])

        let ready = try notify.receive(until: "READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(!ready.before.contains { $0.contains("STOPPING=1") })
        // The status sent with READY=1 is the one a finished pass writes: the first fetch was
        // tried and its outcome is known.
        #expect(ready.match.contains("STATUS=") && ready.match.contains("awaiting approval")
                && ready.match.contains("polling every"), "\(ready.match)")
        #expect(!ready.match.contains("remote unreachable"), "\(ready.match)")
        // At that moment the store is open (its file exists and reads) and the API answers.
        #expect(FileManager.default.fileExists(atPath: world.storePath))
        _ = try await world.auditEntries()
        #expect(try world.http("GET", "/readyz", as: nil).status == 200)
        #expect(world.daemonLogs.contains("store open"))

        try world.release("1.0.0")
        let status = try notify.receive(until: "a STATUS= line with the run awaiting approval") {
            $0.hasPrefix("STATUS=") && $0.contains("1 awaiting approval")
        }
        #expect(!status.match.contains("READY=1"), "READY=1 is sent once")
        #expect(!status.before.contains { $0.contains("READY=1") || $0.contains("STOPPING=1") }, "\(status.before)")

        kill(daemon.processIdentifier, SIGTERM)
        let stopping = try notify.receive(until: "STOPPING=1") { $0.split(separator: "\n").contains("STOPPING=1") }
        #expect(stopping.match.contains("STATUS=stopping"), "\(stopping.match)")
        daemon.waitUntilExit()
        #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0, "\(world.daemonLogs)")
    }

    @Test("a release tagged while the daemon was down: READY=1 and /readyz 200 come once its tag is decided, while its plan is still held; the plan then finishes")
    func readyBeforePlans() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.release("1.0.0")
        try world.block("plan")
        let notify = try NotifySocket(path: world.scratch.appendingPathComponent("notify.sock").path)
        _ = try world.startDaemon(environment: ["NOTIFY_SOCKET": notify.path])

        _ = try notify.receive(until: "READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(try world.http("GET", "/readyz", as: nil).status == 200)
        // The run exists (its tag was decided by the first pass) and its plan has not ended:
        // readiness did not wait for terraform.
        let id = try await world.waitForRun(in: ["queued", "planning"])
        try await eventually("the held plan to start") { world.started("plan") }
        #expect(try world.runState(id) == "planning")

        world.unblockFuture("plan")
        try world.release(blocked: "plan")
        try await eventually("the plan to finish after readiness") { try world.runState(id) == "awaiting_approval" }
    }

    @Test("the remote down at start: READY=1 still arrives, after the first fetch was tried, and its STATUS= says why")
    func readyWithRemoteDown() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try FileManager.default.moveItem(at: world.remote,
                                         to: world.scratch.appendingPathComponent("remote-away.git"))
        let notify = try NotifySocket(path: world.scratch.appendingPathComponent("notify.sock").path)
        let daemon = try world.startDaemon(environment: ["NOTIFY_SOCKET": notify.path])

        let ready = try notify.receive(until: "READY=1") { $0.split(separator: "\n").contains("READY=1") }
        #expect(ready.match.contains("STATUS=") && ready.match.contains("remote unreachable"), "\(ready.match)")
        #expect(daemon.isRunning)
        let readyz = try world.http("GET", "/readyz", as: nil)
        #expect(readyz.status == 503)
        #expect((readyz.json["status"] as? String ?? "").contains("remote unreachable"), "\(readyz.json)")
    }
}
