import Foundation
public import LockstepCore

/// What terraform must never reach when it runs confined (`terraform.confine`, the default),
/// and what is wrong with what the config grants it. The daemon builds its Landlock sandbox
/// from these; `lockstep config check` reports the same problems before a restart would.
extension AgentConfig {
    /// Paths no terraform or verify command may read or write (docs/THREAT-MODEL.md §1.2): the store's folder
    /// (the store, the runs and the runner's tools), the git mirror, this config itself and
    /// every secret file it names. The daemon adds systemd's `$CREDENTIALS_DIRECTORY`.
    public func confinementHiddenPaths(configPath: String) -> [String] {
        var hidden: [String] = []
        switch store {
        case .sqlite(let path): hidden.append(URL(fileURLWithPath: path).deletingLastPathComponent().standardizedFileURL.path)
        }
        hidden += [mirrorDir, URL(fileURLWithPath: configPath).standardizedFileURL.path]
        hidden += environments.keys.sorted().compactMap { environments[$0] }
            .flatMap { [$0.planCredentialsFile, $0.applyCredentialsFile].compactMap(\.self) }
        switch repository.credentials {
        case .none: break
        case .https(_, let tokenFile): hidden.append(tokenFile)
        case .ssh(let keyFile, _): hidden.append(keyFile)
        }
        hidden += webhooks?.allSecretFiles ?? []
        hidden += forge.map { [$0.tokenFile] } ?? []
        hidden += environments.keys.sorted().compactMap { environments[$0] }.flatMap { policy in
            policy.notifications.flatMap { notification -> [String] in
                var files = notification.secretFile.map { [$0] } ?? []
                if case .urlFile(let file) = notification.destination { files.append(file) }
                return files
            }
        }
        return hidden
    }

    /// Every problem with what confinement grants, reported at once: a writable path, provider
    /// mirror or plugin cache that contains a hidden path (a Landlock grant covers everything
    /// below it, so it would hand the store or a credentials file back to terraform), an
    /// environment's writable path that overlaps the provider mirror or the plugin cache (two
    /// environments' writable paths never overlap: refused at parse) and, with
    /// `onThisMachine`, a writable path that is not an existing folder here (the launcher
    /// could not grant it; the daemon checks this, `config check` may run elsewhere). Empty
    /// when `terraform.confine` is false.
    public func confinementProblems(configPath: String, onThisMachine: Bool) -> [ConfigError] {
        guard terraform.confine else { return [] }
        let hidden = confinementHiddenPaths(configPath: configPath)
        var problems: [ConfigError] = []
        func check(_ path: String, _ keyPath: String) {
            let folder = URL(fileURLWithPath: path).standardizedFileURL.path
            let prefix = folder == "/" ? "/" : folder + "/"
            if hidden.contains(where: { $0 == folder || $0.hasPrefix(prefix) }) {
                problems.append(ConfigError(
                    file: file, keyPath: keyPath,
                    expected: "a folder that holds neither the store's folder, the mirror, this config nor a credentials or key file "
                        + "(terraform would be granted them)",
                    code: .conflict))
            }
        }
        for name in environments.keys.sorted() {
            for (index, path) in (environments[name]?.writablePaths ?? []).enumerated() {
                let key = "environments.\(name.rawValue).writable_paths[\(index)]"
                var isFolder: ObjCBool = false
                if onThisMachine, !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) || !isFolder.boolValue {
                    problems.append(ConfigError(file: file, keyPath: key, expected: "an existing folder", code: .invalidValue))
                }
                check(path, key)
                // A grant overrides a hide below it: a writable folder around the caches would
                // hand this environment every other environment's providers to replace, and one
                // inside them the providers its own later commands run.
                if let cache = terraform.pluginCacheDir, pathsOverlap(path, cache) {
                    problems.append(ConfigError(
                        file: file, keyPath: key,
                        expected: "a folder neither inside nor holding `terraform.plugin_cache_dir` (only `terraform init` writes the provider cache)",
                        code: .conflict))
                }
                // The mirror is granted for reading to every command: around a writable folder
                // it would give every environment that folder's state, and inside one it would
                // let that environment replace the providers every environment runs.
                if let mirror = terraform.providerMirrorDir, pathsOverlap(path, mirror) {
                    problems.append(ConfigError(
                        file: file, keyPath: key,
                        expected: "a folder neither inside nor holding `terraform.provider_mirror` (the mirror is readable by every environment and writable by none)",
                        code: .conflict))
                }
            }
        }
        if let mirror = terraform.providerMirrorDir {
            check(mirror, "terraform.provider_mirror")
            if let cache = terraform.pluginCacheDir, pathsOverlap(mirror, cache) {
                problems.append(ConfigError(
                    file: file, keyPath: "terraform.provider_mirror",
                    expected: "a folder neither inside nor holding `terraform.plugin_cache_dir` (every environment reads the mirror; each has a cache of its own)",
                    code: .conflict))
            }
        }
        if let cache = terraform.pluginCacheDir { check(cache, "terraform.plugin_cache_dir") }
        return problems
    }

    /// The provider cache of one environment: `NAME` inside `terraform.plugin_cache_dir`, or
    /// nil when no cache root is configured. Each environment has its own, so a provider an
    /// init of one environment put there is never run by another's plan or apply.
    public func pluginCacheDirectory(environment: EnvironmentName) -> String? {
        terraform.pluginCacheDir.map { ($0 == "/" ? "" : $0) + "/" + environment.rawValue }
    }
}
