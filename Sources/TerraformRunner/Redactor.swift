import Foundation

/// Replaces every known secret value in text before it leaves the process.
///
/// Invariant (SPEC §7): credential values handed to terraform, values of
/// `sensitive` variables and values terraform marks sensitive in its plan JSON
/// never reach logs, renderings, errors or stored JSON. Terraform itself only
/// masks what it knows is sensitive; a credential passed as a plain `TF_VAR_`
/// or echoed by a provider would otherwise be printed verbatim.
///
/// Values shorter than ``minimumSecretLength`` are ignored: replacing every
/// occurrence of a two-letter string would destroy the output while protecting
/// nothing an attacker could not guess.
public struct Redactor: Sendable {
    /// What a secret is replaced with.
    public static let placeholder = "(redacted)"
    /// Shorter values are not treated as secrets (see the type's documentation).
    public static let minimumSecretLength = 4

    /// Longest first, so a secret that contains another is replaced whole.
    private let patterns: [String]

    /// - Parameter secrets: secret values. Multi-line values are redacted line
    ///   by line too (output is streamed line by line), and their JSON/HCL
    ///   escaped forms are covered as well.
    public init(secrets: some Sequence<String> = [String]()) {
        var set = Set<String>()
        for secret in secrets {
            for variant in Self.variants(of: secret) where variant.utf8.count >= Self.minimumSecretLength {
                set.insert(variant)
            }
        }
        patterns = set.sorted { $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1 }
    }

    /// A redactor that also hides `more`.
    public func adding(_ more: some Sequence<String>) -> Redactor {
        Redactor(secrets: patterns + Array(more))
    }

    /// Number of distinct patterns searched for (variants included).
    public var patternCount: Int { patterns.count }

    /// `text` with every secret replaced by ``placeholder``.
    public func redact(_ text: String) -> String {
        guard !patterns.isEmpty, !text.isEmpty else { return text }
        var result = text
        for pattern in patterns where result.contains(pattern) {
            result = result.replacingOccurrences(of: pattern, with: Self.placeholder)
        }
        return result
    }

    private static func variants(of secret: String) -> [String] {
        var variants = [secret]
        let escaped = secret
            .replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\t", with: "\\t")
        if escaped != secret { variants.append(escaped) }
        // JSON encoders may also escape "/" and non-ASCII; cover the common one.
        let slashEscaped = escaped.replacingOccurrences(of: "/", with: "\\/")
        if slashEscaped != escaped { variants.append(slashEscaped) }
        if secret.contains("\n") {
            variants += secret.split(separator: "\n").map(String.init)
        }
        return variants
    }
}
