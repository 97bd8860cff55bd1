internal import CLibgit2
import Foundation

/// State shared with libgit2's fetch callbacks through their `payload` pointer. It lives for
/// exactly one connect and download, on the mirror actor's executor.
final class FetchContext {
    let remote: Remote
    let host: String?
    let port: Int?
    var knownHosts: KnownHosts?
    var authAttempts = 0
    /// The token once read, so that it can be redacted from any error text.
    var token: String?
    /// A precise error set by a callback; preferred over libgit2's generic one.
    var failure: GitError?

    init(remote: Remote, host: String?, port: Int?) {
        self.remote = remote
        self.host = host
        self.port = port
    }

    func fail(_ error: GitError, code: Int32) -> Int32 {
        failure = error
        git_error_set_str(Int32(GIT_ERROR_CALLBACK.rawValue), error.message)
        return code
    }
}

private func context(_ payload: UnsafeMutableRawPointer?) -> FetchContext? {
    payload.map { Unmanaged<FetchContext>.fromOpaque($0).takeUnretainedValue() }
}

/// Offers the configured credentials, at most `maxAuthAttempts` times: libgit2 asks again after
/// every refusal, and a wrong token must not turn into an endless stream of attempts.
let fetchCredentialsCallback: git_credential_acquire_cb = { out, _, usernameFromURL, allowedTypes, payload in
    guard let context = context(payload), let out else { return GIT_PASSTHROUGH.rawValue }
    context.authAttempts += 1
    if context.authAttempts > context.remote.maxAuthAttempts {
        return context.fail(GitError(.authentication, "the remote refused the credentials \(context.remote.maxAuthAttempts) times"),
                            code: GIT_EAUTH.rawValue)
    }
    let urlUser = usernameFromURL.map { String(cString: $0) }
    switch context.remote.credentials {
    case .none:
        return context.fail(GitError(.authentication, "the remote asks for credentials and none are configured"),
                            code: GIT_EAUTH.rawValue)
    case let .httpToken(username, tokenFile):
        guard allowedTypes & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0 else {
            return context.fail(GitError(.authentication, "the remote does not accept a token"), code: GIT_EAUTH.rawValue)
        }
        do throws(GitError) {
            let token: String
            if let known = context.token { token = known } else { token = try readSecretFile(tokenFile, what: "token") }
            context.token = token
            return git_credential_userpass_plaintext_new(out, username, token)
        } catch {
            return context.fail(error, code: GIT_EAUTH.rawValue)
        }
    case let .sshKey(username, privateKeyFile, publicKeyFile, passphraseFile):
        let user = username ?? urlUser ?? "git"
        if allowedTypes & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            var passphrase: String?
            if let passphraseFile {
                do throws(GitError) { passphrase = try readSecretFile(passphraseFile, what: "SSH key passphrase") } catch {
                    return context.fail(error, code: GIT_EAUTH.rawValue)
                }
                context.token = passphrase
            }
            guard FileManager.default.isReadableFile(atPath: privateKeyFile) else {
                return context.fail(GitError(.credentials, "cannot read the SSH private key file \(privateKeyFile)"),
                                    code: GIT_EAUTH.rawValue)
            }
            return git_credential_ssh_key_new(out, user, publicKeyFile, privateKeyFile, passphrase)
        }
        if allowedTypes & GIT_CREDENTIAL_USERNAME.rawValue != 0 {
            return git_credential_username_new(out, user)
        }
        return context.fail(GitError(.authentication, "the remote does not accept an SSH key"), code: GIT_EAUTH.rawValue)
    }
}

/// Decides whether the remote is the one it claims to be.
///
/// For SSH, libgit2 accepts any host key the callback accepts, so the key is checked here against
/// the configured known_hosts file; an unknown host or a changed key is refused. For HTTPS the
/// TLS library has already verified the certificate chain and host name (`valid`); an invalid
/// certificate is refused rather than passed through (returning 0 would accept it).
let fetchCertificateCallback: git_transport_certificate_check_cb = { cert, valid, hostPointer, payload in
    guard let context = context(payload) else { return GIT_ECERTIFICATE.rawValue }
    let host = hostPointer.map { String(cString: $0) } ?? context.host ?? ""
    guard let cert, lockstep_cert_is_ssh_hostkey(cert) != 0 else {
        if valid != 0 { return 0 }
        return context.fail(GitError(.untrustedRemote, "the TLS certificate of \(host) is not trusted"),
                            code: GIT_ECERTIFICATE.rawValue)
    }
    guard let knownHosts = context.knownHosts else {
        return context.fail(GitError(.untrustedRemote, "no known_hosts configured: refusing the SSH host key of \(host)"),
                            code: GIT_ECERTIFICATE.rawValue)
    }
    let hostkey = lockstep_cert_as_hostkey(cert)!.pointee
    var blob: [UInt8]?
    if hostkey.type.rawValue & GIT_CERT_SSH_RAW.rawValue != 0, let raw = hostkey.hostkey, hostkey.hostkey_len > 0 {
        blob = Array(UnsafeRawBufferPointer(start: raw, count: hostkey.hostkey_len))
    }
    var sha256: [UInt8]?
    if hostkey.type.rawValue & GIT_CERT_SSH_SHA256.rawValue != 0 {
        sha256 = withUnsafeBytes(of: hostkey.hash_sha256) { Array($0) }
    }
    let checkedHost = context.host ?? host
    switch knownHosts.verdict(host: checkedHost, port: context.port ?? 22, keyBlob: blob, keySHA256: sha256) {
    case .trusted:
        return 0
    case .unknownHost:
        return context.fail(GitError(.untrustedRemote, "the SSH host \(KnownHosts.lookupName(host: checkedHost, port: context.port ?? 22)) is not in the known_hosts file"),
                            code: GIT_ECERTIFICATE.rawValue)
    case .mismatch:
        return context.fail(GitError(.untrustedRemote, "the SSH host key of \(KnownHosts.lookupName(host: checkedHost, port: context.port ?? 22)) does not match the known_hosts file: possible man in the middle"),
                            code: GIT_ECERTIFICATE.rawValue)
    case .revoked:
        return context.fail(GitError(.untrustedRemote, "the SSH host key of \(checkedHost) is marked @revoked"),
                            code: GIT_ECERTIFICATE.rawValue)
    }
}
