import Foundation
import LockstepConfig
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The daemon's log: one line per event on stderr, as `logfmt` or JSON (`log_format` in the
/// agent config), for journald or any log shipper.
///
/// Every value is escaped so that one event is one line whatever it holds: a tag name or a
/// terraform message with a newline, a quote or `level=critical` in it cannot start a line or
/// a field of its own. Under journald (stderr is the journal stream systemd named in
/// `JOURNAL_STREAM`), each line starts with its syslog priority (`<6>` for info) so
/// `journalctl -p warning` works, and the time is left to the journal.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let format: LogFormat
    let journald: Bool
    let write: @Sendable (String) -> Void

    public init(format: LogFormat, level: Logger.Level, journald: Bool = false,
                write: @escaping @Sendable (String) -> Void = LineLogHandler.standardError) {
        self.format = format
        self.logLevel = level
        self.journald = journald
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        write(render(level: event.level, message: "\(event.message)", metadata: merged, source: event.source, time: Date()))
    }

    /// The line for one event, newline included.
    func render(level: Logger.Level, message: String, metadata: Logger.Metadata, source: String, time: Date) -> String {
        var fields: [(String, Logger.Metadata.Value)] = []
        if !journald { fields.append(("time", .string(Self.timestamp(time)))) }
        fields.append(("level", .string(level.rawValue)))
        fields.append(("msg", .string(message)))
        for key in metadata.keys.sorted() where !["time", "level", "msg", "source"].contains(key) {
            if let value = metadata[key] { fields.append((key, value)) }
        }
        fields.append(("source", .string(source)))
        let body = switch format {
        case .logfmt: fields.map { "\(Self.key($0.0))=\(Self.logfmtValue($0.1))" }.joined(separator: " ")
        case .json: "{" + fields.map { "\(Self.jsonString(Self.key($0.0))):\(Self.jsonValue($0.1))" }.joined(separator: ",") + "}"
        }
        return (journald ? "<\(Self.priority(level))>" : "") + body + "\n"
    }

    /// syslog priorities, as sd-daemon(3) reads them from the start of a line.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp(_ time: Date) -> String {
        time.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
            .timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// A key as letters, digits, `.`, `_` and `-` only.
    static func key(_ text: String) -> String {
        let kept = String(text.unicodeScalars.map { scalar -> Character in
            let ok = (scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "._-".unicodeScalars.contains(scalar)))
            return ok ? Character(scalar) : "_"
        })
        return kept.isEmpty ? "_" : kept
    }

    static func flat(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let value): value.description
        case .array(let values): "[" + values.map(flat).joined(separator: ",") + "]"
        case .dictionary(let values): "{" + values.keys.sorted().map { "\($0):\(flat(values[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// A logfmt value: bare when it is one plain word, else quoted with `\`, `"` and every
    /// control character escaped.
    static func logfmtValue(_ value: Logger.Metadata.Value) -> String {
        let text = flat(value)
        let bare = !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value != 0x7F && scalar != "\"" && scalar != "=" && scalar != "\\"
                && !(0x80...0x9F).contains(scalar.value) && !(0x2028...0x2029).contains(scalar.value)
        }
        return bare ? text : jsonString(text)
    }

    static func jsonValue(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string, .stringConvertible: jsonString(flat(value))
        case .array(let values): "[" + values.map(jsonValue).joined(separator: ",") + "]"
        case .dictionary(let values):
            "{" + values.keys.sorted().map { "\(jsonString($0)):\(jsonValue(values[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal with every control character (C0, DEL, C1, U+2028, U+2029) escaped.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || (0x2028...0x2029).contains(scalar.value) {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    private static let lock = Mutex(())

    /// Writes a whole line to stderr at once: lines of concurrent tasks never interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        lock.withLock { _ in
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    /// Whether stderr is the journal stream systemd set up (`JOURNAL_STREAM=DEVICE:INODE`,
    /// systemd.exec(5)); a stderr redirected elsewhere keeps the time and drops the priority.
    public static func stderrIsJournal(_ environment: [String: String]) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }
}
