import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An exclusive `flock` on `<store>.lock`, held for the life of the daemon.
///
/// Why: two daemons over one store would each poll, plan and apply. The store's
/// compare-and-set keeps a plan from being applied twice, but two daemons would still race
/// every plan, fight over run directories and double every alert. So a second daemon refuses
/// to start and names the file and the pid of the one holding it. The kernel drops the lock
/// when the holder dies (even by `kill -9`), so a crash never leaves a stale lock behind.
public final class StoreLock: Sendable {
    /// The lock file.
    public let path: String
    private let descriptor: Int32

    /// Takes the lock or throws ``DaemonError/Code/storeLocked`` naming the holder.
    public init(storePath: String) throws(DaemonError) {
        let path = storePath + ".lock"
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw DaemonError(.store, "cannot open the store lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = StoreLock.readPID(fd)
            close(fd)
            if reason == EWOULDBLOCK {
                let who = holder.map { "pid \($0)" } ?? "another process"
                throw DaemonError(.storeLocked,
                                  "another lockstep daemon (\(who)) holds \(path); only one daemon may serve a store")
            }
            throw DaemonError(.store, "cannot lock \(path): \(String(cString: strerror(reason)))")
        }
        // Ours now: record who holds it for the message a second daemon prints.
        let text = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        descriptor = fd
    }

    deinit {
        close(descriptor)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 31, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Int32(text)
    }
}

/// Why the daemon could not start or stopped. `description` is safe to print.
public struct DaemonError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The agent config is missing or invalid.
        public static let config = Code(rawValue: "config")
        /// Another daemon holds the store.
        public static let storeLocked = Code(rawValue: "store_locked")
        /// The store cannot be opened or used.
        public static let store = Code(rawValue: "store")
        /// A folder the daemon needs cannot be created.
        public static let fileSystem = Code(rawValue: "file_system")
        /// The API tokens in the config cannot be used.
        public static let tokens = Code(rawValue: "tokens")
        /// The API cannot listen on its address (taken, not permitted, not an address here).
        public static let listen = Code(rawValue: "listen")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
