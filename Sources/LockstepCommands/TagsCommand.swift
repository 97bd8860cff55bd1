import ArgumentParser
import Foundation
import GitSource
import LockstepCore
import Logging

/// `lockstep tags`: mirrors a delivery repository and shows, for one environment, which release
/// tags Lockstep accepts and why it rejects the others. Until the daemon exists this is the
/// quickest way to see the gate's first rule (SPEC §3) on a real repository.
public struct TagsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tags",
        abstract: "Show the release tags of an environment and whether each is accepted."
    )

    @Option(help: "The delivery repository: a path, file://, http(s):// or ssh:// URL.")
    var repo: String

    @Option(help: "Where to keep the bare mirror (created if missing).")
    var mirror: String

    @Option(help: "The environment whose tags to show.")
    var env: String

    @Option(help: "The project, for patterns with {project}.")
    var project: String = "default"

    @Option(help: "The release tag pattern.")
    var pattern: String = "{env}/{version}"

    @Option(help: "The protected branch.")
    var branch: String = "main"

    public init() {}

    public func run() async throws {
        let environment: EnvironmentName
        let projectName: ProjectName
        let tagPattern: TagPattern
        do {
            environment = try EnvironmentName(env)
            projectName = try ProjectName(project)
            tagPattern = try TagPattern(pattern)
        } catch {
            throw ValidationError("\(error)")
        }
        let mirror = GitMirror(remote: Remote(url: repo), path: mirror, logger: Logger(label: "lockstep"))
        do {
            _ = try await mirror.sync()
            let glob = tagPattern.glob(project: projectName, environment: environment)
            let listing = try await mirror.tags(matching: glob, components: tagPattern.componentCount)
            let rules = TagRules(requireAnnotated: true, requireMergeCommit: true)
            for tag in listing.tags {
                let version: Result<SemanticVersion, CoreError>
                switch tagPattern.match(tag.name, project: projectName, environment: environment) {
                case .noMatch: continue
                case let .version(parsed): version = .success(parsed)
                case let .unparsableVersion(error): version = .failure(error)
                }
                let facts = try await mirror.releaseFacts(tag: tag.name, protectedBranch: branch)
                let decision = TagAcceptance.decide(TagFacts(
                    name: tag.name, version: version, isAnnotated: tag.isAnnotated, signature: .notRequired,
                    reachableFromProtectedBranch: facts.reachableFromBranch,
                    isMergeCommitOnFirstParentChain: facts.isMergeOnFirstParentChain, promotionSourceVerified: true),
                    rules: rules)
                switch decision {
                case .accepted:
                    print("accepted  \(tag.name)  commit \(tag.commit.short)")
                case let .rejected(reasons):
                    print("rejected  \(tag.name)  \(reasons.map(\.description).joined(separator: "; "))")
                }
            }
            for refused in listing.refused {
                print("rejected  \(refused.displayName)  \(refused.reason)")
            }
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

/// The `lockstep` command tree.
public struct LockstepCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "A release gate for Terraform and OpenTofu.",
        discussion: ClientHelp.root,
        subcommands: [ServeCommand.self, StatusCommand.self, RunsCommand.self, ShowCommand.self, ApproveCommand.self,
                      RejectCommand.self, RollbackCommand.self, ResolveCommand.self,
                      TagsCommand.self, AuditCommand.self, ConfigCommand.self]
    )

    public init() {}
}
