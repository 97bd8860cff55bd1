import Foundation
import Testing
@testable import LockstepCore

/// Digest-bound approvals (docs/CONTRACT.md §4) and the apply precondition check.
@Suite struct ApprovalTests {
    static let run = runID("run-1")
    static let plan = digest("a")
    static let policy = try! ApprovalPolicy(requiredApprovals: 2, allowedIdentities: [identity("alice"), identity("bob"), identity("carol")],
                                            taggerMayApprove: false, approvalLifetime: 3600)
    static let context = ApprovalContext(runID: run, state: .awaitingApproval, planDigest: plan,
                                         taggerIdentities: [identity("carol")],
                                         knownIdentities: [identity("alice"), identity("bob"), identity("carol"), identity("mallory")])

    static func approval(_ who: String, digest: Digest = plan, run: RunID = run, at seconds: TimeInterval = 0) -> Approval {
        Approval(runID: run, identity: identity(who), digest: digest, time: t0.addingTimeInterval(seconds))
    }

    /// Decision table: each refusal reason, and acceptance with the running count.
    @Test(arguments: [
        ("first valid approval", approval("alice"), [], context, nil, 1),
        ("second distinct identity", approval("bob"), [approval("alice", at: -10)], context, nil, 2),
        ("wrong digest", approval("alice", digest: digest("b")), [], context, ApprovalRefusal.Code.wrongDigest, 0),
        ("other run", approval("alice", run: runID("run-2")), [], context, .wrongRun, 0),
        ("unknown identity", approval("eve"), [], context, .unknownIdentity, 0),
        ("known but not allowed here", approval("mallory"), [], context, .identityNotAllowed, 0),
        ("tagger approves own release", approval("carol"), [], context, .taggerSelfApproval, 0),
        ("same identity twice", approval("alice"), [approval("alice", at: -5)], context, .duplicateIdentity, 0),
        ("approval older than its lifetime", approval("alice", at: -3600), [], context, .expired, 0),
        ("approval dated in the future", approval("alice", at: 60), [], context, .timeInFuture, 0),
        ("run not awaiting approval",
         approval("alice"), [],
         ApprovalContext(runID: run, state: .approved, planDigest: plan, taggerIdentities: [], knownIdentities: [identity("alice")]),
         .runNotAwaitingApproval, 0),
        ("re-approval after own approval expired", approval("alice"), [approval("alice", at: -4000)], context, nil, 1),
    ] as [(String, Approval, [Approval], ApprovalContext, ApprovalRefusal.Code?, Int)])
    func decides(label: String, new: Approval, existing: [Approval], context: ApprovalContext,
                 refusal: ApprovalRefusal.Code?, count: Int) {
        let decision = ApprovalRules.decide(new, for: context, existing: existing, policy: Self.policy, now: t0)
        switch decision {
        case .accepted(let approval, let valid, let required):
            #expect(refusal == nil, "\(label): accepted")
            #expect(approval == new)
            #expect(valid == count, "\(label)")
            #expect(required == 2)
        case .refused(let refused):
            #expect(refused.code == refusal, "\(label): \(refused.description)")
            #expect(refused.approval == new)
        }
    }

    /// The tagger may approve when the policy says so.
    @Test func taggerMayApproveWhenAllowed() throws {
        let lenient = try ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [identity("carol")], taggerMayApprove: true, approvalLifetime: 60)
        let decision = ApprovalRules.decide(Self.approval("carol"), for: Self.context, existing: [], policy: lenient, now: t0)
        #expect(decision == .accepted(Self.approval("carol"), validApprovals: 1, required: 1))
    }

    /// Only valid, unexpired, distinct approvals count.
    @Test func countsOnlyValidDistinctUnexpiredApprovals() {
        let existing = [
            Self.approval("alice"), Self.approval("alice", at: 1),          // duplicate identity counts once
            Self.approval("bob", digest: digest("b")),                       // wrong digest
            Self.approval("carol"),                                          // tagger
            Self.approval("mallory"),                                        // not allowed
            Self.approval("bob", at: -3600),                                 // expired at t0
            Self.approval("bob", run: runID("other")),                       // other run
        ]
        let valid = ApprovalRules.validApprovals(existing, for: Self.context, policy: Self.policy, now: t0.addingTimeInterval(1))
        #expect(valid.map(\.identity) == [identity("alice")])
        #expect(valid.first?.time == t0)
        // At one hour her first approval has expired and her second (one second later) counts instead.
        #expect(ApprovalRules.validApprovals(existing, for: Self.context, policy: Self.policy, now: t0.addingTimeInterval(3600)).map(\.time)
                == [t0.addingTimeInterval(1)])
        // One hour after her last approval none counts.
        #expect(ApprovalRules.validApprovals(existing, for: Self.context, policy: Self.policy, now: t0.addingTimeInterval(3601)).isEmpty)
    }

    /// Policies that could never be met, or never expire, are refused.
    @Test(arguments: [(0, 1, 60.0), (3, 2, 60.0), (1, 1, 0.0), (1, 1, -5.0), (1, 1, Double.infinity)])
    func refusesUnsatisfiablePolicies(required: Int, allowed: Int, lifetime: Double) {
        let identities = Set(["a1", "a2", "a3"].prefix(allowed).map(identity))
        #expect(throws: CoreError.self) {
            try ApprovalPolicy(requiredApprovals: required, allowedIdentities: identities, taggerMayApprove: false, approvalLifetime: lifetime)
        }
    }

    /// The tagger's e-mail maps to identities case-insensitively.
    @Test func mapsTaggerEmailToIdentities() {
        let directory = [identity("alice"): ["Alice@Example.org"], identity("bot"): ["ci@example.org", "alice@example.org"],
                         identity("bob"): ["bob@example.org"]]
        #expect(ApprovalRules.identities(matchingEmail: "<alice@example.ORG>", in: directory) == [identity("alice"), identity("bot")])
        #expect(ApprovalRules.identities(matchingEmail: "", in: directory).isEmpty)
        #expect(ApprovalRules.identities(matchingEmail: "eve@example.org", in: directory).isEmpty)
    }

    /// Digests are compared case-insensitively and must be 64 hex characters.
    @Test func digestsValidateAndNormalise() throws {
        #expect(try Digest(String(repeating: "A", count: 64)) == digest("a"))
        #expect(throws: CoreError.self) { try Digest(String(repeating: "g", count: 64)) }
        #expect(throws: CoreError.self) { try Digest("abc") }
        #expect(Digest.sha256(of: Array("abc".utf8)).rawValue == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

/// Apply preconditions: every failed one is reported, and each maps to a disposition.
@Suite struct ApplyPreconditionTests {
    static let good = ApplyFacts(validApprovals: 2, requiredApprovals: 2, approvedDigest: digest("a"), planDigestOnDisk: digest("a"),
                                 runCommit: object("c"), tagCommitNow: object("c"), appliesSincePlan: [], applyWindowOpen: true,
                                 checksPassed: true, agentServesEnvironment: true)

    static func facts(_ change: (inout ApplyFacts) -> Void) -> ApplyFacts {
        var facts = good
        change(&facts)
        return facts
    }

    /// One broken fact at a time: its code and the resulting disposition.
    @Test(arguments: [
        ("all hold", facts { _ in }, [], ApplyPreconditionReport.Disposition.apply),
        ("approvals short", facts { $0.validApprovals = 1 }, [ApplyPreconditionFailure.Code.insufficientApprovals], .awaitApprovals),
        ("plan file gone", facts { $0.planDigestOnDisk = nil }, [.planFileMissing], .abandon),
        ("plan file swapped", facts { $0.planDigestOnDisk = digest("b") }, [.planDigestMismatch], .abandon),
        ("tag deleted", facts { $0.tagCommitNow = nil }, [.tagDeleted], .abandon),
        ("tag moved", facts { $0.tagCommitNow = object("d") }, [.tagMoved], .abandon),
        ("stale plan", facts { $0.appliesSincePlan = [runID("run-9")] }, [.targetAppliedSincePlan], .abandon),
        ("window closed", facts { $0.applyWindowOpen = false }, [.applyWindowClosed], .waitForApplyWindow),
        ("checks failed", facts { $0.checksPassed = false }, [.checksNotPassed], .abandon),
        ("environment not served", facts { $0.agentServesEnvironment = false }, [.environmentNotServed], .abandon),
        ("signing key revoked since acceptance", facts { $0.signatureProblem = "key revoked" }, [.signatureNoLongerValid], .abandon),
        ("approvals short and window closed", facts { $0.validApprovals = 0; $0.applyWindowOpen = false },
         [.insufficientApprovals, .applyWindowClosed], .awaitApprovals),
    ] as [(String, ApplyFacts, [ApplyPreconditionFailure.Code], ApplyPreconditionReport.Disposition)])
    func evaluates(label: String, facts: ApplyFacts, failures: [ApplyPreconditionFailure.Code],
                   disposition: ApplyPreconditionReport.Disposition) {
        let report = ApplyPreconditions.evaluate(facts)
        #expect(report.failures.map(\.code) == failures, "\(label)")
        #expect(report.disposition == disposition, "\(label)")
        #expect(report.allHold == failures.isEmpty)
    }

    /// Everything broken at once: all seven checks are reported, not just the first.
    @Test func reportsEveryFailure() {
        let report = ApplyPreconditions.evaluate(ApplyFacts(
            validApprovals: 0, requiredApprovals: 2, approvedDigest: digest("a"), planDigestOnDisk: digest("b"),
            runCommit: object("c"), tagCommitNow: object("d"), appliesSincePlan: [runID("x")], applyWindowOpen: false,
            checksPassed: false, agentServesEnvironment: false))
        #expect(report.failures.map(\.code) == [.insufficientApprovals, .planDigestMismatch, .tagMoved, .targetAppliedSincePlan,
                                                .applyWindowClosed, .checksNotPassed, .environmentNotServed])
        #expect(report.disposition == .abandon)
    }
}
