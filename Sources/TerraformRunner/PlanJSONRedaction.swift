import Foundation

/// Redacts the JSON of `terraform show -json` before Lockstep keeps it.
///
/// Terraform prints sensitive values in clear in this JSON: values of
/// `sensitive` input variables under `variables` (seen with terraform 1.11.4), and attribute
/// values it marks in `after_sensitive` / `before_sensitive` /
/// `sensitive_values` next to them. Every such value is replaced with
/// ``Redactor/placeholder`` and returned, so the caller can also scrub it from
/// terraform's human rendering and anything else derived from the plan.
///
/// Then every known secret (the invocation's credentials and the values just
/// learned) is removed wherever else it occurs: inside string tokens it is
/// matched on the *decoded* text, so an escaped form (`\u003c`, `\"`, `\n`,
/// any `\uXXXX`) cannot hide it; a last byte-level pass over the whole result
/// catches anything else.
///
/// The document is parsed once into a flat index of token ranges and the
/// output is terraform's own bytes with the masked ranges spliced out. The
/// previous version built a Foundation object tree and re-serialised it; at
/// 1,000 resources that cost more than a quarter of a second per plan, most of
/// the runner's overhead over plain terraform (BENCHMARKS.md).
public enum PlanJSONRedaction {
    /// Deeper documents are refused (the walk is recursive).
    public static let maximumDepth = 512

    /// The redacted JSON and the sensitive values found in it.
    ///
    /// - Parameter redactor: secrets to remove besides what the plan marks
    ///   sensitive (the invocation's credentials).
    public static func redact(_ json: Data, redactor: Redactor = Redactor()) throws -> (json: Data, secrets: Set<String>) {
        try json.withUnsafeBytes { bytes in
            var parser = JSONIndexParser(bytes: bytes)
            let root = try parser.parseDocument()
            var document = MaskedDocument(bytes: bytes, nodes: parser.nodes)
            document.walk(root)
            document.redactSensitiveVariables(root: root)
            let secrets = document.secrets
            let all = redactor.adding(secrets)
            document.redactTokens(with: all)
            var output = document.spliced()
            if let scrubbed = output.withUnsafeBytes({ all.redact(bytes: $0) }) { output = scrubbed }
            return (Data(output), secrets)
        }
    }
}

/// One JSON value: its token range and its place in the tree.
private struct JSONNode {
    enum Kind { case object, array, string, number, trueLiteral, falseLiteral, null }

    var kind: Kind
    /// Byte range of the value (quotes and brackets included).
    var start: Int
    var end = 0
    /// For strings: the token contains a backslash escape.
    var escaped = false
    /// For members of an object: the byte range of the key (quotes included).
    var keyStart = -1
    var keyEnd = -1
    var keyEscaped = false
    var firstChild = -1
    var nextSibling = -1
}

/// A strict JSON parser that records where each value is instead of building values.
private struct JSONIndexParser {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    var nodes: [JSONNode] = []

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        nodes.reserveCapacity(bytes.count / 16)
    }

    private static func malformed() -> TerraformRunnerError {
        TerraformRunnerError(.malformedOutput, "terraform plan JSON could not be decoded")
    }

    mutating func parseDocument() throws -> Int {
        skipWhitespace()
        let root = try parseValue(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw Self.malformed() }
        return root
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard index < bytes.count, bytes[index] == byte else { throw Self.malformed() }
        index += 1
    }

    private mutating func parseValue(depth: Int) throws -> Int {
        guard depth <= PlanJSONRedaction.maximumDepth, index < bytes.count else { throw Self.malformed() }
        let node = nodes.count
        switch bytes[index] {
        case UInt8(ascii: "{"):
            nodes.append(JSONNode(kind: .object, start: index))
            index += 1
            try parseMembers(of: node, depth: depth)
        case UInt8(ascii: "["):
            nodes.append(JSONNode(kind: .array, start: index))
            index += 1
            try parseElements(of: node, depth: depth)
        case UInt8(ascii: "\""):
            nodes.append(JSONNode(kind: .string, start: index))
            nodes[node].escaped = try scanString()
        case UInt8(ascii: "t"):
            nodes.append(JSONNode(kind: .trueLiteral, start: index))
            try scanLiteral("true")
        case UInt8(ascii: "f"):
            nodes.append(JSONNode(kind: .falseLiteral, start: index))
            try scanLiteral("false")
        case UInt8(ascii: "n"):
            nodes.append(JSONNode(kind: .null, start: index))
            try scanLiteral("null")
        case let byte where byte == UInt8(ascii: "-") || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")):
            nodes.append(JSONNode(kind: .number, start: index))
            while index < bytes.count, JSONBytes.isNumberByte(bytes[index]) { index += 1 }
        default:
            throw Self.malformed()
        }
        nodes[node].end = index
        return node
    }

    private mutating func parseMembers(of object: Int, depth: Int) throws {
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return
        }
        var previous = -1
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw Self.malformed() }
            let keyStart = index
            let keyEscaped = try scanString()
            let keyEnd = index
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            let child = try parseValue(depth: depth + 1)
            nodes[child].keyStart = keyStart
            nodes[child].keyEnd = keyEnd
            nodes[child].keyEscaped = keyEscaped
            if previous < 0 { nodes[object].firstChild = child } else { nodes[previous].nextSibling = child }
            previous = child
            skipWhitespace()
            guard index < bytes.count else { throw Self.malformed() }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "}"))
            return
        }
    }

    private mutating func parseElements(of array: Int, depth: Int) throws {
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return
        }
        var previous = -1
        while true {
            skipWhitespace()
            let child = try parseValue(depth: depth + 1)
            if previous < 0 { nodes[array].firstChild = child } else { nodes[previous].nextSibling = child }
            previous = child
            skipWhitespace()
            guard index < bytes.count else { throw Self.malformed() }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "]"))
            return
        }
    }

    /// Moves past a string token; returns whether it contains an escape.
    private mutating func scanString() throws -> Bool {
        index += 1
        var escaped = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return escaped
            }
            guard byte >= 0x20 else { throw Self.malformed() }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                guard index + 1 < bytes.count else { throw Self.malformed() }
                switch bytes[index + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 5 < bytes.count, (2...5).allSatisfy({ JSONText.hexValue(bytes[index + $0]) != nil })
                    else { throw Self.malformed() }
                    index += 6
                default:
                    throw Self.malformed()
                }
            } else {
                index += 1
            }
        }
        throw Self.malformed()
    }

    private mutating func scanLiteral(_ literal: StaticString) throws {
        let count = literal.utf8CodeUnitCount
        let expected = UnsafeRawBufferPointer(start: literal.utf8Start, count: count)
        guard index + count <= bytes.count, (0..<count).allSatisfy({ bytes[index + $0] == expected[$0] })
        else { throw Self.malformed() }
        index += count
    }
}

/// Decoding of string tokens.
private enum JSONText {
    static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// The text of a (validated) string token spanning `range`, quotes included.
    static func decode(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, escaped: Bool) -> String {
        let inner = UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)])
        guard escaped else { return String(decoding: inner, as: UTF8.self) }
        var output: [UInt8] = []
        output.reserveCapacity(inner.count)
        var index = 0
        func hex4(at position: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 << 4 | (position + $1 < inner.count ? hexValue(inner[position + $1]) ?? 0 : 0) }
        }
        while index < inner.count {
            let byte = inner[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < inner.count else {
                output.append(byte)
                index += 1
                continue
            }
            let kind = inner[index + 1]
            index += 2
            switch kind {
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var value = hex4(at: index)
                index += 4
                if (0xD800..<0xDC00).contains(value), index + 5 < inner.count,
                   inner[index] == UInt8(ascii: "\\"), inner[index + 1] == UInt8(ascii: "u") {
                    let low = hex4(at: index + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                }
                output += Array(String(Unicode.Scalar(value) ?? "\u{FFFD}").utf8)
            default: output.append(kind)
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// The parsed document plus the replacements decided so far.
private struct MaskedDocument {
    private struct Replacement {
        var range: Range<Int>
        var bytes: [UInt8]
    }

    private static let maskedPairs: [(value: [UInt8], mask: [UInt8])] = [
        (Array("after".utf8), Array("after_sensitive".utf8)),
        (Array("before".utf8), Array("before_sensitive".utf8)),
        (Array("values".utf8), Array("sensitive_values".utf8)),
    ]
    private static let sensitiveKey = Array("sensitive".utf8)
    private static let valueKey = Array("value".utf8)
    private static let redactedString = Array("\"\(Redactor.placeholder)\"".utf8)

    let bytes: UnsafeRawBufferPointer
    let nodes: [JSONNode]
    private(set) var secrets = Set<String>()
    private var replacements: [Replacement] = []

    init(bytes: UnsafeRawBufferPointer, nodes: [JSONNode]) {
        self.bytes = bytes
        self.nodes = nodes
    }

    private func children(_ node: Int) -> [Int] {
        var result: [Int] = []
        var child = nodes[node].firstChild
        while child >= 0 {
            result.append(child)
            child = nodes[child].nextSibling
        }
        return result
    }

    private func key(_ node: Int) -> String? {
        let member = nodes[node]
        guard member.keyStart >= 0 else { return nil }
        return JSONText.decode(bytes, member.keyStart..<member.keyEnd, escaped: member.keyEscaped)
    }

    /// Whether member `node` is named `name` (compared on raw bytes unless the key has escapes).
    private func keyIs(_ node: Int, _ name: [UInt8]) -> Bool {
        let member = nodes[node]
        guard member.keyStart >= 0 else { return false }
        if member.keyEscaped { return key(node).map { Array($0.utf8) == name } ?? false }
        guard member.keyEnd - member.keyStart - 2 == name.count else { return false }
        let start = member.keyStart + 1
        return name.indices.allSatisfy { bytes[start + $0] == name[$0] }
    }

    /// Members of `object` named `name` (all of them: a duplicated key is masked everywhere).
    private func members(of object: Int, named name: String) -> [Int] {
        guard nodes[object].kind == .object else { return [] }
        let name = Array(name.utf8)
        return children(object).filter { keyIs($0, name) }
    }

    private func isTrue(_ node: Int) -> Bool { nodes[node].kind == .trueLiteral }

    /// Recurses through the document, applying every sensitivity mask it meets.
    mutating func walk(_ node: Int) {
        switch nodes[node].kind {
        case .object:
            let members = children(node)
            for (valueKey, maskKey) in Self.maskedPairs {
                for mask in members where keyIs(mask, maskKey) {
                    for value in members where keyIs(value, valueKey) { apply(mask: mask, to: value) }
                }
            }
            // Outputs: {"sensitive": true, "value": ...}
            if members.contains(where: { isTrue($0) && keyIs($0, Self.sensitiveKey) }) {
                for value in members where keyIs(value, Self.valueKey) { mask(value) }
            }
            for child in members { walk(child) }
        case .array:
            for child in children(node) { walk(child) }
        default:
            break
        }
    }

    private mutating func mask(_ value: Int) {
        collect(value)
        if nodes[value].kind != .null {
            replacements.append(Replacement(range: nodes[value].start..<nodes[value].end, bytes: Self.redactedString))
        }
    }

    private mutating func apply(mask: Int, to value: Int) {
        switch (nodes[mask].kind, nodes[value].kind) {
        case (.trueLiteral, _):
            self.mask(value)
        case (.object, .object):
            var byKey: [String: [Int]] = [:]
            for child in children(value) {
                if let name = key(child) { byKey[name, default: []].append(child) }
            }
            for submask in children(mask) {
                guard let name = key(submask) else { continue }
                for inner in byKey[name] ?? [] { apply(mask: submask, to: inner) }
            }
        case (.array, .array):
            for (submask, inner) in zip(children(mask), children(value)) { apply(mask: submask, to: inner) }
        default:
            break
        }
    }

    /// `variables.NAME.value` for every variable the configuration marks sensitive.
    mutating func redactSensitiveVariables(root: Int) {
        for configuration in members(of: root, named: "configuration") {
            for module in members(of: configuration, named: "root_module") {
                for declared in members(of: module, named: "variables") {
                    for declaration in children(declared) {
                        guard let name = key(declaration),
                              members(of: declaration, named: "sensitive").contains(where: isTrue)
                        else { continue }
                        for variables in members(of: root, named: "variables") {
                            for entry in members(of: variables, named: name) {
                                for value in members(of: entry, named: "value") { mask(value) }
                            }
                        }
                    }
                }
            }
        }
    }

    private mutating func collect(_ node: Int) {
        let value = nodes[node]
        switch value.kind {
        case .string:
            secrets.insert(JSONText.decode(bytes, value.start..<value.end, escaped: value.escaped))
        case .number:
            // A masked boolean is not worth redacting every "true" in the text.
            secrets.insert(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value.start..<value.end]), as: UTF8.self))
        case .object, .array:
            for child in children(node) { collect(child) }
        case .trueLiteral, .falseLiteral, .null:
            break
        }
    }

    /// Replaces every string token, key or number that holds a secret once
    /// decoded. Tokens without escapes are left to the final byte-level pass,
    /// which sees exactly their decoded bytes.
    mutating func redactTokens(with redactor: Redactor) {
        guard redactor.patternCount > 0 else { return }
        let numbersMatter = !redactor.numericPatterns.isEmpty
        for node in nodes {
            if node.keyStart >= 0, node.keyEscaped {
                redactString(node.keyStart..<node.keyEnd, with: redactor)
            }
            if node.kind == .string, node.escaped {
                redactString(node.start..<node.end, with: redactor)
            } else if node.kind == .number, numbersMatter,
                      redactor.containsSecret(UnsafeRawBufferPointer(rebasing: bytes[node.start..<node.end])) {
                // In place the placeholder would not be a number; make it a string.
                replacements.append(Replacement(range: node.start..<node.end, bytes: Self.redactedString))
            }
        }
    }

    private mutating func redactString(_ range: Range<Int>, with redactor: Redactor) {
        let text = JSONText.decode(bytes, range, escaped: true)
        let redacted = redactor.redact(text)
        guard redacted != text else { return }
        replacements.append(Replacement(
            range: range, bytes: [UInt8(ascii: "\"")] + JSONBytes.encodedStringContents(redacted) + [UInt8(ascii: "\"")]))
    }

    /// The original bytes with the outermost replacements applied.
    func spliced() -> [UInt8] {
        // Structural masks were recorded first; a later token replacement of
        // the same range or inside a masked value is dropped.
        let ordered = replacements.enumerated().sorted {
            if $0.element.range.lowerBound != $1.element.range.lowerBound {
                return $0.element.range.lowerBound < $1.element.range.lowerBound
            }
            if $0.element.range.upperBound != $1.element.range.upperBound {
                return $0.element.range.upperBound > $1.element.range.upperBound
            }
            return $0.offset < $1.offset
        }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var position = 0
        for (_, replacement) in ordered where replacement.range.lowerBound >= position {
            output.append(contentsOf: bytes[position..<replacement.range.lowerBound])
            output.append(contentsOf: replacement.bytes)
            position = replacement.range.upperBound
        }
        output.append(contentsOf: bytes[position...])
        return output
    }
}
