import Foundation

/// Where the delivery repository lives and how to authenticate to it.
///
/// Secrets are never held here, only the paths of files that hold them: the token or key is read
/// at fetch time, handed to libgit2, and never logged or put into an error.
public struct Remote: Sendable {
    /// How Lockstep proves who it is to the remote.
    public enum Credentials: Sendable {
        /// No credentials (a local path, `file://`, or a public HTTP remote).
        case none
        /// HTTP basic authentication with a token read from `tokenFile` (trailing newline removed).
        case httpToken(username: String, tokenFile: String)
        /// An SSH key pair. The public key file is optional (libssh2 derives it when absent).
        case sshKey(username: String?, privateKeyFile: String, publicKeyFile: String?, passphraseFile: String?)
    }

    /// The remote URL as configured: a local path, `file://`, `http(s)://` or `ssh://`.
    public var url: String
    public var credentials: Credentials
    /// OpenSSH `known_hosts` file holding the remote's host key. Required for SSH remotes: an
    /// unknown or changed host key is refused (docs/THREAT-MODEL.md §3.5, man in the middle).
    public var knownHostsFile: String?
    /// How many times credentials are offered before giving up; libgit2 asks again after a
    /// refusal, and an unbounded loop would hammer the server with a wrong token.
    public var maxAuthAttempts: Int

    public init(url: String, credentials: Credentials = .none, knownHostsFile: String? = nil, maxAuthAttempts: Int = 3) {
        self.url = url
        self.credentials = credentials
        self.knownHostsFile = knownHostsFile
        self.maxAuthAttempts = maxAuthAttempts
    }

    /// The URL with any password replaced by `***`, safe for logs and errors.
    public var redactedURL: String { Remote.redact(url: url) }

    /// Removes the password part of `scheme://user:password@host/…`.
    public static func redact(url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        let userinfo = authority[..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    /// The password embedded in the URL, if any (so it can be redacted from libgit2's messages).
    var embeddedPassword: String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest[..<(rest.firstIndex(of: "/") ?? rest.endIndex)]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return nil }
        let password = String(authority[authority.index(after: colon)..<at])
        return password.isEmpty ? nil : password
    }

    enum Transport { case local, http, ssh }

    /// The transport and (for SSH) the host and port, checked once before any network use.
    func parsed() throws(GitError) -> (transport: Transport, host: String?, port: Int?) {
        if url.isEmpty || url.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            throw GitError(.invalidRemote, "the remote URL is empty or contains control characters", repository: redactedURL)
        }
        if url.hasPrefix("/") || url.hasPrefix("file://") { return (.local, nil, nil) }
        if url.hasPrefix("http://") || url.hasPrefix("https://") {
            guard URLComponents(string: url)?.host?.isEmpty == false else {
                throw GitError(.invalidRemote, "the remote URL has no host", repository: redactedURL)
            }
            return (.http, nil, nil)
        }
        if url.hasPrefix("ssh://") {
            guard let parts = URLComponents(string: url), let host = parts.host, !host.isEmpty else {
                throw GitError(.invalidRemote, "the ssh:// URL has no host", repository: redactedURL)
            }
            return (.ssh, host, parts.port ?? 22)
        }
        // scp-like syntax: [user@]host:path
        if !url.contains("://"), let colon = url.firstIndex(of: ":"), !url[..<colon].contains("/") {
            var host = String(url[..<colon])
            if let at = host.lastIndex(of: "@") { host = String(host[host.index(after: at)...]) }
            guard !host.isEmpty else {
                throw GitError(.invalidRemote, "the ssh remote has no host", repository: redactedURL)
            }
            return (.ssh, host, 22)
        }
        throw GitError(.invalidRemote, "unsupported remote URL (expected a path, file://, http(s):// or ssh://)",
                       repository: redactedURL)
    }
}

/// Reads a secret file, without its trailing newline. The error names the file, never its content.
func readSecretFile(_ path: String, what: String) throws(GitError) -> String {
    guard let data = FileManager.default.contents(atPath: path), var text = String(data: data, encoding: .utf8) else {
        throw GitError(.credentials, "cannot read the \(what) file \(path)")
    }
    while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
    guard !text.isEmpty else { throw GitError(.credentials, "the \(what) file \(path) is empty") }
    return text
}
