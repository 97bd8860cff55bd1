import Foundation
import Testing
@testable import TerraformRunner

/// Pure pieces: redaction, classification, summary parsing, bounded retention.
@Suite("TerraformRunner units")
struct UnitTests {
    @Test("the redactor replaces secrets, their escaped forms and each line of multi-line secrets; ignores tiny values")
    func redactor() {
        let redactor = Redactor(secrets: ["p@ss\"word", "line-one\nline-two", "abc", "p@ss\"word-longer"])
        #expect(redactor.redact("x p@ss\"word-longer y") == "x (redacted) y")
        #expect(redactor.redact("json \"p@ss\\\"word\"") == "json \"(redacted)\"")
        #expect(redactor.redact("line-two only") == "(redacted) only")
        #expect(redactor.redact("abc stays") == "abc stays")
    }

    @Test("exit codes and terraform's messages are classified into outcomes")
    func classification() {
        #expect(CommandOutcome.classify(exitCode: 0, interruption: nil, output: "") == .succeeded)
        #expect(CommandOutcome.classify(exitCode: 1, interruption: nil, output: "Error: Saved plan is stale") == .stalePlan)
        let lock = "Error: Error acquiring the state lock\n\nLock Info:\n  ID:        abc-123\n  Path: x"
        #expect(CommandOutcome.classify(exitCode: 1, interruption: nil, output: lock) == .stateLocked(lockID: "abc-123"))
        #expect(CommandOutcome.classify(exitCode: 1, interruption: .timedOut, output: lock) == .timedOut)
        #expect(CommandOutcome.classify(exitCode: 0, interruption: .cancelled, output: "") == .cancelled)
        #expect(CommandOutcome.classify(exitCode: 1, interruption: nil, output: "Error: other") == .failed(exitCode: 1))
    }

    @Test("the summary counts each action kind and lists deleted/replaced addresses")
    func summaryParsing() throws {
        func change(_ address: String, _ type: String, _ actions: [String], mode: String = "managed") -> String {
            let list = actions.map { "\"\($0)\"" }.joined(separator: ",")
            return "{\"address\":\"\(address)\",\"mode\":\"\(mode)\",\"type\":\"\(type)\",\"change\":{\"actions\":[\(list)],\"after\":{\"x\":1}}}"
        }
        let changes = [
            change("a.one", "a", ["create"]), change("b.two", "b", ["update"]), change("c.three", "c", ["delete"]),
            change("d.four", "d", ["delete", "create"]), change("e.five", "e", ["create", "delete"]),
            change("f.six", "f", ["no-op"]), change("data.g.seven", "g", ["read"], mode: "data"),
        ].joined(separator: ",")
        let json = "{\"format_version\":\"1.2\",\"resource_changes\":[\(changes)],\"output_changes\":{\"o\":{\"actions\":[\"update\"]},\"p\":{\"actions\":[\"no-op\"]}}}"
        let summary = try PlanSummary(planJSON: Data(json.utf8))
        #expect(summary.formatVersion == "1.2")
        #expect([summary.create, summary.update, summary.delete, summary.replace, summary.noOp, summary.read] as [Int] == [1, 1, 1, 2, 1, 1] as [Int])
        #expect(summary.deletedAddresses == ["c.three"])
        #expect(summary.replacedAddresses == ["d.four", "e.five"])
        #expect(summary.resourceTypes == ["a", "b", "c", "d", "e", "g"])
        #expect(summary.outputChanges == [.init(name: "o", action: "update")])
        #expect(summary.hasChanges)
        let decoded = try JSONDecoder().decode(PlanSummary.self, from: JSONEncoder().encode(summary))
        #expect(decoded == summary)
        #expect(throws: TerraformRunnerError.self) { _ = try PlanSummary(planJSON: Data("not json".utf8)) }
    }

    @Test("plan JSON redaction follows sensitive masks, sensitive outputs and sensitive variables")
    func planJSONRedaction() throws {
        let json = """
        {"variables":{"pw":{"value":"hidden-1"},"open":{"value":"visible-1"}},
         "configuration":{"root_module":{"variables":{"pw":{"sensitive":true},"open":{}}}},
         "resource_changes":[{"change":{"after":{"a":"hidden-2","b":"visible-2","l":["visible-3","hidden-3"]},
           "after_sensitive":{"a":true,"l":[false,true]},"before":null,"before_sensitive":false}}],
         "planned_values":{"outputs":{"o":{"sensitive":true,"value":"hidden-4"}}}}
        """
        let (redacted, secrets) = try PlanJSONRedaction.redact(Data(json.utf8))
        let text = String(decoding: redacted, as: UTF8.self)
        #expect(secrets == ["hidden-1", "hidden-2", "hidden-3", "hidden-4"])
        for value in secrets { #expect(!text.contains(value)) }
        for value in ["visible-1", "visible-2", "visible-3"] { #expect(text.contains(value)) }
    }

    @Test("retained output stays bounded whatever is printed (10 MB through a 4 KiB tail)")
    func boundedTail() {
        let tail = OutputTail(capacity: 4096)
        let line = String(repeating: "x", count: 99)
        for index in 0..<100_000 { tail.append(index == 99_999 ? "last line" : line) }
        tail.append(String(repeating: "y", count: 1_000_000))
        #expect(tail.text.utf8.count <= 4096)
        #expect(tail.droppedBytes >= 10_000_000 - 4096)
        #expect(tail.text.hasSuffix("yyyy"))
    }
}
