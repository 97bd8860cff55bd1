import Foundation

/// Parses `30s`, `5m`, `2h`, `1d`, `1h30m`: whole numbers with a unit, largest unit first.
/// Returns whole seconds, or nil for anything else (no fractions, no bare numbers: a bare
/// `30` would leave the reader guessing between seconds and minutes).
func parseDurationSeconds(_ text: String) -> Int? {
    let units: [Character: Int] = ["d": 86_400, "h": 3_600, "m": 60, "s": 1]
    let order: [Character] = ["d", "h", "m", "s"]
    var total = 0
    var digits = ""
    var lastUnitIndex = -1
    var sawUnit = false
    for ch in text {
        if ch.isASCII, ch.isNumber {
            digits.append(ch)
            if digits.count > 9 { return nil }
        } else if let factor = units[ch], let idx = order.firstIndex(of: ch) {
            guard !digits.isEmpty, idx > lastUnitIndex, let n = Int(digits) else { return nil }
            total += n * factor
            digits = ""
            lastUnitIndex = idx
            sawUnit = true
        } else {
            return nil
        }
    }
    return sawUnit && digits.isEmpty ? total : nil
}

/// Day of the week for apply windows.
public struct Weekday: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// 1 = Monday … 7 = Sunday (ISO 8601).
    public let isoNumber: Int
    public init?(isoNumber: Int) {
        guard (1...7).contains(isoNumber) else { return nil }
        self.isoNumber = isoNumber
    }
    static let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    init?(name: String) {
        guard let i = Weekday.names.firstIndex(of: name.lowercased()) else { return nil }
        isoNumber = i + 1
    }
    public var description: String { Weekday.names[isoNumber - 1] }
    public static func < (a: Weekday, b: Weekday) -> Bool { a.isoNumber < b.isoNumber }
}

/// A wall-clock time `HH:MM`, `24:00` allowed as the end of a day.
public struct TimeOfDay: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Minutes since midnight, 0…1440.
    public let minutes: Int
    public init?(minutes: Int) {
        guard (0...1440).contains(minutes) else { return nil }
        self.minutes = minutes
    }
    init?(text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let h = Int(parts[0]), let m = Int(parts[1]), m < 60, h < 24 || (h == 24 && m == 0)
        else { return nil }
        minutes = h * 60 + m
    }
    public var description: String {
        let h = minutes / 60, m = minutes % 60
        return (h < 10 ? "0" : "") + "\(h):" + (m < 10 ? "0" : "") + "\(m)"
    }
    public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.minutes < b.minutes }
}

/// A period in which apply may start (docs/CONTRACT.md §4: apply starts only inside the environment's window).
/// `from` is inclusive and `to` exclusive, on each of `days`, in `timeZone`.
public struct ApplyWindow: Hashable, Sendable {
    public var days: Set<Weekday>
    public var from: TimeOfDay
    public var to: TimeOfDay
    /// An IANA zone identifier that Foundation knows (`UTC`, `Europe/Paris`).
    public var timeZone: String

    public init(days: Set<Weekday>, from: TimeOfDay, to: TimeOfDay, timeZone: String) {
        self.days = days
        self.from = from
        self.to = to
        self.timeZone = timeZone
    }

    /// Whether `date` falls inside this window.
    public func contains(_ date: Date) -> Bool {
        guard let zone = TimeZone(identifier: timeZone) else { return false }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        guard let weekday = parts.weekday, let hour = parts.hour, let minute = parts.minute else { return false }
        // Calendar: 1 = Sunday … 7 = Saturday.
        let iso = weekday == 1 ? 7 : weekday - 1
        guard let day = Weekday(isoNumber: iso), days.contains(day) else { return false }
        let now = hour * 60 + minute
        return now >= from.minutes && now < to.minutes
    }
}

/// `host:port` the daemon listens on.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// A hostname, an IPv4 address or an IPv6 address without brackets.
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func parse(_ text: String) -> ListenAddress? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.isEmpty, host.utf8.count <= 253,
                  host.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "." || $0 == "-" })
            else { return nil }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portText), (1...65_535).contains(port) else { return nil }
        return ListenAddress(host: String(host), port: port)
    }
}

/// Lexically normalises an absolute path: removes `.` and empty components and applies
/// `..`. Used for agent-config paths, which are trusted (root owns the file).
func normaliseAbsolute(_ path: String) -> String {
    var parts: [Substring] = []
    for component in path.split(separator: "/", omittingEmptySubsequences: true) {
        if component == "." { continue }
        if component == ".." {
            if !parts.isEmpty { parts.removeLast() }
            continue
        }
        parts.append(component)
    }
    return "/" + parts.joined(separator: "/")
}

/// Names of environments, projects and identities: short, lowercase, safe in a tag name,
/// a URL path, a metric label and a file name.
func isSimpleName(_ name: String, extra: Set<Character> = ["-", "_"]) -> Bool {
    guard let first = name.first, name.utf8.count <= 63, first.isASCII, first.isLowercase || first.isNumber else { return false }
    return name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || extra.contains($0) }
}
