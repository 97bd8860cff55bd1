import Foundation
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import TerraformRunner

extension Gate {
    /// Bytes of a check's output kept with the run (its last ones): enough for a scanner's
    /// summary and its failed rules, never a log that swamps the run page.
    static let checkOutputBytes = 16 * 1024

    /// The checks of docs/CONTRACT.md §4 on a stored plan: the built-in ones, then, when they
    /// pass, the environment's external checks (``runExternalChecks(_:_:)``). Returns the event
    /// for the state machine and the results to store with the transition it causes.
    func performChecks(_ run: StoredRun) async -> (RunEvent, RunUpdate) {
        let builtIn = runChecks(run)
        guard case .checksPassed = builtIn, let policy = environmentPolicy(run.target), !policy.checks.isEmpty else {
            return (builtIn, RunUpdate())
        }
        let results = await runExternalChecks(run, policy)
        let update = RunUpdate(checkResults: results)
        let blocking = results.blockingFailures
        if !blocking.isEmpty {
            return (.checksFailed(reasons: blocking.map { "check \($0.name) \($0.outcome)" }), update)
        }
        let overridable = results.overridableFailures.sorted()
        guard !overridable.isEmpty else { return (.checksPassed, update) }
        // Overriding needs one approval more than the run needs otherwise: where the environment
        // lists too few approvers for that, no one could ever approve it, so the run fails now.
        let required = policy.approvals + (checks(of: run, policy).needsExtraApproval ? 1 : 0) + 1
        if policy.approvers.count < required {
            return (.checksFailed(reasons: overridable.map {
                "check \($0) failed; overriding it needs \(required) approvals, but only \(policy.approvers.count) approvers are configured"
            }), update)
        }
        return (.checksFailedOverridable(names: overridable), update)
    }

    /// Runs every external check of the environment on the run's plan, one after another.
    ///
    /// Each check is a trusted program from the agent config. It reads the redacted plan JSON
    /// (what reviewers see; never a secret) from a fresh private copy and, through `{tree}`, a
    /// fresh export of the tagged commit that plan-time code never could write (a process the
    /// plan left behind could otherwise rewrite a policy file between the plan and the check).
    /// It runs confined like a verify command, in an environment built from nothing, with its
    /// own time limit; a check that cannot start, times out or is killed has failed. A check
    /// with `repo_policies` runs a second time, on its own, with the policy files the run's
    /// `lockstep.yaml` lists: a repository can add failures, never remove the agent's.
    func runExternalChecks(_ run: StoredRun, _ policy: EnvironmentPolicy) async -> [CheckResult] {
        let log = runLogger(run)
        let inputs: CheckInputs
        do {
            inputs = try await checkInputs(run)
        } catch {
            log.warning("external checks could not be prepared", metadata: ["reason": "\(error.reason)"])
            await appendLog("lockstep: the checks could not be prepared: \(error.reason)", stream: .checks, run: run.id)
            return policy.checks.map {
                CheckResult(name: $0.name, passed: false, mayOverride: false, outcome: "could not run: \(error.reason)", output: "")
            }
        }
        defer {
            try? FileManager.default.removeItem(at: inputs.folder)
            try? FileManager.default.removeItem(at: inputs.tree)
        }
        var results: [CheckResult] = []
        for check in policy.checks {
            results.append(await runCheck(check, name: check.name, policyFiles: check.policyFiles.map(URL.init(fileURLWithPath:)),
                                          inputs: inputs, run: run))
            guard check.repoPolicies else { continue }
            switch inputs.repoPolicyFiles {
            case .success(let files) where files.isEmpty:
                continue
            case .success(let files):
                results.append(await runCheck(check, name: check.repoName, policyFiles: files, inputs: inputs, run: run))
            case .failure(let failure):
                // A repository whose policy files cannot be read has not passed its own checks.
                results.append(CheckResult(name: check.repoName, passed: false, mayOverride: check.mayOverride,
                                           outcome: "could not run: \(failure.reason)", output: ""))
            }
        }
        let failed = results.filter { !$0.passed }.map(\.name)
        log.info("external checks finished", metadata: ["checks.failed": "\(failed.joined(separator: ","))",
                                                       "checks.count": "\(results.count)"])
        return results
    }

    private func runCheck(_ check: ExternalCheck, name: String, policyFiles: [URL], inputs: CheckInputs,
                          run: StoredRun) async -> CheckResult {
        var arguments: [String] = []
        for argument in check.command.dropFirst() {
            switch argument {
            case ExternalCheck.planJSON: arguments.append(inputs.planJSON.path)
            case ExternalCheck.tree: arguments.append(inputs.tree.path)
            case ExternalCheck.policyFiles: arguments += policyFiles.map(\.path)
            default: arguments.append(argument)
            }
        }
        let home = inputs.folder.appendingPathComponent("home-\(name.replacingOccurrences(of: "/", with: "-"))", isDirectory: true)
        try? FileManager.default.createDirectory(at: home, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let environment: [String: String] = [
            "PATH": runner.searchPath, "HOME": home.path, "TMPDIR": home.path,
            "LOCKSTEP_RUN_ID": run.id.rawValue, "LOCKSTEP_PROJECT": run.target.project.rawValue,
            "LOCKSTEP_ENVIRONMENT": run.target.environment.rawValue, "LOCKSTEP_VERSION": run.run.version.description,
            "LOCKSTEP_CHECK": name,
        ]
        let request = ExternalProgram.Request(
            executable: check.command[0], arguments: arguments, directory: inputs.tree, environment: environment,
            timeout: check.timeout, retainedOutputBytes: Self.checkOutputBytes, redactor: Redactor(secrets: inputs.secrets),
            confinement: verifyConfinement(for: run.target.environment),
            readable: [inputs.tree, inputs.planJSON.deletingLastPathComponent()] + policyFiles, writable: [home])
        let outcome: String
        var output = ""
        do {
            let result = try await runner.runProgram(request)
            output = result.output
            switch result.outcome {
            case .succeeded: outcome = "passed"
            case .timedOut: outcome = "timed out after \(durationText(check.timeout)) and was killed"
            default: outcome = "failed (\(result.outcome))"
            }
        } catch {
            outcome = "could not start: \(safeDescription(error))"
        }
        let passed = outcome == "passed"
        await appendLog("lockstep: check \(name) \(outcome)\n" + output, stream: .checks, run: run.id)
        return CheckResult(name: name, passed: passed, mayOverride: check.mayOverride, outcome: outcome,
                           output: output)
    }

    /// What the checks read: a fresh export of the run's commit, the redacted plan JSON in a
    /// private folder, and the repository's policy files resolved inside that export.
    private func checkInputs(_ run: StoredRun) async throws(RunFailure) -> CheckInputs {
        guard let plan = run.plan else { throw RunFailure("the run has no stored plan") }
        let tree = try await freshTree(run, named: "checks-tree")
        let folder = runDirectory(run.id).appendingPathComponent("checks-input", isDirectory: true)
        try? FileManager.default.removeItem(at: folder)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RunFailure("the folder for the checks' input could not be created")
        }
        let planFolder = folder.appendingPathComponent("plan", isDirectory: true)
        try? FileManager.default.createDirectory(at: planFolder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let planJSON = planFolder.appendingPathComponent("plan.json")
        guard FileManager.default.createFile(atPath: planJSON.path, contents: Data(plan.planJSON.utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw RunFailure("the plan JSON for the checks could not be written")
        }
        var repoFiles: Result<[URL], RunFailure>
        do {
            let config = try RepoConfig.load(root: tree.path)
            var files: [URL] = []
            for (i, file) in config.policyFiles.enumerated() {
                files.append(URL(fileURLWithPath: try resolveInside(root: tree.path, relative: file.value,
                                                                    keyPath: "policy_files[\(i)]")))
            }
            repoFiles = .success(files)
        } catch let error as ConfigErrors {
            repoFiles = .failure(RunFailure("lockstep.yaml was refused: " + error.errors.map(\.description).joined(separator: "; ")))
        } catch let error as ConfigError {
            repoFiles = .failure(RunFailure("a policy file was refused: \(error.description)"))
        } catch {
            repoFiles = .failure(RunFailure("the repository's policy files could not be read"))
        }
        var secrets: [String] = []
        if let policy = environmentPolicy(run.target) {
            for file in [policy.planCredentialsFile, policy.applyCredentialsFile].compactMap({ $0 }) {
                secrets += (try? CredentialsFile.read(file))?.values.map { $0 } ?? []
            }
        }
        return CheckInputs(folder: folder, tree: tree, planJSON: planJSON, repoPolicyFiles: repoFiles, secrets: secrets)
    }
}

/// The files one run's external checks read (see ``Gate/checkInputs(_:)``).
struct CheckInputs: Sendable {
    var folder: URL
    var tree: URL
    var planJSON: URL
    var repoPolicyFiles: Result<[URL], RunFailure>
    /// Values of the environment's credentials, replaced in the checks' output.
    var secrets: [String]
}
