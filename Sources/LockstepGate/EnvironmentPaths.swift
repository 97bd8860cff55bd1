import Foundation
import LockstepConfig
import LockstepCore
import TerraformRunner

/// What the commands of one environment may write and must never reach, on top of what every
/// command gets (its run's folders, the confinement's hidden paths).
///
/// Why: environments share an agent, and a folder granted to all of them (a local backend's
/// state folder above all) let a dev release's plan read prod's state, whose outputs and
/// attributes hold secrets in plain text, and its `local-exec` write beside it after a single
/// dev approval. So each environment writes only its own `writable_paths`, uses a provider cache
/// of its own, and every other environment's folders and caches are hidden from it.
struct EnvironmentGrants: Sendable {
    /// The environment's `writable_paths`.
    var writable: [URL]
    /// Every other environment's `writable_paths` and provider cache.
    var hidden: [URL]
    /// The environment's provider cache (a folder named after it in the cache root), so that a
    /// provider one environment's init cached is never run by another's plan or apply.
    var pluginCache: URL
}

extension Gate {
    /// The grants of `environment` (see ``EnvironmentGrants``). Unconfined nothing is hidden or
    /// withheld; the provider cache is still the environment's own.
    nonisolated func grants(for environment: EnvironmentName) -> EnvironmentGrants {
        let folder = { (path: String) in URL(fileURLWithPath: path, isDirectory: true) }
        let root = runner.pluginCacheDirectory
        let cache = { (environment: EnvironmentName) in root.appendingPathComponent(environment.rawValue, isDirectory: true) }
        // Environments this agent does not serve too: the folders are theirs whoever runs them.
        let others = agent.environments.keys.sorted().filter { $0 != environment }
        return EnvironmentGrants(
            writable: (agent.environments[environment]?.writablePaths ?? []).map(folder),
            hidden: others.flatMap { other in (agent.environments[other]?.writablePaths ?? []).map(folder) + [cache(other)] },
            pluginCache: cache(environment))
    }

    /// The confinement for a verify command of `environment`: every other environment's folders
    /// hidden as well.
    nonisolated func verifyConfinement(for environment: EnvironmentName) -> Confinement? {
        runner.confinement?.hiding(grants(for: environment).hidden)
    }
}
