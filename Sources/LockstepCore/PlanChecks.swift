/// What an environment's policy says about the contents of a plan (docs/CONTRACT.md §4):
/// the two built-in checks' inputs, taken from the agent config.
public struct PlanCheckRules: Sendable, Hashable {
    /// When set, the only managed resource types a plan may change.
    public var allowedResourceTypes: Set<String>?
    /// Types whose destruction needs one approval more than usual.
    public var protectedResourceTypes: Set<String>
    /// Distinct approvals a run normally needs.
    public var approvals: Int
    /// How many identities may approve in this environment.
    public var approverCount: Int

    public init(allowedResourceTypes: Set<String>?, protectedResourceTypes: Set<String>, approvals: Int, approverCount: Int) {
        self.allowedResourceTypes = allowedResourceTypes
        self.protectedResourceTypes = protectedResourceTypes
        self.approvals = approvals
        self.approverCount = approverCount
    }
}

/// The built-in checks over a ``PlanModel``, pure (docs/CONTRACT.md §4):
///
/// * **Allow-list.** When the environment sets `allowed_resource_types`, a plan that
///   creates, updates, replaces or deletes a managed resource of any other type fails the
///   checks and can never be approved. Stops a merged change from quietly adding, say, an
///   IAM user to an environment whose agent was only ever meant to manage buckets.
/// * **Protected destroys.** Destroying (deleting or replacing) a managed resource whose
///   type is in `protected_resource_types` does not fail the checks; it raises the number
///   of distinct approvals the run needs by one. So a prod database deletion needs a third
///   pair of eyes where a routine change needs two. When the environment lists no more
///   approvers than it requires approvals, that extra approval could never be given: the
///   checks fail and say so, rather than leaving a run that can never be approved.
public struct PlanChecks: Sendable, Hashable {
    /// Why the checks failed (empty when they passed).
    public var failures: [String]
    /// Addresses of protected resources the plan destroys, sorted (needs the extra approval).
    public var protectedDestroys: [String]

    public var passed: Bool { failures.isEmpty }
    public var needsExtraApproval: Bool { !protectedDestroys.isEmpty }

    public init(failures: [String], protectedDestroys: [String]) {
        self.failures = failures
        self.protectedDestroys = protectedDestroys
    }

    /// The checks' verdict when the plan could not be read: fail closed, since a plan the
    /// checks cannot read is not a plan that passed them.
    public static let unreadable = PlanChecks(failures: ["the plan JSON could not be read by the built-in checks"],
                                              protectedDestroys: [])

    /// Judges `plan` against `rules`.
    public static func evaluate(_ plan: PlanModel, rules: PlanCheckRules) -> PlanChecks {
        var disallowed: Set<String> = []
        var destroys: [String] = []
        for change in plan.resourceChanges where change.changesInfrastructure {
            if let allowed = rules.allowedResourceTypes, !allowed.contains(change.type) { disallowed.insert(change.type) }
            if change.destroys, rules.protectedResourceTypes.contains(change.type) { destroys.append(change.address) }
        }
        destroys.sort()
        var failures = disallowed.sorted().map {
            "resource type \(displaySafe($0, limit: 200)) is not in this environment's allowed_resource_types"
        }
        if !destroys.isEmpty, rules.approverCount <= rules.approvals {
            failures.append("the plan destroys protected resources (\(destroys.map { displaySafe($0, limit: 200) }.joined(separator: ", "))), "
                            + "which needs \(rules.approvals + 1) approvals, but only \(rules.approverCount) approvers are configured")
        }
        return PlanChecks(failures: failures, protectedDestroys: destroys)
    }
}

/// The result of one external policy check on a plan (docs/CONTRACT.md §4), stored with the plan
/// and shown to reviewers.
public struct CheckResult: Sendable, Hashable, Codable {
    /// The check's name from the agent config (`NAME/repo` for its run over the repository's
    /// policy files).
    public var name: String
    public var passed: Bool
    /// Whether an approver may override this failure (the agent config's `may_override`).
    public var mayOverride: Bool
    /// How the program ended: `passed`, `failed (exit 1)`, `timed out`, `could not start: …`.
    public var outcome: String
    /// The program's output, redacted and cut to the agent's limit (its start and its end).
    public var output: String

    public init(name: String, passed: Bool, mayOverride: Bool, outcome: String, output: String) {
        self.name = name
        self.passed = passed
        self.mayOverride = mayOverride
        self.outcome = outcome
        self.output = output
    }

    enum CodingKeys: String, CodingKey {
        case name, passed, outcome, output
        case mayOverride = "may_override"
    }
}

extension [CheckResult] {
    /// Failed checks that may be overridden; the run can be approved only by approvals that
    /// override each of them.
    public var overridableFailures: Set<String> {
        Set(filter { !$0.passed && $0.mayOverride }.map(\.name))
    }

    /// Failed checks that may not be overridden: the run fails.
    public var blockingFailures: [CheckResult] {
        filter { !$0.passed && !$0.mayOverride }
    }
}
