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
