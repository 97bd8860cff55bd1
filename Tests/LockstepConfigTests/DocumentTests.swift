import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

@Suite("YAML documents: size, nesting, aliases, duplicates, syntax")
struct DocumentTests {
    @Test("a billion-laughs alias bomb is refused at the first alias, without expanding it")
    func aliasBomb() {
        var yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            yaml += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = name
        }
        let errors = agentErrors(yaml)
        #expect(errors.map(\.code) == [.alias], "\(ConfigErrors(errors))")
    }

    @Test("a single alias is refused even where the value would be valid")
    func singleAlias() {
        let yaml = agentYAML(prodApprovers: "*people").replacingOccurrences(of: "    approvers: [alice]\n", with: "    approvers: &people [alice]\n")
        let errors = agentErrors(yaml)
        #expect(errors.map(\.code) == [.alias], "\(ConfigErrors(errors))")
        #expect(errors.first?.keyPath == "environments.prod.approvers")
    }

    @Test("a merge key pulling in an anchored mapping is refused")
    func mergeKey() {
        let yaml = agentYAML(prod: "<<: *base").replacingOccurrences(of: "  staging:\n", with: "  staging: &base\n")
        #expect(agentErrors(yaml).contains { $0.code == .alias })
    }

    @Test("empty values and flow mappings are not mistaken for aliases")
    func nullsAreNotAliases() throws {
        let c = try RepoConfig.parse(yaml: "projects:\n  a: {dir: a, environments: {dev: , prod: }}\n  b:\n    dir: b\n    environments:\n      dev:\n      prod:\n")
        #expect(c.projects.count == 2)
        // A null where a value is required is a type error, not an alias.
        let errors = agentErrors(agentYAML(extra: "tag_pattern:\n"))
        #expect(errors.map(\.code) == [.wrongType])
    }

    @Test("nesting past the walk's bound is refused by the walk; the deepest the lexical bound lets through is refused, not a crash")
    func deepFlowNesting() {
        func nested(_ depth: Int) -> String {
            "mirror_dir: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "\n"
        }
        #expect(agentErrors(nested(DocumentLimits.maxDepth + 1)).map(\.code) == [.tooComplex])
        // libyaml itself stops at its own depth limit (a syntax error) before the walk sees it.
        let deepest = agentErrors(nested(DocumentLimits.maxFlowBrackets - 1)).map(\.code)
        #expect(deepest == [.tooComplex] || deepest == [.syntax], "\(deepest)")
    }

    @Test("a document of hundreds of thousands of brackets is refused before Yams builds a tree")
    func bracketFlood() {
        let yaml = "a: " + String(repeating: "[", count: 500_000)
        #expect(agentErrors(yaml).map(\.code) == [.tooComplex])
    }

    @Test("deep block nesting by indentation is refused")
    func deepBlockNesting() {
        var yaml = ""
        for level in 0..<200 { yaml += String(repeating: " ", count: level) + "k\(level):\n" }
        #expect(agentErrors(yaml).map(\.code) == [.tooComplex])
    }

    @Test("compact block sequences on one line (`- - - x`) count toward the indentation bound")
    func compactSequences() {
        var yaml = ""
        for _ in 0..<70 { yaml += String(repeating: "-", count: 1) + " " }
        yaml += "x\n"
        #expect(agentErrors(yaml).map(\.code) == [.tooComplex])
    }

    @Test("a key given twice is an error, whichever value would have won")
    func duplicateKeys() {
        let errors = agentErrors(agentYAML(extra: "mirror_dir: /tmp/other\n"))
        #expect(errors.contains { $0.code == .duplicateKey && $0.keyPath == "mirror_dir" }, "\(ConfigErrors(errors))")
    }

    @Test("a syntax error gives its position and never quotes the line (it may hold a secret)")
    func syntaxErrorDoesNotEcho() {
        let errors = agentErrors("repository:\n  url: \"https://h/x.git\n  password: hunter2-literal\nfoo: [\n")
        #expect(errors.map(\.code) == [.syntax])
        #expect(errors.first.map { !$0.description.contains("hunter2") } == true)
        #expect(errors.first?.description.contains("line") == true)
    }

    @Test("the document must be one mapping", arguments: ["", "- a\n- b\n", "just text\n", "a: 1\n---\nb: 2\n"])
    func topLevelShape(yaml: String) {
        let errors = agentErrors(yaml)
        #expect(errors.count == 1)
        #expect(errors.first.map { [.wrongType, .syntax].contains($0.code) } == true)
    }

    @Test("hostile keys are not echoed verbatim into messages")
    func hostileKeys() {
        let key = "ghp_" + String(repeating: "Z", count: 80)
        let errors = agentErrors(agentYAML(extra: "\(key): 1\n\"bad\\nkey\": 2\n"))
        #expect(errors.count == 2)
        #expect(errors.allSatisfy { !$0.description.contains("ZZZZ") && !$0.description.contains("\n") })
    }

    @Test("error descriptions are `FILE: KEY.PATH: expected …`")
    func descriptionFormat() {
        let e = ConfigError(file: "/etc/lockstep/agent.yaml", keyPath: "environments.prod.approvals", expected: "an integer between 1 and 20", code: .invalidValue)
        #expect(e.description == "/etc/lockstep/agent.yaml: environments.prod.approvals: expected an integer between 1 and 20")
        let all = ConfigErrors([e, ConfigError(file: "f", keyPath: "", expected: "x", code: .syntax)])
        #expect(all.description == e.description + "\nf: (document): expected x")
    }

    @Test("durations: accepted and refused spellings", arguments: [
        ("30s", 30), ("5m", 300), ("2h", 7_200), ("1d", 86_400), ("1h30m", 5_400), ("1d2h3m4s", 93_784),
        ("", nil), ("30", nil), ("1.5h", nil), ("m", nil), ("5m1h", nil), ("5mm", nil), ("-5m", nil), ("5 m", nil),
    ] as [(String, Int?)])
    func durations(text: String, seconds: Int?) {
        #expect(parseDurationSeconds(text) == seconds)
    }
}
