import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Startup and abuse helpers

/// A listening TCP socket on 127.0.0.1:`port`, held by the test (close it with `close`).
func occupyPort(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    var yes: Int32 = 1
    _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
    var address = loopback(port)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(bound == 0, "cannot bind 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
    try #require(listen(fd, 16) == 0)
    return fd
}

/// A TCP connection to 127.0.0.1:`port` with send and receive timeouts.
func connectLocal(_ port: Int, timeoutSeconds: Int = 10) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = loopback(port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}

/// Writes all of `text`; false when the peer closed or the write failed.
@discardableResult
func sendAll(_ fd: Int32, _ text: String) -> Bool {
    let bytes = Array(text.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { return false }
        sent += n
    }
    return true
}

/// Reads until the peer closes (or the receive timeout); the bytes read.
func receiveAll(_ fd: Int32) -> String {
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { break }
        data.append(contentsOf: buffer[..<n])
    }
    return String(decoding: data, as: UTF8.self)
}

/// One HTTP/1.1 request with `Connection: close` over a raw socket; the status code, or nil
/// when the connection failed or was closed without an answer.
func rawRequest(port: Int, _ method: String, _ path: String, headers: [String] = []) -> Int? {
    guard let fd = connectLocal(port) else { return nil }
    defer { close(fd) }
    let head = ([method + " " + path + " HTTP/1.1", "Host: 127.0.0.1", "Connection: close"] + headers)
        .joined(separator: "\r\n") + "\r\n\r\n"
    guard sendAll(fd, head) else { return nil }
    let answer = receiveAll(fd)
    guard answer.hasPrefix("HTTP/1.1 "), answer.count >= 12 else { return nil }
    return Int(answer.dropFirst(9).prefix(3))
}

/// Descriptors the process has open now (/proc/PID/fd).
func openDescriptors(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}

extension DaemonWorld {
    /// Adds top-level keys to the agent config (before the daemon starts).
    func appendToConfig(_ text: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: configPath))
        try handle.seekToEnd()
        handle.write(Data(("\n" + text).utf8))
        try handle.close()
    }

    /// Waits for `daemon` to exit, with a deadline; false when it is still running then.
    func waitForExit(_ daemon: Process, seconds: Double) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if !daemon.isRunning { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return !daemon.isRunning
    }

    /// The payloads of the audit log's refusal entries.
    func refusalEntries() async throws -> [[String: String]] {
        try await auditEntries().filter { $0.kind == .refusal }.map(\.payload)
    }
}

extension DaemonWorld {
    /// Where the local backend of `environment` keeps its state: in a folder of its own, the
    /// only state folder that environment's commands may write (`environments.ENV.writable_paths`).
    func stateFile(_ environment: String) -> URL {
        stateDirectory.appendingPathComponent(environment).appendingPathComponent("terraform.tfstate")
    }

    /// The releases terraform applied, as `ENV:VERSION` lines of each environment's apply log,
    /// dev's first, then staging's, then prod's.
    var appliedReleases: [String] {
        ["dev", "staging", "prod"].flatMap { environment in
            let log = stateDirectory.appendingPathComponent(environment).appendingPathComponent("applies.log")
            return ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
    }

    /// The wrapper's control folder for `environment`: `control` for dev, `control-ENV` beside it otherwise.
    static func controlFolder(_ environment: String, control: URL) -> URL {
        environment == "dev" ? control : control.deletingLastPathComponent().appendingPathComponent("control-\(environment)")
    }

    /// The pipeline's environments, each granted its state folder and its control folder.
    static func grantingFolders(_ pipeline: Pipeline, state: URL, control: URL, extra: String = "") -> String {
        var text = pipeline.agentConfig
        for environment in pipeline.environments {
            let folders = [state.appendingPathComponent(environment), controlFolder(environment, control: control)]
            text = text.replacingOccurrences(
                of: "  \(environment):\n",
                with: "  \(environment):\n    writable_paths: [\(folders.map(\.path).joined(separator: ", "))]\n"
                    + (extra.isEmpty ? "" : "    \(extra)\n"))
        }
        return text
    }
}
