import Foundation
import LockstepConfig
import LockstepCore
import RunStore

/// The typed model of a stored plan and the built-in checks over it (docs/ARCHITECTURE.md,
/// "One pass per run"): the checks, the approval policy and apply's preconditions all read
/// the model, never the plan JSON.
extension Gate {
    /// The model of `run`'s stored plan, or nil when the run has none or it cannot be read
    /// (then ``checks(of:_:)`` fails closed).
    nonisolated func planModel(of run: StoredRun) -> PlanModel? {
        guard let plan = run.plan else { return nil }
        do {
            return try PlanModel.stored(modelJSON: Data(plan.summaryJSON.utf8), planJSON: Data(plan.planJSON.utf8))
        } catch {
            return nil
        }
    }

    /// The built-in checks of `run`'s plan under `policy`.
    nonisolated func checks(of run: StoredRun, _ policy: EnvironmentPolicy) -> PlanChecks {
        guard let model = planModel(of: run) else { return .unreadable }
        return PlanChecks.evaluate(model, rules: PlanCheckRules(policy))
    }
}

extension PlanCheckRules {
    /// The rules an environment's policy sets.
    init(_ policy: EnvironmentPolicy) {
        self.init(allowedResourceTypes: policy.allowedResourceTypes.map(Set.init),
                  protectedResourceTypes: Set(policy.protectedResourceTypes),
                  approvals: policy.approvals, approverCount: policy.approvers.count)
    }
}
