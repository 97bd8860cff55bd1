import ArgumentParser
import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import LockstepGate
import Logging

/// What verifying signed release tags costs a pass (issue 16): every tag of an environment that
/// requires signatures is verified once per signer-file digest, then answered from the cache.
/// Measured for SSH and OpenPGP signatures, cold (a fresh verifier, as after a restart) and
/// cached, beside `git verify-tag` over the same tags in the same run.
struct SignatureBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signatures",
                                                    abstract: "Benchmark signed-tag verification (SSH and OpenPGP), cold and cached.")

    @Option(help: "Signed tags per format.")
    var tags = 200

    func run() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lsbench-sig-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let gnupg = scratch.appendingPathComponent("gnupg")
        try FileManager.default.createDirectory(at: gnupg, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer {
            _ = try? shell("/usr/bin/gpgconf", ["--homedir", gnupg.path, "--kill", "gpg-agent"], in: scratch)
            try? FileManager.default.removeItem(at: scratch)
        }
        let work = scratch.appendingPathComponent("work")
        let env = ["GIT_AUTHOR_NAME": "Rel", "GIT_AUTHOR_EMAIL": "rel@example.com", "GIT_COMMITTER_NAME": "Rel",
                   "GIT_COMMITTER_EMAIL": "rel@example.com", "GNUPGHOME": gnupg.path, "HOME": scratch.path]
        try shell("/usr/bin/git", ["init", "-q", "-b", "main", work.path], in: scratch)
        try shell("/usr/bin/git", ["commit", "-q", "--allow-empty", "-m", "base"], in: work, env: env)

        try shell("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", "key"], in: scratch)
        let publicKey = try String(contentsOf: scratch.appendingPathComponent("key.pub"), encoding: .utf8)
            .split(separator: " ").prefix(2).joined(separator: " ")
        let signers = scratch.appendingPathComponent("allowed_signers")
        try Data("rel@example.com \(publicKey)\n".utf8).write(to: signers)
        try shell("/usr/bin/gpg", ["--batch", "--homedir", gnupg.path, "--pinentry-mode", "loopback", "--passphrase", "",
                                   "--quick-gen-key", "Rel <rel@example.com>", "ed25519", "sign", "1y"], in: scratch)
        let keyring = scratch.appendingPathComponent("keys.asc")
        try shell("/usr/bin/gpg", ["--batch", "--homedir", gnupg.path, "--armor", "--export", "--output", keyring.path], in: scratch)

        for index in 0..<tags {
            try shell("/usr/bin/git", ["-c", "gpg.format=ssh", "-c", "user.signingkey=\(scratch.path)/key", "tag", "-s", "-m", "r",
                                       "ssh/v1.0.\(index)"], in: work, env: env)
            try shell("/usr/bin/git", ["-c", "user.signingkey=rel@example.com", "tag", "-s", "-m", "r", "pgp/v1.0.\(index)"], in: work, env: env)
        }
        let mirror = GitMirror(remote: Remote(url: work.path), path: scratch.appendingPathComponent("mirror").path, logger: Logger(label: "bench"))
        _ = try await mirror.sync()

        print("| format | tags | Lockstep cold ms/tag | Lockstep cached ms/tag | git verify-tag ms/tag |")
        print("|---|---:|---:|---:|---:|")
        for (format, prefix) in [("SSH", "ssh"), ("OpenPGP", "pgp")] {
            let trust = SignerTrust(environment: try EnvironmentName("prod"),
                                    allowedSigners: format == "SSH" ? try Data(contentsOf: signers) : nil, revokedSigners: nil,
                                    openPGPKeyring: format == "SSH" ? nil : try Data(contentsOf: keyring))
            let listing = try await mirror.tags(matching: "\(prefix)/*", components: nil)
            let verifier = TagSignatureVerifier(scratch: scratch.appendingPathComponent("verify"))
            let clock = ContinuousClock()
            var failures = 0
            let cold = try await clock.measure {
                for tag in listing.tags {
                    let raw = try await mirror.rawTag(id: tag.target, name: tag.name)
                    if case .rejected = await verifier.verify(raw, trust: trust, others: []) { failures += 1 }
                }
            }
            let cached = try await clock.measure {
                for tag in listing.tags {
                    let raw = try await mirror.rawTag(id: tag.target, name: tag.name)
                    _ = await verifier.verify(raw, trust: trust, others: [])
                }
            }
            guard failures == 0 else { throw ValidationError("\(failures) \(format) tags did not verify") }
            let sample = Array(listing.tags.prefix(50))
            let git = try clock.measure {
                for tag in sample {
                    try shell("/usr/bin/git", ["-c", "gpg.ssh.allowedSignersFile=\(signers.path)", "verify-tag", tag.name], in: work, env: env)
                }
            }
            func perTag(_ duration: Duration, _ count: Int) -> String {
                String(format: "%.2f", Double(duration.components.attoseconds) / 1e15 / Double(count) + Double(duration.components.seconds) * 1_000 / Double(count))
            }
            print("| \(format) | \(listing.tags.count) | \(perTag(cold, listing.tags.count)) | \(perTag(cached, listing.tags.count)) | \(perTag(git, sample.count)) |")
        }
    }

    @discardableResult
    private func shell(_ program: String, _ arguments: [String], in directory: URL, env: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ["PATH": "/usr/bin:/bin", "LC_ALL": "C"].merging(env) { _, new in new }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("\(program) \(arguments.joined(separator: " ")): \(text)") }
        return text
    }
}
