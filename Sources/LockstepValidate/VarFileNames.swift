import Foundation

/// The names of the variables a var file sets, read without evaluating any value.
///
/// `lockstep validate` compares these between a project's environments: a variable that
/// staging's files set and prod's do not is either a forgotten value (prod silently runs on
/// the default) or a declared, intended difference (`parity.ignore` in `lockstep.yaml`).
enum VarFileNames {
    /// Var files larger than this are refused rather than read (a var file is hand-written).
    static let maxBytes = 4 << 20

    /// One variable set by a file, with the line it is set on (1 for JSON files).
    struct Name: Equatable {
        var name: String
        var line: Int
    }

    /// The top-level names of `text`, read as JSON when `file` ends in `.json` (as terraform
    /// decides), as HCL otherwise.
    static func names(in text: String, file: String) throws(HCLScanner.Failure) -> [Name] {
        file.hasSuffix(".json") ? try json(text) : try hcl(text)
    }

    /// Attributes at the top level of a `.tfvars` file. Blocks are an error, as in terraform.
    static func hcl(_ text: String) throws(HCLScanner.Failure) -> [Name] {
        let scanner = HCLScanner(text)
        var seen = Set<String>()
        var out: [Name] = []
        for item in try scanner.items() {
            guard case .attribute = item.kind else {
                throw HCLScanner.Failure(line: item.line, message: "a var file sets values only; the block `\(item.name)` is not allowed")
            }
            guard seen.insert(item.name).inserted else {
                throw HCLScanner.Failure(line: item.line, message: "the variable `\(item.name)` is set twice in this file")
            }
            out.append(Name(name: item.name, line: item.line))
        }
        return out
    }

    /// The keys of the top-level object of a `.tfvars.json` file.
    static func json(_ text: String) throws(HCLScanner.Failure) -> [Name] {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        } catch {
            throw HCLScanner.Failure(line: 1, message: "not valid JSON")
        }
        guard let object = value as? [String: Any] else {
            throw HCLScanner.Failure(line: 1, message: "a JSON var file must hold one object whose keys are variable names")
        }
        return object.keys.sorted().map { Name(name: $0, line: 1) }
    }
}
