import NameLiterals
import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import Synchronization
import Testing
import TerraformRunner
@testable import LockstepGate

// The doubles behind the gate's seams, for unit tests that run in milliseconds: no git, no
// terraform, no SQLite, no waiting for time to pass. Each test builds its own `UnitWorld`.

// MARK: - World

/// A gate over the three doubles (release source, plan runner, in-memory store) and a
/// controllable clock, with its runs folder in a temporary directory. The delivery
/// repository has one project `app` in `app/` (or the projects given, each in its own
/// folder); its branch tip holds a valid layout.
final class UnitWorld: Sendable {
    let scratch: URL
    let clock = TestClock()
    let store = InMemoryRunStore()
    let source: ScriptedReleaseSource
    let runner: ScriptedPlanRunner
    let agent: AgentConfig
    let gate: Gate
    let environments: [String]
    let projects: [String]

    /// - Parameters:
    ///   - environmentsYAML: the agent config's `environments:` block (indented by two).
    ///   - environments: the environments `lockstep.yaml` lists for each project.
    ///   - verify: per environment, the argv of its one verify command.
    ///   - projects: the projects of `lockstep.yaml`, each in the folder of its name.
    init(environmentsYAML: String, environments: [String] = ["dev"], verify: [String: [String]] = [:],
         requireMergeCommit: Bool = true, projects: [String] = ["app"]) throws {
        scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-unit-\(UUID().uuidString.prefix(12))", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        self.environments = environments
        self.verify = verify
        self.projects = projects
        agent = try Self.agent(environmentsYAML: environmentsYAML, scratch: scratch, requireMergeCommit: requireMergeCommit)
        let layout = Self.layout(environments: environments, verify: verify, projects: projects)
        source = ScriptedReleaseSource(path: scratch.appendingPathComponent("mirror").path, layout: layout)
        runner = ScriptedPlanRunner(pluginCacheDirectory: scratch.appendingPathComponent("plugins"))
        gate = Self.gate(agent: agent, store: store, source: source, runner: runner, scratch: scratch, clock: clock)
    }

    private let verify: [String: [String]]

    func cleanup() { try? FileManager.default.removeItem(at: scratch) }

    static func agent(environmentsYAML: String, scratch: URL, requireMergeCommit: Bool = true) throws -> AgentConfig {
        let yaml = """
        repository:
          url: /nonexistent/remote.git
          branch: main
        mirror_dir: mirror
        require_merge_commit: \(requireMergeCommit)
        terraform:
          binary: /nonexistent/terraform
        store:
          sqlite: \(scratch.appendingPathComponent("unused.sqlite").path)
        environments:
        \(environmentsYAML)
        \(identitiesYAML)
        """
        return try AgentConfig.parse(yaml: yaml, file: scratch.appendingPathComponent("agent.yaml").path,
                                     baseDirectory: scratch.path)
    }

    static func gate(agent: AgentConfig, store: any RunStore, source: any ReleaseSource, runner: any PlanRunner,
                     scratch: URL, clock: TestClock) -> Gate {
        Gate(agent: agent, store: store, mirror: source, runner: runner, runsDirectory: scratch.appendingPathComponent("runs"),
             logger: Logger(label: "unit", factory: { _ in SwiftLogNoOpLogHandler() }), now: { clock.now })
    }

    /// Another gate over the same store, doubles and runs folder with another agent config:
    /// what the daemon is after an operator changed the config and restarted it.
    func restarted(environmentsYAML: String) throws -> Gate {
        Self.gate(agent: try Self.agent(environmentsYAML: environmentsYAML, scratch: scratch), store: store, source: source,
                  runner: runner, scratch: scratch, clock: clock)
    }

    /// `lockstep.yaml` with project `app` in `app/` listing `environments`.
    static func layout(environments: [String], verify: [String: [String]] = [:], project: String = "app") -> String {
        layout(environments: environments, verify: verify, projects: [project], folders: ["app"])
    }

    /// `lockstep.yaml` with each project in its folder (by default the folder of its name).
    static func layout(environments: [String], verify: [String: [String]] = [:], projects: [String],
                       folders: [String]? = nil) -> String {
        var yaml = "projects:\n"
        for (project, folder) in zip(projects, folders ?? projects) {
            yaml += "  \(project):\n    dir: \(folder)\n    environments:\n"
            for env in environments {
                yaml += "      \(env):\n        var_files: [\(folder)/\(env).tfvars]\n"
                if let argv = verify[env] {
                    yaml += "        verify:\n          - [\(argv.map { "\"\($0)\"" }.joined(separator: ", "))]\n"
                }
            }
        }
        return yaml
    }

    /// A release commit on the branch (or beside it): the layout (or `layout`) and the projects' files.
    func release(_ version: String, layout: String? = nil, onBranch: Bool = true) async -> GitObjectID {
        var files = ["lockstep.yaml": layout ?? Self.layout(environments: environments, verify: verify, projects: projects)]
        for project in projects {
            files["\(project)/main.tf"] = "# release \(version)\n"
            for env in Set(environments + ["dev", "staging", "prod"]) { files["\(project)/\(env).tfvars"] = "env = \"\(env)\"\n" }
        }
        return await source.commit(files: files, onBranch: onBranch)
    }

    /// A release commit tagged `ENV/VERSION` for each environment (by dave unless said).
    @discardableResult
    func releaseTagged(_ version: String, in envs: [String], tagger: String? = "dave@example.com") async -> GitObjectID {
        let commit = await release(version)
        for env in envs { await source.tag("\(env)/\(version)", at: commit, tagger: tagger) }
        return commit
    }

    func target(_ env: String, _ project: String = "app") -> TargetID {
        TargetID(project: try! ProjectName(project), environment: try! EnvironmentName(env))
    }

    /// The newest run of `env` (fails the test when there is none).
    func newestRun(_ env: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> StoredRun {
        try #require(try await store.runs(target: target(env), states: nil).first, sourceLocation: sourceLocation)
    }

    /// The folder of a run (the gate's runs folder is `runs` in the scratch folder).
    func runDirectory(_ id: RunID) -> URL {
        scratch.appendingPathComponent("runs/\(id.rawValue)", isDirectory: true)
    }

    /// Where the gate keeps a run's plan bytes as they were hashed.
    func sealedPlanFile(_ id: RunID) -> URL {
        runDirectory(id).appendingPathComponent("sealed/plan.tfplan")
    }

    /// The runs of `env`, newest first.
    func runs(_ env: String) async throws -> [StoredRun] {
        try await store.runs(target: target(env), states: nil)
    }

    /// Every transition of `run` as `to:reason` (and the detail when asked).
    func path(_ run: RunID) async throws -> [String] {
        try await store.transitions(of: run).map { "\($0.transition.to.rawValue):\($0.transition.reason.code.rawValue)" }
    }

    /// The detail of the last transition of `run`.
    func lastReason(_ run: RunID) async throws -> String? {
        try await store.transitions(of: run).last?.transition.reason.detail
    }

    func decision(_ env: String, _ tag: String) async throws -> StoredTagDecision? {
        try await store.tagDecisions(for: target(env)).last { $0.tagName == tag }
    }

    func alertCodes(_ env: String) async throws -> [String] {
        try await store.alerts(target: target(env)).map(\.alert.code.rawValue)
    }

    /// Tags `dev/VERSION` and reconciles: the run is planned and awaits approval (or whatever
    /// the scripted runner makes of it).
    func plannedRun(_ version: String = "1.0.0", env: String = "dev") async throws -> StoredRun {
        await releaseTagged(version, in: [env])
        _ = try await gate.reconcile()
        return try await newestRun(env)
    }

    /// A run approved by `approvers` (each quoting its digest).
    func approvedRun(_ version: String = "1.0.0", env: String = "dev", by approvers: [String] = ["alice"]) async throws -> StoredRun {
        let run = try await plannedRun(version, env: env)
        let digest = try #require(run.planDigest)
        for approver in approvers {
            _ = try await gate.approve(run: run.id, identity: try IdentityName(approver), digest: digest)
        }
        return try #require(try await store.run(run.id))
    }
}
