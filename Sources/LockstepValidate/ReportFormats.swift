import Crypto
import Foundation

/// The ways `lockstep validate` prints its report.
extension ValidationReport {
    /// For a person at a terminal: one line per target, one per problem.
    public func human() -> String {
        var lines: [String] = []
        for error in inputErrors { lines.append("error: \(Finding.oneLine(error))") }
        if let tool { lines.append("validated with \(tool)" + (validatePerEnvironment ? " (each environment's var files)" : " (once per project: its validate takes no var files)")) }
        for project in projects {
            for environment in project.environments {
                let errors = environment.findings.filter { $0.severity == .error }.count
                let warnings = environment.findings.count - errors
                let state = errors == 0 ? "ok" : "\(errors) error\(errors == 1 ? "" : "s")"
                lines.append("\(project.project)/\(environment.environment): \(state)" + (warnings > 0 ? ", \(warnings) warning\(warnings == 1 ? "" : "s")" : ""))
                for finding in environment.findings {
                    lines.append("  \(Self.location(finding.file, finding.line))\(finding.severity.rawValue): \(finding.message)")
                }
            }
            let parity = project.parity
            if parity.differences.isEmpty && parity.unevaluated.isEmpty {
                lines.append("\(project.project) parity: environments agree")
            } else {
                let failing = parity.differences.filter { !$0.intended }.count
                lines.append("\(project.project) parity: \(failing) difference\(failing == 1 ? "" : "s") not declared in lockstep.yaml")
                for difference in parity.differences {
                    lines.append("  \(Self.location(difference.file, difference.line))\(difference.intended ? "intended" : "error"): \(difference.message)")
                }
                for item in parity.unevaluated {
                    lines.append("  \(Self.location(item.file, item.line))note: \(item.message)")
                }
            }
        }
        lines.append(exitStatus == 0 ? "ok" : exitStatus == 1 ? "failed" : "bad input")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func location(_ file: String?, _ line: Int?) -> String {
        guard let file else { return "" }
        return Finding.oneLine(file) + (line.map { ":\($0)" } ?? "") + ": "
    }

    /// The stable JSON document (`--json`): sorted keys, pretty-printed.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    // MARK: CI formats

    /// One problem as the CI formats see it.
    struct Annotation {
        enum Level: String { case error, warning, notice }
        var level: Level
        var check: String
        var file: String?
        var line: Int?
        var message: String
    }

    var annotations: [Annotation] {
        var out: [Annotation] = inputErrors.map { Annotation(level: .error, check: "input", message: Finding.oneLine($0)) }
        for project in projects {
            for environment in project.environments {
                for finding in environment.findings {
                    out.append(Annotation(level: finding.severity == .error ? .error : .warning, check: finding.check.rawValue,
                                          file: finding.file, line: finding.line,
                                          message: "\(project.project)/\(environment.environment): \(finding.message)"))
                }
            }
            for difference in project.parity.differences {
                out.append(Annotation(level: difference.intended ? .notice : .error, check: "parity_\(difference.kind.rawValue)",
                                      file: difference.file, line: difference.line,
                                      message: "\(project.project): \(difference.message)"))
            }
            for item in project.parity.unevaluated {
                out.append(Annotation(level: .warning, check: "parity_unevaluated", file: item.file, line: item.line,
                                      message: "\(project.project): \(item.message)"))
            }
        }
        return out
    }

    /// GitHub Actions workflow commands: `::error file=F,line=L::MESSAGE`, one per line.
    /// Data is escaped as GitHub's toolkit does (`%` → `%25`, CR → `%0D`, LF → `%0A`), and
    /// property values also escape `:` → `%3A` and `,` → `%2C`, so a file name or message from
    /// the repository cannot end the command early or start another one.
    public func github() -> String {
        var lines: [String] = []
        for annotation in annotations {
            var properties: [String] = []
            if let file = annotation.file { properties.append("file=\(Self.githubProperty(file))") }
            if let line = annotation.line { properties.append("line=\(line)") }
            properties.append("title=\(Self.githubProperty("lockstep validate: \(annotation.check)"))")
            lines.append("::\(annotation.level.rawValue) \(properties.joined(separator: ","))::\(Self.githubData(annotation.message))")
        }
        lines.append(exitStatus == 0 ? "lockstep validate: ok" : "lockstep validate: \(exitStatus == 1 ? "failed" : "bad input")")
        return lines.joined(separator: "\n") + "\n"
    }

    static func githubData(_ text: String) -> String {
        text.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
    }

    static func githubProperty(_ text: String) -> String {
        githubData(text).replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
    }

    /// A GitLab Code Quality report: a JSON array of issues with `description`, `check_name`,
    /// `fingerprint` (SHA-256 of the check, path, line and description, so the same problem keeps
    /// its fingerprint between pipelines), `severity` and `location.path`/`location.lines.begin`.
    /// Problems without a file are placed on `lockstep.yaml`, line 1 (GitLab needs a path).
    public func gitlab() -> String {
        struct Issue: Encodable {
            struct Lines: Encodable { var begin: Int }
            struct Location: Encodable {
                var path: String
                var lines: Lines
            }
            var description: String
            var check_name: String
            var fingerprint: String
            var severity: String
            var location: Location
        }
        let issues = annotations.map { annotation in
            let path = annotation.file ?? "lockstep.yaml"
            let line = annotation.line ?? 1
            let severity = switch annotation.level {
            case .error: annotation.check.hasPrefix("parity") ? "major" : "critical"
            case .warning: "minor"
            case .notice: "info"
            }
            let identity = [annotation.check, path, String(line), annotation.message].joined(separator: "\u{0}")
            let fingerprint = SHA256.hash(data: Data(identity.utf8)).map { String(format: "%02x", $0) }.joined()
            return Issue(description: annotation.message, check_name: "lockstep-validate/\(annotation.check)", fingerprint: fingerprint,
                         severity: severity, location: Issue.Location(path: path, lines: Issue.Lines(begin: line)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(issues) else { return "[]\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
