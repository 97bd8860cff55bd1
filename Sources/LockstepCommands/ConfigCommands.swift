import ArgumentParser
import Foundation
import LockstepConfig
import LockstepCore

/// `lockstep config`: checks of the two configuration files (docs/CONTRACT.md §2).
public struct ConfigCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check Lockstep's configuration files.",
        subcommands: [ConfigCheckCommand.self]
    )

    public init() {}
}

/// `lockstep config check --config FILE [--repo DIR]`: every error at once, one per line
/// (`FILE: KEY.PATH: expected …`), so an operator fixes a trust file in one pass rather
/// than one restart per mistake. Errors never echo values from the files (a misplaced
/// secret must not land in a terminal or CI log).
///
/// Exit status: 0 when both files are valid together, 1 otherwise.
public struct ConfigCheckCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the agent config and, with --repo, a delivery repo's lockstep.yaml against it.",
        discussion: "Prints every error, one per line, and exits 1; prints \"ok\" and a summary and exits 0 otherwise."
    )

    @Option(help: "The agent config (YAML): every trust decision.")
    var config: String

    @Option(help: "A checkout of the delivery repo whose lockstep.yaml (layout) to check against the agent config.")
    var repo: String?

    public init() {}

    public func run() throws {
        let errors = checkConfiguration(agentPath: config, repoRoot: repo)
        guard errors.isEmpty else {
            for error in errors { print(error.description) }
            throw ExitCode(1)
        }
        print("ok")
        print(summary())
    }

    /// One line: what the agent config sets up and, with a repo, what its layout holds.
    private func summary() -> String {
        guard let agent = try? AgentConfig.load(path: config) else { return config }
        let names = agent.environments.keys.sorted().map(\.rawValue)
        let served = agent.environments.values.filter(\.serves).map(\.name.rawValue).sorted()
        var line = "\(config): \(names.count) environment\(names.count == 1 ? "" : "s") (\(names.joined(separator: ", "))), "
            + "serves \(served.isEmpty ? "none" : served.joined(separator: ", ")), "
            + "\(agent.identities.count) identit\(agent.identities.count == 1 ? "y" : "ies")"
        if let repo, let layout = try? RepoConfig.load(root: repo) {
            let projects = layout.projects.keys.sorted().map(\.rawValue)
            line += "; \(layout.file): \(projects.count) project\(projects.count == 1 ? "" : "s") "
                + "(\(projects.joined(separator: ", ")))"
        }
        return line
    }
}
