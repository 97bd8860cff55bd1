import ArgumentParser
import Foundation
import GitSource
import LockstepAPI
import LockstepConfig
import LockstepCore
import LockstepDaemon
import LockstepGate
import Logging
import RunStore

/// `lockstep tags ENV`: how the release tags of an environment are decided, with the reason
/// for every rejection (docs/CONTRACT.md §3).
///
/// By default it shows the daemon's own recorded decisions through the API. `--offline`
/// decides on this machine instead, through ``TagDecisions`` — the very code the daemon's
/// reconcile pass runs — with the agent config's rules and repository and, for the promotion
/// rule, the daemon's store opened read-only. There are no rules of its own here: an offline
/// answer that differed from the daemon's would send an operator chasing the wrong problem.
public struct TagsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tags",
        abstract: "Show the release tags of an environment, whether each is accepted, and why not.",
        discussion: ClientHelp.discussion("""
            By default this asks the daemon for the decisions it recorded: GET /api/v1/environments/ENV/tags \
            (--json prints it). With --offline it decides them here, with the daemon's own decision code, \
            from the agent config (--config: repository, branch, tag pattern, the environment's rules) into \
            a mirror of its own (--mirror, never the daemon's). An environment with promote_from needs \
            --store, the daemon's store, opened read-only: a tag is accepted there only when its tree was \
            verified in the source environment. --offline --json prints the same JSON shape.
            """)
    )

    @Argument(help: ArgumentHelp("The environment.", valueName: "ENV"), completion: .custom(ClientCompletion.environments))
    var environment: String

    @Option(help: ArgumentHelp("Only this project.", valueName: "PROJECT"), completion: .none)
    var project: String?

    @Flag(help: "Decide here with the daemon's decision code instead of asking the daemon.")
    var offline = false

    @Option(help: ArgumentHelp("--offline: the agent config whose rules and repository to use.", valueName: "FILE"),
            completion: .file(extensions: ["yaml", "yml"]))
    var config: String?

    @Option(help: ArgumentHelp("--offline: where to keep a bare mirror of the delivery repository (created if missing).",
                               valueName: "DIR"),
            completion: .directory)
    var mirror: String?

    @Option(help: ArgumentHelp("--offline: the daemon's store, read-only, for the promotion rule.", valueName: "FILE"),
            completion: .file())
    var store: String?

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        if offline {
            try await runOffline()
            return
        }
        var request: (EnvironmentName, ProjectName?)?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            for (name, value) in [("--config", config), ("--mirror", mirror), ("--store", store)] where value != nil {
                throw ClientError(.usage, "\(name) is only for --offline")
            }
            request = (try ClientCommandRunner.parse("ENV", environment) { raw throws(CoreError) in try EnvironmentName(raw) },
                       try project.map { value throws(ClientError) in
                           try ClientCommandRunner.parse("--project", value) { raw throws(CoreError) in try ProjectName(raw) }
                       })
        }) { api throws(ClientError) in
            guard let (environment, project) = request else { throw ClientError(.usage, "ENV is missing") }
            let query = project.map { [URLQueryItem(name: "project", value: $0.rawValue)] } ?? []
            let reply = try await api.get("environments/\(environment.rawValue)/tags", query: query)
            let list = try api.decode(APITagDecisionList.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.tagDecisions(list))
        }
    }

    // MARK: Offline

    private func runOffline() async throws {
        do {
            let (list, problems) = try await decideOffline()
            for problem in problems { printError("warning: \(terminalSafe(problem, limit: 600))") }
            if client.json {
                var data = try APIJSON.makeEncoder().encode(list)
                data.append(0x0A)
                FileHandle.standardOutput.write(data)
            } else {
                print(ClientRendering.tagDecisions(list))
            }
        } catch let error as OfflineError {
            printError("error: \(error.message)")
            throw ExitCode(1)
        }
    }

    struct OfflineError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func decideOffline() async throws -> (APITagDecisionList, [String]) {
        guard let config else { throw OfflineError("--offline needs --config, the agent config whose rules to use") }
        guard let mirrorPath = mirror else { throw OfflineError("--offline needs --mirror, a folder for a mirror of its own") }
        let environmentName: EnvironmentName
        let projectName: ProjectName?
        do {
            environmentName = try EnvironmentName(environment)
            projectName = try project.map { try ProjectName($0) }
        } catch {
            throw OfflineError("\(error)")
        }
        let agent: AgentConfig
        do {
            agent = try AgentConfig.load(path: config)
        } catch {
            throw OfflineError(error.errors.map(\.description).joined(separator: "\n"))
        }
        guard let policy = agent.environments[environmentName] else {
            throw OfflineError("the agent config \(config) has no environment \(environmentName)")
        }
        let mirrorURL = URL(fileURLWithPath: mirrorPath).standardizedFileURL
        if mirrorURL.path == URL(fileURLWithPath: agent.mirrorDir).standardizedFileURL.path {
            throw OfflineError("--mirror is the daemon's own mirror (\(agent.mirrorDir)); give a folder of its own")
        }
        let source = TagDecisions.promotionSource(of: policy)
        if let source, store == nil {
            throw OfflineError("\(environmentName) promotes from \(source): pass --store (the daemon's store, opened "
                               + "read-only) so the promotion rule can see what was verified there")
        }

        let mirror = GitMirror(remote: GateBackend.remote(for: agent), path: mirrorURL.path, logger: Logger(label: "lockstep"))
        let projects: [ProjectName]
        let pattern: TagPattern
        do {
            _ = try await mirror.sync()
            let layout = try await Self.layout(atTipOf: agent.repository.branch, mirror: mirror)
            projects = layout.projects.keys.sorted()
            pattern = try TagPattern(agent.tagPattern(projectCount: projects.count))
        } catch let error as OfflineError {
            throw error
        } catch {
            throw OfflineError("the delivery repository could not be read: \(error)")
        }
        if let projectName, !projects.contains(projectName) {
            throw OfflineError("lockstep.yaml at \(agent.repository.branch) has no project \(projectName)")
        }

        let runStore = try store.map { path in
            do { return try SQLiteRunStore.openReadOnly(path: path) } catch { throw OfflineError("\(error)") }
        }
        defer { try? runStore?.close() }
        var decisions: [StoredTagDecision] = []
        var problems: [String] = []
        // The same signer files and verifier as the daemon (docs/CONTRACT.md §3 rule 3).
        var trust: SignerTrust?
        var others: [SignerTrust] = []
        do {
            trust = try SignerTrust.load(policy)
            others = try agent.environments.values.compactMap { try SignerTrust.load($0) }
        } catch {
            throw OfflineError("signed tags cannot be verified: \(error)")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-signatures-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let verifier = TagSignatureVerifier(scratch: scratch)
        for project in projects where projectName == nil || projectName == project {
            let target = TargetID(project: project, environment: environmentName)
            var records: [RunRecord] = []
            if let source, let runStore {
                records = try await runStore.runSummaries(target: TargetID(project: project, environment: source), states: nil)
                    .map(\.record)
            }
            let query = TagQuery(glob: pattern.glob(project: project, environment: environmentName),
                                 components: pattern.componentCount)
            let inputs: ReleaseInputs
            do {
                inputs = try await mirror.releaseInputs(for: [query], protectedBranch: agent.repository.branch)[0].get()
            } catch {
                throw OfflineError("the tags of \(target) could not be listed: \(error)")
            }
            for refused in inputs.listing.refused {
                problems.append("\(target): tag \(refused.displayName) is not usable: \(refused.reason)")
            }
            var signatures: [GitObjectID: SignatureVerdict] = [:]
            if let trust {
                let verified = await TagDecisions.verifySignatures(of: inputs, trust: trust, others: others,
                                                                   verifier: verifier, source: mirror)
                signatures = verified.verdicts
                problems += verified.problems.map { "\(target): \($0)" }
            }
            let outcome = TagDecisions.decide(target: target, policy: policy, agent: agent, pattern: pattern,
                                              inputs: inputs, sourceRecords: records, signatures: signatures)
            decisions += outcome.decided.map(\.decision)
            problems += outcome.problems
        }
        return (GateBackend.tagDecisionList(environmentName, decisions), problems)
    }

    /// The layout at the protected branch tip (which projects exist decides the default tag
    /// pattern), read from the mirror's object database as the daemon reads it.
    private static func layout(atTipOf branch: String, mirror: GitMirror) async throws -> RepoConfig {
        let tip = try await mirror.branchTip(branch)
        do {
            return try RepoConfig.parse(yaml: try await Gate.repoConfigText(from: mirror, at: tip))
        } catch let error as ConfigErrors {
            throw OfflineError("lockstep.yaml at \(branch) (\(tip.short)) is invalid: "
                               + error.errors.map(\.description).joined(separator: "; "))
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
                      RejectCommand.self, RollbackCommand.self, DriftCommand.self, ResolveCommand.self,
                      TagsCommand.self, AuditCommand.self, ProvenanceCommand.self, ConfigCommand.self, ValidateCommand.self]
    )

    public init() {}
}
