import Foundation

/// What terraform must never reach when it runs confined (`terraform.confine`, the default),
/// and what is wrong with what the config grants it. The daemon builds its Landlock sandbox
/// from these; `lockstep config check` reports the same problems before a restart would.
extension AgentConfig {
    /// Paths no terraform or verify command may read or write (SPEC §8): the store's folder
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
        if let webhookSecretFile { hidden.append(webhookSecretFile) }
        return hidden
    }

    /// Every problem with what confinement grants, reported at once: a writable path, provider
    /// mirror or plugin cache that contains a hidden path (a Landlock grant covers everything
    /// below it, so it would hand the store or a credentials file back to terraform) and, with
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
        for (index, path) in terraform.writablePaths.enumerated() {
            var isFolder: ObjCBool = false
            if onThisMachine, !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) || !isFolder.boolValue {
                problems.append(ConfigError(file: file, keyPath: "terraform.writable_paths[\(index)]",
                                            expected: "an existing folder", code: .invalidValue))
            }
            check(path, "terraform.writable_paths[\(index)]")
        }
        if let mirror = terraform.providerMirrorDir { check(mirror, "terraform.provider_mirror") }
        if let cache = terraform.pluginCacheDir { check(cache, "terraform.plugin_cache_dir") }
        return problems
    }
}
