/// A failure of the Terraform edge that is not a classified terraform outcome:
/// the binary could not be started, a safety check refused to run, or terraform
/// printed something that could not be understood.
///
/// `description` is safe to show a client: it never carries terraform output,
/// paths of credential files or secret values. `debugDescription` adds the
/// (already redacted) context for logs.
public struct TerraformRunnerError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong. A struct with static members (not an enum) so new codes
    /// can be added without breaking callers that switch over known ones.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The configured terraform/tofu binary is missing or not executable.
        public static let executableNotFound = Code("executable_not_found")
        /// The process could not be launched.
        public static let launchFailed = Code("launch_failed")
        /// A run directory or plan file is readable by other users (docs/THREAT-MODEL.md §2.3).
        public static let insecurePermissions = Code("insecure_permissions")
        /// The caller tried to pass an environment variable that would steer
        /// terraform (`TF_CLI_ARGS*`, `TF_CLI_CONFIG_FILE`, `PATH`, ...).
        public static let forbiddenEnvironmentVariable = Code("forbidden_environment_variable")
        /// The plan file's digest differs from the approved one: it was not applied.
        public static let planDigestMismatch = Code("plan_digest_mismatch")
        /// The plan file does not exist (already applied, or never written).
        public static let planFileMissing = Code("plan_file_missing")
        /// A terraform command whose output is required (show, version) did not succeed.
        public static let commandFailed = Code("command_failed")
        /// Terraform printed more than the configured limit on a captured stream.
        public static let outputTooLarge = Code("output_too_large")
        /// Terraform's JSON output could not be decoded.
        public static let malformedOutput = Code("malformed_output")
        /// The runner's own configuration is unusable (e.g. a path that cannot be
        /// written into the CLI config).
        public static let invalidConfiguration = Code("invalid_configuration")
        /// Terraform must be confined (``Confinement``) and this machine cannot: the
        /// launcher is missing or the kernel has no Landlock.
        public static let confinementUnavailable = Code("confinement_unavailable")
        /// A file system operation of the runner failed.
        public static let fileSystem = Code("file_system")
    }

    public var code: Code
    /// Client-safe summary.
    public var message: String
    /// Extra detail for logs; values are redacted before they are stored here.
    public var context: [String: String]

    public init(_ code: Code, _ message: String, context: [String: String] = [:]) {
        self.code = code
        self.message = message
        self.context = context
    }

    public var description: String { "\(code): \(message)" }

    public var debugDescription: String {
        guard !context.isEmpty else { return description }
        let details = context.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        return "\(description) [\(details)]"
    }
}
