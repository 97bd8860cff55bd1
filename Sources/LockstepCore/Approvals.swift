import Foundation

/// An environment's approval policy (agent config: a trust decision a repo can never loosen).
public struct ApprovalPolicy: Sendable, Hashable, Codable {
    /// Distinct identities needed (at least 1).
    public let requiredApprovals: Int
    /// Identities allowed to approve runs of this environment.
    public let allowedIdentities: Set<IdentityName>
    /// Whether the tagger of the release may approve their own release.
    public let taggerMayApprove: Bool
    /// Seconds an approval stays valid after it was given.
    public let approvalLifetime: TimeInterval
    /// Members of the environment's break-glass group (empty: no break-glass path). A member
    /// may approve with `break_glass` and a reason even when not an approver; two such
    /// approvals let the run apply inside a freeze or outside the apply windows.
    public let breakGlassMembers: Set<IdentityName>

    /// Validates the policy: it must be satisfiable and time-bounded.
    public init(requiredApprovals: Int, allowedIdentities: Set<IdentityName>, taggerMayApprove: Bool,
                approvalLifetime: TimeInterval, breakGlassMembers: Set<IdentityName> = []) throws(CoreError) {
        guard requiredApprovals >= 1 else {
            throw CoreError(.policyInvalid, "approvals must be at least 1, got \(requiredApprovals)")
        }
        guard allowedIdentities.count >= requiredApprovals else {
            throw CoreError(.policyInvalid,
                            "approvals is \(requiredApprovals) but only \(allowedIdentities.count) identities may approve; the policy could never be met")
        }
        guard approvalLifetime.isFinite, approvalLifetime > 0 else {
            throw CoreError(.policyInvalid, "approval lifetime must be a positive number of seconds")
        }
        self.requiredApprovals = requiredApprovals
        self.allowedIdentities = allowedIdentities
        self.taggerMayApprove = taggerMayApprove
        self.approvalLifetime = approvalLifetime
        self.breakGlassMembers = breakGlassMembers
    }
}

/// One approval as given: who, which run, which plan digest, when, and what it takes on
/// itself beyond the plan (failed checks it overrides, a break-glass apply), with the reason.
public struct Approval: Sendable, Hashable, Codable {
    public let runID: RunID
    public let identity: IdentityName
    /// The plan digest the approver quoted; binds the approval to exactly that plan.
    public let digest: Digest
    public let time: Date
    /// Names of failed external checks this approval overrides (`--override-check`), sorted.
    public let overrideChecks: [String]
    /// An emergency approval by a break-glass group member (`--break-glass`).
    public let breakGlass: Bool
    /// Why (`--reason`): required with an override or break-glass, stored and audited.
    public let reason: String?

    public init(runID: RunID, identity: IdentityName, digest: Digest, time: Date, overrideChecks: [String] = [],
                breakGlass: Bool = false, reason: String? = nil) {
        self.runID = runID
        self.identity = identity
        self.digest = digest
        self.time = time
        self.overrideChecks = Array(Set(overrideChecks)).sorted()
        self.breakGlass = breakGlass
        self.reason = reason
    }

    /// The same approval dated `time` (a store keeps times to the millisecond).
    public func dated(_ time: Date) -> Approval {
        Approval(runID: runID, identity: identity, digest: digest, time: time, overrideChecks: overrideChecks,
                 breakGlass: breakGlass, reason: reason)
    }
}

/// What an approver takes on beyond the plan: failed checks overridden, a break-glass approval,
/// and why. Empty for an ordinary approval.
public struct ApprovalTerms: Sendable, Hashable {
    public var overrideChecks: [String]
    public var breakGlass: Bool
    public var reason: String?

    public init(overrideChecks: [String] = [], breakGlass: Bool = false, reason: String? = nil) {
        self.overrideChecks = overrideChecks
        self.breakGlass = breakGlass
        self.reason = reason
    }

    public static let none = ApprovalTerms()
}

/// What the approval rules need to know about the run being approved.
public struct ApprovalContext: Sendable, Hashable {
    public let runID: RunID
    public let state: RunState
    public let planDigest: Digest
    /// Identities whose configured git e-mail addresses match the release tag's tagger.
    public let taggerIdentities: Set<IdentityName>
    /// Every identity the agent config defines (allowed for this environment or not).
    public let knownIdentities: Set<IdentityName>
    /// Identities who may not approve because they signed the release tag: empty unless the
    /// environment says `signer_may_approve: false` and the tag's signer maps to an identity.
    public let signerIdentities: Set<IdentityName>
    /// External checks that failed on this plan and that the agent config lets an approver
    /// override: every approval must name each of them with `--override-check` (and a reason).
    /// A failed check that may not be overridden fails the run instead; it never gets here.
    public let failedChecks: Set<String>

    public init(runID: RunID, state: RunState, planDigest: Digest,
                taggerIdentities: Set<IdentityName>, knownIdentities: Set<IdentityName>,
                signerIdentities: Set<IdentityName> = [], failedChecks: Set<String> = []) {
        self.runID = runID
        self.failedChecks = failedChecks
        self.signerIdentities = signerIdentities
        self.state = state
        self.planDigest = planDigest
        self.taggerIdentities = taggerIdentities
        self.knownIdentities = knownIdentities
    }
}

/// Why an approval was refused. The refusal is recorded and audited like an approval.
public struct ApprovalRefusal: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let wrongRun = Code(rawValue: "wrong_run")
        public static let runNotAwaitingApproval = Code(rawValue: "run_not_awaiting_approval")
        public static let wrongDigest = Code(rawValue: "wrong_digest")
        public static let unknownIdentity = Code(rawValue: "unknown_identity")
        public static let identityNotAllowed = Code(rawValue: "identity_not_allowed")
        public static let taggerSelfApproval = Code(rawValue: "tagger_self_approval")
        public static let signerSelfApproval = Code(rawValue: "signer_self_approval")
        public static let duplicateIdentity = Code(rawValue: "duplicate_identity")
        public static let expired = Code(rawValue: "expired")
        public static let timeInFuture = Code(rawValue: "time_in_future")
        /// A failed external check the approval does not override.
        public static let checkFailed = Code(rawValue: "check_failed")
        /// `--override-check` names a check that did not fail on this plan.
        public static let overrideNotNeeded = Code(rawValue: "override_not_needed")
        /// An override or a break-glass approval without a reason.
        public static let reasonRequired = Code(rawValue: "reason_required")
        /// `--break-glass` where the environment has no break-glass group, or from someone not in it.
        public static let breakGlassNotAllowed = Code(rawValue: "break_glass_not_allowed")
    }

    public let code: Code
    public let approval: Approval
    public let description: String

    public init(code: Code, approval: Approval, description: String) {
        self.code = code
        self.approval = approval
        self.description = description
    }
}

/// The outcome of one approval attempt.
public enum ApprovalDecision: Sendable, Hashable {
    /// Accepted; `validApprovals` counts it together with the earlier valid ones.
    case accepted(Approval, validApprovals: Int, required: Int)
    case refused(ApprovalRefusal)
}

/// docs/CONTRACT.md §4 approval rules, pure: N distinct, allowed, unexpired identities quoting the run's plan digest.
public enum ApprovalRules {
    /// Decides a new approval. The first failing rule is the reason, checked in this
    /// order: run, state, digest, identity known, identity allowed, tagger, time, duplicate.
    ///
    /// Invariants and the attacks they stop:
    /// * the quoted digest must equal the run's plan digest: an approval of one plan
    ///   can never release another (a plan swapped after review);
    /// * the tagger may not approve their own release unless the policy says so:
    ///   one person cannot both cut and approve a prod release;
    /// * an identity counts once: one reviewer cannot meet a two-person rule alone.
    public static func decide(_ approval: Approval, for run: ApprovalContext, existing: [Approval],
                              policy: ApprovalPolicy, now: Date) -> ApprovalDecision {
        if let reason = refusal(of: approval, for: run, policy: policy, now: now) {
            return .refused(ApprovalRefusal(code: reason.0, approval: approval, description: reason.1))
        }
        let valid = validApprovals(existing, for: run, policy: policy, now: now)
        if valid.contains(where: { $0.identity == approval.identity }) {
            return .refused(ApprovalRefusal(code: .duplicateIdentity, approval: approval,
                                            description: "\(approval.identity) has already approved run \(run.runID)"))
        }
        return .accepted(approval, validApprovals: valid.count + 1, required: policy.requiredApprovals)
    }

    /// The approvals that count right now: for this run and digest, from known, allowed
    /// identities, not the tagger (unless allowed), not expired, one per identity (the earliest).
    /// Run state is not considered here: apply preconditions use this count after the run left `awaiting_approval`.
    public static func validApprovals(_ approvals: [Approval], for run: ApprovalContext,
                                      policy: ApprovalPolicy, now: Date) -> [Approval] {
        var seen: Set<IdentityName> = []
        var result: [Approval] = []
        let awaiting = ApprovalContext(runID: run.runID, state: .awaitingApproval, planDigest: run.planDigest,
                                       taggerIdentities: run.taggerIdentities, knownIdentities: run.knownIdentities,
                                       signerIdentities: run.signerIdentities, failedChecks: run.failedChecks)
        for approval in approvals.sorted(by: { $0.time < $1.time })
        where refusal(of: approval, for: awaiting, policy: policy, now: now) == nil {
            if seen.insert(approval.identity).inserted { result.append(approval) }
        }
        return result
    }

    /// Identities whose configured e-mail addresses include `email` (case-insensitive,
    /// surrounding spaces and angle brackets ignored). Used to map a tag's tagger to identities.
    public static func identities(matchingEmail email: String,
                                  in directory: [IdentityName: [String]]) -> Set<IdentityName> {
        func normalise(_ text: String) -> String {
            let trimmed = text.drop { $0 == " " || $0 == "<" }.reversed().drop { $0 == " " || $0 == ">" }.reversed()
            return String(trimmed).lowercased()
        }
        let wanted = normalise(email)
        guard !wanted.isEmpty else { return [] }
        return Set(directory.filter { $0.value.contains { normalise($0) == wanted } }.keys)
    }

    private static func refusal(of approval: Approval, for run: ApprovalContext, policy: ApprovalPolicy,
                                now: Date) -> (ApprovalRefusal.Code, String)? {
        if approval.runID != run.runID {
            return (.wrongRun, "the approval names run \(approval.runID), not \(run.runID)")
        }
        // A break-glass approval may still come once the run is approved: it is what lets an
        // approved run held by a freeze or a closed window through.
        if run.state != .awaitingApproval && !(approval.breakGlass && run.state == .approved) {
            return (.runNotAwaitingApproval, "run \(run.runID) is \(run.state.rawValue), not awaiting approval")
        }
        if approval.digest != run.planDigest {
            return (.wrongDigest, "the approval quotes digest \(approval.digest), but run \(run.runID) has plan digest \(run.planDigest)")
        }
        if !run.knownIdentities.contains(approval.identity) {
            return (.unknownIdentity, "\(approval.identity) is not a known identity")
        }
        if approval.breakGlass {
            if policy.breakGlassMembers.isEmpty {
                return (.breakGlassNotAllowed, "this environment has no break-glass group; approve without --break-glass")
            }
            if !policy.breakGlassMembers.contains(approval.identity) {
                return (.breakGlassNotAllowed, "\(approval.identity) is not in this environment's break-glass group")
            }
        } else if !policy.allowedIdentities.contains(approval.identity) {
            return (.identityNotAllowed, "\(approval.identity) may not approve runs of this environment")
        }
        if (approval.breakGlass || !approval.overrideChecks.isEmpty),
           (approval.reason ?? "").allSatisfy(\.isWhitespace) {
            return (.reasonRequired, approval.breakGlass ? "a break-glass approval needs --reason"
                                                         : "overriding a failed check needs --reason")
        }
        if let needless = approval.overrideChecks.first(where: { !run.failedChecks.contains($0) }) {
            return (.overrideNotNeeded, "check \(displaySafe(needless, limit: 80)) did not fail on this plan (or may not be overridden); nothing to override")
        }
        if let missing = run.failedChecks.sorted().first(where: { !approval.overrideChecks.contains($0) }) {
            return (.checkFailed, "check \(missing) failed on this plan; approving it needs --override-check \(missing) --reason …")
        }
        if !policy.taggerMayApprove && run.taggerIdentities.contains(approval.identity) {
            return (.taggerSelfApproval, "\(approval.identity) created the release tag and may not approve their own release")
        }
        if run.signerIdentities.contains(approval.identity) {
            return (.signerSelfApproval, "\(approval.identity) signed the release tag and may not approve it")
        }
        if approval.time > now {
            return (.timeInFuture, "the approval is dated in the future")
        }
        if now.timeIntervalSince(approval.time) >= policy.approvalLifetime {
            return (.expired, "the approval by \(approval.identity) has expired")
        }
        return nil
    }
}
