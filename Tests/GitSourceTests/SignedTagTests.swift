import Foundation
import Testing
@testable import GitSource

@Suite("Raw tag objects for signature verification")
struct SignedTagTests {
    @Test("an SSH-signed tag splits into payload and signature that ssh-keygen verifies; a tampered payload fails")
    func sshSignedTagVerifies() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        let key = try fixture.makeSSHKey(named: "release-signer")
        try fixture.tag("prod/v1.0.0", message: "Release 1.0.0", sshSigningKey: key.privateKey)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()

        let raw = try await mirror.rawTag(named: "prod/v1.0.0")
        #expect(raw.signatureFormat == .ssh)
        let signature = try #require(raw.signature)
        // Exactly what git stores: payload + signature == the object's bytes.
        let catFile = try fixture.git("cat-file", "tag", "prod/v1.0.0")
        #expect(String(decoding: raw.payload + signature, as: UTF8.self).trimmingCharacters(in: .newlines) == catFile)

        let publicKey = try String(contentsOfFile: key.publicKey, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let signers = fixture.scratch.appendingPathComponent("allowed_signers")
        try Data("releaser@example.test \(publicKey)\n".utf8).write(to: signers)
        let sigFile = fixture.scratch.appendingPathComponent("tag.sig")
        try Data(signature).write(to: sigFile)

        func verify(_ payload: [UInt8]) throws -> Int32 {
            try FixtureProcess.run("/usr/bin/ssh-keygen",
                                   ["-Y", "verify", "-f", signers.path, "-I", "releaser@example.test", "-n", "git", "-s", sigFile.path],
                                   environment: ["PATH": "/usr/bin:/bin"], directory: fixture.scratch, input: Data(payload)).status
        }
        #expect(try verify(raw.payload) == 0)
        var tampered = raw.payload
        tampered[tampered.count / 2] ^= 0x01
        #expect(try verify(tampered) != 0)
    }

    @Test("an unsigned annotated tag has no signature; a lightweight tag has no tag object")
    func unsignedAndLightweight() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        try fixture.tag("dev/v1.0.0", annotated: true, message: "plain")
        try fixture.tag("dev/v1.0.1")
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let raw = try await mirror.rawTag(named: "dev/v1.0.0")
        #expect(raw.signature == nil && raw.signatureFormat == nil)
        #expect(String(decoding: raw.payload, as: UTF8.self).contains("tag dev/v1.0.0\n"))
        let error = try await #require(throws: GitError.self) { try await mirror.rawTag(named: "dev/v1.0.1") }
        #expect(error.code == .notAnnotated)
    }

    @Test("the split uses the last signature line, as git does", arguments: [
        ("object x\n\nmsg\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n", SignatureFormat.openPGP, 14),
        ("object x\n\n-----BEGIN SSH SIGNATURE-----\nquoted\n-----BEGIN SSH SIGNATURE-----\nsig\n", SignatureFormat.ssh, 47),
        ("object x\n\nmsg -----BEGIN PGP SIGNATURE----- inline\n", nil, 51),
    ])
    func splitRules(text: String, format: SignatureFormat?, payloadLength: Int) {
        let split = RawTagObject.split(Array(text.utf8))
        #expect(split.format == format)
        #expect(split.payload.count == payloadLength)
    }
}
