import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore

extension Gate {
    func approveRun(_ id: RunID, identity: IdentityName, digest: Digest, terms: ApprovalTerms) async throws -> ApprovalOutcome {
        guard let run = try await store.run(id) else { throw GateError(.runNotFound, "no run \(id)") }
        guard let policy = environmentPolicy(run.target) else {
            throw GateError(.unknownTarget, "this agent has no policy for environment \(run.target.environment)")
        }
        let approval = Approval(runID: id, identity: identity, digest: digest, time: now(),
                                overrideChecks: terms.overrideChecks.map { oneLine($0, limit: 100) },
                                breakGlass: terms.breakGlass, reason: terms.reason.map { oneLine($0, limit: 500) })
        guard let planDigest = run.planDigest else {
            // No plan yet: nothing to bind an approval to.
            let refusal = ApprovalRefusal(code: .runNotAwaitingApproval, approval: approval,
                                          description: "run \(id) is \(run.state.rawValue), not awaiting approval")
            try await store.recordApprovalRefusal(refusal, at: now(), actor: identity.rawValue)
            return .refused(refusal)
        }
        let approvalPolicy = try approvalPolicy(for: run, policy)
        let context = approvalContext(run, policy, digest: planDigest)
        let existing = try await store.approvals(of: id)
        let decision = ApprovalRules.decide(approval, for: context, existing: existing, policy: approvalPolicy, now: now())
        if case .refused(let refusal) = decision, refusal.code == .duplicateIdentity, run.state == .awaitingApproval {
            // A retry by someone whose approval is already stored. If the stored approvals
            // already meet the policy the run should have moved (a store written before an
            // approval and its transition were one transaction could keep the approval
            // alone after a crash): move it now rather than leave it stuck behind a refusal.
            let valid = ApprovalRules.validApprovals(existing, for: context, policy: approvalPolicy, now: now()).count
            if valid >= approvalPolicy.requiredApprovals {
                let moved = try await drive(run, .approvalsAlreadySufficient(validApprovals: valid,
                                                                            required: approvalPolicy.requiredApprovals),
                                            actor: identity.rawValue)
                if moved.state == .approved {
                    logger.warning("run approved on a retry: its approvals were already stored",
                                   metadata: ["run.id": "\(id)", "identity": "\(identity)"])
                    return .approved
                }
            }
        }
        let result = try await drive(run, .approvalRecorded(decision), actor: identity.rawValue)
        if let refusal = result.approvalRefusal {
            logger.info("approval refused", metadata: ["run.id": "\(id)", "identity": "\(identity)",
                                                       "refusal": "\(refusal.code)"])
            return .refused(refusal)
        }
        if result.state == .approved { return .approved }
        if case .accepted(_, let valid, let required) = decision { return .recorded(valid: valid, required: required) }
        return .recorded(valid: 0, required: approvalPolicy.requiredApprovals)
    }

    func rejectRun(_ id: RunID, identity: IdentityName, reason: String) async throws -> RunDecisionOutcome {
        guard let run = try await store.run(id) else { throw GateError(.runNotFound, "no run \(id)") }
        guard let policy = environmentPolicy(run.target), isApprover(identity, of: policy) else {
            let why = "\(identity) may not reject runs of \(run.target.environment)"
            try await store.appendAudit(kind: .refusal, target: run.target, runID: id,
                                        payload: ["event": "rejected", "state": run.state.rawValue, "reason": why],
                                        at: now(), actor: identity.rawValue)
            return .refused(why)
        }
        let result = try await drive(run, .rejected(by: identity, reason: oneLine(reason, limit: 500)), actor: identity.rawValue)
        if let refusal = result.refusals.first { return .refused(refusal.description) }
        if result.lostRace { return .refused("run \(id) changed state while it was being rejected") }
        return .done(result.state)
    }

    func recoverRuns() async throws -> [RunID: RunState] {
        var states: [RunID: RunState] = [:]
        for run in try await store.runs(target: nil, states: Self.openStates) {
            let result = try await drive(run, .recoveredAfterCrash, actor: Self.systemActor)
            states[run.id] = result.state
            if !result.committed.isEmpty {
                logger.warning("run recovered after a restart", metadata: ["run.id": "\(run.id)", "run.from": "\(run.state)",
                                                                            "run.to": "\(result.state)"])
            }
        }
        return states
    }

    func resolveRun(_ id: RunID, as resolution: OperatorResolution, identity: IdentityName,
                    reason: String) async throws -> RunDecisionOutcome {
        guard let run = try await store.run(id) else { throw GateError(.runNotFound, "no run \(id)") }
        guard let policy = environmentPolicy(run.target), isApprover(identity, of: policy) else {
            let why = "\(identity) may not resolve runs of \(run.target.environment)"
            try await store.appendAudit(kind: .refusal, target: run.target, runID: id,
                                        payload: ["event": "operator_resolved", "state": run.state.rawValue, "reason": why],
                                        at: now(), actor: identity.rawValue)
            return .refused(why)
        }
        // Verify (which reads the outputs again from the state first) runs after the answer,
        // through ``verifyResolved(run:)``: never inside the operator's request.
        let result = try await drive(run, .operatorResolved(as: resolution, by: identity), actor: identity.rawValue,
                                     deferVerify: true)
        if result.verifyDeferred { resolvedAwaitingVerify.insert(id) }
        if let refusal = result.refusals.first { return .refused(refusal.description) }
        if result.lostRace { return .refused("run \(id) changed state while it was being resolved") }
        await appendLog("lockstep: resolved as \(resolution.rawValue) by \(identity): \(oneLine(reason, limit: 500))",
                        stream: .lockstep, run: id)
        return .done(result.state)
    }

    func rollbackTarget(_ environment: EnvironmentName, project: ProjectName?, to version: SemanticVersion,
                        identity: IdentityName) async throws -> StoredRun {
        guard let policy = agent.environments[environment], policy.serves else {
            throw GateError(.unknownTarget, "this agent does not serve environment \(environment)")
        }
        guard isApprover(identity, of: policy) else {
            try await store.appendAudit(kind: .refusal, target: nil, runID: nil,
                                        payload: ["event": "rollback", "environment": environment.rawValue,
                                                  "reason": "\(identity) may not roll back \(environment)"],
                                        at: now(), actor: identity.rawValue)
            throw GateError(.notAllowed, "\(identity) may not roll back \(environment)")
        }
        do {
            _ = try await source.sync()
        } catch {
            throw GateError(.repository, "the delivery repository could not be fetched: \(error.description)")
        }
        var report = ReconcileReport()
        let served = try await servedTargets(report: &report).filter {
            $0.target.environment == environment && (project == nil || $0.target.project == project)
        }
        guard served.count == 1, let target = served.first else {
            throw GateError(.unknownTarget, project == nil
                            ? "name the project: \(environment) has \(served.count) targets"
                            : "no served target \(project.map(\.rawValue) ?? "")/\(environment)")
        }
        let decisions = try await store.tagDecisions(for: target.target).filter(\.accepted)
        let accepted = decisions.compactMap { decision -> AcceptedTag? in
            guard let version = decision.version, let commit = decision.commit else { return nil }
            return AcceptedTag(name: decision.tagName, version: version, commit: commit)
        }
        let pin: RollbackPin
        do {
            pin = try RollbackPin.pin(to: version, accepted: accepted)
        } catch {
            throw GateError(.versionNotAccepted, error.description)
        }
        let matching = decisions.filter { $0.version?.hasSamePrecedence(as: version) == true }
        guard matching.count == 1, let decision = matching.first else {
            throw GateError(.versionNotAccepted, "\(matching.count) accepted tags have version \(version); Lockstep does not guess")
        }
        let info: TagInfo
        do {
            info = try await source.tag(named: decision.tagName)
        } catch {
            throw GateError(.versionNotAccepted, "the tag of \(version) could not be read: \(error.description)")
        }
        guard info.target == decision.tagObject else {
            throw GateError(.versionNotAccepted, "the tag of \(version) moved since it was accepted; it is not followed")
        }
        if let open = try await store.runSummaries(target: target.target, states: Self.openStates).first, !open.state.isBeforeApply {
            throw GateError(.targetBusy, "run \(open.id) on \(target.target) is \(open.state); roll back once it has finished")
        }
        // Signed like any run of the environment: apply checks the signer again against this one.
        let candidate = Candidate(info: info, version: decision.version ?? version, object: info.target, commit: info.commit,
                                  tree: info.tree, signer: try await verifiedSigner(of: info, policy))
        guard let run = try await ensureRun(for: candidate, served: target, rollbackPin: pin, actor: identity.rawValue,
                                            report: &report) else {
            throw GateError(.targetBusy, "another run was created on \(target.target) first")
        }
        logger.info("rollback requested", metadata: ["target": "\(target.target)", "version": "\(version)",
                                                     "identity": "\(identity)"])
        return run
    }
}
