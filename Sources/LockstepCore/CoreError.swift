/// The one error type of the core: a growable `Code`, a client-safe `description`
/// and context for logs.
///
/// Every string taken from outside (tag names, versions, identifiers) is passed
/// through ``displaySafe(_:limit:)`` before it reaches `description` or `context`,
/// so a hostile tag name cannot inject lines or escape sequences into logs,
/// status pages or the audit log (docs/THREAT-MODEL.md §3.2, hostile tag names).
public struct CoreError: Error, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, as a stable machine-readable value. A struct with static
    /// members rather than an enum, so new codes never break callers.
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        // Semantic versions
        public static let versionEmpty = Code(rawValue: "version_empty")
        public static let versionTooLong = Code(rawValue: "version_too_long")
        public static let versionCoreInvalid = Code(rawValue: "version_core_invalid")
        public static let versionLeadingZero = Code(rawValue: "version_leading_zero")
        public static let versionNumberTooLarge = Code(rawValue: "version_number_too_large")
        public static let versionEmptyIdentifier = Code(rawValue: "version_empty_identifier")
        public static let versionInvalidCharacter = Code(rawValue: "version_invalid_character")
        // Tag patterns
        public static let patternInvalid = Code(rawValue: "pattern_invalid")
        // Identifiers
        public static let identifierInvalid = Code(rawValue: "identifier_invalid")
        // Policies and rules
        public static let policyInvalid = Code(rawValue: "policy_invalid")
        public static let rollbackVersionNotAccepted = Code(rawValue: "rollback_version_not_accepted")
        public static let runStateInvalid = Code(rawValue: "run_state_invalid")
        // Plans
        public static let planUnreadable = Code(rawValue: "plan_unreadable")
    }

    public let code: Code
    /// Safe to show a client: no secrets, untrusted text escaped and truncated.
    public let description: String
    /// Extra detail for logs (already escaped).
    public let context: [String: String]

    public init(_ code: Code, _ description: String, context: [String: String] = [:]) {
        self.code = code
        self.description = description
        self.context = context
    }

    public var debugDescription: String {
        let detail = context.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return detail.isEmpty ? "[\(code)] \(description)" : "[\(code)] \(description) (\(detail))"
    }
}

/// Renders untrusted text for humans: control characters, quotes and backslashes
/// escaped, non-ASCII shown as `\u{…}`, cut at `limit` characters.
///
/// Why: tag names and versions come from the delivery repo, which is untrusted
/// (docs/CONTRACT.md §7). A name carrying a newline or an ANSI escape must not forge log
/// lines or audit text when it is quoted in an error.
public func displaySafe(_ text: String, limit: Int = 80) -> String {
    var out = ""
    var count = 0
    for scalar in text.unicodeScalars {
        if count >= limit {
            out += "…"
            break
        }
        switch scalar {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value >= 0x20 && scalar.value < 0x7F {
                out.unicodeScalars.append(scalar)
            } else {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        count += 1
    }
    return out
}
