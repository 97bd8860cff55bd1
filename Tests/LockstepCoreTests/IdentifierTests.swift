import Foundation
import Testing
@testable import LockstepCore

/// Validated identifiers: decoding runs the same validation as construction.
@Suite struct IdentifierTests {
    /// Invalid values in stored JSON are refused on decode, never trusted.
    @Test(arguments: ["\"\"", "\"a/b\"", "\"run id\"", "\"../x\"", "\"\(String(repeating: "r", count: 65))\""])
    func decodingValidates(json: String) {
        #expect(throws: (any Error).self) { try JSONDecoder().decode(RunID.self, from: Data(json.utf8)) }
        #expect(throws: (any Error).self) { try JSONDecoder().decode(EnvironmentName.self, from: Data(json.utf8)) }
    }

    /// Valid values round-trip as plain strings; a target encodes both names; object ids are lowercased.
    @Test func roundTrips() throws {
        let target = TargetID(project: project("net.core"), environment: env("prod"))
        #expect(target.description == "net.core/prod")
        let data = try JSONEncoder().encode(target)
        #expect(try JSONDecoder().decode(TargetID.self, from: data) == target)
        #expect(try JSONDecoder().decode(RunID.self, from: Data("\"01J-abc_9\"".utf8)) == runID("01J-abc_9"))
        #expect(try GitObjectID(String(repeating: "A", count: 40)) == object("a"))
        #expect(throws: CoreError.self) { try GitObjectID(String(repeating: "a", count: 41)) }
        #expect(try IdentityName("alice@example.org").rawValue == "alice@example.org")
    }

    /// displaySafe escapes control characters and non-ASCII, and truncates.
    @Test func displaySafeEscapes() {
        #expect(displaySafe("a\nb\u{1B}[31m\"é") == "a\\nb\\u{1b}[31m\\\"\\u{e9}")
        #expect(displaySafe(String(repeating: "x", count: 100), limit: 5) == "xxxxx…")
    }
}
