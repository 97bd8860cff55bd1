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
        /// A CLI config file the operator wrote, given to terraform as it is instead of the one the
        /// runner renders (`lockstep validate --cli-config`: a CI job that names its own provider
        /// mirror or credentials helper). Nil for the daemon: its CLI config is always rendered
        /// with an explicit `provider_installation` (docs/THREAT-MODEL.md §1.1).
        public var operatorCLIConfig: URL?

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
            confinement: Confinement? = nil,
            operatorCLIConfig: URL? = nil
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
            self.operatorCLIConfig = operatorCLIConfig
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
        /// Whether `plan` takes the state lock (default). A drift check's plan, which is never
        /// applied and writes no state, runs without it so it never makes a release's plan or
        /// apply wait or fail on the lock.
        public var stateLock: Bool = true

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
    let logger: Logger

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

    /// PATH given to terraform and to the programs it starts (``Configuration/searchPath``).
    public var searchPath: String { configuration.searchPath }
    /// How every command is confined (``Configuration/confinement``); nil runs them directly.
    public var confinement: Confinement? { configuration.confinement }

    /// Runs a program that is not terraform (a verify command) through the same process edge
    /// (``ExternalProgram/run(_:)``).
    public func runProgram(_ request: ExternalProgram.Request) async throws -> CommandResult {
        try await ExternalProgram.run(request)
    }

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
}
