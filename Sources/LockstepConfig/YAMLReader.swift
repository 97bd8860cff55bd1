import LockstepCore
import Yams

/// Bounds on a configuration document. A config is small, shallow and hand-written; anything
/// beyond these is either a mistake or an attempt to exhaust the agent (docs/CONTRACT.md §7: lockstep.yaml
/// is untrusted input).
enum DocumentLimits {
    /// Largest accepted file (both configs). Stops memory exhaustion by a giant lockstep.yaml.
    static let maxBytes = 1 << 20
    /// Deepest nesting the validator walks. The schema itself needs fewer than ten levels.
    static let maxDepth = 64
    /// Most nodes in one document. Together with the alias refusal this bounds the work.
    static let maxNodes = 100_000
    /// Most `[`/`{` characters in the text. Yams builds its tree recursively, so a document
    /// of a million `[` would overflow the stack before any check could see the tree; the
    /// count of brackets is an upper bound on flow nesting that needs no YAML understanding.
    static let maxFlowBrackets = 2_000
    /// Longest run of indentation and block indicators (` `, `-`, `?`, `:`) that starts a
    /// line: an upper bound on block nesting on that line, for the same reason.
    static let maxLeadingRun = 128
}

/// Accumulates every error of one file and offers typed accessors that record, rather than
/// throw, what was wrong. The whole document is always walked so all errors come out at once.
final class Reader {
    let file: String
    private(set) var errors: [ConfigError] = []

    init(file: String) { self.file = file }

    func fail(_ path: KeyPath, _ code: ConfigError.Code, _ expected: String, _ node: Node? = nil) {
        errors.append(ConfigError(file: file, keyPath: path.rendered, expected: expected, code: code, line: node?.mark?.line))
    }

    func append(_ error: ConfigError) { errors.append(error) }

    /// `raw` as one of the core's names, or nil with the core's reason recorded: a name the
    /// config's own rules accepted but the core does not is an error in the file, never dropped.
    func name<Name: ValidatedString>(_ type: Name.Type, _ raw: String, _ path: KeyPath, _ node: Node?) -> Name? {
        do {
            return try Name(raw)
        } catch {
            fail(path, .invalidValue, "a valid name (\(error.description))", node)
            return nil
        }
    }

    // MARK: document

    /// Size, UTF-8 and nesting checks on the raw text, then Yams, then a structural walk that
    /// refuses aliases, duplicate keys and oversized trees. Returns nil when the document must
    /// not be interpreted further (the errors say why).
    func document(_ text: String) -> Node? {
        let path = KeyPath()
        if text.utf8.count > DocumentLimits.maxBytes {
            fail(path, .tooLarge, "a file of at most \(DocumentLimits.maxBytes) bytes (this one has \(text.utf8.count))")
            return nil
        }
        if let problem = Reader.lexicalComplexity(text) {
            fail(path, .tooComplex, problem)
            return nil
        }
        let root: Node?
        do {
            root = try Parser(yaml: text).singleRoot()
        } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
            // Yams refuses a mapping with a key given twice (which value would count is
            // exactly what a reviewer could misread); only the key names and the line are shown.
            for key in duplicates.sorted() {
                errors.append(ConfigError(file: file, keyPath: path.key(key).rendered, expected: "each key at most once in a mapping",
                                          code: .duplicateKey, line: context.mark.line))
            }
            return nil
        } catch let error as YamlError {
            // YamlError's own description quotes the document; only the position and
            // libyaml's fixed problem text are shown, never file content.
            fail(path, .syntax, "valid YAML (\(Reader.describe(error)))")
            return nil
        } catch {
            fail(path, .syntax, "valid YAML")
            return nil
        }
        guard let root else {
            fail(path, .wrongType, "a mapping at the top level (the file is empty)")
            return nil
        }
        var walk = StructureWalk(reader: self)
        walk.visit(root, path: path, depth: 0, firstChild: true)
        return walk.ok ? root : nil
    }

    static func describe(_ error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return "\(problem) at line \(mark.line), column \(mark.column)"
        case let .reader(problem, offset, _, _):
            return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
        default:
            return "unparsable document"
        }
    }

    /// Upper bounds on nesting computed from the text alone (see `DocumentLimits`).
    static func lexicalComplexity(_ text: String) -> String? {
        var brackets = 0
        var run = 0
        var atLineStart = true
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") {
                atLineStart = true
                run = 0
                continue
            }
            if atLineStart {
                if byte == 0x20 || byte == 0x09 || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: ":") {
                    run += 1
                    if run > DocumentLimits.maxLeadingRun {
                        return "lines indented by at most \(DocumentLimits.maxLeadingRun) columns (the document is nested too deeply)"
                    }
                } else {
                    atLineStart = false
                }
            }
            if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                brackets += 1
                if brackets > DocumentLimits.maxFlowBrackets {
                    return "at most \(DocumentLimits.maxFlowBrackets) `[` or `{` characters (use block lists and mappings)"
                }
            }
        }
        return nil
    }

    // MARK: typed accessors

    func mapping(_ node: Node, _ path: KeyPath, _ what: String) -> Fields? {
        guard case let .mapping(map) = node else {
            fail(path, .wrongType, what, node)
            return nil
        }
        return Fields(map, path: path, reader: self)
    }

    func sequence(_ node: Node, _ path: KeyPath, _ what: String) -> [Node]? {
        guard case let .sequence(seq) = node else {
            fail(path, .wrongType, what, node)
            return nil
        }
        return Array(seq)
    }

    /// A non-null scalar's text. Quoted or plain both count: strings are never coerced.
    func string(_ node: Node, _ path: KeyPath, _ what: String) -> String? {
        guard case let .scalar(scalar) = node, !Reader.isNull(node) else {
            fail(path, .wrongType, what, node)
            return nil
        }
        if scalar.string.utf8.contains(0) {
            fail(path, .invalidValue, what + " without NUL bytes", node)
            return nil
        }
        return scalar.string
    }

    /// Only plain `true` and `false`: YAML 1.1's `yes`/`on`/`y` turned "Norway" into false,
    /// and a trust switch must not flip on such a reading.
    func bool(_ node: Node, _ path: KeyPath) -> Bool? {
        if case let .scalar(scalar) = node, scalar.style == .plain {
            if scalar.string == "true" { return true }
            if scalar.string == "false" { return false }
        }
        fail(path, .wrongType, "`true` or `false`", node)
        return nil
    }

    /// A plain decimal integer inside `range`.
    func int(_ node: Node, _ path: KeyPath, _ range: ClosedRange<Int>, _ what: String) -> Int? {
        if case let .scalar(scalar) = node, scalar.style == .plain,
           !scalar.string.isEmpty, scalar.string.utf8.count <= 18,
           scalar.string.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
           let value = Int(scalar.string) {
            if range.contains(value) { return value }
            fail(path, .invalidValue, what, node)
            return nil
        }
        fail(path, .wrongType, what, node)
        return nil
    }

    /// Reads a list, every element with `element`, so that the errors of all bad elements are
    /// reported at once; `nil` when the node is not a list or any element failed.
    func list<T>(_ node: Node, _ path: KeyPath, _ what: String, _ element: (Node, KeyPath) -> T?) -> [T]? {
        guard let items = sequence(node, path, what) else { return nil }
        var out: [T] = []
        var ok = true
        for (i, item) in items.enumerated() {
            if let value = element(item, path.index(i)) { out.append(value) } else { ok = false }
        }
        return ok ? out : nil
    }

    func stringList(_ node: Node, _ path: KeyPath, _ what: String) -> [String]? {
        list(node, path, "a list of \(what)") { item, at in string(item, at, what) }
    }

    static func isNull(_ node: Node) -> Bool {
        guard case let .scalar(scalar) = node else { return false }
        guard scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }
}

/// The keys of one mapping. Keys are taken as they are interpreted; whatever is left at
/// `finish` is unknown and reported, because a typo in a trust file (`aprovals: 2`) must
/// not silently fall back to a default.
final class Fields {
    private var pairs: [(key: String, value: Node)] = []
    private var taken: Set<String> = []
    let path: KeyPath
    let reader: Reader

    init(_ map: Node.Mapping, path: KeyPath, reader: Reader) {
        self.path = path
        self.reader = reader
        // Duplicate keys never get here: the parser refuses them (``Reader/document(_:)``).
        for (i, pair) in map.enumerated() {
            guard case let .scalar(key) = pair.key, !Reader.isNull(pair.key) else {
                reader.fail(path.index(i), .wrongType, "a plain string key", pair.key)
                continue
            }
            pairs.append((key.string, pair.value))
        }
    }

    var keys: [String] { pairs.map(\.key) }

    /// All entries, in document order, marking them all as taken (for name → value maps).
    func entries() -> [(key: String, value: Node)] {
        for pair in pairs { taken.insert(pair.key) }
        return pairs
    }

    func take(_ key: String) -> Node? {
        guard let pair = pairs.first(where: { $0.key == key }) else { return nil }
        taken.insert(key)
        return pair.value
    }

    /// Reports keys not taken. `classify` may claim a key to report it more precisely
    /// (a literal secret, a trust decision in the repo config).
    func finish(known: String, classify: (String, KeyPath, Node) -> Bool = { _, _, _ in false }) {
        for pair in pairs where !taken.contains(pair.key) {
            let keyPath = path.key(pair.key)
            if classify(pair.key, keyPath, pair.value) { continue }
            reader.fail(keyPath, .unknownKey, "one of the known keys here (\(known))", pair.value)
        }
    }
}

/// First pass over the composed tree: bounds its size and depth and refuses aliases.
///
/// Yams 5 resolves an alias by returning the anchored node itself, so an alias is invisible
/// in the tree except through its source position: it carries the anchor's earlier mark.
/// In a tree built without aliases, marks grow in document (pre-)order, so a node whose mark
/// is not after the previous one's is an alias. Refusing aliases stops "billion laughs"
/// documents (a few lines that expand to an exponential tree for any walker).
struct StructureWalk {
    let reader: Reader
    var ok = true
    private var count = 0
    private var last: (line: Int, column: Int) = (0, 0)
    private var reportedAlias = false

    init(reader: Reader) { self.reader = reader }

    mutating func visit(_ node: Node, path: KeyPath, depth: Int, firstChild: Bool) {
        guard ok else { return }
        count += 1
        if count > DocumentLimits.maxNodes {
            reader.fail(KeyPath(), .tooComplex, "at most \(DocumentLimits.maxNodes) YAML nodes")
            ok = false
            return
        }
        if depth > DocumentLimits.maxDepth {
            reader.fail(path, .tooComplex, "nesting at most \(DocumentLimits.maxDepth) levels deep", node)
            ok = false
            return
        }
        if let mark = node.mark {
            let here = (mark.line, mark.column)
            let ordered = firstChild ? !(here < last) : here > last
            if !ordered {
                reader.fail(path, .alias, "no YAML anchors or aliases (`&name`, `*name`): write every value out", node)
                ok = false
                return
            }
            last = here
        }
        switch node {
        case .scalar:
            return
        case .alias:
            // The parser resolves aliases; a tree built by hand could still hold one.
            reader.fail(path, .alias, "no YAML anchors or aliases (`&name`, `*name`): write every value out", node)
            ok = false
        case let .sequence(seq):
            for (i, item) in seq.enumerated() {
                visit(item, path: path.index(i), depth: depth + 1, firstChild: i == 0)
            }
        case let .mapping(map):
            for (i, pair) in map.enumerated() {
                let name = pair.key.scalar?.string ?? "?"
                visit(pair.key, path: path.key(name), depth: depth + 1, firstChild: i == 0)
                visit(pair.value, path: path.key(name), depth: depth + 1, firstChild: false)
            }
        }
    }
}
