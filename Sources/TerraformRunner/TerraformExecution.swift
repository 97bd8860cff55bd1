import Foundation
import Logging

/// What every terraform command runs with: an environment built from nothing, a fresh HOME
/// and temporary folder, the launcher when confined, and the process edge (``ProcessExecution``).
extension TerraformRunner {
    // MARK: Environment

    /// Names a caller may never set: each would let someone other than
    /// Lockstep steer terraform (extra CLI arguments, another CLI config or
    /// plugin source, a provider to attach to, debug logs that print secrets).
    static func isForbidden(_ name: String) -> Bool {
        if ["PATH", "HOME", "CHECKPOINT_DISABLE"].contains(name) { return true }
        if name.hasPrefix("TF_") {
            return !(name.hasPrefix("TF_VAR_") || name.hasPrefix("TF_TOKEN_") || name == "TF_WORKSPACE")
        }
        return false
    }

    /// The complete environment of a terraform process: what the invocation
    /// passes plus what the runner decides, nothing from `ProcessInfo`.
    func environment(for invocation: Invocation, home: URL, temporary: URL? = nil) throws -> [String: String] {
        var environment: [String: String] = [:]
        for (name, value) in invocation.environment.merging(invocation.credentials, uniquingKeysWith: { _, credential in credential }) {
            let validName = !name.isEmpty && name.utf8.allSatisfy { $0 == UInt8(ascii: "_") || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }
            guard validName, !Self.isForbidden(name), !value.utf8.contains(0) else {
                throw TerraformRunnerError(.forbiddenEnvironmentVariable,
                                           "an environment variable that steers terraform cannot be passed",
                                           context: ["variable": validName ? name : "(invalid name)"])
            }
            environment[name] = value
        }
        environment["PATH"] = configuration.searchPath
        environment["HOME"] = home.path
        // Temporary files (Go's os.TempDir: provider sockets; mktemp in local-exec) go into
        // the command's own folder, removed with it, not into a /tmp the next command shares.
        if let temporary { environment["TMPDIR"] = temporary.path }
        environment["TF_CLI_CONFIG_FILE"] = (configuration.operatorCLIConfig ?? cliConfigFile).path
        // Takes precedence over the CLI config's `plugin_cache_dir` (terraform and tofu alike).
        if configuration.usesPluginCache, let cache = invocation.pluginCache { environment["TF_PLUGIN_CACHE_DIR"] = cache.path }
        environment["TF_IN_AUTOMATION"] = "1"
        environment["TF_INPUT"] = "0"
        environment["CHECKPOINT_DISABLE"] = "1"
        return environment
    }

    // MARK: Internals

    /// Creates the tools directory (0700), the parent of HOMEs and the plugin cache, and writes
    /// the CLI config. Returns the tools directory.
    @discardableResult
    func prepareTools() throws -> URL {
        let fileManager = FileManager.default
        do {
            for url in [configuration.toolsDirectory, homesDirectory, pluginCacheDirectory, cliConfigDirectory] {
                try fileManager.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
        } catch {
            throw TerraformRunnerError(.fileSystem, "cannot create the runner's tools directory")
        }
        // Rewritten only when it changed: concurrent commands read it.
        let rendered = try cliConfiguration.rendered()
        if configuration.operatorCLIConfig == nil, fileManager.contents(atPath: cliConfigFile.path) != Data(rendered.utf8) {
            try cliConfiguration.write(to: cliConfigFile)
        }
        guard fileManager.isExecutableFile(atPath: configuration.executable.path) else {
            throw TerraformRunnerError(.executableNotFound, "the configured terraform binary is not executable",
                                       context: ["executable": configuration.executable.path])
        }
        return configuration.toolsDirectory
    }

    /// A fresh, empty HOME (0700) for one terraform command.
    ///
    /// Terraform and everything it starts (providers, `local-exec`) may write
    /// into HOME: `.terraform.d/` (credentials, checkpoint cache), and tool
    /// configs such as `~/.aws/config`, whose `credential_process` would run a
    /// command with whatever credentials the *next* process holds. A HOME
    /// shared between commands would let a plan of one environment plant such a
    /// file for the apply of another, or plan-time code (plan credentials) plant
    /// it for the apply of its own run (apply credentials, docs/THREAT-MODEL.md §1.1). So every
    /// command gets its own HOME, removed when it ends. It lives under the
    /// runner's tools directory, not in the exported tree: the delivery repo
    /// must not be able to ship a `.terraform.d/` or `.terraformrc` into HOME.
    func makeHome() throws -> URL {
        try makeFreshFolder(homesDirectory.appendingPathComponent(UUID().uuidString, isDirectory: true), "a HOME")
    }

    /// A fresh, empty temporary folder (0700) for one command, given as `TMPDIR`. Under the
    /// system's temporary folder (the unit's private /tmp), not under HOME: providers put
    /// their plugin sockets here, and a socket path must stay under 108 bytes.
    func makeTemporaryDirectory() throws -> URL {
        try makeFreshFolder(URL(fileURLWithPath: NSTemporaryDirectory(), isDirectory: true)
            .appendingPathComponent("lockstep-tf-\(UUID().uuidString.prefix(13))", isDirectory: true), "a temporary folder")
    }

    /// Creates `folder` (0700); fails if it already exists, so a folder someone else made
    /// in a shared parent is never used.
    func makeFreshFolder(_ folder: URL, _ what: String) throws -> URL {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw TerraformRunnerError(.fileSystem, "cannot create \(what) for terraform")
        }
        return folder
    }

    /// Removes a command's HOME. A failure (e.g. a child made a folder
    /// unremovable) only costs disk: the name is random and never reused.
    func removeHome(_ home: URL) {
        do { try FileManager.default.removeItem(at: home) } catch {
            logger.warning("could not remove a terraform HOME", metadata: ["terraform.home": "\(home.lastPathComponent)"])
        }
    }

    func ensurePrivate(directory: URL) throws {
        let fileManager = FileManager.default
        if !fileManager.fileExists(atPath: directory.path) {
            do {
                try fileManager.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw TerraformRunnerError(.fileSystem, "cannot create the plan directory")
            }
        }
        let attributes = try? fileManager.attributesOfItem(atPath: directory.path)
        let mode = (attributes?[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        guard mode & 0o077 == 0 else {
            throw TerraformRunnerError(.insecurePermissions, "the plan directory is accessible to other users; it must be 0700",
                                       context: ["mode": String(mode, radix: 8)])
        }
    }

    func seconds(_ duration: Duration) -> Int64 { duration.components.seconds }

    struct Execution {
        var command: CommandResult
        var stdout: Data?
        /// Bytes terraform wrote to a captured stdout, kept or not.
        var stdoutBytes: Int = 0
    }

    /// Runs one terraform command. With `capture`, stdout is kept in memory up to
    /// `captureLimit` (default `maxCapturedBytes`): past it, with `keepPrefix` the first bytes
    /// are returned and the rest counted; otherwise the rest is drained unkept and
    /// `tooLarge(total bytes)` is thrown.
    func execute(
        _ arguments: [String], _ invocation: Invocation, command: String, capture: Bool = false,
        captureLimit: Int? = nil, keepPrefix: Bool = false,
        tooLarge: ((Int) -> TerraformRunnerError)? = nil, stdin: URL? = nil
    ) async throws -> Execution {
        let home = try makeHome()
        defer { removeHome(home) }
        let temporary = try makeTemporaryDirectory()
        defer { removeHome(temporary) }
        let environment = try environment(for: invocation, home: home, temporary: temporary)
        let redactor = invocation.redactor
        var logger = self.logger
        logger[metadataKey: "terraform.command"] = "\(command)"
        logger.info("terraform started", metadata: ["terraform.directory": "\(invocation.directory.path)"])
        var executable = configuration.executable.path
        var fullArguments = arguments
        if let confinement = configuration.confinement {
            // The tools folder holds every command's HOME and the plugin cache: hidden, and
            // only this command's HOME, the CLI config and the cache granted back. Only init
            // writes the cache; plan-time code can read and run providers from it, not swap one.
            var readable = [configuration.executable, cliConfigDirectory] + (configuration.operatorCLIConfig.map { [$0] } ?? [])
                + (stdin.map { [$0] } ?? []) + invocation.readable
            // A path that does not exist yet (the plan file before plan) is left out: it could
            // not be created anyway, its folder is not writable.
            var writable = (invocation.writable ?? [invocation.directory])
                .filter { FileManager.default.fileExists(atPath: $0.path) } + [home, temporary]
            if configuration.usesPluginCache {
                let cache = pluginCacheDirectory(for: invocation)
                if arguments.first == "init" { writable.append(cache) } else { readable.append(cache) }
            }
            fullArguments = confinement.arguments(program: executable, hidden: [configuration.toolsDirectory] + invocation.hidden,
                                                  readable: readable, writable: writable) + arguments
            executable = confinement.launcher.path
        }
        let limit = captureLimit ?? configuration.maxCapturedBytes
        var request = ProcessRequest(
            executable: executable,
            arguments: fullArguments,
            directory: invocation.directory,
            environment: environment,
            timeout: invocation.timeout,
            gracePeriod: arguments.first == "apply" ? configuration.applyGracePeriod : configuration.gracePeriod,
            captureStdoutLimit: capture ? limit : nil,
            retainedBytes: configuration.retainedOutputBytes,
            maxLineBytes: configuration.maxLineBytes,
            redactor: redactor,
            sink: invocation.output,
            stdinPath: stdin?.path
        )
        request.captureKeepsPrefix = keepPrefix
        let result = try await ProcessExecution.run(request)
        if result.stdoutOverflowed {
            logger.warning("terraform output over its limit was not kept", metadata: [
                "terraform.stdout.bytes": "\(result.stdoutBytes)", "terraform.stdout.limit_bytes": "\(limit)"])
            throw tooLarge?(result.stdoutBytes)
                ?? TerraformRunnerError(.outputTooLarge, "terraform printed more than the configured limit",
                                        context: ["limit": "\(limit)"])
        }
        let outcome = CommandOutcome.classify(exitCode: result.exitCode, interruption: result.interruption, output: result.tail)
        logger.info("terraform finished", metadata: [
            // Exit 2 of `plan -detailed-exitcode` is a plan that found changes, not a failure.
            "terraform.outcome": "\(arguments.contains("-detailed-exitcode") ? outcome.planDescription : outcome.description)",
            "terraform.exit_code": "\(result.exitCode)",
            "terraform.duration_ms": "\(result.duration.components.seconds * 1000 + result.duration.components.attoseconds / 1_000_000_000_000_000)",
        ])
        return Execution(
            command: CommandResult(outcome: outcome, exitCode: result.exitCode, duration: result.duration,
                                   output: OutputNotice.output(result.tail, dropped: result.droppedBytes,
                                                                 limit: configuration.retainedOutputBytes),
                                   droppedOutputBytes: result.droppedBytes),
            stdout: result.stdout,
            stdoutBytes: result.stdoutBytes
        )
    }

    func failure(_ what: String, _ command: CommandResult) -> TerraformRunnerError { Self.failure(what, command) }

    static func failure(_ what: String, _ command: CommandResult) -> TerraformRunnerError {
        let code: TerraformRunnerError.Code = command.outcome == .timedOut || command.outcome == .cancelled
            ? TerraformRunnerError.Code(command.outcome.description) : .commandFailed
        // The output is already redacted; it goes to debugDescription only.
        return TerraformRunnerError(code, "\(what) did not succeed (\(command.outcome))",
                                    context: ["output": String(command.output.suffix(2000))])
    }
}
