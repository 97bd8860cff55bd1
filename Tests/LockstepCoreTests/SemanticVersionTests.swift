import Foundation
import Testing
@testable import LockstepCore

/// Strict SemVer 2.0.0 parsing, precedence and errors.
@Suite struct SemanticVersionTests {
    /// Valid inputs parse and print canonically (the `v` is dropped).
    @Test(arguments: [
        ("1.4.0", "1.4.0"), ("v1.4.0", "1.4.0"), ("0.0.0", "0.0.0"),
        ("1.0.0-rc.1", "1.0.0-rc.1"), ("1.0.0-alpha-beta.0.x", "1.0.0-alpha-beta.0.x"),
        ("1.0.0+build.007", "1.0.0+build.007"), ("v2.3.4-0.a+sha.5114f85", "2.3.4-0.a+sha.5114f85"),
        ("18446744073709551615.0.0", "18446744073709551615.0.0"),
    ])
    func parsesValidVersions(input: String, canonical: String) throws {
        #expect(try SemanticVersion(input).description == canonical)
    }

    /// Invalid inputs are refused with the code that names what was wrong.
    @Test(arguments: [
        ("", CoreError.Code.versionEmpty),
        ("1.2", .versionCoreInvalid), ("1.2.3.4", .versionCoreInvalid), ("V1.2.3", .versionCoreInvalid),
        ("vv1.2.3", .versionCoreInvalid), ("1.2.x", .versionCoreInvalid), (" 1.2.3", .versionCoreInvalid),
        ("1.2.3 ", .versionCoreInvalid), ("=1.2.3", .versionCoreInvalid), ("1..3", .versionCoreInvalid),
        ("01.2.3", .versionLeadingZero), ("1.02.3", .versionLeadingZero), ("1.2.3-01", .versionLeadingZero),
        ("18446744073709551616.0.0", .versionNumberTooLarge),
        ("1.2.3-", .versionEmptyIdentifier), ("1.2.3-a..b", .versionEmptyIdentifier), ("1.2.3+", .versionEmptyIdentifier),
        ("1.2.3-a_b", .versionInvalidCharacter), ("1.2.3+a/b", .versionInvalidCharacter),
        ("1.2.3-rc\n1", .versionInvalidCharacter), ("1.2.3-é", .versionInvalidCharacter),
        ("1.2.3-" + String(repeating: "a", count: 123), .versionTooLong),
    ])
    func refusesInvalidVersions(input: String, code: CoreError.Code) {
        #expect(throws: CoreError.self) { try SemanticVersion(input) }
        do {
            _ = try SemanticVersion(input)
        } catch {
            #expect(error.code == code, "\(error.debugDescription)")
        }
    }

    /// The 128-byte limit is inclusive, and an oversized input is refused before parsing.
    @Test func lengthLimitIsExactly128Bytes() throws {
        let base = "1.2.3-"
        let fits = base + String(repeating: "a", count: 128 - base.utf8.count)
        #expect(try SemanticVersion(fits).prerelease.count == 1)
        #expect(throws: CoreError.self) { try SemanticVersion(fits + "a") }
    }

    /// The SemVer 2.0.0 §11 example chain is strictly increasing.
    @Test func precedenceFollowsTheSpecExample() {
        let chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                     "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"].map(version)
        for (lower, higher) in zip(chain, chain.dropFirst()) {
            #expect(lower < higher, "\(lower) < \(higher)")
            #expect(!(higher < lower), "not \(higher) < \(lower)")
        }
        #expect(chain.shuffled().sorted() == chain)
    }

    /// Build metadata is ignored for precedence but kept for equality, and `v` does not matter.
    @Test func buildMetadataIsIgnoredForPrecedence() {
        let a = version("1.0.0+a"), b = version("1.0.0+b")
        #expect(!(a < b) && !(b < a))
        #expect(a.hasSamePrecedence(as: b))
        #expect(a != b)
        #expect(version("v1.0.0") == version("1.0.0"))
    }

    /// Error descriptions escape hostile input so it cannot forge log lines.
    @Test func errorDescriptionEscapesControlCharacters() {
        do {
            _ = try SemanticVersion("1.2\n[INFO] approved")
            Issue.record("expected an error")
        } catch {
            #expect(!error.description.contains("\n"))
            #expect(error.description.contains("\\n"))
        }
    }

    /// The memberwise initialiser validates like the parser and Codable round-trips as text.
    @Test func memberwiseInitAndCodable() throws {
        let built = try SemanticVersion(major: 1, minor: 2, patch: 3, prerelease: [.alphanumeric("rc"), .numeric(1)])
        #expect(built == version("1.2.3-rc.1"))
        #expect(throws: CoreError.self) { try SemanticVersion(major: 1, minor: 0, patch: 0, prerelease: [.alphanumeric("1")]) }
        #expect(throws: CoreError.self) { try SemanticVersion(major: 1, minor: 0, patch: 0, buildMetadata: ["a.b"]) }
        let data = try JSONEncoder().encode([built])
        #expect(String(decoding: data, as: UTF8.self) == "[\"1.2.3-rc.1\"]")
        #expect(try JSONDecoder().decode([SemanticVersion].self, from: data) == [built])
        #expect(throws: (any Error).self) { try JSONDecoder().decode([SemanticVersion].self, from: Data("[\"1.2\"]".utf8)) }
    }
}
