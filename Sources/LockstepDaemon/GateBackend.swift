import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import LockstepGate
import LockstepHTTP
import RunStore
import TerraformRunner

/// The JSON API's view of the gate (docs/CONTRACT.md §5): reads come from the store, every decision
/// goes through the ``Gate`` (which records and audits it), and refusals come back as data
/// with a stable code.
///
/// Approval never applies in the request: when an approval completes a run, the run is
/// handed to the daemon's apply worker (``DaemonService/requestApply(_:)``), which the
/// ServiceGroup owns and drains on SIGTERM. So an HTTP call stays short, and an apply is
/// never tied to a client connection that may drop.
public struct GateBackend: APIBackend {
    let gate: Gate
    let store: any RunStore
    let agent: AgentConfig
    let service: DaemonService

    public init(gate: Gate, store: any RunStore, service: DaemonService) {
        self.gate = gate
        self.store = store
        self.agent = gate.agent
        self.service = service
    }

    /// How this agent reaches the delivery repository (its URL and credential files), as the
    /// daemon's own mirror does: for tools that keep a mirror of their own (`lockstep tags --offline`).
    public static func remote(for agent: AgentConfig) -> Remote { Daemon.remote(agent) }

    // MARK: Reads

    public func environments() async throws -> [APIEnvironment] {
        let served = await gate.servedTargetIDs()
        var result: [APIEnvironment] = []
        for name in promotionOrder() {
            guard let policy = agent.environments[name] else { continue }
            let environment = name
            var targets: [APITarget] = []
            for target in served where target.environment == environment {
                targets.append(try await board(target))
            }
            result.append(APIEnvironment(
                name: environment, promoteFrom: policy.promoteFrom,
                requiredApprovals: policy.approvals, approvers: policy.approvers,
                served: policy.serves, targets: targets))
        }
        return result
    }

    public func branchValidation() async -> APIBranchValidation? {
        await gate.branchValidation().map {
            APIBranchValidation(commit: $0.commit, checkedAt: $0.time, exitStatus: Int($0.exitStatus), problems: $0.problems)
        }
    }

    public func problems() async throws -> [APIProblem] {
        var problems: [APIProblem] = []
        if let fetch = service.status.fetchProblem {
            problems.append(APIProblem(code: .fetchFailed, message: "the last fetch of the delivery repository failed: \(fetch)"))
        }
        if let layout = await gate.branchLayoutProblem {
            let fallback = await gate.followsValidLayout ? "; the targets of the last valid layout are still followed"
                                                         : "; no valid layout is known, so no target is served"
            problems.append(APIProblem(code: .layoutInvalid, message: layout + fallback))
        }
        for skipped in await gate.skippedRefs() {
            problems.append(APIProblem(code: .refSkipped, message: "\(skipped.displayName) is not fetched: \(skipped.reason)"))
        }
        return problems
    }

    public func tagDecisions(environment: EnvironmentName, project: ProjectName?) async throws -> APITagDecisionList? {
        guard agent.environments[environment] != nil else { return nil }
        var targets = await gate.servedTargetIDs().filter { $0.environment == environment }
        if let project {
            targets = targets.filter { $0.project == project }
            guard !targets.isEmpty else { return nil }
        }
        var stored: [StoredTagDecision] = []
        for target in targets {
            stored += try await store.tagDecisions(for: target)
        }
        return Self.tagDecisionList(environment, stored)
    }

    /// The API's shape of stored tag decisions: per project, newest version first, tags whose
    /// version does not parse last. `lockstep tags --offline` prints its decisions through
    /// this too, so the two outputs compare line for line.
    public static func tagDecisionList(_ environment: EnvironmentName, _ stored: [StoredTagDecision]) -> APITagDecisionList {
        let decisions = stored.map {
            APITagDecision(project: $0.target.project, environment: $0.target.environment, tag: $0.tagName,
                           tagObject: $0.tagObject, commit: $0.commit, version: $0.version, accepted: $0.accepted,
                           rejections: $0.rejections.map(APITagRejection.init))
        }.sorted { a, b in
            if a.project != b.project { return a.project.rawValue < b.project.rawValue }
            switch (a.version, b.version) {
            case (let x?, let y?) where !x.hasSamePrecedence(as: y): return x > y
            case (.some, .none): return true
            case (.none, .some): return false
            default: return a.tag < b.tag
            }
        }
        return APITagDecisionList(environment: environment, decisions: decisions)
    }

    public func runs(_ filter: APIRunFilter) async throws -> [APIRunSummary] {
        try await store.runSummaries(target: filter.target, states: filter.states).prefix(max(0, filter.limit)).map(summary)
    }

    public func runLog(_ id: RunID) async throws -> String? {
        guard try await store.run(id) != nil else { return nil }
        return try await store.log(of: id)
    }

    public func run(_ id: RunID) async throws -> APIRunDetail? {
        guard let run = try await store.run(id) else { return nil }
        return try await detail(run)
    }

    // MARK: Decisions

    public func approve(_ run: RunID, identity: IdentityName, digest: Digest, terms: ApprovalTerms) async throws -> APIOutcome<APIRunDetail> {
        if let refusal = drainingRefusal() { return .refused(refusal) }
        let outcome: ApprovalOutcome
        do {
            outcome = try await gate.approve(run: run, identity: identity, digest: digest, terms: terms)
        } catch let error as GateError {
            return try mapped(error)
        }
        switch outcome {
        case .refused(let refusal):
            return .refused(APIRefusal(refusal))
        case .approved:
            // Handed to the daemon's worker; when it is draining the run stays approved and
            // the next start applies it.
            _ = service.requestApply(run)
        case .recorded:
            break
        }
        return try await current(run)
    }

    public func reject(_ run: RunID, identity: IdentityName, reason: String) async throws -> APIOutcome<APIRunDetail> {
        if let refusal = drainingRefusal() { return .refused(refusal) }
        do {
            let outcome = try await gate.reject(run: run, identity: identity, reason: reason)
            return try await decided(outcome, run: run, identity: identity)
        } catch let error as GateError {
            return try mapped(error)
        }
    }

    public func resolve(_ run: RunID, as resolution: OperatorResolution, reason: String,
                        identity: IdentityName) async throws -> APIOutcome<APIRunDetail> {
        if let refusal = drainingRefusal() { return .refused(refusal) }
        do {
            let outcome = try await gate.resolve(run: run, as: resolution, identity: identity, reason: reason)
            if case .done(.verifying) = outcome { service.requestVerify(run) }
            return try await decided(outcome, run: run, identity: identity)
        } catch let error as GateError {
            return try mapped(error)
        }
    }

    public func rollback(_ request: APIRollbackRequest, identity: IdentityName) async throws -> APIOutcome<APIRollbackResult> {
        if let refusal = drainingRefusal() { return .refused(refusal) }
        guard let policy = agent.environments[request.environment], policy.serves else {
            return .refused(APIRefusal(code: .environmentNotServed,
                                       message: "this agent does not serve environment \(request.environment)"))
        }
        var projects: [ProjectName?] = [request.project]
        if request.project == nil {
            let served = await gate.servedTargetIDs().filter { $0.environment == request.environment }.map(\.project)
            if served.count > 1 { projects = served }
        }
        var created: [APIRunDetail] = []
        for project in projects {
            do {
                let run = try await gate.rollback(environment: request.environment, project: project, to: request.version,
                                                  identity: identity)
                created.append(try await detail(run))
            } catch let error as GateError {
                // Runs created for earlier projects stay (each is a normal gated run).
                switch try mapped(error) as APIOutcome<APIRollbackResult> {
                case .ok: break
                case .refused(let refusal): return .refused(refusal)
                case .notFound(let message): return .notFound(message)
                }
            }
        }
        return .ok(APIRollbackResult(runs: created))
    }

    // MARK: Mapping

    /// On SIGTERM the daemon takes no new decisions: a decision accepted now could start an
    /// apply that the stopping daemon would then have to abandon half-way.
    private func drainingRefusal() -> APIRefusal? {
        guard service.isDraining else { return nil }
        return APIRefusal(code: .shuttingDown, message: "the daemon is stopping and takes no new work; retry after it restarts")
    }

    private func decided(_ outcome: RunDecisionOutcome, run: RunID, identity: IdentityName) async throws -> APIOutcome<APIRunDetail> {
        switch outcome {
        case .done:
            return try await current(run)
        case .refused(let message):
            // The gate checks who may decide first; asking the policy again picks the code
            // without reading the message.
            guard let stored = try await store.run(run) else { return .notFound("there is no run \(run)") }
            let allowed = agent.environments[stored.target.environment]?.approvers.contains(identity) ?? false
            return .refused(APIRefusal(code: allowed ? .runStateInvalid : .identityNotAllowed, message: message))
        }
    }

    private func mapped<T>(_ error: GateError) throws -> APIOutcome<T> {
        switch error.code {
        case .runNotFound: return .notFound(error.description)
        case .unknownTarget: return .refused(APIRefusal(code: .environmentNotServed, message: error.description))
        case .notAllowed: return .refused(APIRefusal(code: .identityNotAllowed, message: error.description))
        case .targetBusy: return .refused(APIRefusal(code: .targetBusy, message: error.description))
        case .versionNotAccepted: return .refused(APIRefusal(code: .rollbackVersionNotAccepted, message: error.description))
        default: throw error
        }
    }

    private func current(_ id: RunID) async throws -> APIOutcome<APIRunDetail> {
        guard let run = try await store.run(id) else { return .notFound("there is no run \(id)") }
        return .ok(try await detail(run))
    }

    /// Environments sources first (promotion order), then by name.
    func promotionOrder() -> [EnvironmentName] {
        func depth(_ name: EnvironmentName) -> Int {
            var seen: Set<EnvironmentName> = [name]
            var current = name
            var level = 0
            while let next = agent.environments[current]?.promoteFrom, seen.insert(next).inserted {
                level += 1
                current = next
            }
            return level
        }
        return agent.environments.keys.sorted { (depth($0), $0) < (depth($1), $1) }
    }

    /// One target on the status board.
    func board(_ target: TargetID) async throws -> APITarget {
        let runs = try await store.runSummaries(target: target, states: nil)
        let decisions = try await store.tagDecisions(for: target).filter(\.accepted)
        let pin = try await store.pin(for: target)
        let accepted = decisions.compactMap { decision -> AcceptedTag? in
            guard let version = decision.version, let commit = decision.commit else { return nil }
            return AcceptedTag(name: decision.tagName, version: version, commit: commit)
        }
        var desired: APIRevision?
        switch TagAcceptance.desiredRevision(accepted: accepted, pin: pin) {
        case .highest(let tag), .pinned(let tag, _), .pinReleased(let tag):
            desired = APIRevision(version: tag.version, tag: tag.name, commit: tag.commit)
        case .none, .pinnedTagMissing, .ambiguous:
            desired = nil
        }
        let appliedRun = runs.first { run in
            [.applied, .verifying, .verified].contains(run.state) || (run.state == .failed && run.lastReason == .verifyFailed)
        }
        let applied = appliedRun.map { APIRevision(version: $0.run.version, tag: $0.run.tagName, commit: $0.run.commit) }
        // Only a check of what is applied now says anything about it.
        let drift = try await store.driftChecks(of: target, limit: 1).first.flatMap { check -> APIDrift? in
            guard check.runID == appliedRun?.id else { return nil }
            return APIDrift(outcome: check.outcome.rawValue, checkedAt: check.time, version: check.version, tag: check.tagName,
                            detail: check.detail, addresses: check.addresses)
        }
        var pending = runs.first { !$0.state.isFinal }.map {
            APIPendingRevision(runID: $0.id, state: $0.state, version: $0.run.version, tag: $0.run.tagName, commit: $0.run.commit)
        }
        if let id = pending?.runID, pending?.state == .approved, let run = try await store.run(id),
           let schedule = try await gate.applySchedule(of: run) {
            pending?.heldBecause = schedule.heldBecause
            pending?.appliesAt = schedule.appliesAt
        }
        let alerts = try await store.alerts(target: target).count
        return APITarget(project: target.project, environment: target.environment, desired: desired, applied: applied,
                         pending: pending, pin: pin.map(APIPin.init), alerts: alerts, drift: drift)
    }

    func summary(_ run: RunSummary) -> APIRunSummary {
        APIRunSummary(id: run.id, project: run.target.project, environment: run.target.environment, tag: run.run.tagName,
                      version: run.run.version, commit: run.run.commit, state: run.state, digest: run.planDigest,
                      rollback: run.run.rollbackPin != nil, createdAt: run.createdAt, updatedAt: run.updatedAt)
    }

    func detail(_ run: StoredRun) async throws -> APIRunDetail {
        let facts = try await gate.reviewFacts(of: run)
        let transitions = try await store.transitions(of: run.id)
        // An unreadable stored plan shows no summary; its checks have failed closed and say so.
        let planSummary = run.plan.flatMap(\.model)
            .map { APIPlanSummary(create: $0.create, update: $0.update, delete: $0.delete, replace: $0.replace,
                                  destroyedAddresses: $0.deletedAddresses + $0.replacedAddresses) }
        // The built-in checks' verdict, then each external check's result. External checks that
        // failed and may be overridden leave the built-in verdict passed.
        var checks = transitions.compactMap { stored -> APICheck? in
            let reason = stored.transition.reason
            switch reason.code {
            case .checksPassed, .checksFailedOverridable:
                return APICheck(name: "plan_policy", passed: true, detail: nil)
            case .checksFailed where run.plan?.checkResults.blockingFailures.isEmpty ?? true:
                return APICheck(name: "plan_policy", passed: false, detail: reason.detail)
            case .checksFailed:
                return APICheck(name: "plan_policy", passed: true, detail: nil)
            default:
                return nil
            }
        }
        checks += (run.plan?.checkResults ?? []).map(APICheck.init)
        let annotation = await gate.tagAnnotation(of: run)
        let commitMessage = await gate.commitMessage(of: run)
        let alerts = try await store.alerts(target: run.target).filter { $0.runID == run.id }
            .map { APIAlert(code: $0.alert.code, message: $0.alert.description, time: $0.time) }
        return APIRunDetail(
            id: run.id, project: run.target.project, environment: run.target.environment, tag: run.run.tagName,
            version: run.run.version, commit: run.run.commit, tree: run.run.tree, state: run.state, digest: run.planDigest,
            rollback: run.run.rollbackPin != nil, summary: planSummary, planRendering: run.plan?.rendering,
            checks: checks, approvals: try await store.approvals(of: run.id).map(APIApproval.init),
            requiredApprovals: facts.requiredApprovals, mayApprove: facts.mayApprove,
            refusals: try await store.approvalRefusals(of: run.id).map(APIApprovalRefusal.init),
            transitions: transitions.map {
                APITransition(from: $0.transition.from, to: $0.transition.to, reason: $0.transition.reason.code,
                              detail: $0.transition.reason.detail, actor: $0.actor, time: $0.time)
            },
            alerts: alerts, createdAt: run.createdAt, updatedAt: run.updatedAt,
            planRenderingTruncated: run.plan?.renderingTruncated ?? false, planRenderingBytes: run.plan?.renderingBytes,
            planRenderingState: run.plan.map { APIRenderingState(rawValue: $0.renderingState.rawValue) ?? .failed },
            tagger: annotation.map { displaySafe("\($0.taggerName) <\($0.taggerEmail)>", limit: 200) },
            tagMessage: annotation.map { String($0.message.prefix(4_000)) }, commitMessage: commitMessage,
            signer: run.run.signer, priorState: run.plan?.priorState)
            .held(by: try await gate.applySchedule(of: run))
    }
}

extension APIRunDetail {
    /// With the schedule of an approved run held by a window or a freeze.
    func held(by schedule: ApplySchedule?) -> APIRunDetail {
        var detail = self
        detail.heldBecause = schedule?.heldBecause
        detail.appliesAt = schedule?.appliesAt
        detail.approvalsExpireAt = schedule?.approvalsExpireAt
        return detail
    }
}
