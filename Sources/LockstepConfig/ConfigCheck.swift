/// Everything `lockstep config check --config FILE [--repo DIR]` reports, in one list: the
/// agent config's own errors and what its confinement would grant unsafely, then (with a
/// repo checkout) the repo config's errors, the
/// cross-check between the two and every layout path resolved inside the checkout.
///
/// Returns an empty list when both files are valid together. The command stays a thin
/// printer of `ConfigErrors(result).description`.
public func checkConfiguration(agentPath: String, repoRoot: String?) -> [ConfigError] {
    var errors: [ConfigError] = []
    var agent: AgentConfig?
    do {
        agent = try AgentConfig.load(path: agentPath)
        errors += agent?.confinementProblems(configPath: agentPath, onThisMachine: false) ?? []
    } catch {
        errors += error.errors
    }
    guard let repoRoot else { return errors }
    do {
        let repo = try RepoConfig.load(root: repoRoot)
        if let agent { errors += repo.check(against: agent) }
        errors += repo.checkPaths(root: repoRoot)
    } catch {
        errors += error.errors
    }
    return errors
}
