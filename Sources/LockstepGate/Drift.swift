import Foundation
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import TerraformRunner

extension Gate {
    /// The states in which a target's last run put its revision in place (as the board says).
    static let appliedStates: Set<RunState> = [.applied, .verifying, .verified]

    /// One drift pass (docs/CONTRACT.md §4, drift): every served target whose environment has
    /// `drift:` and whose last check is older than its interval has its applied revision planned
    /// again with the plan credentials. A target with a plan or an apply under way is left for a
    /// later pass. Each check is stored and audited; drift (or a check that could not run) is
    /// notified. Returns the checks made.
    public func driftPass() async throws -> [DriftCheck] {
        try await exclusively {
            var report = ReconcileReport()
            var checks: [DriftCheck] = []
            let targets: [ServedTarget]
            do {
                targets = try await servedTargets(report: &report)
            } catch {
                // No layout to read yet (nothing fetched, so nothing applied either): the
                // reconcile pass reports why; the drift pass tries again later.
                logger.debug("drift pass skipped: the targets are not known", metadata: ["error": "\(safeDescription(error))"])
                return []
            }
            for served in targets {
                guard let interval = served.policy.driftInterval,
                      let applied = try await driftDue(served.target, interval: interval) else { continue }
                let check = try await withoutSerialisation { await self.checkDrift(applied, served.policy) }
                try await store.recordDriftCheck(check, actor: Self.systemActor)
                GateMetrics.driftChecked(served.target.environment, check.outcome)
                logger.log(level: check.outcome == .noDrift ? .info : .warning, "drift check",
                           metadata: ["target": "\(served.target)", "drift.outcome": "\(check.outcome.rawValue)",
                                      "version": "\(check.version)", "drift.resources": "\(check.addresses.count)"])
                checks.append(check)
            }
            return checks
        }
    }

    /// The applied run of `target` when a drift check of it is due: none yet, or the last one
    /// is older than `interval`; nil when nothing was applied or a plan or apply is running.
    func driftDue(_ target: TargetID, interval: Duration) async throws -> StoredRun? {
        let runs = try await store.runSummaries(target: target, states: nil)
        guard !runs.contains(where: { $0.state == .planning || $0.state == .applying }),
              let applied = runs.first(where: { Self.appliedStates.contains($0.state) }) else { return nil }
        if let last = try await store.driftChecks(of: target, limit: 1).first,
           now().timeIntervalSince(last.time) < TimeInterval(interval.components.seconds) {
            return nil
        }
        return try await store.run(applied.id)
    }

    /// Plans the applied revision of `run`'s target again, in a fresh export, with the plan
    /// credentials, and reads what the plan would change. Nothing is kept but the check.
    func checkDrift(_ run: StoredRun, _ policy: EnvironmentPolicy) async -> DriftCheck {
        let folder = runsDirectory.appendingPathComponent("drift-\(run.target.project.rawValue)-\(run.target.environment.rawValue)-\(UUID().uuidString.prefix(8))",
                                                           isDirectory: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func check(_ outcome: DriftCheck.Outcome, _ detail: String, _ addresses: [String] = []) -> DriftCheck {
            DriftCheck(target: run.target, runID: run.id, tagName: run.run.tagName, version: run.run.version,
                       commit: run.run.commit, time: now(), outcome: outcome, detail: detail, addresses: addresses)
        }
        do throws(RunFailure) {
            let tree = folder.appendingPathComponent("tree", isDirectory: true)
            let planFolder = folder.appendingPathComponent("plan", isDirectory: true)
            let showFolder = folder.appendingPathComponent("show", isDirectory: true)
            do {
                try FileManager.default.createDirectory(at: runsDirectory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
                for url in [folder, tree, planFolder, showFolder] {
                    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false,
                                                            attributes: [.posixPermissions: 0o700])
                }
            } catch {
                throw RunFailure("the folder for the drift check could not be created")
            }
            try await export(run, into: tree)
            let layout = try await layout(of: run, tree: tree)
            let credentials = try credentials(policy.planCredentialsFile, what: "plan")
            let grants = grants(for: run.target.environment)
            var invocation = TerraformRunner.Invocation(directory: layout.projectDirectory,
                                                        writable: [tree, planFolder] + grants.writable,
                                                        hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                        credentials: credentials, timeout: agent.terraform.planTimeout)
            // Read-only: the plan is never applied and stores no state, so it takes no lock a
            // release's plan or apply would then have to wait for.
            invocation.stateLock = false
            let initialised: CommandResult
            do {
                initialised = try await runner.initialize(invocation, backendConfigFiles: layout.backendConfigFiles)
            } catch {
                throw RunFailure("terraform init could not run: \(safeDescription(error))")
            }
            guard initialised.outcome == .succeeded else { throw RunFailure(commandFailure("init", initialised)) }
            try checkBackendPin(run, directory: layout.projectDirectory, credentials: credentials, before: "the drift plan")
            let planned: PlanResult
            do {
                planned = try await runner.plan(invocation, planFile: planFolder.appendingPathComponent("plan.tfplan"),
                                                varFiles: layout.varFiles)
            } catch {
                throw RunFailure("terraform plan could not run: \(safeDescription(error))")
            }
            guard let saved = planned.plan else { throw RunFailure(commandFailure("plan", planned.command)) }
            if saved.changes == .noChanges {
                return check(.noDrift, "the applied revision \(run.run.version) plans no changes")
            }
            // What the plan would change, read by `show` from a copy in a folder the plan never could write.
            let copy = showFolder.appendingPathComponent("plan.tfplan")
            guard FileManager.default.createFile(atPath: copy.path, contents: saved.contents, attributes: [.posixPermissions: 0o600]) else {
                throw RunFailure("the drift plan could not be copied for terraform show")
            }
            var showInvocation = invocation
            showInvocation.writable = []
            showInvocation.readable = [tree, showFolder]
            let model: PlanModel
            do {
                model = try await runner.showJSON(showInvocation, planFile: copy).plan
            } catch {
                return check(.drift, "the applied revision \(run.run.version) plans changes; terraform show could not "
                             + "read them: \(safeDescription(error))")
            }
            let addresses = model.resourceChanges.filter(\.changesInfrastructure).map(\.address).sorted()
            return check(.drift, "the infrastructure differs from \(run.run.version) as applied: \(model.create) to create, "
                         + "\(model.update) to update, \(model.replace) to replace, \(model.delete) to delete",
                         Array(addresses.prefix(200)))
        } catch {
            return check(.failed, "the drift check could not run: \(shownToReviewers(error.reason))")
        }
    }
}
