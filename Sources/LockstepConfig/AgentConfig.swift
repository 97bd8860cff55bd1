import Foundation
public import LockstepCore
import Yams

/// The agent configuration: every trust decision of one Lockstep agent (docs/CONTRACT.md §2).
///
/// It lives on the agent (e.g. `/etc/lockstep/agent.yaml`, owned by root) and is the only
/// place where approvers, approval counts, credentials, promotion order and apply windows
/// are set: nothing in the delivery repo can change them. Built only through `parse`/`load`,
/// so a value of this type has passed every check below.
///
/// Relative paths in the file are resolved against the folder that holds the file (or the
/// `baseDirectory` given to `parse`); all paths in this value are absolute and normalised.
public struct AgentConfig: Sendable, Hashable {
    /// The file the config was read from, as named by the operator (for messages).
    public var file: String
    public var repository: RepositoryConfig
    /// Where the bare mirror of the delivery repo is kept.
    public var mirrorDir: String
    /// How often the remote is fetched when no webhook arrives. Default 1m, or 5m when
    /// `webhooks:` is configured (the poll is then the safety net).
    public var pollInterval: Duration
    /// How many plans of different targets may run at once (1…64). Default 2. Never two
    /// on one target, whatever this says: each plan is a terraform process with its own
    /// providers, so the limit also keeps a burst of tags from exhausting the agent.
    public var maxConcurrentPlans: Int
    /// Accept only tags on first-parent merge commits of the protected branch. Default true.
    public var requireMergeCommit: Bool
    /// Run `lockstep validate` on every new tip of the protected branch and show the result on
    /// the board (`validate_branch`). Default false.
    public var validateBranch: Bool = false
    /// The tag pattern the operator wrote, if any; see `tagPattern(projectCount:)`.
    public var explicitTagPattern: String?
    public var exportLimits: ExportLimits
    public var terraform: TerraformSettings
    public var store: StoreConfig
    /// Default `127.0.0.1:8420`.
    public var listen: ListenAddress
    /// The forges whose webhooks may ask for a fetch, with their secret files (`webhooks:`).
    public var webhooks: WebhookSettings?
    /// Where run comments and commit statuses are posted (`forge:`), if anywhere.
    public var forge: ForgeSettings?
    /// The URL people reach this agent at (`public_url:`), used in links to a run; nil: no links.
    public var publicURL: String?
    /// Where `/metrics` is served; nil serves it on `listen` beside the API.
    public var metricsListen: ListenAddress?
    /// How the daemon writes its log.
    public var logFormat: LogFormat = .logfmt
    /// Environment name → its policy. Never empty.
    public var environments: [EnvironmentName: EnvironmentPolicy]
    /// Identity name → identity. Approvers name these.
    public var identities: [IdentityName: Identity]
    /// The API's connection and failed-authentication limits (`http:`, see ``HTTPLimits``).
    public var http = HTTPLimits()
    /// What is kept and served of plan text, plan JSON and command output (`limits:`, see ``OutputLimits``).
    public var limits = OutputLimits()

    /// The tag pattern in force: the explicit one, else `{env}/{version}` for a repo with one
    /// project and `{project}/{env}/{version}` for a repo with several.
    public func tagPattern(projectCount: Int) -> String {
        explicitTagPattern ?? (projectCount > 1 ? "{project}/{env}/{version}" : "{env}/{version}")
    }

    /// The identity a git tagger e-mail belongs to (case-insensitive), used to stop a tagger
    /// approving their own release. E-mails are unique across identities (checked at parse).
    public func identityName(forEmail email: String) -> IdentityName? {
        let wanted = email.lowercased()
        return identities.values.first { $0.emails.contains(wanted) }?.name
    }

    /// Reads and validates an agent config file; relative paths in it are resolved against
    /// the file's folder. Throws every problem found, not just the first.
    public static func load(path: String) throws(ConfigErrors) -> AgentConfig {
        let text = try readConfigFile(path: path, limit: DocumentLimits.maxBytes)
        return try parse(yaml: text, file: path, baseDirectory: folder(of: path))
    }

    /// Validates agent config text. `file` names the source in messages; relative paths are
    /// resolved against `baseDirectory` (default: the folder of `file`, else the current
    /// directory).
    public static func parse(yaml: String, file: String, baseDirectory: String? = nil) throws(ConfigErrors) -> AgentConfig {
        let reader = Reader(file: file)
        let base = normaliseAbsolute(baseDirectory.map(absolute) ?? folder(of: file))
        guard let root = reader.document(yaml) else { throw ConfigErrors(reader.errors) }
        let parser = AgentParser(reader: reader, base: base)
        let config = parser.parse(root, file: file)
        if let config, reader.errors.isEmpty { return config }
        // Every refusal records an error; the fallback keeps "no config" from ever looking like success.
        throw ConfigErrors(reader.errors.isEmpty ? [ConfigError(file: file, keyPath: "", expected: "a valid configuration", code: .invalidValue)] : reader.errors)
    }
}

/// Where and how the delivery repository is fetched.
public struct RepositoryConfig: Sendable, Hashable {
    /// How the remote is reached; decides which credentials are valid.
    public enum Transport: String, Sendable, Hashable {
        case https, ssh, local
    }
    /// The URL as written, or the resolved absolute path for a local repository.
    public var url: String
    public var transport: Transport
    /// The protected branch: only merged pull requests reach it. Default `main`.
    public var branch: String
    public var credentials: GitCredentials?
}

/// Git credentials, always as files: the config holds paths, never secrets.
public enum GitCredentials: Sendable, Hashable {
    /// HTTPS basic auth with a token read from `tokenFile`.
    case https(username: String, tokenFile: String)
    /// SSH key auth; the host key must be in `knownHostsFile` (docs/THREAT-MODEL.md §3.5: an unknown host key
    /// is refused, which stops a man in the middle on the git remote).
    case ssh(keyFile: String, knownHostsFile: String)
}

/// Caps on what exporting one commit may produce (docs/THREAT-MODEL.md §1.7: huge files, deep trees, millions
/// of files fail cleanly instead of filling the disk).
public struct ExportLimits: Sendable, Hashable {
    public var maxBytes: Int
    public var maxFiles: Int
    public var maxDepth: Int
    /// 256 MiB, 20 000 files, 32 levels.
    public static let defaults = ExportLimits(maxBytes: 256 << 20, maxFiles: 20_000, maxDepth: 32)
    public init(maxBytes: Int, maxFiles: Int, maxDepth: Int) {
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
        self.maxDepth = maxDepth
    }
}

/// The terraform (or tofu) binary and its provider cache.
///
/// Writable folders are granted per environment (`environments.NAME.writable_paths`), never
/// here: a folder every environment may write lets one environment's code read and rewrite
/// another's state (see ``AgentConfig/pluginCacheDirectory(environment:)`` for the cache).
public struct TerraformSettings: Sendable, Hashable {
    public var binary: String
    /// The root of the provider caches: each environment caches its providers in a folder of
    /// its own below it (``AgentConfig/pluginCacheDirectory(environment:)``).
    public var pluginCacheDir: String?
    /// A local provider mirror (`filesystem_mirror`): when set, providers come only from it,
    /// so an offline agent never reaches a registry. Unset: providers come from their registries.
    public var providerMirrorDir: String?
    /// Whether terraform and verify commands run confined with Landlock (default true): they
    /// cannot read the store, the mirror, credentials or key files, the agent config or other
    /// environments' folders, and write only their run's folder and their environment's
    /// writable paths. `false` is for kernels without Landlock: commands still run in a PID
    /// namespace of their own (nothing they start outlives them), and the daemon warns that
    /// plan-time code can read apply credentials.
    public var confine: Bool = true
    /// Longest a plan (init, plan, show) may take before terraform is interrupted and the run
    /// fails. Default 1h.
    public var planTimeout: Duration = .seconds(3_600)
    /// Longest `terraform apply` may take. Then it is interrupted (SIGINT, then SIGKILL if it
    /// has not stopped ten minutes later) and the run fails, saying that part of the plan may
    /// have been applied. Default 4h: creating some managed databases takes over an hour.
    public var applyTimeout: Duration = .seconds(14_400)
}

/// Where runs, approvals and the audit log are kept.
public enum StoreConfig: Sendable, Hashable {
    case sqlite(path: String)
}

/// The trust decisions for one environment.
public struct EnvironmentPolicy: Sendable, Hashable {
    public var name: EnvironmentName
    /// Whether this agent plans and applies this environment. Default false: an agent only
    /// touches what it was explicitly given.
    public var serves: Bool
    /// A tag is accepted only if the same commit was applied and verified there first.
    public var promoteFrom: EnvironmentName?
    /// Distinct approvals needed, ≥ 1, ≤ `approvers.count`. Default 1.
    public var approvals: Int
    /// Identity names allowed to approve (all exist in `identities`).
    public var approvers: [IdentityName]
    /// Whether the tagger of a release may approve it. Default false (four-eyes).
    public var taggerMayApprove: Bool
    /// How long an approval stays valid. Default 24h.
    public var approvalTTL: Duration
    public var requireSignedTags: Bool
    /// SSH allowed_signers file (principals matched against the tagger's e-mail, namespace `git`).
    /// With `requireSignedTags`, this or ``openPGPKeyringFile`` is set; neither is set without.
    public var allowedSignersFile: String?
    /// SSH keys no longer trusted (a KRL or a file of public keys), checked before allowed_signers.
    public var revokedSignersFile: String?
    /// OpenPGP public keys (armoured or binary) whose signatures this environment accepts; the
    /// tagger's e-mail must be one of the signing key's user ids.
    public var openPGPKeyringFile: String?
    /// Whether the verified signer of the release tag may approve its run. Default false.
    public var signerMayApprove: Bool = false
    /// The state backend this environment's runs must use (`backend:`); nil: not pinned.
    public var backendPin: BackendPin?
    /// Empty means apply may start at any time.
    public var applyWindows: [ApplyWindow]
    /// Periods during which nothing applies, whatever the windows say (`freezes:`).
    public var freezes: [FreezePeriod] = []
    /// The emergency path through freezes and windows (`break_glass:`); nil: none.
    public var breakGlass: BreakGlassGroup?
    /// External policy checks run on every plan before approval is possible (`checks:`).
    public var checks: [ExternalCheck] = []
    /// How often each target's applied revision is planned again to find drift
    /// (`drift: {interval: 6h}`); nil: never.
    public var driftInterval: Duration?
    /// Env-file for plan; never the apply file (docs/THREAT-MODEL.md §1.2: plan-time code must not read
    /// apply credentials).
    public var planCredentialsFile: String?
    /// Env-file read right before apply and given only to that terraform process.
    public var applyCredentialsFile: String?
    /// Destroying these resource types needs an explicit extra approval.
    public var protectedResourceTypes: [String]
    /// When set, plans touching other resource types are refused.
    public var allowedResourceTypes: [String]?
    /// Folders this environment's terraform and verify commands may write besides their run's
    /// folder (its `local` backend's state folder, a folder its `local-exec` writes). Confined,
    /// every other environment's commands can neither read nor write them. No two
    /// environments share one, or hold one inside another's (checked at parse).
    public var writablePaths: [String] = []
    /// Where this environment's runs are announced (`notifications:`).
    public var notifications: [NotificationSettings] = []

    /// Whether an apply may start at `date` (no windows: always).
    public func applyWindowOpen(at date: Date) -> Bool {
        applyWindows.isEmpty || applyWindows.contains { $0.contains(date) }
    }
}

/// The backend an environment's state must live in (docs/CONTRACT.md §2, `backend:`): after
/// `init`, the backend terraform resolved must have this type, each named setting with this
/// value, and this workspace, or the run is refused before plan.
public struct BackendPin: Sendable, Hashable {
    /// Terraform's backend type (`s3`, `local`, `gcs`, `azurerm`, `http`, `pg`, …).
    public var type: String
    /// Settings compared with terraform's resolved backend config, by name. `{project}` in a
    /// value stands for the run's project name.
    public var settings: [String: String]
    /// The workspace (`default` unless given).
    public var workspace: String
    /// Settings terraform may resolve to any value (`unpinned:`). Every other setting that is
    /// set must be named in ``settings``: a pull request cannot add an `endpoint` that sends the
    /// same bucket name to another server.
    public var unpinned: Set<String>

    public init(type: String, settings: [String: String], workspace: String = "default", unpinned: Set<String> = []) {
        self.type = type
        self.settings = settings
        self.workspace = workspace
        self.unpinned = unpinned
    }

    /// Whether a backend setting's name says it holds a credential (`secret_key`, `token`, …):
    /// refused in a pin, and its value never shown in a refusal.
    public static func isCredentialSetting(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return ["secret", "password", "token", "access_key", "credentials", "sas", "private_key", "client_certificate"]
            .contains { lowered.contains($0) }
    }

    /// The settings with `{project}` replaced.
    public func settings(for project: String) -> [String: String] {
        settings.mapValues { $0.replacingOccurrences(of: "{project}", with: project) }
    }
}

/// An API identity: who may authenticate (by token hash) and which git e-mails are theirs.
public struct Identity: Sendable, Hashable {
    public var name: IdentityName
    /// SHA-256 of the API token, 64 lowercase hex digits. The token itself is never configured.
    public var tokenSHA256: String
    /// Lowercased git e-mail addresses; maps a tag's tagger to this identity.
    public var emails: [String]
}

// MARK: - file helpers

/// Whether two normalised absolute paths are the same folder or one lies inside the other.
func pathsOverlap(_ a: String, _ b: String) -> Bool {
    func inside(_ child: String, _ parent: String) -> Bool {
        child == parent || parent == "/" || child.hasPrefix(parent + "/")
    }
    return inside(a, b) || inside(b, a)
}

func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

func folder(of file: String) -> String {
    let abs = normaliseAbsolute(absolute(file))
    guard let slash = abs.lastIndex(of: "/"), slash != abs.startIndex else { return "/" }
    return String(abs[..<slash])
}

/// Reads at most `limit` bytes of UTF-8 text; a larger file is refused without reading it all.
func readConfigFile(path: String, limit: Int) throws(ConfigErrors) -> String {
    func failure(_ code: ConfigError.Code, _ expected: String) -> ConfigErrors {
        ConfigErrors([ConfigError(file: path, keyPath: "", expected: expected, code: code)])
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw failure(.unreadable, "a readable file")
    }
    defer { try? handle.close() }
    let data: Data
    do {
        data = try handle.read(upToCount: limit + 1) ?? Data()
    } catch {
        throw failure(.unreadable, "a readable file")
    }
    if data.count > limit {
        throw failure(.tooLarge, "a file of at most \(limit) bytes")
    }
    guard let text = String(validating: data, as: UTF8.self) else {
        throw failure(.syntax, "UTF-8 text")
    }
    return text
}

/// `log_format`: one line per event on stderr, for journald or a log shipper.
public enum LogFormat: String, Sendable, Hashable, CaseIterable {
    /// `key=value` pairs (`time=… level=info msg="…" run.id=…`), quoted where needed.
    case logfmt
    /// One JSON object per line.
    case json
}
