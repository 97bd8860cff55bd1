/// A git object id (SHA-1, 40 lowercase hex digits) — a commit, tree or tag object.
public struct ObjectID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// The 40 lowercase hex digits.
    public let hex: String

    /// Parses an id; `nil` unless `hex` is exactly 40 hex digits.
    public init?(hex: String) {
        let lower = hex.lowercased()
        guard lower.utf8.count == 40, lower.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            return nil
        }
        self.hex = lower
    }

    init(uncheckedHex: String) { self.hex = uncheckedHex }

    /// The all-zero id libgit2 uses for "no object" (a created or deleted ref's missing side).
    public var isZero: Bool { hex.utf8.allSatisfy { $0 == 48 } }

    /// The first 12 digits, for humans.
    public var short: String { String(hex.prefix(12)) }

    public var description: String { hex }

    public static func < (lhs: ObjectID, rhs: ObjectID) -> Bool { lhs.hex < rhs.hex }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = ObjectID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "expected 40 hex digits"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}
