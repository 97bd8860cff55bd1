import Foundation
public import LockstepCore
import Yams
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The repo configuration: `lockstep.yaml` at the delivery repo root, *layout only*
/// (docs/CONTRACT.md §2). It comes from the repository, so it is untrusted input: anyone who can get a
/// pull request merged writes it. It may say where projects live, which var and backend
/// files an environment uses and how to smoke-test it; it can never set a trust decision
/// (approvals, approvers, credentials, …): such keys are refused, not ignored, so the run
/// says why.
///
/// All paths are relative to the repository root.
public struct RepoConfig: Sendable, Hashable {
    /// The name of the file at the repo root.
    public static let fileName = "lockstep.yaml"

    public var file: String
    /// Project name → layout. Never empty.
    public var projects: [ProjectName: ProjectLayout]
    /// Extra policy files (read by external checks), relative to the repo root.
    public var policyFiles: [RelativePath]
    /// Differences between environments that `lockstep validate` reports but the repo
    /// declares intended (`parity.ignore`). Empty when the key is absent.
    public var parity: ParityPolicy = ParityPolicy()

    /// Every environment named by any project.
    public var environmentNames: Set<EnvironmentName> {
        Set(projects.values.flatMap { $0.environments.keys })
    }

    /// Validates `lockstep.yaml` text (at most 1 MiB). Throws every problem found.
    public static func parse(yaml: String, file: String = RepoConfig.fileName) throws(ConfigErrors) -> RepoConfig {
        let reader = Reader(file: file)
        guard let root = reader.document(yaml) else { throw ConfigErrors(reader.errors) }
        let config = RepoParser(reader: reader).parse(root, file: file)
        if let config, reader.errors.isEmpty { return config }
        // Every refusal records an error; the fallback keeps "no config" from ever looking like success.
        throw ConfigErrors(reader.errors.isEmpty ? [ConfigError(file: file, keyPath: "", expected: "a valid configuration", code: .invalidValue)] : reader.errors)
    }

    /// Reads `lockstep.yaml` from an exported tree (or checkout) at `root`. The file itself
    /// goes through `resolveInside`, so a `lockstep.yaml` symlinked to a file outside the
    /// tree is refused rather than read.
    public static func load(root: String) throws(ConfigErrors) -> RepoConfig {
        try parse(yaml: try text(root: root), file: fileName)
    }

    /// The text of `lockstep.yaml` in the tree at `root`, read as ``load(root:)`` reads it:
    /// for a caller that keeps the text it validated (the last valid layout is stored).
    public static func text(root: String) throws(ConfigErrors) -> String {
        let path: String
        do {
            path = try resolveInside(root: root, relative: fileName, file: fileName, keyPath: "")
        } catch {
            throw ConfigErrors([error])
        }
        return try readConfigFile(path: path, limit: DocumentLimits.maxBytes)
    }

    /// Cross-checks this layout against the agent's trust decisions. An environment the
    /// agent does not know is an error (docs/CONTRACT.md §2: that run fails, it is never skipped silently),
    /// so a pull request cannot invent an environment that has no approvers.
    public func check(against agent: AgentConfig) -> [ConfigError] {
        var errors: [ConfigError] = []
        let known = agent.environments.keys.sorted().map(\.rawValue).joined(separator: ", ")
        for project in projects.keys.sorted() {
            guard let layout = projects[project] else { continue }
            for env in layout.environments.keys.sorted() where agent.environments[env] == nil {
                errors.append(ConfigError(
                    file: file, keyPath: KeyPath().key("projects").key(project.rawValue).key("environments").key(env.rawValue).rendered,
                    expected: "an environment defined in the agent config (\(known)); a repo config cannot add environments",
                    code: .unknownReference))
            }
        }
        if projects.count > 1, let pattern = agent.explicitTagPattern, !pattern.contains("{project}") {
            errors.append(ConfigError(
                file: agent.file, keyPath: "tag_pattern",
                expected: "a pattern with `{project}` because \(file) defines \(projects.count) projects (a tag must name one target)",
                code: .conflict))
        }
        return errors
    }

    /// Resolves every path of this layout inside the exported tree at `root` (symlinks
    /// followed) and returns every path that is missing or escapes.
    /// - Parameter project: only this project's paths (and the policy files): what a run of it
    ///   reads. A run at a thousand projects resolved every project's files in its own tree.
    public func checkPaths(root: String, project: ProjectName? = nil) -> [ConfigError] {
        var errors: [ConfigError] = []
        func check(_ path: RelativePath, _ at: KeyPath) {
            do { _ = try resolveInside(root: root, relative: path.value, file: file, keyPath: at.rendered) } catch { errors.append(error) }
        }
        for name in projects.keys.sorted() where project == nil || project == name {
            guard let p = projects[name] else { continue }
            let at = KeyPath().key("projects").key(name.rawValue)
            check(p.dir, at.key("dir"))
            for env in p.environments.keys.sorted() {
                guard let e = p.environments[env] else { continue }
                let eat = at.key("environments").key(env.rawValue)
                for (i, v) in e.varFiles.enumerated() { check(v, eat.key("var_files").index(i)) }
                for (i, v) in e.backendConfigFiles.enumerated() { check(v, eat.key("backend_config_files").index(i)) }
            }
        }
        for (i, v) in policyFiles.enumerated() { check(v, KeyPath().key("policy_files").index(i)) }
        return errors
    }
}

/// One Terraform root module of the delivery repo.
public struct ProjectLayout: Sendable, Hashable {
    public var name: ProjectName
    /// The module folder, relative to the repo root (`.` for the root itself).
    public var dir: RelativePath
    /// Environment name → its files and checks. Never empty.
    public var environments: [EnvironmentName: EnvironmentLayout]
}

/// The layout of one (project, environment) target.
public struct EnvironmentLayout: Sendable, Hashable {
    public var name: EnvironmentName
    /// `-var-file` arguments, relative to the repo root.
    public var varFiles: [RelativePath]
    /// `-backend-config` files, relative to the repo root.
    public var backendConfigFiles: [RelativePath]
    /// Smoke tests run after apply, in order.
    public var verify: [VerifyCommand]
}

/// A smoke-test command: an argv list executed directly, never a shell string, so nothing
/// from the repo is ever re-parsed by a shell (docs/THREAT-MODEL.md §3.2: hostile names and metacharacters).
public struct VerifyCommand: Sendable, Hashable {
    /// Program and arguments; `argv[0]` is a program name or a normalised path.
    public var argv: [String]
    /// Default 5m, at most 1h.
    public var timeout: Duration
}

/// A path from the delivery repo that has passed the lexical check: relative, normalised
/// (no empty, `.` or `..` components), no NUL or control characters, no backslash, never
/// naming `.git`. Lexical only: symlinks are checked by `resolveInside` once a tree exists.
///
/// Stops `var_files: [../../etc/passwd]`, `/etc/shadow` and `.git/config` style reads
/// outside the exported tree or of repository internals (docs/THREAT-MODEL.md §1.6).
public struct RelativePath: Sendable, Hashable, CustomStringConvertible {
    public let value: String

    /// nil when `text` fails the lexical check. `allowDot` accepts `.` (the root itself).
    public init?(_ text: String, allowDot: Bool = false) {
        guard RelativePath.problem(text, allowDot: allowDot) == nil else { return nil }
        value = text
    }

    public var description: String { value }

    /// Why `text` is not an acceptable repo path, phrased to follow "expected", or nil.
    public static func problem(_ text: String, allowDot: Bool = false) -> String? {
        if text.isEmpty { return "a non-empty relative path" }
        if text.utf8.count > 1_024 { return "a path of at most 1024 bytes" }
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "a path without NUL or control characters" }
        if text.contains("\\") { return "a path with `/` separators (no backslash)" }
        if text.hasPrefix("/") { return "a path relative to the repository root, not an absolute path" }
        if allowDot && text == "." { return nil }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count > 64 { return "a path of at most 64 components" }
        for part in parts {
            if part.isEmpty { return "a normalised path (no `//`, no trailing `/`)" }
            if part == "." { return "a normalised path (no `.` components)" }
            if part == ".." { return "a path that stays inside the repository (no `..`)" }
            if part.lowercased() == ".git" { return "a path outside `.git` (repository internals are never read)" }
        }
        return nil
    }
}

/// Resolves `relative` inside `root`, following symlinks as `realpath(3)` does, and checks
/// the result is `root` or below it and not inside `.git`.
///
/// The export keeps symlinks that point anywhere (as measured, libgit2's checkout writes them as
/// they are), so a lexically clean `env/prod.tfvars` can still be a link to `/etc/passwd`
/// or `../../other-run/plan`. This is the check that stops it; the lexical check alone is
/// not enough. Both `root` and the result are fully resolved before comparing, so a root
/// reached through a symlink (`/tmp` on macOS) still compares correctly.
///
/// - Returns: the resolved absolute path.
public func resolveInside(root: String, relative: String, file: String = RepoConfig.fileName, keyPath: String = "") throws(ConfigError) -> String {
    func failure(_ code: ConfigError.Code, _ expected: String) -> ConfigError {
        ConfigError(file: file, keyPath: keyPath, expected: expected, code: code)
    }
    if let problem = RelativePath.problem(relative, allowDot: true) { throw failure(.unsafePath, problem) }
    guard let realRoot = realPath(root) else { throw failure(.pathMissing, "an existing export directory") }
    let candidate = relative == "." ? realRoot : (realRoot == "/" ? "/" : realRoot + "/") + relative
    errno = 0
    guard let resolved = realPath(candidate) else {
        if errno == ELOOP { throw failure(.pathEscapes, "a path without symlink loops") }
        throw failure(.pathMissing, "a path that exists in the repository at the tagged commit")
    }
    let inside: Substring
    if resolved == realRoot {
        inside = ""
    } else if realRoot == "/" {
        inside = resolved.dropFirst()
    } else if resolved.hasPrefix(realRoot + "/") {
        inside = resolved.dropFirst(realRoot.count + 1)
    } else {
        throw failure(.pathEscapes, "a path that stays inside the exported tree after following symlinks")
    }
    if inside.split(separator: "/").contains(where: { $0.lowercased() == ".git" }) {
        throw failure(.unsafePath, "a path outside `.git` after following symlinks")
    }
    return resolved
}

private func realPath(_ path: String) -> String? {
    guard let raw = realpath(path, nil) else { return nil }
    defer { free(raw) }
    return String(cString: raw)
}

// MARK: - parser

/// Keys that are trust decisions somewhere in the agent config. In `lockstep.yaml` they are
/// refused with an explanation, wherever they appear, so a pull request that tries to lower
/// approvals or add an approver fails loudly instead of appearing to work.
let trustKeys: Set<String> = [
    "approvals", "approvers", "tagger_may_approve", "serves", "apply_credentials_file", "plan_credentials_file",
    "promote_from", "approval_ttl", "require_signed_tags", "allowed_signers_file", "apply_windows",
    "protected_resource_types", "allowed_resource_types", "identities", "token_sha256", "emails", "repository",
    "credentials", "branch", "tag_pattern", "require_merge_commit", "validate_branch", "webhook_secret_file", "webhooks", "export_limits",
    "terraform", "store", "listen", "mirror_dir", "poll_interval", "forge", "notifications", "public_url",
    "revoked_signers_file", "openpgp_keyring_file", "signer_may_approve", "backend",
]

struct RepoParser {
    let reader: Reader

    func classify(environmentsAtTop: Bool) -> (String, KeyPath, Node) -> Bool {
        let secret = classifyLiteralSecret(reader)
        return { key, path, node in
            if trustKeys.contains(key) || (environmentsAtTop && key == "environments") {
                let what = key == "environments"
                    ? "no top-level `environments`: environments and their trust settings live in the agent config; list a project's environments under `projects.NAME.environments`"
                    : "no `\(key)` here: it is a trust decision and lives only in the agent config (a pull request cannot loosen a trust decision)"
                reader.fail(path, .trustInRepoConfig, what, node)
                return true
            }
            return secret(key, path, node)
        }
    }

    func parse(_ root: Node, file: String) -> RepoConfig? {
        let top = KeyPath()
        guard let f = reader.mapping(root, top, "a mapping at the top level with `projects`") else { return nil }
        var projects: [ProjectName: ProjectLayout]?
        if let pnode = f.take("projects") {
            projects = projectsMap(pnode, top.key("projects"))
        } else {
            reader.fail(top.key("projects"), .missingKey, "a mapping of project names to `dir` and `environments`")
        }
        let policy = f.take("policy_files").map { paths($0, top.key("policy_files"), "policy file paths") } ?? []
        let parityNode = f.take("parity")
        f.finish(known: "projects, policy_files, parity", classify: classify(environmentsAtTop: true))
        // Parity names projects and environments, so it is read against the projects read above
        // (and not at all when they failed: every reference would be a second, misleading error).
        var parity: ParityPolicy? = ParityPolicy()
        if let parityNode, let projects { parity = self.parity(parityNode, top.key("parity"), projects: projects) }
        guard let projects, let policy, let parity else { return nil }
        return RepoConfig(file: file, projects: projects, policyFiles: policy, parity: parity)
    }

    private func projectsMap(_ node: Node, _ at: KeyPath) -> [ProjectName: ProjectLayout]? {
        guard let f = reader.mapping(node, at, "a mapping of project names to `dir` and `environments`") else { return nil }
        let entries = f.entries()
        if entries.isEmpty {
            reader.fail(at, .invalidValue, "at least one project", node)
            return nil
        }
        var out: [ProjectName: ProjectLayout] = [:]
        var ok = true
        for (name, value) in entries {
            let here = at.key(name)
            guard isSimpleName(name) else {
                reader.fail(here, .invalidValue, "a project name of lowercase letters, digits, `-`, `_` (at most 63 bytes)", value)
                ok = false
                continue
            }
            if let p = project(name, value, here) { out[p.name] = p } else { ok = false }
        }
        return ok ? out : nil
    }

    private func project(_ name: String, _ node: Node, _ at: KeyPath) -> ProjectLayout? {
        guard let f = reader.mapping(node, at, "a mapping with `dir` and `environments`") else { return nil }
        var dir: RelativePath?
        if let dnode = f.take("dir") {
            dir = path(dnode, at.key("dir"), "the project folder", allowDot: true)
        } else {
            reader.fail(at.key("dir"), .missingKey, "the project folder relative to the repository root (`.` for the root)", node)
        }
        var envs: [EnvironmentName: EnvironmentLayout]?
        if let enode = f.take("environments") {
            envs = environments(enode, at.key("environments"))
        } else {
            reader.fail(at.key("environments"), .missingKey, "a mapping of environment names to their files", node)
        }
        f.finish(known: "dir, environments", classify: classify(environmentsAtTop: false))
        guard let dir, let envs, let projectName = reader.name(ProjectName.self, name, at, node) else { return nil }
        return ProjectLayout(name: projectName, dir: dir, environments: envs)
    }

    private func environments(_ node: Node, _ at: KeyPath) -> [EnvironmentName: EnvironmentLayout]? {
        guard let f = reader.mapping(node, at, "a mapping of environment names to `var_files`, `backend_config_files`, `verify`") else { return nil }
        let entries = f.entries()
        if entries.isEmpty {
            reader.fail(at, .invalidValue, "at least one environment", node)
            return nil
        }
        var out: [EnvironmentName: EnvironmentLayout] = [:]
        var ok = true
        for (raw, value) in entries {
            let here = at.key(raw)
            guard isSimpleName(raw), let name = reader.name(EnvironmentName.self, raw, here, value) else {
                if !isSimpleName(raw) {
                    reader.fail(here, .invalidValue, "an environment name of lowercase letters, digits, `-`, `_` (at most 63 bytes)", value)
                }
                ok = false
                continue
            }
            // `dev: {}` and `dev:` (nothing to add) both mean "this project has dev".
            if Reader.isNull(value) {
                out[name] = EnvironmentLayout(name: name, varFiles: [], backendConfigFiles: [], verify: [])
                continue
            }
            guard let g = reader.mapping(value, here, "a mapping with `var_files`, `backend_config_files`, `verify`") else { ok = false; continue }
            let vars = g.take("var_files").map { paths($0, here.key("var_files"), "var file paths") } ?? []
            let backends = g.take("backend_config_files").map { paths($0, here.key("backend_config_files"), "backend config file paths") } ?? []
            let verify = g.take("verify").map { verifyCommands($0, here.key("verify")) } ?? []
            g.finish(known: "var_files, backend_config_files, verify", classify: classify(environmentsAtTop: false))
            if let vars, let backends, let verify {
                out[name] = EnvironmentLayout(name: name, varFiles: vars, backendConfigFiles: backends, verify: verify)
            } else {
                ok = false
            }
        }
        return ok ? out : nil
    }

    private func path(_ node: Node, _ at: KeyPath, _ what: String, allowDot: Bool = false) -> RelativePath? {
        guard let text = reader.string(node, at, "\(what) relative to the repository root") else { return nil }
        if let problem = RelativePath.problem(text, allowDot: allowDot) {
            reader.fail(at, .unsafePath, problem, node)
            return nil
        }
        return RelativePath(text, allowDot: allowDot)
    }

    private func paths(_ node: Node, _ at: KeyPath, _ what: String) -> [RelativePath]? {
        reader.list(node, at, "a list of \(what) relative to the repository root") { item, here in path(item, here, "a path") }
    }

    private func verifyCommands(_ node: Node, _ at: KeyPath) -> [VerifyCommand]? {
        reader.list(node, at, "a list of commands, each an argv list or `{argv: [...], timeout: 2m}`", verifyCommand)
    }

    private func verifyCommand(_ node: Node, _ at: KeyPath) -> VerifyCommand? {
        let argvWhat = "an argv list such as [\"./scripts/smoke.sh\", \"--env\", \"prod\"] (a shell string is never run)"
        switch node {
        case .sequence:
            return argv(node, at, argvWhat).map { VerifyCommand(argv: $0, timeout: .seconds(300)) }
        case .mapping:
            guard let f = reader.mapping(node, at, argvWhat) else { return nil }
            var args: [String]?
            if let anode = f.take("argv") { args = argv(anode, at.key("argv"), argvWhat) } else {
                reader.fail(at.key("argv"), .missingKey, argvWhat, node)
            }
            var timeout: Duration? = .seconds(300)
            if let tnode = f.take("timeout") {
                let what = "a duration between 1s and 1h such as `30s` or `2m`"
                if let text = reader.string(tnode, at.key("timeout"), what), let s = parseDurationSeconds(text), (1...3_600).contains(s) {
                    timeout = .seconds(s)
                } else {
                    if case .scalar = tnode, !Reader.isNull(tnode) { reader.fail(at.key("timeout"), .invalidValue, what, tnode) }
                    timeout = nil
                }
            }
            f.finish(known: "argv, timeout", classify: classify(environmentsAtTop: false))
            guard let args, let timeout else { return nil }
            return VerifyCommand(argv: args, timeout: timeout)
        case .scalar, .alias:
            reader.fail(at, .wrongType, argvWhat, node)
            return nil
        }
    }

    private func argv(_ node: Node, _ at: KeyPath, _ what: String) -> [String]? {
        guard let list = reader.stringList(node, at, "strings") else { return nil }
        guard let program = list.first, !program.isEmpty else {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        if list.count > 256 || list.contains(where: { $0.utf8.count > 4_096 }) {
            reader.fail(at, .invalidValue, "at most 256 arguments of at most 4096 bytes each", node)
            return nil
        }
        if program.contains("/") && !program.hasPrefix("/") {
            // `./scripts/smoke.sh` is how a repo-relative program is written; the rest must
            // pass the same check as every other repo path.
            let relative = program.hasPrefix("./") ? String(program.dropFirst(2)) : program
            if let problem = RelativePath.problem(relative) {
                reader.fail(at.index(0), .unsafePath, problem, node)
                return nil
            }
        } else if program.hasPrefix("/") {
            reader.fail(at.index(0), .unsafePath, "a program name found on the agent's PATH or a path relative to the repository root, not an absolute path", node)
            return nil
        } else if program.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) || program.hasPrefix("-") {
            reader.fail(at.index(0), .invalidValue, "a program name without control characters, not starting with `-`", node)
            return nil
        }
        return list
    }
}
