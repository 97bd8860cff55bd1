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

    @Test("the redactor matches bytes: a combining mark after a secret, NFD text, overlapping secrets, Go and HCL escapes")
    func redactorBytes() {
        let secret = "s3cret-token"
        let redactor = Redactor(secrets: [secret, "café-key", "abcdXYZ", "XYZefgh", "a<b&c>d", "x${y}z"])
        // A Character-level search does not see "s3cret-token" in "s3cret-tokeń".
        let combined = redactor.redact("value=\(secret)\u{301} end")
        #expect(!combined.utf8.elementsEqual("value=\(secret)\u{301} end".utf8))
        #expect(!Array(combined.utf8).containsBytes(Array(secret.utf8)))
        // The decomposed form of a secret given precomposed.
        #expect(redactor.redact("k=cafe\u{301}-key") == "k=\(Redactor.placeholder)")
        // Overlapping occurrences leave no piece of either secret visible.
        #expect(redactor.redact("[abcdXYZefgh]") == "[\(Redactor.placeholder)]")
        // Terraform's JSON escapes <, >, & as \u003c, \u003e, \u0026; HCL doubles ${.
        #expect(redactor.redact(#""a\u003cb\u0026c\u003ed""#) == "\"\(Redactor.placeholder)\"")
        #expect(redactor.redact("x$${y}z") == Redactor.placeholder)
        // Nothing to hide: the text comes back unchanged.
        #expect(redactor.redact("plain text") == "plain text")
    }

    @Test("a secret split across reads or across the cut of an over-long line is still redacted")
    func lineAssemblySplits() {
        let secret = "split-secret-0123456789"
        let redactor = Redactor(secrets: [secret])
        for maxLineBytes in [5, 8, 16, 64, 4096] {
            for offset in 0..<24 {
                let line = String(repeating: "a", count: offset) + secret + String(repeating: "b", count: 40) + "é…"
                let pieces = Box<[String]>([])
                var assembler = LineAssembler(maxLineBytes: maxLineBytes, redactor: redactor) { pieces.value.append($0) }
                // One byte per read: every possible split point of the secret.
                for byte in Array((line + "\nnext line\n").utf8) {
                    withUnsafeBytes(of: byte) { assembler.feed($0) }
                }
                assembler.finish()
                let joined = pieces.value.joined()
                #expect(!joined.contains(secret), "max \(maxLineBytes) offset \(offset): \(pieces.value)")
                #expect(joined.contains(Redactor.placeholder))
                #expect(pieces.value.last == "next line")
                #expect(joined == String(repeating: "a", count: offset) + Redactor.placeholder + String(repeating: "b", count: 40)
                        + "é…" + "next line", "nothing but the secret is lost, no UTF-8 sequence is cut")
            }
        }
        // Without secrets a long line arrives in pieces of at most maxLineBytes.
        let pieces = Box<[String]>([])
        var plain = LineAssembler(maxLineBytes: 10, redactor: Redactor()) { pieces.value.append($0) }
        let long = String(repeating: "0123456789", count: 10)
        long.utf8.withContiguousStorageIfAvailable { plain.feed(UnsafeRawBufferPointer($0)) }
        plain.finish()
        #expect(pieces.value == Array(repeating: "0123456789", count: 10))
    }

    @Test("plan JSON: a secret hidden by JSON escapes anywhere (strings, keys, numbers) is redacted; the rest is terraform's bytes")
    func planJSONEscapedSecrets() throws {
        let credential = "pa<ss\"w&rd>x"
        // Terraform writes it as "pa\u003css\"w\u0026rd\u003ex"; the marked value
        // "hidden-5" appears again elsewhere as "hidden\u002d5" and as a key.
        let json = #"""
        {"resource_changes":[{"change":{"after":{"a":"hidden-5","n":31337,"echo":"pa\u003css\"w\u0026rd\u003ex"},
          "after_sensitive":{"a":true,"n":true}}}],
         "prior_state":{"copy":"hidden\u002d5","hidden-5":1,"num":31337,"other":"kept \u003c"}}
        """#
        let (redacted, secrets) = try PlanJSONRedaction.redact(Data(json.utf8), redactor: Redactor(secrets: [credential]))
        #expect(secrets == ["hidden-5", "31337"])
        let text = String(decoding: redacted, as: UTF8.self)
        let decoded = try JSONSerialization.jsonObject(with: redacted)
        let everything = "\(decoded)" + text
        for value in [credential, "hidden-5", "hidden\\u002d5", "31337", "pa\\u003css"] {
            #expect(!everything.contains(value), "\(value) leaked: \(text)")
        }
        #expect(text.contains(#""other":"kept \u003c""#), "untouched tokens keep terraform's own escapes")

        // Without secrets the output is terraform's document byte for byte.
        let clean = #"{"a": [1, 2.5e3, true, null, "x\u00e9\n"], "b": {}}"#
        #expect(try PlanJSONRedaction.redact(Data(clean.utf8)).json == Data(clean.utf8))
    }

    @Test("plan JSON that is malformed or nested too deeply is refused, not passed through")
    func planJSONMalformed() {
        let deep = String(repeating: "[", count: PlanJSONRedaction.maximumDepth + 2) + String(repeating: "]", count: PlanJSONRedaction.maximumDepth + 2)
        for bad in ["{\"a\":}", "[1,]", "{\"a\":\"\u{1}\"}", "\"\\x\"", "{} {}", "tru", deep] {
            let error = #expect(throws: TerraformRunnerError.self) { _ = try PlanJSONRedaction.redact(Data(bad.utf8)) }
            #expect(error?.code == .malformedOutput)
        }
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

/// A mutable value a non-Sendable closure can append to (tests only, one thread).
final class Box<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
