import Crypto

/// Shared validation of short names that end up in ref globs, file names and the
/// store: ASCII letters, digits and a few separators, bounded length.
///
/// Why: these values are substituted into libgit2 globs and tag patterns. Allowing
/// `*`, `?`, `[`, `/` or `..` would let a name widen a glob or climb a ref path.
enum NameRules {
    static func validate(_ raw: String, what: String, maximumLength: Int, extra: Set<UInt8> = []) throws(CoreError) {
        let bytes = Array(raw.utf8)
        guard !bytes.isEmpty else {
            throw CoreError(.identifierInvalid, "\(what) is empty", context: ["kind": what])
        }
        guard bytes.count <= maximumLength else {
            throw CoreError(.identifierInvalid, "\(what) is longer than \(maximumLength) bytes",
                            context: ["kind": what, "length": String(bytes.count)])
        }
        guard isAlphanumeric(bytes[0]) else {
            throw CoreError(.identifierInvalid, "\(what) \"\(displaySafe(raw))\" must start with a letter or digit",
                            context: ["kind": what])
        }
        for byte in bytes where !(isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                                  || extra.contains(byte)) {
            throw CoreError(.identifierInvalid,
                            "\(what) \"\(displaySafe(raw))\" contains \"\(displaySafe(String(decoding: [byte], as: UTF8.self)))\"; "
                            + "expected letters, digits, '-' or '_'",
                            context: ["kind": what])
        }
        if raw.contains("..") {
            throw CoreError(.identifierInvalid, "\(what) \"\(displaySafe(raw))\" contains \"..\"", context: ["kind": what])
        }
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    static func isHex(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// A value that is a validated string, encoded as that string.
public protocol ValidatedString: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    var rawValue: String { get }
    init(_ rawValue: String) throws(CoreError)
}

extension ValidatedString {
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        try self.init(raw)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// An environment name (`dev`, `staging`, `prod`): letters, digits, `-`, `_`, at most 64 bytes.
public struct EnvironmentName: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        try NameRules.validate(rawValue, what: "environment name", maximumLength: 64)
        self.rawValue = rawValue
    }
}

/// A project name (one Terraform root module): letters, digits, `-`, `_`, `.`, at most 64 bytes.
/// The project's folder is configured separately; this is only its name.
public struct ProjectName: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        try NameRules.validate(rawValue, what: "project name", maximumLength: 64, extra: [UInt8(ascii: ".")])
        self.rawValue = rawValue
    }
}

/// An API identity (a person or a bot) named in the agent config.
public struct IdentityName: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        try NameRules.validate(rawValue, what: "identity name", maximumLength: 64,
                               extra: [UInt8(ascii: "."), UInt8(ascii: "@")])
        self.rawValue = rawValue
    }
}

/// A run's id as the store assigns it (e.g. a UUID or ULID): letters, digits, `-`, `_`, at most 64 bytes.
public struct RunID: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        try NameRules.validate(rawValue, what: "run id", maximumLength: 64)
        self.rawValue = rawValue
    }
}

/// One (project, environment) pair: the unit that is locked, planned and applied.
/// Its text form is `project/environment`.
public struct TargetID: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public let project: ProjectName
    public let environment: EnvironmentName
    public init(project: ProjectName, environment: EnvironmentName) {
        self.project = project
        self.environment = environment
    }
    public var description: String { "\(project.rawValue)/\(environment.rawValue)" }
    public static func < (lhs: TargetID, rhs: TargetID) -> Bool { lhs.description < rhs.description }
}

/// A SHA-256 digest in lowercase hex (64 characters): the plan digest approvals quote.
///
/// Input hex is accepted in either case and stored lowercase, so an approval quoting
/// `ABC…` and a plan digest `abc…` compare equal and nothing else does.
public struct Digest: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        let lower = rawValue.lowercased()
        guard NameRules.isHex(lower, count: 64) else {
            throw CoreError(.identifierInvalid, "digest \"\(displaySafe(rawValue))\" is not 64 hexadecimal characters",
                            context: ["kind": "digest"])
        }
        self.rawValue = lower
    }

    /// SHA-256 of `bytes` (pure computation, no I/O).
    public static func sha256(of bytes: some Sequence<UInt8>) -> Digest {
        let hash = SHA256.hash(data: Array(bytes))
        // A SHA-256 rendered as hex is always a valid digest.
        return try! Digest(hexString(hash))
    }
}

/// A git object id (SHA-1: 40 hex, SHA-256: 64 hex), lowercase.
public struct GitObjectID: ValidatedString {
    public let rawValue: String
    public init(_ rawValue: String) throws(CoreError) {
        let lower = rawValue.lowercased()
        guard NameRules.isHex(lower, count: 40) || NameRules.isHex(lower, count: 64) else {
            throw CoreError(.identifierInvalid, "git object id \"\(displaySafe(rawValue))\" is not 40 or 64 hexadecimal characters",
                            context: ["kind": "git object id"])
        }
        self.rawValue = lower
    }

    /// The all-zero id git uses for "no object" (the missing side of a created or deleted ref).
    public var isZero: Bool { rawValue.utf8.allSatisfy { $0 == UInt8(ascii: "0") } }

    /// The first 12 digits, for humans.
    public var short: String { String(rawValue.prefix(12)) }
}

func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
