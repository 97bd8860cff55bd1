import Foundation
public import LockstepConfig
public import LockstepCore
public import RunStore

/// The typed model of a stored plan and the built-in checks over it (docs/ARCHITECTURE.md,
/// "One pass per run"): the checks, the approval policy and apply's preconditions all read
/// the model, never the plan JSON.
extension Gate {
    /// The model of `run`'s stored plan, or nil when the run has none or it cannot be read
    /// (then ``checks(of:_:)`` fails closed).
    nonisolated func planModel(of run: StoredRun) -> PlanModel? {
        run.plan?.model
    }

    /// The built-in checks of `run`'s plan under `policy`.
    nonisolated func checks(of run: StoredRun, _ policy: EnvironmentPolicy) -> PlanChecks {
        guard let model = planModel(of: run) else { return .unreadable }
        return PlanChecks.evaluate(model, rules: PlanCheckRules(policy))
    }
}

extension StoredPlan {
    /// The typed model of this stored plan (its stored form, or for a plan stored before the
    /// model existed, its stored redacted JSON parsed once); nil when neither can be read.
    public var model: PlanModel? {
        do {
            return try PlanModel.stored(modelJSON: Data(summaryJSON.utf8), planJSON: Data(planJSON.utf8))
        } catch {
            return nil
        }
    }
}

extension PlanCheckRules {
    /// The rules an environment's policy sets.
    public init(_ policy: EnvironmentPolicy) {
        self.init(allowedResourceTypes: policy.allowedResourceTypes.map(Set.init),
                  protectedResourceTypes: Set(policy.protectedResourceTypes),
                  approvals: policy.approvals, approverCount: policy.approvers.count)
    }
}
