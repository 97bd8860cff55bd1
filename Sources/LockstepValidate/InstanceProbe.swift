import Foundation

/// Which resources and module calls of a root module one environment would have, found
/// without cloud credentials.
///
/// How, and why this way (measured with terraform 1.0.3 and 1.11.4):
/// - `terraform plan` configures every provider, and a cloud provider refuses to start without
///   credentials, which CI does not have.
/// - `terraform graph` and `.terraform/modules/modules.json` show the configuration before
///   expansion: `count` and `for_each` are not evaluated, so `count = var.enable_waf ? 1 : 0`
///   looks the same in every environment.
/// - `terraform console` builds terraform's "eval" graph, which loads provider schemas but
///   never configures a provider, and evaluates variables (from `-var-file`) and locals. With
///   a `local` backend over an empty state it needs nothing from the cloud. It cannot expand
///   resources itself (a resource missing from the state is unknown), so this file finds the
///   text of each `count` and `for_each` expression of the root module (``HCLScanner``) and
///   asks console for their values, all in one object (console prints only its last line's
///   value in a pipe), each value as base64 of its JSON so the output parses the same way
///   whatever terraform or OpenTofu prints around it.
///
/// What it sees: resources, data sources and module calls of the *root* module whose
/// `count`/`for_each` depend on variables, locals and functions (override files are applied
/// after the files they override, as terraform does). What it cannot see: instances of
/// resources inside child modules; expressions that depend on a resource or data source (their
/// values are known only after apply: reported as not evaluated, never as a difference);
/// sensitive values (reported as not evaluated); `.tf.json` configuration files.
enum InstanceProbe {
    /// One `count` or `for_each` of the root module.
    struct Expansion: Equatable {
        enum Kind: String { case resource, data, module }
        enum Meta: String { case count, forEach = "for_each" }

        /// `null_resource.waf`, `data.x.y`, `module.cdn`.
        var address: String
        var kind: Kind
        var meta: Meta
        /// The expression's text.
        var expression: String
        /// The file (relative to the project folder) and line of the block.
        var file: String
        var line: Int
    }

    /// Where the probe's local value lives, and its file names in the scratch copy.
    static let localName = "lockstep_validate_probe"
    static let probeFile = "lockstep_validate_probe.tf"
    static let backendOverrideFile = "lockstep_validate_backend_override.tf"

    /// What the scan of a root module found.
    struct RootModule {
        var expansions: [Expansion] = []
        /// The names of its `variable` blocks; nil when they cannot all be known (a `.tf.json`
        /// file, which this scanner does not read, or a file it could not read).
        var variables: Set<String>? = []
        /// Files that could not be read, with the problem.
        var problems: [(file: String, failure: HCLScanner.Failure)] = []
    }

    /// The expansions and variables in the `.tf` files of `directory` (the root module).
    static func rootModule(directory: URL) -> RootModule {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let names = all.filter { $0.hasSuffix(".tf") }
        var module = RootModule()
        if all.contains(where: { $0.hasSuffix(".tf.json") }) { module.variables = nil }
        // Terraform reads override files after the others, whatever their names.
        func isOverride(_ name: String) -> Bool { name == "override.tf" || name.hasSuffix("_override.tf") }
        let ordered = names.filter { !isOverride($0) }.sorted() + names.filter(isOverride).sorted()
        var byAddress: [String: Expansion] = [:]
        var order: [String] = []
        for name in ordered {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path), data.count <= 16 << 20 else {
                module.variables = nil
                module.problems.append((name, HCLScanner.Failure(line: 1, message: "cannot be read, or is larger than 16 MiB")))
                continue
            }
            let scanner = HCLScanner(String(decoding: data, as: UTF8.self))
            do {
                for item in try scanner.items() {
                    guard case let .block(labels, body) = item.kind else { continue }
                    if item.name == "variable", labels.count == 1 { module.variables?.insert(labels[0]) }
                    let address: String
                    let kind: Expansion.Kind
                    switch (item.name, labels.count) {
                    case ("resource", 2): (address, kind) = ("\(labels[0]).\(labels[1])", .resource)
                    case ("data", 2): (address, kind) = ("data.\(labels[0]).\(labels[1])", .data)
                    case ("module", 1): (address, kind) = ("module.\(labels[0])", .module)
                    default: continue
                    }
                    for attribute in try scanner.items(in: body) {
                        guard case let .attribute(value) = attribute.kind,
                              let meta = Expansion.Meta(rawValue: attribute.name) else { continue }
                        if byAddress[address] == nil { order.append(address) }
                        byAddress[address] = Expansion(address: address, kind: kind, meta: meta, expression: scanner.text(value),
                                                       file: name, line: item.line)
                    }
                }
            } catch {
                module.variables = nil
                module.problems.append((name, error))
            }
        }
        module.expansions = order.compactMap { byAddress[$0] }
        return module
    }

    /// The HCL of the probe file: one local, an object whose `eN` attribute is the base64 of
    /// the JSON of expansion N's count, or of the list of its `for_each` keys. Each expression
    /// is copied on lines of its own inside parentheses, so a trailing comment or a heredoc
    /// in it ends where it would in the original.
    static func probeSource(_ expansions: [Expansion]) -> String {
        var lines = ["# Written by `lockstep validate` into a scratch copy: which instances each `count` and `for_each` makes.",
                     "locals {", "  \(localName) = {"]
        for (index, expansion) in expansions.enumerated() {
            switch expansion.meta {
            case .count:
                lines += ["    e\(index) = base64encode(jsonencode((", expansion.expression, "    )))"]
            case .forEach:
                // For a map the keys; for a set of strings its elements (a set's "key" is the element).
                lines += ["    e\(index) = base64encode(jsonencode([for k, v in (", expansion.expression, "    ) : k]))"]
            }
        }
        lines += ["  }", "}", ""]
        return lines.joined(separator: "\n")
    }

    /// A backend override that points the scratch copy at an empty local state, replacing
    /// whatever backend the project names (its settings would need credentials to read).
    static func backendOverride(statePath: String) -> String {
        let escaped = statePath.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "${", with: "$${").replacingOccurrences(of: "%{", with: "%%{")
        return "terraform {\n  backend \"local\" {\n    path = \"\(escaped)\"\n  }\n}\n"
    }

    /// The expression console is asked.
    static var expression: String { "local.\(localName)" }

    /// What one expansion evaluated to in one environment.
    enum Value: Equatable {
        /// The instance keys: `[0]`, `[1]` for count, `["a"]` for for_each.
        case instances([String])
        /// Console could not give a value (known only after apply, or sensitive).
        case unknown(String)
    }

    /// Whether console printed the probe as an object with entries (not `(known after apply)`
    /// as a whole, which is what an error inside one entry makes of it).
    static func hasEntries(_ output: String) -> Bool {
        output.split(separator: "\n").contains { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            return (text.hasPrefix("\"e") || text.hasPrefix("e")) && text.contains("=")
        }
    }

    /// Reads console's printing of the probe object: lines `"eN" = "BASE64"` (or `eN = …`).
    /// A value that is not a quoted string is unknown (`(known after apply)`, `(sensitive)`).
    static func parse(_ output: String, expansions: [Expansion]) -> [Value] {
        var raw: [Int: String] = [:]
        for line in output.split(separator: "\n") {
            var text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("\"") { text.removeFirst() }
            guard text.hasPrefix("e"), let equals = text.firstIndex(of: "=") else { continue }
            let key = text[text.index(after: text.startIndex)..<equals].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
            guard let index = Int(key) else { continue }
            raw[index] = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return expansions.indices.map { index in
            guard let printed = raw[index] else { return .unknown("terraform console printed no value for it") }
            guard printed.count >= 2, printed.hasPrefix("\""), printed.hasSuffix("\""),
                  let data = Data(base64Encoded: String(printed.dropFirst().dropLast())),
                  let json = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
                return .unknown(printed.contains("sensitive") ? "its value is sensitive" : "its value is known only after apply")
            }
            switch expansions[index].meta {
            case .count:
                guard let number = json as? NSNumber,
                      number.doubleValue >= 0, number.doubleValue <= 100_000, number.doubleValue == number.doubleValue.rounded() else {
                    return .unknown("count is not a whole number")
                }
                return .instances((0..<number.intValue).map { "[\($0)]" })
            case .forEach:
                guard let keys = json as? [String] else { return .unknown("for_each is not a map or a set of strings") }
                return .instances(keys.sorted().map { "[\(quoted($0))]" })
            }
        }
    }

    /// A for_each key as terraform writes it in an address: `"a"`, with `"` and `\` escaped.
    static func quoted(_ key: String) -> String {
        var out = "\""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
