import NameLiterals
import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// prod alone: two approvals from alice, bob, carol; approvals live one hour.
let prodOnly = """
  prod:
    serves: true
    approvals: 2
    approvers: [alice, bob, carol]
    approval_ttl: 1h
"""

@Suite("Gate: approvals and trust")
struct ApprovalTests {
    @Test("every refused approval (wrong digest, unknown, not allowed, tagger, twice, after expiry) is recorded and changes nothing")
    func refusalsChangeNothing() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        // carol cuts the release: she is an approver, but not of her own release.
        let commit = try world.mergeRelease("1.0.0")
        try world.tag("prod/v1.0.0", at: commit, tagger: "carol@example.com")
        try world.publish()
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.0.0")
        #expect(run.state == .awaitingApproval)
        let digest = try #require(run.planDigest)
        // What a plan leaves on disk is private to the agent's user (docs/THREAT-MODEL.md §2.3).
        let runDirectory = world.scratch.appendingPathComponent("runs/\(run.id.rawValue)")
        #expect(mode(of: runDirectory) == 0o700)
        #expect(mode(of: runDirectory.appendingPathComponent("sealed")) == 0o700)
        #expect(mode(of: runDirectory.appendingPathComponent("sealed/plan.tfplan")) == 0o600)
        #expect(!FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent("plan.tfplan").path),
                "the file terraform wrote is removed once read")
        let wrong = try Digest(String(repeating: "0", count: 64))
        let gate = world.gate

        func attempt(_ name: String, _ quoted: Digest, expect code: ApprovalRefusal.Code,
                     sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let before = try await world.store.approvals(of: run.id).count
            let outcome = try await gate.approve(run: run.id, identity: identity(name), digest: quoted)
            guard case .refused(let refusal) = outcome else {
                Issue.record("\(name) was not refused: \(outcome)", sourceLocation: sourceLocation)
                return
            }
            #expect(refusal.code == code, sourceLocation: sourceLocation)
            #expect(try await world.store.approvals(of: run.id).count == before, sourceLocation: sourceLocation)
            #expect(try await world.store.run(run.id)?.state != .approved, sourceLocation: sourceLocation)
        }

        try await attempt("alice", wrong, expect: .wrongDigest)
        try await attempt("mallory", digest, expect: .unknownIdentity)
        try await attempt("erin", digest, expect: .identityNotAllowed)
        try await attempt("carol", digest, expect: .taggerSelfApproval)
        #expect(try await gate.approve(run: run.id, identity: identity("alice"), digest: digest) == .recorded(valid: 1, required: 2))
        try await attempt("alice", digest, expect: .duplicateIdentity)

        // An hour later alice's approval has expired: bob's is the only valid one.
        world.clock.advance(seconds: 3_601)
        #expect(try await gate.approve(run: run.id, identity: identity("bob"), digest: digest) == .recorded(valid: 1, required: 2))
        let notYet = try await gate.apply(run: run.id)
        guard case .notApplied = notYet else { Issue.record("apply without valid approvals: \(notYet)"); return }
        // The run itself waited longer than the approval lifetime: it expires.
        let report = try await gate.reconcile()
        #expect(report.runsAdvanced[run.id] == .expired)
        try await attempt("alice", digest, expect: .runNotAwaitingApproval)

        let refusals = try await world.store.approvalRefusals(of: run.id).map(\.code)
        #expect(refusals == [.wrongDigest, .unknownIdentity, .identityNotAllowed, .taggerSelfApproval, .duplicateIdentity,
                             .runNotAwaitingApproval])
        #expect(try await world.store.approvals(of: run.id).map(\.identity.rawValue) == ["alice", "bob"])
        #expect(try await world.auditKinds(run.id).filter { $0 == "approval_refusal" }.count == 6)
        let states = try await world.store.transitions(of: run.id).map(\.transition.to)
        #expect(!states.contains(.approved) && !states.contains(.applying))
        #expect(try world.applied("prod") == nil)
        #expect(world.applyLog.isEmpty)
        #expect(world.planFilesOnDisk().isEmpty)
    }

    @Test("a lockstep.yaml that sets approvals, adds an approver, points a var file outside or names an unknown environment fails its run with the reason")
    func repoConfigCannotLoosenTrust() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()  // the valid layout of the first commit

        let base = "projects:\n  app:\n    dir: app\n    environments:\n      prod:\n"
        let attacks: [(version: String, yaml: String, expected: String)] = [
            ("0.1.0", base + "        var_files: [app/prod.tfvars]\n        approvals: 0\n", "approvals"),
            ("0.2.0", base + "        approvers: [mallory]\n", "approvers"),
            ("0.3.0", base + "        var_files: [../../etc/passwd]\n", "no `..`"),
            ("0.4.0", base + "      qa: {}\n", "a repo config cannot add environments"),
        ]
        for attack in attacks {
            let commit = try world.mergePR(files: world.appFiles(release: attack.version)
                                           .merging(["lockstep.yaml": attack.yaml]) { _, new in new })
            try world.tag("prod/v\(attack.version)", at: commit)
            try world.publish()
            let report = try await world.gate.reconcile()
            if attack.version != "0.4.0" {
                // A layout the parser refuses on the branch is reported; the last valid one keeps the targets known.
                #expect(report.problems.contains { $0.contains("lockstep.yaml at main") }, "\(report.problems)")
            }
            let run = try await world.run("prod", attack.version)
            #expect(run.state == .failed)
            #expect(run.lastReason == .planFailed)
            let detail = try #require(try await world.store.transitions(of: run.id).last?.transition.reason.detail)
            #expect(detail.contains("lockstep.yaml was refused"), "\(detail)")
            #expect(detail.contains(attack.expected), "\(detail)")
            #expect(try await world.store.log(of: run.id).contains(attack.expected))
            // No approval can reach a failed run, and the trust decisions are untouched.
            let outcome = try await world.gate.approve(run: run.id, identity: identity("alice"),
                                                       digest: try Digest(String(repeating: "1", count: 64)))
            guard case .refused(let refusal) = outcome else { Issue.record("approval accepted: \(outcome)"); return }
            #expect(refusal.code == .runNotAwaitingApproval)
        }
        // A var file that is a symlink out of the tree: the export refuses the commit.
        let linked = try world.mergePR(files: world.appFiles(release: "0.5.0").merging(world.layoutFiles().filter { $0.key != "app/prod.tfvars" }) { _, new in new },
                                       symlinks: ["app/prod.tfvars": "/etc/passwd"])
        try world.tag("prod/v0.5.0", at: linked)
        try world.publish()
        _ = try await world.gate.reconcile()
        let link = try await world.run("prod", "0.5.0")
        #expect(link.state == .failed)
        let linkDetail = try #require(try await world.store.transitions(of: link.id).last?.transition.reason.detail)
        #expect(linkDetail.contains("could not be exported"), "\(linkDetail)")

        #expect(world.gate.agent.environments["prod"]?.approvals == 2)
        #expect(world.gate.agent.environments["prod"]?.approvers == ["alice", "bob", "carol"])
        #expect(try world.applied("prod") == nil)
        #expect(world.applyLog.isEmpty)
        // Nothing was ever planned: terraform never ran for these commits.
        for run in try await world.runs("prod") {
            #expect(run.planDigest == nil)
        }
    }

    @Test("a tag on an unmerged commit, a direct push and an unparsable version are rejected with reasons and never planned")
    func rejectedTagsAreNeverPlanned() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"])
        defer { world.cleanup() }
        try world.git(["checkout", "-q", "-b", "unreviewed"])
        let side = try world.commitOnMain(files: world.appFiles(release: "6.6.6"), message: "not reviewed")
        try world.git(["checkout", "-q", "main"])
        try world.tag("dev/v1.0.0", at: side)
        let direct = try world.commitOnMain(files: world.appFiles(release: "7.7.7"), message: "pushed past review")
        try world.tag("dev/v1.1.0", at: direct)
        let merged = try world.mergeRelease("1.2.0")
        try world.tag("dev/vfoo", at: merged)
        try world.publish()

        let report = try await world.gate.reconcile()
        #expect(report.runsCreated.isEmpty)
        #expect(try await world.decision("dev", "dev/v1.0.0")?.rejections.map(\.code) == [.notReachable])
        #expect(try await world.decision("dev", "dev/v1.1.0")?.rejections.map(\.code) == [.notMergeCommit])
        #expect(try await world.decision("dev", "dev/vfoo")?.rejections.map(\.code) == [.versionUnparsable])
        #expect(try await world.runs("dev").isEmpty)
        let audited = try await world.store.auditEntries().filter { $0.kind == .tagDecision }
        #expect(audited.count == 3)
        // Deciding again records nothing new: the poll loop does not flood the audit log.
        let again = try await world.gate.reconcile()
        #expect(again.decisionsRecorded.isEmpty)
        #expect(try world.applied("dev") == nil)
    }
}

@Suite("Gate: built-in checks")
struct CheckTests {
    @Test("destroying a protected resource type needs one approval more; a type outside the allow-list fails the checks")
    func protectedAndAllowedTypes() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice, bob]
            protected_resource_types: [null_resource]
          qa:
            serves: true
            approvals: 1
            approvers: [alice]
            allowed_resource_types: [local_file]
        """, environments: ["dev", "qa"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev", "qa"])
        // Creating a protected type is routine: one approval.
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        let qa = try await world.run("qa", "1.0.0")
        #expect(qa.state == .failed)
        #expect(qa.lastReason == .checksFailed)
        let detail = try #require(try await world.store.transitions(of: qa.id).last?.transition.reason.detail)
        #expect(detail.contains("null_resource is not in this environment's allowed_resource_types"), "\(detail)")
        #expect(try world.applied("qa") == nil)

        // 1.1.0 replaces null_resource.app (its triggers change): a protected destroy.
        try world.release("1.1.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let replace = try await world.run("dev", "1.1.0")
        #expect(replace.state == .awaitingApproval)
        #expect(try await world.approve(replace, by: ["alice"]) == [.recorded(valid: 1, required: 2)])
        let early = try await world.gate.apply(run: replace.id)
        guard case .notApplied = early else { Issue.record("protected destroy with one approval: \(early)"); return }
        #expect(try world.applied("dev")?["release"] == "1.0.0")
        #expect(try await world.approve(replace, by: ["bob"]) == [.approved])
        #expect(try await world.gate.apply(run: replace.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.1.0")
    }
}

@Suite("Gate: rejection")
struct RejectionTests {
    @Test("reject with a reason ends the run; only an approver of the environment may reject")
    func rejectEndsRun() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["prod"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.0.0")
        #expect(try await world.gate.reject(run: run.id, identity: identity("dave"), reason: "mine")
                == .refused("dave may not reject runs of prod"))
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(try await world.gate.reject(run: run.id, identity: identity("bob"), reason: "drops the\nwrong table")
                == .done(.rejected))
        let last = try #require(try await world.store.transitions(of: run.id).last)
        #expect(last.transition.reason.detail == "by bob: drops the; wrong table")
        #expect(last.actor == "bob")
        let late = try await world.approve(run, by: ["alice"])
        guard case .refused(let refusal) = late.first else { Issue.record("approval of a rejected run: \(late)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
        #expect(try await world.gate.reject(run: run.id, identity: identity("alice"), reason: "again")
                == .refused("rejected is not valid while the run is rejected"))
        #expect(world.planFilesOnDisk().isEmpty)
        #expect(try world.applied("prod") == nil)
        let refusals = try await world.store.auditEntries().filter { $0.kind == .refusal && $0.runID == run.id }
        #expect(refusals.count == 2)
    }

    @Test("the approval that meets the policy and `approved` are stored in one transaction: adjacent audit entries, one actor")
    func lastApprovalAndTransitionTogether() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["prod"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.0.0")
        let digest = try #require(run.planDigest)
        #expect(try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest) == .recorded(valid: 1, required: 2))
        #expect(try await world.gate.approve(run: run.id, identity: identity("bob"), digest: digest) == .approved)
        let entries = try await world.store.auditEntries().filter { $0.runID == run.id }
        let last = try #require(entries.lastIndex { $0.kind == .approval })
        #expect(entries[last].payload["identity"] == "bob")
        let next = entries[entries.index(after: last)]
        #expect(next.kind == .transition && next.payload["to"] == "approved" && next.actor == "bob")
        #expect(try await world.store.run(run.id)?.state == .approved)
    }

    @Test("an approver retrying after a crash that kept their approval without its transition is not refused as a duplicate: the run moves, once")
    func retryAfterApprovalStoredAlone() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["prod"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.0.0")
        let digest = try #require(run.planDigest)
        let gate = world.gate
        #expect(try await gate.approve(run: run.id, identity: identity("alice"), digest: digest) == .recorded(valid: 1, required: 2))
        // What a crash between two separate writes left behind in older versions: bob's
        // approval stored, the run still awaiting approval.
        try await world.store.recordApproval(Approval(runID: run.id, identity: identity("bob"), digest: digest,
                                                      time: world.clock.now), actor: "bob")
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)

        // bob retries: his approval is stored and, with alice's, meets the policy.
        #expect(try await gate.approve(run: run.id, identity: identity("bob"), digest: digest) == .approved)
        #expect(try await world.store.run(run.id)?.state == .approved)
        #expect(try await world.store.approvals(of: run.id).map(\.identity.rawValue) == ["alice", "bob"],
                "nothing was recorded twice")
        #expect(try await world.store.approvalRefusals(of: run.id).isEmpty, "the retry was not refused")
        let last = try #require(try await world.store.transitions(of: run.id).last)
        #expect(last.transition.to == .approved && last.actor == "bob")
        #expect(last.transition.reason.detail == "2 of 2, already recorded")

        // A second retry now finds the run approved: refused, nothing changes.
        let again = try await gate.approve(run: run.id, identity: identity("bob"), digest: digest)
        guard case .refused(let refusal) = again else { Issue.record("a retry on an approved run: \(again)"); return }
        #expect(refusal.code == .runNotAwaitingApproval)
        #expect(try await world.store.transitions(of: run.id).filter { $0.transition.to == .approved }.count == 1)

        let outcome = try await gate.apply(run: run.id)
        guard case .applied = outcome else { Issue.record("the healed run did not apply: \(outcome)"); return }
    }

    @Test("a retry by an approver whose stored approval is not enough on its own is still refused as a duplicate")
    func retryWithoutEnoughIsDuplicate() async throws {
        let world = try World(environmentsYAML: prodOnly, environments: ["prod"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["prod"])
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.0.0")
        let digest = try #require(run.planDigest)
        #expect(try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest) == .recorded(valid: 1, required: 2))
        let again = try await world.gate.approve(run: run.id, identity: identity("alice"), digest: digest)
        guard case .refused(let refusal) = again else { Issue.record("counted twice: \(again)"); return }
        #expect(refusal.code == .duplicateIdentity)
        #expect(try await world.store.run(run.id)?.state == .awaitingApproval)
        #expect(try await world.store.approvals(of: run.id).count == 1)
    }
}
