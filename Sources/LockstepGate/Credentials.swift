import Foundation

/// Reads a credentials env-file (`NAME=value` lines, `#` comments, blank lines; an
/// optional `export ` prefix and one pair of surrounding quotes are removed).
///
/// The values are secrets: they are handed to one terraform process as its credentials
/// (so the runner redacts them from everything) and never logged, stored or put into an
/// error. Errors name the file and the line number only.
///
/// Why a file read at the moment of use rather than at start-up: apply credentials are
/// loaded only right before apply and dropped after (docs/CONTRACT.md §4), so a plan-time process or
/// a memory dump of an idle daemon does not hold them; systemd credentials work this way.
enum CredentialsFile {
    /// Largest file accepted: credentials are short; a huge file is a mistake.
    static let maximumBytes = 64 * 1024

    static func read(_ path: String) throws(GateError) -> [String: String] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw GateError(.notAllowed, "the credentials file \(path) cannot be read")
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: maximumBytes + 1) ?? Data()
        } catch {
            throw GateError(.notAllowed, "the credentials file \(path) cannot be read")
        }
        guard data.count <= maximumBytes, let text = String(data: data, encoding: .utf8) else {
            throw GateError(.notAllowed, "the credentials file \(path) is not UTF-8 text of at most \(maximumBytes) bytes")
        }
        var values: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let equals = line.firstIndex(of: "=") else {
                throw GateError(.notAllowed, "the credentials file \(path), line \(index + 1): expected NAME=value")
            }
            let name = String(line[..<equals])
            var value = String(line[line.index(after: equals)...])
            let nameOK = !name.isEmpty && name.utf8.allSatisfy {
                $0 == UInt8(ascii: "_") || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122)
            }
            guard nameOK else {
                throw GateError(.notAllowed, "the credentials file \(path), line \(index + 1): expected a variable name of letters, digits and `_`")
            }
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            values[name] = value
        }
        return values
    }
}

/// The values of a credentials env-file, for redacting text that leaves the process (the
/// outbox's comments and notifications): read at the moment of use and not kept.
public enum CredentialValues {
    public static func read(_ path: String) throws -> [String] {
        Array(try CredentialsFile.read(path).values)
    }
}
