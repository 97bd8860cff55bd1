import NameLiterals
import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// A plan's resource changes and a policy, with what the built-in checks must make of them.
struct ChecksCase: Sendable, CustomTestStringConvertible {
    var name: String
    var environmentYAML: String
    var plan: String
    /// nil: the checks pass and the run awaits this many approvals.
    var failure: String?
    var requiredApprovals = 1
    var testDescription: String { name }
}

@Suite("Gate unit: built-in checks (plan → checks → approvals required)")
struct ChecksUnitTests {
    static let cases: [ChecksCase] = [
        ChecksCase(name: "a type outside allowed_resource_types fails the checks",
                   environmentYAML: unitDev + "\n    allowed_resource_types: [null_resource]",
                   plan: planJSON([("null_resource.app", "null_resource", ["create"]), ("aws_instance.web", "aws_instance", ["create"])]),
                   failure: "resource type aws_instance is not in this environment's allowed_resource_types"),
        ChecksCase(name: "types inside allowed_resource_types pass",
                   environmentYAML: unitDev + "\n    allowed_resource_types: [null_resource]", plan: createsOneResource),
        ChecksCase(name: "destroying a protected type needs one more approval",
                   environmentYAML: unitDev.replacingOccurrences(of: "[alice]", with: "[alice, bob]")
                       + "\n    protected_resource_types: [null_resource]",
                   plan: planJSON([("null_resource.app", "null_resource", ["delete"])]), requiredApprovals: 2),
        ChecksCase(name: "replacing a protected type is a destroy too",
                   environmentYAML: unitDev.replacingOccurrences(of: "[alice]", with: "[alice, bob]")
                       + "\n    protected_resource_types: [null_resource]",
                   plan: planJSON([("null_resource.app", "null_resource", ["delete", "create"])]), requiredApprovals: 2),
        ChecksCase(name: "creating a protected type needs no extra approval",
                   environmentYAML: unitDev + "\n    protected_resource_types: [null_resource]", plan: createsOneResource),
        ChecksCase(name: "an extra approval that no approver is left to give fails the checks",
                   environmentYAML: unitDev + "\n    protected_resource_types: [null_resource]",
                   plan: planJSON([("null_resource.app", "null_resource", ["delete"])]),
                   failure: "which needs 2 approvals, but only 1 approvers are configured"),
    ]

    @Test("each plan meets the policy's checks or fails the run with the reason", arguments: cases)
    func checks(_ checksCase: ChecksCase) async throws {
        let world = try UnitWorld(environmentsYAML: checksCase.environmentYAML)
        defer { world.cleanup() }
        await world.runner.script { $0.shownJSON = checksCase.plan }
        let run = try await world.plannedRun()

        if let failure = checksCase.failure {
            #expect(run.state == .failed)
            #expect(try await world.path(run.id).last == "failed:checks_failed")
            let reason = try #require(try await world.lastReason(run.id))
            #expect(reason.contains(failure), "\(reason)")
            #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).path), "a failed run keeps no plan")
            return
        }
        #expect(run.state == .awaitingApproval)
        let digest = try #require(run.planDigest)
        var outcome = try await world.gate.approve(run: run.id, identity: "alice", digest: digest)
        if checksCase.requiredApprovals == 2 {
            #expect(outcome == .recorded(valid: 1, required: 2))
            outcome = try await world.gate.approve(run: run.id, identity: "bob", digest: digest)
        }
        #expect(outcome == .approved)
    }
}

/// One refused approval: who approves, with which digest, under which policy.
struct RefusalCase: Sendable, CustomTestStringConvertible {
    var name: String
    var environmentYAML = unitDev
    var identity: IdentityName
    var wrongDigest = false
    /// Someone who approves first (for the duplicate).
    var before: IdentityName?
    var refusal: ApprovalRefusal.Code
    var testDescription: String { name }
}

@Suite("Gate unit: approvals (approval → recorded, refused or approved)")
struct ApprovalUnitTests {
    static let twoOfAliceAndBob = unitDev.replacingOccurrences(of: "approvals: 1", with: "approvals: 2")
        .replacingOccurrences(of: "[alice]", with: "[alice, bob]")

    static let refusals: [RefusalCase] = [
        RefusalCase(name: "an approval quoting another digest", identity: "alice", wrongDigest: true, refusal: .wrongDigest),
        RefusalCase(name: "an identity the agent does not know", identity: "mallory", refusal: .unknownIdentity),
        RefusalCase(name: "a known identity that is not an approver of the environment", identity: "erin",
                    refusal: .identityNotAllowed),
        RefusalCase(name: "the tagger approving their own release",
                    environmentYAML: unitDev.replacingOccurrences(of: "[alice]", with: "[alice, dave]"), identity: "dave",
                    refusal: .taggerSelfApproval),
        RefusalCase(name: "a second approval by the same identity", environmentYAML: twoOfAliceAndBob, identity: "alice",
                    before: "alice", refusal: .duplicateIdentity),
    ]

    @Test("each refused approval is recorded with its reason and changes nothing", arguments: refusals)
    func refused(_ refusalCase: RefusalCase) async throws {
        let world = try UnitWorld(environmentsYAML: refusalCase.environmentYAML)
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        let digest = try #require(run.planDigest)
        if let before = refusalCase.before {
            _ = try await world.gate.approve(run: run.id, identity: before, digest: digest)
        }
        let approvalsBefore = try await world.store.approvals(of: run.id)
        let quoted = refusalCase.wrongDigest ? Digest.sha256(of: Data("another plan".utf8)) : digest

        let outcome = try await world.gate.approve(run: run.id, identity: refusalCase.identity, digest: quoted)

        guard case .refused(let refusal) = outcome else { Issue.record("not refused: \(outcome)"); return }
        #expect(refusal.code == refusalCase.refusal)
        #expect(try await world.store.approvalRefusals(of: run.id).map(\.code) == [refusalCase.refusal])
        #expect(try await world.store.approvals(of: run.id) == approvalsBefore)
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("the tagger may approve their own release where the environment allows it")
    func taggerMayApprove() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev.replacingOccurrences(of: "[alice]", with: "[alice, dave]")
                                  + "\n    tagger_may_approve: true")
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        #expect(try await world.gate.approve(run: run.id, identity: "dave", digest: try #require(run.planDigest)) == .approved)
    }

    @Test("the approval that completes the policy moves the run to approved, and applies nothing by itself")
    func completingApproval() async throws {
        let world = try UnitWorld(environmentsYAML: Self.twoOfAliceAndBob)
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        let digest = try #require(run.planDigest)

        #expect(try await world.gate.approve(run: run.id, identity: "alice", digest: digest) == .recorded(valid: 1, required: 2))
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(try await world.gate.approve(run: run.id, identity: "bob", digest: digest) == .approved)

        #expect(try await world.store.run(run.id)?.state == .approved)
        #expect(try await world.path(run.id).last == "approved:approvals_satisfied")
        #expect(try await world.store.approvals(of: run.id).map(\.identity) == ["alice", "bob"])
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("a run that waited longer than approval_ttl expires, and a late approval is refused")
    func expiry() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev + "\n    approval_ttl: 1h")
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        let digest = try #require(run.planDigest)

        world.clock.advance(seconds: 3_599)
        #expect(try await world.gate.reconcile().runsAdvanced[run.id] == nil, "not yet")
        world.clock.advance(seconds: 1)
        #expect(try await world.gate.reconcile().runsAdvanced[run.id] == .expired)

        #expect(try await world.path(run.id).last == "expired:approvals_expired")
        let outcome = try await world.gate.approve(run: run.id, identity: "alice", digest: digest)
        guard case .refused(let refusal) = outcome else { Issue.record("approved an expired run: \(outcome)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
        #expect(!FileManager.default.fileExists(atPath: world.runDirectory(run.id).path))
    }

    @Test("an approval of a run with no plan yet is refused: there is nothing to bind it to")
    func approvalBeforePlan() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.runner.script { $0.planScript = .throwing }
        let run = try await world.plannedRun()
        #expect(run.planDigest == nil)
        let outcome = try await world.gate.approve(run: run.id, identity: "alice", digest: Digest.sha256(of: Data("x".utf8)))
        guard case .refused(let refusal) = outcome else { Issue.record("not refused: \(outcome)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
    }

    @Test("only an approver may reject; a rejection ends a waiting run")
    func rejection() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun()
        guard case .refused = try await world.gate.reject(run: run.id, identity: "erin", reason: "no") else {
            Issue.record("erin rejected a run she may not approve"); return
        }
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(try await world.gate.reject(run: run.id, identity: "alice", reason: "not today") == .done(.rejected))
        #expect(try await world.path(run.id).last == "rejected:rejected")
    }
}
