/// Result of checking a tag's signature against the environment's allowed signers.
public enum SignatureStatus: String, Sendable, Hashable, Codable {
    /// Not checked because the environment does not require signed tags.
    case notRequired = "not_required"
    /// Signed by a key in the environment's allowed signers.
    case verified
    /// Unsigned, or signed by a key that is not allowed, or the signature is bad.
    case failed
}

/// Who signed a release tag, as verified against the environment's signer files.
public struct TagSigner: Sendable, Hashable, Codable, CustomStringConvertible {
    /// `ssh` or `openpgp`.
    public var format: String
    /// The e-mail address the key is allowed for and the tagger used (the allowed_signers
    /// principal, or the OpenPGP user id's address), lowercased.
    public var principal: String
    /// The key: `SHA256:…` for SSH, the primary key's fingerprint for OpenPGP.
    public var key: String

    public init(format: String, principal: String, key: String) {
        self.format = format
        self.principal = principal
        self.key = key
    }

    public var description: String { "\(principal) (\(format) key \(key))" }
}

/// Everything the git side found out about one release tag, for one environment.
public struct TagFacts: Sendable, Hashable {
    /// Short tag name (untrusted text).
    public var name: String
    /// The version read through the environment's ``TagPattern``, or why it did not parse.
    public var version: Result<SemanticVersion, CoreError>
    /// The tag is an annotated tag object (not a lightweight ref).
    public var isAnnotated: Bool
    public var signature: SignatureStatus
    /// Why the signature failed, in the verifier's words (``SignatureVerdict``); a generic
    /// reason is given when it is missing.
    public var signatureProblem: TagRejection?
    /// The peeled commit is reachable from the protected branch.
    public var reachableFromProtectedBranch: Bool
    /// The peeled commit is on the protected branch's first-parent chain and has two parents.
    public var isMergeCommitOnFirstParentChain: Bool
    /// The same tree was applied and verified in the `promote_from` environment
    /// (see ``PromotionRule``); ignored when the environment has none.
    public var promotionSourceVerified: Bool

    public init(name: String, version: Result<SemanticVersion, CoreError>, isAnnotated: Bool,
                signature: SignatureStatus, reachableFromProtectedBranch: Bool,
                isMergeCommitOnFirstParentChain: Bool, promotionSourceVerified: Bool, signatureProblem: TagRejection? = nil) {
        self.name = name
        self.signatureProblem = signatureProblem
        self.version = version
        self.isAnnotated = isAnnotated
        self.signature = signature
        self.reachableFromProtectedBranch = reachableFromProtectedBranch
        self.isMergeCommitOnFirstParentChain = isMergeCommitOnFirstParentChain
        self.promotionSourceVerified = promotionSourceVerified
    }
}

/// The trust rules of one environment that decide which tags it accepts (agent config only).
public struct TagRules: Sendable, Hashable, Codable {
    public var requireAnnotated: Bool
    public var requireMergeCommit: Bool
    public var requireSigned: Bool
    public var promoteFrom: EnvironmentName?

    public init(requireAnnotated: Bool = false, requireMergeCommit: Bool = false,
                requireSigned: Bool = false, promoteFrom: EnvironmentName? = nil) {
        self.requireAnnotated = requireAnnotated
        self.requireMergeCommit = requireMergeCommit
        self.requireSigned = requireSigned
        self.promoteFrom = promoteFrom
    }
}

/// One reason a tag was rejected; recorded with the tag decision and shown in status and audit.
public struct TagRejection: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let versionUnparsable = Code(rawValue: "version_unparsable")
        public static let notAnnotated = Code(rawValue: "not_annotated")
        public static let notReachable = Code(rawValue: "not_reachable_from_protected_branch")
        public static let notMergeCommit = Code(rawValue: "not_merge_commit")
        /// The generic signature failure (no verifier ran, or it gave no finer reason).
        public static let signatureNotVerified = Code(rawValue: "signature_not_verified")
        /// An annotated tag without a signature block.
        public static let unsigned = Code(rawValue: "unsigned")
        /// Signed in a format the environment has no keys for (an OpenPGP signature where only
        /// SSH signers are configured, an X.509 signature anywhere).
        public static let signatureFormatNotAllowed = Code(rawValue: "signature_format_not_allowed")
        /// The signature block cannot be read.
        public static let signatureMalformed = Code(rawValue: "signature_malformed")
        /// An SSH signature made for another namespace than `git` (a signed file passed off as a tag).
        public static let signatureWrongNamespace = Code(rawValue: "signature_wrong_namespace")
        /// The signature does not match the tag object's bytes (edited after signing).
        public static let signatureBad = Code(rawValue: "signature_bad")
        /// The signing key is not one of the environment's keys.
        public static let signerKeyNotAllowed = Code(rawValue: "signer_key_not_allowed")
        /// The signing key is allowed for another environment, not this one.
        public static let signerKeyOtherEnvironment = Code(rawValue: "signer_key_other_environment")
        /// The key is allowed, but not for the tagger's e-mail address.
        public static let signerPrincipalMismatch = Code(rawValue: "signer_principal_mismatch")
        public static let signerKeyRevoked = Code(rawValue: "signer_key_revoked")
        /// The key is expired, or not valid yet.
        public static let signerKeyExpired = Code(rawValue: "signer_key_expired")
        /// The environment's signer files cannot be read, or the verifying program failed to run.
        public static let signatureUncheckable = Code(rawValue: "signature_uncheckable")
        public static let promotionSourceNotVerified = Code(rawValue: "promotion_source_not_verified")
    }

    public let code: Code
    public let description: String

    public init(code: Code, description: String) {
        self.code = code
        self.description = description
    }
}

/// Whether a tag may become desired state.
public enum TagDecision: Sendable, Hashable {
    case accepted(SemanticVersion)
    /// Every rule the tag broke (never empty), in the order of docs/CONTRACT.md §3.
    case rejected([TagRejection])

    public var isAccepted: Bool {
        if case .accepted = self { true } else { false }
    }
}

/// docs/CONTRACT.md §3 tag acceptance: a pure decision over facts gathered by the git side.
public enum TagAcceptance {
    /// Decides one tag. All broken rules are reported, not just the first, so an
    /// operator fixes the release in one go.
    ///
    /// Invariant: a tag is accepted only when *every* rule holds. In particular an
    /// environment that requires signatures rejects a tag whose signature status is
    /// `.notRequired` (the check was skipped): a caller bug must fail closed.
    public static func decide(_ facts: TagFacts, rules: TagRules) -> TagDecision {
        var reasons: [TagRejection] = []
        let name = displaySafe(facts.name)
        var version: SemanticVersion?
        switch facts.version {
        case .success(let parsed): version = parsed
        case .failure(let error):
            reasons.append(TagRejection(code: .versionUnparsable, description: "tag \"\(name)\": \(error.description)"))
        }
        if !facts.reachableFromProtectedBranch {
            reasons.append(TagRejection(code: .notReachable,
                                        description: "tag \"\(name)\" points to a commit that is not on the protected branch"))
        } else if rules.requireMergeCommit && !facts.isMergeCommitOnFirstParentChain {
            reasons.append(TagRejection(code: .notMergeCommit,
                                        description: "tag \"\(name)\" does not point to a merge commit on the protected branch's first-parent chain"))
        }
        if (rules.requireAnnotated || rules.requireSigned) && !facts.isAnnotated {
            reasons.append(TagRejection(code: .notAnnotated,
                                        description: "tag \"\(name)\" is a lightweight tag; this environment requires annotated tags"))
        }
        if rules.requireSigned && facts.signature != .verified {
            reasons.append(facts.signatureProblem ?? TagRejection(
                code: .signatureNotVerified, description: "tag \"\(name)\" is not signed by an allowed signer of this environment"))
        }
        if let source = rules.promoteFrom, !facts.promotionSourceVerified {
            reasons.append(TagRejection(code: .promotionSourceNotVerified,
                                        description: "tag \"\(name)\": the same tree was not applied and verified in \(source) first"))
        }
        if let version, reasons.isEmpty { return .accepted(version) }
        return .rejected(reasons)
    }
}

/// An accepted release tag of one target.
public struct AcceptedTag: Sendable, Hashable, Codable {
    public let name: String
    public let version: SemanticVersion
    public let commit: GitObjectID

    public init(name: String, version: SemanticVersion, commit: GitObjectID) {
        self.name = name
        self.version = version
        self.commit = commit
    }
}

/// A rollback pin (docs/CONTRACT.md §3): the target stays at ``version`` until a tag with a
/// version higher than ``ceiling`` (the highest accepted version when the pin was
/// set) is accepted.
public struct RollbackPin: Sendable, Hashable, Codable {
    public let version: SemanticVersion
    public let ceiling: SemanticVersion

    public init(version: SemanticVersion, ceiling: SemanticVersion) {
        self.version = version
        self.ceiling = ceiling
    }

    /// Pins a rollback to `version`, which must be an accepted version of the target.
    /// Why: a rollback is a normal gated run of an *accepted* tag; it can never
    /// reach a version that failed acceptance.
    public static func pin(to version: SemanticVersion, accepted: [AcceptedTag]) throws(CoreError) -> RollbackPin {
        guard accepted.contains(where: { $0.version.hasSamePrecedence(as: version) }),
              let highest = accepted.map(\.version).max() else {
            throw CoreError(.rollbackVersionNotAccepted,
                            "cannot roll back to \(version): it is not an accepted version of this target",
                            context: ["version": version.description])
        }
        return RollbackPin(version: version, ceiling: highest)
    }
}

/// Which revision a target should be at.
public enum DesiredRevision: Sendable, Hashable {
    /// No accepted tag.
    case none
    /// The highest accepted version; no pin in force.
    case highest(AcceptedTag)
    /// A rollback pin holds.
    case pinned(AcceptedTag, RollbackPin)
    /// A version above the pin's ceiling was accepted: the pin no longer holds and
    /// the caller should clear it.
    case pinReleased(AcceptedTag)
    /// The pinned version has no accepted tag any more (deleted): needs a human,
    /// never a silent jump to the highest version.
    case pinnedTagMissing(RollbackPin)
    /// Several accepted tags share the winning precedence (`v1.2.0` and `1.2.0`,
    /// or differing build metadata): Lockstep never guesses between them.
    case ambiguous([AcceptedTag])
}

extension TagAcceptance {
    /// The desired revision: the highest accepted version, unless a rollback pin holds.
    public static func desiredRevision(accepted: [AcceptedTag], pin: RollbackPin?) -> DesiredRevision {
        guard let highest = accepted.map(\.version).max() else {
            if let pin { return .pinnedTagMissing(pin) }
            return .none
        }
        func tags(at version: SemanticVersion) -> [AcceptedTag] {
            accepted.filter { $0.version.hasSamePrecedence(as: version) }
                .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        }
        if let pin, !(pin.ceiling < highest) {
            let pinned = tags(at: pin.version)
            if pinned.isEmpty { return .pinnedTagMissing(pin) }
            return pinned.count == 1 ? .pinned(pinned[0], pin) : .ambiguous(pinned)
        }
        let top = tags(at: highest)
        guard top.count == 1 else { return .ambiguous(top) }
        return pin == nil ? .highest(top[0]) : .pinReleased(top[0])
    }
}

/// How a tag changed between two listings of the repository.
public enum TagChange: Sendable, Hashable {
    case appeared(name: String, object: GitObjectID)
    /// Same name, new object: never followed silently (docs/CONTRACT.md §3); its runs are invalidated and an
    /// alert raised.
    case moved(name: String, from: GitObjectID, to: GitObjectID)
    case deleted(name: String, object: GitObjectID)

    /// Compares two listings (tag name → tag object id), ordered by name.
    public static func changes(previous: [String: GitObjectID], current: [String: GitObjectID]) -> [TagChange] {
        let names = Set(previous.keys).union(current.keys).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return names.compactMap { name in
            switch (previous[name], current[name]) {
            case (nil, let new?): .appeared(name: name, object: new)
            case (let old?, nil): .deleted(name: name, object: old)
            case (let old?, let new?) where old != new: .moved(name: name, from: old, to: new)
            default: nil
            }
        }
    }
}
