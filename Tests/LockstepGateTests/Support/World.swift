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

// Fixture constructors; they crash on invalid literals, which is a test bug, never input.
func identity(_ name: String) -> IdentityName { try! IdentityName(name) }
func semver(_ text: String) -> SemanticVersion { try! SemanticVersion(text) }
func envName(_ name: String) -> EnvironmentName { try! EnvironmentName(name) }

/// The controllable clock: starts at a fixed instant and moves only when a test says so.
final class TestClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_900_000_000))
    var now: Date { current.withLock { $0 } }
    func advance(seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// A log handler that keeps every message and its metadata as text (to look for leaks).
final class LogRecorder: LogHandler, @unchecked Sendable {
    private let storage = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        storage.withLock { $0.append("\(event.level) \(event.message) \(merged)") }
    }

    var text: String { storage.withLock { $0.joined(separator: "\n") } }
}

/// Agent-config identities: approvers alice, bob, carol; erin (known, approves nothing
/// by default); dave, who cuts releases.
let identitiesYAML = """
identities:
  alice: {token_sha256: \(String(repeating: "a", count: 64)), emails: [alice@example.com]}
  bob: {token_sha256: \(String(repeating: "b", count: 64)), emails: [bob@example.com]}
  carol: {token_sha256: \(String(repeating: "c", count: 64)), emails: [carol@example.com]}
  dave: {token_sha256: \(String(repeating: "d", count: 64)), emails: [dave@example.com]}
  erin: {token_sha256: \(String(repeating: "e", count: 64)), emails: [erin@example.com]}
"""

/// One agent, one delivery repository, one SQLite store, real terraform: everything a
/// gate test needs, in a scratch directory removed by `cleanup()`.
///
/// The delivery repo has one project `app` whose `null_resource.app` carries the release
/// in its triggers and appends `ENV:RELEASE` to `applies.log` through a local-exec
/// provisioner each time an apply creates it, so tests read what was applied from the
/// terraform state and count applies from the log. Every environment keeps its state in
/// `state/ENV.tfstate` through a local backend configured by a backend file of the repo.
final class World: @unchecked Sendable {
    let scratch: URL
    let work: URL
    let remote: URL
    let stateDirectory: URL
    let storePath: String
    let clock = TestClock()
    let logs = LogRecorder()
    let agent: AgentConfig
    let store: SQLiteRunStore
    private(set) var gate: Gate
    private var tick = 0
    private var prCount = 0
    let environments: [String]
    /// Where terraform installs providers from (the pinned mirror unless a test brings its own).
    let providerMirror: URL

    /// - Parameters:
    ///   - environmentsYAML: the agent config's `environments:` block (indented by two); `{state}`
    ///     stands for the folder of the environments' state files.
    ///   - environments: the environments `lockstep.yaml` lists for the project.
    init(environmentsYAML: String, environments: [String] = ["dev", "staging", "prod"],
         verify: [String: String] = [:], requireMergeCommit: Bool = true, terraformBinary: URL? = nil,
         agentExtraYAML: String = "", providerMirror: URL? = nil) throws {
        scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-gate-\(UUID().uuidString.prefix(12))", isDirectory: true)
        work = scratch.appendingPathComponent("work", isDirectory: true)
        remote = scratch.appendingPathComponent("remote.git", isDirectory: true)
        stateDirectory = scratch.appendingPathComponent("state", isDirectory: true)
        storePath = scratch.appendingPathComponent("lockstep.sqlite").path
        self.environments = environments
        self.providerMirror = providerMirror ?? World.pinnedProviderMirror
        let fm = FileManager.default
        try fm.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        try fm.createDirectory(at: scratch.appendingPathComponent("creds"), withIntermediateDirectories: true)

        let yaml = """
        repository:
          url: \(remote.path)
          branch: main
        mirror_dir: mirror
        require_merge_commit: \(requireMergeCommit)
        terraform:
          binary: \(try terraformBinary?.path ?? World.terraformBinary().path)
        \(agentExtraYAML)
        store:
          sqlite: \(storePath)
        environments:
        \(environmentsYAML.replacingOccurrences(of: "{state}", with: stateDirectory.path))
        \(identitiesYAML)
        """
        agent = try AgentConfig.parse(yaml: yaml, file: scratch.appendingPathComponent("agent.yaml").path,
                                      baseDirectory: scratch.path)
        store = try SQLiteRunStore(path: storePath)
        gate = World.makeGate(agent: agent, store: store, scratch: scratch, mirrorName: "mirror", clock: clock, logs: logs,
                              providerMirror: self.providerMirror)

        try git(["init", "-q", "-b", "main", work.path], in: scratch)
        try git(["init", "-q", "--bare", remote.path], in: scratch)
        // The first commit: a valid layout and release 0.0.0 (never tagged).
        try commitOnMain(files: layoutFiles(verify: verify).merging(appFiles(release: "0.0.0")) { _, new in new },
                         message: "initial layout")
        try publish()
    }

    func cleanup() { try? FileManager.default.removeItem(at: scratch) }

    // MARK: Gates

    static func terraformBinary() throws -> URL {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { root.deleteLastPathComponent() }
        let url = root.appendingPathComponent(".tools/terraform/bin/terraform")
        try #require(FileManager.default.isExecutableFile(atPath: url.path),
                     "Terraform 1.0.3 is not installed at \(url.path): run scripts/install-terraform.sh")
        return url
    }

    static var pinnedProviderMirror: URL {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { root.deleteLastPathComponent() }
        return root.appendingPathComponent(".tools/terraform/mirror")
    }

    static func makeGate(agent: AgentConfig, store: any RunStore, scratch: URL, mirrorName: String, clock: TestClock,
                         logs: LogRecorder, providerMirror: URL = pinnedProviderMirror) -> Gate {
        var logger = Logger(label: "gate-test") { _ in logs }
        logger.logLevel = .trace
        let mirror = GitMirror(remote: Remote(url: agent.repository.url),
                               path: scratch.appendingPathComponent(mirrorName).path, logger: logger)
        let terraform = TerraformRunner.Configuration(
            executable: URL(fileURLWithPath: agent.terraform.binary),
            toolsDirectory: scratch.appendingPathComponent("tools"),
            providerInstallation: .filesystemMirror(providerMirror),
            gracePeriod: .seconds(10), applyGracePeriod: .seconds(20))
        return Gate(agent: agent, store: store, mirror: mirror, terraform: terraform,
                    runsDirectory: scratch.appendingPathComponent("runs"), logger: logger, now: { clock.now })
    }

    /// A second gate over the same store file, runs directory and remote, with its own store
    /// connection and mirror: what a restarted (or second) process sees.
    func secondGate(mirrorName: String = "mirror2") throws -> (Gate, SQLiteRunStore) {
        let store = try SQLiteRunStore(path: storePath)
        return (World.makeGate(agent: agent, store: store, scratch: scratch, mirrorName: mirrorName, clock: clock, logs: logs,
                               providerMirror: providerMirror), store)
    }

    // MARK: Delivery repository

    func layoutFiles(verify: [String: String] = [:]) -> [String: String] {
        var yaml = "projects:\n  app:\n    dir: app\n    environments:\n"
        for env in environments {
            yaml += "      \(env):\n        var_files: [app/\(env).tfvars]\n        backend_config_files: [app/\(env).backend.hcl]\n"
            if let command = verify[env] { yaml += "        verify:\n          - \(command)\n" }
        }
        var files = ["lockstep.yaml": yaml]
        for env in environments {
            files["app/\(env).tfvars"] = "size = 1\nenv  = \"\(env)\"\n"
            files["app/\(env).backend.hcl"] = "path = \"\(stateDirectory.path)/\(env).tfstate\"\n"
        }
        return files
    }

    /// The project's Terraform for one release. `extra` is appended to main.tf.
    func appFiles(release: String, extra: String = "") -> [String: String] {
        ["app/main.tf": """
        terraform {
          backend "local" {}
        }

        variable "size" {
          type    = number
          default = 1
          validation {
            condition     = var.size < 10
            error_message = "The size must be below 10."
          }
        }

        variable "env" {
          type    = string
          default = "unset"
        }

        resource "null_resource" "app" {
          triggers = {
            release = "\(release)"
            size    = var.size
          }
          provisioner "local-exec" {
            command = "echo ${var.env}:\(release) >> \(stateDirectory.path)/applies.log"
          }
        }

        output "release" {
          value = "\(release)"
        }
        \(extra)
        """]
    }

    /// Runs git without a shell, with a fixed identity and a clock that advances one
    /// minute per command. `committerEmail` sets the tagger of annotated tags.
    @discardableResult
    func git(_ arguments: [String], in directory: URL? = nil, committerEmail: String = "dev@example.com",
             extraEnvironment: [String: String] = [:], input: Data? = nil) throws -> String {
        tick += 1
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = arguments
        process.currentDirectoryURL = directory ?? work
        let when = "\(1_700_000_000 + 60 * tick) +0000"
        process.environment = [
            "PATH": "/usr/bin:/bin", "HOME": scratch.path, "LANG": "C", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": "Releaser", "GIT_COMMITTER_EMAIL": committerEmail, "GIT_COMMITTER_DATE": when,
            "GIT_CONFIG_COUNT": "3",
            "GIT_CONFIG_KEY_0": "commit.gpgSign", "GIT_CONFIG_VALUE_0": "false",
            "GIT_CONFIG_KEY_1": "tag.gpgSign", "GIT_CONFIG_VALUE_1": "false",
            "GIT_CONFIG_KEY_2": "advice.detachedHead", "GIT_CONFIG_VALUE_2": "false",
        ].merging(extraEnvironment) { _, extra in extra }
        if let input {
            let stdin = Pipe()
            process.standardInput = stdin
            stdin.fileHandleForWriting.write(input)
            try stdin.fileHandleForWriting.close()
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw GitCommandFailed(arguments: arguments, stderr: String(decoding: errors, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes files, then symlinks. Whatever is at a path is removed first, so a file is
    /// never written through a symlink an earlier commit left in the work tree.
    private func write(_ files: [String: String], symlinks: [String: String] = [:]) throws {
        for (path, text) in files {
            let url = work.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: url)
            try Data(text.utf8).write(to: url, options: .withoutOverwriting)
            if path.hasSuffix(".sh") || path.contains("terraform-provider-") {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
            }
        }
        for (path, destination) in symlinks {
            let url = work.appendingPathComponent(path)
            try? FileManager.default.removeItem(at: url)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: destination)
        }
        try git(["add", "-A"])
    }

    /// A direct commit on main (not through a merge): what a push that skipped review is.
    @discardableResult
    func commitOnMain(files: [String: String], message: String) throws -> String {
        try write(files)
        try git(["commit", "-q", "--allow-empty", "-m", message])
        return try git(["rev-parse", "HEAD"])
    }

    /// A merged pull request: a feature branch with `files`, merged into main with `--no-ff`.
    /// Returns the merge commit.
    @discardableResult
    func mergePR(files: [String: String], symlinks: [String: String] = [:], message: String = "change") throws -> String {
        prCount += 1
        let branch = "feature-\(prCount)"
        try git(["checkout", "-q", "-b", branch])
        try write(files, symlinks: symlinks)
        try git(["commit", "-q", "--allow-empty", "-m", message])
        try git(["checkout", "-q", "main"])
        try git(["merge", "-q", "--no-ff", "-m", "Merge \(branch)", branch])
        return try git(["rev-parse", "HEAD"])
    }

    /// A merged pull request that changes the release to `release`.
    @discardableResult
    func mergeRelease(_ release: String, extra: String = "") throws -> String {
        try mergePR(files: appFiles(release: release, extra: extra), message: "release \(release)")
    }

    /// An annotated tag cut by `tagger` (dave, who approves nothing, by default).
    func tag(_ name: String, at commit: String = "HEAD", tagger: String = "dave@example.com", force: Bool = false) throws {
        try git(["tag"] + (force ? ["-f"] : []) + ["-a", "-m", name, name, commit], committerEmail: tagger)
    }

    /// Pushes branches and tags to the remote as they are (moved tags forced, deleted pruned).
    func publish() throws {
        try git(["push", "-q", "--force", "--prune", remote.path, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
    }

    /// Merges a release, tags it for `environments` and publishes. Returns the merge commit.
    @discardableResult
    func release(_ version: String, to environments: [String], extra: String = "") throws -> String {
        let commit = try mergeRelease(version, extra: extra)
        for env in environments { try tag("\(env)/v\(version)", at: commit) }
        try publish()
        return commit
    }

    // MARK: Reading results

    /// The `triggers` of `null_resource.app` in the environment's terraform state, or nil.
    func applied(_ env: String) throws -> [String: String]? { try triggers(env, "app") }

    /// The `triggers` of `null_resource.NAME` in the environment's terraform state, or nil.
    func triggers(_ env: String, _ name: String) throws -> [String: String]? {
        let url = stateDirectory.appendingPathComponent("\(env).tfstate")
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let resources = json["resources"] as? [[String: Any]] ?? []
        guard let app = resources.first(where: { $0["type"] as? String == "null_resource" && $0["name"] as? String == name }),
              let instance = (app["instances"] as? [[String: Any]])?.first,
              let attributes = instance["attributes"] as? [String: Any] else { return nil }
        return attributes["triggers"] as? [String: String]
    }

    /// Lines the local-exec provisioner appended: one per apply that created the resource.
    var applyLog: [String] {
        let text = (try? String(contentsOf: stateDirectory.appendingPathComponent("applies.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    func target(_ env: String) -> TargetID { TargetID(project: try! ProjectName("app"), environment: envName(env)) }

    /// The newest run of the environment for `version`.
    func run(_ env: String, _ version: String) async throws -> StoredRun {
        let runs = try await store.runs(target: target(env), states: nil)
        return try #require(runs.first { $0.run.version == semver(version) }, "no run of \(env) for \(version)")
    }

    func runs(_ env: String) async throws -> [StoredRun] { try await store.runs(target: target(env), states: nil) }

    func decision(_ env: String, _ tag: String) async throws -> StoredTagDecision? {
        try await store.tagDecisions(for: target(env)).first { $0.tagName == tag }
    }

    /// Approves with each identity in turn, returning the outcomes.
    @discardableResult
    func approve(_ run: StoredRun, by names: [String]) async throws -> [ApprovalOutcome] {
        let digest = try #require(run.planDigest, "run \(run.id) has no plan digest")
        var outcomes: [ApprovalOutcome] = []
        for name in names {
            outcomes.append(try await gate.approve(run: run.id, identity: identity(name), digest: digest))
        }
        return outcomes
    }

    /// Reconcile, approve the environment's run of `version` by `approvers`, apply.
    @discardableResult
    func deploy(_ env: String, _ version: String, approvers: [String] = ["alice"]) async throws -> ApplyOutcome {
        let report = try await gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        let run = try await run(env, version)
        try #require(run.state == .awaitingApproval, "run of \(env) \(version) is \(run.state): \(run.run.tagName)")
        try await approve(run, by: approvers)
        return try await gate.apply(run: run.id)
    }

    /// Audit entries of a run, as kind names in order.
    func auditKinds(_ id: RunID) async throws -> [String] {
        try await store.auditEntries().filter { $0.runID == id }.map(\.kind.rawValue)
    }

    /// Every byte of the store file and its WAL, as text: where a leaked secret would be.
    func rawStoreText() -> String {
        var text = ""
        for suffix in ["", "-wal"] {
            if let data = FileManager.default.contents(atPath: storePath + suffix) {
                text += String(decoding: data, as: UTF8.self)
            }
        }
        return text
    }

    /// Files left under the runs directory (plan files must never outlive their run).
    func planFilesOnDisk() -> [String] {
        let runs = scratch.appendingPathComponent("runs")
        guard let walker = FileManager.default.enumerator(atPath: runs.path) else { return [] }
        return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".tfplan") }
    }
}

struct GitCommandFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let stderr: String
    var description: String { "git \(arguments.joined(separator: " ")) failed: \(stderr)" }
}

/// The usual three environments: dev (1 approval, tagger may approve), staging (promoted
/// from dev) and prod (promoted from staging, 2 approvals).
let threeEnvironments = """
  dev:
    serves: true
    approvals: 1
    approvers: [alice, bob, carol]
    tagger_may_approve: true
  staging:
    serves: true
    promote_from: dev
    approvals: 1
    approvers: [alice, bob, carol]
  prod:
    serves: true
    promote_from: staging
    approvals: 2
    approvers: [alice, bob, carol]
    approval_ttl: 1h
"""

func mode(of url: URL) -> Int {
    let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
    return ((attributes?[.posixPermissions] as? NSNumber)?.intValue ?? -1) & 0o777
}
