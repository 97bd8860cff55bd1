import Foundation
public import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore

/// One release tag of a target as the gate saw it in this pass.
struct Candidate: Sendable {
    var info: TagInfo
    var version: SemanticVersion
    var object: GitObjectID
    var commit: GitObjectID
    var tree: GitObjectID
    /// The verified signer, where the environment requires signed tags.
    var signer: TagSigner?
}

/// What the serialised part of a pass decided: its report so far and the queued runs
/// to plan once the serialisation is released.
struct ReconcilePass: Sendable {
    var report: ReconcileReport
    var toPlan: [StoredRun]
    /// What falls due later without anything else changing (see ``QuietPass``).
    var due = DueLater()
}

/// The rules of a pass that act on the clock alone, as the pass left them.
struct DueLater: Sendable {
    /// The earliest moment the approvals of a run waiting for them expire.
    var approvalsExpireAt: Date?
    /// Environments with an approved run held back by a closed apply window.
    var heldByWindow: Set<EnvironmentName> = []
    /// Something the pass must do again on the next poll whatever else happens (an approved
    /// run whose window was open but which is still approved: its apply trigger was deferred).
    var retryNextPass = false

    /// Adds what falls due for one more target.
    mutating func merge(_ other: DueLater) {
        if let expiry = other.approvalsExpireAt { approvalsExpireAt = min(approvalsExpireAt ?? expiry, expiry) }
        heldByWindow.formUnion(other.heldByWindow)
        retryNextPass = retryNextPass || other.retryNextPass
    }
}

/// A release source that can tell whether its refs may have changed since an earlier moment.
/// The libgit2 mirror can (``GitMirror/refWrites()``); a pass over a source that cannot is
/// never skipped.
public protocol RefWriteCounting: ReleaseSource {
    /// Changes whenever a sync may have written a ref, and only then.
    func refWrites() async -> UInt64
}

extension GitMirror: RefWriteCounting {}

/// What a pass that ended with nothing left to do remembers, so that the next poll can tell
/// with three cheap reads — the mirror's ref-write count, the store's audit head and the
/// clock — that nothing the pass depends on changed, and skip re-deciding every tag of every
/// target (docs/ARCHITECTURE.md).
///
/// Why this is enough: a pass reads only the mirror's refs and the objects they name
/// (immutable), the store, the agent config (fixed for the process) and the clock. Every
/// write to the mirror's refs changes the ref-write count, whoever synced (a pass, an apply
/// re-resolving its tag, a rollback); every write to the store that a pass reads comes with
/// an audit entry, so the audit head changes, whichever process or API call wrote it. Both
/// are read at the start of the pass that made the memo, so what changed while it ran makes
/// the next pass a full one. The clock acts only through the approval lifetime and apply
/// windows, which the memo keeps as a deadline and as the windows to watch.
public struct QuietPass: Sendable, Equatable {
    let refWrites: UInt64
    let auditHead: AuditHash
    let approvalsExpireAt: Date?
    let heldByWindow: Set<EnvironmentName>
    /// Problems of that pass that are still true (the invalid layout at the branch tip).
    let problems: [String]
    /// The signer files' digests that pass read (an edited file makes the next pass full).
    var signerDigests: [EnvironmentName: String] = [:]
}

/// One poll: the pass's report, whether it was skipped, and what the next poll compares.
public struct PollResult: Sendable {
    public var report: ReconcileReport
    /// True when nothing the pass depends on had changed: nothing was decided or driven.
    public var skipped: Bool
    /// Hand this to the next ``Gate/poll(after:decided:)``; nil when the next pass must run in full.
    public var quiet: QuietPass?
}

/// A target this agent serves, with the rules that read its tags.
struct ServedTarget: Sendable {
    var target: TargetID
    var policy: EnvironmentPolicy
    var pattern: TagPattern
}

extension Gate {
    /// Code of the alert raised when a desired tag moved and is therefore not followed.
    public static let tagNotFollowed = RunAlert.Code(rawValue: "tag_moved_not_followed")
    /// Code of the alert raised when a rollback pin names a version whose tag is gone.
    public static let pinnedTagMissing = RunAlert.Code(rawValue: "pinned_tag_missing")
    /// Code of the alert raised when two accepted tags share the winning version.
    public static let ambiguousVersion = RunAlert.Code(rawValue: "ambiguous_version")

    /// ``reconcile(decided:)``, skipped when nothing it depends on changed since the pass that
    /// returned `quiet` (see ``QuietPass``): then the fetch, the ref-write count and the audit
    /// head are all it reads, and the report repeats that pass's remaining problems. The
    /// daemon's poll loop calls this; a caller without a memo gets a full pass.
    public func poll(after quiet: QuietPass?,
                     decided: @Sendable (ReconcileReport) async -> Void = { _ in }) async throws -> PollResult {
        let locked = try await exclusively { try await pollPass(after: quiet) }
        var pass = locked.pass
        await decided(pass.report)
        await planQueued(pass.toPlan, report: &pass.report)
        return PollResult(report: pass.report, skipped: locked.skipped, quiet: locked.quiet)
    }

    private func pollPass(after quiet: QuietPass?) async throws -> (pass: ReconcilePass, quiet: QuietPass?, skipped: Bool) {
        let fetch = try await fetchForPass()
        guard let counting = source as? any RefWriteCounting else {
            return (try await reconcilePass(fetch: fetch), nil, false)
        }
        // Read before the pass reads anything: a write made while it runs makes the next pass full.
        let writes = await counting.refWrites()
        let head: AuditHash
        do {
            head = try await store.auditHead()
        } catch {
            throw GateError(.store, "the store could not be read: \(safeDescription(error))")
        }
        loadSignerTrusts()
        if let quiet, quiet.refWrites == writes, quiet.auditHead == head, !fallsDue(quiet), quiet.signerDigests == signerDigests {
            var report = ReconcileReport()
            report.problems = quiet.problems
            return (ReconcilePass(report: report, toPlan: []), quiet, true)
        }
        let pass = try await reconcilePass(fetch: fetch)
        return (pass, await quietMemo(after: pass, refWrites: writes, auditHead: head), false)
    }

    /// Whether a rule that acts on the clock alone is due now for what `quiet` remembers.
    private func fallsDue(_ quiet: QuietPass) -> Bool {
        let moment = now()
        if let expiry = quiet.approvalsExpireAt, moment >= expiry { return true }
        return quiet.heldByWindow.contains { agent.environments[$0]?.applyAllowed(at: moment) ?? true }
    }

    /// The memo of a full pass, or nil when the next pass must run in full anyway: runs were
    /// queued (planned after the pass, or deferred), a target failed or a tag could not be
    /// read (worth retrying), an approved run is still to be applied, or the layout at the
    /// branch tip could not be read and is to be read again.
    private func quietMemo(after pass: ReconcilePass, refWrites: UInt64, auditHead: AuditHash) async -> QuietPass? {
        guard pass.toPlan.isEmpty, !pass.due.retryNextPass,
              pass.report.problems.allSatisfy({ $0 == branchLayoutProblem }),
              let tip = try? await source.branchTip(agent.repository.branch),
              examinedLayoutTip == tip || lastGoodLayout?.tip == tip else { return nil }
        return QuietPass(refWrites: refWrites, auditHead: auditHead, approvalsExpireAt: pass.due.approvalsExpireAt,
                         heldByWindow: pass.due.heldByWindow, problems: pass.report.problems, signerDigests: signerDigests)
    }

    private func fetchForPass() async throws -> FetchReport {
        let started = ContinuousClock.now
        do {
            let report = try await source.sync()
            GateMetrics.fetched(after: ContinuousClock.now - started, failed: false)
            return report
        } catch {
            GateMetrics.fetched(after: ContinuousClock.now - started, failed: true)
            throw GateError(.repository, "the delivery repository could not be fetched: \(error.description)")
        }
    }

    func reconcilePass(fetch prefetched: FetchReport? = nil) async throws -> ReconcilePass {
        var report = ReconcileReport()
        var toPlan: [StoredRun] = []
        var due = DueLater()
        let fetch: FetchReport
        if let prefetched {
            fetch = prefetched
        } else {
            fetch = try await fetchForPass()
        }
        report.tagsCreated = fetch.createdTags.map(\.name)
        report.tagsMoved = fetch.movedTags.map(\.name)
        report.tagsDeleted = fetch.deletedTags.map(\.name)
        let targets = try await servedTargets(report: &report)
        loadSignerTrusts()
        // One trip to the mirror for every target's tags, and one read of what the store wrote
        // since the last pass: together they say which targets can be skipped (``TargetMemo``).
        let inputs = await source.releaseInputs(for: targets.map(\.query), protectedBranch: agent.repository.branch)
        try await forgetWrittenTargets()

        // A moved or deleted tag is never followed silently (docs/CONTRACT.md §3): say so on every
        // target whose pattern it matches, even when no run uses it any more.
        for change in fetch.movedTags + fetch.deletedTags {
            for served in targets where served.pattern.match(change.name, target: served.target) != .noMatch {
                let what = change.new == nil ? "was deleted" : "moved from \(change.old?.short ?? "?") to \(change.new?.short ?? "?")"
                let alert = RunAlert(code: .tagMoved, description: "release tag \"\(displaySafe(change.name))\" \(what); it is not followed")
                if try await raiseAlertOnce(alert, target: served.target, runID: nil, actor: Self.systemActor) {
                    report.alertsRaised.append(alert)
                }
            }
        }

        report.targetsServed = targets.count
        // A target the layout no longer has starts afresh if it comes back.
        let servedNow = Set(targets.map(\.target))
        targetMemos = targetMemos.filter { servedNow.contains($0.key) }
        var visited: Set<TargetID> = []
        for (served, input) in zip(targets, inputs) {
            let target = served.target
            let trust = signerDigests[target.environment]
            let digest = try? TargetMemo.digest(of: input.get(), query: served.query, trust: trust)
            let sourceVisited = served.policy.promoteFrom.map {
                visited.contains(TargetID(project: target.project, environment: $0))
            } ?? false
            if let memo = targetMemos[target], memo.inputs == digest, !sourceVisited,
               !memo.fallsDue(at: now(), policy: served.policy) {
                due.merge(DueLater(approvalsExpireAt: memo.approvalsExpireAt, heldByWindow: memo.heldByWindow ? [target.environment] : []))
                continue
            }
            targetMemos[target] = nil
            visited.insert(target)
            report.targetsVisited.append(target)
            var targetDue = DueLater()
            let (queuedBefore, problemsBefore) = (toPlan.count, report.problems.count)
            do {
                let releases: ReleaseInputs
                do {
                    releases = try input.get()
                } catch {
                    throw GateError(.repository, "the tags of \(target) could not be listed: \(error.description)")
                }
                try await reconcile(served, inputs: releases, report: &report, toPlan: &toPlan, due: &targetDue)
                if let digest, toPlan.count == queuedBefore, report.problems.count == problemsBefore, !targetDue.retryNextPass {
                    targetMemos[target] = TargetMemo(inputs: digest, approvalsExpireAt: targetDue.approvalsExpireAt,
                                                     heldByWindow: !targetDue.heldByWindow.isEmpty)
                }
            } catch {
                let problem = "\(target): \(safeDescription(error))"
                logger.error("target reconcile failed", metadata: ["target": "\(target)", "error": "\(problem)"])
                report.problems.append(problem)
            }
            due.merge(targetDue)
        }
        return ReconcilePass(report: report, toPlan: toPlan, due: due)
    }

    /// The targets this agent serves: every served environment × every project of the
    /// layout at the protected branch tip, sources of promotion first (so a tree verified
    /// in staging in this pass is promoted in the same pass).
    ///
    /// When the tip's `lockstep.yaml` is invalid, the last valid layout is used and the
    /// problem is reported: a broken layout merged to the branch must not make the agent
    /// forget its targets (the runs of such a commit fail with the reason instead).
    func servedTargets(report: inout ReconcileReport) async throws -> [ServedTarget] {
        let branch = agent.repository.branch
        let tip: GitObjectID
        do {
            tip = try await source.branchTip(branch)
        } catch {
            throw GateError(.repository, "the protected branch could not be read: \(error.description)")
        }
        if !storedLayoutLoaded {
            storedLayoutLoaded = true
            await loadStoredLayout(branch: branch)
        }
        if examinedLayoutTip != tip && lastGoodLayout?.tip != tip {
            // An invalid layout stays invalid at this tip: read once. One that could not be
            // read (a full disk, a broken mirror) is read again on the next pass.
            if await examineLayout(at: tip, branch: branch) { examinedLayoutTip = tip }
        }
        if let problem = branchLayoutProblem { report.problems.append(problem) }
        let layout = lastGoodLayout?.config
        guard let layout else {
            throw GateError(.layout, "no valid lockstep.yaml has been seen on \(branch) yet; no target is known")
        }
        let pattern: TagPattern
        do {
            pattern = try TagPattern(agent.tagPattern(projectCount: layout.projects.count))
        } catch {
            throw GateError(.layout, "the tag pattern is invalid: \(error.description)")
        }
        if !pattern.includesProject && layout.projects.count != 1 {
            throw GateError(.layout, "tag pattern \(pattern) has no {project} but lockstep.yaml defines \(layout.projects.count) projects")
        }
        var targets: [ServedTarget] = []
        for (environment, policy) in agent.environments where policy.serves {
            for project in layout.projects.keys {
                targets.append(ServedTarget(target: TargetID(project: project, environment: environment),
                                            policy: policy, pattern: pattern))
            }
        }
        var depth: [EnvironmentName: Int] = [:]
        for environment in agent.environments.keys { depth[environment] = promotionDepth(environment) }
        return targets.sorted {
            let (a, b) = (depth[$0.target.environment] ?? 0, depth[$1.target.environment] ?? 0)
            return a != b ? a < b : $0.target < $1.target
        }
    }

    /// Reads the layout at the protected branch tip. A valid one replaces the last valid layout,
    /// here and in the store; an invalid or unreadable one sets ``branchLayoutProblem`` and
    /// changes nothing else: the targets keep coming from the last valid layout, never from a
    /// layout nobody could check.
    /// Returns whether the answer is final for this tip (valid, or invalid as written).
    private func examineLayout(at tip: GitObjectID, branch: String) async -> Bool {
        let text: String
        let config: RepoConfig
        do {
            (text, config) = try await repoConfig(at: tip)
        } catch let error as ConfigErrors {
            setBranchLayoutProblem("lockstep.yaml at \(branch) (\(tip.short)) is invalid: "
                                   + oneLine(error.errors.map(\.description).joined(separator: "; ")))
            return true
        } catch {
            setBranchLayoutProblem("the layout at \(branch) (\(tip.short)) could not be read: \(safeDescription(error))")
            return false
        }
        lastGoodLayout = (tip, config)
        setBranchLayoutProblem(nil)
        do {
            let (layout, time, store) = (StoredBranchLayout(branch: branch, commit: tip, yaml: text), now(), store)
            try await uncancelled { try await store.recordValidLayout(layout, at: time) }
        } catch {
            logger.warning("the valid layout could not be stored; a restart before the next valid layout falls back to the previous one",
                           metadata: ["error": "\(safeDescription(error))"])
        }
        return true
    }

    /// The last valid layout from the store, when this process has not read one yet. One that
    /// this build cannot parse any more is not used (and said so).
    private func loadStoredLayout(branch: String) async {
        do {
            guard let stored = try await store.lastValidLayout(branch: branch) else { return }
            let config = try RepoConfig.parse(yaml: stored.yaml)
            lastGoodLayout = (stored.commit, config)
            logger.info("last valid layout read from the store", metadata: ["git.commit": "\(stored.commit)"])
        } catch {
            logger.warning("the stored last valid layout is not usable", metadata: ["error": "\(safeDescription(error))"])
        }
    }

    /// Sets the layout problem, logging it when it changes (not on every pass).
    private func setBranchLayoutProblem(_ problem: String?) {
        guard problem != branchLayoutProblem else { return }
        if let problem {
            logger.error("the layout at the protected branch is not used; the last valid one still is",
                         metadata: ["problem": "\(problem)"])
        } else if branchLayoutProblem != nil {
            logger.notice("the layout at the protected branch is valid again")
        }
        branchLayoutProblem = problem
    }

    private func promotionDepth(_ environment: EnvironmentName) -> Int {
        var depth = 0
        var current = agent.environments[environment]?.promoteFrom
        while let next = current, depth < agent.environments.count {
            depth += 1
            current = agent.environments[next]?.promoteFrom
        }
        return depth
    }

    /// One target: decide its tags, invalidate runs whose tag moved, compute the desired
    /// revision, create or supersede runs, and drive the open ones.
    func reconcile(_ served: ServedTarget, inputs: ReleaseInputs, report: inout ReconcileReport, toPlan: inout [StoredRun],
                   due: inout DueLater) async throws {
        let target = served.target
        let listing = inputs.listing
        // Logged once per tag and reason, not on every poll while the tag stays.
        var refusedNow: Set<String> = []
        for refused in listing.refused {
            let key = "\(refused.displayName)\u{0}\(refused.reason)"
            refusedNow.insert(key)
            guard loggedRefusedTags[target]?.contains(key) != true else { continue }
            logger.warning("tag refused", metadata: ["target": "\(target)", "tag": "\(refused.displayName)",
                                                     "reason": "\(refused.reason)"])
        }
        loggedRefusedTags[target] = refusedNow
        let accepted = try await decideTags(served, inputs: inputs, report: &report)
        try await invalidateMovedRuns(target, listing: listing, report: &report)
        try await pursueDesiredRevision(served, accepted: accepted, report: &report)
        try await driveOpenRuns(served, report: &report, toPlan: &toPlan, due: &due)
    }

    /// Reads the signer files of every environment that requires signed tags (docs/CONTRACT.md §3
    /// rule 3), once per pass.
    func loadSignerTrusts() {
        var trusts: [EnvironmentName: Result<SignerTrust, GateError>] = [:]
        for policy in agent.environments.values where policy.requireSignedTags {
            do throws(GateError) {
                if let trust = try SignerTrust.load(policy) { trusts[policy.name] = .success(trust) }
            } catch {
                trusts[policy.name] = .failure(error)
            }
        }
        signerTrusts = trusts
    }

    /// The digest of each environment's signer files as last loaded ("unreadable" when not).
    var signerDigests: [EnvironmentName: String] {
        signerTrusts.mapValues { (try? $0.get().digest.rawValue) ?? "unreadable" }
    }

    /// docs/CONTRACT.md §3 acceptance for every tag of the target, each decision recorded (the store
    /// keeps only changes). Returns the accepted tags.
    func decideTags(_ served: ServedTarget, inputs: ReleaseInputs, report: inout ReconcileReport) async throws -> [Candidate] {
        let target = served.target
        var sourceRecords: [RunRecord] = []
        if let promoteFrom = TagDecisions.promotionSource(of: served.policy) {
            sourceRecords = try await store.runSummaries(target: TargetID(project: target.project, environment: promoteFrom), states: nil)
                .map(\.record)
        }
        var signatures: [GitObjectID: SignatureVerdict] = [:]
        switch signerTrusts[target.environment] {
        case .success(let trust)?:
            let others = signerTrusts.values.compactMap { try? $0.get() }
            let verified = await TagDecisions.verifySignatures(of: inputs, trust: trust, others: others,
                                                               verifier: signatureVerifier, source: source)
            signatures = verified.verdicts
            report.problems += verified.problems.map { "\(target): \($0)" }
        case .failure(let error)?:
            // Every tag is rejected (no verdict fails closed); the operator is told why.
            report.problems.append("\(target): signed tags cannot be verified: \(error.description)")
        case nil:
            break
        }
        // The same decision code as `lockstep tags --offline` (TagDecisions.swift).
        let outcome = TagDecisions.decide(target: target, policy: served.policy, agent: agent, pattern: served.pattern,
                                          inputs: inputs, sourceRecords: sourceRecords, signatures: signatures)
        report.problems += outcome.problems
        var accepted: [Candidate] = []
        var changed: [(tag: TagInfo, decision: StoredTagDecision)] = []
        for decided in outcome.decided {
            let (stored, tag) = (decided.decision, decided.tag)
            if stored.accepted, let version = stored.version, let commit = stored.commit {
                accepted.append(Candidate(info: tag, version: version, object: stored.tagObject, commit: commit,
                                          tree: decided.tree, signer: decided.signer))
            }
            if recordedDecisions[target]?[tag.name] != stored { changed.append((tag, stored)) }
        }
        // One transaction for the target's changed decisions: a first pass over a repository
        // with thousands of tags waited for the disk once per tag before it could say ready.
        let recorded = try await store.recordTagDecisions(changed.map(\.decision), at: now(), actor: Self.systemActor)
        for ((tag, stored), wasRecorded) in zip(changed, recorded) {
            if wasRecorded {
                if !stored.accepted { GateMetrics.tagRejected(target.environment, stored.rejections) }
                report.decisionsRecorded[target, default: []].append(tag.name)
                logger.info("tag decided", metadata: ["target": "\(target)", "tag": "\(displaySafe(tag.name))",
                                                      "tag.accepted": "\(stored.accepted)",
                                                      "tag.rejections": "\(stored.rejections.map(\.code.rawValue).joined(separator: ","))"])
            }
            recordedDecisions[target, default: [:]][tag.name] = stored
        }
        return accepted
    }

    /// Feeds `tagMoved` to every open run whose tag now names another object or is gone:
    /// before apply the run ends (and an alert is raised); after apply started only the
    /// alert is raised, once.
    func invalidateMovedRuns(_ target: TargetID, listing: TagListing, report: inout ReconcileReport) async throws {
        let current = Dictionary(listing.tags.map { ($0.name, $0.target) }, uniquingKeysWith: { first, _ in first })
        for run in try await store.runs(target: target, states: Self.openStates) {
            guard current[run.run.tagName] != run.run.tagObject else { continue }
            let result = try await drive(run, .tagMoved, actor: Self.systemActor)
            report.alertsRaised += result.alerts
            if result.state.isFinal {
                report.runsInvalidated.append(run.id)
                report.runsAdvanced[run.id] = result.state
            }
        }
    }

    /// docs/CONTRACT.md §3 desired revision → at most one open run per target for it.
    func pursueDesiredRevision(_ served: ServedTarget, accepted: [Candidate], report: inout ReconcileReport) async throws {
        let target = served.target
        let pin = try await store.pin(for: target)
        let tags = accepted.map { AcceptedTag(name: $0.info.name, version: $0.version, commit: $0.commit) }
        let wanted: AcceptedTag
        switch TagAcceptance.desiredRevision(accepted: tags, pin: pin) {
        case .none:
            return
        case .highest(let tag), .pinned(let tag, _):
            wanted = tag
        case .pinReleased(let tag):
            try await store.clearPin(for: target, at: now(), actor: Self.systemActor)
            logger.info("rollback pin released", metadata: ["target": "\(target)", "version": "\(tag.version)"])
            wanted = tag
        case .pinnedTagMissing(let pin):
            let alert = RunAlert(code: Self.pinnedTagMissing,
                                 description: "the target is pinned at \(pin.version) but no accepted tag has that version any more")
            if try await raiseAlertOnce(alert, target: target, runID: nil, actor: Self.systemActor) { report.alertsRaised.append(alert) }
            return
        case .ambiguous(let tied):
            let alert = RunAlert(code: Self.ambiguousVersion,
                                 description: "accepted tags " + tied.map { "\"\(displaySafe($0.name))\"" }.joined(separator: ", ")
                                 + " share one version; Lockstep does not guess between them")
            if try await raiseAlertOnce(alert, target: target, runID: nil, actor: Self.systemActor) { report.alertsRaised.append(alert) }
            return
        }
        guard let candidate = accepted.first(where: { $0.info.name == wanted.name }) else { return }
        try await ensureRun(for: candidate, served: served, rollbackPin: nil, actor: Self.systemActor, report: &report)
    }

    /// Makes `candidate` the target's run: nothing when the newest run is already for this
    /// tag object (whatever its outcome, except `expired`/`superseded`, which plan again); a
    /// waiting run for another tag is superseded first; a run whose apply started is waited
    /// for. A tag name that ever named another object in a run of this target is not
    /// followed at all (alert): the release must be cut under a new version.
    @discardableResult
    func ensureRun(for candidate: Candidate, served: ServedTarget, rollbackPin: RollbackPin?, actor: String,
                   report: inout ReconcileReport) async throws -> StoredRun? {
        let target = served.target
        let runs = try await store.runSummaries(target: target, states: nil)
        if runs.contains(where: { $0.run.tagName == candidate.info.name && $0.run.tagObject != candidate.object }) {
            let alert = RunAlert(code: Self.tagNotFollowed,
                                 description: "release tag \"\(displaySafe(candidate.info.name))\" now names another object than "
                                 + "the one planned before; it is not followed (tag a new version)")
            if try await raiseAlertOnce(alert, target: target, runID: nil, actor: Self.systemActor) { report.alertsRaised.append(alert) }
            return nil
        }
        if rollbackPin == nil, let newest = runs.first, newest.run.tagName == candidate.info.name,
           newest.run.tagObject == candidate.object, newest.state != .expired, newest.state != .superseded {
            return nil
        }
        let id = try RunID(UUID().uuidString.lowercased())
        if let open = runs.first(where: { !$0.state.isFinal }) {
            guard open.state.isBeforeApply else { return nil }
            guard let loaded = try await store.run(open.id) else { return nil }
            let result = try await drive(loaded, .superseded(by: id), actor: actor)
            guard result.state == .superseded else { return nil }
            report.runsSuperseded.append(open.id)
            report.runsAdvanced[open.id] = .superseded
        }
        let hasVerify = await hasVerifyCommands(commit: candidate.commit, target: target)
        let new = NewRun(id: id, target: target, tagName: candidate.info.name, tagObject: candidate.object,
                         version: candidate.version, commit: candidate.commit, tree: candidate.tree,
                         taggerEmail: candidate.info.annotation?.taggerEmail, rollbackPin: rollbackPin,
                         hasVerifyCommands: hasVerify, signer: candidate.signer)
        do {
            let created = try await store.createRun(new, at: now(), actor: actor)
            report.runsCreated.append(id)
            report.runsAdvanced[id] = .queued
            logger.info("run created", metadata: ["run.id": "\(id)", "target": "\(target)", "version": "\(candidate.version)"])
            return created
        } catch let error as StoreError where error.code == .targetBusy {
            // Another trigger or process created a run for the target first.
            return nil
        }
    }

    /// Whether the commit's `lockstep.yaml` has verify commands for the target (read once, at
    /// run creation, straight from the mirror; the commit is immutable, so the plan reads
    /// the same file). An unreadable layout says no: that run fails at planning anyway.
    func hasVerifyCommands(commit: GitObjectID, target: TargetID) async -> Bool {
        do {
            let (_, config) = try await repoConfig(at: commit)
            return !(config.projects[target.project]?.environments[target.environment]?.verify.isEmpty ?? true)
        } catch {
            return false
        }
    }

    /// Collects queued runs for planning (after the pass, see ``reconcile()``), expires runs
    /// that waited for approval longer than the approval lifetime, and triggers apply for
    /// approved runs.
    func driveOpenRuns(_ served: ServedTarget, report: inout ReconcileReport, toPlan: inout [StoredRun],
                       due: inout DueLater) async throws {
        for run in try await store.runs(target: served.target, states: Self.openStates) {
            switch run.state {
            case .queued:
                toPlan.append(run)
            case .awaitingApproval:
                let lifetime = TimeInterval(served.policy.approvalTTL.components.seconds)
                let since = try await store.transitions(of: run.id).last { $0.transition.to == .awaitingApproval }?.time
                    ?? run.updatedAt
                if now().timeIntervalSince(since) >= lifetime {
                    let result = try await drive(run, .approvalsExpired, actor: Self.systemActor)
                    if !result.committed.isEmpty { report.runsAdvanced[run.id] = result.state }
                    if result.state == .awaitingApproval { due.retryNextPass = true }
                } else {
                    let expiry = since.addingTimeInterval(lifetime)
                    due.approvalsExpireAt = min(due.approvalsExpireAt ?? expiry, expiry)
                }
            case .approved:
                // Outside the apply window a poll would only record the same closed window
                // again; an explicit apply trigger still evaluates (and records) everything.
                // Held by a closed window or a freeze, unless break-glass approvals let it through.
                // Approvals keep expiring meanwhile: a run whose approvals no longer suffice is
                // `expired`, never shown as approved.
                if !served.policy.applyAllowed(at: now()) {
                    let held = try await heldApproval(run, served.policy)
                    if held.breakGlass < 2 {
                        if held.valid < held.required {
                            let result = try await drive(run, .approvalsExpired, actor: Self.systemActor)
                            if !result.committed.isEmpty { report.runsAdvanced[run.id] = result.state }
                        } else {
                            due.heldByWindow.insert(served.target.environment)
                            if let expiry = held.expiresAt { due.approvalsExpireAt = min(due.approvalsExpireAt ?? expiry, expiry) }
                        }
                        continue
                    }
                }
                // terraform apply runs without the gate's serialisation, so approvals and
                // rejections of other targets are answered meanwhile; the pass takes it back
                // before the next target (sources of promotion first still holds).
                let outcome = try await withoutSerialisation { try await applyTrigger(run) }
                let after = try await store.run(run.id)
                if let after, after.state != run.state {
                    report.runsAdvanced[run.id] = after.state
                }
                // Still approved with the window open (the tag could not be re-resolved, the
                // window closed meanwhile): the next pass tries again.
                if after?.state == .approved { due.retryNextPass = true }
                logger.info("apply trigger", metadata: ["run.id": "\(run.id)", "outcome": "\(outcome)"])
            default:
                break
            }
        }
    }
}
