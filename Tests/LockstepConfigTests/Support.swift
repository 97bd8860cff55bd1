import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// A valid agent config, assembled from top-level sections so a test can replace or drop one.
/// Extra lines for the `prod` environment are indented under it.
func agentYAML(replacing: [String: String] = [:], removing: Set<String> = [], prod: String = "", prodApprovers: String = "[alice, bob]", extra: String = "") -> String {
    let sections: [(String, String)] = [
        ("repository", "repository:\n  url: https://git.example.com/infra/delivery.git\n"),
        ("mirror_dir", "mirror_dir: /var/lib/lockstep/mirror\n"),
        ("terraform", "terraform:\n  binary: /usr/bin/terraform\n"),
        ("store", "store:\n  sqlite: /var/lib/lockstep/db.sqlite\n"),
        ("environments", "environments:\n  staging:\n    serves: true\n    approvers: [alice]\n  prod:\n    serves: true\n    approvers: \(prodApprovers)\n"
            + prod.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }.map { "    " + $0 + "\n" }.joined()),
        ("identities", """
        identities:
          alice:
            token_sha256: \(String(repeating: "a", count: 64))
            emails: [alice@example.com]
          bob:
            token_sha256: \(String(repeating: "b", count: 64))
            emails: [bob@example.com]

        """),
    ]
    var out = ""
    for (key, text) in sections where !removing.contains(key) {
        out += replacing[key].map { $0.hasSuffix("\n") ? $0 : $0 + "\n" } ?? text
    }
    return out + extra
}

/// Parses and returns the errors (empty when the config is valid).
func agentErrors(_ yaml: String, base: String = "/etc/lockstep") -> [ConfigError] {
    do {
        _ = try AgentConfig.parse(yaml: yaml, file: "agent.yaml", baseDirectory: base)
        return []
    } catch {
        return error.errors
    }
}

func repoErrors(_ yaml: String) -> [ConfigError] {
    do {
        _ = try RepoConfig.parse(yaml: yaml, file: "lockstep.yaml")
        return []
    } catch {
        return error.errors
    }
}

/// One bad-value row: the YAML, and the key path and code an error must carry.
struct BadRow: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var keyPath: String
    var code: ConfigError.Code
    /// Text that must not appear in any error (a secret the row plants).
    var secret: String? = nil
    var testDescription: String { name }
}

func expectError(_ errors: [ConfigError], _ row: BadRow, sourceLocation: SourceLocation = #_sourceLocation) {
    let hit = errors.contains { $0.keyPath == row.keyPath && $0.code == row.code }
    #expect(hit, "expected \(row.code) at `\(row.keyPath)`, got:\n\(ConfigErrors(errors))", sourceLocation: sourceLocation)
    for error in errors {
        #expect(error.description.hasPrefix("\(error.file): "), sourceLocation: sourceLocation)
        #expect(error.description.contains(": expected "), sourceLocation: sourceLocation)
        if let secret = row.secret {
            #expect(!error.description.contains(secret), "error echoes a planted secret: \(error)", sourceLocation: sourceLocation)
        }
    }
}

/// The package root, found from this file's location.
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A fresh scratch folder, removed by the caller.
func makeTempDir() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-config-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
