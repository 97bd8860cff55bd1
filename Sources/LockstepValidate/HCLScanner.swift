/// A lexical scanner of HCL native syntax that finds the *structure* of a body (its attributes
/// and blocks, with their names, labels and source lines) without evaluating anything.
///
/// Why hand-written: Lockstep needs two facts that no terraform command prints without cloud
/// credentials: the variable names an environment's `.tfvars` file sets, and the text of the
/// `count` and `for_each` expressions of a root module's resources and module calls (which
/// `terraform console` then evaluates; see `InstanceProbe.swift`). Both need only the outline of
/// a file, never its values, and there is no HCL library for Swift. The outline is exactly what
/// a careless scanner gets wrong, so this one tracks every construct that can hide a `=`, a
/// newline or a brace: quoted strings with escapes and nested `${…}`/`%{…}` template sequences
/// (which may hold strings of their own), `$${` and `%%{` escapes, heredocs (`<<EOT`, `<<-EOT`),
/// `#`, `//` and `/* */` comments, and `(`, `[`, `{` nesting across lines.
///
/// What it does not do: check that expressions are valid (terraform does that), or read
/// heredoc bodies for template sequences (a heredoc ends at the first line holding only its
/// delimiter, as it does in HCL unless a template sequence spans that line).
struct HCLScanner {
    /// One attribute or block of a body.
    struct Item: Equatable {
        enum Kind: Equatable {
            /// `name = expression`; `value` is the byte range of the expression text.
            case attribute(value: Range<Int>)
            /// `type "label" label2 { body }`; `body` is the byte range inside the braces.
            case block(labels: [String], body: Range<Int>)
        }

        /// The attribute name or block type.
        var name: String
        /// 1-based line where the item starts.
        var line: Int
        var kind: Kind
    }

    /// Why a file could not be read as HCL, with the 1-based line where it went wrong.
    struct Failure: Error, Equatable {
        var line: Int
        var message: String
    }

    let bytes: [UInt8]
    /// Offsets of every `\n`, for line numbers.
    private let newlines: [Int]

    init(_ text: String) {
        let bytes = Array(text.utf8)
        self.bytes = bytes
        newlines = bytes.indices.filter { bytes[$0] == UInt8(ascii: "\n") }
    }

    /// 1-based line of byte `offset`.
    func line(at offset: Int) -> Int {
        var low = 0
        var high = newlines.count
        while low < high {
            let mid = (low + high) / 2
            if newlines[mid] < offset { low = mid + 1 } else { high = mid }
        }
        return low + 1
    }

    /// The text of `range`, without leading and trailing blanks.
    func text(_ range: Range<Int>) -> String {
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper, Self.isBlank(bytes[lower]) || bytes[lower] == 0x0A { lower += 1 }
        while upper > lower, Self.isBlank(bytes[upper - 1]) || bytes[upper - 1] == 0x0A { upper -= 1 }
        return String(decoding: bytes[lower..<upper], as: UTF8.self)
    }

    /// The items of the whole file.
    func items() throws(Failure) -> [Item] { try items(in: 0..<bytes.count) }

    /// The items of the body in `range` (a whole file, or a block's `body`).
    func items(in range: Range<Int>) throws(Failure) -> [Item] {
        var out: [Item] = []
        var i = range.lowerBound
        let end = range.upperBound
        while true {
            i = skipTrivia(from: i, end: end, newlines: true)
            guard i < end else { return out }
            let start = i
            guard let name = identifier(at: i, end: end) else {
                throw Failure(line: line(at: i), message: "expected an argument name or a block here")
            }
            i += name.utf8.count
            i = skipTrivia(from: i, end: end, newlines: false)
            if i < end, bytes[i] == UInt8(ascii: "="), !(i + 1 < end && bytes[i + 1] == UInt8(ascii: "=")) {
                let valueStart = i + 1
                let valueEnd = try skipExpression(from: valueStart, end: end)
                if text(valueStart..<valueEnd).isEmpty {
                    throw Failure(line: line(at: start), message: "the argument `\(name)` has no value")
                }
                out.append(Item(name: name, line: line(at: start), kind: .attribute(value: valueStart..<valueEnd)))
                i = valueEnd
                continue
            }
            var labels: [String] = []
            while i < end, bytes[i] != UInt8(ascii: "{") {
                if bytes[i] == UInt8(ascii: "\"") {
                    let close = try skipString(from: i + 1, end: end)
                    labels.append(String(decoding: bytes[(i + 1)..<(close - 1)], as: UTF8.self))
                    i = close
                } else if let label = identifier(at: i, end: end) {
                    labels.append(label)
                    i += label.utf8.count
                } else {
                    throw Failure(line: line(at: i), message: "expected `=` or a block after `\(name)`")
                }
                i = skipTrivia(from: i, end: end, newlines: false)
            }
            guard i < end else { throw Failure(line: line(at: start), message: "the block `\(name)` has no body") }
            let bodyStart = i + 1
            let close = try skipNested(from: bodyStart, end: end, closer: UInt8(ascii: "}"), openedAt: i)
            out.append(Item(name: name, line: line(at: start), kind: .block(labels: labels, body: bodyStart..<(close - 1))))
            i = close
        }
    }

    // MARK: lexing

    static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D }

    private static func isIdentifierStart(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "_") || byte >= 0x80
    }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        isIdentifierStart(byte) || (byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: "-")
    }

    private func identifier(at i: Int, end: Int) -> String? {
        guard i < end, Self.isIdentifierStart(bytes[i]) else { return nil }
        var j = i + 1
        while j < end, Self.isIdentifierByte(bytes[j]) { j += 1 }
        return String(decoding: bytes[i..<j], as: UTF8.self)
    }

    /// Skips blanks and comments (and newlines when `newlines`). A `#` or `//` comment stops
    /// before its newline.
    private func skipTrivia(from start: Int, end: Int, newlines: Bool) -> Int {
        var i = start
        while i < end {
            let byte = bytes[i]
            if Self.isBlank(byte) || (newlines && byte == 0x0A) {
                i += 1
            } else if byte == UInt8(ascii: "#") || (byte == UInt8(ascii: "/") && i + 1 < end && bytes[i + 1] == UInt8(ascii: "/")) {
                while i < end, bytes[i] != 0x0A { i += 1 }
            } else if byte == UInt8(ascii: "/"), i + 1 < end, bytes[i + 1] == UInt8(ascii: "*") {
                i += 2
                while i < end, !(bytes[i] == UInt8(ascii: "*") && i + 1 < end && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i = min(i + 2, end)
            } else {
                return i
            }
        }
        return i
    }

    /// The end of the expression starting at `start`: the first newline outside brackets,
    /// strings, heredocs and block comments, or `end`.
    private func skipExpression(from start: Int, end: Int) throws(Failure) -> Int {
        try scan(from: start, end: end, closer: nil, openedAt: start)
    }

    /// The offset just past the `closer` that matches an opening bracket before `start`.
    private func skipNested(from start: Int, end: Int, closer: UInt8, openedAt: Int) throws(Failure) -> Int {
        try scan(from: start, end: end, closer: closer, openedAt: openedAt)
    }

    /// Scans expression tokens. With a `closer`, returns just past the matching closing
    /// bracket (newlines are free); without, returns at the first newline at depth zero.
    private func scan(from start: Int, end: Int, closer: UInt8?, openedAt: Int) throws(Failure) -> Int {
        var i = start
        var expected: [UInt8] = []
        while i < end {
            let byte = bytes[i]
            switch byte {
            case 0x0A where closer == nil && expected.isEmpty:
                return i
            case UInt8(ascii: "\""):
                i = try skipString(from: i + 1, end: end)
                continue
            case UInt8(ascii: "#"):
                while i < end, bytes[i] != 0x0A { i += 1 }
                continue
            case UInt8(ascii: "/") where i + 1 < end && bytes[i + 1] == UInt8(ascii: "/"):
                while i < end, bytes[i] != 0x0A { i += 1 }
                continue
            case UInt8(ascii: "/") where i + 1 < end && bytes[i + 1] == UInt8(ascii: "*"):
                let opened = i
                i += 2
                while i < end, !(bytes[i] == UInt8(ascii: "*") && i + 1 < end && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                guard i < end else { throw Failure(line: line(at: opened), message: "a `/*` comment is never closed") }
                i += 2
                continue
            case UInt8(ascii: "<") where i + 1 < end && bytes[i + 1] == UInt8(ascii: "<"):
                i = try skipHeredoc(from: i, end: end)
                continue
            case UInt8(ascii: "("): expected.append(UInt8(ascii: ")"))
            case UInt8(ascii: "["): expected.append(UInt8(ascii: "]"))
            case UInt8(ascii: "{"): expected.append(UInt8(ascii: "}"))
            case UInt8(ascii: ")"), UInt8(ascii: "]"), UInt8(ascii: "}"):
                if let last = expected.last {
                    guard last == byte else {
                        throw Failure(line: line(at: i), message: "`\(Character(Unicode.Scalar(byte)))` does not match the open `\(Character(Unicode.Scalar(Self.opener(of: last))))`")
                    }
                    expected.removeLast()
                } else if let closer, byte == closer {
                    return i + 1
                } else {
                    throw Failure(line: line(at: i), message: "`\(Character(Unicode.Scalar(byte)))` closes nothing")
                }
            default:
                break
            }
            i += 1
        }
        if let last = expected.last {
            throw Failure(line: line(at: start), message: "a `\(Character(Unicode.Scalar(Self.opener(of: last))))` is never closed")
        }
        if let closer {
            throw Failure(line: line(at: openedAt), message: "a `\(Character(Unicode.Scalar(Self.opener(of: closer))))` is never closed")
        }
        return i
    }

    private static func opener(of closer: UInt8) -> UInt8 {
        switch closer {
        case UInt8(ascii: ")"): UInt8(ascii: "(")
        case UInt8(ascii: "]"): UInt8(ascii: "[")
        default: UInt8(ascii: "{")
        }
    }

    /// From just after an opening `"`, returns the offset just past the closing one. Template
    /// sequences (`${…}`, `%{…}`) are scanned as nested expressions, so a `"` inside them
    /// starts a string of its own; `$${` and `%%{` are literal text.
    private func skipString(from start: Int, end: Int) throws(Failure) -> Int {
        var i = start
        while i < end {
            let byte = bytes[i]
            switch byte {
            case UInt8(ascii: "\\"):
                i += 2
                continue
            case UInt8(ascii: "\""):
                return i + 1
            case 0x0A:
                throw Failure(line: line(at: i), message: "a quoted string is not closed on its line")
            case UInt8(ascii: "$"), UInt8(ascii: "%"):
                if i + 2 < end, bytes[i + 1] == byte, bytes[i + 2] == UInt8(ascii: "{") {
                    i += 3
                    continue
                }
                if i + 1 < end, bytes[i + 1] == UInt8(ascii: "{") {
                    i = try skipNested(from: i + 2, end: end, closer: UInt8(ascii: "}"), openedAt: i + 1)
                    continue
                }
            default:
                break
            }
            i += 1
        }
        throw Failure(line: line(at: max(start - 1, 0)), message: "a quoted string is never closed")
    }

    /// From `<<` (or `<<-`), returns the offset of the newline that ends the delimiter line.
    private func skipHeredoc(from start: Int, end: Int) throws(Failure) -> Int {
        var i = start + 2
        if i < end, bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard let delimiter = identifier(at: i, end: end) else {
            throw Failure(line: line(at: start), message: "a heredoc needs a delimiter word after `<<`")
        }
        i += delimiter.utf8.count
        while i < end, bytes[i] == 0x0D { i += 1 }
        guard i < end, bytes[i] == 0x0A else {
            throw Failure(line: line(at: start), message: "a heredoc's delimiter must end its line")
        }
        let word = Array(delimiter.utf8)
        i += 1
        while i < end {
            var lineEnd = i
            while lineEnd < end, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var lower = i
            var upper = lineEnd
            while lower < upper, Self.isBlank(bytes[lower]) { lower += 1 }
            while upper > lower, Self.isBlank(bytes[upper - 1]) { upper -= 1 }
            if bytes[lower..<upper].elementsEqual(word) { return lineEnd }
            i = lineEnd + 1
        }
        throw Failure(line: line(at: start), message: "the heredoc `\(delimiter)` is never closed")
    }
}
