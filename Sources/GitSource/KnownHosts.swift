import Crypto
import Foundation

/// The host keys an SSH remote may present, read from an OpenSSH `known_hosts` file.
///
/// libgit2 hands the server's host key to the certificate callback and accepts it if the callback
/// does, so this is the only thing standing between Lockstep and a man in the middle on the git
/// remote (docs/THREAT-MODEL.md §3.5). Supported: plain and hashed (`|1|salt|hash`) host names, `[host]:port`,
/// `*`/`?` wildcards, `!negation`, and `@revoked` markers; `@cert-authority` lines are ignored
/// (certificates are not accepted).
struct KnownHosts: Sendable {
    struct Entry: Sendable {
        let patterns: [String]
        let keyType: String
        let key: [UInt8]
        let revoked: Bool
    }

    let entries: [Entry]

    init(path: String) throws(GitError) {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw GitError(.credentials, "cannot read the known_hosts file \(path)")
        }
        self.init(text: text)
    }

    init(text: String) {
        var entries: [Entry] = []
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            var revoked = false
            if let marker = fields.first, marker.hasPrefix("@") {
                if marker == "@revoked" { revoked = true } else { continue }
                fields.removeFirst()
            }
            guard fields.count >= 3, let key = Data(base64Encoded: fields[2]) else { continue }
            entries.append(Entry(patterns: fields[0].split(separator: ",").map(String.init),
                                 keyType: fields[1], key: Array(key), revoked: revoked))
        }
        self.entries = entries
    }

    /// The name under which OpenSSH records `host` on `port`.
    static func lookupName(host: String, port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    enum Verdict: Equatable { case trusted, unknownHost, mismatch, revoked }

    /// Decides whether a presented key is trusted for `host:port`. The key is identified by its
    /// raw blob when libgit2 provides it, otherwise by its SHA-256.
    func verdict(host: String, port: Int, keyBlob: [UInt8]?, keySHA256: [UInt8]?) -> Verdict {
        let name = Self.lookupName(host: host, port: port)
        var hostKnown = false
        func sameKey(_ entry: Entry) -> Bool {
            if let keyBlob { return entry.key == keyBlob }
            if let keySHA256 { return Array(SHA256.hash(data: entry.key)) == keySHA256 }
            return false
        }
        for entry in entries where Self.matches(patterns: entry.patterns, name: name) {
            if entry.revoked {
                if sameKey(entry) { return .revoked }
                continue
            }
            hostKnown = true
            if sameKey(entry) { return .trusted }
        }
        return hostKnown ? .mismatch : .unknownHost
    }

    static func matches(patterns: [String], name: String) -> Bool {
        var matched = false
        for pattern in patterns {
            if pattern.hasPrefix("!") {
                if matchesOne(String(pattern.dropFirst()), name: name) { return false }
            } else if matchesOne(pattern, name: name) {
                matched = true
            }
        }
        return matched
    }

    private static func matchesOne(_ pattern: String, name: String) -> Bool {
        if pattern.hasPrefix("|1|") {
            let parts = pattern.split(separator: "|", omittingEmptySubsequences: true)
            guard parts.count == 3, let salt = Data(base64Encoded: String(parts[1])),
                  let expected = Data(base64Encoded: String(parts[2])) else { return false }
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(name.utf8), using: SymmetricKey(data: salt))
            return Data(mac) == expected
        }
        return glob(Array(pattern.lowercased().utf8)[...], Array(name.lowercased().utf8)[...])
    }

    /// OpenSSH's pattern language: `*` any run of characters, `?` exactly one.
    private static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        if first == UInt8(ascii: "*") {
            var rest = text
            while true {
                if glob(pattern.dropFirst(), rest) { return true }
                if rest.isEmpty { return false }
                rest = rest.dropFirst()
            }
        }
        guard let head = text.first else { return false }
        if first == UInt8(ascii: "?") || first == head {
            return glob(pattern.dropFirst(), text.dropFirst())
        }
        return false
    }
}

/// The OpenSSH name of a libgit2 raw host key type.
func sshKeyTypeName(rawType: UInt32) -> String? {
    switch rawType {
    case 1: "ssh-rsa"
    case 2: "ssh-dss"
    case 3: "ecdsa-sha2-nistp256"
    case 4: "ecdsa-sha2-nistp384"
    case 5: "ecdsa-sha2-nistp521"
    case 6: "ssh-ed25519"
    default: nil
    }
}
