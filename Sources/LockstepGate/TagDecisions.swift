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
        /// Who signed the tag, when the environment requires signatures and it verified.
        public var signer: TagSigner?
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
    ///   - signatures: the verdict on each annotated tag object's signature
    ///     (``verifySignatures(of:trust:others:verifier:source:)``); a tag without one fails
    ///     closed where the environment requires signed tags.
    public static func decide(target: TargetID, policy: EnvironmentPolicy, agent: AgentConfig, pattern: TagPattern,
                              inputs: ReleaseInputs, sourceRecords: [RunRecord],
                              signatures: [GitObjectID: SignatureVerdict] = [:]) -> Outcome {
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
            var signature = SignatureStatus.notRequired
            var signatureProblem: TagRejection?
            var signer: TagSigner?
            if policy.requireSignedTags {
                switch facts.tag.isAnnotated ? signatures[object] : nil {
                case .verified(let verified)?:
                    (signature, signer) = (.verified, verified)
                case .rejected(let rejection)?:
                    (signature, signatureProblem) = (.failed, rejection)
                case nil:
                    signature = .failed
                    if !facts.tag.isAnnotated {
                        signatureProblem = TagRejection(code: .unsigned, description: "tag \"\(displaySafe(tag.name))\" is lightweight: it carries no signature")
                    }
                }
            }
            let tagFacts = TagFacts(
                name: tag.name, version: version, isAnnotated: facts.tag.isAnnotated, signature: signature,
                reachableFromProtectedBranch: facts.reachableFromBranch,
                isMergeCommitOnFirstParentChain: facts.isMergeOnFirstParentChain,
                promotionSourceVerified: promotionVerified, signatureProblem: signatureProblem)
            var stored = StoredTagDecision(target: target, tagName: tag.name, tagObject: object, commit: commit,
                                           version: try? version.get(), accepted: false, rejections: [])
            switch TagAcceptance.decide(tagFacts, rules: rules) {
            case .accepted(let parsed):
                stored.accepted = true
                stored.version = parsed
            case .rejected(let reasons):
                stored.rejections = reasons
            }
            outcome.decided.append(Decided(decision: stored, tag: facts.tag, tree: tree, signer: stored.accepted ? signer : nil))
        }
        return outcome
    }

    /// The verdict on the signature of every annotated tag `inputs` lists, for an environment
    /// whose signer files are `trust`: from the verifier's cache, else read from `source` by
    /// object id and verified. A tag object that cannot be read is named in `problems` and has
    /// no verdict (so it is rejected).
    public static func verifySignatures(of inputs: ReleaseInputs, trust: SignerTrust, others: [SignerTrust],
                                        verifier: TagSignatureVerifier, source: any ReleaseSource) async
        -> (verdicts: [GitObjectID: SignatureVerdict], problems: [String]) {
        var verdicts: [GitObjectID: SignatureVerdict] = [:]
        var problems: [String] = []
        for tag in inputs.listing.tags where tag.isAnnotated && verdicts[tag.target] == nil {
            if let known = await verifier.cached(tag: tag.target, trust: trust) {
                verdicts[tag.target] = known
                continue
            }
            do throws(GitError) {
                let raw = try await source.rawTag(id: tag.target, name: tag.name)
                let verdict = await verifier.verify(raw, trust: trust, others: others)
                verdicts[tag.target] = verdict
                if case .rejected(let rejection) = verdict, rejection.code == .signatureUncheckable {
                    problems.append(rejection.description)  // not the tag's fault: retried next pass
                }
            } catch {
                problems.append("tag \"\(displaySafe(tag.name))\": its tag object could not be read to verify its signature: \(error.description)")
            }
        }
        return (verdicts, problems)
    }
}
