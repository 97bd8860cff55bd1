#if canImport(Glibc)
import Foundation
import Glibc
import LockstepDaemon
import Testing

/// A real unix datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let fd: Int32
    let name: String

    /// Binds `name`: an absolute path, or `@name` for an abstract socket.
    init(_ name: String) throws {
        self.name = name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (bytes.first == 0 ? 0 : 1))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        try #require(rc == 0, "bind failed: errno \(errno)")
    }

    deinit { close(fd) }

    /// The next datagram already queued, without waiting: the notifier sends synchronously,
    /// so a missing datagram is a failure, not something to wait for.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}

@Suite("systemd notification (Type=notify)")
struct SystemdNotifierTests {
    func scratchDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-notify-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("READY=1, STATUS= and STOPPING=1 arrive as datagrams on a socket path")
    func pathSocket() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = try NotifySocket(directory.appendingPathComponent("notify").path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
        #expect(notifier.isActive)

        #expect(try notifier.ready(status: "serving 3 targets"))
        #expect(socket.receive() == "READY=1\nSTATUS=serving 3 targets")
        #expect(try notifier.status("planning app/prod"))
        #expect(socket.receive() == "STATUS=planning app/prod")
        #expect(try notifier.stopping(status: "draining: 1 apply running"))
        #expect(socket.receive() == "STOPPING=1\nSTATUS=draining: 1 apply running")
        #expect(socket.receive() == nil, "nothing else was sent")
    }

    @Test("an abstract @name socket works")
    func abstractSocket() throws {
        let socket = try NotifySocket("@lockstep-notify-test-\(UUID().uuidString)")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
        #expect(try notifier.ready())
        #expect(socket.receive() == "READY=1")
    }

    @Test("a manager that stops reading never blocks the daemon: a full queue is an error, not a wait")
    func fullQueueDoesNotBlock() throws {
        let socket = try NotifySocket("@lockstep-notify-full-\(UUID().uuidString)")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
        // The kernel queues at most net.unix.max_dgram_qlen datagrams (10 by default) for a
        // receiver that does not read; a blocking send would hang on the next one.
        var refused = 0
        for index in 0..<200 {
            do {
                _ = try notifier.status("status line \(index)")
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0, "the queue never filled: the test did not reach the case it is about")
        #expect(socket.receive() == "STATUS=status line 0", "what was queued before the queue filled is intact")
    }

    @Test("a status text cannot forge another assignment: newlines become spaces")
    func statusIsOneLine() throws {
        let socket = try NotifySocket("@lockstep-notify-test-\(UUID().uuidString)")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
        try notifier.status("tag dev/v1\nREADY=1")
        #expect(socket.receive() == "STATUS=tag dev/v1 READY=1")
    }

    @Test("without NOTIFY_SOCKET nothing is sent and nothing fails")
    func unset() throws {
        for environment in [[:], ["NOTIFY_SOCKET": ""]] {
            let notifier = SystemdNotifier(environment: environment)
            #expect(!notifier.isActive)
            #expect(try notifier.ready(status: "x") == false)
            #expect(try notifier.stopping() == false)
        }
    }

    @Test("a relative, overlong or unbound socket is an error with a code, not a crash")
    func invalidSockets() throws {
        let relative = SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/notify"])
        #expect(throws: SystemdNotifyError.self) { try relative.ready() }
        let long = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
        let error = #expect(throws: SystemdNotifyError.self) { try long.ready() }
        #expect(error?.code == .addressInvalid)
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let nobody = SystemdNotifier(environment: ["NOTIFY_SOCKET": directory.appendingPathComponent("none").path])
        let sendError = #expect(throws: SystemdNotifyError.self) { try nobody.ready() }
        #expect(sendError?.code == .sendFailed)
    }
}
#endif
