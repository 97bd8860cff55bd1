public import Foundation
import Crypto
public import GitSource
public import LockstepConfig
public import LockstepCore
import TerraformRunner

/// The signer files of one environment (docs/CONTRACT.md §3 rule 3), read whole and hashed.
///
/// Why they are read into memory: the verifying programs get private copies of exactly the
/// bytes hashed here, so what a cached verdict was computed against is what its key names,
/// and an operator's edit (a revoked key) takes effect at the next pass through a new digest.
public struct SignerTrust: Sendable, Hashable {
    public let environment: EnvironmentName
    /// SSH allowed_signers lines.
    public let allowedSigners: Data?
    /// SSH revocation list (a KRL, or public keys one per line).
    public let revokedSigners: Data?
    /// OpenPGP public keys.
    public let openPGPKeyring: Data?
    /// SHA-256 over all three, each length-prefixed.
    public let digest: LockstepCore.Digest

    public init(environment: EnvironmentName, allowedSigners: Data?, revokedSigners: Data?, openPGPKeyring: Data?) {
        self.environment = environment
        self.allowedSigners = allowedSigners
        self.revokedSigners = revokedSigners
        self.openPGPKeyring = openPGPKeyring
        var bytes = Data()
        for part in [allowedSigners, revokedSigners, openPGPKeyring] {
            let count = part.map { UInt64($0.count) + 1 } ?? 0
            withUnsafeBytes(of: count.bigEndian) { bytes.append(contentsOf: $0) }
            if let part { bytes.append(part) }
        }
        digest = LockstepCore.Digest.sha256(of: bytes)
    }

    /// The signer files of `policy`, or nil when it does not require signed tags. A file that
    /// cannot be read is an error naming it: every tag of the environment is then rejected.
    public static func load(_ policy: EnvironmentPolicy, maxBytes: Int = 4 << 20) throws(GateError) -> SignerTrust? {
        guard policy.requireSignedTags else { return nil }
        func read(_ path: String?, _ what: String) throws(GateError) -> Data? {
            guard let path else { return nil }
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw GateError(.configuration, "the \(what) of \(policy.name) (\(path)) cannot be read")
            }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: maxBytes + 1)) ?? Data()
            guard data.count <= maxBytes else {
                throw GateError(.configuration, "the \(what) of \(policy.name) (\(path)) is over \(maxBytes) bytes")
            }
            return data
        }
        return SignerTrust(environment: policy.name,
                           allowedSigners: try read(policy.allowedSignersFile, "allowed_signers_file"),
                           revokedSigners: try read(policy.revokedSignersFile, "revoked_signers_file"),
                           openPGPKeyring: try read(policy.openPGPKeyringFile, "openpgp_keyring_file"))
    }
}

/// What verifying one tag against one environment's signers found.
public enum SignatureVerdict: Sendable, Hashable {
    case verified(TagSigner)
    case rejected(TagRejection)

    public var signer: TagSigner? {
        if case .verified(let signer) = self { signer } else { nil }
    }
}

/// Verifies release tag signatures with the system's `ssh-keygen -Y` and `gpg` (docs/CONTRACT.md
/// §3 rule 3; docs/THREAT-MODEL.md §8.1), each in a private temporary folder, with a timeout.
///
/// Each failure gets its own reason (``TagRejection/Code``): what is read from the signature
/// itself (format, SSH namespace and key) is checked here first, then the cryptography and
/// the key's validity by the program. A key that is not this environment's is looked up in
/// the others', so "allowed only for staging" can be said.
///
/// Verdicts are cached by tag object id and the signer files' digest: a tag object never
/// changes, and a changed signer file gives a new digest. Key validity (`valid-before`, an
/// OpenPGP expiry) is therefore judged when the tag is first decided under those files since
/// the daemon started.
public actor TagSignatureVerifier {
    /// The programs used; absolute paths (no PATH search).
    public struct Programs: Sendable {
        public var sshKeygen: String
        public var gpg: String

        public init(sshKeygen: String = "/usr/bin/ssh-keygen", gpg: String = "/usr/bin/gpg") {
            self.sshKeygen = sshKeygen
            self.gpg = gpg
        }
    }

    private struct CacheKey: Hashable {
        let tag: GitObjectID
        let trust: LockstepCore.Digest
    }

    private let programs: Programs
    private let scratch: URL
    private let timeout: Duration
    private var cache: [CacheKey: SignatureVerdict] = [:]
    private static let cacheLimit = 50_000

    /// - Parameter scratch: a folder only the daemon's user can write; each verification makes
    ///   and removes its own 0700 folder inside it.
    public init(programs: Programs = Programs(), scratch: URL, timeout: Duration = .seconds(30)) {
        self.programs = programs
        self.scratch = scratch
        self.timeout = timeout
    }

    /// The verdict cached for `tag` under `trust`, if any.
    public func cached(tag: GitObjectID, trust: SignerTrust) -> SignatureVerdict? {
        cache[CacheKey(tag: tag, trust: trust.digest)]
    }

    /// Verifies `raw` (a tag object read by id and hashed again, ``GitMirror/rawTag(id:name:)``)
    /// against `trust`; `others` are the other environments' signers, consulted only to say
    /// whose key it is when it is not this environment's.
    public func verify(_ raw: RawTagObject, trust: SignerTrust, others: [SignerTrust]) async -> SignatureVerdict {
        let key = CacheKey(tag: raw.id, trust: trust.digest)
        if let known = cache[key] { return known }
        var verdict = await check(raw, trust: trust)
        if case .rejected(let rejection) = verdict, rejection.code == .signerKeyNotAllowed {
            var owners: [String] = []
            for other in others where other.environment != trust.environment {
                if case .verified = await check(raw, trust: other) { owners.append(other.environment.rawValue) }
            }
            if !owners.isEmpty {
                verdict = .rejected(TagRejection(
                    code: .signerKeyOtherEnvironment,
                    description: "tag \"\(displaySafe(raw.name))\" is signed by a key allowed only for \(owners.sorted().joined(separator: ", ")), not for \(trust.environment)"))
            }
        }
        if case .rejected(let rejection) = verdict, rejection.code == .signatureUncheckable {
            // A program that could not run says nothing about the tag: ask again next time.
            return verdict
        }
        if cache.count >= Self.cacheLimit { cache.removeAll() }
        cache[key] = verdict
        return verdict
    }

    private func check(_ raw: RawTagObject, trust: SignerTrust) async -> SignatureVerdict {
        let name = displaySafe(raw.name)
        func reject(_ code: TagRejection.Code, _ text: String) -> SignatureVerdict {
            .rejected(TagRejection(code: code, description: "tag \"\(name)\" \(text)"))
        }
        guard let signature = raw.signature, let format = raw.signatureFormat else {
            return reject(.unsigned, "is not signed")
        }
        guard let tagger = Self.taggerEmail(raw.payload) else {
            return reject(.signerPrincipalMismatch, "has no usable tagger e-mail address to match the signer against")
        }
        switch format {
        case .ssh where trust.allowedSigners != nil:
            return await checkSSH(raw.payload, signature, tagger: tagger, trust: trust, reject: reject)
        case .openPGP where trust.openPGPKeyring != nil:
            return await checkOpenPGP(raw.payload, signature, tagger: tagger, trust: trust, reject: reject)
        default:
            return reject(.signatureFormatNotAllowed, "carries an \(format) signature; \(trust.environment) accepts \(Self.formats(trust))")
        }
    }

    private static func formats(_ trust: SignerTrust) -> String {
        [trust.allowedSigners.map { _ in "SSH" }, trust.openPGPKeyring.map { _ in "OpenPGP" }]
            .compactMap { $0 }.joined(separator: " and ") + " signatures only"
    }

    /// The tagger's e-mail from the signed payload itself (`tagger Name <email> time zone`),
    /// lowercased; nil when absent or when it holds anything but the characters of an address.
    static func taggerEmail(_ payload: [UInt8]) -> String? {
        let text = String(decoding: payload, as: UTF8.self)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { return nil }  // end of the header
            guard line.hasPrefix("tagger ") else { continue }
            guard let open = line.firstIndex(of: "<"), let close = line[open...].firstIndex(of: ">") else { return nil }
            let email = line[line.index(after: open)..<close]
            // Only what addresses are made of: no pattern characters (`*`, `?`, `!`, `,`) that an
            // allowed_signers principal list gives meaning to, no quotes, no spaces.
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+%@")
            guard !email.isEmpty, email.utf8.count <= 254, email.allSatisfy({ allowed.contains($0) }) else { return nil }
            return email.lowercased()
        }
        return nil
    }

    // MARK: SSH

    private func checkSSH(_ payload: [UInt8], _ signature: [UInt8], tagger: String, trust: SignerTrust,
                          reject: (TagRejection.Code, String) -> SignatureVerdict) async -> SignatureVerdict {
        guard let parsed = SSHSignature(armoured: signature) else {
            return reject(.signatureMalformed, "carries an SSH signature that cannot be read")
        }
        guard parsed.namespace == "git" else {
            return reject(.signatureWrongNamespace, "carries an SSH signature made for namespace \"\(displaySafe(parsed.namespace))\", not \"git\"")
        }
        let fingerprint = parsed.fingerprint
        let allowed = SSHKeyLines(trust.allowedSigners ?? Data())
        let revokedList = trust.revokedSigners.map { SSHKeyLines($0) }
        do {
            return try await inFolder { folder in
                let files = try Self.write(folder, ["payload": Data(payload), "tag.sig": Data(signature),
                                                    "allowed_signers": trust.allowedSigners ?? Data(),
                                                    "revoked": trust.revokedSigners, "key.pub": parsed.publicKeyLine])
                // The cryptography first: a tag edited after signing is said to be that, whoever's key it names.
                let cryptographic = try await run(programs.sshKeygen, ["-Y", "check-novalidate", "-n", "git", "-s", files["tag.sig"]!],
                                                  in: folder, stdin: files["payload"])
                guard cryptographic.succeeded else {
                    return reject(.signatureBad, "has an SSH signature that does not match the tag's contents (edited after signing?)")
                }
                if revokedList?.contains(parsed.publicKey) == true {
                    return reject(.signerKeyRevoked, "is signed by key \(fingerprint), which is revoked for \(trust.environment)")
                }
                if let revokedPath = files["revoked"], trust.revokedSigners?.starts(with: Data("SSHKRL\n\0".utf8)) == true {
                    // A binary KRL: ssh-keygen -Q says whether the key is in it.
                    let query = try await run(programs.sshKeygen, ["-Q", "-f", revokedPath, files["key.pub"]!], in: folder, stdin: nil)
                    if !query.succeeded {
                        return reject(.signerKeyRevoked, "is signed by key \(fingerprint), which is revoked for \(trust.environment)")
                    }
                }
                guard allowed.contains(parsed.publicKey) else {
                    return reject(.signerKeyNotAllowed, "is signed by key \(fingerprint), which is not in the allowed signers of \(trust.environment)")
                }
                var arguments = ["-Y", "verify", "-f", files["allowed_signers"]!, "-I", tagger, "-n", "git", "-s", files["tag.sig"]!]
                if let revokedPath = files["revoked"] { arguments += ["-r", revokedPath] }
                let verified = try await run(programs.sshKeygen, arguments, in: folder, stdin: files["payload"])
                if verified.succeeded {
                    return .verified(TagSigner(format: "ssh", principal: tagger, key: fingerprint))
                }
                if verified.output.contains("expired") || verified.output.contains("not yet valid") {
                    return reject(.signerKeyExpired, "is signed by key \(fingerprint), which is expired or not yet valid in the allowed signers of \(trust.environment)")
                }
                return reject(.signerPrincipalMismatch,
                              "is signed by key \(fingerprint), which \(trust.environment)'s allowed signers do not allow for the tagger <\(displaySafe(tagger))> in namespace git")
            }
        } catch {
            return reject(.signatureUncheckable, "could not be checked: \(error)")
        }
    }

    // MARK: OpenPGP

    private func checkOpenPGP(_ payload: [UInt8], _ signature: [UInt8], tagger: String, trust: SignerTrust,
                              reject: (TagRejection.Code, String) -> SignatureVerdict) async -> SignatureVerdict {
        do {
            return try await inFolder { folder in
                let home = folder.appendingPathComponent("gnupg")
                try FileManager.default.createDirectory(at: home, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                let files = try Self.write(folder, ["payload": Data(payload), "tag.sig": Data(signature),
                                                    "keyring": trust.openPGPKeyring ?? Data()])
                let base = ["--batch", "--no-tty", "--no-autostart", "--no-options", "--homedir", home.path]
                let imported = try await run(programs.gpg, base + ["--import", files["keyring"]!], in: folder, stdin: nil, home: home)
                guard imported.succeeded else {
                    return reject(.signatureUncheckable, "could not be checked: the OpenPGP keyring of \(trust.environment) does not import")
                }
                let verified = try await run(programs.gpg, base + ["--status-fd", "1", "--verify", files["tag.sig"]!, files["payload"]!],
                                             in: folder, stdin: nil, home: home)
                let status = GPGStatus(verified.output)
                if status.signatures != 1 {
                    return reject(.signatureMalformed, "carries \(status.signatures) OpenPGP signatures; exactly one is accepted")
                }
                if status.has("BADSIG") {
                    return reject(.signatureBad, "has an OpenPGP signature that does not match the tag's contents (edited after signing?)")
                }
                let keyID = status.first("ERRSIG").first ?? status.first("NO_PUBKEY").first
                let errsig = status.first("ERRSIG")
                if status.has("NO_PUBKEY") || (errsig.count > 5 && errsig[5] == "9") {
                    return reject(.signerKeyNotAllowed, "is signed by OpenPGP key \(displaySafe(keyID ?? "?")), which is not in the keyring of \(trust.environment)")
                }
                if let revoked = status.first(ifAny: "REVKEYSIG") {
                    return reject(.signerKeyRevoked, "is signed by OpenPGP key \(displaySafe(revoked.first ?? "?")), which is revoked")
                }
                if let expired = status.first(ifAny: "EXPKEYSIG") ?? status.first(ifAny: "EXPSIG") {
                    return reject(.signerKeyExpired, "is signed by OpenPGP key \(displaySafe(expired.first ?? "?")), which (or whose signature) has expired")
                }
                guard status.has("GOODSIG"), let valid = status.first(ifAny: "VALIDSIG"), let primary = valid.last,
                      verified.succeeded else {
                    return reject(.signatureNotVerified, "has an OpenPGP signature gpg did not accept")
                }
                let listed = try await run(programs.gpg, base + ["--with-colons", "--list-keys", primary], in: folder, stdin: nil, home: home)
                guard listed.succeeded else {
                    return reject(.signatureUncheckable, "could not be checked: gpg cannot list key \(displaySafe(primary))")
                }
                guard GPGStatus.userIDEmails(listed.output).contains(tagger) else {
                    return reject(.signerPrincipalMismatch,
                                  "is signed by OpenPGP key \(displaySafe(primary)), which has no valid user id for the tagger <\(displaySafe(tagger))>")
                }
                return .verified(TagSigner(format: "openpgp", principal: tagger, key: primary))
            }
        } catch {
            return reject(.signatureUncheckable, "could not be checked: \(error)")
        }
    }

    // MARK: running the programs

    private struct Ran {
        var succeeded: Bool
        var output: String
    }

    private func run(_ program: String, _ arguments: [String], in folder: URL, stdin: String?, home: URL? = nil) async throws -> Ran {
        var environment = ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": folder.path]
        if let home { environment["GNUPGHOME"] = home.path }
        let result = try await ExternalProgram.run(ExternalProgram.Request(
            executable: program, arguments: arguments, directory: folder, environment: environment,
            timeout: timeout, gracePeriod: .seconds(2), retainedOutputBytes: 256 * 1024, stdinPath: stdin))
        guard result.outcome != .timedOut else {
            throw GateError(.program, "\(program) did not finish within \(timeout)")
        }
        return Ran(succeeded: result.outcome == .succeeded, output: result.output)
    }

    private func inFolder<T>(_ body: (URL) async throws -> T) async throws -> T {
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let folder = scratch.appendingPathComponent("verify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: folder) }
        return try await body(folder)
    }

    /// Writes each present file (0600) and returns the paths by name.
    private static func write(_ folder: URL, _ files: [String: Data?]) throws -> [String: String] {
        var paths: [String: String] = [:]
        for (name, data) in files {
            guard let data else { continue }
            let url = folder.appendingPathComponent(name)
            guard FileManager.default.createFile(atPath: url.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
                throw GateError(.program, "cannot write \(url.path)")
            }
            paths[name] = url.path
        }
        return paths
    }
}

/// An armoured SSH signature (`-----BEGIN SSH SIGNATURE-----`, the SSHSIG format of OpenSSH's
/// PROTOCOL.sshsig): only the fields Lockstep reads before asking ssh-keygen.
struct SSHSignature {
    /// The signer's public key blob (the wire encoding, as base64-decoded from a `.pub` line).
    let publicKey: Data
    let keyType: String
    let namespace: String

    init?(armoured: [UInt8]) {
        let text = String(decoding: armoured, as: UTF8.self)
        let body = text.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined()
        guard let blob = Data(base64Encoded: body) else { return nil }
        var reader = SSHWireReader(blob)
        guard reader.bytes(6) == Data("SSHSIG".utf8), reader.uint32() == 1,
              let key = reader.string(), let namespace = reader.string() else { return nil }
        var keyReader = SSHWireReader(key)
        guard let type = keyReader.string() else { return nil }
        self.publicKey = key
        self.keyType = String(decoding: type, as: UTF8.self)
        self.namespace = String(decoding: namespace, as: UTF8.self)
    }

    /// `SHA256:` and the unpadded base64 of the key blob's SHA-256, as ssh-keygen prints it.
    var fingerprint: String {
        "SHA256:" + Data(SHA256.hash(data: publicKey)).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    /// The key as an OpenSSH public key line (for `ssh-keygen -Q`).
    var publicKeyLine: Data {
        Data("\(keyType) \(publicKey.base64EncodedString())\n".utf8)
    }
}

/// Reads SSH wire encoding: uint32 big-endian lengths and the bytes they count.
struct SSHWireReader {
    private let data: Data
    private var offset: Int

    init(_ data: Data) {
        self.data = data
        self.offset = data.startIndex
    }

    mutating func bytes(_ count: Int) -> Data? {
        guard count >= 0, data.endIndex - offset >= count else { return nil }
        defer { offset += count }
        return data[offset..<offset + count]
    }

    mutating func uint32() -> UInt32? {
        bytes(4).map { $0.reduce(0) { $0 << 8 | UInt32($1) } }
    }

    mutating func string() -> Data? {
        guard let length = uint32(), length <= 1 << 20 else { return nil }
        return bytes(Int(length)).map { Data($0) }
    }
}

/// The public keys named in an allowed_signers or revocation file: every whitespace-separated
/// field (quotes respected, so an option value is one field) that decodes as base64 to an SSH
/// key blob. Matching by blob means principal patterns and options are left to ssh-keygen.
struct SSHKeyLines {
    private var keys: Set<Data> = []

    init(_ data: Data) {
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(whereSeparator: \.isNewline) where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            for field in Self.fields(line) {
                guard let blob = Data(base64Encoded: String(field)) else { continue }
                var reader = SSHWireReader(blob)
                guard let type = reader.string(), String(decoding: type, as: UTF8.self).contains("-") else { continue }
                keys.insert(blob)
            }
        }
    }

    func contains(_ key: Data) -> Bool { keys.contains(key) }

    private static func fields(_ line: Substring) -> [Substring] {
        var fields: [Substring] = []
        var start: Substring.Index?
        var quoted = false
        for index in line.indices {
            let character = line[index]
            if character == "\"" { quoted.toggle() }
            if (character == " " || character == "\t") && !quoted {
                if let begun = start { fields.append(line[begun..<index]) }
                start = nil
            } else if start == nil {
                start = index
            }
        }
        if let begun = start { fields.append(line[begun...]) }
        return fields
    }
}

/// `gpg --status-fd` lines (`[GNUPG:] KEYWORD args…`), as documented in gnupg's doc/DETAILS.
struct GPGStatus {
    private let lines: [(keyword: String, arguments: [String])]

    init(_ output: String) {
        lines = output.split(whereSeparator: \.isNewline).compactMap { line in
            guard line.hasPrefix("[GNUPG:] ") else { return nil }
            let words = line.dropFirst(9).split(separator: " ").map(String.init)
            guard let keyword = words.first else { return nil }
            return (keyword, Array(words.dropFirst()))
        }
    }

    /// How many signatures gpg looked at.
    var signatures: Int { lines.filter { $0.keyword == "NEWSIG" }.count }

    func has(_ keyword: String) -> Bool { lines.contains { $0.keyword == keyword } }

    func first(_ keyword: String) -> [String] { first(ifAny: keyword) ?? [] }

    func first(ifAny keyword: String) -> [String]? { lines.first { $0.keyword == keyword }?.arguments }

    /// The lowercased e-mail addresses of the user ids that are not revoked, from
    /// `gpg --with-colons --list-keys` (field 2 is the validity, field 10 the user id).
    static func userIDEmails(_ listing: String) -> Set<String> {
        var emails: Set<String> = []
        for line in listing.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count > 9, fields[0] == "uid", fields[1] != "r" else { continue }
            let userID = fields[9].replacingOccurrences(of: "\\x3a", with: ":")
            guard let open = userID.lastIndex(of: "<"), let close = userID[open...].firstIndex(of: ">") else { continue }
            emails.insert(userID[userID.index(after: open)..<close].lowercased())
        }
        return emails
    }
}
