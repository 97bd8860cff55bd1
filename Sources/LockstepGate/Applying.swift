import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import TerraformRunner

/// A precondition could not be evaluated now (the remote was unreachable): nothing is
/// decided, the run stays approved.
struct FactsUnavailable: Error, Sendable {
    let reason: String
}

extension Gate {
    /// One apply trigger for a loaded run (see ``Gate/apply(run:)``).
    func applyTrigger(_ stored: StoredRun) async throws -> ApplyOutcome {
        guard stored.state == .approved else {
            return .notApplied("run \(stored.id) is \(stored.state), not approved")
        }
        let facts: ApplyFacts
        do {
            facts = try await gatherApplyFacts(stored)
        } catch let error as FactsUnavailable {
            return .deferred(error.reason)
        }
        let report = ApplyPreconditions.evaluate(facts)
        let result = try await drive(stored, .applyPreconditions(report), actor: Self.systemActor)
        if result.applyStarted {
            if let failure = result.applyFailure { return .applyFailed(reason: failure) }
            return .applied(result.state)
        }
        if result.lostRace { return .notApplied("another trigger moved run \(stored.id) first; this trigger applied nothing") }
        if let refusal = result.refusals.first { return .notApplied(refusal.description) }
        if result.waitingForApplyWindow { return .waitingForApplyWindow }
        return .preconditionsFailed(report, state: result.state)
    }

    /// Gathers every apply fact of docs/CONTRACT.md §4 together, right before apply: valid approvals
    /// now (expiry included), the digest of the plan file on disk, the tag re-resolved after
    /// a fetch, other applies on the target since this plan, the apply window, the checks and
    /// whether this agent serves the environment.
    func gatherApplyFacts(_ run: StoredRun) async throws -> ApplyFacts {
        guard let digest = run.planDigest else { throw GateError(.corruptRun, "run \(run.id) is approved without a plan digest") }
        guard let policy = environmentPolicy(run.target) else {
            throw GateError(.unknownTarget, "this agent has no policy for environment \(run.target.environment)")
        }
        let moment = now()
        let approvalPolicy = try approvalPolicy(for: run, policy)
        let context = approvalContext(run, policy, digest: digest)
        let valid = ApprovalRules.validApprovals(try await store.approvals(of: run.id), for: context,
                                                 policy: approvalPolicy, now: moment)
        var onDisk: Digest?
        if let sealed = FileManager.default.contents(atPath: sealedPlanFile(run.id).path) {
            onDisk = Digest.sha256(of: sealed)
        }
        do {
            _ = try await source.sync()
        } catch {
            throw FactsUnavailable(reason: "the release tag could not be re-resolved: \(error.description)")
        }
        var tagCommit: GitObjectID?
        do {
            let info = try await source.tag(named: run.run.tagName)
            tagCommit = info.commit
        } catch where error.code == .notFound {
            tagCommit = nil
        } catch {
            throw FactsUnavailable(reason: "the release tag could not be re-resolved: \(error.description)")
        }
        // Failed external checks that may be overridden count as passed here only because every
        // valid approval overrides them (the approval rules refuse any that does not).
        let checksPassed = run.plan != nil && checks(of: run, policy).passed
            && (run.plan?.checkResults.blockingFailures.isEmpty ?? false)
        var facts = ApplyFacts(validApprovals: valid.count, requiredApprovals: approvalPolicy.requiredApprovals,
                          approvedDigest: digest, planDigestOnDisk: onDisk, runCommit: run.run.commit,
                          tagCommitNow: tagCommit,
                          appliesSincePlan: try await store.appliesStarted(on: run.target, sincePlanOf: run.id),
                          applyWindowOpen: policy.applyWindowOpen(at: moment), checksPassed: checksPassed,
                          agentServesEnvironment: policy.serves)
        facts.signatureProblem = try await signatureProblem(run, policy)
        facts.freeze = policy.freeze(at: moment)?.description
        facts.breakGlassApprovers = valid.filter { $0.breakGlass }.map(\.identity)
        return facts
    }

    /// The release tag's signature checked again with the signer files as they are now: a key
    /// revoked or removed after the tag was accepted stops the apply (docs/CONTRACT.md §4).
    /// Files that cannot be read, or a program that cannot run, decide nothing: the run stays
    /// approved and is tried again.
    func signatureProblem(_ run: StoredRun, _ policy: EnvironmentPolicy) async throws -> String? {
        let verdict: SignatureVerdict?
        do {
            verdict = try await currentVerdict(tag: run.run.tagObject, name: run.run.tagName, policy)
        } catch where error.code == .repository {
            return error.description
        } catch {
            throw FactsUnavailable(reason: "the signer files could not be read: \(error.description)")
        }
        switch verdict {
        case nil:
            return nil
        case .verified(let signer)? where signer == run.run.signer:
            return nil
        case .verified(let signer)?:
            return "it now verifies as \(signer), not as \(run.run.signer?.description ?? "no recorded signer")"
        case .rejected(let rejection)? where rejection.code == .signatureUncheckable:
            throw FactsUnavailable(reason: rejection.description)
        case .rejected(let rejection)?:
            return rejection.description
        }
    }

    /// The verified signer of a release tag (read by object id) for a run created outside a
    /// pass (a rollback): nil where the environment does not require signed tags; a tag whose
    /// signature does not verify now is refused, as a pass would reject it.
    func verifiedSigner(of info: TagInfo, _ policy: EnvironmentPolicy) async throws -> TagSigner? {
        let verdict: SignatureVerdict?
        do {
            verdict = try await currentVerdict(tag: info.target, name: info.name, policy)
        } catch {
            throw GateError(.versionNotAccepted, error.description)
        }
        switch verdict {
        case nil: return nil
        case .verified(let signer)?: return signer
        case .rejected(let rejection)?:
            throw GateError(.versionNotAccepted, "the tag's signature does not verify now: \(rejection.description)")
        }
    }

    /// The verdict on a tag object's signature (read by id) with the environment's signer files
    /// as they are now, and every other environment's (to name a key that belongs to another
    /// one); nil where the environment requires no signed tags. A signer file that cannot be
    /// read throws `configuration`, a tag object that cannot be read `repository`.
    func currentVerdict(tag object: GitObjectID, name: String, _ policy: EnvironmentPolicy) async throws(GateError) -> SignatureVerdict? {
        guard policy.requireSignedTags, let trust = try SignerTrust.load(policy) else { return nil }
        let others = agent.environments.values.filter { $0.name != policy.name }.compactMap { try? SignerTrust.load($0) }
        let raw: RawTagObject
        do {
            raw = try await source.rawTag(id: object, name: name)
        } catch {
            throw GateError(.repository, "the tag object \(object.short) cannot be read: \(error.description)")
        }
        return await signatureVerifier.verify(raw, trust: trust, others: others)
    }

    /// Applies exactly the saved plan with `digest`, once. Runs only after the
    /// `approved → applying` compare-and-set was committed. Apply credentials are read from
    /// their file now and handed only to this terraform process; the plan file is deleted
    /// whatever the outcome (the runner deletes it, and so does the state machine's
    /// `deletePlanFile`). Outputs are read afterwards with the plan credentials and stored
    /// redacted.
    func performApply(_ run: StoredRun, digest: Digest) async -> RunEvent {
        let log = runLogger(run)
        defer { removePlanFile(run.id) }
        do throws(RunFailure) {
            guard let policy = environmentPolicy(run.target) else {
                throw RunFailure("this agent has no policy for environment \(run.target.environment)")
            }
            let applyCredentials = try credentials(policy.applyCredentialsFile, what: "apply")
            let planCredentials = try credentials(policy.planCredentialsFile, what: "plan")
            // A fresh export of the tagged commit, initialised again with the plan credentials
            // (init runs no repository code), never the tree the plan ran in (see freshTree).
            let tree = try await freshTree(run, named: "apply-tree")
            let layout = try await layout(of: run, tree: tree)
            let grants = grants(for: run.target.environment)
            let initInvocation = TerraformRunner.Invocation(directory: layout.projectDirectory, writable: [tree] + grants.writable,
                                                            hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                            credentials: planCredentials,
                                                            secrets: Set(applyCredentials.values), timeout: agent.terraform.planTimeout)
            let initialization: CommandResult
            do {
                initialization = try await runner.initialize(initInvocation, backendConfigFiles: layout.backendConfigFiles)
            } catch {
                throw RunFailure("terraform init for the apply could not run: \(safeDescription(error)); terraform apply was not started")
            }
            await appendLog(initialization.output, stream: .apply, run: run.id)
            guard initialization.outcome == .succeeded else {
                throw RunFailure(commandFailure("init", initialization) + "; terraform apply was not started")
            }
            try checkBackendPin(run, directory: layout.projectDirectory, credentials: applyCredentials, before: "terraform apply")
            try await checkStateBinding(run, directory: layout.projectDirectory, writable: [tree] + grants.writable,
                                        grants: grants, applyCredentials: applyCredentials, planCredentials: planCredentials)
            // Apply reads a copy of the sealed bytes, checked against the approved digest, from a
            // folder it may only read (see seal(_:run:)).
            let planFile = try planCopy(try sealedPlan(run.id, digest: digest), run: run.id, for: "apply")
            let invocation = TerraformRunner.Invocation(directory: layout.projectDirectory, writable: [tree] + grants.writable,
                                                        readable: [planFile.deletingLastPathComponent()],
                                                        hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                        credentials: applyCredentials,
                                                        secrets: Set(planCredentials.values),
                                                        timeout: agent.terraform.applyTimeout)
            let result: CommandResult
            do {
                result = try await runner.apply(invocation, planFile: planFile, expectedDigest: digest)
            } catch {
                throw RunFailure("terraform apply was not started: \(safeDescription(error))")
            }
            await appendLog(result.output, stream: .apply, run: run.id)
            switch result.outcome {
            case .succeeded:
                break
            case .stalePlan:
                throw RunFailure("stale plan: the state changed after this plan was made; terraform applied nothing "
                                 + "and the plan was discarded (a new tag or a rollback plans again)")
            case .stateLocked(let lockID):
                throw RunFailure("the state is locked by another process (lock \(lockID.map { oneLine($0, limit: 80) } ?? "unknown")); "
                                 + "terraform applied nothing and the plan was discarded")
            case .timedOut:
                throw RunFailure("terraform apply did not finish within apply_timeout (\(durationText(agent.terraform.applyTimeout))) and was "
                                 + "interrupted; part of the plan may have been applied: check the state before planning again")
            default:
                throw RunFailure(commandFailure("apply", result))
            }
            let outputInvocation = TerraformRunner.Invocation(directory: layout.projectDirectory, writable: [tree] + grants.writable,
                                                              hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                              credentials: planCredentials,
                                                              secrets: Set(applyCredentials.values),
                                                              timeout: .seconds(600))
            do {
                let outputs = try await runner.outputs(outputInvocation)
                try await store.setOutputs(String(decoding: outputs, as: UTF8.self), target: run.target, runID: run.id, at: now())
            } catch {
                // The apply happened; missing outputs must not turn it into a failure.
                log.warning("outputs could not be read after apply", metadata: ["error": "\(safeDescription(error))"])
                await appendLog("lockstep: outputs could not be read after apply: \(safeDescription(error))",
                                stream: .lockstep, run: run.id)
            }
            log.info("apply succeeded")
            return .applySucceeded
        } catch {
            log.error("apply failed", metadata: ["reason": "\(error.reason)"])
            let shown = shownToReviewers(error.reason)
            await appendLog("lockstep: apply failed: \(shown)", stream: .lockstep, run: run.id)
            return .applyFailed(reason: shown)
        }
    }

    /// The state must still be the one the plan was made against (docs/CONTRACT.md §4): its
    /// lineage and serial, read with the apply credentials right before apply. Terraform checks
    /// this itself only when the plan had a prior state; a plan made against no state would
    /// otherwise be applied over a state someone created since (terraform issue 24078).
    func checkStateBinding(_ run: StoredRun, directory: URL, writable: [URL], grants: EnvironmentGrants,
                           applyCredentials: [String: String], planCredentials: [String: String]) async throws(RunFailure) {
        guard let bound = run.plan?.priorState else {
            // Planned by a Lockstep that did not record it: terraform's own stale-plan check only.
            await appendLog("lockstep: this plan was stored without the state it was made against; only terraform's own "
                            + "stale-plan check applies", stream: .lockstep, run: run.id)
            return
        }
        let invocation = TerraformRunner.Invocation(directory: directory, writable: writable,
                                                    hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                    credentials: applyCredentials, secrets: Set(planCredentials.values),
                                                    timeout: agent.terraform.planTimeout)
        let current: StateBinding
        do {
            current = try await runner.stateHead(invocation)
        } catch {
            throw RunFailure("the state could not be read to check it is the one the plan was made against: "
                             + "\(safeDescription(error)); terraform apply was not started")
        }
        if let mismatch = bound.mismatch(current) {
            throw RunFailure("the state moved since the plan: \(mismatch); terraform apply was not started and the plan "
                             + "was discarded (a new tag or a rollback plans again)")
        }
        await appendLog("lockstep: the state is still the one the plan was made against (\(bound))", stream: .lockstep, run: run.id)
    }

    /// Runs the environment's verify commands from `lockstep.yaml` in order (docs/CONTRACT.md §4):
    /// each an argv list (never a shell string), run in the exported tree, with a time limit,
    /// the target's outputs as JSON in a file named by `LOCKSTEP_OUTPUTS_FILE`, and an
    /// environment built from nothing: no apply credentials, no plan credentials, nothing
    /// of the daemon's own environment.
    func performVerify(_ run: StoredRun) async -> RunEvent {
        let log = runLogger(run)
        do throws(RunFailure) {
            let tree = try await freshTree(run, named: "verify-tree")
            let layout = try await layout(of: run, tree: tree)
            guard !layout.verify.isEmpty else { return .verifySucceeded }
            let outputs = try await outputsToVerify(run, layout: layout, tree: tree)
            let outputsFile = runDirectory(run.id).appendingPathComponent("outputs.json")
            let home = runDirectory(run.id).appendingPathComponent("verify-home", isDirectory: true)
            do {
                try? FileManager.default.removeItem(at: outputsFile)
                guard FileManager.default.createFile(atPath: outputsFile.path, contents: Data(outputs.utf8),
                                                     attributes: [.posixPermissions: 0o600]) else {
                    throw RunFailure("the outputs file could not be written")
                }
                try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch let error as RunFailure {
                throw error
            } catch {
                throw RunFailure("the verify home directory could not be created")
            }
            let searchPath = runner.searchPath
            let environment: [String: String] = [
                "PATH": searchPath,
                "HOME": home.path,
                "TMPDIR": home.path,
                "LOCKSTEP_OUTPUTS_FILE": outputsFile.path,
                "LOCKSTEP_RUN_ID": run.id.rawValue,
                "LOCKSTEP_PROJECT": run.target.project.rawValue,
                "LOCKSTEP_ENVIRONMENT": run.target.environment.rawValue,
                "LOCKSTEP_VERSION": run.run.version.description,
                "LOCKSTEP_COMMIT": run.run.commit.rawValue,
            ]
            for (index, command) in layout.verify.enumerated() {
                let number = index + 1
                let executable = try resolveProgram(command.argv[0], tree: tree, searchPath: searchPath)
                let request = ExternalProgram.Request(
                    executable: executable, arguments: Array(command.argv.dropFirst()), directory: tree,
                    environment: environment, timeout: command.timeout,
                    confinement: verifyConfinement(for: run.target.environment), readable: [tree, outputsFile],
                    writable: [home] + grants(for: run.target.environment).writable)
                let result: CommandResult
                do {
                    result = try await runner.runProgram(request)
                } catch {
                    throw RunFailure("verify command \(number) could not be started: \(safeDescription(error))")
                }
                await appendLog(result.output, stream: .verify, run: run.id)
                switch result.outcome {
                case .succeeded:
                    continue
                case .timedOut:
                    throw RunFailure("verify command \(number) (\(programName(command.argv[0]))) did not finish within its time limit")
                default:
                    throw RunFailure("verify command \(number) (\(programName(command.argv[0]))) \(result.outcome)")
                }
            }
            log.info("verify succeeded")
            return .verifySucceeded
        } catch {
            log.warning("verify failed", metadata: ["reason": "\(error.reason)"])
            let shown = shownToReviewers(error.reason)
            await appendLog("lockstep: verify failed: \(shown)", stream: .lockstep, run: run.id)
            return .verifyFailed(reason: shown)
        }
    }

    /// The outputs verify reads: those this run stored right after its apply or, when it
    /// stored none, read again now from the state (plan credentials) and stored. Never the
    /// outputs an earlier run stored: after an interrupted apply that an operator resolved as
    /// applied, those describe the infrastructure before this run, and verifying them would
    /// fail (or pass) the wrong release.
    func outputsToVerify(_ run: StoredRun, layout: RunLayout, tree: URL) async throws(RunFailure) -> String {
        do {
            if let stored = try await store.outputs(of: run.target, storedBy: run.id) { return stored }
        } catch {
            throw RunFailure("the outputs could not be read from the store: \(safeDescription(error))")
        }
        guard let policy = environmentPolicy(run.target) else {
            throw RunFailure("this agent has no policy for environment \(run.target.environment)")
        }
        let grants = grants(for: run.target.environment)
        let invocation = TerraformRunner.Invocation(directory: layout.projectDirectory, writable: [tree] + grants.writable,
                                                    hidden: grants.hidden, pluginCache: grants.pluginCache,
                                                    credentials: try credentials(policy.planCredentialsFile, what: "plan"),
                                                    timeout: agent.terraform.planTimeout)
        let initialization: CommandResult
        do {
            initialization = try await runner.initialize(invocation, backendConfigFiles: layout.backendConfigFiles)
        } catch {
            throw RunFailure("terraform init could not run to read the outputs: \(safeDescription(error))")
        }
        await appendLog(initialization.output, stream: .verify, run: run.id)
        guard initialization.outcome == .succeeded else {
            throw RunFailure(commandFailure("init", initialization) + "; the outputs could not be read from the state")
        }
        let text: String
        do {
            text = String(decoding: try await runner.outputs(invocation), as: UTF8.self)
        } catch {
            throw RunFailure("the outputs could not be read from the state: \(safeDescription(error))")
        }
        do {
            try await store.setOutputs(text, target: run.target, runID: run.id, at: now())
        } catch {
            throw RunFailure("the outputs read from the state could not be stored: \(safeDescription(error))")
        }
        await appendLog("lockstep: this run stored no outputs after its apply; they were read again from the state before verify",
                        stream: .lockstep, run: run.id)
        return text
    }

    /// `argv[0]` of a verify command as an absolute path: `./x/y` (or `x/y`) inside the
    /// exported tree, resolved through symlinks and refused when it leaves the tree; a bare
    /// name searched on the agent's configured PATH (never the repository's).
    func resolveProgram(_ program: String, tree: URL, searchPath: String) throws(RunFailure) -> String {
        if program.contains("/") {
            let relative = program.hasPrefix("./") ? String(program.dropFirst(2)) : program
            let resolved: String
            do {
                resolved = try resolveInside(root: tree.path, relative: relative, keyPath: "verify")
            } catch {
                throw RunFailure("verify program \(programName(program)) was refused: \(error.description)")
            }
            guard FileManager.default.isExecutableFile(atPath: resolved) else {
                throw RunFailure("verify program \(programName(program)) is not an executable file")
            }
            return resolved
        }
        for directory in searchPath.split(separator: ":") {
            let candidate = String(directory) + "/" + program
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw RunFailure("verify program \(programName(program)) was not found on the agent's PATH")
    }

    func programName(_ program: String) -> String { displaySafe(program, limit: 80) }
}
