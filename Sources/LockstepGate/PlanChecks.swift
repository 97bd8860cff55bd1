import Foundation
import LockstepConfig

/// The built-in checks of docs/CONTRACT.md §4 over a plan's JSON, pure (no I/O).
///
/// * **Allow-list.** When the environment sets `allowed_resource_types`, a plan that
///   creates, updates, replaces or deletes a managed resource of any other type fails the
///   checks and can never be approved. Stops a merged change from quietly adding, say, an
///   IAM user to an environment whose agent was only ever meant to manage buckets.
/// * **Protected destroys.** Destroying (deleting or replacing) a managed resource whose
///   type is in `protected_resource_types` does not fail the checks; it raises the number
///   of distinct approvals the run needs by one (``Gate`` builds the run's approval policy
///   with `approvals + 1`). So a prod database deletion needs a third pair of eyes where a
///   routine change needs two. When the environment lists no more approvers than it
///   requires approvals, that extra approval could never be given: the checks fail and
///   say so, rather than leaving a run that can never be approved.
struct PlanChecks: Sendable, Hashable {
    /// Why the checks failed (empty when they passed).
    var failures: [String]
    /// Addresses of protected resources the plan destroys (needs the extra approval).
    var protectedDestroys: [String]

    var passed: Bool { failures.isEmpty }
    var needsExtraApproval: Bool { !protectedDestroys.isEmpty }

    /// Judges `planJSON` (terraform `show -json`, already redacted: only addresses, types
    /// and actions are read) against the environment's policy.
    static func evaluate(planJSON: Data, policy: EnvironmentPolicy) -> PlanChecks {
        guard let plan = try? JSONDecoder().decode(RawPlan.self, from: planJSON) else {
            // Fail closed: a plan the checks cannot read is not a plan that passed them.
            return PlanChecks(failures: ["the plan JSON could not be read by the built-in checks"], protectedDestroys: [])
        }
        var failures: [String] = []
        var destroys: [String] = []
        var disallowed: Set<String> = []
        let protected = Set(policy.protectedResourceTypes)
        let allowed = policy.allowedResourceTypes.map(Set.init)
        for change in plan.resourceChanges ?? [] where change.mode != "data" {
            let actions = change.change.actions
            if actions == ["no-op"] || actions == ["read"] || actions.isEmpty { continue }
            let type = change.type ?? ""
            if let allowed, !allowed.contains(type) { disallowed.insert(type) }
            if actions.contains("delete"), protected.contains(type) { destroys.append(change.address) }
        }
        for type in disallowed.sorted() {
            failures.append("resource type \(display(type)) is not in this environment's allowed_resource_types")
        }
        if !destroys.isEmpty, policy.approvers.count <= policy.approvals {
            failures.append("the plan destroys protected resources (\(destroys.sorted().map(display).joined(separator: ", "))), "
                            + "which needs \(policy.approvals + 1) approvals, but only \(policy.approvers.count) approvers are configured")
        }
        return PlanChecks(failures: failures, protectedDestroys: destroys.sorted())
    }

    private static func display(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F }.prefix(200).map(Character.init))
    }

    private struct RawPlan: Decodable {
        struct Change: Decodable { var actions: [String] }
        struct ResourceChange: Decodable {
            var address: String
            var mode: String?
            var type: String?
            var change: Change
        }
        var resourceChanges: [ResourceChange]?
        enum CodingKeys: String, CodingKey { case resourceChanges = "resource_changes" }
    }
}
