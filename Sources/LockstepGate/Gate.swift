import Foundation
public import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import TerraformRunner

/// The release gate of one agent: config, git, terraform and the store wired around the
/// core's rules (docs/CONTRACT.md §2–§4). The daemon and the tests drive it the same way:
///
/// * ``reconcile()`` — fetch, decide tags, compute desired revisions, create, supersede,
///   invalidate, plan, expire and apply runs. Call it on a timer and on webhooks.
/// * ``approve(run:identity:digest:)``, ``reject(run:identity:reason:)`` — review.
/// * ``apply(run:)`` — an apply trigger for an approved run (``reconcile()`` triggers too).
/// * ``rollback(environment:project:to:identity:)`` — a gated run of an earlier version.
/// * ``recover()`` at start-up, ``resolve(run:as:identity:reason:)`` for interrupted runs.
///
/// Invariants that protect production:
/// * **Persist first.** Every state change goes through ``RunStateMachine/handle(_:)`` and
///   each ``RunAction/persist(_:)`` is committed with the store's compare-and-set before any
///   action after it runs; when the compare-and-set fails, the remaining actions are
///   dropped. So after a kill -9 the store never shows less than what was done, and the
///   `approved → applying` step is the only gate to terraform apply: two triggers, or two
///   processes over one store, apply a plan at most once.
/// * **Credentials.** Plan uses only the environment's plan credentials. Apply credentials
///   are read from their file right before apply and handed only to that terraform process
///   (the runner redacts their values from everything); verify commands never get them.
/// * **Untrusted repository.** Each plan runs in a fresh `0700` directory exported from the
///   tagged commit (committed `.terraform/` and `terraform.d/` dropped); `lockstep.yaml` is
///   read from that tree and can never set a trust decision: any attempt fails the run and
///   the run says why.
/// * **Time** comes only from the injected clock, so expiry is tested without waiting.
///
/// Approval does not apply by itself: when the last required approval arrives the run is
/// `approved` and the next ``apply(run:)`` or ``reconcile()`` gathers the apply facts and
/// applies. This keeps an HTTP approve call short and makes every apply go through the
/// same trigger.
public actor Gate {
    /// The agent config this gate enforces (every trust decision).
    public nonisolated let agent: AgentConfig
    let store: any RunStore
    /// The delivery repository: the libgit2 mirror in production, a double in unit tests.
    let source: any ReleaseSource
    /// Terraform and verify programs: the ``TerraformRunner`` in production, a double in unit tests.
    let runner: any PlanRunner
    /// Parent of every run directory (created `0700`).
    public nonisolated let runsDirectory: URL
    let now: @Sendable () -> Date
    var logger: Logger

    /// The actor name written to the store for what the gate does by itself.
    public static let systemActor = "lockstep"

    /// The last layout read at the protected branch tip that was valid, and that tip. Kept in
    /// the store too (``RunStore/recordValidLayout(_:at:)``) and read back from it at the first
    /// pass, so a broken layout merged while the daemon was down does not empty the board.
    var lastGoodLayout: (tip: GitObjectID, config: RepoConfig)?
    /// Whether a valid layout is known (from the branch tip or the store): the targets come
    /// from it even while ``branchLayoutProblem`` says the tip's layout is not used.
    public var followsValidLayout: Bool { lastGoodLayout != nil }

    /// The refs the mirror skips now (a tag on a tree, a name too long to store, …), each
    /// with its reason: every other ref is still fetched.
    public func skippedRefs() async -> [SkippedRef] { await source.skippedRefs() }

    /// Runs resolved as applied whose verify is still to run (``verifyResolved(run:)``).
    var resolvedAwaitingVerify: Set<RunID> = []
    /// Tag names the listing refused (per target, with the reason), already logged.
    var loggedRefusedTags: [TargetID: Set<String>] = [:]
    /// Whether the stored last valid layout was read (once per process).
    var storedLayoutLoaded = false
    /// `lockstep.yaml` of recent commits, read and parsed once each (``repoConfig(at:)``).
    var parsedRepoConfigs: [GitObjectID: Result<(text: String, config: RepoConfig), ConfigErrors>] = [:]
    /// The same parses by text, so that commits with the same `lockstep.yaml` share one.
    var parsedLayouts: [String: Result<RepoConfig, ConfigErrors>] = [:]
    /// The branch tip whose layout was last examined, valid or not: an invalid tip is read
    /// once, not again on every pass.
    var examinedLayoutTip: GitObjectID?
    /// Why the layout at the protected branch tip is not used (an invalid `lockstep.yaml`
    /// was merged, or it could not be read), or nil when the tip's layout is in use. The
    /// targets keep coming from the last valid layout meanwhile; this is what status and
    /// readiness show so the problem is not silent.
    public internal(set) var branchLayoutProblem: String?
    /// Serialises reconcile, approvals, rejections, rollbacks and resolutions in this
    /// process (each is also safe across processes through the store's compare-and-set;
    /// serialising keeps two approvals from each counting without the other). A caller
    /// cancelled while it waits leaves the queue with a `CancellationError`.
    nonisolated let serialisation = AsyncSlots(1)
    /// The last tag decision this gate recorded (or found already recorded) per target and
    /// tag. A pass re-decides every tag; asking the store about each unchanged decision was a
    /// write transaction per tag per poll. Only a decision that differs goes to the store, which
    /// still keeps only changes (so a second gate on the same store stays correct).
    var recordedDecisions: [TargetID: [String: StoredTagDecision]] = [:]
    /// Targets a plan is running for in this process right now. A second pass, or a stale
    /// snapshot of a run, must not start a second terraform on the same target's state
    /// (the store's `queued → planning` compare-and-set stops it across processes too).
    var planningTargets: Set<TargetID> = []
    /// Targets whose last visit left them settled, with what that visit read (``TargetMemo``):
    /// a pass skips such a target while nothing it reads changed.
    var targetMemos: [TargetID: TargetMemo] = [:]
    /// Verifies release tag signatures for environments that require them (keeps its verdicts).
    let signatureVerifier: TagSignatureVerifier
    /// The signer files of every environment that requires signed tags, read at the start of
    /// each pass (an edit takes effect at the next pass).
    var signerTrusts: [EnvironmentName: Result<SignerTrust, GateError>] = [:]
    /// The audit log's last sequence when the last pass began (nil before the first pass): the
    /// next pass forgets the memos of the targets written after it.
    var auditPosition: UInt64?
    /// Plans stored with their text still to render, by run (``renderPendingText(of:)``).
    var pendingRenderings: [RunID: PendingRendering] = [:]
    /// The protected branch's tip validated last, and the one being validated now
    /// (``validateBranchIfNew()``); kept in memory: a restart validates the tip again.
    var lastBranchValidation: BranchValidation?
    var branchValidationRunning: GitObjectID?
    /// The `max_concurrent_plans` slots, across every pass, handed out in arrival order.
    nonisolated let planSlots: AsyncSlots

    /// - Parameters:
    ///   - agent: the validated agent config.
    ///   - store: where runs, decisions and the audit log live.
    ///   - mirror: the bare mirror of the delivery repository (synced by the gate).
    ///   - terraform: how terraform runs on this agent.
    ///   - runsDirectory: parent of the per-run directories.
    ///   - logger: never receives a secret or a plan body.
    ///   - now: the clock; tests pass a controllable one.
    public init(agent: AgentConfig, store: any RunStore, mirror: any ReleaseSource, terraform: TerraformRunner.Configuration,
                runsDirectory: URL, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        // Every command keeps what the agent's `limits:` allow of plan text, plan JSON and output.
        let runner = TerraformRunner(configuration: terraform, logger: logger)
            .limitingOutput(planTextBytes: agent.limits.planTextBytes, planJSONBytes: agent.limits.planJSONBytes,
                            commandOutputBytes: agent.limits.commandOutputBytes)
        self.init(agent: agent, store: store, mirror: mirror, runner: runner, runsDirectory: runsDirectory,
                  logger: logger, now: now)
    }

    /// The same with any ``PlanRunner`` instead of a terraform configuration (unit tests pass a
    /// double). The runner is used as given, output limits included.
    public init(agent: AgentConfig, store: any RunStore, mirror: any ReleaseSource, runner: any PlanRunner,
                runsDirectory: URL, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.agent = agent
        self.store = store
        self.source = mirror
        self.runner = runner
        self.planSlots = AsyncSlots(max(1, agent.maxConcurrentPlans))
        self.runsDirectory = runsDirectory
        self.logger = logger
        self.now = now
        self.signatureVerifier = TagSignatureVerifier(scratch: runsDirectory.deletingLastPathComponent().appendingPathComponent("signatures"))
    }

    // MARK: - Serialisation

    /// Runs `body` holding the gate's serialisation; throws `CancellationError` without
    /// running it when the caller is cancelled while waiting its turn.
    func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await serialisation.acquire()
        defer { serialisation.release() }
        return try await body()
    }

    /// Runs `body` with the serialisation let go, from inside ``exclusively(_:)``, and takes
    /// it back (after whoever queued meanwhile) before returning. For terraform apply in a
    /// pass: an approval of another target must not wait for it. `body` must be safe on
    /// its own (it goes through the store's compare-and-set, as ``apply(run:)`` does).
    func withoutSerialisation<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        serialisation.release()
        let result: Result<T, any Error>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        // Taken back even by a cancelled caller: ``exclusively(_:)`` gives it up on return.
        await serialisation.acquireIgnoringCancellation()
        return try result.get()
    }

    // MARK: - Public API

    /// One pass over the delivery repository and every served target (see the type's
    /// documentation). Problems with one target are reported and do not stop the others.
    ///
    /// The pass decides and records everything while holding the gate's serialisation, then
    /// lets go of it and plans the queued runs it found, up to `max_concurrent_plans` at
    /// once and never two on one target. Planning outside the serialisation is what keeps an
    /// approval of one target from waiting behind terraform planning another: each plan
    /// still goes through the store's `queued → planning` compare-and-set, so a run changed
    /// meanwhile (superseded, tag moved) is simply not planned.
    ///
    /// Cancelling the calling task (a stopping daemon) stops running plans: the runner kills
    /// terraform's process group and each such run goes back to `queued` (`plan_cancelled`),
    /// to be planned again from scratch by the next pass.
    ///
    /// - Parameter decided: called with the report once the fetch is done and every tag is
    ///   decided and recorded, before any plan starts (the daemon's readiness: a first pass
    ///   with a thousand tagged targets must not hold `READY=1` until each is planned).
    public func reconcile(decided: @Sendable (ReconcileReport) async -> Void = { _ in }) async throws -> ReconcileReport {
        var pass = try await exclusively { try await reconcilePass() }
        await decided(pass.report)
        await planQueued(pass.toPlan, report: &pass.report)
        return pass.report
    }

    /// Records an approval of `run` by `identity` quoting `digest`, or refuses it with a
    /// reason (recorded and audited; nothing else changes). See ``ApprovalRules``.
    public func approve(run id: RunID, identity: IdentityName, digest: Digest,
                        terms: ApprovalTerms = .none) async throws -> ApprovalOutcome {
        try await exclusively { try await approveRun(id, identity: identity, digest: digest, terms: terms) }
    }

    /// Ends a run before apply with a reason. Only an identity allowed to approve the
    /// environment may reject; a refused rejection is audited.
    public func reject(run id: RunID, identity: IdentityName, reason: String) async throws -> RunDecisionOutcome {
        try await exclusively { try await rejectRun(id, identity: identity, reason: reason) }
    }

    /// An apply trigger: checks every precondition right now and applies the run's plan if
    /// they hold and this trigger wins the `approved → applying` compare-and-set. Safe to
    /// call any number of times, concurrently, from several processes.
    public func apply(run id: RunID) async throws -> ApplyOutcome {
        guard let stored = try await store.run(id) else {
            throw GateError(.runNotFound, "no run \(id)")
        }
        return try await applyTrigger(stored)
    }

    /// Start-up: every run that is not final is fed `recoveredAfterCrash`. A run found in
    /// `planning` is re-queued; one found in `applying` becomes `interrupted` with an alert
    /// and is never applied again automatically. Returns the state each run is in afterwards.
    public func recover() async throws -> [RunID: RunState] {
        try await exclusively { try await recoverRuns() }
    }

    /// Settles an `interrupted` run after an operator looked at the infrastructure.
    public func resolve(run id: RunID, as resolution: OperatorResolution, identity: IdentityName,
                        reason: String) async throws -> RunDecisionOutcome {
        try await exclusively { try await resolveRun(id, as: resolution, identity: identity, reason: reason) }
    }

    /// Runs the verify of a run an operator resolved as applied (``resolve(run:as:identity:reason:)``
    /// leaves it `verifying`): the outputs are read again from the state, then the verify
    /// commands run. Returns the run's state afterwards, or nil when this process has no
    /// such verify pending (already run, or the run moved). A restart runs a pending verify
    /// through ``recover()``.
    public func verifyResolved(run id: RunID) async throws -> RunState? {
        guard resolvedAwaitingVerify.remove(id) != nil, let stored = try await store.run(id), stored.state == .verifying else {
            return nil
        }
        let event = await performVerify(stored)
        return try await exclusively { try await drive(stored, event, actor: Self.systemActor).state }
    }

    /// Starts a rollback of a target to an earlier accepted version (docs/CONTRACT.md §3): a normal,
    /// gated run, which pins the target at that version until a tag with a version higher
    /// than today's highest accepted one is accepted. A waiting run on the target is
    /// superseded. Returns the new run, `queued` (``reconcile()`` plans it).
    public func rollback(environment: EnvironmentName, project: ProjectName? = nil, to version: SemanticVersion,
                         identity: IdentityName) async throws -> StoredRun {
        try await exclusively { try await rollbackTarget(environment, project: project, to: version, identity: identity) }
    }

    // MARK: - Shared helpers

    /// Every run state that is not final.
    static let openStates: Set<RunState> = Set(RunState.allCases.filter { !$0.isFinal })

    func environmentPolicy(_ target: TargetID) -> EnvironmentPolicy? {
        agent.environments[target.environment]
    }

    /// Every identity the agent config defines.
    var knownIdentities: Set<IdentityName> {
        Set(agent.identities.keys)
    }

    /// Identities whose configured e-mail addresses match the run's tagger.
    func taggerIdentities(_ run: StoredRun) -> Set<IdentityName> {
        run.run.taggerEmail.map(identities(withEmail:)) ?? []
    }

    /// Identities whose configured e-mail addresses include `email`.
    func identities(withEmail email: String) -> Set<IdentityName> {
        var directory: [IdentityName: [String]] = [:]
        for identity in agent.identities.values { directory[identity.name] = identity.emails }
        return ApprovalRules.identities(matchingEmail: email, in: directory)
    }

    /// Identities who may not approve `run` because they signed its release tag (none where
    /// the environment says `signer_may_approve: true`).
    func signerIdentities(_ run: StoredRun, _ policy: EnvironmentPolicy) -> Set<IdentityName> {
        guard !policy.signerMayApprove, let email = run.run.signer?.principal else { return [] }
        return identities(withEmail: email)
    }

    /// Whether `identity` is one of the environment's approvers (who may also reject,
    /// resolve and roll back).
    func isApprover(_ identity: IdentityName, of policy: EnvironmentPolicy) -> Bool {
        knownIdentities.contains(identity) && policy.approvers.contains(identity)
    }

    /// A failure reason as reviewers see it (a run's transitions and log): the agent's own
    /// folders are named by their role, not their path. The daemon's log keeps the paths.
    func shownToReviewers(_ reason: String) -> String {
        var shown = reason
        let folders = [(runsDirectory.path, "<runs>"), (source.path, "<mirror>"),
                       (runsDirectory.deletingLastPathComponent().path, "<agent folder>")]
        for (path, role) in folders where path.count > 1 {
            shown = shown.replacingOccurrences(of: path, with: role)
        }
        return shown
    }

    func runDirectory(_ id: RunID) -> URL { runsDirectory.appendingPathComponent(id.rawValue, isDirectory: true) }
    /// Where `terraform plan -out` writes. The plan command may write it, and so may any process
    /// plan-time code left behind: it is read once right after the plan and then removed; nothing
    /// reads it again.
    func planFile(_ id: RunID) -> URL { runDirectory(id).appendingPathComponent("plan.tfplan") }
    /// The plan's bytes as they were hashed, in a folder no terraform or verify command is ever
    /// granted (the runs folder is hidden from them): the only source of every later copy.
    func sealedPlanFile(_ id: RunID) -> URL {
        runDirectory(id).appendingPathComponent("sealed", isDirectory: true).appendingPathComponent("plan.tfplan")
    }
    /// A fresh folder for one read-only copy of the sealed plan (`show`, `apply`).
    func planCopyFolder(_ id: RunID, for purpose: String) -> URL {
        runDirectory(id).appendingPathComponent("\(purpose)-plan", isDirectory: true)
    }
    func treeDirectory(_ id: RunID) -> URL { runDirectory(id).appendingPathComponent("tree", isDirectory: true) }

    func runLogger(_ run: StoredRun) -> Logger {
        var log = logger
        log[metadataKey: "run.id"] = "\(run.id)"
        log[metadataKey: "target"] = "\(run.target)"
        log[metadataKey: "git.commit"] = "\(run.run.commit)"
        return log
    }

    func appendLog(_ text: String, stream: LogStream, run: RunID) async {
        guard !text.isEmpty else { return }
        do {
            let (store, time, line) = (store, now(), text.hasSuffix("\n") ? text : text + "\n")
            try await uncancelled { try await store.appendLog(line, stream: stream, runID: run, at: time) }
        } catch {
            logger.warning("could not append to a run log", metadata: ["run.id": "\(run)", "error": "\(error)"])
        }
    }
}

/// A duration as the agent config writes it: `4h`, `90m`, `45s`.
func durationText(_ duration: Duration) -> String {
    let seconds = duration.components.seconds
    if seconds > 0 && seconds % 3_600 == 0 { return "\(seconds / 3_600)h" }
    if seconds > 0 && seconds % 60 == 0 { return "\(seconds / 60)m" }
    return "\(seconds)s"
}

/// Text safe for a transition reason or a status line: printable, one line, bounded.
func oneLine(_ text: String, limit: Int = 600) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        if out.unicodeScalars.count >= limit { out += "…"; break }
        if scalar == "\n" || scalar == "\r" || scalar == "\t" {
            if !out.hasSuffix(" ") && !out.hasSuffix("; ") { out += scalar == "\n" ? "; " : " " }
        } else if scalar.value >= 0x20 && scalar.value != 0x7F {
            out.unicodeScalars.append(scalar)
        }
    }
    return out.trimmingCharacters(in: .whitespaces)
}

extension Gate {
    /// The annotation of `run`'s tag as the run was made from it: nil when the tag now names
    /// another object (it moved), is gone, cannot be read, or is lightweight. Shown to reviewers.
    public func tagAnnotation(of run: StoredRun) async -> TagAnnotation? {
        guard let info = try? await source.tag(named: run.run.tagName), info.target == run.run.tagObject else { return nil }
        return info.annotation
    }

    /// The message of `run`'s commit (for a merged pull request, the merge's message), nil when
    /// it cannot be read.
    public func commitMessage(of run: StoredRun) async -> String? {
        guard let message = try? await source.commitMessage(run.run.commit, maxBytes: 4_000), !message.isEmpty else { return nil }
        return message
    }
}
