/// One problem found in a configuration file.
///
/// Every error names the file, the key path inside it (`environments.prod.approvals`,
/// `projects.network.environments.dev.var_files[0]`) and what was expected, so an operator
/// can fix a trust file without guessing (docs/CONTRACT.md §2). The description never contains a value
/// read from the file: a misplaced secret must not end up in a terminal, a log or a CI
/// transcript just because it was also a typo.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem this is. A struct with static members (not an enum) so new
    /// kinds can be added without breaking callers that switch over them.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The file could not be read.
        public static let unreadable = Code("unreadable")
        /// The file is larger than the size cap.
        public static let tooLarge = Code("too_large")
        /// The text is not valid UTF-8 or not valid YAML.
        public static let syntax = Code("syntax")
        /// The document is nested deeper, or holds more nodes, than a config ever needs.
        public static let tooComplex = Code("too_complex")
        /// YAML anchors and aliases are refused (alias bombs; hidden sharing in a trust file).
        public static let alias = Code("alias")
        /// A key that this file does not define (typos must not be silently ignored).
        public static let unknownKey = Code("unknown_key")
        /// The same key appears twice in one mapping (which one wins would be a guess).
        public static let duplicateKey = Code("duplicate_key")
        /// A required key is absent.
        public static let missingKey = Code("missing_key")
        /// The value has the wrong YAML shape (mapping, list, scalar).
        public static let wrongType = Code("wrong_type")
        /// The value has the right shape but is not acceptable.
        public static let invalidValue = Code("invalid_value")
        /// A key that looks like it holds a secret holds a literal value instead of a file path.
        public static let literalSecret = Code("literal_secret")
        /// A name refers to something that does not exist (an environment, an identity).
        public static let unknownReference = Code("unknown_reference")
        /// Two settings contradict each other (plan and apply credentials are the same file, …).
        public static let conflict = Code("conflict")
        /// `promote_from` chains form a cycle.
        public static let cycle = Code("cycle")
        /// A path from the delivery repo is absolute, not normalised, contains `..`, or reaches `.git`.
        public static let unsafePath = Code("unsafe_path")
        /// After resolving symlinks a repo path leaves the exported tree.
        public static let pathEscapes = Code("path_escapes")
        /// A repo path does not exist in the exported tree.
        public static let pathMissing = Code("path_missing")
        /// The repo config tried to set a trust decision, which only the agent config may make.
        public static let trustInRepoConfig = Code("trust_in_repo_config")
    }

    /// The file the error is about, as the operator named it.
    public var file: String
    /// Dotted key path with list indices, e.g. `environments.prod.apply_windows[0].from`;
    /// empty for the document itself.
    public var keyPath: String
    /// What the file should have said there, phrased to follow "expected".
    public var expected: String
    /// The kind of problem.
    public var code: Code
    /// 1-based line of the offending node, when known.
    public var line: Int?

    public init(file: String, keyPath: String, expected: String, code: Code, line: Int? = nil) {
        self.file = file
        self.keyPath = keyPath
        self.expected = expected
        self.code = code
        self.line = line
    }

    /// `FILE: KEY.PATH: expected …` on one line; safe to show to a client (no values).
    public var description: String {
        "\(file): \(keyPath.isEmpty ? "(document)" : keyPath): expected \(expected)"
    }
}

/// Every error found in one or more configuration files, reported together so an operator
/// fixes them in one pass instead of one per restart.
public struct ConfigErrors: Error, Sendable, Hashable, CustomStringConvertible {
    /// The errors in the order they were found (document order within a file).
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) { self.errors = errors }

    /// One line per error.
    public var description: String { errors.map(\.description).joined(separator: "\n") }

    /// The distinct codes present, for tests and metrics.
    public var codes: Set<ConfigError.Code> { Set(errors.map(\.code)) }
}

/// A key path under construction; rendered as `a.b[2].c`.
struct KeyPath: Sendable {
    private(set) var rendered: String = ""

    func key(_ name: String) -> KeyPath {
        var copy = self
        let shown = KeyPath.displayKey(name)
        copy.rendered = rendered.isEmpty ? shown : rendered + "." + shown
        return copy
    }

    func index(_ i: Int) -> KeyPath {
        var copy = self
        copy.rendered = rendered + "[\(i)]"
        return copy
    }

    /// Keys come from the file and may be hostile (control characters, megabytes, a pasted
    /// token): show ordinary identifiers as they are and anything else only by its length.
    static func displayKey(_ name: String) -> String {
        let ok = !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x5F || byte == 0x2D
        }
        return ok ? name : "<key of \(name.utf8.count) bytes>"
    }
}
