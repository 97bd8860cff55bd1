import Foundation
import Testing
import LockstepCore
@testable import RunStore

/// Every method of the port, run against both implementations (a real SQLite file and the
/// in-memory store): one contract, so a gate tested on the in-memory store meets the same rules.
@Suite("RunStore contract: every port method, on SQLite and in memory")
struct RunStoreContractTests {
    @Test("createRun stores every field, starts queued and audits the creation", arguments: StoreKind.allCases)
    func createAndRead(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        let created = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(created.run == newRun("r1"))
        #expect(created.state == .queued)
        #expect(created.planDigest == nil && created.plan == nil && created.lastReason == nil)
        #expect(created.createdAt == at(0) && created.updatedAt == at(0))
        #expect(try await store.run(runID("r1")) == created)
        #expect(try await store.run(runID("nope")) == nil)

        let entries = try await store.auditEntries()
        #expect(entries.count == 1)
        #expect(entries[0].kind == .runCreated)
        #expect(entries[0].runID == runID("r1") && entries[0].target == target("prod"))
        #expect(entries[0].payload["state"] == "queued")
        #expect(entries[0].payload["commit"] == object("c").rawValue)
        #expect(entries[0].actor == "lockstep")
    }

    @Test("transition stores state, digest, plan, reason and a transition row with its audit entry", arguments: StoreKind.allCases)
    func transitionStoresEverything(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.transition(runID("r1"), step(.queued, .planning), update: RunUpdate(), at: at(1),
                                           actor: "lockstep"))
        let plan = StoredPlan(summaryJSON: #"{"create":1}"#, rendering: "+ null_resource.a", planJSON: "{}")
        #expect(try await store.transition(runID("r1"), step(.planning, .checking, .planSucceeded, detail: "1 to add"),
                                           update: RunUpdate(planDigest: digest("d"), plan: plan), at: at(2),
                                           actor: "lockstep"))
        let run = try #require(try await store.run(runID("r1")))
        #expect(run.state == .checking)
        #expect(run.planDigest == digest("d"))
        #expect(run.plan == plan)
        #expect(run.lastReason == .planSucceeded)
        #expect(run.updatedAt == at(2) && run.createdAt == at(0))
        #expect(run.record.state == .checking)

        // A later update without a digest keeps the stored one.
        #expect(try await store.transition(runID("r1"), step(.checking, .awaitingApproval, .checksPassed),
                                           update: RunUpdate(), at: at(3), actor: "lockstep"))
        #expect(try await store.run(runID("r1"))?.planDigest == digest("d"))

        let transitions = try await store.transitions(of: runID("r1"))
        #expect(transitions.map(\.transition.to) == [.planning, .checking, .awaitingApproval])
        #expect(transitions[1].transition.reason == TransitionReason(.planSucceeded, detail: "1 to add"))
        #expect(transitions[1].time == at(2) && transitions[1].actor == "lockstep")
        #expect(transitions.map(\.sequence) == transitions.map(\.sequence).sorted())
        #expect(Set(transitions.map(\.sequence)).count == 3)

        let audit = try await store.auditEntries().filter { $0.kind == .transition }
        #expect(audit.count == 3)
        #expect(audit[1].payload == ["from": "planning", "to": "checking", "reason": "plan_succeeded",
                                     "detail": "1 to add", "digest": digest("d").rawValue])
    }

    @Test("a run's tag signer and its plan's prior state are stored, read back and audited", arguments: StoreKind.allCases)
    func signerAndPriorState(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        var signed = newRun("r1")
        signed.signer = TagSigner(format: "ssh", principal: "dave@example.com", key: "SHA256:abc")
        #expect(try await store.createRun(signed, at: at(0), actor: "lockstep").run.signer == signed.signer)
        #expect(try await store.run(runID("r1"))?.run.signer == signed.signer)
        #expect(try await store.runSummaries(target: target("prod"), states: nil).first?.run.signer == signed.signer)
        let created = try #require(try await store.auditEntries().first)
        #expect(created.payload["signer"] == "dave@example.com" && created.payload["signer_key"] == "SHA256:abc"
                && created.payload["signer_format"] == "ssh")

        _ = try await store.transition(runID("r1"), step(.queued, .planning), update: RunUpdate(), at: at(1), actor: "lockstep")
        let bound = StateBinding(lineage: "0b6b7c3e-1d2f-4e3a-9f00-6a1e2b3c4d5e", serial: 42)
        let plan = StoredPlan(summaryJSON: "{}", rendering: "", planJSON: "{}", renderingState: .pending, priorState: bound)
        #expect(try await store.transition(runID("r1"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("d"), plan: plan), at: at(2), actor: "lockstep"))
        // Attaching the text later keeps the prior state.
        _ = try await store.attachRendering(runID("r1"), rendering: "text", truncated: false, bytes: 4, state: .ready)
        #expect(try await store.run(runID("r1"))?.plan?.priorState == bound)
        let planned = try #require(try await store.auditEntries().last { $0.kind == .transition })
        #expect(planned.payload["state_lineage"] == bound.lineage && planned.payload["state_serial"] == "42")
        #expect(try await store.run(runID("r1"))?.run.signer == signed.signer)
    }

    @Test("several transitions in one call are taken all or none: a step that finds the run elsewhere undoes the ones before it",
          arguments: StoreKind.allCases)
    func stepsAllOrNone(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.transition(runID("r1"), step(.queued, .planning), update: RunUpdate(), at: at(1), actor: "lockstep"))
        let plan = StoredPlan(summaryJSON: "{}", rendering: "x", planJSON: "{}")
        let auditBefore = try await store.auditEntries().count

        // The second step starts from a state the first does not leave: nothing is written.
        let broken = [RunStep(step(.planning, .checking, .planSucceeded), update: RunUpdate(planDigest: digest("d"), plan: plan)),
                      RunStep(step(.awaitingApproval, .approved, .approvalsSatisfied))]
        #expect(try await store.transition(runID("r1"), through: broken, at: at(2), actor: "lockstep") == false)
        let untouched = try #require(try await store.run(runID("r1")))
        #expect(untouched.state == .planning && untouched.plan == nil && untouched.planDigest == nil)
        #expect(try await store.transitions(of: runID("r1")).count == 1)
        #expect(try await store.auditEntries().count == auditBefore)

        // Steps that follow each other are all stored, in order, each with its audit entry.
        let steps = [RunStep(step(.planning, .checking, .planSucceeded), update: RunUpdate(planDigest: digest("d"), plan: plan)),
                     RunStep(step(.checking, .awaitingApproval, .checksPassed))]
        #expect(try await store.transition(runID("r1"), through: steps, at: at(3), actor: "lockstep"))
        let moved = try #require(try await store.run(runID("r1")))
        #expect(moved.state == .awaitingApproval && moved.plan == plan && moved.planDigest == digest("d"))
        #expect(try await store.transitions(of: runID("r1")).map(\.transition.to) == [.planning, .checking, .awaitingApproval])
        #expect(try await store.auditEntries().count == auditBefore + 2)
        // An unknown run is not_found, as for a single transition.
        #expect(await storeError { _ = try await store.transition(runID("nope"), through: steps, at: at(4), actor: "lockstep") }?.code
                == .notFound)
    }

    @Test("a pending plan rendering is attached once: ready or failed, never overwritten, never on a plan that had its text",
          arguments: StoreKind.allCases)
    func renderingAttachedOnce(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        for id in ["r1", "r2"] {
            _ = try await store.createRun(newRun(id, id == "r1" ? "prod" : "dev"), at: at(0), actor: "lockstep")
            #expect(try await store.transition(runID(id), step(.queued, .planning), update: RunUpdate(), at: at(1), actor: "lockstep"))
        }
        let pending = StoredPlan(summaryJSON: "{}", rendering: "", planJSON: "{}", renderingState: .pending)
        #expect(try await store.transition(runID("r1"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("d"), plan: pending), at: at(2), actor: "lockstep"))
        #expect(try await store.run(runID("r1"))?.plan?.renderingState == .pending)
        let auditBefore = try await store.auditEntries().count

        #expect(try await store.attachRendering(runID("r1"), rendering: "+ null_resource.a\n", truncated: true, bytes: 9000,
                                                state: .ready))
        let attached = try #require(try await store.run(runID("r1"))?.plan)
        #expect(attached.rendering == "+ null_resource.a\n" && attached.renderingTruncated && attached.renderingBytes == 9000)
        #expect(attached.renderingState == .ready && attached.planJSON == "{}" && attached.summaryJSON == "{}")
        // Attached once: a second attach (a late or replayed rendering) changes nothing.
        #expect(try await store.attachRendering(runID("r1"), rendering: "other", truncated: false, bytes: 5, state: .failed) == false)
        #expect(try await store.run(runID("r1"))?.plan == attached)
        // No plan yet, or an unknown run: nothing to attach to.
        #expect(try await store.attachRendering(runID("r2"), rendering: "x", truncated: false, bytes: 1, state: .ready) == false)
        #expect(try await store.run(runID("r2"))?.plan == nil)
        #expect(try await store.attachRendering(runID("nope"), rendering: "x", truncated: false, bytes: 1, state: .ready) == false)
        // A rendering is a view of the audited plan, not an event of its own.
        #expect(try await store.auditEntries().count == auditBefore)
    }

    @Test("a transition from the wrong state changes nothing and writes no audit entry; an unknown run is not_found", arguments: StoreKind.allCases)
    func compareAndSetRefusal(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let before = try await store.auditEntries()
        let moved = try await store.transition(runID("r1"), step(.approved, .applying, .preconditionsHeld),
                                               update: RunUpdate(planDigest: digest("f")), at: at(1), actor: "lockstep")
        #expect(!moved)
        let run = try #require(try await store.run(runID("r1")))
        #expect(run.state == .queued && run.planDigest == nil && run.updatedAt == at(0))
        #expect(try await store.transitions(of: runID("r1")).isEmpty)
        #expect(try await store.auditEntries() == before)

        let error = await storeError {
            _ = try await store.transition(runID("ghost"), step(.queued, .planning), update: RunUpdate(), at: at(1),
                                           actor: "lockstep")
        }
        #expect(error?.code == .notFound)
        #expect(try await store.auditEntries() == before)
    }

    @Test("runs filters by target and states, newest first", arguments: StoreKind.allCases)
    func listRuns(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("a1", "dev"), at: at(0), actor: "lockstep")
        try await walk(store, "a1", [.queued, .planning, .noChanges])
        _ = try await store.createRun(newRun("a2", "dev"), at: at(1), actor: "lockstep")
        _ = try await store.createRun(newRun("b1", "prod"), at: at(2), actor: "lockstep")
        #expect(try await store.runs(target: nil, states: nil).map(\.id.rawValue) == ["b1", "a2", "a1"])
        #expect(try await store.runs(target: target("dev"), states: nil).map(\.id.rawValue) == ["a2", "a1"])
        #expect(try await store.runs(target: nil, states: [.queued]).map(\.id.rawValue) == ["b1", "a2"])
        #expect(try await store.runs(target: target("dev"), states: [.noChanges, .failed]).map(\.id.rawValue) == ["a1"])
        #expect(try await store.runs(target: nil, states: []).isEmpty)
        #expect(try await store.runs(target: target("staging"), states: nil).isEmpty)
    }

    @Test("runSummaries lists the same runs in the same order as runs, each without its plan", arguments: StoreKind.allCases)
    func listSummaries(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("a1", "dev"), at: at(0), actor: "lockstep")
        try await walk(store, "a1", [.queued, .planning])
        let plan = StoredPlan(summaryJSON: #"{"create":1}"#, rendering: "+ null_resource.a", planJSON: "{}")
        #expect(try await store.transition(runID("a1"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("d"), plan: plan), at: at(1),
                                           actor: "lockstep"))
        _ = try await store.createRun(newRun("b1", "prod"), at: at(2), actor: "lockstep")
        let filters: [(TargetID?, Set<RunState>?)] = [(nil, nil), (target("dev"), nil), (nil, [.checking]), (nil, [])]
        for (target, states) in filters {
            let full = try await store.runs(target: target, states: states)
            #expect(try await store.runSummaries(target: target, states: states) == full.map(\.summary))
        }
        let summary = try #require(try await store.runSummaries(target: target("dev"), states: nil).first)
        #expect(summary.planDigest == digest("d") && summary.state == .checking && summary.lastReason == .planSucceeded)
        #expect(summary.record == (try #require(try await store.run(runID("a1")))).record)
        #expect(try await store.run(runID("a1"))?.plan == plan, "one run's read still carries its plan")
    }

    @Test("moving a final run back to an open state while another run of the target is open is target_busy and writes nothing",
          arguments: StoreKind.allCases)
    func reopenIsTargetBusy(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(store, "r1", [.queued, .failed])
        _ = try await store.createRun(newRun("r2"), at: at(1), actor: "lockstep")
        let before = try await store.auditEntries()
        let error = await storeError {
            _ = try await store.transition(runID("r1"), step(.failed, .queued, .requeuedAfterCrash), update: RunUpdate(),
                                           at: at(2), actor: "lockstep")
        }
        #expect(error?.code == .targetBusy)
        #expect(try await store.run(runID("r1"))?.state == .failed)
        #expect(try await store.transitions(of: runID("r1")).count == 1)
        #expect(try await store.auditEntries() == before)
    }

    @Test("the last valid layout is kept per branch and replaced by a newer one; no layout for an unknown branch",
          arguments: StoreKind.allCases)
    func branchLayouts(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        let (main, release) = try await recordLayouts(store)
        #expect(try await store.lastValidLayout(branch: "main") == main)
        #expect(try await store.lastValidLayout(branch: "release") == release)
        #expect(try await store.lastValidLayout(branch: "develop") == nil)
        #expect(try await store.auditEntries().isEmpty, "a layout is a cache of the branch, not an audited event")
    }

    @Test("appliesStarted lists other runs of the target that entered applying after the plan", arguments: StoreKind.allCases)
    func appliesSincePlan(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        // An apply before anything else (counts only for a run that never planned).
        _ = try await store.createRun(newRun("early"), at: at(0), actor: "lockstep")
        try await walk(store, "early", toVerified)
        // "stale" plans, then fails checks; "later" applies after that plan.
        _ = try await store.createRun(newRun("stale"), at: at(1), actor: "lockstep")
        try await walk(store, "stale", [.queued, .planning, .checking, .failed])
        _ = try await store.createRun(newRun("later"), at: at(2), actor: "lockstep")
        try await walk(store, "later", toApproved + [.applying, .failed])
        // Another target's apply never counts.
        _ = try await store.createRun(newRun("other", "dev"), at: at(3), actor: "lockstep")
        try await walk(store, "other", toVerified)
        // "fresh" plans after every apply.
        _ = try await store.createRun(newRun("fresh"), at: at(4), actor: "lockstep")
        try await walk(store, "fresh", [.queued, .planning, .checking])

        #expect(try await store.appliesStarted(on: target("prod"), sincePlanOf: runID("stale")) == [runID("later")])
        #expect(try await store.appliesStarted(on: target("prod"), sincePlanOf: runID("fresh")) == [])
        // "later" planned after "early" applied: its own apply and the older one do not count.
        #expect(try await store.appliesStarted(on: target("prod"), sincePlanOf: runID("later")) == [])
        let error = await storeError { _ = try await store.appliesStarted(on: target("prod"), sincePlanOf: runID("x")) }
        #expect(error?.code == .notFound)
    }

    @Test("a run that never finished planning counts every apply of the target (fails closed)", arguments: StoreKind.allCases)
    func appliesWithoutPlan(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("done"), at: at(0), actor: "lockstep")
        try await walk(store, "done", toVerified)
        _ = try await store.createRun(newRun("unplanned"), at: at(1), actor: "lockstep")
        #expect(try await store.appliesStarted(on: target("prod"), sincePlanOf: runID("unplanned")) == [runID("done")])
    }

    @Test("approvals and refusals are kept in order with their audit entries; a refusal of an unknown run is kept too", arguments: StoreKind.allCases)
    func approvalsAndRefusals(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))
        let bob = Approval(runID: runID("r1"), identity: identity("bob"), digest: digest("d"), time: at(11))
        try await store.recordApproval(alice, actor: "api:alice")
        try await store.recordApproval(bob, actor: "api:bob")
        #expect(try await store.approvals(of: runID("r1")) == [alice, bob])
        #expect(try await store.approvals(of: runID("r2")).isEmpty)

        let wrong = Approval(runID: runID("r1"), identity: identity("carol"), digest: digest("f"), time: at(12))
        let refusal = ApprovalRefusal(code: .wrongDigest, approval: wrong, description: "quotes another digest")
        try await store.recordApprovalRefusal(refusal, at: at(12), actor: "api:carol")
        let ghost = ApprovalRefusal(code: .wrongRun,
                                    approval: Approval(runID: runID("ghost"), identity: identity("carol"),
                                                       digest: digest("f"), time: at(13)),
                                    description: "no such run")
        try await store.recordApprovalRefusal(ghost, at: at(13), actor: "api:carol")
        #expect(try await store.approvalRefusals(of: runID("r1")) == [refusal])
        #expect(try await store.approvalRefusals(of: runID("ghost")) == [ghost])

        let audit = try await store.auditEntries()
        let approvals = audit.filter { $0.kind == .approval }
        #expect(approvals.map { $0.payload["identity"] } == ["alice", "bob"])
        #expect(approvals[0].time == at(10) && approvals[0].actor == "api:alice")
        let refusals = audit.filter { $0.kind == .approvalRefusal }
        #expect(refusals.count == 2)
        #expect(refusals[0].payload["code"] == "wrong_digest" && refusals[0].target == target("prod"))
        #expect(refusals[1].runID == runID("ghost") && refusals[1].target == nil)

        let before = try await store.auditEntries()
        let error = await storeError {
            try await store.recordApproval(Approval(runID: runID("ghost"), identity: identity("alice"),
                                                    digest: digest("d"), time: at(14)), actor: "api:alice")
        }
        #expect(error?.code == .notFound)
        #expect(try await store.auditEntries() == before)
    }

    @Test("a tag decision is recorded only when it differs from the last for the same tag object; latest per tag is returned", arguments: StoreKind.allCases)
    func tagDecisions(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        let rejected = StoredTagDecision(
            target: target("prod"), tagName: "prod/v1.0.0", tagObject: object("1"), commit: object("c"),
            version: version("1.0.0"), accepted: false,
            rejections: [TagRejection(code: .notAnnotated, description: "lightweight"),
                         TagRejection(code: .notMergeCommit, description: "not a merge")])
        #expect(try await store.recordTagDecision(rejected, at: at(0), actor: "lockstep"))
        #expect(try await !store.recordTagDecision(rejected, at: at(1), actor: "lockstep"))
        let other = StoredTagDecision(target: target("prod"), tagName: "prod/v1.1.0", tagObject: object("2"),
                                      commit: object("c"), version: version("1.1.0"), accepted: true, rejections: [])
        #expect(try await store.recordTagDecision(other, at: at(2), actor: "lockstep"))
        // The same tag moved to a new object: a new decision.
        var moved = rejected
        moved.tagObject = object("3")
        moved.accepted = true
        moved.rejections = []
        #expect(try await store.recordTagDecision(moved, at: at(3), actor: "lockstep"))
        let unparsable = StoredTagDecision(target: target("dev"), tagName: "dev/vX", tagObject: object("4"), commit: nil,
                                           version: nil, accepted: false,
                                           rejections: [TagRejection(code: .versionUnparsable, description: "bad")])
        #expect(try await store.recordTagDecision(unparsable, at: at(4), actor: "lockstep"))

        #expect(try await store.tagDecisions(for: target("prod")) == [other, moved])
        #expect(try await store.tagDecisions(for: target("dev")) == [unparsable])
        let audit = try await store.auditEntries().filter { $0.kind == .tagDecision }
        #expect(audit.count == 4)
        #expect(audit[0].payload["decision"] == "rejected")
        #expect(audit[0].payload["rejections"] == "not_annotated,not_merge_commit")
        #expect(audit[2].payload["tag_object"] == object("3").rawValue)
    }

    @Test("tag decisions recorded together keep the single-decision rule: only changes are recorded, each with its audit entry, flags in order",
          arguments: StoreKind.allCases)
    func tagDecisionsTogether(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        func decision(_ n: Int, accepted: Bool = true) -> StoredTagDecision {
            StoredTagDecision(target: target("prod"), tagName: "prod/v1.0.\(n)", tagObject: object(Character("\(n)")),
                              commit: object("c"), version: version("1.0.\(n)"), accepted: accepted,
                              rejections: accepted ? [] : [TagRejection(code: .notAnnotated, description: "lightweight")])
        }
        #expect(try await store.recordTagDecisions([], at: at(0), actor: "lockstep") == [])
        #expect(try await store.recordTagDecision(decision(1), at: at(0), actor: "lockstep"))
        // 1 is unchanged, 2 and 3 are new, and 3 given twice is recorded once.
        let flags = try await store.recordTagDecisions([decision(1), decision(2), decision(3, accepted: false), decision(3, accepted: false)],
                                                       at: at(1), actor: "lockstep")
        #expect(flags == [false, true, true, false])
        #expect(try await store.tagDecisions(for: target("prod")) == [decision(1), decision(2), decision(3, accepted: false)])
        let audit = try await store.auditEntries().filter { $0.kind == .tagDecision }
        #expect(audit.count == 3)
        #expect(audit.last?.payload["decision"] == "rejected")
    }

    @Test("apply precondition reports are kept per run with their audit entries", arguments: StoreKind.allCases)
    func preconditionReports(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let failed = ApplyPreconditionReport(failures: [
            ApplyPreconditionFailure(code: .tagMoved, description: "moved"),
            ApplyPreconditionFailure(code: .applyWindowClosed, description: "closed"),
        ])
        let held = ApplyPreconditionReport(failures: [])
        try await store.recordApplyPreconditions(failed, runID: runID("r1"), at: at(1), actor: "lockstep")
        try await store.recordApplyPreconditions(held, runID: runID("r1"), at: at(2), actor: "lockstep")
        #expect(try await store.applyPreconditions(of: runID("r1")) == [failed, held])
        let audit = try await store.auditEntries().filter { $0.kind == .applyPreconditions }
        #expect(audit.map { $0.payload["result"] } == ["failed", "hold"])
        #expect(audit[0].payload["failures"] == "tag_moved,apply_window_closed")
        #expect(audit[0].payload["disposition"] == "abandon")
        let error = await storeError {
            try await store.recordApplyPreconditions(held, runID: runID("ghost"), at: at(3), actor: "lockstep")
        }
        #expect(error?.code == .notFound)
    }

    @Test("alerts are kept with their target and run, filtered by target", arguments: StoreKind.allCases)
    func alerts(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let moved = RunAlert(code: .tagMoved, description: "prod/v1.0.0 moved")
        let global = RunAlert(code: .applyInterrupted, description: "found applying at start")
        try await store.raiseAlert(moved, target: target("prod"), runID: runID("r1"), at: at(1), actor: "lockstep")
        try await store.raiseAlert(global, target: nil, runID: nil, at: at(2), actor: "lockstep")
        let all = try await store.alerts(target: nil)
        #expect(all.map(\.alert) == [moved, global])
        #expect(all[0].target == target("prod") && all[0].runID == runID("r1") && all[0].time == at(1))
        #expect(all[1].target == nil && all[1].runID == nil)
        #expect(try await store.alerts(target: target("prod")).map(\.alert) == [moved])
        #expect(try await store.alerts(target: target("dev")).isEmpty)
        #expect(try await store.auditEntries().filter { $0.kind == .alert }.map { $0.payload["code"] }
                    == ["tag_moved", "apply_interrupted"])
    }

    @Test("outputs: the newest per target is returned; the audit entry holds their digest, not their text", arguments: StoreKind.allCases)
    func outputs(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.outputs(of: target("prod")) == nil)
        try await store.setOutputs(#"{"url":"https://old.example"}"#, target: target("prod"), runID: runID("r1"), at: at(1))
        let json = #"{"url":"https://new.example"}"#
        try await store.setOutputs(json, target: target("prod"), runID: runID("r1"), at: at(2))
        #expect(try await store.outputs(of: target("prod")) == json)
        #expect(try await store.outputs(of: target("dev")) == nil)
        let audit = try #require(try await store.auditEntries().last)
        #expect(audit.kind == .outputs)
        #expect(audit.payload == ["digest": Digest.sha256(of: json.utf8).rawValue, "bytes": String(json.utf8.count)])
        #expect(!audit.payload.values.contains { $0.contains("new.example") })
        let error = await storeError {
            try await store.setOutputs("{}", target: target("prod"), runID: runID("ghost"), at: at(3))
        }
        #expect(error?.code == .notFound)
    }

    @Test("a run's log keeps its streams in order", arguments: StoreKind.allCases)
    func logStreams(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.log(of: runID("r1")) == "")
        try await store.appendLog("init\n", stream: .plan, runID: runID("r1"), at: at(1))
        try await store.appendLog("plan: 1 to add\n", stream: .plan, runID: runID("r1"), at: at(2))
        try await store.appendLog("applied", stream: .apply, runID: runID("r1"), at: at(3))
        #expect(try await store.log(of: runID("r1")) == "--- plan ---\ninit\nplan: 1 to add\n--- apply ---\napplied")
        let error = await storeError { try await store.appendLog("x", stream: .plan, runID: runID("ghost"), at: at(4)) }
        #expect(error?.code == .notFound)
    }

    @Test("a run's log is bounded: old text is cut, the cut is marked, the newest text is kept, UTF-8 stays valid",
          arguments: StoreKind.allCases)
    func logBounded(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let limit = 100
        let store = try kind.make(scratch, maxLogBytesPerRun: limit)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        var written = 0
        for line in 0..<50 {
            let text = "line \(line) é✓\n"
            written += text.utf8.count
            try await store.appendLog(text, stream: .apply, runID: runID("r1"), at: at(Double(line)))
        }
        let log = try await store.log(of: runID("r1"))
        let body = String(log.split(separator: "--- apply ---\n", maxSplits: 1).last ?? "")
        #expect(body.utf8.count <= limit)
        #expect(body.hasSuffix("line 49 é✓\n"))
        #expect(!body.contains("line 1 "))
        let cut = written - body.utf8.count
        #expect(log.hasPrefix(RunLog.cutMarker(cutBytes: Int64(cut))))
        // One oversized chunk keeps only its end.
        _ = try await store.createRun(newRun("r2", "dev"), at: at(0), actor: "lockstep")
        let huge = String(repeating: "✓", count: 200) + "END"
        try await store.appendLog(huge, stream: .plan, runID: runID("r2"), at: at(1))
        let hugeLog = try await store.log(of: runID("r2"))
        #expect(hugeLog.hasSuffix("✓END"))
        let kept = String(hugeLog.split(separator: "--- plan ---\n").last ?? "")
        #expect(kept.utf8.count <= limit)
        #expect(hugeLog.hasPrefix(RunLog.cutMarker(cutBytes: Int64(huge.utf8.count - kept.utf8.count))))
        // Logs are not audited (they are bounded diagnostics): only the two creations are.
        #expect(try await store.auditEntries().count == 2)
    }

    @Test("a rollback run pins its target; clearing the pin is audited; a new rollback replaces the pin", arguments: StoreKind.allCases)
    func rollbackPins(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        #expect(try await store.pin(for: target("prod")) == nil)
        let pin = RollbackPin(version: version("1.2.0"), ceiling: version("1.4.0"))
        _ = try await store.createRun(newRun("rb1", version: "1.2.0", pin: pin), at: at(0), actor: "api:alice")
        #expect(try await store.pin(for: target("prod")) == pin)
        #expect(try await store.run(runID("rb1"))?.run.rollbackPin == pin)
        let created = try #require(try await store.auditEntries().last)
        #expect(created.payload["pin_version"] == "1.2.0" && created.payload["pin_ceiling"] == "1.4.0")

        try await walk(store, "rb1", toVerified)
        let second = RollbackPin(version: version("1.1.0"), ceiling: version("1.4.0"))
        _ = try await store.createRun(newRun("rb2", version: "1.1.0", pin: second), at: at(1), actor: "api:alice")
        #expect(try await store.pin(for: target("prod")) == second)

        try await store.clearPin(for: target("prod"), at: at(2), actor: "lockstep")
        #expect(try await store.pin(for: target("prod")) == nil)
        let cleared = try #require(try await store.auditEntries().last)
        #expect(cleared.kind == .pinCleared && cleared.payload == ["version": "1.1.0", "ceiling": "1.4.0"])
        #expect(cleared.runID == runID("rb2"))
        let count = try await store.auditEntries().count
        try await store.clearPin(for: target("prod"), at: at(3), actor: "lockstep")
        #expect(try await store.auditEntries().count == count, "clearing no pin writes nothing")
        // Pins are never deleted.
        if kind == .sqlite {
            #expect(try sqlite3(scratch.store, "SELECT count(*) FROM rollback_pins;") == "2\n")
        }
    }

    @Test("appendAudit stores a caller's entry verbatim in the chain", arguments: StoreKind.allCases)
    func appendAudit(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        try await store.appendAudit(kind: .refusal, target: nil, runID: nil,
                                    payload: ["request": "POST /api/v1/runs/x/approve", "reason": "bad token"],
                                    at: at(5), actor: "api:anonymous")
        let entry = try #require(try await store.auditEntries().first)
        #expect(entry.kind == .refusal && entry.sequence == 1 && entry.previousHash == .genesis)
        #expect(entry.payload["reason"] == "bad token" && entry.time == at(5) && entry.actor == "api:anonymous")
        #expect(try await store.auditHead() == entry.hash)
    }

    @Test("auditTargets names the targets written after a sequence, leaves refusals out, and says when an entry names none",
          arguments: StoreKind.allCases)
    func auditTargets(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        #expect(try await store.auditTargets(after: nil) == AuditTargets(lastSequence: 0, targets: [], untargeted: true))
        #expect(try await store.auditTargets(after: 0) == AuditTargets(lastSequence: 0, targets: [], untargeted: false))
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await store.raiseAlert(RunAlert(code: .tagMoved, description: "moved"), target: target("dev"), runID: nil,
                                   at: at(1), actor: "lockstep")
        #expect(try await store.auditTargets(after: 0)
                == AuditTargets(lastSequence: 2, targets: [target("prod"), target("dev")], untargeted: false))
        #expect(try await store.auditTargets(after: 1) == AuditTargets(lastSequence: 2, targets: [target("dev")], untargeted: false))
        #expect(try await store.auditTargets(after: 2) == AuditTargets(lastSequence: 2, targets: [], untargeted: false))

        // A refusal, targeted or not, changes nothing but the log.
        try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: ["reason": "bad token"], at: at(2),
                                    actor: "api:anonymous")
        try await store.appendAudit(kind: .refusal, target: target("prod"), runID: runID("r1"), payload: ["reason": "not an approver"],
                                    at: at(3), actor: "api:mallory")
        #expect(try await store.auditTargets(after: 2) == AuditTargets(lastSequence: 4, targets: [], untargeted: false))

        try await store.raiseAlert(RunAlert(code: .applyInterrupted, description: "found applying"), target: nil, runID: nil,
                                   at: at(4), actor: "lockstep")
        #expect(try await store.auditTargets(after: 4) == AuditTargets(lastSequence: 5, targets: [], untargeted: true))
        // A position past the end is another store's: anything may have changed.
        #expect(try await store.auditTargets(after: 9) == AuditTargets(lastSequence: 5, targets: [], untargeted: true))
    }

    @Test("the audit chain is intact after a mix of every kind of write, and its head is the last hash", arguments: StoreKind.allCases)
    func auditChainIntact(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        try await mixedHistory(store)
        let entries = try await store.auditEntries()
        #expect(entries.count > 15)
        #expect(entries.map(\.sequence) == Array(1...UInt64(entries.count)))
        let head = try await store.auditHead()
        #expect(AuditChain.verify(entries, expectedHead: head) == .intact(entries: entries.count, head: head))
    }

}

@Suite("SQLiteRunStore: schema facts")
struct SQLiteSchemaFactTests {
    @Test("the partial unique index names exactly the final states of RunState")
    func finalStatesMatchCore() {
        #expect(Set(SQLiteSchema.finalStatesV1) == Set(RunState.allCases.filter(\.isFinal).map(\.rawValue)))
    }
}

/// A history touching every audited write, used by several suites.
func mixedHistory(_ store: any RunStore) async throws {
    let decision = StoredTagDecision(target: target("prod"), tagName: "prod/v1.0.0", tagObject: object("1"),
                                     commit: object("c"), version: version("1.0.0"), accepted: true, rejections: [])
    try await store.recordTagDecision(decision, at: at(0), actor: "lockstep")
    _ = try await store.createRun(newRun("m1"), at: at(1), actor: "lockstep")
    try await walk(store, "m1", [.queued, .planning, .checking, .awaitingApproval], at: at(2))
    try await store.recordApproval(Approval(runID: runID("m1"), identity: identity("alice"), digest: digest("d"),
                                            time: at(3)), actor: "api:alice")
    try await store.recordApprovalRefusal(
        ApprovalRefusal(code: .taggerSelfApproval,
                        approval: Approval(runID: runID("m1"), identity: identity("bob"), digest: digest("d"), time: at(4)),
                        description: "bob cut the tag"), at: at(4), actor: "api:bob")
    try await walk(store, "m1", [.awaitingApproval, .approved], at: at(5))
    try await store.recordApplyPreconditions(ApplyPreconditionReport(failures: []), runID: runID("m1"), at: at(6),
                                             actor: "lockstep")
    try await walk(store, "m1", [.approved, .applying, .applied], at: at(7))
    try await store.appendLog("apply done\n", stream: .apply, runID: runID("m1"), at: at(7))
    try await store.setOutputs("{}", target: target("prod"), runID: runID("m1"), at: at(8))
    try await walk(store, "m1", [.applied, .verifying, .verified], at: at(9))
    try await store.raiseAlert(RunAlert(code: .tagMoved, description: "moved"), target: target("prod"), runID: nil,
                               at: at(10), actor: "lockstep")
    let pin = RollbackPin(version: version("0.9.0"), ceiling: version("1.0.0"))
    _ = try await store.createRun(newRun("m2", version: "0.9.0", pin: pin), at: at(11), actor: "api:alice")
    try await store.clearPin(for: target("prod"), at: at(12), actor: "lockstep")
    try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: ["reason": "bad token"], at: at(13),
                                actor: "api:anonymous")
    try await store.recordValidLayout(StoredBranchLayout(branch: "main", commit: object("e"), yaml: "projects: {}\n"),
                                      at: at(14))
}
