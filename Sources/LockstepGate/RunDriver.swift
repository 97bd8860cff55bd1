import Foundation
import LockstepConfig
import LockstepCore
import Logging
import RunStore

/// What happened while the gate drove one run.
struct DriveResult: Sendable {
    /// The run's state after the last committed transition (or as loaded).
    var state: RunState
    /// A compare-and-set failed: another trigger or process moved the run first, and
    /// every action after it was dropped.
    var lostRace = false
    var refusals: [RunEventRefusal] = []
    var approvalRefusal: ApprovalRefusal?
    var preconditions: ApplyPreconditionReport?
    var waitingForApplyWindow = false
    /// The machine asked for the apply facts; the gate stops there (see ``Gate``).
    var readyToApply = false
    /// This drive ran terraform apply.
    var applyStarted = false
    /// Why the apply failed, when it ran and failed.
    var applyFailure: String?
    var alerts: [RunAlert] = []
    /// States committed during this drive, in order.
    var committed: [RunState] = []
    /// The drive stopped at the start of verify (the caller asked it to): the run is
    /// `verifying` and its verify is still to run.
    var verifyDeferred = false
}

extension Gate {
    /// Feeds `event` to the run's state machine and performs the actions it returns, in
    /// order, feeding the events that side effects produce (plan result, check result,
    /// apply result, verify result) until the machine has nothing more to do.
    ///
    /// Every ``RunAction/persist(_:)`` is committed with ``RunStore/transition(_:_:update:at:actor:)``
    /// (a compare-and-set on `from`) before the next action runs; a failed compare-and-set
    /// drops every remaining action. That ordering is what makes "stored before its side
    /// effect starts" and "applied at most once" hold. A ``RunAction/recordApproval(_:)``
    /// directly followed by the persist it causes is committed together with it, in one
    /// transaction (``RunStore/recordApproval(_:completing:at:actor:)``).
    ///
    /// With `deferVerify` the drive stops where verify would start (``DriveResult/verifyDeferred``):
    /// for callers answering a request, which must not run commands for minutes.
    func drive(_ loaded: StoredRun, _ first: RunEvent, actor: String, deferVerify: Bool = false) async throws -> DriveResult {
        var machine: RunStateMachine
        do {
            machine = try RunStateMachine(restoring: loaded.state, planDigest: loaded.planDigest,
                                          hasVerifyCommands: loaded.run.hasVerifyCommands)
        } catch {
            throw GateError(.corruptRun, "run \(loaded.id) cannot be restored: \(error.description)")
        }
        var run = loaded
        var result = DriveResult(state: loaded.state)
        var events: [RunEvent] = [first]
        var pendingUpdate = RunUpdate()
        let log = runLogger(loaded)

        /// Notes a committed transition in the run as this drive sees it.
        func committed(_ transition: RunTransition, _ update: RunUpdate) {
            run.state = transition.to
            if let digest = update.planDigest { run.planDigest = digest }
            if let plan = update.plan { run.plan = plan }
            run.lastReason = transition.reason.code
            result.state = transition.to
            result.committed.append(transition.to)
            log.info("run moved", metadata: ["run.from": "\(transition.from)", "run.to": "\(transition.to)",
                                             "run.reason": "\(transition.reason.code)"])
        }
        func lost(_ transition: RunTransition) async -> DriveResult {
            log.info("compare-and-set lost; dropping the remaining actions",
                     metadata: ["run.from": "\(transition.from)", "run.to": "\(transition.to)"])
            result.lostRace = true
            pendingRenderings[run.id] = nil
            await afterLostRace(run, transition: transition)
            return result
        }

        while !events.isEmpty {
            let event = events.removeFirst()
            var actions = machine.handle(event)[...]
            while let action = actions.popFirst() {
                switch action {
                case .persist(let transition):
                    let update = pendingUpdate
                    pendingUpdate = RunUpdate()
                    var steps = [RunStep(transition, update: update)]
                    // A plan's checks read only the plan just made: their verdict is decided before
                    // the plan is stored, and both go to the store in one transaction (one wait for
                    // the disk fewer between a tag and a reviewable plan).
                    if case .runChecks? = actions.first, !hasExternalChecks(run) {
                        actions.removeFirst()
                        var planned = run
                        if let digest = update.planDigest { planned.planDigest = digest }
                        if let plan = update.plan { planned.plan = plan }
                        var following = machine.handle(runChecks(planned))[...]
                        if case .persist(let verdict)? = following.first {
                            following.removeFirst()
                            steps.append(RunStep(verdict))
                        }
                        actions = ArraySlice(Array(actions) + following)
                    }
                    let (store, id, time, taken) = (store, run.id, now(), steps)
                    let stored = try await uncancelled {
                        taken.count == 1
                            ? try await store.transition(id, transition, update: update, at: time, actor: actor)
                            : try await store.transition(id, through: taken, at: time, actor: actor)
                    }
                    guard stored else { return await lost(transition) }
                    for step in steps { committed(step.transition, step.update) }

                case .startPlan:
                    let started = ContinuousClock.now
                    let (next, update) = await performPlan(run)
                    GateMetrics.planFinished(run.target.environment, next, after: ContinuousClock.now - started)
                    pendingUpdate = update
                    events.append(next)

                case .cancelPlan:
                    // Plans run inside the task that started them; that task's own
                    // compare-and-set (planning → …) fails and it discards its plan file.
                    break

                case .runChecks:
                    // External checks run after the plan is stored: the run shows `checking`
                    // while they run, and a restart finds it there and runs them again.
                    let (next, update) = await performChecks(run)
                    pendingUpdate = update
                    events.append(next)

                case .requestApprovals(let digest):
                    log.info("plan awaiting approval", metadata: ["plan.digest": "\(digest)"])

                case .recordApproval(let approval):
                    // The approval and the transition it completes are one store transaction:
                    // stored apart, a crash between them would leave the run waiting with
                    // enough approvals and its approver refused as a duplicate on retry.
                    var next: RunTransition?
                    if case .persist(let transition) = actions.first {
                        next = transition
                        actions.removeFirst()
                    }
                    let completing = next
                    let (store, time) = (store, now())
                    let stored = try await uncancelled {
                        try await store.recordApproval(approval, completing: completing, at: time, actor: actor)
                    }
                    if let completing {
                        guard stored else { return await lost(completing) }
                        pendingUpdate = RunUpdate()
                        committed(completing, RunUpdate())
                    }

                case .recordApprovalRefusal(let refusal):
                    try await store.recordApprovalRefusal(refusal, at: now(), actor: actor)
                    result.approvalRefusal = refusal

                case .recordApplyPreconditions(let report):
                    try await store.recordApplyPreconditions(report, runID: run.id, at: now(), actor: actor)
                    result.preconditions = report

                case .checkApplyPreconditions:
                    result.readyToApply = true

                case .waitForApplyWindow:
                    result.waitingForApplyWindow = true

                case .startApply(let digest):
                    result.applyStarted = true
                    let started = ContinuousClock.now
                    let next = await performApply(run, digest: digest)
                    GateMetrics.applyFinished(run.target.environment, next, after: ContinuousClock.now - started)
                    if case .applyFailed(let reason) = next { result.applyFailure = reason }
                    events.append(next)

                case .deletePlanFile:
                    removePlanFile(run.id)

                case .startVerify:
                    if deferVerify {
                        result.verifyDeferred = true
                        return result
                    }
                    events.append(await performVerify(run))

                case .raiseAlert(let alert):
                    if try await raiseAlertOnce(alert, target: run.target, runID: run.id, actor: actor) {
                        result.alerts.append(alert)
                    }

                case .refuse(let refusal):
                    try await store.appendAudit(kind: .refusal, target: run.target, runID: run.id,
                                                payload: ["event": refusal.event, "state": refusal.state.rawValue,
                                                          "reason": refusal.description],
                                                at: now(), actor: actor)
                    result.refusals.append(refusal)
                }
            }
        }
        // The plan is stored and its run moved on (awaiting approval, or failed its checks):
        // now its text, while the tree `show` reads is still there.
        await renderPendingText(of: run)
        // A run that ended, or a plan stopped and queued again, keeps nothing on disk: the
        // next plan starts from a fresh export.
        if machine.state.isFinal || (machine.state == .queued && result.committed.last == .queued) {
            removeRunDirectory(run.id)
        }
        return result
    }

    /// After a lost compare-and-set. A planner that lost (the run was superseded or its tag
    /// moved while terraform ran) removes what it wrote once the run has ended; nothing else
    /// is touched, because the winner may be using it (an apply in progress).
    private func afterLostRace(_ run: StoredRun, transition: RunTransition) async {
        guard transition.from == .planning else { return }
        if let now = try? await store.run(run.id), now.state.isFinal {
            removeRunDirectory(run.id)
        }
    }

    /// Runs a short store write to its end even when the calling task is cancelled (the
    /// store refuses work for a cancelled task). What terraform did, or that a stopped plan
    /// was re-queued, must be recorded: a stop must not leave a run `planning` until the
    /// next start, nor lose a transition whose side effect already happened.
    func uncancelled<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        // An unstructured task does not inherit the caller's cancellation.
        try await Task { try await body() }.value
    }

    /// Raises an alert unless the same alert code is already raised for the run (a moved
    /// tag found on every poll must not flood the store). Returns whether it was raised.
    func raiseAlertOnce(_ alert: RunAlert, target: TargetID, runID: RunID?, actor: String) async throws -> Bool {
        let existing = try await store.alerts(target: target)
        if existing.contains(where: { $0.runID == runID && $0.alert.code == alert.code
                                      && (runID != nil || $0.alert.description == alert.description) }) {
            return false
        }
        try await store.raiseAlert(alert, target: target, runID: runID, at: now(), actor: actor)
        logger.warning("alert raised", metadata: ["target": "\(target)", "alert.code": "\(alert.code)",
                                                  "run.id": "\(runID.map(\.rawValue) ?? "-")"])
        return true
    }

    func removeRunDirectory(_ id: RunID) {
        let url = runDirectory(id)
        if FileManager.default.fileExists(atPath: url.path) {
            try? FileManager.default.removeItem(at: url)
        }
    }

    /// The built-in checks over the stored plan's model.
    func runChecks(_ run: StoredRun) -> RunEvent {
        guard let policy = environmentPolicy(run.target) else {
            return .checksFailed(reasons: ["this agent has no policy for environment \(run.target.environment)"])
        }
        guard run.plan != nil else { return .checksFailed(reasons: ["the run has no stored plan"]) }
        let checks = checks(of: run, policy)
        return checks.passed ? .checksPassed : .checksFailed(reasons: checks.failures)
    }

    /// What the approval rules need to know about a run with a plan digest.
    func approvalContext(_ run: StoredRun, _ policy: EnvironmentPolicy, digest: Digest) -> ApprovalContext {
        ApprovalContext(runID: run.id, state: run.state, planDigest: digest, taggerIdentities: taggerIdentities(run),
                        knownIdentities: knownIdentities, signerIdentities: signerIdentities(run, policy),
                        failedChecks: run.plan?.checkResults.overridableFailures ?? [])
    }

    /// Whether the run's environment has external checks (which run apart from the plan's
    /// store transaction).
    func hasExternalChecks(_ run: StoredRun) -> Bool {
        !(environmentPolicy(run.target)?.checks.isEmpty ?? true)
    }

    /// The approval policy of a run: the environment's, with one more approval required when
    /// the plan destroys a protected resource type (see ``PlanChecks``), and one more when a
    /// failed external check is to be overridden.
    func approvalPolicy(for run: StoredRun, _ policy: EnvironmentPolicy) throws -> ApprovalPolicy {
        var required = policy.approvals
        if run.plan != nil, checks(of: run, policy).needsExtraApproval {
            required += 1
        }
        if !(run.plan?.checkResults.overridableFailures.isEmpty ?? true) {
            required += 1
        }
        let seconds = Double(policy.approvalTTL.components.seconds)
        do {
            return try ApprovalPolicy(requiredApprovals: required,
                                      allowedIdentities: Set(policy.approvers),
                                      taggerMayApprove: policy.taggerMayApprove, approvalLifetime: seconds,
                                      breakGlassMembers: Set(policy.breakGlass?.members ?? []))
        } catch {
            throw GateError(.notAllowed, "the approval policy of \(run.target.environment) cannot be met: \(error.description)")
        }
    }
}
