import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// Runs a program without a shell and returns its stdout; throws with its stderr on failure.
@discardableResult
private func tool(_ path: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
                  in directory: URL) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    process.environment = ["PATH": "/usr/bin:/bin", "LC_ALL": "C"].merging(environment) { _, new in new }
    let (out, err, stdin) = (Pipe(), Pipe(), Pipe())
    process.standardOutput = out
    process.standardError = err
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(input) }
    try stdin.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw GitCommandFailed(arguments: [path] + arguments, stderr: String(decoding: errors, as: UTF8.self))
    }
    return data
}

/// SSH keys made with ssh-keygen, and the signer files of two environments.
private struct SSHKeys {
    let folder: URL

    init() throws {
        folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lockstep-keys-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    func make(_ name: String) throws -> String {
        try tool("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name], in: folder)
        return folder.appendingPathComponent(name).path
    }

    /// `type base64` of a key's public half.
    func publicKey(_ name: String) throws -> String {
        let line = try String(contentsOf: folder.appendingPathComponent("\(name).pub"), encoding: .utf8)
        return line.split(separator: " ").prefix(2).joined(separator: " ")
    }

    func write(_ name: String, _ text: String) throws -> String {
        let url = folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// Signs `payload` as `ssh-keygen -Y sign` does for git, in `namespace`.
    func sign(_ payload: Data, key: String, namespace: String = "git") throws -> Data {
        try tool("/usr/bin/ssh-keygen", ["-q", "-Y", "sign", "-f", folder.appendingPathComponent(key).path, "-n", namespace],
                 input: payload, in: folder)
    }

    func cleanup() { try? FileManager.default.removeItem(at: folder) }
}

/// An OpenPGP home made with gpg (its agent is stopped by `cleanup()`).
private struct GPGKeys {
    let home: URL

    init() throws {
        home = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lsgpg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    private func gpg(_ arguments: [String], input: Data? = nil) throws -> Data {
        try tool("/usr/bin/gpg", ["--batch", "--no-tty", "--homedir", home.path, "--pinentry-mode", "loopback", "--passphrase", ""] + arguments,
                 input: input, in: home)
    }

    /// Makes a signing key for `userID` and returns its fingerprint. `fakedTime` makes it in the past.
    func make(_ userID: String, expiry: String = "1y", fakedTime: String? = nil) throws -> String {
        let faked = fakedTime.map { ["--faked-system-time", $0] } ?? []
        _ = try gpg(faked + ["--quick-gen-key", userID, "ed25519", "sign", expiry])
        let listing = String(decoding: try gpg(["--with-colons", "--list-keys", userID]), as: UTF8.self)
        let fingerprint = listing.split(separator: "\n").first { $0.hasPrefix("fpr:") }?.split(separator: ":", omittingEmptySubsequences: false)[9]
        return String(try #require(fingerprint))
    }

    func sign(_ payload: Data, key: String, fakedTime: String? = nil) throws -> Data {
        let faked = fakedTime.map { ["--faked-system-time", $0] } ?? []
        return try gpg(faked + ["--local-user", key, "--armor", "--detach-sign"], input: payload)
    }

    /// Revokes `key` with the certificate gpg wrote when it made the key.
    func revoke(_ key: String) throws {
        let certificate = try String(contentsOf: home.appendingPathComponent("openpgp-revocs.d/\(key).rev"), encoding: .utf8)
        _ = try gpg(["--import"], input: Data(certificate.replacingOccurrences(of: ":-----BEGIN", with: "-----BEGIN").utf8))
    }

    func export(_ keys: [String], to path: String) throws {
        try gpg(["--armor", "--export"] + keys).write(to: URL(fileURLWithPath: path))
    }

    func cleanup() {
        _ = try? tool("/usr/bin/gpgconf", ["--homedir", home.path, "--kill", "gpg-agent"], in: home)
        try? FileManager.default.removeItem(at: home)
    }
}

extension World {
    /// Writes a tag object by hand (`git hash-object -t tag`): the payload as git writes it,
    /// then `signature` (any bytes), and points `refs/tags/NAME` at it.
    func handMadeTag(_ name: String, at commit: String, tagger: String = "dave@example.com", message: String? = nil,
                     sign: (Data) throws -> Data?) throws {
        let payload = Data("object \(commit)\ntype commit\ntag \(name)\ntagger Dave <\(tagger)> 1700000000 +0000\n\n\(message ?? name)\n".utf8)
        let object = payload + (try sign(payload) ?? Data())
        let id = try git(["hash-object", "-t", "tag", "-w", "--stdin"], input: object)
        try git(["update-ref", "refs/tags/\(name)", id])
    }

    /// The bytes of the tag object `name` as git stores them.
    func tagObject(_ name: String) throws -> Data {
        Data(try git(["cat-file", "tag", name]).utf8 + [0x0A])
    }
}

@Suite("Gate: signed release tags with real ssh-keygen and gpg")
struct SignedTagGateTests {
    @Test("SSH: a good signature is accepted and recorded on the run; every other case is rejected with its own reason")
    func sshSignatures() async throws {
        let keys = try SSHKeys()
        defer { keys.cleanup() }
        for name in ["release", "stranger", "revoked", "expired", "staging-only"] { _ = try keys.make(name) }
        let prodSigners = try keys.write("prod_signers", """
            # prod release keys
            dave@example.com namespaces="git" \(try keys.publicKey("release")) release key
            dave@example.com \(try keys.publicKey("revoked"))
            dave@example.com valid-before="20200101" \(try keys.publicKey("expired"))

            """)
        let revoked = try keys.write("revoked_keys", try keys.publicKey("revoked") + "\n")
        let stagingSigners = try keys.write("staging_signers", "*@example.com \(try keys.publicKey("staging-only"))\n")
        let world = try World(environmentsYAML: """
              staging:
                serves: false
                approvers: [alice]
                require_signed_tags: true
                allowed_signers_file: \(stagingSigners)
              prod:
                serves: true
                approvers: [alice, bob, dave]
                tagger_may_approve: true
                require_signed_tags: true
                allowed_signers_file: \(prodSigners)
                revoked_signers_file: \(revoked)
            """, environments: ["staging", "prod"])
        defer { world.cleanup() }

        let commit = try world.mergeRelease("1.0.0")
        let signing = ["GIT_CONFIG_PARAMETERS": "'gpg.format'='ssh' 'user.signingkey'='\(keys.folder.appendingPathComponent("release").path)'"]
        try world.git(["tag", "-s", "-m", "Release 1.0.0", "prod/v1.0.0", commit], committerEmail: "dave@example.com", extraEnvironment: signing)
        try world.tag("prod/v0.1.0", at: commit)
        try world.git(["tag", "prod/v0.2.0", commit])
        // Tampered: the good tag object with its message edited, signature kept.
        let good = try world.tagObject("prod/v1.0.0")
        let edited = String(decoding: good, as: UTF8.self)
            .replacingOccurrences(of: "tag prod/v1.0.0\n", with: "tag prod/v0.3.0\n")
            .replacingOccurrences(of: "Release 1.0.0", with: "Release 1.0.1")
        let tamperedID = try world.git(["hash-object", "-t", "tag", "-w", "--stdin"], input: Data(edited.utf8))
        try world.git(["update-ref", "refs/tags/prod/v0.3.0", tamperedID])
        try world.handMadeTag("prod/v0.4.0", at: commit) { try keys.sign($0, key: "stranger") }
        try world.handMadeTag("prod/v0.5.0", at: commit) { try keys.sign($0, key: "release", namespace: "file") }
        try world.handMadeTag("prod/v0.6.0", at: commit) { try keys.sign($0, key: "revoked") }
        try world.handMadeTag("prod/v0.7.0", at: commit) { try keys.sign($0, key: "expired") }
        try world.handMadeTag("prod/v0.8.0", at: commit) { try keys.sign($0, key: "staging-only") }
        try world.handMadeTag("prod/v0.9.0", at: commit, tagger: "erin@example.com") { try keys.sign($0, key: "release") }
        try world.publish()

        let report = try await world.gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        let expected: [(String, [TagRejection.Code])] = [
            ("prod/v0.1.0", [.unsigned]),
            ("prod/v0.2.0", [.notAnnotated, .unsigned]),
            ("prod/v0.3.0", [.signatureBad]),
            ("prod/v0.4.0", [.signerKeyNotAllowed]),
            ("prod/v0.5.0", [.signatureWrongNamespace]),
            ("prod/v0.6.0", [.signerKeyRevoked]),
            ("prod/v0.7.0", [.signerKeyExpired]),
            ("prod/v0.8.0", [.signerKeyOtherEnvironment]),
            ("prod/v0.9.0", [.signerPrincipalMismatch]),
        ]
        for (tag, codes) in expected {
            let decision = try #require(try await world.decision("prod", tag), "\(tag)")
            #expect(!decision.accepted, "\(tag)")
            #expect(decision.rejections.map(\.code) == codes, "\(tag): \(decision.rejections)")
        }
        #expect(try await world.decision("prod", "prod/v0.8.0")?.rejections.first?.description.contains("allowed only for staging") == true)
        #expect(try await world.decision("prod", "prod/v0.3.0")?.rejections.first?.description.contains("edited after signing") == true)

        let accepted = try #require(try await world.decision("prod", "prod/v1.0.0"))
        #expect(accepted.accepted, "\(accepted.rejections)")
        let run = try await world.run("prod", "1.0.0")
        let fingerprint = String(decoding: try tool("/usr/bin/ssh-keygen", ["-l", "-f", "release.pub"], in: keys.folder), as: UTF8.self)
            .split(separator: " ")[1]
        #expect(run.run.signer == TagSigner(format: "ssh", principal: "dave@example.com", key: String(fingerprint)))
        #expect(run.state == .awaitingApproval)
        let created = try await world.store.auditEntries().first { $0.kind == .runCreated && $0.runID == run.id }
        #expect(created?.payload["signer"] == "dave@example.com" && created?.payload["signer_key"] == String(fingerprint))

        // dave may approve as the tagger here, but not the release he signed.
        let refused = try await world.approve(run, by: ["dave"])
        guard case .refused(let refusal) = refused.first else { Issue.record("dave's approval: \(refused)"); return }
        #expect(refusal.code == .signerSelfApproval)
        #expect(try await world.gate.reviewFacts(of: world.store.run(run.id)!).mayApprove == [identity("alice"), identity("bob")])

        // alice approves; then the release key is revoked in the agent's file before apply. The
        // apply re-checks the signature with the files as they are now: nothing is applied.
        #expect(try await world.approve(run, by: ["alice"]) == [.approved])
        try Data((try keys.publicKey("revoked") + "\n" + (try keys.publicKey("release")) + "\n").utf8)
            .write(to: URL(fileURLWithPath: revoked))
        let outcome = try await world.gate.apply(run: run.id)
        guard case .preconditionsFailed(let preconditions, let state) = outcome else { Issue.record("apply: \(outcome)"); return }
        #expect(preconditions.failures.map(\.code) == [.signatureNoLongerValid], "\(preconditions.failures)")
        #expect(preconditions.failures.first?.description.contains("revoked") == true)
        #expect(state == .failed)
        #expect(world.applyLog.isEmpty)
        // And the next pass rejects the tag itself.
        _ = try await world.gate.reconcile()
        let revokedNow = try #require(try await world.decision("prod", "prod/v1.0.0"))
        #expect(!revokedNow.accepted && revokedNow.rejections.map(\.code) == [.signerKeyRevoked], "\(revokedNow.rejections)")
    }

    @Test("a rollback in an environment that requires signed tags carries the verified signer and applies; a tag no longer trusted cannot be rolled back to")
    func signedRollback() async throws {
        let keys = try SSHKeys()
        defer { keys.cleanup() }
        _ = try keys.make("release")
        let signers = try keys.write("dev_signers", "dave@example.com \(try keys.publicKey("release"))\n")
        let world = try World(environmentsYAML: """
              dev:
                serves: true
                approvers: [alice]
                require_signed_tags: true
                allowed_signers_file: \(signers)
            """, environments: ["dev"])
        defer { world.cleanup() }
        let signing = ["GIT_CONFIG_PARAMETERS": "'gpg.format'='ssh' 'user.signingkey'='\(keys.folder.appendingPathComponent("release").path)'"]
        for version in ["1.0.0", "1.1.0"] {
            let commit = try world.mergeRelease(version)
            try world.git(["tag", "-s", "-m", "Release \(version)", "dev/v\(version)", commit], committerEmail: "dave@example.com",
                          extraEnvironment: signing)
            try world.publish()
            #expect(try await world.deploy("dev", version) == .applied(.verified))
        }
        let first = try await world.run("dev", "1.0.0")
        let rollback = try await world.gate.rollback(environment: envName("dev"), to: semver("1.0.0"), identity: identity("alice"))
        #expect(rollback.run.signer == first.run.signer && rollback.run.signer != nil)
        _ = try await world.gate.reconcile()
        let planned = try #require(try await world.store.run(rollback.id))
        try await world.approve(planned, by: ["alice"])
        #expect(try await world.gate.apply(run: rollback.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.0.0")

        // The key is removed from the agent's file: 1.1.0 can no longer be rolled back to.
        try Data("# no keys\n".utf8).write(to: URL(fileURLWithPath: signers))
        do {
            _ = try await world.gate.rollback(environment: envName("dev"), to: semver("1.1.0"), identity: identity("alice"))
            Issue.record("a rollback to a tag whose signer is no longer trusted was created")
        } catch let error as GateError {
            #expect(error.description.contains("signature does not verify now"), "\(error)")
        }
    }

    @Test("OpenPGP: a good signature is accepted; tampered, unknown, revoked, expired, wrong user id and SSH-signed tags are rejected with their own reason")
    func openPGPSignatures() async throws {
        let gpg = try GPGKeys()
        defer { gpg.cleanup() }
        let keys = try SSHKeys()
        defer { keys.cleanup() }
        _ = try keys.make("ssh")
        let release = try gpg.make("Dave <dave@example.com>")
        let stranger = try gpg.make("Stranger <dave@example.com>")
        let revokedKey = try gpg.make("Dave Old <dave@example.com>")
        let expiredKey = try gpg.make("Dave Expired <dave@example.com>", expiry: "1d", fakedTime: "20200101T000000")
        let erinKey = try gpg.make("Erin <erin@example.com>")
        let keyring = keys.folder.appendingPathComponent("prod.asc").path

        let world = try World(environmentsYAML: """
              prod:
                serves: true
                approvers: [alice]
                require_signed_tags: true
                openpgp_keyring_file: \(keyring)
            """, environments: ["prod"])
        defer { world.cleanup() }
        let commit = try world.mergeRelease("1.0.0")
        let gitGPG = ["GNUPGHOME": gpg.home.path,
                      "GIT_CONFIG_PARAMETERS": "'user.signingkey'='\(release)' 'gpg.program'='/usr/bin/gpg'"]
        try world.git(["tag", "-s", "-m", "Release 1.0.0", "prod/v1.0.0", commit], committerEmail: "dave@example.com", extraEnvironment: gitGPG)
        let good = String(decoding: try world.tagObject("prod/v1.0.0"), as: UTF8.self)
        let tamperedID = try world.git(["hash-object", "-t", "tag", "-w", "--stdin"],
                                       input: Data(good.replacingOccurrences(of: "Release 1.0.0", with: "Release 9.9.9").utf8))
        try world.git(["update-ref", "refs/tags/prod/v0.1.0", tamperedID])
        try world.handMadeTag("prod/v0.2.0", at: commit) { try gpg.sign($0, key: stranger) }
        try world.handMadeTag("prod/v0.3.0", at: commit) { try gpg.sign($0, key: revokedKey) }
        try world.handMadeTag("prod/v0.4.0", at: commit) { try gpg.sign($0, key: expiredKey, fakedTime: "20200101T010000") }
        try world.handMadeTag("prod/v0.5.0", at: commit) { try gpg.sign($0, key: erinKey) }
        try world.handMadeTag("prod/v0.6.0", at: commit) { try keys.sign($0, key: "ssh") }
        try world.publish()
        try gpg.revoke(revokedKey)
        try gpg.export([release, revokedKey, expiredKey, erinKey], to: keyring)

        let report = try await world.gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        let expected: [(String, [TagRejection.Code])] = [
            ("prod/v0.1.0", [.signatureBad]),
            ("prod/v0.2.0", [.signerKeyNotAllowed]),
            ("prod/v0.3.0", [.signerKeyRevoked]),
            ("prod/v0.4.0", [.signerKeyExpired]),
            ("prod/v0.5.0", [.signerPrincipalMismatch]),
            ("prod/v0.6.0", [.signatureFormatNotAllowed]),
        ]
        for (tag, codes) in expected {
            let decision = try #require(try await world.decision("prod", tag), "\(tag)")
            #expect(decision.rejections.map(\.code) == codes, "\(tag): \(decision.rejections)")
        }
        let accepted = try #require(try await world.decision("prod", "prod/v1.0.0"))
        #expect(accepted.accepted, "\(accepted.rejections)")
        let run = try await world.run("prod", "1.0.0")
        #expect(run.run.signer == TagSigner(format: "openpgp", principal: "dave@example.com", key: release))
    }

    @Test("a signer file that cannot be read rejects every tag and says why; nothing is planned")
    func unreadableSignerFile() async throws {
        let world = try World(environmentsYAML: """
              prod:
                serves: true
                approvers: [alice]
                require_signed_tags: true
                allowed_signers_file: /nonexistent/lockstep-signers
            """, environments: ["prod"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["prod"])
        let report = try await world.gate.reconcile()
        #expect(report.problems.contains { $0.contains("/nonexistent/lockstep-signers") && $0.contains("cannot be read") }, "\(report.problems)")
        #expect(try await world.decision("prod", "prod/v1.0.0")?.accepted == false)
        #expect(try await world.runs("prod").isEmpty)
    }
}

@Suite("The tagger's address read from a signed tag payload")
struct TaggerEmailTests {
    @Test("the address is taken from the header only, lowercased; pattern characters and odd bytes give none", arguments: [
        ("object a\ntype commit\ntag t\ntagger Dave <Dave@Example.COM> 1 +0000\n\nmsg\n", "dave@example.com"),
        ("object a\ntype commit\ntag t\ntagger Eve <*@example.com> 1 +0000\n\nmsg\n", nil),
        ("object a\ntype commit\ntag t\ntagger Eve <a@b,c@d> 1 +0000\n\nmsg\n", nil),
        ("object a\ntype commit\ntag t\ntagger Eve <a b@c> 1 +0000\n\nmsg\n", nil),
        ("object a\ntype commit\ntag t\n\ntagger Dave <dave@example.com> 1 +0000\n", nil),
        ("object a\ntype commit\ntag t\ntagger Nobody 1 +0000\n\nmsg\n", nil),
    ] as [(String, String?)])
    func taggerEmail(payload: String, expected: String?) {
        #expect(TagSignatureVerifier.taggerEmail(Array(payload.utf8)) == expected)
    }
}
