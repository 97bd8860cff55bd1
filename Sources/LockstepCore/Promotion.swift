/// What the store remembers about one run, as the promotion rule needs it.
public struct RunRecord: Sendable, Hashable, Codable {
    public let runID: RunID
    public let target: TargetID
    public let commit: GitObjectID
    public let tree: GitObjectID
    public let state: RunState
    /// Code of the transition that put the run in `state`.
    public let lastReason: TransitionReason.Code?

    public init(runID: RunID, target: TargetID, commit: GitObjectID, tree: GitObjectID, state: RunState,
                lastReason: TransitionReason.Code?) {
        self.runID = runID
        self.target = target
        self.commit = commit
        self.tree = tree
        self.state = state
        self.lastReason = lastReason
    }
}

/// Whether a tree may be promoted from a source environment.
public enum PromotionCheck: Sendable, Hashable {
    /// The tree was applied and verified in the source by this run.
    case satisfied(by: RunID)
    case notSatisfied(PromotionShortfall)

    public var isSatisfied: Bool {
        if case .satisfied = self { true } else { false }
    }
}

/// Why promotion is not (yet) allowed.
public struct PromotionShortfall: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let neverApplied = Code(rawValue: "never_applied")
        public static let notYetVerified = Code(rawValue: "not_yet_verified")
        public static let verifyFailed = Code(rawValue: "verify_failed")
    }

    public let code: Code
    public let description: String
}

/// docs/CONTRACT.md §3 rule 4 and §4 verify: an environment with `promote_from: E` accepts a
/// commit only if the same tree was applied *and verified* in E.
public enum PromotionRule {
    /// Checks `records` (any runs; others are ignored) for a `verified` run of the same
    /// project in `source` with the same tree.
    ///
    /// Why the tree and not the commit: a re-tag or cherry-pick that produces the same
    /// content is the same release, while a different tree on a familiar commit
    /// message is not. Why `verified` and not `applied`: a failed smoke test in staging
    /// must stop the release before prod (docs/CONTRACT.md §4, verify).
    public static func check(tree: GitObjectID, project: ProjectName, source: EnvironmentName,
                             records: [RunRecord]) -> PromotionCheck {
        let sourceTarget = TargetID(project: project, environment: source)
        let relevant = records.filter { $0.target == sourceTarget && $0.tree == tree }
        if let verified = relevant.first(where: { $0.state == .verified }) {
            return .satisfied(by: verified.runID)
        }
        if relevant.contains(where: { $0.state == .failed && $0.lastReason == .verifyFailed }) {
            return .notSatisfied(PromotionShortfall(code: .verifyFailed,
                                                    description: "verify failed for this tree in \(source)"))
        }
        if relevant.contains(where: { [.applying, .applied, .verifying, .interrupted].contains($0.state) }) {
            return .notSatisfied(PromotionShortfall(code: .notYetVerified,
                                                    description: "this tree was applied to \(source) but is not verified yet"))
        }
        return .notSatisfied(PromotionShortfall(code: .neverApplied,
                                                description: "this tree was never applied and verified in \(source)"))
    }
}
