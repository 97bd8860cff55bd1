internal import CLibgit2

/// Validation of branch and tag names before Lockstep uses them.
///
/// Tag names come from whoever can push to the delivery repository, and they end up in file
/// names, logs, HTTP responses, pull-request comments and terraform arguments. Git itself allows
/// far more than is safe there (newlines, shell metacharacters, thousands of bytes), so Lockstep
/// accepts a deliberately small alphabet — `A–Z a–z 0–9 . _ + - /` — on top of git's own rules.
/// Every name is checked here before any other use of it (docs/THREAT-MODEL.md §3.2, hostile tag names).
public enum RefName {
    /// The longest name accepted, in bytes.
    public static let maximumLength = 200

    /// Returns `nil` when `name` is a safe short ref name (without `refs/tags/` or `refs/heads/`),
    /// or the reason it is refused.
    public static func problem(with name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "the name is empty" }
        if bytes.count > maximumLength { return "the name is \(bytes.count) bytes long (at most \(maximumLength))" }
        for byte in bytes {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2B || byte == 0x2D || byte == 0x2F
            if !ok {
                if byte < 0x20 || byte == 0x7F { return "the name contains a control character" }
                if byte >= 0x80 { return "the name contains a non-ASCII character" }
                return "the name contains the character \(String(UnicodeScalar(byte))) (allowed: letters, digits, . _ + - /)"
            }
        }
        // On the bytes (all ASCII by now): a fetch checks every advertised ref, and String's
        // substring search was a good part of a fetch of 10,000 tags.
        let (dot, slash) = (UInt8(ascii: "."), UInt8(ascii: "/"))
        if zip(bytes, bytes.dropFirst()).contains(where: { $0 == dot && $1 == dot }) { return "the name contains '..'" }
        if bytes.first == slash || bytes.last == slash || zip(bytes, bytes.dropFirst()).contains(where: { $0 == slash && $1 == slash }) {
            return "the name has an empty path component"
        }
        let lock = Array(".lock".utf8)
        for component in bytes.split(separator: slash) {
            if component.first == dot { return "a path component starts with '.'" }
            if component.count >= lock.count && component.suffix(lock.count).elementsEqual(lock) {
                return "a path component ends with '.lock'"
            }
            if component.last == dot { return "a path component ends with '.'" }
        }
        return nil
    }

    /// Throws `invalidRefName` naming the (escaped) name and the reason when `name` is refused.
    public static func validate(_ name: String, kind: String = "ref") throws(GitError) {
        if let problem = problem(with: name) {
            throw GitError(.invalidRefName, "refused \(kind) name \(displayable(name)): \(problem)")
        }
        var valid: Int32 = 0
        try ensureLibgit2()
        _ = ("refs/tags/" + name).withCString { git_reference_name_is_valid(&valid, $0) }
        if valid == 0 {
            throw GitError(.invalidRefName, "refused \(kind) name \(displayable(name)): git does not accept it")
        }
    }

    /// A form of an untrusted name that is safe to print on one line: quoted, control and
    /// non-ASCII characters escaped, cut after 80 characters.
    public static func displayable(_ name: String) -> String {
        var out = ""
        var count = 0
        for scalar in name.unicodeScalars {
            if count == 80 { out += "…"; break }
            if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" {
                out.unicodeScalars.append(scalar)
            } else {
                out += scalar.escaped(asASCII: true)
            }
            count += 1
        }
        return "\"" + out + "\""
    }
}
