import Crypto
import Foundation
import LockstepCore
import Logging
import Testing
@testable import GitSource

@Suite("Remotes over HTTP and SSH")
struct RemoteTransportTests {
    private func servedFixture() throws -> (GitFixture, String) {
        let fixture = try GitFixture()
        let history = try makeMergedHistory(fixture)
        try fixture.tag("dev/v1.0.0", annotated: true, message: "r", at: history.merge)
        try fixture.makeBareMirror(named: "delivery.git")
        return (fixture, history.merge)
    }

    @Test("a mirror syncs over smart HTTP, and picks up a new tag on the next fetch")
    func httpSync() async throws {
        let (fixture, merge) = try servedFixture()
        defer { fixture.cleanup() }
        let server = try GitHTTPServer(root: fixture.servedRoot)
        defer { server.stop() }
        let mirror = GitMirror(remote: Remote(url: server.url(for: "delivery.git")), path: mirrorPath(in: fixture), logger: .init(label: "t"))
        let first = try await mirror.sync()
        #expect(first.createdTags.map(\.name) == ["dev/v1.0.0"])
        #expect(try await mirror.tag(named: "dev/v1.0.0").commit.rawValue == merge)
        try fixture.tag("dev/v1.1.0")
        try fixture.makeBareMirror(named: "delivery.git")
        let second = try await mirror.sync()
        #expect(second.createdTags.map(\.name) == ["dev/v1.1.0"])
    }

    @Test("HTTP basic auth with a token file works; a wrong token fails after a bounded number of attempts and is never shown")
    func httpToken() async throws {
        let (fixture, _) = try servedFixture()
        defer { fixture.cleanup() }
        let secret = "s3cr3t-token-value-42"
        let server = try GitHTTPServer(root: fixture.servedRoot, basicAuth: (user: "lockstep", password: secret))
        defer { server.stop() }
        let goodFile = fixture.scratch.appendingPathComponent("token").path
        try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: goodFile))
        let good = GitMirror(remote: Remote(url: server.url(for: "delivery.git"), credentials: .httpToken(username: "lockstep", tokenFile: goodFile)),
                             path: mirrorPath(in: fixture, "good.git"), logger: .init(label: "t"))
        #expect(try await good.sync().createdTags.count == 1)

        let wrongSecret = "wrong-token-value-77"
        let wrongFile = fixture.scratch.appendingPathComponent("wrong").path
        try Data(wrongSecret.utf8).write(to: URL(fileURLWithPath: wrongFile))
        let before = server.unauthorizedCount
        let wrong = GitMirror(remote: Remote(url: server.url(for: "delivery.git"), credentials: .httpToken(username: "lockstep", tokenFile: wrongFile), maxAuthAttempts: 2),
                              path: mirrorPath(in: fixture, "wrong.git"), logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await wrong.sync() }
        #expect(error.code == .authentication)
        #expect(server.unauthorizedCount - before <= 3)
        for text in [error.description, error.debugDescription, "\(error)"] {
            #expect(!text.contains(wrongSecret) && !text.contains(secret))
        }
    }

    @Test("a password embedded in the URL never appears in errors")
    func embeddedPasswordRedacted() async throws {
        let (fixture, _) = try servedFixture()
        defer { fixture.cleanup() }
        let server = try GitHTTPServer(root: fixture.servedRoot, basicAuth: (user: "lockstep", password: "right-password"))
        defer { server.stop() }
        let url = server.url(for: "missing.git", user: "lockstep", password: "hunter2-embedded")
        let mirror = GitMirror(remote: Remote(url: url), path: mirrorPath(in: fixture), logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        for text in [error.description, error.debugDescription] {
            #expect(!text.contains("hunter2-embedded"))
        }
        #expect(error.repository?.contains("lockstep:***@") == true)
    }

    @Test("an SSH remote with the right known_hosts entry syncs with an ed25519 key",
          .enabled(if: SSHServer.isAvailable, "sshd is installed by scripts/install-test-deps.sh"))
    func sshSync() async throws {
        let (fixture, merge) = try servedFixture()
        defer { fixture.cleanup() }
        let server = try SSHServer()
        defer { server.stop() }
        let remote = Remote(url: server.url(for: fixture.servedRoot.path + "/delivery.git"),
                            credentials: .sshKey(username: nil, privateKeyFile: server.clientPrivateKeyPath,
                                                 publicKeyFile: server.clientPublicKeyPath, passphraseFile: nil),
                            knownHostsFile: server.knownHostsPath)
        let mirror = GitMirror(remote: remote, path: mirrorPath(in: fixture), logger: .init(label: "t"))
        #expect(try await mirror.sync().createdTags.map(\.name) == ["dev/v1.0.0"])
        #expect(try await mirror.tag(named: "dev/v1.0.0").commit.rawValue == merge)

        // Nothing changed: the advertisement alone shows it, no fetch.
        #expect(try await !mirror.sync().changed)
        #expect(await mirror.lastSyncPath == .upToDate)
        // A tag moved upstream after that is still reported with both ids.
        let base = try fixture.revParse("main~2")
        try fixture.forceMoveTag("dev/v1.0.0", to: base)
        try fixture.makeBareMirror(named: "delivery.git")
        let moved = try fixture.revParse("dev/v1.0.0")
        let report = try await mirror.sync()
        #expect(report.movedTags.map(\.name) == ["dev/v1.0.0"])
        #expect(report.movedTags.first?.new?.rawValue == moved)
    }

    @Test("an up-to-date mirror still refuses a changed SSH host key: skipping the fetch never skips the check",
          .enabled(if: SSHServer.isAvailable, "sshd is installed by scripts/install-test-deps.sh"))
    func sshHostKeyCheckedWhenUpToDate() async throws {
        let (fixture, _) = try servedFixture()
        defer { fixture.cleanup() }
        let server = try SSHServer()
        defer { server.stop() }
        let credentials = Remote.Credentials.sshKey(username: nil, privateKeyFile: server.clientPrivateKeyPath,
                                                    publicKeyFile: server.clientPublicKeyPath, passphraseFile: nil)
        let url = server.url(for: fixture.servedRoot.path + "/delivery.git")
        let path = mirrorPath(in: fixture)
        let good = GitMirror(remote: Remote(url: url, credentials: credentials, knownHostsFile: server.knownHostsPath), path: path, logger: .init(label: "t"))
        _ = try await good.sync()
        _ = try await good.sync()
        #expect(await good.lastSyncPath == .upToDate)

        let spoofed = GitMirror(remote: Remote(url: url, credentials: credentials, knownHostsFile: server.wrongKnownHostsPath), path: path, logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await spoofed.sync() }
        #expect(error.code == .untrustedRemote)
        #expect(await spoofed.lastSyncPath == nil)
    }

    @Test("an SSH host key that does not match known_hosts, or no known_hosts at all, is refused",
          .enabled(if: SSHServer.isAvailable, "sshd is installed by scripts/install-test-deps.sh"))
    func sshWrongHostKey() async throws {
        let (fixture, _) = try servedFixture()
        defer { fixture.cleanup() }
        let server = try SSHServer()
        defer { server.stop() }
        let credentials = Remote.Credentials.sshKey(username: nil, privateKeyFile: server.clientPrivateKeyPath,
                                                    publicKeyFile: server.clientPublicKeyPath, passphraseFile: nil)
        let url = server.url(for: fixture.servedRoot.path + "/delivery.git")

        let wrong = GitMirror(remote: Remote(url: url, credentials: credentials, knownHostsFile: server.wrongKnownHostsPath),
                              path: mirrorPath(in: fixture, "wrong.git"), logger: .init(label: "t"))
        let mismatch = try await #require(throws: GitError.self) { try await wrong.sync() }
        #expect(mismatch.code == .untrustedRemote)
        #expect(mismatch.message.contains("does not match"))
        #expect(try await wrong.tags().tags.isEmpty)

        let emptyKnownHosts = fixture.scratch.appendingPathComponent("empty_known_hosts").path
        try Data().write(to: URL(fileURLWithPath: emptyKnownHosts))
        let unknown = GitMirror(remote: Remote(url: url, credentials: credentials, knownHostsFile: emptyKnownHosts),
                                path: mirrorPath(in: fixture, "unknown.git"), logger: .init(label: "t"))
        let unknownError = try await #require(throws: GitError.self) { try await unknown.sync() }
        #expect(unknownError.code == .untrustedRemote)

        let none = GitMirror(remote: Remote(url: url, credentials: credentials, knownHostsFile: nil),
                             path: mirrorPath(in: fixture, "none.git"), logger: .init(label: "t"))
        let noneError = try await #require(throws: GitError.self) { try await none.sync() }
        #expect(noneError.code == .credentials)
    }
}

@Suite("known_hosts matching")
struct KnownHostsTests {
    static let key: [UInt8] = Array("ssh-ed25519-key-blob".utf8)
    static let other: [UInt8] = Array("another-key-blob".utf8)
    static let keyB64 = Data(key).base64EncodedString()
    static let otherB64 = Data(other).base64EncodedString()

    @Test("plain, bracketed-port, wildcard, negated and hashed entries")
    func matching() {
        let hosts = KnownHosts(text: """
        # comment
        git.example.com ssh-ed25519 \(Self.keyB64)
        [git.example.com]:2222 ssh-ed25519 \(Self.otherB64)
        *.corp.example,!evil.corp.example ssh-ed25519 \(Self.keyB64)
        @revoked old.example.com ssh-ed25519 \(Self.keyB64)
        @cert-authority *.example.com ssh-ed25519 \(Self.otherB64)
        \(Self.hashedEntry(host: "hidden.example.com"))
        """)
        #expect(hosts.verdict(host: "git.example.com", port: 22, keyBlob: Self.key, keySHA256: nil) == .trusted)
        #expect(hosts.verdict(host: "git.example.com", port: 22, keyBlob: Self.other, keySHA256: nil) == .mismatch)
        #expect(hosts.verdict(host: "git.example.com", port: 2222, keyBlob: Self.other, keySHA256: nil) == .trusted)
        #expect(hosts.verdict(host: "git.example.com", port: 2222, keyBlob: Self.key, keySHA256: nil) == .mismatch)
        #expect(hosts.verdict(host: "a.corp.example", port: 22, keyBlob: Self.key, keySHA256: nil) == .trusted)
        #expect(hosts.verdict(host: "evil.corp.example", port: 22, keyBlob: Self.key, keySHA256: nil) == .unknownHost)
        #expect(hosts.verdict(host: "old.example.com", port: 22, keyBlob: Self.key, keySHA256: nil) == .revoked)
        #expect(hosts.verdict(host: "other.example.com", port: 22, keyBlob: Self.other, keySHA256: nil) == .unknownHost)
        #expect(hosts.verdict(host: "hidden.example.com", port: 22, keyBlob: Self.key, keySHA256: nil) == .trusted)
        #expect(hosts.verdict(host: "hidden2.example.com", port: 22, keyBlob: Self.key, keySHA256: nil) == .unknownHost)
    }

    @Test("a key identified only by its SHA-256 is matched")
    func bySHA256() {
        let hosts = KnownHosts(text: "git.example.com ssh-ed25519 \(Self.keyB64)\n")
        let digest = Array(SHA256.hash(data: Self.key))
        #expect(hosts.verdict(host: "git.example.com", port: 22, keyBlob: nil, keySHA256: digest) == .trusted)
        #expect(hosts.verdict(host: "git.example.com", port: 22, keyBlob: nil, keySHA256: Array(repeating: 0, count: 32)) == .mismatch)
    }

    static func hashedEntry(host: String) -> String {
        let salt = Array("0123456789abcdefghij".utf8)
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(host.utf8), using: SymmetricKey(data: salt))
        return "|1|\(Data(salt).base64EncodedString())|\(Data(mac).base64EncodedString()) ssh-ed25519 \(keyB64)"
    }
}

@Suite("URL redaction")
struct RedactionTests {
    @Test("passwords in URLs are replaced", arguments: [
        ("https://user:pw@host/repo.git", "https://user:***@host/repo.git"),
        ("https://user@host/repo.git", "https://user@host/repo.git"),
        ("https://host/a@b", "https://host/a@b"),
        ("ssh://git@host:22/x", "ssh://git@host:22/x"),
        ("/local/path", "/local/path"),
    ])
    func redact(url: String, expected: String) {
        #expect(Remote.redact(url: url) == expected)
    }
}
