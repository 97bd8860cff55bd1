import Foundation
public import GitSource
public import LockstepConfig
public import LockstepCore
public import RunStore

/// How the release tags of one target are decided (docs/CONTRACT.md §3): the single code path behind
/// the daemon's reconcile pass and `lockstep tags --offline`. Having one keeps the two from
/// drifting apart: an operator checking a tag offline sees exactly the decision, and the
/// reason, the daemon records (including the promotion rule, which needs the store).
public enum TagDecisions {
    /// One tag as decided.
    public struct Decided: Sendable, Hashable {
        /// The decision as the daemon records it.
        public var decision: StoredTagDecision
        /// The tag as read from the mirror.
        public var tag: TagInfo
        /// The tree of the tagged commit.
        public var tree: GitObjectID
    }

    /// Every decision of a target, in listing order, and what could not be decided.
    public struct Outcome: Sendable {
        public var decided: [Decided] = []
        /// Tags that could not be read (reported, never accepted).
        public var problems: [String] = []
    }

    /// The environment this one promotes from, when its policy names one.
    public static func promotionSource(of policy: EnvironmentPolicy) -> EnvironmentName? {
        policy.promoteFrom
    }

    /// The acceptance rules of an environment: agent config only (a repository never sets them).
    public static func rules(for policy: EnvironmentPolicy, agent: AgentConfig) -> TagRules {
        // Where the tagger may not approve, the tagger must be known: a lightweight tag has
        // none, which would let a releaser dodge the four-eyes rule.
        TagRules(requireAnnotated: !policy.taggerMayApprove, requireMergeCommit: agent.requireMergeCommit,
                 requireSigned: policy.requireSignedTags, promoteFrom: promotionSource(of: policy))
    }

    /// Decides every tag of `inputs` that matches `pattern` for `target`.
    ///
    /// - Parameters:
    ///   - inputs: the target's tags and their release facts (``ReleaseSource/releaseInputs(for:protectedBranch:)``).
    ///   - sourceRecords: the runs of the `promote_from` environment's target of the
    ///     same project, from the store (ignored when the policy has no `promote_from`).
    public static func decide(target: TargetID, policy: EnvironmentPolicy, agent: AgentConfig, pattern: TagPattern,
                              inputs: ReleaseInputs, sourceRecords: [RunRecord]) -> Outcome {
        let rules = rules(for: policy, agent: agent)
        var outcome = Outcome()
        var matched: [(tag: TagInfo, version: Result<SemanticVersion, CoreError>)] = []
        for tag in inputs.listing.tags {
            switch pattern.match(tag.name, target: target) {
            case .noMatch: continue
            case .version(let parsed): matched.append((tag, .success(parsed)))
            case .unparsableVersion(let error): matched.append((tag, .failure(error)))
            }
        }
        for (tag, version) in matched {
            let facts: ReleaseFacts
            do throws(GitError) {
                guard let answer = inputs.facts[tag.name] else { throw GitError(.notFound, "tag not found", ref: tag.name) }
                facts = try answer.get()
            } catch {
                outcome.problems.append("\(target): tag \"\(displaySafe(tag.name))\" could not be read: \(error.description)")
                continue
            }
            let (object, commit, tree) = (facts.tag.target, facts.tag.commit, facts.tag.tree)
            var promotionVerified = true
            if let source = rules.promoteFrom {
                promotionVerified = PromotionRule.check(tree: tree, project: target.project, source: source,
                                                        records: sourceRecords).isSatisfied
            }
            let tagFacts = TagFacts(
                name: tag.name, version: version, isAnnotated: facts.tag.isAnnotated,
                // Signature verification is not built yet: an environment that requires
                // signed tags fails closed and rejects every tag.
                signature: policy.requireSignedTags ? .failed : .notRequired,
                reachableFromProtectedBranch: facts.reachableFromBranch,
                isMergeCommitOnFirstParentChain: facts.isMergeOnFirstParentChain,
                promotionSourceVerified: promotionVerified)
            var stored = StoredTagDecision(target: target, tagName: tag.name, tagObject: object, commit: commit,
                                           version: try? version.get(), accepted: false, rejections: [])
            switch TagAcceptance.decide(tagFacts, rules: rules) {
            case .accepted(let parsed):
                stored.accepted = true
                stored.version = parsed
            case .rejected(let reasons):
                stored.rejections = reasons
            }
            outcome.decided.append(Decided(decision: stored, tag: facts.tag, tree: tree))
        }
        return outcome
    }
}
