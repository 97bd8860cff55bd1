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
// terraform, no SQLite, no sleeping. Each test builds its own `UnitWorld`.

// MARK: - Release source

/// A delivery repository held in memory: commits with their files, a branch tip, tags with
/// their annotation and the facts the gate asks about them (reachable from the protected
/// branch, merge commit on its first-parent chain). `sync()` reports what changed since the
/// last sync, as the mirror does, so moving or deleting a tag here is seen by the next pass.
/// Failures are scripted per operation; every export is recorded.
actor ScriptedReleaseSource: ReleaseSource {
    /// One commit: its tree id and files (path → bytes; executable paths listed apart).
    struct Commit: Sendable {
        var tree: GitObjectID
        var files: [String: Data]
        var executable: Set<String> = []
    }

    /// One tag as the remote has it now.
    struct Tag: Sendable {
        var info: TagInfo
        var reachable: Bool
        var mergeCommit: Bool
    }

    nonisolated let path: String
    private(set) var tip: GitObjectID
    private(set) var commits: [GitObjectID: Commit] = [:]
    private(set) var tags: [String: Tag] = [:]
    /// Tag name → object at the last successful sync (what the mirror has fetched).
    private var fetched: [String: GitObjectID] = [:]
    private var objectCounter = 0

    /// Scripted failures (nil: the operation works).
    var syncFailure: GitError?
    var exportFailure: GitError?
    var releaseFactsFailure: [String: GitError] = [:]
    /// The tree the export reports, when it should differ from the commit's (a mirror that lies).
    var exportedTreeOverride: GitObjectID?

    /// What the gate asked: commits exported (in order) and syncs.
    private(set) var exports: [GitObjectID] = []
    private(set) var syncs = 0

    init(path: String, layout: String) {
        self.path = path
        tip = try! GitObjectID(String(format: "%040x", 1))
        objectCounter = 2
        commits[tip] = Commit(tree: try! GitObjectID(String(format: "%040x", 2)), files: ["lockstep.yaml": Data(layout.utf8)])
    }

    /// A fresh object id, distinct from every other this source handed out.
    func newObjectID() -> GitObjectID {
        objectCounter += 1
        return try! GitObjectID(String(format: "%040x", objectCounter))
    }

    /// Adds a commit with `files` (its own tree) and, when `onBranch`, makes it the branch tip.
    @discardableResult
    func commit(files: [String: String], executable: Set<String> = [], onBranch: Bool = true) -> GitObjectID {
        commit(bytes: files.mapValues { Data($0.utf8) }, executable: executable, onBranch: onBranch)
    }

    /// The same with the files' bytes as they are (not necessarily text).
    @discardableResult
    func commit(bytes files: [String: Data], executable: Set<String> = [], onBranch: Bool = true) -> GitObjectID {
        let id = newObjectID()
        commits[id] = Commit(tree: newObjectID(), files: files, executable: executable)
        if onBranch { tip = id }
        return id
    }

    /// Creates (or replaces) the tag `name` on `commit`: annotated by `tagger` unless nil.
    @discardableResult
    func tag(_ name: String, at commit: GitObjectID, tagger: String? = "dave@example.com", reachable: Bool = true,
             mergeCommit: Bool = true) -> TagInfo {
        let annotation = tagger.map {
            TagAnnotation(taggerName: "Tagger", taggerEmail: $0, taggedAt: Date(timeIntervalSince1970: 1_800_000_000),
                          message: "release", signatureFormat: nil)
        }
        // An annotated tag is an object of its own; a lightweight one names the commit.
        let object = annotation == nil ? commit : newObjectID()
        let info = TagInfo(name: name, target: object, commit: commit, tree: commits[commit]!.tree, annotation: annotation)
        tags[name] = Tag(info: info, reachable: reachable, mergeCommit: mergeCommit)
        return info
    }

    func deleteTag(_ name: String) { tags[name] = nil }

    /// Changes the script (failures, overrides) in one step.
    func script(_ body: @Sendable (isolated ScriptedReleaseSource) -> Void) { body(self) }

    // ReleaseSource

    func sync() throws(GitError) -> FetchReport {
        syncs += 1
        if let syncFailure { throw syncFailure }
        var report = FetchReport(initialClone: false)
        for (name, tag) in tags.sorted(by: { $0.key < $1.key }) {
            switch fetched[name] {
            case nil: report.createdTags.append(.init(name: name, old: nil, new: tag.info.target))
            case let old? where old != tag.info.target: report.movedTags.append(.init(name: name, old: old, new: tag.info.target))
            default: break
            }
        }
        for (name, old) in fetched.sorted(by: { $0.key < $1.key }) where tags[name] == nil {
            report.deletedTags.append(.init(name: name, old: old, new: nil))
        }
        fetched = tags.mapValues(\.info.target)
        return report
    }

    func branchTip(_ branch: String) throws(GitError) -> GitObjectID { tip }

    func tags(matching glob: String, components: Int?) throws(GitError) -> TagListing {
        let names = tags.keys.sorted().filter { name in
            fnmatch(glob, name, 0) == 0 && (components == nil || name.split(separator: "/").count == components)
        }
        return TagListing(tags: names.compactMap { tags[$0]?.info })
    }

    func tag(named name: String) throws(GitError) -> TagInfo {
        guard let tag = tags[name] else { throw GitError(.notFound, "tag not found", ref: name) }
        return tag.info
    }

    func releaseFacts(tag name: String, protectedBranch branch: String) throws(GitError) -> ReleaseFacts {
        if let failure = releaseFactsFailure[name] { throw failure }
        guard let tag = tags[name] else { throw GitError(.notFound, "tag not found", ref: name) }
        return ReleaseFacts(tag: tag.info, branchTip: tip, reachableFromBranch: tag.reachable,
                            isMergeOnFirstParentChain: tag.mergeCommit)
    }

    func export(commit: GitObjectID, to directory: String, limits: GitSource.ExportLimits,
                excludingNames excludedNames: Set<String>) throws(GitError) -> ExportResult {
        exports.append(commit)
        if let exportFailure { throw exportFailure }
        guard let stored = commits[commit] else { throw GitError(.notFound, "commit not found") }
        let root = URL(fileURLWithPath: directory, isDirectory: true)
        var bytes = 0
        do {
            for (path, data) in stored.files {
                let file = root.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try data.write(to: file)
                if stored.executable.contains(path) {
                    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
                }
                bytes += data.count
            }
        } catch {
            throw GitError(.io, "the double could not write the export")
        }
        return ExportResult(commit: commit, tree: exportedTreeOverride ?? stored.tree, fileCount: stored.files.count,
                            byteCount: bytes)
    }

    func file(at path: String, commit: GitObjectID, maxBytes: Int) throws(GitError) -> Data? {
        commits[commit]?.files[path]
    }

    func skippedRefs() -> [SkippedRef] { [] }
}

// MARK: - Plan runner

/// The ShownPlan the double's `show` returns for `planJSON`. The one place that builds a
/// ShownPlan from plan JSON, so a change of its summary type is one line here.
func shown(planJSON: String) throws -> ShownPlan {
    let json = Data(planJSON.utf8)
    return ShownPlan(plan: try PlanModel(planJSON: json), redactedJSON: json, rendering: "the plan, as text\n")
}

/// Plan JSON (terraform's `show -json` shape) with the given resource changes.
func planJSON(_ changes: [(address: String, type: String, actions: [String])]) -> String {
    let entries = changes.map { change in
        let actions = change.actions.map { "\"\($0)\"" }.joined(separator: ",")
        return """
        {"address":"\(change.address)","mode":"managed","type":"\(change.type)","name":"x","change":{"actions":[\(actions)]}}
        """
    }
    return """
    {"format_version":"0.2","terraform_version":"1.0.3","resource_changes":[\(entries.joined(separator: ","))]}
    """
}

/// One null_resource created: a plan every default policy passes.
let createsOneResource = planJSON([("null_resource.app", "null_resource", ["create"])])

/// What the scripted runner was asked, in order.
enum RunnerCall: Sendable, Hashable {
    case initialize
    case plan
    case show
    case apply(Digest)
    case outputs
    case program(String)
}

/// An error a scripted runner operation throws.
struct ScriptedRunnerFailure: Error {}

/// A ``PlanRunner`` whose every operation returns a scripted outcome or throws, and records
/// the call. `plan` returns bytes (a fresh body per plan) and their digest; `show` returns
/// ``shown(planJSON:)`` of the scripted JSON.
actor ScriptedPlanRunner: PlanRunner {
    /// How `plan` ends.
    enum PlanScript: Sendable {
        /// Succeeded with changes.
        case changes
        /// Succeeded, nothing to change.
        case noChanges
        /// Terraform ended with this outcome and output (no plan saved).
        case ends(CommandOutcome, output: String)
        /// The runner could not run terraform.
        case throwing
        /// Runs until the calling task is cancelled, then ends `cancelled` (as the runner does
        /// when it kills terraform's process group).
        case untilCancelled
    }

    nonisolated let pluginCacheDirectory: URL
    nonisolated let searchPath = "/usr/bin:/bin"
    nonisolated let confinement: Confinement? = nil

    var initOutcome: CommandOutcome = .succeeded
    var initOutput = ""
    var initThrows = false
    var planScript: PlanScript = .changes
    var showJSON = createsOneResource
    var showError: (any Error)?
    var applyOutcome: CommandOutcome = .succeeded
    var outputsThrows = false
    /// Outcomes of verify programs, in call order (`.succeeded` once they run out).
    var programOutcomes: [CommandOutcome] = []

    private(set) var calls: [RunnerCall] = []
    private var plans = 0

    init(pluginCacheDirectory: URL) {
        self.pluginCacheDirectory = pluginCacheDirectory
    }

    func script(_ body: @Sendable (isolated ScriptedPlanRunner) -> Void) { body(self) }

    private static func result(_ outcome: CommandOutcome, _ output: String = "") -> CommandResult {
        let exit: Int32 = if case .failed(let code) = outcome { code } else { outcome == .succeeded ? 0 : 1 }
        return CommandResult(outcome: outcome, exitCode: exit, duration: .milliseconds(1), output: output)
    }

    func initialize(_ invocation: TerraformRunner.Invocation, backend: Bool, backendConfigFiles: [URL]) throws -> CommandResult {
        calls.append(.initialize)
        if initThrows { throw ScriptedRunnerFailure() }
        return Self.result(initOutcome, initOutput)
    }

    func plan(_ invocation: TerraformRunner.Invocation, planFile: URL, varFiles: [URL], destroy: Bool) async throws -> PlanResult {
        calls.append(.plan)
        plans += 1
        let bytes = Data("saved plan \(plans)".utf8)
        switch planScript {
        case .changes, .noChanges:
            let changes: PlanChanges = if case .noChanges = planScript { .noChanges } else { .changesPresent }
            return PlanResult(command: Self.result(.succeeded),
                              plan: SavedPlan(file: planFile, digest: Digest.sha256(of: bytes), changes: changes, contents: bytes))
        case .ends(let outcome, let output):
            return PlanResult(command: Self.result(outcome, output), plan: nil)
        case .throwing:
            throw ScriptedRunnerFailure()
        case .untilCancelled:
            // Not a wait for luck: a sleep that only a cancellation ends within a test's run.
            try? await Task.sleep(for: .seconds(3_600))
            return PlanResult(command: Self.result(.cancelled), plan: nil)
        }
    }

    func show(_ invocation: TerraformRunner.Invocation, planFile: URL) throws -> ShownPlan {
        calls.append(.show)
        if let showError { throw showError }
        return try shown(planJSON: showJSON)
    }

    func apply(_ invocation: TerraformRunner.Invocation, planFile: URL, expectedDigest: Digest) throws -> CommandResult {
        // The digest of the bytes actually handed to apply, not the one the gate expects.
        let bytes = (try? Data(contentsOf: planFile)) ?? Data()
        calls.append(.apply(Digest.sha256(of: bytes)))
        return Self.result(applyOutcome)
    }

    func outputs(_ invocation: TerraformRunner.Invocation) throws -> Data {
        calls.append(.outputs)
        if outputsThrows { throw ScriptedRunnerFailure() }
        return Data(#"{"url":{"value":"https://example.test","sensitive":false}}"#.utf8)
    }

    func runProgram(_ request: ExternalProgram.Request) throws -> CommandResult {
        calls.append(.program(URL(fileURLWithPath: request.executable).lastPathComponent))
        let outcome = programOutcomes.isEmpty ? .succeeded : programOutcomes.removeFirst()
        return Self.result(outcome)
    }

    /// Waits (polling, with a deadline) until the runner has been asked `call`.
    func waitForCall(_ call: RunnerCall, within seconds: Double = 30) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !calls.contains(call) {
            try #require(ContinuousClock.now < deadline, "the runner was never asked \(call)")
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    var applies: [Digest] {
        calls.compactMap { if case .apply(let digest) = $0 { digest } else { nil } }
    }
}

// MARK: - World

/// A gate over the three doubles (release source, plan runner, in-memory store) and a
/// controllable clock, with its runs folder in a temporary directory. The delivery
/// repository has one project `app` in `app/`; its branch tip holds a valid layout.
final class UnitWorld: Sendable {
    let scratch: URL
    let clock = TestClock()
    let store = InMemoryRunStore()
    let source: ScriptedReleaseSource
    let runner: ScriptedPlanRunner
    let agent: AgentConfig
    let gate: Gate
    let environments: [String]

    /// - Parameters:
    ///   - environmentsYAML: the agent config's `environments:` block (indented by two).
    ///   - environments: the environments `lockstep.yaml` lists for the project.
    ///   - verify: per environment, the argv of its one verify command.
    init(environmentsYAML: String, environments: [String] = ["dev"], verify: [String: [String]] = [:],
         requireMergeCommit: Bool = true) throws {
        scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-unit-\(UUID().uuidString.prefix(12))", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        self.environments = environments
        self.verify = verify
        agent = try Self.agent(environmentsYAML: environmentsYAML, scratch: scratch, requireMergeCommit: requireMergeCommit)
        let layout = Self.layout(environments: environments, verify: verify)
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
        var yaml = "projects:\n  \(project):\n    dir: app\n    environments:\n"
        for env in environments {
            yaml += "      \(env):\n        var_files: [app/\(env).tfvars]\n"
            if let argv = verify[env] {
                yaml += "        verify:\n          - [\(argv.map { "\"\($0)\"" }.joined(separator: ", "))]\n"
            }
        }
        return yaml
    }

    /// A release commit on the branch (or beside it): the layout (or `layout`) and the project's files.
    func release(_ version: String, layout: String? = nil, onBranch: Bool = true) async -> GitObjectID {
        var files = ["lockstep.yaml": layout ?? Self.layout(environments: environments, verify: verify),
                     "app/main.tf": "# release \(version)\n"]
        for env in Set(environments + ["dev", "staging", "prod"]) { files["app/\(env).tfvars"] = "env = \"\(env)\"\n" }
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
