/// Every fact checked together right before apply (docs/CONTRACT.md §4). Gathered by the caller
/// in one go, judged here.
public struct ApplyFacts: Sendable, Hashable {
    /// Valid approvals now (``ApprovalRules/validApprovals(_:for:policy:now:)``).
    public var validApprovals: Int
    public var requiredApprovals: Int
    /// The digest the approvals quote (the run's plan digest).
    public var approvedDigest: Digest
    /// SHA-256 of the plan file on disk now; `nil` when the file is missing.
    public var planDigestOnDisk: Digest?
    /// The commit the run planned.
    public var runCommit: GitObjectID
    /// The commit the run's tag resolves to now; `nil` when the tag was deleted.
    public var tagCommitNow: GitObjectID?
    /// Other runs that applied to the target since this run planned.
    public var appliesSincePlan: [RunID]
    public var applyWindowOpen: Bool
    public var checksPassed: Bool
    public var agentServesEnvironment: Bool
    /// Why the release tag's signature no longer verifies with the environment's signer files
    /// as they are now (a key revoked or removed since the tag was accepted); nil when it does,
    /// or when the environment does not require signed tags.
    public var signatureProblem: String?
    /// The freeze period the environment is in now (its description), or nil.
    public var freeze: String?
    /// Distinct break-glass group members among the valid approvals: two of them let the apply
    /// start inside a freeze or outside the apply windows.
    public var breakGlassApprovers: [IdentityName] = []

    public init(validApprovals: Int, requiredApprovals: Int, approvedDigest: Digest, planDigestOnDisk: Digest?,
                runCommit: GitObjectID, tagCommitNow: GitObjectID?, appliesSincePlan: [RunID],
                applyWindowOpen: Bool, checksPassed: Bool, agentServesEnvironment: Bool) {
        self.validApprovals = validApprovals
        self.requiredApprovals = requiredApprovals
        self.approvedDigest = approvedDigest
        self.planDigestOnDisk = planDigestOnDisk
        self.runCommit = runCommit
        self.tagCommitNow = tagCommitNow
        self.appliesSincePlan = appliesSincePlan
        self.applyWindowOpen = applyWindowOpen
        self.checksPassed = checksPassed
        self.agentServesEnvironment = agentServesEnvironment
    }
}

/// One failed apply precondition.
public struct ApplyPreconditionFailure: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let insufficientApprovals = Code(rawValue: "insufficient_approvals")
        public static let planFileMissing = Code(rawValue: "plan_file_missing")
        public static let planDigestMismatch = Code(rawValue: "plan_digest_mismatch")
        public static let tagDeleted = Code(rawValue: "tag_deleted")
        public static let tagMoved = Code(rawValue: "tag_moved")
        public static let targetAppliedSincePlan = Code(rawValue: "target_applied_since_plan")
        public static let applyWindowClosed = Code(rawValue: "apply_window_closed")
        public static let checksNotPassed = Code(rawValue: "checks_not_passed")
        public static let environmentNotServed = Code(rawValue: "environment_not_served")
        public static let signatureNoLongerValid = Code(rawValue: "signature_no_longer_valid")
        public static let frozen = Code(rawValue: "frozen")
    }

    public let code: Code
    public let description: String

    /// Failures that can never heal for this run: the run must end.
    public var isFatal: Bool { code != .insufficientApprovals && !waitsForTime }
    /// Failures that end by themselves when a window opens or a freeze ends.
    public var waitsForTime: Bool { code == .applyWindowClosed || code == .frozen }
    /// Failures that deserve an alert, not just a status line: someone changed what was approved.
    public var isAlarming: Bool {
        code == .planDigestMismatch || code == .planFileMissing || code == .tagMoved || code == .tagDeleted
            || code == .signatureNoLongerValid
    }

    public init(code: Code, description: String) {
        self.code = code
        self.description = description
    }
}

/// All failed preconditions (empty when apply may start), recorded with the run.
public struct ApplyPreconditionReport: Sendable, Hashable, Codable {
    public let failures: [ApplyPreconditionFailure]
    /// Set when the apply may start only because two break-glass members approved: what they
    /// bypassed (a closed window, a freeze) and who they are. The apply raises an alert.
    public let breakGlass: BreakGlassUse?

    public init(failures: [ApplyPreconditionFailure], breakGlass: BreakGlassUse? = nil) {
        self.failures = failures
        self.breakGlass = breakGlass
    }

    public var allHold: Bool { failures.isEmpty }

    /// What the run should do with this report.
    public var disposition: Disposition {
        if failures.isEmpty { return .apply }
        if failures.contains(where: \.isFatal) { return .abandon }
        if failures.contains(where: { $0.code == .insufficientApprovals }) { return .awaitApprovals }
        return .waitForApplyWindow
    }

    public enum Disposition: String, Sendable, Hashable, Codable {
        case apply
        /// Only the apply window is closed: stay approved and try again when it opens.
        case waitForApplyWindow = "wait_for_apply_window"
        /// Approvals expired or were withdrawn: go back to awaiting approval.
        case awaitApprovals = "await_approvals"
        /// Something that was approved changed: the run ends as failed.
        case abandon
    }
}

/// An apply let through by the break-glass path (docs/CONTRACT.md §4).
public struct BreakGlassUse: Sendable, Hashable, Codable, CustomStringConvertible {
    /// What was bypassed, e.g. "the environment's apply window is closed".
    public let bypassed: [String]
    public let approvers: [IdentityName]

    public init(bypassed: [String], approvers: [IdentityName]) {
        self.bypassed = bypassed
        self.approvers = approvers
    }

    public var description: String {
        "break-glass by \(approvers.map(\.rawValue).joined(separator: ", ")): \(bypassed.joined(separator: "; "))"
    }
}

/// docs/CONTRACT.md §4 apply preconditions, judged together.
public enum ApplyPreconditions {
    /// Returns every failed precondition, not just the first, so the run's record
    /// shows the whole picture.
    ///
    /// Each check stops an attack: the digest check stops a plan file swapped after
    /// approval; the tag check stops a tag moved after approval; the "no other apply"
    /// check stops a stale plan replayed over newer state; the agent check stops an
    /// agent applying an environment it does not serve.
    public static func evaluate(_ facts: ApplyFacts) -> ApplyPreconditionReport {
        var failures: [ApplyPreconditionFailure] = []
        if facts.validApprovals < facts.requiredApprovals {
            failures.append(.init(code: .insufficientApprovals,
                                  description: "\(facts.validApprovals) of \(facts.requiredApprovals) required approvals are valid"))
        }
        switch facts.planDigestOnDisk {
        case nil:
            failures.append(.init(code: .planFileMissing, description: "the plan file is missing"))
        case let onDisk? where onDisk != facts.approvedDigest:
            failures.append(.init(code: .planDigestMismatch,
                                  description: "the plan file on disk has digest \(onDisk), not the approved \(facts.approvedDigest)"))
        default: break
        }
        switch facts.tagCommitNow {
        case nil:
            failures.append(.init(code: .tagDeleted, description: "the release tag no longer exists"))
        case let now? where now != facts.runCommit:
            failures.append(.init(code: .tagMoved,
                                  description: "the release tag now points to \(now), not the planned commit \(facts.runCommit)"))
        default: break
        }
        if !facts.appliesSincePlan.isEmpty {
            failures.append(.init(code: .targetAppliedSincePlan,
                                  description: "the target was applied since this plan by "
                                  + facts.appliesSincePlan.map(\.rawValue).joined(separator: ", ") + "; the plan is stale"))
        }
        // A closed window or a freeze holds the run back, unless two members of the
        // environment's break-glass group approved it: then it goes, loudly.
        var timeHolds: [ApplyPreconditionFailure] = []
        if !facts.applyWindowOpen {
            timeHolds.append(.init(code: .applyWindowClosed, description: "the environment's apply window is closed"))
        }
        if let freeze = facts.freeze {
            timeHolds.append(.init(code: .frozen, description: "the environment is frozen (\(freeze))"))
        }
        var breakGlass: BreakGlassUse?
        if !timeHolds.isEmpty, Set(facts.breakGlassApprovers).count >= 2 {
            breakGlass = BreakGlassUse(bypassed: timeHolds.map(\.description),
                                       approvers: Array(Set(facts.breakGlassApprovers)).sorted { $0.rawValue < $1.rawValue })
        } else {
            failures += timeHolds
        }
        if !facts.checksPassed {
            failures.append(.init(code: .checksNotPassed, description: "not all checks passed"))
        }
        if !facts.agentServesEnvironment {
            failures.append(.init(code: .environmentNotServed, description: "this agent does not serve the environment"))
        }
        if let problem = facts.signatureProblem {
            failures.append(.init(code: .signatureNoLongerValid, description: "the release tag's signature no longer verifies: \(problem)"))
        }
        return ApplyPreconditionReport(failures: failures, breakGlass: failures.isEmpty ? breakGlass : nil)
    }
}
