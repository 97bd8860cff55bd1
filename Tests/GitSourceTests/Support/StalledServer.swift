import Foundation

/// A loopback TCP server that accepts connections and never answers, until `release()`
/// closes them: a remote on which a libgit2 fetch blocks inside a system call for as long
/// as the test wants.
///
/// It runs on a thread of its own (never on Swift's pool, which the test watches), and
/// releases by itself after `fallback` so that a broken executor makes the test fail on
/// its ordering assertions instead of hanging forever. The fallback is long: in the full
/// suite other tests' real processes can hold the pool's threads for minutes (a 120 s
/// fallback fired there before the pool work could finish, failing a correct executor).
final class StalledServer: @unchecked Sendable {
    // `@unchecked`: the mutable state is only touched with `lock` held.
    let port: UInt16
    private let listener: Int32
    private let lock = NSLock()
    private var connections: [Int32] = []
    private var releasedFlag = false

    init(fallback: Duration = .seconds(900)) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError(code: .io, context: "socket()", detail: String(cString: strerror(errno))) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard bound == 0, named == 0, listen(fd, 64) == 0 else {
            let detail = String(cString: strerror(errno))
            close(fd)
            throw FixtureError(code: .io, context: "bind/listen on 127.0.0.1", detail: detail)
        }
        listener = fd
        port = UInt16(bigEndian: addr.sin_port)
        let deadline = ContinuousClock.now.advanced(by: fallback)
        let thread = Thread { [self] in serve(until: deadline) }
        thread.name = "stalled-server"
        thread.start()
    }

    /// A smart-HTTP URL on this server.
    var url: String { "http://127.0.0.1:\(port)/repo.git" }

    /// Connections accepted so far.
    var acceptedCount: Int { lock.withLock { connections.count } }

    /// Whether the connections were closed (by `release()` or the fallback).
    var released: Bool { lock.withLock { releasedFlag } }

    /// Closes every connection (the clients read end-of-file) and stops accepting.
    func release() {
        lock.withLock { releasedFlag = true }
    }

    private func serve(until deadline: ContinuousClock.Instant) {
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        while !released {
            if ContinuousClock.now >= deadline { release(); break }
            guard poll(&poller, 1, 20) > 0 else { continue }
            let client = accept(listener, nil, nil)
            if client >= 0 { lock.withLock { connections.append(client) } }
        }
        let open = lock.withLock { connections }
        for fd in open { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
        close(listener)
    }
}

/// An append-only list of what happened, in order, from any thread.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []

    func append(_ item: String) { lock.withLock { items.append(item) } }
    var events: [String] { lock.withLock { items } }
}
