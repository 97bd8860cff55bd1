/// A strict Semantic Versioning 2.0.0 version, as found in a release tag.
///
/// * Parsing accepts one optional leading `v` (`v1.4.0`), nothing else: no spaces,
///   no `=`, no missing components, no leading zeros, no numbers beyond `UInt64`.
/// * Inputs longer than ``maximumLength`` bytes are refused before any work:
///   tag names are untrusted (docs/THREAT-MODEL.md §3.2: a hostile one may be kilobytes long).
/// * `<` is SemVer *precedence*: build metadata is ignored. `==` is structural
///   (build metadata included), so two versions can be neither `<` nor `==`
///   (`1.0.0+a`, `1.0.0+b`); use ``hasSamePrecedence(as:)`` to detect that tie.
/// * `description` is the canonical text without the `v`.
public struct SemanticVersion: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// One dot-separated pre-release identifier.
    public enum PrereleaseIdentifier: Sendable, Hashable, Codable, CustomStringConvertible {
        case numeric(UInt64)
        case alphanumeric(String)

        public var description: String {
            switch self {
            case .numeric(let value): String(value)
            case .alphanumeric(let text): text
            }
        }
    }

    /// Longest accepted input, in UTF-8 bytes.
    public static let maximumLength = 128

    public let major: UInt64
    public let minor: UInt64
    public let patch: UInt64
    public let prerelease: [PrereleaseIdentifier]
    public let buildMetadata: [String]

    /// Builds a version from parts, validating identifiers as the parser does.
    public init(major: UInt64, minor: UInt64, patch: UInt64,
                prerelease: [PrereleaseIdentifier] = [], buildMetadata: [String] = []) throws(CoreError) {
        let text = Self.render(major, minor, patch, prerelease, buildMetadata)
        let parsed = try SemanticVersion(text)
        guard parsed.prerelease == prerelease, parsed.buildMetadata == buildMetadata else {
            throw CoreError(.versionInvalidCharacter,
                            "identifiers of \"\(displaySafe(text))\" are not canonical (one identifier per element; all-digit pre-release identifiers must be .numeric)")
        }
        self = parsed
    }

    /// Parses `text` strictly (SemVer 2.0.0 with an optional leading `v`).
    public init(_ text: String) throws(CoreError) {
        let bytes = Array(text.utf8)
        let shown = displaySafe(text)
        guard !bytes.isEmpty else {
            throw CoreError(.versionEmpty, "version is empty; expected MAJOR.MINOR.PATCH such as 1.4.0")
        }
        guard bytes.count <= Self.maximumLength else {
            throw CoreError(.versionTooLong,
                            "version is \(bytes.count) bytes long; at most \(Self.maximumLength) are accepted",
                            context: ["length": String(bytes.count)])
        }
        var rest = bytes[...]
        if rest.first == UInt8(ascii: "v") { rest = rest.dropFirst() }

        var build: [String] = []
        if let plus = rest.firstIndex(of: UInt8(ascii: "+")) {
            build = try Self.identifiers(rest[(plus + 1)...], part: "build metadata", input: shown)
            rest = rest[..<plus]
        }
        var pre: [PrereleaseIdentifier] = []
        if let dash = rest.firstIndex(of: UInt8(ascii: "-")) {
            let texts = try Self.identifiers(rest[(dash + 1)...], part: "pre-release", input: shown)
            pre = try texts.map { (identifier) throws(CoreError) -> PrereleaseIdentifier in
                if identifier.utf8.allSatisfy(Self.isDigit) {
                    return .numeric(try Self.number(identifier, part: "pre-release", input: shown))
                }
                return .alphanumeric(identifier)
            }
            rest = rest[..<dash]
        }
        let core = rest.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard core.count == 3 else {
            throw CoreError(.versionCoreInvalid,
                            "version \"\(shown)\" must start with MAJOR.MINOR.PATCH (three numbers separated by dots)",
                            context: ["input": shown])
        }
        let names = ["major", "minor", "patch"]
        var numbers: [UInt64] = []
        for (index, component) in core.enumerated() {
            let componentText = String(decoding: component, as: UTF8.self)
            guard !component.isEmpty, component.allSatisfy(Self.isDigit) else {
                throw CoreError(.versionCoreInvalid,
                                "the \(names[index]) number of version \"\(shown)\" is \"\(displaySafe(componentText))\"; expected digits only",
                                context: ["input": shown, "part": names[index]])
            }
            numbers.append(try Self.number(componentText, part: names[index], input: shown))
        }
        major = numbers[0]
        minor = numbers[1]
        patch = numbers[2]
        prerelease = pre
        buildMetadata = build
    }

    /// True when this is a pre-release (`1.0.0-rc.1`).
    public var isPrerelease: Bool { !prerelease.isEmpty }

    /// True when neither version precedes the other (they may still differ in build metadata).
    public func hasSamePrecedence(as other: SemanticVersion) -> Bool { !(self < other) && !(other < self) }

    public var description: String { Self.render(major, minor, patch, prerelease, buildMetadata) }

    public static func < (lhs: SemanticVersion, rhs: SemanticVersion) -> Bool {
        if lhs.major != rhs.major { return lhs.major < rhs.major }
        if lhs.minor != rhs.minor { return lhs.minor < rhs.minor }
        if lhs.patch != rhs.patch { return lhs.patch < rhs.patch }
        // A pre-release precedes the release it leads to.
        switch (lhs.prerelease.isEmpty, rhs.prerelease.isEmpty) {
        case (true, true): return false
        case (true, false): return false
        case (false, true): return true
        case (false, false): break
        }
        for (left, right) in zip(lhs.prerelease, rhs.prerelease) where left != right {
            switch (left, right) {
            case (.numeric(let l), .numeric(let r)): return l < r
            case (.numeric, .alphanumeric): return true
            case (.alphanumeric, .numeric): return false
            case (.alphanumeric(let l), .alphanumeric(let r)):
                return Array(l.utf8).lexicographicallyPrecedes(Array(r.utf8))
            }
        }
        return lhs.prerelease.count < rhs.prerelease.count
    }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // MARK: - Parsing helpers

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "-")
    }

    private static func identifiers(_ bytes: ArraySlice<UInt8>, part: String, input: String) throws(CoreError) -> [String] {
        var result: [String] = []
        for identifier in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !identifier.isEmpty else {
                throw CoreError(.versionEmptyIdentifier,
                                "the \(part) of version \"\(input)\" has an empty identifier (two dots, or a dot at an end)",
                                context: ["input": input, "part": part])
            }
            if let bad = identifier.first(where: { !isIdentifierByte($0) }) {
                throw CoreError(.versionInvalidCharacter,
                                "the \(part) of version \"\(input)\" contains \"\(displaySafe(String(decoding: [bad], as: UTF8.self)))\"; "
                                + "expected letters, digits and '-'",
                                context: ["input": input, "part": part])
            }
            result.append(String(decoding: identifier, as: UTF8.self))
        }
        return result
    }

    private static func number(_ text: String, part: String, input: String) throws(CoreError) -> UInt64 {
        if text.utf8.count > 1 && text.utf8.first == UInt8(ascii: "0") {
            throw CoreError(.versionLeadingZero,
                            "the \(part) number \"\(displaySafe(text))\" of version \"\(input)\" has a leading zero",
                            context: ["input": input, "part": part])
        }
        guard let value = UInt64(text) else {
            throw CoreError(.versionNumberTooLarge,
                            "the \(part) number of version \"\(input)\" is larger than \(UInt64.max)",
                            context: ["input": input, "part": part])
        }
        return value
    }

    private static func render(_ major: UInt64, _ minor: UInt64, _ patch: UInt64,
                               _ prerelease: [PrereleaseIdentifier], _ build: [String]) -> String {
        var text = "\(major).\(minor).\(patch)"
        if !prerelease.isEmpty { text += "-" + prerelease.map(\.description).joined(separator: ".") }
        if !build.isEmpty { text += "+" + build.joined(separator: ".") }
        return text
    }
}
