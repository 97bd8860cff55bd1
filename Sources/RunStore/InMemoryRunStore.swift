import Foundation
public import LockstepCore

/// A ``RunStore`` kept in memory: the same rules as ``SQLiteRunStore`` without a file, for
/// unit tests of the gate (and anything else that needs a store and no disk).
///
/// How it keeps the port's invariants (RunStore.swift):
/// * An actor: calls run one at a time, so a compare-and-set cannot interleave with another write.
/// * Every write works on a copy of the whole state and replaces the state only when it
///   finished without throwing: a write happens with its audit entry or not at all.
/// * The same checks and error codes as the SQLite store: `not_found` for an unknown run,
///   `target_busy` for a second open run on a target (on creation and on a transition back
///   to an open state), `store_write_failed` for a run id used twice.
/// * Times are cut to whole milliseconds, as the SQLite store keeps them.
///
/// Nothing survives the process. Usage: `let store = InMemoryRunStore()`.
public actor InMemoryRunStore: RunStore {
    /// Most bytes of log text kept per run; older text is cut and the cut is marked.
    public let maxLogBytesPerRun: Int

    private var state = State()

    public init(maxLogBytesPerRun: Int = 1 << 20) {
        self.maxLogBytesPerRun = max(1, maxLogBytesPerRun)
    }

    /// Everything stored. A value type, so a write can build the next state on a copy.
    private struct State {
        /// Runs in creation order (newest last).
        var runs: [StoredRun] = []
        var transitions: [StoredTransition] = []
        var nextTransition: Int64 = 1
        var approvals: [Approval] = []
        var refusals: [ApprovalRefusal] = []
        var decisions: [StoredTagDecision] = []
        var preconditions: [(runID: RunID, report: ApplyPreconditionReport)] = []
        var alerts: [StoredAlert] = []
        var driftChecks: [DriftCheck] = []
        var outputs: [(target: TargetID, runID: RunID, json: String)] = []
        var layouts: [String: StoredBranchLayout] = [:]
        var logs: [RunID: RunLogState] = [:]
        var pins: [(target: TargetID, pin: RollbackPin, runID: RunID, active: Bool)] = []
        var audit: [AuditEntry] = []
        var outbox: [OutboxEvent] = []
        var outboxPositions: [String: Int64] = [:]
        var forgeThreads: [String: [RunID: ForgeThread]] = [:]

        mutating func enqueue(_ kind: OutboxEvent.Kind, _ target: TargetID, _ runID: RunID?, _ time: Date, _ facts: OutboxFacts) {
            outbox.append(OutboxEvent(id: Int64(outbox.count + 1), kind: kind, target: target, runID: runID,
                                      time: Milliseconds.stored(time), facts: facts))
        }

        func approvers(of runID: RunID) -> [String] {
            approvals.filter { $0.runID == runID }.map(\.identity.rawValue)
        }

        func index(of id: RunID) -> Int? { runs.firstIndex { $0.id == id } }

        func existingIndex(of id: RunID) throws(StoreError) -> Int {
            guard let index = index(of: id) else { throw StoreError(.notFound, "run \(id) does not exist") }
            return index
        }

        mutating func appendAudit(_ time: Date, _ actor: String, _ kind: AuditKind, _ target: TargetID?,
                                  _ runID: RunID?, _ payload: [String: String]) {
            audit.append(AuditChain.append(after: audit.last, time: time, actor: actor, kind: kind, target: target,
                                           runID: runID, payload: payload))
        }

        /// The open run of `target` other than `except`, if any.
        func openRun(on target: TargetID, except: RunID? = nil) -> StoredRun? {
            runs.first { $0.target == target && !$0.state.isFinal && $0.id != except }
        }
    }

    private struct RunLogState {
        var chunks: [(stream: LogStream, text: String)] = []
        var cutBytes: Int64 = 0
        var keptBytes: Int { chunks.reduce(0) { $0 + $1.text.utf8.count } }
    }

    /// Runs `body` on a copy of the state and keeps the copy only when it returns.
    private func write<T>(_ body: (inout State) throws -> T) rethrows -> T {
        var next = state
        let result = try body(&next)
        state = next
        return result
    }

    // MARK: Runs

    public func createRun(_ run: NewRun, at time: Date, actor: String) async throws -> StoredRun {
        try write { state in
            if state.index(of: run.id) != nil { throw StoreError(.writeFailed, "run \(run.id) already exists") }
            if let busy = state.openRun(on: run.target) {
                throw StoreError(.targetBusy, "target \(run.target) already has run \(busy.id) in progress")
            }
            let now = Milliseconds.stored(time)
            let stored = StoredRun(run: run, state: .queued, planDigest: nil, plan: nil, lastReason: nil, createdAt: now,
                                   updatedAt: now)
            state.runs.append(stored)
            if let pin = run.rollbackPin {
                for index in state.pins.indices where state.pins[index].target == run.target {
                    state.pins[index].active = false
                }
                state.pins.append((run.target, pin, run.id, true))
            }
            state.appendAudit(time, actor, .runCreated, run.target, run.id, AuditPayload.runCreated(run))
            return stored
        }
    }

    public func transition(_ runID: RunID, _ transition: RunTransition, update: RunUpdate, at time: Date,
                           actor: String) async throws -> Bool {
        try write { state in try Self.move(&state, runID, transition, update: update, at: time, actor: actor) }
    }

    public func transition(_ runID: RunID, through steps: [RunStep], at time: Date, actor: String) async throws -> Bool {
        struct StepLost: Error {}
        do {
            return try write { state in
                for step in steps {
                    guard try Self.move(&state, runID, step.transition, update: step.update, at: time, actor: actor) else {
                        throw StepLost()
                    }
                }
                return true
            }
        } catch is StepLost {
            return false
        }
    }

    /// The compare-and-set of a transition: `false`, changing nothing, when the run is not in `from`.
    private static func move(_ state: inout State, _ runID: RunID, _ transition: RunTransition, update: RunUpdate,
                             at time: Date, actor: String) throws(StoreError) -> Bool {
        let index = try state.existingIndex(of: runID)
        var run = state.runs[index]
        guard run.state == transition.from else { return false }
        if !transition.to.isFinal, state.openRun(on: run.target, except: runID) != nil {
            throw StoreError(.targetBusy, "could not move run \(runID) from \(transition.from) to \(transition.to): "
                             + "the target already has a run in progress")
        }
        run.state = transition.to
        run.lastReason = transition.reason.code
        run.updatedAt = Milliseconds.stored(time)
        if let digest = update.planDigest { run.planDigest = digest }
        if let plan = update.plan { run.plan = plan }
        if let results = update.checkResults { run.plan?.checkResults = results }
        state.runs[index] = run
        state.transitions.append(StoredTransition(sequence: state.nextTransition, runID: runID, transition: transition,
                                                  actor: actor, time: Milliseconds.stored(time)))
        state.nextTransition += 1
        state.appendAudit(time, actor, .transition, run.target, runID,
                          AuditPayload.transition(transition, digest: update.planDigest,
                                                                  priorState: update.plan?.priorState,
                                                                  checks: update.checkResults))
        state.enqueue(.transition, run.target, runID, time,
                      OutboxFacts(from: transition.from, to: transition.to, reason: transition.reason.code.rawValue,
                                  detail: transition.reason.detail, approvers: state.approvers(of: runID)))
        return true
    }

    public func attachRendering(_ runID: RunID, rendering: String, truncated: Bool, bytes: Int,
                                state: RenderingState) async throws -> Bool {
        try write { store in
            guard let index = store.runs.firstIndex(where: { $0.id == runID }),
                  var plan = store.runs[index].plan, plan.renderingState == .pending else { return false }
            plan.rendering = rendering
            plan.renderingTruncated = truncated
            plan.renderingBytes = bytes
            plan.renderingState = state
            store.runs[index].plan = plan
            return true
        }
    }

    public func run(_ id: RunID) async throws -> StoredRun? {
        state.runs.first { $0.id == id }
    }

    public func runs(target: TargetID?, states: Set<RunState>?) async throws -> [StoredRun] {
        state.runs.reversed().filter { run in
            (target == nil || run.target == target) && (states?.contains(run.state) ?? true)
        }
    }

    public func runSummaries(target: TargetID?, states: Set<RunState>?) async throws -> [RunSummary] {
        try await runs(target: target, states: states).map(\.summary)
    }

    public func transitions(of runID: RunID) async throws -> [StoredTransition] {
        state.transitions.filter { $0.runID == runID }
    }

    /// A run that never finished planning counts every apply the target ever had (fails closed).
    public func appliesStarted(on target: TargetID, sincePlanOf runID: RunID) async throws -> [RunID] {
        _ = try state.existingIndex(of: runID)
        let planned = state.transitions
            .filter { $0.runID == runID && $0.transition.from == .planning && $0.transition.to == .checking }
            .map(\.sequence).max() ?? 0
        let targetRuns = Set(state.runs.filter { $0.target == target }.map(\.id))
        var found: [RunID] = []
        for stored in state.transitions where stored.transition.to == .applying && stored.sequence > planned
            && stored.runID != runID && targetRuns.contains(stored.runID) && !found.contains(stored.runID) {
            found.append(stored.runID)
        }
        return found
    }

    // MARK: Approvals

    public func recordApproval(_ approval: Approval, completing transition: RunTransition?, at time: Date,
                               actor: String) async throws -> Bool {
        do {
            try write { state in
                let target = state.runs[try state.existingIndex(of: approval.runID)].target
                state.approvals.append(approval.dated(Milliseconds.stored(approval.time)))
                state.appendAudit(approval.time, actor, .approval, target, approval.runID, AuditPayload.approval(approval))
                state.enqueue(.approval, target, approval.runID, approval.time,
                              OutboxFacts(approvedBy: approval.identity.rawValue, approvers: state.approvers(of: approval.runID)))
                if let transition, try !Self.move(&state, approval.runID, transition, update: RunUpdate(), at: time,
                                                  actor: actor) {
                    throw CompareAndSetLost()
                }
            }
            return true
        } catch is CompareAndSetLost {
            return false
        }
    }

    public func recordApprovalRefusal(_ refusal: ApprovalRefusal, at time: Date, actor: String) async throws {
        write { state in
            let approval = refusal.approval
            let stored = approval.dated(Milliseconds.stored(approval.time))
            state.refusals.append(ApprovalRefusal(code: refusal.code, approval: stored, description: refusal.description))
            state.appendAudit(time, actor, .approvalRefusal, state.index(of: approval.runID).map { state.runs[$0].target },
                              approval.runID, AuditPayload.refusal(refusal))
        }
    }

    public func approvals(of runID: RunID) async throws -> [Approval] {
        state.approvals.filter { $0.runID == runID }
    }

    public func approvalRefusals(of runID: RunID) async throws -> [ApprovalRefusal] {
        state.refusals.filter { $0.approval.runID == runID }
    }

    // MARK: Decisions, checks, alerts, outputs, logs

    @discardableResult
    public func recordTagDecision(_ decision: StoredTagDecision, at time: Date, actor: String) async throws -> Bool {
        write { state in Self.record(decision, &state, at: time, actor: actor) }
    }

    public func recordTagDecisions(_ decisions: [StoredTagDecision], at time: Date, actor: String) async throws -> [Bool] {
        write { state in decisions.map { Self.record($0, &state, at: time, actor: actor) } }
    }

    private static func record(_ decision: StoredTagDecision, _ state: inout State, at time: Date, actor: String) -> Bool {
        let last = state.decisions.last {
            $0.target == decision.target && $0.tagName == decision.tagName && $0.tagObject == decision.tagObject
        }
        if last == decision { return false }
        state.decisions.append(decision)
        state.appendAudit(time, actor, .tagDecision, decision.target, nil, AuditPayload.tagDecision(decision))
        if !decision.accepted {
            state.enqueue(.tagRejected, decision.target, nil, time,
                          OutboxFacts(tagName: decision.tagName, rejections: decision.rejections.map(\.description)))
        }
        return true
    }

    /// The latest decision per tag name, in the order those latest decisions were recorded.
    public func tagDecisions(for target: TargetID) async throws -> [StoredTagDecision] {
        let decisions = state.decisions.enumerated().filter { $0.element.target == target }
        let latest = Dictionary(decisions.map { ($0.element.tagName, $0.offset) }, uniquingKeysWith: max)
        return decisions.filter { latest[$0.element.tagName] == $0.offset }.map(\.element)
    }

    public func recordApplyPreconditions(_ report: ApplyPreconditionReport, runID: RunID, at time: Date,
                                         actor: String) async throws {
        try write { state in
            let target = state.runs[try state.existingIndex(of: runID)].target
            state.preconditions.append((runID, report))
            state.appendAudit(time, actor, .applyPreconditions, target, runID, AuditPayload.applyPreconditions(report))
        }
    }

    public func applyPreconditions(of runID: RunID) async throws -> [ApplyPreconditionReport] {
        state.preconditions.filter { $0.runID == runID }.map(\.report)
    }

    public func raiseAlert(_ alert: RunAlert, target: TargetID?, runID: RunID?, at time: Date,
                           actor: String) async throws {
        write { state in
            state.alerts.append(StoredAlert(id: Int64(state.alerts.count + 1), target: target, runID: runID, alert: alert,
                                            time: Milliseconds.stored(time)))
            state.appendAudit(time, actor, .alert, target, runID, AuditPayload.alert(alert))
        }
    }

    public func recordDriftCheck(_ check: DriftCheck, actor: String) async throws {
        write { state in
            var stored = check
            stored.time = Milliseconds.stored(check.time)
            state.driftChecks.append(stored)
            state.appendAudit(check.time, actor, .drift, check.target, nil, AuditPayload.drift(check))
            if check.outcome != .noDrift {
                state.enqueue(.drift, check.target, nil, check.time,
                              OutboxFacts(reason: check.outcome.rawValue, detail: check.detail, tagName: check.tagName))
            }
        }
    }

    public func driftChecks(of target: TargetID, limit: Int) async throws -> [DriftCheck] {
        Array(state.driftChecks.filter { $0.target == target }.reversed().prefix(max(0, limit)))
    }

    public func alerts(target: TargetID?) async throws -> [StoredAlert] {
        state.alerts.filter { target == nil || $0.target == target }
    }

    public func recordValidLayout(_ layout: StoredBranchLayout, at time: Date) async throws {
        state.layouts[layout.branch] = layout
    }

    public func lastValidLayout(branch: String) async throws -> StoredBranchLayout? {
        state.layouts[branch]
    }

    /// The audit entry records the outputs' SHA-256 and size, never their text.
    public func setOutputs(_ json: String, target: TargetID, runID: RunID, at time: Date) async throws {
        try write { state in
            _ = try state.existingIndex(of: runID)
            state.outputs.append((target, runID, json))
            state.appendAudit(time, "lockstep", .outputs, target, runID, AuditPayload.outputs(json))
        }
    }

    public func outputs(of target: TargetID) async throws -> String? {
        state.outputs.last { $0.target == target }?.json
    }

    public func outputs(of target: TargetID, storedBy runID: RunID) async throws -> String? {
        state.outputs.last { $0.target == target && $0.runID == runID }?.json
    }

    /// Logs are not audited (bounded diagnostics), as in the SQLite store.
    public func appendLog(_ text: String, stream: LogStream, runID: RunID, at time: Date) async throws {
        let limit = maxLogBytesPerRun
        try write { state in
            _ = try state.existingIndex(of: runID)
            var log = state.logs[runID] ?? RunLogState()
            var chunk = text
            if chunk.utf8.count > limit {
                let kept = RunLog.suffix(of: chunk, droppingAtLeast: chunk.utf8.count - limit)
                log.cutBytes += Int64(chunk.utf8.count - kept.utf8.count)
                chunk = kept
            }
            if !chunk.isEmpty { log.chunks.append((stream, chunk)) }
            var kept = log.keptBytes
            while kept > limit, let oldest = log.chunks.first {
                let excess = kept - limit
                let oldBytes = oldest.text.utf8.count
                if oldBytes <= excess {
                    log.chunks.removeFirst()
                    kept -= oldBytes
                    log.cutBytes += Int64(oldBytes)
                } else {
                    let rest = RunLog.suffix(of: oldest.text, droppingAtLeast: excess)
                    log.chunks[0].text = rest
                    kept -= oldBytes - rest.utf8.count
                    log.cutBytes += Int64(oldBytes - rest.utf8.count)
                }
            }
            state.logs[runID] = log
        }
    }

    public func log(of runID: RunID) async throws -> String {
        guard let log = state.logs[runID] else { return "" }
        return RunLog.render(cutBytes: log.cutBytes, chunks: log.chunks.map { ($0.stream.rawValue, $0.text) })
    }

    // MARK: Rollback pins

    public func pin(for target: TargetID) async throws -> RollbackPin? {
        state.pins.last { $0.target == target && $0.active }?.pin
    }

    public func clearPin(for target: TargetID, at time: Date, actor: String) async throws {
        write { state in
            guard let index = state.pins.lastIndex(where: { $0.target == target && $0.active }) else { return }
            state.pins[index].active = false
            let cleared = state.pins[index]
            state.appendAudit(time, actor, .pinCleared, target, cleared.runID, AuditPayload.pinCleared(cleared.pin))
        }
    }

    // MARK: Audit

    public func appendAudit(kind: AuditKind, target: TargetID?, runID: RunID?, payload: [String: String], at time: Date,
                            actor: String) async throws {
        write { state in state.appendAudit(time, actor, kind, target, runID, payload) }
    }

    public func auditEntries() async throws -> [AuditEntry] { state.audit }

    public func auditHead() async throws -> AuditHash { state.audit.last?.hash ?? AuditHash.genesis }

    public func auditTargets(after sequence: UInt64?) async throws -> AuditTargets {
        let last = state.audit.last?.sequence ?? 0
        guard let sequence else { return AuditTargets(lastSequence: last, targets: [], untargeted: true) }
        var changes = AuditTargets(lastSequence: last, targets: [], untargeted: last < sequence)
        for entry in state.audit where entry.sequence > sequence && entry.kind != .refusal {
            if let target = entry.target { changes.targets.insert(target) } else { changes.untargeted = true }
        }
        return changes
    }

    // MARK: Outbox

    public func outboxEvents(after id: Int64, limit: Int) async throws -> [OutboxEvent] {
        Array(state.outbox.lazy.filter { $0.id > id }.prefix(max(1, limit)))
    }

    public func outboxLastEventID() async throws -> Int64 { state.outbox.last?.id ?? 0 }

    public func outboxPosition(of sink: String) async throws -> Int64? { state.outboxPositions[sink] }

    public func setOutboxPosition(of sink: String, to id: Int64, at time: Date) async throws {
        write { state in state.outboxPositions[sink] = max(state.outboxPositions[sink] ?? 0, id) }
    }

    public func forgeThread(sink: String, runID: RunID) async throws -> ForgeThread? {
        state.forgeThreads[sink]?[runID]
    }

    public func recordForgeThread(_ thread: ForgeThread, sink: String, runID: RunID, at time: Date) async throws {
        write { state in state.forgeThreads[sink, default: [:]][runID] = thread }
    }
}
