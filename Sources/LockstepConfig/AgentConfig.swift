import Foundation
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
    /// How often the remote is fetched when no webhook arrives. Default 1m.
    public var pollInterval: Duration
    /// How many plans of different targets may run at once (1…64). Default 2. Never two
    /// on one target, whatever this says: each plan is a terraform process with its own
    /// providers, so the limit also keeps a burst of tags from exhausting the agent.
    public var maxConcurrentPlans: Int
    /// Accept only tags on first-parent merge commits of the protected branch. Default true.
    public var requireMergeCommit: Bool
    /// The tag pattern the operator wrote, if any; see `tagPattern(projectCount:)`.
    public var explicitTagPattern: String?
    public var exportLimits: ExportLimits
    public var terraform: TerraformSettings
    public var store: StoreConfig
    /// Default `127.0.0.1:8420`.
    public var listen: ListenAddress
    /// File holding the shared webhook secret (HMAC key / token).
    public var webhookSecretFile: String?
    /// Environment name → its policy. Never empty.
    public var environments: [String: EnvironmentPolicy]
    /// Identity name → identity. Approvers name these.
    public var identities: [String: Identity]
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
    public func identityName(forEmail email: String) -> String? {
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
    public var name: String
    /// Whether this agent plans and applies this environment. Default false: an agent only
    /// touches what it was explicitly given.
    public var serves: Bool
    /// A tag is accepted only if the same commit was applied and verified there first.
    public var promoteFrom: String?
    /// Distinct approvals needed, ≥ 1, ≤ `approvers.count`. Default 1.
    public var approvals: Int
    /// Identity names allowed to approve (all exist in `identities`).
    public var approvers: [String]
    /// Whether the tagger of a release may approve it. Default false (four-eyes).
    public var taggerMayApprove: Bool
    /// How long an approval stays valid. Default 24h.
    public var approvalTTL: Duration
    public var requireSignedTags: Bool
    /// SSH allowed_signers file; present exactly when `requireSignedTags`.
    public var allowedSignersFile: String?
    /// Empty means apply may start at any time.
    public var applyWindows: [ApplyWindow]
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

    /// Whether an apply may start at `date` (no windows: always).
    public func applyWindowOpen(at date: Date) -> Bool {
        applyWindows.isEmpty || applyWindows.contains { $0.contains(date) }
    }
}

/// An API identity: who may authenticate (by token hash) and which git e-mails are theirs.
public struct Identity: Sendable, Hashable {
    public var name: String
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

// MARK: - parser

private let secretWords = ["token", "password", "passwd", "secret", "passphrase", "private_key", "ssh_key", "api_key", "apikey"]

/// Keys that look like they hold a secret but do not end in `_file`/`_sha256` are reported
/// as literal secrets rather than unknown keys, with a message that never shows the value.
func classifyLiteralSecret(_ reader: Reader) -> (String, KeyPath, Node) -> Bool {
    { key, path, node in
        let k = key.lowercased()
        guard !k.hasSuffix("_file"), !k.hasSuffix("_sha256"), secretWords.contains(where: { k.contains($0) }) else { return false }
        let hint = k == "token" ? "`token_sha256` (the SHA-256 of the token)" : "a path to a file holding it (`\(KeyPath.displayKey(key))_file`)"
        reader.fail(path, .literalSecret, "\(hint), never the secret itself in this file (the value is not shown)", node)
        return true
    }
}

struct AgentParser {
    let reader: Reader
    let base: String

    func parse(_ root: Node, file: String) -> AgentConfig? {
        let top = KeyPath()
        guard let f = reader.mapping(root, top, "a mapping at the top level") else { return nil }
        let secret = classifyLiteralSecret(reader)

        let repository = require(f, "repository", top, "the delivery repository (`url`, `branch`, `credentials`)").flatMap { repositoryConfig($0, top.key("repository")) }
        let mirrorDir = require(f, "mirror_dir", top, "a folder for the bare mirror").flatMap { path($0, top.key("mirror_dir"), "a folder for the bare mirror") }
        let pollInterval = f.take("poll_interval").map { duration($0, top.key("poll_interval"), 1...86_400, "between 1s and 1d") } ?? .seconds(60)
        let maxPlans = f.take("max_concurrent_plans").map { reader.int($0, top.key("max_concurrent_plans"), 1...64, "an integer between 1 and 64") } ?? 2
        let requireMerge = f.take("require_merge_commit").map { reader.bool($0, top.key("require_merge_commit")) } ?? true
        let tagPattern = f.take("tag_pattern").flatMap { tagPatternValue($0, top.key("tag_pattern")) }
        let limits = f.take("export_limits").map { exportLimits($0, top.key("export_limits")) } ?? ExportLimits.defaults
        let terraform = require(f, "terraform", top, "terraform settings (`binary`)").flatMap { terraformSettings($0, top.key("terraform")) }
        let store = require(f, "store", top, "the store (`sqlite: PATH`)").flatMap { storeConfig($0, top.key("store")) }
        let listen = f.take("listen").map { listenAddress($0, top.key("listen")) } ?? ListenAddress(host: "127.0.0.1", port: 8420)
        let webhook = f.take("webhook_secret_file").flatMap { path($0, top.key("webhook_secret_file"), "a path to the file holding the webhook secret") }
        let identities = f.take("identities").map { identitiesMap($0, top.key("identities")) } ?? [:]
        let http = f.take("http").map { httpLimits($0, top.key("http")) } ?? HTTPLimits()
        let outputLimits = f.take("limits").map { self.outputLimits($0, top.key("limits")) } ?? OutputLimits()
        let environments = require(f, "environments", top, "a mapping of environment names to their policy").flatMap { environmentsMap($0, top.key("environments"), identities: identities) }
        f.finish(known: "repository, mirror_dir, poll_interval, max_concurrent_plans, require_merge_commit, tag_pattern, export_limits, terraform, store, listen, webhook_secret_file, environments, identities, http, limits", classify: secret)

        guard let repository, let mirrorDir, let pollInterval, let maxPlans, let requireMerge, let limits, let terraform, let store,
              let listen, let environments, let identities, let http, let outputLimits else { return nil }
        var config = AgentConfig(
            file: file, repository: repository, mirrorDir: mirrorDir, pollInterval: pollInterval, maxConcurrentPlans: maxPlans,
            requireMergeCommit: requireMerge, explicitTagPattern: tagPattern, exportLimits: limits,
            terraform: terraform, store: store, listen: listen, webhookSecretFile: webhook,
            environments: environments, identities: identities, http: http)
        config.limits = outputLimits
        return config
    }

    private func require(_ f: Fields, _ key: String, _ parent: KeyPath, _ what: String) -> Node? {
        if let node = f.take(key) { return node }
        reader.fail(parent.key(key), .missingKey, what)
        return nil
    }

    // MARK: values

    /// An agent-side path: absolute, or relative to the config folder. `~` is not expanded
    /// (the daemon's HOME is not the operator's).
    func path(_ node: Node, _ at: KeyPath, _ what: String) -> String? {
        guard let text = reader.string(node, at, what) else { return nil }
        if text.isEmpty || text.hasPrefix("~") || text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            reader.fail(at, .invalidValue, "\(what): an absolute path or one relative to the config folder (no `~`, no control characters)", node)
            return nil
        }
        return normaliseAbsolute(text.hasPrefix("/") ? text : base + "/" + text)
    }

    func duration(_ node: Node, _ at: KeyPath, _ range: ClosedRange<Int>, _ bounds: String) -> Duration? {
        guard let text = reader.string(node, at, "a duration such as `30s`, `5m`, `2h`, `1d`") else { return nil }
        guard let seconds = parseDurationSeconds(text) else {
            reader.fail(at, .invalidValue, "a duration such as `30s`, `5m`, `2h`, `1d`", node)
            return nil
        }
        guard range.contains(seconds) else {
            reader.fail(at, .invalidValue, "a duration \(bounds)", node)
            return nil
        }
        return .seconds(seconds)
    }

    func tagPatternValue(_ node: Node, _ at: KeyPath) -> String? {
        let what = "a tag pattern using `{env}` and `{version}` once each, optionally `{project}`, and literal `A-Z a-z 0-9 . _ / -` (e.g. `{env}/{version}`)"
        guard let text = reader.string(node, at, what) else { return nil }
        var rest = Substring(text)
        var counts: [String: Int] = [:]
        var literalOK = true
        while let open = rest.firstIndex(of: "{") {
            let literal = rest[..<open]
            if literal.contains("}") { literalOK = false }
            guard let close = rest[open...].firstIndex(of: "}") else { literalOK = false; break }
            let name = String(rest[rest.index(after: open)..<close])
            counts[name, default: 0] += 1
            rest = rest[rest.index(after: close)...]
        }
        let literals = text.replacingOccurrences(of: "{env}", with: "").replacingOccurrences(of: "{version}", with: "").replacingOccurrences(of: "{project}", with: "")
        literalOK = literalOK && literals.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || "._/-".contains($0) }
        let placeholdersOK = counts["env"] == 1 && counts["version"] == 1 && (counts["project"] ?? 0) <= 1
            && Set(counts.keys).isSubset(of: ["env", "version", "project"])
        let shapeOK = !text.hasPrefix("/") && !text.hasSuffix("/") && !text.contains("//") && !text.contains("..") && text.utf8.count <= 200
        guard literalOK, placeholdersOK, shapeOK else {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        return text
    }

    func exportLimits(_ node: Node, _ at: KeyPath) -> ExportLimits? {
        guard let f = reader.mapping(node, at, "a mapping with `max_bytes`, `max_files`, `max_depth`") else { return nil }
        let d = ExportLimits.defaults
        let bytes = f.take("max_bytes").map { reader.int($0, at.key("max_bytes"), 1...(64 << 30), "an integer between 1 and 68719476736 (64 GiB)") } ?? d.maxBytes
        let files = f.take("max_files").map { reader.int($0, at.key("max_files"), 1...10_000_000, "an integer between 1 and 10000000") } ?? d.maxFiles
        let depth = f.take("max_depth").map { reader.int($0, at.key("max_depth"), 1...1_024, "an integer between 1 and 1024") } ?? d.maxDepth
        f.finish(known: "max_bytes, max_files, max_depth")
        guard let bytes, let files, let depth else { return nil }
        return ExportLimits(maxBytes: bytes, maxFiles: files, maxDepth: depth)
    }

    func terraformSettings(_ node: Node, _ at: KeyPath) -> TerraformSettings? {
        guard let f = reader.mapping(node, at, "a mapping with `binary` and optionally `plugin_cache_dir`, `provider_mirror`, `confine`, `plan_timeout`, `apply_timeout`") else { return nil }
        let binary = require(f, "binary", at, "the path of the terraform or tofu binary").flatMap { path($0, at.key("binary"), "the path of the terraform or tofu binary") }
        let cache = f.take("plugin_cache_dir").flatMap { path($0, at.key("plugin_cache_dir"), "a folder for the provider plugin cache") }
        let mirror = f.take("provider_mirror").flatMap { path($0, at.key("provider_mirror"), "a folder holding a provider mirror") }
        let confine = f.take("confine").map { reader.bool($0, at.key("confine")) } ?? true
        if let global = f.take("writable_paths") {
            // Granted to every environment, a state folder let a dev release read prod's state
            // (secrets in plain text) and write beside it. Refused rather than moved silently:
            // which environment owns each folder is the operator's decision.
            reader.fail(at.key("writable_paths"), .invalidValue,
                        "no `terraform.writable_paths`: move each folder under `environments.NAME.writable_paths` of the one environment whose state it holds (a folder granted to every environment lets one environment's code read and write another's state)", global)
        }
        let planTimeout = f.take("plan_timeout").map { duration($0, at.key("plan_timeout"), 1...86_400, "between 1s and 24h") } ?? .seconds(3_600)
        let applyTimeout = f.take("apply_timeout").map { duration($0, at.key("apply_timeout"), 1...604_800, "between 1s and 7d") } ?? .seconds(14_400)
        f.finish(known: "binary, plugin_cache_dir, provider_mirror, confine, plan_timeout, apply_timeout")
        guard let binary, let confine, let planTimeout, let applyTimeout else { return nil }
        return TerraformSettings(binary: binary, pluginCacheDir: cache, providerMirrorDir: mirror, confine: confine,
                                 planTimeout: planTimeout, applyTimeout: applyTimeout)
    }

    func storeConfig(_ node: Node, _ at: KeyPath) -> StoreConfig? {
        guard let f = reader.mapping(node, at, "a mapping `sqlite: PATH`") else { return nil }
        let sqlite = require(f, "sqlite", at, "the path of the SQLite store file").flatMap { path($0, at.key("sqlite"), "the path of the SQLite store file") }
        f.finish(known: "sqlite")
        return sqlite.map { .sqlite(path: $0) }
    }

    func listenAddress(_ node: Node, _ at: KeyPath) -> ListenAddress? {
        let what = "`host:port` such as `127.0.0.1:8420` or `[::1]:8420`"
        guard let text = reader.string(node, at, what) else { return nil }
        guard let address = ListenAddress.parse(text) else {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        return address
    }

    // MARK: repository

    func repositoryConfig(_ node: Node, _ at: KeyPath) -> RepositoryConfig? {
        guard let f = reader.mapping(node, at, "a mapping with `url`, `branch`, `credentials`") else { return nil }
        let urlWhat = "an `https://` or `ssh://` URL, `user@host:path`, or a local path (plain `http://` and `git://` can be tampered with in transit)"
        var resolved: (String, RepositoryConfig.Transport)?
        if let urlNode = require(f, "url", at, urlWhat), let text = reader.string(urlNode, at.key("url"), urlWhat) {
            resolved = classifyURL(text, urlNode, at.key("url"), urlWhat)
        }
        let branch = f.take("branch").map { branchName($0, at.key("branch")) } ?? "main"
        let credNode = f.take("credentials")
        let credentials = credNode.flatMap { gitCredentials($0, at.key("credentials")) }
        f.finish(known: "url, branch, credentials", classify: classifyLiteralSecret(reader))

        guard let (url, transport) = resolved, let branch else { return nil }
        switch (transport, credentials) {
        case (.ssh, .ssh?), (.https, .https?), (.https, nil), (.local, nil):
            break
        case (.ssh, nil):
            if credNode == nil {
                reader.fail(at.key("credentials"), .missingKey, "`ssh_key_file` and `known_hosts_file` for an ssh URL (host keys are always checked)", node)
            }
            return nil
        case (.ssh, .https?):
            reader.fail(at.key("credentials"), .conflict, "`ssh_key_file` and `known_hosts_file` for an ssh URL, not `token_file`/`username`", credNode)
            return nil
        case (.https, .ssh?):
            reader.fail(at.key("credentials"), .conflict, "`token_file` and `username` for an https URL, not ssh keys", credNode)
            return nil
        case (.local, _?):
            reader.fail(at.key("credentials"), .conflict, "no credentials for a local repository", credNode)
            return nil
        }
        return RepositoryConfig(url: url, transport: transport, branch: branch, credentials: credentials)
    }

    private func classifyURL(_ text: String, _ node: Node, _ at: KeyPath, _ what: String) -> (String, RepositoryConfig.Transport)? {
        let lower = text.lowercased()
        if text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) || text.isEmpty {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        if lower.hasPrefix("https://") {
            let authority = text.dropFirst(8).prefix { $0 != "/" }
            if authority.contains("@") {
                // A password in the URL would be a secret in the trust file, and a user name
                // belongs under credentials; either way the value is not repeated.
                reader.fail(at, .literalSecret, "an https URL without user information; put `username` and `token_file` under `credentials` (the value is not shown)", node)
                return nil
            }
            guard !authority.isEmpty else { reader.fail(at, .invalidValue, what, node); return nil }
            return (text, .https)
        }
        if lower.hasPrefix("ssh://") {
            guard !text.dropFirst(6).prefix(while: { $0 != "/" }).isEmpty else { reader.fail(at, .invalidValue, what, node); return nil }
            return (text, .ssh)
        }
        if lower.hasPrefix("file://") {
            let p = String(text.dropFirst(7))
            guard p.hasPrefix("/") else { reader.fail(at, .invalidValue, "a `file://` URL with an absolute path", node); return nil }
            return (normaliseAbsolute(p), .local)
        }
        if lower.contains("://") {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        if text.hasPrefix("/") || text.hasPrefix(".") {
            return (normaliseAbsolute(text.hasPrefix("/") ? text : base + "/" + text), .local)
        }
        // scp-like `user@host:path`: the colon comes before any slash.
        if let colon = text.firstIndex(of: ":"), !text[..<colon].contains("/"), text[..<colon].contains("@") {
            return (text, .ssh)
        }
        reader.fail(at, .invalidValue, what, node)
        return nil
    }

    /// Git's ref-name rules, tightened: the branch name ends up in refspecs and messages.
    func branchName(_ node: Node, _ at: KeyPath) -> String? {
        let what = "a branch name (letters, digits, `. _ / -`, no `..`, not starting with `-` or `/`)"
        guard let text = reader.string(node, at, what) else { return nil }
        let ok = !text.isEmpty && text.utf8.count <= 200 && !text.hasPrefix("-") && !text.hasPrefix("/") && !text.hasSuffix("/")
            && !text.contains("..") && !text.contains("//") && !text.hasSuffix(".lock") && !text.hasSuffix(".")
            && text.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || "._/-".contains($0) }
        if !ok { reader.fail(at, .invalidValue, what, node); return nil }
        return text
    }

    func gitCredentials(_ node: Node, _ at: KeyPath) -> GitCredentials? {
        guard let f = reader.mapping(node, at, "a mapping with `token_file` + `username` (https) or `ssh_key_file` + `known_hosts_file` (ssh)") else { return nil }
        let token = f.take("token_file").flatMap { path($0, at.key("token_file"), "a path to the file holding the git token") }
        let userNode = f.take("username")
        let user = userNode.flatMap { reader.string($0, at.key("username"), "a git user name") }
        let key = f.take("ssh_key_file").flatMap { path($0, at.key("ssh_key_file"), "a path to the SSH private key file") }
        let hosts = f.take("known_hosts_file").flatMap { path($0, at.key("known_hosts_file"), "a path to the known_hosts file") }
        let present = Set(f.keys)
        f.finish(known: "token_file, username, ssh_key_file, known_hosts_file", classify: classifyLiteralSecret(reader))
        let httpsKeys = present.intersection(["token_file", "username"])
        let sshKeys = present.intersection(["ssh_key_file", "known_hosts_file"])
        if !httpsKeys.isEmpty && !sshKeys.isEmpty {
            reader.fail(at, .conflict, "either `token_file` + `username` (https) or `ssh_key_file` + `known_hosts_file` (ssh), not both", node)
            return nil
        }
        if !sshKeys.isEmpty {
            if !present.contains("ssh_key_file") { reader.fail(at.key("ssh_key_file"), .missingKey, "a path to the SSH private key file", node) }
            if !present.contains("known_hosts_file") { reader.fail(at.key("known_hosts_file"), .missingKey, "a known_hosts file (host keys are always checked)", node) }
            guard let key, let hosts else { return nil }
            return .ssh(keyFile: key, knownHostsFile: hosts)
        }
        if !httpsKeys.isEmpty {
            if !present.contains("token_file") { reader.fail(at.key("token_file"), .missingKey, "a path to the file holding the git token", node) }
            if !present.contains("username") { reader.fail(at.key("username"), .missingKey, "a git user name", node) }
            guard let token, let user else { return nil }
            if user.isEmpty || user.contains(where: { $0 == ":" || $0.isWhitespace }) {
                reader.fail(at.key("username"), .invalidValue, "a git user name without `:` or spaces", userNode)
                return nil
            }
            return .https(username: user, tokenFile: token)
        }
        if present.isEmpty {
            reader.fail(at, .missingKey, "`token_file` + `username` (https) or `ssh_key_file` + `known_hosts_file` (ssh); omit `credentials` for none", node)
        }
        return nil
    }

    // MARK: identities

    func identitiesMap(_ node: Node, _ at: KeyPath) -> [String: Identity]? {
        guard let f = reader.mapping(node, at, "a mapping of identity names to `token_sha256` and `emails`") else { return nil }
        var out: [String: Identity] = [:]
        var tokenOwner: [String: String] = [:]
        var emailOwner: [String: String] = [:]
        var ok = true
        for (name, value) in f.entries() {
            let here = at.key(name)
            guard isSimpleName(name, extra: ["-", "_", "."]) else {
                reader.fail(here, .invalidValue, "an identity name of lowercase letters, digits, `-`, `_`, `.` (at most 63 bytes)", value)
                ok = false
                continue
            }
            guard let g = reader.mapping(value, here, "a mapping with `token_sha256` and `emails`") else { ok = false; continue }
            var token: String?
            if let tnode = require(g, "token_sha256", here, "the SHA-256 of the identity's API token (64 lowercase hex digits)"),
               let text = reader.string(tnode, here.key("token_sha256"), "64 lowercase hex digits") {
                if text.utf8.count == 64, text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
                    token = text
                    if let other = tokenOwner[text] {
                        // Two identities with one token: an approval could not be attributed.
                        reader.fail(here.key("token_sha256"), .conflict, "a token hash not shared with identity `\(other)`", tnode)
                        token = nil
                    } else {
                        tokenOwner[text] = name
                    }
                } else {
                    reader.fail(here.key("token_sha256"), .invalidValue, "64 lowercase hex digits (the SHA-256 of the token, not the token; the value is not shown)", tnode)
                }
            }
            var emails: [String] = []
            if let enode = g.take("emails"), let list = reader.stringList(enode, here.key("emails"), "git e-mail addresses") {
                for (i, email) in list.enumerated() {
                    let lower = email.lowercased()
                    let parts = lower.split(separator: "@", omittingEmptySubsequences: false)
                    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !lower.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" }) else {
                        reader.fail(here.key("emails").index(i), .invalidValue, "an e-mail address `name@domain`", enode)
                        continue
                    }
                    if let other = emailOwner[lower], other != name {
                        // The tagger must map to exactly one identity, or the self-approval rule could be dodged.
                        reader.fail(here.key("emails").index(i), .conflict, "an e-mail not also listed for identity `\(other)`", enode)
                        continue
                    }
                    emailOwner[lower] = name
                    if !emails.contains(lower) { emails.append(lower) }
                }
            }
            g.finish(known: "token_sha256, emails", classify: classifyLiteralSecret(reader))
            if let token { out[name] = Identity(name: name, tokenSHA256: token, emails: emails) } else { ok = false }
        }
        f.finish(known: "identity names")
        return ok ? out : nil
    }

    // MARK: environments

    func environmentsMap(_ node: Node, _ at: KeyPath, identities: [String: Identity]?) -> [String: EnvironmentPolicy]? {
        guard let f = reader.mapping(node, at, "a mapping of environment names to their policy") else { return nil }
        let entries = f.entries()
        if entries.isEmpty {
            reader.fail(at, .invalidValue, "at least one environment", node)
            return nil
        }
        let names = Set(entries.map(\.key))
        var out: [String: EnvironmentPolicy] = [:]
        var ok = true
        for (name, value) in entries {
            let here = at.key(name)
            guard isSimpleName(name) else {
                reader.fail(here, .invalidValue, "an environment name of lowercase letters, digits, `-`, `_` (at most 63 bytes)", value)
                ok = false
                continue
            }
            if let policy = environment(name, value, here, names: names, identities: identities) { out[name] = policy } else { ok = false }
        }
        // promote_from must not loop: a cycle would make every environment in it wait for
        // another forever, or (worse) let a later check treat the loop as satisfied.
        for name in out.keys.sorted() {
            var seen: [String] = [name]
            var current = out[name]?.promoteFrom
            while let next = current {
                if next == name {
                    reader.fail(at.key(name).key("promote_from"), .cycle, "a promotion order without cycles (\((seen + [name]).joined(separator: " ← ")))")
                    ok = false
                    break
                }
                if seen.contains(next) { break }
                seen.append(next)
                current = out[next]?.promoteFrom
            }
        }
        // A folder two environments may write (or one inside a folder of another's) is state
        // one environment's code can read and rewrite for the other: each names its own.
        let sorted = out.keys.sorted()
        for (i, first) in sorted.enumerated() {
            for second in sorted[(i + 1)...] {
                for (a, pathA) in (out[first]?.writablePaths ?? []).enumerated() {
                    for (b, pathB) in (out[second]?.writablePaths ?? []).enumerated() where pathsOverlap(pathA, pathB) {
                        let keyA = at.key(first).key("writable_paths").index(a)
                        let keyB = at.key(second).key("writable_paths").index(b)
                        reader.fail(keyB, .conflict, "a folder neither equal to, inside nor holding `\(keyA.rendered)` (each environment writes only folders of its own, or one could read and rewrite the other's state)")
                        ok = false
                    }
                }
            }
        }
        return ok ? out : nil
    }

    private func environment(_ name: String, _ node: Node, _ at: KeyPath, names: Set<String>, identities: [String: Identity]?) -> EnvironmentPolicy? {
        guard let f = reader.mapping(node, at, "a mapping with the environment's policy (`serves`, `approvals`, `approvers`, …)") else { return nil }
        let before = reader.errors.count
        let serves = f.take("serves").map { reader.bool($0, at.key("serves")) } ?? false
        var promoteFrom: String?
        if let pnode = f.take("promote_from"), let source = reader.string(pnode, at.key("promote_from"), "the name of another environment") {
            if source == name {
                reader.fail(at.key("promote_from"), .cycle, "another environment than `\(name)` itself", pnode)
            } else if !names.contains(source) {
                reader.fail(at.key("promote_from"), .unknownReference, "the name of an environment defined under `environments` (one of: \(names.sorted().joined(separator: ", ")))", pnode)
            } else {
                promoteFrom = source
            }
        }
        let approvalsNode = f.take("approvals")
        let approvals = approvalsNode.map { reader.int($0, at.key("approvals"), 1...20, "an integer between 1 and 20") } ?? 1
        var approvers: [String]?
        if let anode = require(f, "approvers", at, "a list of identity names allowed to approve"),
           let list = reader.stringList(anode, at.key("approvers"), "identity names") {
            var seen: Set<String> = []
            var valid = true
            for (i, approver) in list.enumerated() {
                if !seen.insert(approver).inserted {
                    reader.fail(at.key("approvers").index(i), .duplicateKey, "each approver listed once", anode)
                    valid = false
                } else if let identities, identities[approver] == nil {
                    reader.fail(at.key("approvers").index(i), .unknownReference, "the name of an identity defined under `identities`", anode)
                    valid = false
                }
            }
            if list.isEmpty {
                reader.fail(at.key("approvers"), .invalidValue, "at least one approver", anode)
                valid = false
            }
            approvers = valid ? list : nil
        }
        if let approvals, let approvers, approvals > approvers.count {
            // Otherwise no run could ever be approved; better said now than at the first release.
            reader.fail(at.key("approvals"), .conflict, "at most as many approvals as listed approvers (\(approvers.count))", approvalsNode)
        }
        let tagger = f.take("tagger_may_approve").map { reader.bool($0, at.key("tagger_may_approve")) } ?? false
        let ttl = f.take("approval_ttl").map { duration($0, at.key("approval_ttl"), 60...(90 * 86_400), "between 1m and 90d") } ?? .seconds(86_400)
        let signedNode = f.take("require_signed_tags")
        let signed = signedNode.map { reader.bool($0, at.key("require_signed_tags")) } ?? false
        let signersNode = f.take("allowed_signers_file")
        let signers = signersNode.flatMap { path($0, at.key("allowed_signers_file"), "a path to an SSH allowed_signers file") }
        if signed == true && signersNode == nil {
            reader.fail(at.key("allowed_signers_file"), .missingKey, "an allowed_signers file when `require_signed_tags: true`", signedNode)
        }
        if signed == false && signersNode != nil {
            // A signers file that is never consulted looks like protection and is not.
            reader.fail(at.key("allowed_signers_file"), .conflict, "`require_signed_tags: true` alongside `allowed_signers_file` (it is otherwise ignored)", signersNode)
        }
        let windows = f.take("apply_windows").map { applyWindows($0, at.key("apply_windows")) } ?? []
        let planNode = f.take("plan_credentials_file")
        let plan = planNode.flatMap { path($0, at.key("plan_credentials_file"), "a path to the plan credentials env-file") }
        let apply = f.take("apply_credentials_file").flatMap { path($0, at.key("apply_credentials_file"), "a path to the apply credentials env-file") }
        if let plan, let apply, plan == apply {
            // docs/THREAT-MODEL.md §1.2: plan-time code (external data sources, provider code) must never see
            // the credentials that can change the environment.
            reader.fail(at.key("plan_credentials_file"), .conflict, "a different file from `apply_credentials_file` (plan must never see apply credentials)", planNode)
        }
        let protected = f.take("protected_resource_types").flatMap { resourceTypes($0, at.key("protected_resource_types"), allowEmpty: true) } ?? []
        var allowed: [String]?
        if let allowedNode = f.take("allowed_resource_types") {
            allowed = resourceTypes(allowedNode, at.key("allowed_resource_types"), allowEmpty: false)
        }
        let writable = f.take("writable_paths").map {
            reader.list($0, at.key("writable_paths"), "a list of folders this environment's terraform may write") { item, itemAt in
                path(item, itemAt, "a folder this environment's terraform may write")
            }
        } ?? []
        f.finish(known: "serves, promote_from, approvals, approvers, tagger_may_approve, approval_ttl, require_signed_tags, allowed_signers_file, apply_windows, plan_credentials_file, apply_credentials_file, protected_resource_types, allowed_resource_types, writable_paths", classify: classifyLiteralSecret(reader))

        guard reader.errors.count == before, let serves, let approvals, let approvers, let tagger, let ttl, let signed, let windows,
              let writable else { return nil }
        return EnvironmentPolicy(
            name: name, serves: serves, promoteFrom: promoteFrom, approvals: approvals, approvers: approvers,
            taggerMayApprove: tagger, approvalTTL: ttl, requireSignedTags: signed, allowedSignersFile: signers,
            applyWindows: windows, planCredentialsFile: plan, applyCredentialsFile: apply,
            protectedResourceTypes: protected, allowedResourceTypes: allowed, writablePaths: writable)
    }

    func resourceTypes(_ node: Node, _ at: KeyPath, allowEmpty: Bool) -> [String]? {
        let what = "resource type names such as `aws_s3_bucket` (lowercase letters, digits, `_`)"
        guard let list = reader.stringList(node, at, what) else { return nil }
        if list.isEmpty && !allowEmpty {
            reader.fail(at, .invalidValue, "at least one resource type (omit the key to allow every type)", node)
            return nil
        }
        var ok = true
        for (i, type) in list.enumerated() where !(isSimpleName(type, extra: ["_"]) && type.first?.isLetter == true) {
            reader.fail(at.index(i), .invalidValue, what, node)
            ok = false
        }
        return ok ? list : nil
    }

    func applyWindows(_ node: Node, _ at: KeyPath) -> [ApplyWindow]? {
        reader.list(node, at, "a list of windows `{days: [mon-fri], from: \"09:00\", to: \"17:00\", timezone: UTC}`", applyWindow)
    }

    private func applyWindow(_ node: Node, _ at: KeyPath) -> ApplyWindow? {
        guard let f = reader.mapping(node, at, "a mapping with `days`, `from`, `to`, `timezone`") else { return nil }
        let dayWhat = "days `mon`…`sun` or ranges such as `mon-fri`"
        var days: Set<Weekday>?
        if let dnode = require(f, "days", at, "a list of \(dayWhat)"), let list = reader.stringList(dnode, at.key("days"), dayWhat) {
            var set: Set<Weekday> = []
            var valid = !list.isEmpty
            for (i, entry) in list.enumerated() {
                let parts = entry.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                if parts.count == 1, let d = Weekday(name: parts[0]) {
                    set.insert(d)
                } else if parts.count == 2, let a = Weekday(name: parts[0]), let b = Weekday(name: parts[1]), a <= b {
                    for n in a.isoNumber...b.isoNumber { if let d = Weekday(isoNumber: n) { set.insert(d) } }
                } else {
                    reader.fail(at.key("days").index(i), .invalidValue, dayWhat, dnode)
                    valid = false
                }
            }
            if list.isEmpty { reader.fail(at.key("days"), .invalidValue, "at least one day", dnode) }
            days = valid ? set : nil
        }
        let timeWhat = "a quoted time \"HH:MM\" (00:00 to 24:00)"
        let from = require(f, "from", at, timeWhat).flatMap { n in reader.string(n, at.key("from"), timeWhat).flatMap { t in TimeOfDay(text: t) ?? { reader.fail(at.key("from"), .invalidValue, timeWhat, n); return nil }() } }
        let to = require(f, "to", at, timeWhat).flatMap { n in reader.string(n, at.key("to"), timeWhat).flatMap { t in TimeOfDay(text: t) ?? { reader.fail(at.key("to"), .invalidValue, timeWhat, n); return nil }() } }
        if let from, let to, from >= to {
            reader.fail(at.key("to"), .invalidValue, "a time after `from` (a window ends on the day it starts; use two windows to span midnight)", node)
        }
        var zone = "UTC"
        if let znode = f.take("timezone") {
            if let text = reader.string(znode, at.key("timezone"), "an IANA time zone such as `UTC` or `Europe/Paris`") {
                if TimeZone(identifier: text) != nil, text.utf8.count <= 64 { zone = text } else {
                    reader.fail(at.key("timezone"), .invalidValue, "an IANA time zone such as `UTC` or `Europe/Paris`", znode)
                }
            }
        }
        f.finish(known: "days, from, to, timezone")
        guard let days, let from, let to, from < to else { return nil }
        return ApplyWindow(days: days, from: from, to: to, timeZone: zone)
    }
}
