import Foundation
import LockstepCore
import Yams

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
        let webhooks = f.take("webhooks").map { webhookSettings($0, top.key("webhooks")) }
        let pollInterval = f.take("poll_interval").map { duration($0, top.key("poll_interval"), 1...86_400, "between 1s and 1d") }
            ?? (webhooks == nil ? .seconds(60) : WebhookSettings.defaultPollInterval)
        let maxPlans = f.take("max_concurrent_plans").map { reader.int($0, top.key("max_concurrent_plans"), 1...64, "an integer between 1 and 64") } ?? 2
        let requireMerge = f.take("require_merge_commit").map { reader.bool($0, top.key("require_merge_commit")) } ?? true
        let validateBranch = f.take("validate_branch").map { reader.bool($0, top.key("validate_branch")) } ?? false
        let tagPattern = f.take("tag_pattern").flatMap { tagPatternValue($0, top.key("tag_pattern")) }
        let limits = f.take("export_limits").map { exportLimits($0, top.key("export_limits")) } ?? ExportLimits.defaults
        let terraform = require(f, "terraform", top, "terraform settings (`binary`)").flatMap { terraformSettings($0, top.key("terraform")) }
        let store = require(f, "store", top, "the store (`sqlite: PATH`)").flatMap { storeConfig($0, top.key("store")) }
        let listen = f.take("listen").map { listenAddress($0, top.key("listen")) } ?? ListenAddress(host: "127.0.0.1", port: 8420)
        let metricsListen = f.take("metrics_listen").map { listenAddress($0, top.key("metrics_listen")) }
        let logFormat = f.take("log_format").map { node -> LogFormat? in
            let what = "one of \(LogFormat.allCases.map(\.rawValue).joined(separator: ", "))"
            guard let text = reader.string(node, top.key("log_format"), what) else { return nil }
            guard let format = LogFormat(rawValue: text) else {
                reader.fail(top.key("log_format"), .invalidValue, what, node)
                return nil
            }
            return format
        } ?? .logfmt
        if let old = f.take("webhook_secret_file") {
            reader.fail(top.key("webhook_secret_file"), .invalidValue,
                        "no `webhook_secret_file`: name each forge's secret files under `webhooks.FORGE.secret_files` (github, gitlab, gitea or generic)", old)
        }
        let forge = f.take("forge").map { forgeSettings($0, top.key("forge")) }
        let publicURL = f.take("public_url").map { self.publicURL($0, top.key("public_url")) }
        let identities = f.take("identities").map { identitiesMap($0, top.key("identities")) } ?? [:]
        let http = f.take("http").map { httpLimits($0, top.key("http")) } ?? HTTPLimits()
        let outputLimits = f.take("limits").map { self.outputLimits($0, top.key("limits")) } ?? OutputLimits()
        let environments = require(f, "environments", top, "a mapping of environment names to their policy").flatMap { environmentsMap($0, top.key("environments"), identities: identities) }
        f.finish(known: "repository, mirror_dir, poll_interval, max_concurrent_plans, require_merge_commit, validate_branch, tag_pattern, export_limits, terraform, store, listen, metrics_listen, log_format, webhooks, forge, public_url, environments, identities, http, limits", classify: secret)

        guard let repository, let mirrorDir, let pollInterval, let maxPlans, let requireMerge, let limits, let terraform, let store,
              let listen, let environments, let identities, let http, let outputLimits, let validateBranch, webhooks != .some(nil),
              forge != .some(nil), publicURL != .some(nil), metricsListen != .some(nil), let logFormat else { return nil }
        var config = AgentConfig(
            file: file, repository: repository, mirrorDir: mirrorDir, pollInterval: pollInterval, maxConcurrentPlans: maxPlans,
            requireMergeCommit: requireMerge, explicitTagPattern: tagPattern, exportLimits: limits,
            terraform: terraform, store: store, listen: listen, webhooks: webhooks ?? nil,
            environments: Dictionary(uniqueKeysWithValues: environments.values.map { ($0.name, $0) }),
            identities: Dictionary(uniqueKeysWithValues: identities.values.map { ($0.name, $0) }), http: http)
        config.limits = outputLimits
        config.forge = forge ?? nil
        config.publicURL = publicURL ?? nil
        config.metricsListen = metricsListen ?? nil
        config.logFormat = logFormat
        config.validateBranch = validateBranch
        if let metrics = config.metricsListen, metrics == listen {
            reader.fail(top.key("metrics_listen"), .conflict, "an address other than `listen` (leave it out to serve /metrics there)")
            return nil
        }
        return config
    }

    func require(_ f: Fields, _ key: String, _ parent: KeyPath, _ what: String) -> Node? {
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
}
