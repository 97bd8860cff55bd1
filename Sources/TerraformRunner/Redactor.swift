import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Replaces every known secret value in text before it leaves the process.
///
/// Invariant (docs/CONTRACT.md §7): credential values handed to terraform, values of
/// `sensitive` variables and values terraform marks sensitive in its plan JSON
/// never reach logs, renderings, errors or stored JSON. Terraform itself only
/// masks what it knows is sensitive; a credential passed as a plain `TF_VAR_`
/// or echoed by a provider would otherwise be printed verbatim.
///
/// Matching is on UTF-8 bytes, not on `Character`s: a character-level search
/// does not find a secret that is followed by a combining mark (the last
/// character of the secret then merges with the mark), so `secret` + U+0301
/// printed by a hostile provider would leave the process in clear. Every byte
/// covered by any occurrence of any secret is replaced, and overlapping or
/// touching occurrences become one placeholder, so two overlapping secrets
/// cannot leave a piece of either visible.
///
/// Values shorter than ``minimumSecretLength`` bytes are ignored: replacing
/// every occurrence of a two-letter string would destroy the output while
/// protecting nothing an attacker could not guess.
public struct Redactor: Sendable {
    /// What a secret is replaced with.
    public static let placeholder = "(redacted)"
    /// Shorter values are not treated as secrets (see the type's documentation).
    public static let minimumSecretLength = 4

    private static let placeholderBytes = Array(placeholder.utf8)

    /// The values this redactor was built from (variants are derived from them).
    private let secrets: [String]
    /// UTF-8 bytes of every value and variant searched for, longest first.
    private let patterns: [[UInt8]]
    /// Patterns made only of characters that can occur in a JSON number.
    let numericPatterns: [[UInt8]]
    /// Byte length of the longest pattern (0 when there is none).
    let longestPatternBytes: Int

    /// - Parameter secrets: secret values. Multi-line values are redacted line
    ///   by line too (output is streamed line by line); their escaped forms in
    ///   JSON (Go's and Foundation's), HCL and their Unicode NFC/NFD forms are
    ///   covered as well.
    public init(secrets: some Sequence<String> = [String]()) {
        var values: [String] = []
        var set = Set<[UInt8]>()
        for secret in secrets where secret.utf8.count >= Self.minimumSecretLength {
            values.append(secret)
            for variant in Self.variants(of: secret) where variant.utf8.count >= Self.minimumSecretLength {
                set.insert(Array(variant.utf8))
            }
        }
        self.secrets = values
        patterns = set.sorted { $0.count != $1.count ? $0.count > $1.count : $0.lexicographicallyPrecedes($1) }
        numericPatterns = patterns.filter { $0.allSatisfy(JSONBytes.isNumberByte) }
        longestPatternBytes = patterns.first?.count ?? 0
    }

    /// A redactor that also hides `more`.
    public func adding(_ more: some Sequence<String>) -> Redactor {
        Redactor(secrets: secrets + Array(more))
    }

    /// Number of distinct patterns searched for (variants included).
    public var patternCount: Int { patterns.count }

    /// `text` with every secret replaced by ``placeholder``.
    public func redact(_ text: String) -> String {
        guard !patterns.isEmpty, !text.isEmpty else { return text }
        var text = text
        let redacted = text.withUTF8 { redact(bytes: UnsafeRawBufferPointer($0)) }
        guard let redacted else { return text }
        return String(decoding: redacted, as: UTF8.self)
    }

    /// True when `bytes` contain any secret.
    func containsSecret(_ bytes: UnsafeRawBufferPointer) -> Bool {
        patterns.contains { Self.firstOccurrence(of: $0, in: bytes, from: 0) != nil }
    }

    /// `bytes` redacted, or nil when they contain no secret (nothing is copied then).
    func redact(bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        let covered = coveredRanges(in: bytes)
        guard !covered.isEmpty else { return nil }
        return Self.replacing(covered, in: bytes)
    }

    /// The merged byte ranges of `bytes` that belong to an occurrence of a
    /// secret, plus `forced` (bytes already known to continue a secret).
    func coveredRanges(in bytes: UnsafeRawBufferPointer, forced: Range<Int>? = nil) -> [Range<Int>] {
        var found: [Range<Int>] = []
        if let forced, !forced.isEmpty { found.append(forced) }
        for pattern in patterns where pattern.count <= bytes.count {
            var from = 0
            while let start = Self.firstOccurrence(of: pattern, in: bytes, from: from) {
                found.append(start..<(start + pattern.count))
                from = start + 1
            }
        }
        guard found.count > 1 else { return found }
        found.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int>] = []
        for range in found {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// `bytes` with each of the sorted, disjoint `ranges` replaced by the placeholder.
    static func replacing(_ ranges: [Range<Int>], in bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + ranges.count * placeholderBytes.count)
        var position = 0
        for range in ranges {
            output.append(contentsOf: bytes[position..<range.lowerBound])
            output.append(contentsOf: placeholderBytes)
            position = range.upperBound
        }
        output.append(contentsOf: bytes[position...])
        return output
    }

    /// Start of the first occurrence of `pattern` in `bytes` at or after `from`.
    /// `memchr` finds candidates for the first byte, `memcmp` confirms them.
    private static func firstOccurrence(of pattern: [UInt8], in bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let base = bytes.baseAddress, let first = pattern.first else { return nil }
        let lastStart = bytes.count - pattern.count
        var index = from
        return pattern.withUnsafeBytes { needle -> Int? in
            guard let needleBase = needle.baseAddress else { return nil }
            while index <= lastStart {
                guard let hit = memchr(base + index, Int32(first), lastStart - index + 1) else { return nil }
                let start = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(base + start, needleBase, pattern.count) == 0 { return start }
                index = start + 1
            }
            return nil
        }
    }

    private static func variants(of secret: String) -> [String] {
        // String equality is canonical equivalence: compare bytes, or the
        // other normal form would be dropped as a duplicate.
        var forms = [secret]
        for normalized in [secret.precomposedStringWithCanonicalMapping, secret.decomposedStringWithCanonicalMapping]
        where !forms.contains(where: { $0.utf8.elementsEqual(normalized.utf8) }) {
            forms.append(normalized)
        }
        var variants: [String] = []
        for form in forms {
            variants.append(form)
            // Foundation's JSON writer and HCL-style rendering.
            let escaped = form
                .replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
                .replacingOccurrences(of: "\t", with: "\\t")
                .replacingOccurrences(of: "\r", with: "\\r")
            variants.append(escaped)
            variants.append(escaped.replacingOccurrences(of: "/", with: "\\/"))
            variants.append(escaped.replacingOccurrences(of: "${", with: "$${").replacingOccurrences(of: "%{", with: "%%{"))
            // Terraform's own JSON (Go's encoder: HTML characters and control
            // characters as \u escapes).
            variants.append(String(decoding: JSONBytes.encodedStringContents(form), as: UTF8.self))
            if form.contains("\n") {
                variants += form.split(separator: "\n").map(String.init)
            }
        }
        return variants
    }
}

/// Byte-level JSON helpers shared by the redactor and the plan JSON redaction.
enum JSONBytes {
    static func isNumberByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    /// The inside of a JSON string literal for `text`, escaped the way Go's
    /// `encoding/json` (and so terraform) escapes it.
    static func encodedStringContents(_ text: String) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        let hex = Array("0123456789abcdef".utf8)
        func unicodeEscape(_ value: UInt32) {
            output += Array("\\u".utf8)
            for shift in stride(from: 12, through: 0, by: -4) { output.append(hex[Int((value >> UInt32(shift)) & 0xF)]) }
        }
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: output += Array("\\\"".utf8)
            case 0x5C: output += Array("\\\\".utf8)
            case 0x0A: output += Array("\\n".utf8)
            case 0x0D: output += Array("\\r".utf8)
            case 0x09: output += Array("\\t".utf8)
            case 0..<0x20, 0x3C, 0x3E, 0x26, 0x2028, 0x2029: unicodeEscape(scalar.value)
            default: output += Array(String(scalar).utf8)
            }
        }
        return output
    }
}
