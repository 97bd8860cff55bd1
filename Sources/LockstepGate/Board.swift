import Foundation
import LockstepConfig
import LockstepCore
import RunStore

/// What a reviewer of one run needs beyond the stored run: the approvals it really needs
/// and who may still give one. Computed by the gate so the API shows exactly the rules
/// the gate enforces (a board that said "one approval" while the gate wanted two would
/// send a reviewer away early).
public struct ReviewFacts: Sendable, Hashable {
    /// Approvals required, including the extra one for a protected destroy.
    public var requiredApprovals: Int
    /// Identities allowed to approve now: approvers of the environment, not yet approved,
    /// not the tagger unless the environment allows it. Empty unless awaiting approval.
    public var mayApprove: [IdentityName]
}

extension Gate {
    /// Every target this agent serves, from the last valid layout it read (empty before the
    /// first successful ``reconcile()``).
    public func servedTargetIDs() -> [TargetID] {
        guard let layout = lastGoodLayout?.config else { return [] }
        var targets: [TargetID] = []
        for (environment, policy) in agent.environments where policy.serves {
            for project in layout.projects.keys {
                targets.append(TargetID(project: project, environment: environment))
            }
        }
        return targets.sorted { "\($0)" < "\($1)" }
    }

    /// The approval facts of `run` under the agent's policy.
    public func reviewFacts(of run: StoredRun) async throws -> ReviewFacts {
        guard let policy = environmentPolicy(run.target) else { return ReviewFacts(requiredApprovals: 0, mayApprove: []) }
        let approvalPolicy = try approvalPolicy(for: run, policy)
        guard run.state == .awaitingApproval, let digest = run.planDigest else {
            return ReviewFacts(requiredApprovals: approvalPolicy.requiredApprovals, mayApprove: [])
        }
        let given = Set(try await store.approvals(of: run.id).filter { $0.digest == digest }.map(\.identity))
        let taggers = (policy.taggerMayApprove ? [] : taggerIdentities(run)).union(signerIdentities(run, policy))
        let may = policy.approvers
            .filter { knownIdentities.contains($0) && !given.contains($0) && !taggers.contains($0) }
        return ReviewFacts(requiredApprovals: approvalPolicy.requiredApprovals, mayApprove: may)
    }
}

/// The approvals of an approved run held back by a closed window or a freeze.
struct HeldApproval: Sendable {
    var valid: Int
    var required: Int
    /// Distinct break-glass members among the valid approvals.
    var breakGlass: Int
    /// When the valid approvals stop meeting the requirement (the earliest moment the run
    /// would be `expired`); nil when they already do not.
    var expiresAt: Date?
}

extension Gate {
    /// The approvals of `run` as they stand now (see ``HeldApproval``).
    func heldApproval(_ run: StoredRun, _ policy: EnvironmentPolicy) async throws -> HeldApproval {
        let approvalPolicy = try approvalPolicy(for: run, policy)
        guard let digest = run.planDigest else {
            return HeldApproval(valid: 0, required: approvalPolicy.requiredApprovals, breakGlass: 0, expiresAt: nil)
        }
        let valid = ApprovalRules.validApprovals(try await store.approvals(of: run.id), for: approvalContext(run, policy, digest: digest),
                                                 policy: approvalPolicy, now: now())
        let required = approvalPolicy.requiredApprovals
        let expiries = valid.map { $0.time.addingTimeInterval(approvalPolicy.approvalLifetime) }.sorted()
        // Approvals expire oldest first: the requirement fails once all but `required - 1` are gone.
        let expiresAt = valid.count >= required ? expiries[valid.count - required] : nil
        return HeldApproval(valid: valid.count, required: required,
                            breakGlass: Set(valid.filter(\.breakGlass).map(\.identity)).count, expiresAt: expiresAt)
    }

    /// When an approved run held by a closed window or a freeze will apply, and until when its
    /// approvals hold; nil for any other run, or one that may apply now.
    public func applySchedule(of run: StoredRun) async throws -> ApplySchedule? {
        guard run.state == .approved, let policy = environmentPolicy(run.target) else { return nil }
        let moment = now()
        guard !policy.applyAllowed(at: moment) else { return nil }
        let held = try await heldApproval(run, policy)
        if held.breakGlass >= 2 { return nil }
        let reason = policy.freeze(at: moment).map { "frozen (\($0))" } ?? "outside the apply windows"
        return ApplySchedule(appliesAt: policy.nextApplyTime(after: moment), approvalsExpireAt: held.expiresAt, heldBecause: reason)
    }
}

/// See ``Gate/applySchedule(of:)``.
public struct ApplySchedule: Sendable, Hashable {
    /// The first moment a window is open and no freeze is in force (nil: none within a year).
    public var appliesAt: Date?
    /// When the approvals stop sufficing; the run expires then if it has not applied.
    public var approvalsExpireAt: Date?
    public var heldBecause: String
}
