import Foundation
import LockstepCore
@testable import RunStore
import Testing

/// The outbox is written by the same transactions as the writes it reports: an event exists
/// exactly when its transition, approval or rejected tag does (docs/ARCHITECTURE.md, "The
/// outbox"). Proven on the SQLite file and the in-memory store alike.
@Suite("Outbox: events written with their writes, positions and forge threads kept")
struct OutboxContractTests {
    @Test("every transition writes one event with its states, reason and the approvers so far, in order", arguments: StoreKind.allCases)
    func transitionsWriteEvents(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        #expect(try await store.outboxLastEventID() == 0)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.outboxEvents(after: 0, limit: 10).isEmpty, "a queued run is not news yet")
        try await walk(store, "r1", [.queued, .planning, .checking, .awaitingApproval], at: at(3))

        let events = try await store.outboxEvents(after: 0, limit: 10)
        #expect(events.map(\.kind) == [.transition, .transition, .transition])
        #expect(events.map(\.facts.to) == [.planning, .checking, .awaitingApproval])
        #expect(events.map(\.facts.from) == [.queued, .planning, .checking])
        #expect(events.allSatisfy { $0.runID == runID("r1") && $0.target == target("prod") && $0.time == at(3) })
        #expect(events.map(\.id) == events.map(\.id).sorted() && Set(events.map(\.id)).count == 3)
        #expect(try await store.outboxLastEventID() == events.last?.id)
        // Paging: after the first, at most one.
        #expect(try await store.outboxEvents(after: events[0].id, limit: 1) == [events[1]])

        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))
        let enough = step(.awaitingApproval, .approved, .approvalsSatisfied, detail: "1 of 1")
        #expect(try await store.recordApproval(alice, completing: enough, at: at(11), actor: "alice"))
        let approval = try await store.outboxEvents(after: events[2].id, limit: 10)
        #expect(approval.map(\.kind) == [.approval, .transition])
        #expect(approval[0].facts.approvedBy == "alice" && approval[0].facts.approvers == ["alice"])
        #expect(approval[0].time == at(10))
        #expect(approval[1].facts.to == .approved && approval[1].facts.reason == "approvals_satisfied")
        #expect(approval[1].facts.detail == "1 of 1" && approval[1].facts.approvers == ["alice"])
    }

    @Test("a write that does not happen writes no event: a lost compare-and-set, a lost approval", arguments: StoreKind.allCases)
    func lostWritesWriteNothing(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(store, "r1", [.queued, .planning, .checking, .awaitingApproval])
        #expect(try await store.transition(runID("r1"), step(.awaitingApproval, .rejected, .rejected), update: RunUpdate(),
                                           at: at(5), actor: "bob"))
        let before = try await store.outboxLastEventID()

        #expect(try await !store.transition(runID("r1"), step(.awaitingApproval, .approved), update: RunUpdate(),
                                            at: at(6), actor: "lockstep"))
        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))
        #expect(try await !store.recordApproval(alice, completing: step(.awaitingApproval, .approved), at: at(11), actor: "alice"))
        // Several steps in one call, the second of which finds the run elsewhere.
        _ = try await store.createRun(newRun("r2", "dev"), at: at(0), actor: "lockstep")
        #expect(try await !store.transition(runID("r2"), through: [RunStep(step(.queued, .planning), update: RunUpdate()),
                                                                   RunStep(step(.checking, .awaitingApproval), update: RunUpdate())],
                                            at: at(12), actor: "lockstep"))

        #expect(try await store.outboxLastEventID() == before)
        #expect(try await store.outboxEvents(after: before, limit: 10).isEmpty)
        if kind == .sqlite {
            #expect(try sqlite3(scratch.store, "SELECT count(*) FROM outbox;").trimmingCharacters(in: .whitespacesAndNewlines) == "4")
        }
    }

    @Test("a rejected tag writes one event when its decision is recorded, an accepted one none, a repeated one none", arguments: StoreKind.allCases)
    func rejectedTags(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        let rejected = StoredTagDecision(target: target("prod"), tagName: "prod/v1.0.0", tagObject: object("1"), commit: object("c"),
                                         version: version("1.0.0"), accepted: false,
                                         rejections: [TagRejection(code: .notAnnotated, description: "lightweight tag")])
        let accepted = StoredTagDecision(target: target("prod"), tagName: "prod/v1.1.0", tagObject: object("2"), commit: object("c"),
                                         version: version("1.1.0"), accepted: true, rejections: [])
        #expect(try await store.recordTagDecisions([rejected, accepted], at: at(1), actor: "lockstep") == [true, true])
        #expect(try await !store.recordTagDecision(rejected, at: at(2), actor: "lockstep"))

        let events = try await store.outboxEvents(after: 0, limit: 10)
        #expect(events.count == 1)
        #expect(events.first?.kind == .tagRejected && events.first?.runID == nil && events.first?.target == target("prod"))
        #expect(events.first?.facts.tagName == "prod/v1.0.0" && events.first?.facts.rejections == ["lightweight tag"])
    }

    @Test("a sink's position only moves forward and a forge thread is kept per sink and run", arguments: StoreKind.allCases)
    func positionsAndThreads(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        #expect(try await store.outboxPosition(of: "forge/github/acme/delivery") == nil)
        try await store.setOutboxPosition(of: "forge/github/acme/delivery", to: 7, at: at(1))
        try await store.setOutboxPosition(of: "forge/github/acme/delivery", to: 3, at: at(2))
        #expect(try await store.outboxPosition(of: "forge/github/acme/delivery") == 7, "a late writer cannot move it back")
        try await store.setOutboxPosition(of: "forge/github/acme/delivery", to: 9, at: at(3))
        #expect(try await store.outboxPosition(of: "forge/github/acme/delivery") == 9)
        #expect(try await store.outboxPosition(of: "notification/prod/0011223344556677") == nil)

        #expect(try await store.forgeThread(sink: "a", runID: runID("r1")) == nil)
        try await store.recordForgeThread(ForgeThread(pull: "12", comment: nil), sink: "a", runID: runID("r1"), at: at(1))
        try await store.recordForgeThread(ForgeThread(pull: "12", comment: "1001"), sink: "a", runID: runID("r1"), at: at(2))
        try await store.recordForgeThread(ForgeThread(pull: nil, comment: nil), sink: "b", runID: runID("r1"), at: at(2))
        #expect(try await store.forgeThread(sink: "a", runID: runID("r1")) == ForgeThread(pull: "12", comment: "1001"))
        #expect(try await store.forgeThread(sink: "b", runID: runID("r1")) == ForgeThread(pull: nil, comment: nil))
        #expect(try await store.forgeThread(sink: "a", runID: runID("r2")) == nil)
    }

    @Test("events, positions and threads survive closing and reopening the file")
    func survivesReopen() async throws {
        let scratch = try Scratch()
        do {
            let store = try SQLiteRunStore(path: scratch.store)
            _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
            try await walk(store, "r1", [.queued, .planning])
            try await store.setOutboxPosition(of: "s", to: 1, at: at(1))
            try await store.recordForgeThread(ForgeThread(pull: "4", comment: "9"), sink: "s", runID: runID("r1"), at: at(1))
        }
        let reopened = try SQLiteRunStore(path: scratch.store)
        #expect(try await reopened.outboxEvents(after: 0, limit: 10).map(\.facts.to) == [.planning])
        #expect(try await reopened.outboxPosition(of: "s") == 1)
        #expect(try await reopened.forgeThread(sink: "s", runID: runID("r1")) == ForgeThread(pull: "4", comment: "9"))
    }
}
