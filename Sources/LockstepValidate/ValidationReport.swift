import Foundation

/// What `lockstep validate` found in one checkout of a delivery repository.
///
/// Its JSON form (`lockstep validate --json`) is a stable interface for scripts: keys are
/// only ever added. Every path in it is relative to the checkout's root, every message is
/// one line without control characters (text from the repository and from terraform never
/// carries an escape sequence to a terminal or a CI log, docs/THREAT-MODEL.md §7.2).
public struct ValidationReport: Sendable, Equatable, Codable {
    /// The checkout as given.
    public var checkout: String
    /// `terraform 1.0.3`, `tofu 1.8.0`: the tool that validated; nil when it never ran.
    public var tool: String?
    /// Whether `terraform validate` took each environment's var files (OpenTofu ≥ 1.8) or ran
    /// once per project (terraform: its validate takes no variables).
    public var validatePerEnvironment: Bool
    /// Problems with the input itself: no such folder, no or an invalid `lockstep.yaml`, an
    /// unknown `--project`, a missing terraform binary. Any makes the exit status 2.
    public var inputErrors: [String]
    /// One entry per project validated, by name.
    public var projects: [ProjectReport]

    public init(checkout: String, tool: String? = nil, validatePerEnvironment: Bool = false, inputErrors: [String] = [],
                projects: [ProjectReport] = []) {
        self.checkout = checkout
        self.tool = tool
        self.validatePerEnvironment = validatePerEnvironment
        self.inputErrors = inputErrors
        self.projects = projects
    }

    /// 0 all good; 1 a validation error or a parity difference `lockstep.yaml` does not declare
    /// intended; 2 bad input.
    public var exitStatus: Int32 {
        if !inputErrors.isEmpty { return 2 }
        let failed = projects.contains { project in
            project.environments.contains { $0.findings.contains { $0.severity == .error } }
                || project.parity.differences.contains { !$0.intended }
        }
        return failed ? 1 : 0
    }

    enum CodingKeys: String, CodingKey {
        case checkout, tool, projects
        case validatePerEnvironment = "validate_per_environment"
        case inputErrors = "input_errors"
        case exitStatus = "exit_status"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        checkout = try container.decode(String.self, forKey: .checkout)
        tool = try container.decodeIfPresent(String.self, forKey: .tool)
        validatePerEnvironment = try container.decode(Bool.self, forKey: .validatePerEnvironment)
        inputErrors = try container.decode([String].self, forKey: .inputErrors)
        projects = try container.decode([ProjectReport].self, forKey: .projects)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(checkout, forKey: .checkout)
        try container.encode(tool, forKey: .tool)
        try container.encode(validatePerEnvironment, forKey: .validatePerEnvironment)
        try container.encode(inputErrors, forKey: .inputErrors)
        try container.encode(projects, forKey: .projects)
        try container.encode(exitStatus, forKey: .exitStatus)
    }
}

/// One project: each environment's validation and the parity between them.
public struct ProjectReport: Sendable, Equatable, Codable {
    public var project: String
    /// The project folder, relative to the checkout.
    public var dir: String
    public var environments: [EnvironmentReport]
    public var parity: ParityReport

    public init(project: String, dir: String, environments: [EnvironmentReport], parity: ParityReport) {
        self.project = project
        self.dir = dir
        self.environments = environments
        self.parity = parity
    }
}

/// One (project, environment) target.
public struct EnvironmentReport: Sendable, Equatable, Codable {
    public var environment: String
    /// The environment's var files, relative to the checkout.
    public var varFiles: [String]
    /// Errors and warnings, in the order found.
    public var findings: [Finding]

    public init(environment: String, varFiles: [String], findings: [Finding] = []) {
        self.environment = environment
        self.varFiles = varFiles
        self.findings = findings
    }

    enum CodingKeys: String, CodingKey {
        case environment, findings
        case varFiles = "var_files"
    }
}

/// One problem found in one environment.
public struct Finding: Sendable, Equatable, Codable {
    public enum Severity: String, Sendable, Codable { case error, warning }

    /// Which step found it.
    public struct Check: RawRepresentable, Hashable, Sendable, Codable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// `terraform init -backend=false` failed (a module or provider could not be installed).
        public static let initialize = Check(rawValue: "init")
        /// A diagnostic of `terraform validate`.
        public static let validate = Check(rawValue: "validate")
        /// A var file that could not be read (syntax, size, encoding).
        public static let varFile = Check(rawValue: "var_file")
        /// The checkout could not be copied (a symbolic link leaving it, an unreadable file).
        public static let copy = Check(rawValue: "copy")
        /// The instance probe (`terraform console`) failed or saw something it cannot compare.
        public static let parityProbe = Check(rawValue: "parity_probe")
    }

    public var severity: Severity
    public var check: Check
    /// Relative to the checkout; nil when the problem has no file.
    public var file: String?
    public var line: Int?
    public var message: String

    public init(severity: Severity, check: Check, file: String? = nil, line: Int? = nil, message: String) {
        self.severity = severity
        self.check = check
        self.file = file
        self.line = line
        self.message = Finding.oneLine(message)
    }

    /// `text` on one line: newlines and tabs become spaces, other control characters
    /// (escape sequences from the repository or terraform) become U+FFFD; at most 4000 bytes.
    public static func oneLine(_ text: String) -> String {
        var out = ""
        var lastWasSpace = false
        for scalar in text.unicodeScalars {
            if scalar == "\n" || scalar == "\t" || scalar == "\r" || scalar == " " {
                if !lastWasSpace && !out.isEmpty { out.unicodeScalars.append(" ") }
                lastWasSpace = true
                continue
            }
            lastWasSpace = false
            let value = scalar.value
            if value < 0x20 || (value >= 0x7F && value < 0xA0) || value == 0x2028 || value == 0x2029 {
                out.unicodeScalars.append("\u{FFFD}")
            } else {
                out.unicodeScalars.append(scalar)
            }
            if out.utf8.count > 4000 { return String(out.prefix(3990)) + " …" }
        }
        return lastWasSpace && out.hasSuffix(" ") ? String(out.dropLast()) : out
    }
}

/// How a project's environments differ.
public struct ParityReport: Sendable, Equatable, Codable {
    public var differences: [ParityDifference]
    /// What the probe could not evaluate: never a difference, always shown.
    public var unevaluated: [Unevaluated]

    public init(differences: [ParityDifference] = [], unevaluated: [Unevaluated] = []) {
        self.differences = differences
        self.unevaluated = unevaluated
    }
}

/// Something some of a project's environments have and others lack.
public struct ParityDifference: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case variable, resource, module }

    public var kind: Kind
    /// The variable name or the instance address (`null_resource.waf[0]`, `module.cdn["eu"]`).
    public var name: String
    public var presentIn: [String]
    public var missingFrom: [String]
    /// True when a `parity.ignore` entry of `lockstep.yaml` declares it.
    public var intended: Bool
    /// The entry's `reason`, when it has one.
    public var reason: String?
    /// Where to look: the block declaring the resource, or the line of a var file that sets the variable.
    public var file: String?
    public var line: Int?

    public init(kind: Kind, name: String, presentIn: [String], missingFrom: [String], intended: Bool = false,
                reason: String? = nil, file: String? = nil, line: Int? = nil) {
        self.kind = kind
        self.name = name
        self.presentIn = presentIn
        self.missingFrom = missingFrom
        self.intended = intended
        self.reason = reason
        self.file = file
        self.line = line
    }

    enum CodingKeys: String, CodingKey {
        case kind, name, intended, reason, file, line
        case presentIn = "present_in"
        case missingFrom = "missing_from"
    }

    /// One line: `variable debug_level is set in dev but not in prod, staging`.
    public var message: String {
        let what = kind == .variable ? "variable \(name) is set in" : "\(kind.rawValue) \(name) exists in"
        let tail = intended ? " (declared intended in lockstep.yaml\(reason.map { ": \($0)" } ?? ""))" : ""
        return Finding.oneLine("\(what) \(presentIn.joined(separator: ", ")) but not in \(missingFrom.joined(separator: ", "))\(tail)")
    }
}

/// A `count` or `for_each` the probe could not evaluate in one environment.
public struct Unevaluated: Sendable, Equatable, Codable {
    public var address: String
    public var environment: String
    public var reason: String
    public var file: String?
    public var line: Int?

    public init(address: String, environment: String, reason: String, file: String? = nil, line: Int? = nil) {
        self.address = address
        self.environment = environment
        self.reason = Finding.oneLine(reason)
        self.file = file
        self.line = line
    }

    public var message: String {
        guard address != Unevaluated.everything else {
            return Finding.oneLine("the count and for_each expressions of this file are not compared: \(reason)")
        }
        return Finding.oneLine("the instances of \(address) in \(environment) are not compared: \(reason)")
    }

    /// The `address` and `environment` of a file the probe could not read at all.
    public static let everything = "(all)"
}
