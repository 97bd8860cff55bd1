import Foundation
import Logging

/// Drives the `terraform` (or `tofu`) CLI for one agent: init, plan, show,
/// apply of a saved plan, validate. Never parses HCL, never runs a shell.
///
/// Invariants that protect production:
/// - Every process gets an environment built from nothing (``environment(for:home:)``):
///   the daemon's own variables (`TF_CLI_ARGS*`, `TF_LOG`, `TF_CLI_CONFIG_FILE`,
///   cloud credentials of other environments) never reach terraform.
/// - The CLI config is written by the runner outside the exported tree and always
///   names an explicit provider installation; committed `.terraform/` and
///   `terraform.d/` folders are removed before init, so provider binaries from
///   the delivery repo are never executed.
/// - Every command gets a fresh, empty HOME that is removed when it ends, so
///   nothing one command (or a hostile plan's `local-exec`) writes there is
///   read by the next (``makeHome()``).
/// - Only saved plans are applied, after their digest is re-checked, and the plan
///   file is deleted after apply whatever happens, so it can never be applied twice.
/// - Everything that leaves (streamed lines, retained output, renderings, stored
///   JSON, errors) passes through a ``Redactor`` holding the credential values of
///   that invocation.
public struct TerraformRunner: Sendable {
    /// How this agent runs terraform.
    public struct Configuration: Sendable {
        /// Absolute path of the `terraform` or `tofu` binary.
        public var executable: URL
        /// Runner-owned directory outside any exported tree: holds the CLI
        /// config, the plugin cache and the (per-command) HOMEs given to terraform.
        public var toolsDirectory: URL
        /// Where providers come from.
        public var providerInstallation: CLIConfiguration.ProviderInstallation
        /// Share a provider cache between runs (inits that use it are serialised).
        public var usesPluginCache: Bool
        /// PATH given to terraform (local-exec provisioners see only this).
        public var searchPath: String
        /// Time between SIGINT and SIGKILL of the process group.
        public var gracePeriod: Duration
        /// The same for `apply`: interrupted, terraform waits for the resource operations in
        /// flight and then writes the state; killing it sooner can lose the state of
        /// resources it created.
        public var applyGracePeriod: Duration
        /// Bytes of output kept in memory per command: the last ones (the rest is only
        /// streamed, and the kept output says how much was not kept). Agent config
        /// `limits.command_output_bytes`.
        public var retainedOutputBytes: Int
        /// Longest line handed to a sink before it is split.
        public var maxLineBytes: Int
        /// Largest captured output accepted from `version`, `output` and `validate`.
        public var maxCapturedBytes: Int
        /// Bytes of `show` text kept per plan; past them the text is cut and only counted
        /// (agent config `limits.plan_text_bytes`).
        public var planTextBytes: Int = 4 << 20
        /// Largest `show -json` read; past it the plan is refused and nothing more is kept
        /// (agent config `limits.plan_json_bytes`).
        public var planJSONBytes: Int = 64 << 20
        /// `-lock-timeout` passed to plan and apply.
        public var lockTimeout: Duration
        /// Where the shared provider cache lives (agent config `terraform.plugin_cache_dir`);
        /// nil: `plugin-cache` in the tools directory.
        public var pluginCache: URL?
        /// Runs every command through the launcher (``Confinement``): Landlock and a PID
        /// namespace, or the namespace alone (`confine: false`). Nil runs terraform directly
        /// with everything the daemon's user may touch and no containment of what it starts:
        /// only tests do that.
        public var confinement: Confinement?

        public init(
            executable: URL,
            toolsDirectory: URL,
            providerInstallation: CLIConfiguration.ProviderInstallation,
            usesPluginCache: Bool = true,
            searchPath: String = "/usr/bin:/bin",
            gracePeriod: Duration = .seconds(30),
            applyGracePeriod: Duration = .seconds(600),
            retainedOutputBytes: Int = 256 * 1024,
            maxLineBytes: Int = 64 * 1024,
            maxCapturedBytes: Int = 512 * 1024 * 1024,
            lockTimeout: Duration = .zero,
            pluginCache: URL? = nil,
            confinement: Confinement? = nil
        ) {
            self.executable = executable
            self.toolsDirectory = toolsDirectory
            self.providerInstallation = providerInstallation
            self.usesPluginCache = usesPluginCache
            self.searchPath = searchPath
            self.gracePeriod = gracePeriod
            self.applyGracePeriod = applyGracePeriod
            self.retainedOutputBytes = retainedOutputBytes
            self.maxLineBytes = maxLineBytes
            self.maxCapturedBytes = maxCapturedBytes
            self.lockTimeout = lockTimeout
            self.pluginCache = pluginCache
            self.confinement = confinement
        }
    }

    /// What one command runs with.
    public struct Invocation: Sendable {
        /// Terraform's working directory (the project folder of the run).
        public var directory: URL
        /// Non-secret variables (e.g. `TF_VAR_region`). Only `TF_VAR_*`,
        /// `TF_WORKSPACE` and non-`TF_` names are accepted.
        public var environment: [String: String]
        /// Credential variables of the environment: passed to terraform and
        /// their values redacted from everything.
        public var credentials: [String: String]
        /// Further values to redact (e.g. known sensitive variable values).
        public var secrets: Set<String>
        /// Interrupt terraform (SIGINT, then SIGKILL after the grace period).
        public var timeout: Duration?
        /// Receives redacted output line by line.
        public var output: any TerraformOutputSink
        /// Under a ``Confinement``, the only paths this command may write besides its HOME
        /// (the run's tree and plan file). nil: its `directory`.
        public var writable: [URL]?
        /// Under a ``Confinement``, paths this command may read (never write) even inside a
        /// hidden folder: e.g. the copy of an approved plan that `show` or `apply` reads from a
        /// folder no terraform command can write.
        public var readable: [URL]
        /// Under a ``Confinement``, paths this command may neither read nor write on top of the
        /// confinement's hidden paths: e.g. the state folders and provider caches of every other
        /// environment. Must not lie inside a granted path (a grant overrides a hide below it).
        public var hidden: [URL]
        /// This command's provider cache instead of the configuration's (e.g. the folder of its
        /// environment, so one environment's init never fills a cache another's plan runs
        /// from). Created 0700 when missing. Ignored without ``Configuration/usesPluginCache``.
        public var pluginCache: URL?

        public init(
            directory: URL,
            writable: [URL]? = nil,
            readable: [URL] = [],
            hidden: [URL] = [],
            pluginCache: URL? = nil,
            environment: [String: String] = [:],
            credentials: [String: String] = [:],
            secrets: Set<String> = [],
            timeout: Duration? = nil,
            output: any TerraformOutputSink = DiscardingOutputSink()
        ) {
            self.directory = directory
            self.writable = writable
            self.readable = readable
            self.hidden = hidden
            self.pluginCache = pluginCache
            self.environment = environment
            self.credentials = credentials
            self.secrets = secrets
            self.timeout = timeout
            self.output = output
        }

        /// Redacts the credential values and extra secrets of this invocation.
        public var redactor: Redactor { Redactor(secrets: Array(credentials.values) + Array(secrets)) }
    }

    public let configuration: Configuration
    private let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// This runner with other output limits (the agent config's `limits:` section): what
    /// is kept of plan text, the largest plan JSON read, what is kept of each command's output.
    public func limitingOutput(planTextBytes: Int, planJSONBytes: Int, commandOutputBytes: Int) -> TerraformRunner {
        var configuration = self.configuration
        configuration.planTextBytes = planTextBytes
        configuration.planJSONBytes = planJSONBytes
        configuration.retainedOutputBytes = commandOutputBytes
        return TerraformRunner(configuration: configuration, logger: logger)
    }

    // MARK: Paths

    /// Where the CLI config is written (passed as `TF_CLI_CONFIG_FILE`).
    ///
    /// It sits alone in its own folder, and a confined command is granted that folder rather
    /// than the file: an atomic rewrite replaces the file's inode, and a grant on the old
    /// inode would leave a command started just before unable to read the new one (terraform
    /// then falls back to installing providers from their registries).
    public var cliConfigFile: URL { cliConfigDirectory.appendingPathComponent("terraform.tfrc") }
    var cliConfigDirectory: URL { configuration.toolsDirectory.appendingPathComponent("cli-config") }
    /// Parent of the HOME directories given to terraform (one per command).
    var homesDirectory: URL { configuration.toolsDirectory.appendingPathComponent("homes") }
    /// The configuration's provider cache: `pluginCache`, else `plugin-cache` in the tools folder.
    public var pluginCacheDirectory: URL { configuration.pluginCache ?? configuration.toolsDirectory.appendingPathComponent("plugin-cache") }
    /// The provider cache one command uses: its own (``Invocation/pluginCache``) or the configuration's.
    func pluginCacheDirectory(for invocation: Invocation) -> URL { invocation.pluginCache ?? pluginCacheDirectory }

    /// The CLI configuration this runner writes before every command.
    public var cliConfiguration: CLIConfiguration {
        CLIConfiguration(
            providerInstallation: configuration.providerInstallation,
            pluginCacheDirectory: configuration.usesPluginCache ? pluginCacheDirectory : nil
        )
    }

    /// Creates a fresh private run directory (mode 0700) under `parent`.
    ///
    /// Plan files and exported trees hold secrets; other local users must not
    /// read them (docs/THREAT-MODEL.md §2.3).
    public static func makeRunDirectory(under parent: URL, name: String = UUID().uuidString) throws -> URL {
        let url = parent.appendingPathComponent(name, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(
                at: url, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: url.path)
        } catch {
            throw TerraformRunnerError(.fileSystem, "cannot create a run directory")
        }
        return url
    }

    // MARK: Commands

    /// `terraform version -json`: which tool and version this agent runs.
    public func version() async throws -> TerraformVersion {
        _ = try prepareTools()
        // In `/`, writing nothing: it needs no project, and the tools folder is hidden from a
        // confined terraform.
        let invocation = Invocation(directory: URL(fileURLWithPath: "/"), writable: [], timeout: .seconds(60))
        let result = try await execute(["version", "-json"], invocation, command: "version", capture: true)
        guard result.command.outcome == .succeeded, let data = result.stdout else {
            throw failure("terraform version", result.command)
        }
        struct Raw: Decodable {
            var terraform_version: String
            var platform: String?
        }
        guard let raw = try? JSONDecoder().decode(Raw.self, from: data) else {
            throw TerraformRunnerError(.malformedOutput, "terraform version -json could not be decoded")
        }
        return TerraformVersion(
            tool: configuration.executable.lastPathComponent, version: raw.terraform_version, platform: raw.platform)
    }

    /// `terraform init -input=false` in the invocation's directory.
    ///
    /// Committed `.terraform/` and `terraform.d/` folders are removed first: a
    /// provider binary in either would otherwise be a way for the delivery repo
    /// to run code on the agent. Inits sharing the plugin cache are serialised,
    /// in this process and against other processes (``PluginCacheLock``),
    /// because terraform's cache is not safe for concurrent writers. Waiting
    /// for the lock counts against the invocation's timeout and ends on
    /// cancellation (outcome `timedOut` / `cancelled`, terraform not started).
    public func initialize(
        _ invocation: Invocation, backend: Bool = true, backendConfigFiles: [URL] = []
    ) async throws -> CommandResult {
        _ = try prepareTools()
        for name in [".terraform", "terraform.d"] {
            let url = invocation.directory.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) {
                logger.info("removing committed folder before init", metadata: ["terraform.folder": "\(name)"])
                do { try FileManager.default.removeItem(at: url) } catch {
                    throw TerraformRunnerError(.fileSystem, "cannot remove a committed \(name) folder")
                }
            }
        }
        var arguments = ["init", "-input=false", "-no-color", "-backend=\(backend)"]
        arguments += backendConfigFiles.map { "-backend-config=\($0.path)" }
        guard configuration.usesPluginCache else {
            return try await execute(arguments, invocation, command: "init").command
        }
        let clock = ContinuousClock()
        let started = clock.now
        var logger = self.logger
        logger[metadataKey: "terraform.command"] = "init"
        do {
            let cache = pluginCacheDirectory(for: invocation)
            do {
                try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw TerraformRunnerError(.fileSystem, "cannot create the provider cache folder")
            }
            return try await PluginCacheLock.withLock(
                cache: cache, deadline: invocation.timeout.map { started + $0 }, logger: logger
            ) {
                // The timeout bounds the whole init, waiting for the lock included.
                var remaining = invocation
                if let timeout = invocation.timeout {
                    remaining.timeout = max(timeout - (clock.now - started), .milliseconds(1))
                }
                return try await execute(arguments, remaining, command: "init").command
            }
        } catch let abandoned as PluginCacheLock.Abandoned {
            return CommandResult(outcome: abandoned == .cancelled ? .cancelled : .timedOut, exitCode: -1,
                                 duration: clock.now - started, output: "", droppedOutputBytes: 0)
        }
    }

    /// `terraform plan -out PLANFILE -detailed-exitcode`; returns the plan file and its digest.
    ///
    /// The plan file is created 0600 before terraform writes into it (terraform
    /// keeps an existing file's mode) and its directory must not be readable by
    /// others: a plan holds state and variable values.
    public func plan(
        _ invocation: Invocation, planFile: URL, varFiles: [URL] = [], destroy: Bool = false
    ) async throws -> PlanResult {
        _ = try prepareTools()
        try ensurePrivate(directory: planFile.deletingLastPathComponent())
        try? FileManager.default.removeItem(at: planFile)
        guard FileManager.default.createFile(atPath: planFile.path, contents: nil, attributes: [.posixPermissions: 0o600])
        else { throw TerraformRunnerError(.fileSystem, "cannot create the plan file") }
        var arguments = ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-lock-timeout=\(seconds(configuration.lockTimeout))s"]
        arguments += varFiles.map { "-var-file=\($0.path)" }
        if destroy { arguments.append("-destroy") }
        arguments.append("-out=\(planFile.path)")
        var command = try await execute(arguments, invocation, command: "plan").command
        var changes: PlanChanges?
        if command.outcome == .failed(exitCode: 2) {
            command.outcome = .succeeded
            changes = .changesPresent
        } else if command.outcome == .succeeded {
            changes = .noChanges
        }
        guard let changes else {
            try? FileManager.default.removeItem(at: planFile)
            return PlanResult(command: command, plan: nil)
        }
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: planFile.path)
        // Read once; the digest is of these bytes, and callers keep using these bytes.
        let contents = try Self.readPlan(planFile, limit: configuration.maxCapturedBytes)
        let digest = PlanDigest.of(contents)
        logger.info("plan saved", metadata: ["plan.digest": "\(digest.hex)", "plan.changes": "\(changes.rawValue)"])
        return PlanResult(command: command, plan: SavedPlan(file: planFile, digest: digest, changes: changes, contents: contents))
    }

    /// The bytes of a plan file, refusing one over `limit` (a plan is a zip of the
    /// configuration and changes; anything larger is not something to keep in memory).
    static func readPlan(_ file: URL, limit: Int) throws -> Data {
        guard let handle = try? FileHandle(forReadingFrom: file) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist or cannot be read")
        }
        defer { try? handle.close() }
        let contents: Data
        do {
            contents = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            throw TerraformRunnerError(.fileSystem, "the plan file could not be read")
        }
        guard contents.count <= limit else {
            throw TerraformRunnerError(.outputTooLarge, "the plan file is larger than the configured limit",
                                       context: ["limit": "\(limit)"])
        }
        return contents
    }

    /// `show -json` parsed into a summary and redacted, plus terraform's
    /// human rendering of the saved plan, redacted.
    ///
    /// Memory stays bounded whatever the plan prints. The JSON is read up to
    /// `planJSONBytes`; past that the rest is drained unkept and ``TerraformRunnerError/Code/planJSONTooLarge``
    /// is thrown, because the summary and every check are computed from the JSON and a plan
    /// whose JSON was not read whole must never look reviewable. The text is read up to
    /// `planTextBytes` and the rest only counted: the rendering is then the start of the
    /// text, cut at a line end, and ``ShownPlan/renderingTruncated`` says so.
    public func show(_ invocation: Invocation, planFile: URL) async throws -> ShownPlan {
        _ = try prepareTools()
        guard FileManager.default.fileExists(atPath: planFile.path) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist")
        }
        let jsonLimit = configuration.planJSONBytes
        let json = try await execute(["show", "-json", "-no-color", planFile.path], invocation, command: "show", capture: true,
                                     captureLimit: jsonLimit) { bytes in
            TerraformRunnerError(.planJSONTooLarge,
                                 "the plan's JSON (\(ByteSize(bytes))) is larger than the limit of \(ByteSize(jsonLimit))",
                                 context: ["limit_bytes": "\(jsonLimit)", "bytes": "\(bytes)"])
        }
        guard json.command.outcome == .succeeded, var raw = json.stdout else { throw failure("terraform show -json", json.command) }
        let summary = try PlanSummary(planJSON: raw)
        let (redactedJSON, learned) = try PlanJSONRedaction.redact(raw, redactor: invocation.redactor)
        raw = Data()  // the unredacted JSON is not needed any more: do not hold it while the text is read
        let redactor = invocation.redactor.adding(learned)

        var textInvocation = invocation
        textInvocation.secrets.formUnion(learned)
        // A few bytes past the limit are read so that a secret crossing the cut is seen whole
        // (and the cut moved before it): a truncated rendering never ends in half a secret; and
        // at least the next character's first byte, so a cut never splits a character.
        let textLimit = configuration.planTextBytes
        let text = try await execute(["show", "-no-color", planFile.path], textInvocation, command: "show", capture: true,
                                     captureLimit: textLimit + max(redactor.longestPatternBytes, 4), keepPrefix: true)
        guard text.command.outcome == .succeeded, let rendered = text.stdout else { throw failure("terraform show", text.command) }
        let truncated = text.stdoutBytes > textLimit
        let rendering = rendered.withUnsafeBytes { bytes in
            Self.rendering(of: bytes, cutAt: truncated ? textLimit : nil, redactor: redactor)
        }
        if truncated {
            logger.notice("plan text truncated", metadata: [
                "plan.text.bytes": "\(text.stdoutBytes)", "plan.text.kept_bytes": "\(rendering.utf8.count)",
                "plan.text.limit_bytes": "\(textLimit)"])
        }
        return ShownPlan(summary: summary, redactedJSON: redactedJSON, rendering: rendering,
                         renderingBytes: text.stdoutBytes, renderingTruncated: truncated)
    }

    /// `bytes` redacted; with `limit`, only their start: cut at the last line end before the
    /// limit (or, with no line end, at a UTF-8 character boundary), and before any secret that
    /// crosses the limit, so the cut never leaves part of a secret in clear. `bytes` may hold
    /// a few bytes past `limit` so such a secret is recognised.
    static func rendering(of bytes: UnsafeRawBufferPointer, cutAt limit: Int?, redactor: Redactor) -> String {
        let covered = redactor.coveredRanges(in: bytes)
        var cut = min(limit ?? bytes.count, bytes.count)
        if limit != nil {
            if let crossing = covered.first(where: { $0.lowerBound < cut && cut < $0.upperBound }) { cut = crossing.lowerBound }
            if let newline = bytes[0..<cut].lastIndex(of: UInt8(ascii: "\n")) {
                cut = newline + 1
            } else {
                while cut > 0, cut < bytes.count, bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
            }
        }
        let kept = UnsafeRawBufferPointer(rebasing: bytes[0..<cut])
        let inside = covered.filter { $0.upperBound <= cut }
        if inside.isEmpty { return String(decoding: kept, as: UTF8.self) }
        return String(decoding: Redactor.replacing(inside, in: kept), as: UTF8.self)
    }

    /// Applies a saved plan, only if its bytes still have `expectedDigest`.
    ///
    /// The plan file is deleted when this returns or throws, whatever the
    /// outcome: a plan can be applied at most once (docs/THREAT-MODEL.md §4.3, replay).
    public func apply(_ invocation: Invocation, planFile: URL, expectedDigest: PlanDigest) async throws -> CommandResult {
        defer { try? FileManager.default.removeItem(at: planFile) }
        _ = try prepareTools()
        let actual = try PlanDigest.of(fileAt: planFile)
        guard actual == expectedDigest else {
            logger.error("plan digest mismatch: refusing to apply",
                         metadata: ["plan.digest.expected": "\(expectedDigest.hex)", "plan.digest.actual": "\(actual.hex)"])
            throw TerraformRunnerError(.planDigestMismatch, "the plan file does not match the approved digest",
                                       context: ["expected": expectedDigest.hex, "actual": actual.hex])
        }
        let arguments = ["apply", "-input=false", "-no-color", "-lock-timeout=\(seconds(configuration.lockTimeout))s", planFile.path]
        return try await execute(arguments, invocation, command: "apply").command
    }

    /// `terraform output -json` after an apply, with the value of every output terraform
    /// marks `sensitive` replaced by ``Redactor/placeholder`` and every credential value
    /// of the invocation redacted: the only form of the outputs Lockstep stores or hands
    /// to verify commands (docs/THREAT-MODEL.md §6.4: outputs leaking secrets).
    ///
    /// Reading outputs only needs read access to the state, so callers pass plan
    /// credentials here, never apply credentials.
    public func outputs(_ invocation: Invocation) async throws -> Data {
        _ = try prepareTools()
        let result = try await execute(["output", "-json", "-no-color"], invocation, command: "output", capture: true)
        guard result.command.outcome == .succeeded, let raw = result.stdout else { throw failure("terraform output -json", result.command) }
        guard var outputs = (try? JSONSerialization.jsonObject(with: raw)) as? [String: Any] else {
            throw TerraformRunnerError(.malformedOutput, "terraform output -json could not be decoded")
        }
        for (name, value) in outputs {
            guard var entry = value as? [String: Any] else { continue }
            if (entry["sensitive"] as? Bool) != false {
                // Unknown shape or sensitive: never keep the value.
                entry["value"] = Redactor.placeholder
            }
            outputs[name] = entry
        }
        guard let encoded = try? JSONSerialization.data(withJSONObject: outputs, options: [.sortedKeys]) else {
            throw TerraformRunnerError(.malformedOutput, "terraform outputs could not be re-encoded")
        }
        return Data(invocation.redactor.redact(String(decoding: encoded, as: UTF8.self)).utf8)
    }

    /// `init -backend=false` then `validate -json`: terraform's diagnostics as data.
    public func validate(_ invocation: Invocation) async throws -> ValidationResult {
        let initialization = try await initialize(invocation, backend: false)
        guard initialization.outcome == .succeeded else {
            return ValidationResult(initialization: initialization, validation: nil, valid: false, diagnostics: [])
        }
        let result = try await execute(["validate", "-json", "-no-color"], invocation, command: "validate", capture: true)
        struct Raw: Decodable {
            struct Position: Decodable { var line: Int? }
            struct Range: Decodable {
                var filename: String?
                var start: Position?
            }
            struct RawDiagnostic: Decodable {
                var severity: String
                var summary: String
                var detail: String?
                var range: Range?
            }
            var valid: Bool
            var diagnostics: [RawDiagnostic]
        }
        guard let data = result.stdout, let raw = try? JSONDecoder().decode(Raw.self, from: data) else {
            if result.command.outcome == .timedOut || result.command.outcome == .cancelled {
                return ValidationResult(initialization: initialization, validation: result.command, valid: false, diagnostics: [])
            }
            throw TerraformRunnerError(.malformedOutput, "terraform validate -json could not be decoded")
        }
        let redactor = invocation.redactor
        let diagnostics = raw.diagnostics.map {
            Diagnostic(severity: $0.severity, summary: redactor.redact($0.summary), detail: $0.detail.map(redactor.redact),
                       filename: $0.range?.filename, line: $0.range?.start?.line)
        }
        return ValidationResult(initialization: initialization, validation: result.command, valid: raw.valid, diagnostics: diagnostics)
    }

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
        environment["TF_CLI_CONFIG_FILE"] = cliConfigFile.path
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
        if fileManager.contents(atPath: cliConfigFile.path) != Data(rendered.utf8) {
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
    private func makeHome() throws -> URL {
        try makeFreshFolder(homesDirectory.appendingPathComponent(UUID().uuidString, isDirectory: true), "a HOME")
    }

    /// A fresh, empty temporary folder (0700) for one command, given as `TMPDIR`. Under the
    /// system's temporary folder (the unit's private /tmp), not under HOME: providers put
    /// their plugin sockets here, and a socket path must stay under 108 bytes.
    private func makeTemporaryDirectory() throws -> URL {
        try makeFreshFolder(URL(fileURLWithPath: NSTemporaryDirectory(), isDirectory: true)
            .appendingPathComponent("lockstep-tf-\(UUID().uuidString.prefix(13))", isDirectory: true), "a temporary folder")
    }

    /// Creates `folder` (0700); fails if it already exists, so a folder someone else made
    /// in a shared parent is never used.
    private func makeFreshFolder(_ folder: URL, _ what: String) throws -> URL {
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
    private func removeHome(_ home: URL) {
        do { try FileManager.default.removeItem(at: home) } catch {
            logger.warning("could not remove a terraform HOME", metadata: ["terraform.home": "\(home.lastPathComponent)"])
        }
    }

    private func ensurePrivate(directory: URL) throws {
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

    private func seconds(_ duration: Duration) -> Int64 { duration.components.seconds }

    private struct Execution {
        var command: CommandResult
        var stdout: Data?
        /// Bytes terraform wrote to a captured stdout, kept or not.
        var stdoutBytes: Int = 0
    }

    /// Runs one terraform command. With `capture`, stdout is kept in memory up to
    /// `captureLimit` (default `maxCapturedBytes`): past it, with `keepPrefix` the first bytes
    /// are returned and the rest counted; otherwise the rest is drained unkept and
    /// `tooLarge(total bytes)` is thrown.
    private func execute(
        _ arguments: [String], _ invocation: Invocation, command: String, capture: Bool = false,
        captureLimit: Int? = nil, keepPrefix: Bool = false,
        tooLarge: ((Int) -> TerraformRunnerError)? = nil
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
            var readable = [configuration.executable, cliConfigDirectory] + invocation.readable
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
            sink: invocation.output
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

    private func failure(_ what: String, _ command: CommandResult) -> TerraformRunnerError {
        let code: TerraformRunnerError.Code = command.outcome == .timedOut || command.outcome == .cancelled
            ? TerraformRunnerError.Code(command.outcome.description) : .commandFailed
        // The output is already redacted; it goes to debugDescription only.
        return TerraformRunnerError(code, "\(what) did not succeed (\(command.outcome))",
                                    context: ["output": String(command.output.suffix(2000))])
    }
}
