#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Tells systemd how the daemon is doing (`Type=notify`): `READY=1` once it can serve,
/// `STATUS=` lines saying what it does, `STOPPING=1` when it drains.
///
/// Speaks the sd_notify datagram protocol itself (no libsystemd): one `AF_UNIX`
/// `SOCK_DGRAM` datagram to `$NOTIFY_SOCKET`, a path or an abstract name written `@name`.
/// When `NOTIFY_SOCKET` is unset (not under systemd, or `Type=simple`) every call does
/// nothing and returns `false`, so the daemon runs the same by hand and under systemd.
public struct SystemdNotifier: Sendable {
    /// Where datagrams go, as given in `NOTIFY_SOCKET`; nil when not under systemd.
    public let socket: String?

    /// Longest `sun_path` on Linux, including the terminating NUL (or the leading NUL of an abstract name).
    static let maximumAddressBytes = 108

    /// - Parameter environment: the process environment (tests pass their own).
    public init(environment: [String: String]) {
        let value = environment["NOTIFY_SOCKET"] ?? ""
        self.socket = value.isEmpty ? nil : value
    }

    public var isActive: Bool { socket != nil }

    /// `READY=1`, with a status line.
    @discardableResult
    public func ready(status: String? = nil) throws(SystemdNotifyError) -> Bool {
        try send([("READY", "1")] + (status.map { [("STATUS", $0)] } ?? []))
    }

    /// `STATUS=…`: one line shown by `systemctl status`.
    @discardableResult
    public func status(_ text: String) throws(SystemdNotifyError) -> Bool {
        try send([("STATUS", text)])
    }

    /// `STOPPING=1`, with a status line: the daemon refuses new work and drains.
    @discardableResult
    public func stopping(status: String? = nil) throws(SystemdNotifyError) -> Bool {
        try send([("STOPPING", "1")] + (status.map { [("STATUS", $0)] } ?? []))
    }

    /// Sends `KEY=value` lines in one datagram. Values are cut to one line (a newline would
    /// start a new assignment, so a status text could otherwise forge `READY=1`).
    /// Returns false, having sent nothing, when not under systemd.
    @discardableResult
    public func send(_ assignments: [(String, String)]) throws(SystemdNotifyError) -> Bool {
        guard let socket else { return false }
        let message = assignments.map { key, value in "\(key)=\(Self.oneLine(value))" }.joined(separator: "\n")
        try Self.sendDatagram(Array(message.utf8), to: socket)
        return true
    }

    static func oneLine(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map {
            $0.properties.generalCategory == .control ? " " : $0
        }).prefix(200))
    }

    #if os(Linux)
    private static func sendDatagram(_ bytes: [UInt8], to socketName: String) throws(SystemdNotifyError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var name = Array(socketName.utf8)
        let abstract = name.first == UInt8(ascii: "@")
        guard abstract || name.first == UInt8(ascii: "/") else {
            throw SystemdNotifyError(.addressInvalid, "NOTIFY_SOCKET must be an absolute path or an @abstract name")
        }
        if abstract { name[0] = 0 }
        // A path needs room for its NUL; an abstract name is exactly its bytes.
        guard name.count + (abstract ? 0 : 1) <= maximumAddressBytes, !name.contains(0) || abstract else {
            throw SystemdNotifyError(.addressInvalid, "NOTIFY_SOCKET is too long or contains a NUL byte")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: name)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        let length = socklen_t(pathOffset + name.count + (abstract ? 0 : 1))

        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw SystemdNotifyError(.socketFailed, "socket(AF_UNIX, SOCK_DGRAM) failed: \(errorText(errno))")
        }
        defer { close(fd) }
        // MSG_DONTWAIT: the receiver's queue is short (net.unix.max_dgram_qlen, often 10);
        // a manager that stops reading must not stall the daemon. A full queue is an error the
        // caller logs, and the next status line says the same again.
        let sent = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), socketAddress, length)
                }
            }
        }
        guard sent == bytes.count else {
            throw SystemdNotifyError(.sendFailed, "sending to NOTIFY_SOCKET failed: \(sent < 0 ? errorText(errno) : "short write")")
        }
    }

    private static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: text)) (errno \(code))"
    }
    #else
    private static func sendDatagram(_ bytes: [UInt8], to socketName: String) throws(SystemdNotifyError) {
        throw SystemdNotifyError(.socketFailed, "systemd notification is only supported on Linux")
    }
    #endif
}

/// A notification that could not be sent. The daemon logs it and carries on: systemd
/// then times the start out, which is the visible symptom an operator looks into.
public struct SystemdNotifyError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// `NOTIFY_SOCKET` is neither an absolute path nor `@name`, or too long.
        public static let addressInvalid = Code(rawValue: "notify_address_invalid")
        public static let socketFailed = Code(rawValue: "notify_socket_failed")
        public static let sendFailed = Code(rawValue: "notify_send_failed")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
