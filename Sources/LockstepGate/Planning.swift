import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import TerraformRunner

/// Why a run cannot go on; `reason` is safe to store and show (no secret, no plan body).
struct RunFailure: Error, Sendable {
    let reason: String
    init(_ reason: String) { self.reason = oneLine(reason) }
}

/// Where a run's files are inside its exported tree, every path resolved inside the tree.
struct RunLayout: Sendable {
    var tree: URL
    var projectDirectory: URL
    var varFiles: [URL]
    var backendConfigFiles: [URL]
    var verify: [VerifyCommand]
}

extension Gate {
    /// Folder names never exported into a run directory: a committed provider binary in
    /// either would otherwise be executed by terraform (docs/THREAT-MODEL.md §1.1).
    static let excludedNames: Set<String> = [".terraform", "terraform.d"]

    /// The detail stored with a `plan_cancelled` transition.
    public static let planCancelledReason = "the plan was stopped before it finished (the agent is stopping)"

    /// Exports the run's commit into `directory` (which must exist and be empty) within the
    /// agent's export limits, and checks the tree is the one the tag decision saw.
    func export(_ run: StoredRun, into directory: URL) async throws(RunFailure) {
        let limits = GitSource.ExportLimits(maxBytes: agent.exportLimits.maxBytes, maxFiles: agent.exportLimits.maxFiles,
                                            maxDepth: agent.exportLimits.maxDepth)
        let result: ExportResult
        do {
            result = try await source.export(commit: run.run.commit, to: directory.path, limits: limits,
                                             excludingNames: Self.excludedNames)
        } catch {
            // An export target error names the run's folder on the agent: not the reviewers' business.
            guard error.code != .exportTarget else {
                logger.error("the run's export folder was not usable", metadata: ["error": "\(error.description)"])
                throw RunFailure("the tagged commit could not be exported: the run's folder on the agent was not usable (the daemon's log says why)")
            }
            throw RunFailure("the tagged commit could not be exported: \(error.description)")
        }
        guard result.tree == run.run.tree else {
            throw RunFailure("the exported tree \(result.tree) is not the tree \(run.run.tree) the tag decision saw")
        }
    }

    /// The run's layout: its commit's `lockstep.yaml` (parsed once per commit, see
    /// ``repoConfig(at:)``) with its project's paths resolved in the exported `tree`. Every problem
    /// fails the run with the reason: trust keys (approvals, approvers, …), an environment the
    /// agent does not know, a path that is absolute, climbs with `..` or leaves the tree
    /// through a symlink. The agent config is never changed by it.
    func layout(of run: StoredRun, tree: URL) async throws(RunFailure) -> RunLayout {
        let repo: RepoConfig
        do {
            repo = try await repoConfig(at: run.run.commit).config
        } catch let error as ConfigErrors {
            throw RunFailure("lockstep.yaml was refused: " + error.errors.map(\.description).joined(separator: "; "))
        } catch {
            throw RunFailure("lockstep.yaml could not be read from the mirror: \(safeDescription(error))")
        }
        // Only this run's project's paths: another project's files are not read by this run.
        let errors = repo.check(against: agent) + repo.checkPaths(root: tree.path, project: run.target.project)
        guard errors.isEmpty else {
            throw RunFailure("lockstep.yaml was refused: " + errors.map(\.description).joined(separator: "; "))
        }
        let projectName = run.target.project
        let envName = run.target.environment
        guard let project = repo.projects[projectName] else {
            throw RunFailure("lockstep.yaml at this commit defines no project \"\(projectName)\"")
        }
        guard let environment = project.environments[envName] else {
            throw RunFailure("lockstep.yaml at this commit lists no environment \"\(envName)\" for project \"\(projectName)\"")
        }
        func resolve(_ path: RelativePath, _ key: String) throws(RunFailure) -> URL {
            do {
                return URL(fileURLWithPath: try resolveInside(root: tree.path, relative: path.value, keyPath: key))
            } catch {
                throw RunFailure("lockstep.yaml was refused: \(error.description)")
            }
        }
        let at = "projects.\(projectName).environments.\(envName)"
        var varFiles: [URL] = []
        for (i, file) in environment.varFiles.enumerated() { varFiles.append(try resolve(file, "\(at).var_files[\(i)]")) }
        var backendFiles: [URL] = []
        for (i, file) in environment.backendConfigFiles.enumerated() {
            backendFiles.append(try resolve(file, "\(at).backend_config_files[\(i)]"))
        }
        return RunLayout(tree: tree, projectDirectory: try resolve(project.dir, "projects.\(projectName).dir"),
                         varFiles: varFiles, backendConfigFiles: backendFiles, verify: environment.verify)
    }

    /// Reads a credentials env-file of the environment; a missing setting means none.
    ///
    /// The reason stored with the run (shown to reviewers) names the agent config key, not
    /// the file: where the agent keeps its credentials is not the reviewers' business. The
    /// daemon's log has the full error.
    func credentials(_ path: String?, what: String) throws(RunFailure) -> [String: String] {
        guard let path else { return [:] }
        do {
            return try CredentialsFile.read(path)
        } catch {
            logger.error("a credentials file could not be read", metadata: ["credentials": "\(what)", "error": "\(error.description)"])
            throw RunFailure("the \(what) credentials could not be read (the file named by `\(what)_credentials_file` in the agent config; the daemon's log says why)")
        }
    }

    /// Creates the run's directory afresh (`0700`), removing whatever an earlier attempt left.
    func freshRunDirectory(_ id: RunID) throws(RunFailure) -> URL {
        removeRunDirectory(id)
        do {
            try FileManager.default.createDirectory(at: runsDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let directory = try TerraformRunner.makeRunDirectory(under: runsDirectory, name: id.rawValue)
            try FileManager.default.createDirectory(at: treeDirectory(id), withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
            return directory
        } catch {
            throw RunFailure("the run directory could not be created")
        }
    }

    /// A fresh export of the run's commit into `NAME` inside the run's folder (what was there
    /// is removed first). Apply and verify each run in their own fresh tree, never in the one
    /// the plan ran in: plan-time code could write there (it is the plan's working tree, and a
    /// process the plan left behind may still be running) and change a script that a
    /// `local-exec` or a verify command runs later. The plan itself is checked by digest.
    func freshTree(_ run: StoredRun, named name: String) async throws(RunFailure) -> URL {
        let tree = runDirectory(run.id).appendingPathComponent(name, isDirectory: true)
        do {
            if FileManager.default.fileExists(atPath: tree.path) { try FileManager.default.removeItem(at: tree) }
            try FileManager.default.createDirectory(at: runDirectory(run.id), withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RunFailure("the folder for the \(name) could not be created")
        }
        try await export(run, into: tree)
        return tree
    }

    /// Plans the run (docs/CONTRACT.md §4): fresh directory, export, layout, `init`, `plan -out`,
    /// `show -json`, all with the environment's plan credentials only. Returns the event for
    /// the state machine and the fields to store with the transition it causes.
    func performPlan(_ run: StoredRun) async -> (RunEvent, RunUpdate) {
        let log = runLogger(run)
        do throws(RunFailure) {
            guard let policy = environmentPolicy(run.target) else {
                throw RunFailure("this agent has no policy for environment \(run.target.environment)")
            }
            _ = try freshRunDirectory(run.id)
            let tree = treeDirectory(run.id)
            try await export(run, into: tree)
            let layout = try await layout(of: run, tree: tree)
            let planCredentials = try credentials(policy.planCredentialsFile, what: "plan")
            // Confined, plan-time code writes only this run's tree and plan file: not the
            // store, the plugin cache or another run (see ``Confinement``).
            let grants = grants(for: run.target.environment)
            let invocation = TerraformRunner.Invocation(directory: layout.projectDirectory,
                                                        writable: [tree, planFile(run.id)] + grants.writable,
                                                        hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                        credentials: planCredentials, timeout: agent.terraform.planTimeout)
            // The run's log is written while terraform runs: each store write waits for the disk,
            // and none of them needs to hold up the next command. Each is awaited before the next
            // write, so the log keeps its order.
            let initialised = try await initialiseForPlan(run, invocation: invocation, layout: layout)
            async let initLogged: Void = appendLog(initialised.text, stream: initialised.stream, run: run.id)
            // Nothing of the repository has run yet: what init wrote is what plan will read.
            try checkBackendPin(run, directory: layout.projectDirectory, credentials: planCredentials, before: "terraform plan")
            let planned: PlanResult
            do {
                planned = try await runner.plan(invocation, planFile: planFile(run.id), varFiles: layout.varFiles)
            } catch {
                throw RunFailure("terraform plan could not run: \(safeDescription(error))")
            }
            await initLogged
            async let planLogged: Void = appendLog(planned.command.output, stream: .plan, run: run.id)
            guard let saved = planned.plan else { throw RunFailure(commandFailure("plan", planned.command)) }
            // The bytes were read once and hashed; the file they came from is writable by
            // whatever the plan left behind, so it is removed and never read again.
            try? FileManager.default.removeItem(at: saved.file)
            let digest = saved.digest
            if saved.changes == .noChanges {
                log.info("plan has no changes", metadata: ["plan.digest": "\(digest)"])
                return (.planSucceeded(digest: digest, hasChanges: false), RunUpdate(planDigest: digest))
            }
            // The state this plan is bound to, from inside the very bytes that were hashed
            // (docs/CONTRACT.md §4): apply checks it again with the apply credentials.
            let priorState: StateBinding
            do {
                priorState = try PlanArchive.priorState(of: saved.contents)
            } catch {
                throw RunFailure("the state the plan was made against could not be read from the saved plan: \(error.description); "
                                 + "a plan that cannot be bound to its state is never applied")
            }
            try seal(saved.contents, run: run.id)
            // `show` reads a copy of the sealed bytes from a folder the plan never could write,
            // and may write nothing but its own HOME (it reads the tree for the providers'
            // schemas): the rendering and the JSON the checks read are of the very bytes that
            // were hashed.
            let copy = try planCopy(saved.contents, run: run.id, for: "show")
            defer { try? FileManager.default.removeItem(at: copy.deletingLastPathComponent()) }
            var showInvocation = invocation
            showInvocation.writable = []
            showInvocation.readable = [tree, copy.deletingLastPathComponent()]
            let shown: ShownPlanJSON
            do {
                shown = try await runner.showJSON(showInvocation, planFile: copy)
            } catch let error as TerraformRunnerError where error.code == .planJSONTooLarge {
                // The summary, the checks and the approvals all rest on the JSON: one that was
                // not read whole can never be approved, so the run fails and says what to raise.
                let size = error.context["bytes"].flatMap(Int.init).map { " (\(ByteSize($0)))" } ?? ""
                throw RunFailure("the plan's JSON\(size) is larger than limits.plan_json_bytes "
                                 + "(\(ByteSize(agent.limits.planJSONBytes))) in the agent config; it was not kept, and a plan "
                                 + "whose JSON cannot be read whole cannot be summarised, checked or approved: raise "
                                 + "limits.plan_json_bytes to review this release")
            } catch {
                throw RunFailure("terraform show could not read the plan: \(safeDescription(error))")
            }
            // The text comes right after the run is stored as planned (``renderPendingText(of:)``):
            // the summary, the checks and the approvals rest on the JSON alone.
            pendingRenderings[run.id] = PendingRendering(invocation: showInvocation, contents: saved.contents,
                                                         sensitiveValues: shown.sensitiveValues)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let summaryJSON = (try? encoder.encode(shown.plan)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            let stored = StoredPlan(summaryJSON: summaryJSON, rendering: "",
                                    planJSON: String(decoding: shown.redactedJSON, as: UTF8.self), renderingBytes: 0,
                                    renderingState: .pending, priorState: priorState)
            log.info("plan saved", metadata: ["plan.digest": "\(digest)", "plan.prior_state": "\(priorState)"])
            await planLogged
            return (.planSucceeded(digest: digest, hasChanges: true), RunUpdate(planDigest: digest, plan: stored))
        } catch {
            // A stopping agent cancelled the plan (the runner killed terraform's process
            // group): that says nothing about the release, so the run is queued again
            // rather than failed, and planned from scratch by the next pass.
            if Task.isCancelled {
                log.notice("plan cancelled; the run is queued again", metadata: ["reason": "\(error.reason)"])
                await appendLog("lockstep: plan cancelled before it finished; the run is queued again", stream: .lockstep,
                                run: run.id)
                return (.planCancelled(reason: Self.planCancelledReason), RunUpdate())
            }
            log.warning("plan failed", metadata: ["reason": "\(error.reason)"])
            let shown = shownToReviewers(error.reason)
            await appendLog("lockstep: plan failed: \(shown)", stream: .lockstep, run: run.id)
            return (.planFailed(reason: shown), RunUpdate())
        }
    }

    /// Keeps the plan's bytes, as hashed, where only the daemon can write (``sealedPlanFile(_:)``).
    func seal(_ contents: Data, run id: RunID) throws(RunFailure) {
        let file = sealedPlanFile(id)
        do {
            try? FileManager.default.removeItem(at: file.deletingLastPathComponent())
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RunFailure("the folder for the sealed plan could not be created")
        }
        guard FileManager.default.createFile(atPath: file.path, contents: contents, attributes: [.posixPermissions: 0o600]) else {
            throw RunFailure("the sealed plan could not be written")
        }
    }

    /// The sealed bytes, refused unless they still have `digest`.
    func sealedPlan(_ id: RunID, digest: Digest) throws(RunFailure) -> Data {
        guard let contents = FileManager.default.contents(atPath: sealedPlanFile(id).path) else {
            throw RunFailure("the sealed plan of this run is missing")
        }
        guard Digest.sha256(of: contents) == digest else {
            throw RunFailure("the sealed plan no longer has the approved digest \(digest)")
        }
        return contents
    }

    /// Writes `contents` as `plan.tfplan` (0600) into a fresh folder (0700) for one command; the
    /// folder is granted to that command read-only.
    func planCopy(_ contents: Data, run id: RunID, for purpose: String) throws(RunFailure) -> URL {
        let folder = planCopyFolder(id, for: purpose)
        do {
            try? FileManager.default.removeItem(at: folder)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RunFailure("the folder for the \(purpose) copy of the plan could not be created")
        }
        let file = folder.appendingPathComponent("plan.tfplan")
        guard FileManager.default.createFile(atPath: file.path, contents: contents, attributes: [.posixPermissions: 0o600]) else {
            throw RunFailure("the \(purpose) copy of the plan could not be written")
        }
        return file
    }

    /// Removes the plan file terraform wrote, the sealed bytes and every copy made of them:
    /// a plan is applied at most once, and never outlives its run's end.
    func removePlanFile(_ id: RunID) {
        for url in [planFile(id), sealedPlanFile(id).deletingLastPathComponent(),
                    planCopyFolder(id, for: "show"), planCopyFolder(id, for: "render"), planCopyFolder(id, for: "apply")]
        where FileManager.default.fileExists(atPath: url.path) {
            try? FileManager.default.removeItem(at: url)
        }
    }

    /// A terraform command that ended badly, in one line: the outcome and terraform's first
    /// error line (already redacted by the runner).
    func commandFailure(_ command: String, _ result: CommandResult) -> String {
        let firstError = result.output.split(separator: "\n").first { $0.contains("Error:") }
        let detail = firstError.map { ": " + oneLine(String($0).replacingOccurrences(of: "│", with: ""), limit: 300) } ?? ""
        return "terraform \(command) \(result.outcome)\(detail)"
    }

    /// A client-safe description of an error from a lower layer.
    func safeDescription(_ error: any Error) -> String {
        switch error {
        case let error as TerraformRunnerError: error.description
        case let error as GitError: error.description
        case let error as GateError: error.description
        case let error as StoreError: error.description
        default: "unexpected error"
        }
    }
}
