import Foundation
import LockstepCore
@testable import RunStore
import Testing

/// An approval and the transition it causes are one transaction: either both rows (and both
/// audit entries) are stored, or neither is. Proven on the real GRDB store and the in-memory one.
@Suite
struct ApprovalTransactionTests {
    static let enough = step(.awaitingApproval, .approved, .approvalsSatisfied, detail: "1 of 1")

    /// A store with run `r1` waiting for approval of plan digest `d`.
    static func awaiting(_ kind: StoreKind, _ scratch: Scratch) async throws -> any RunStore {
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(store, "r1", [.queued, .planning, .checking, .awaitingApproval])
        return store
    }

    @Test("the approval and the transition it completes are stored together, each with its audit entry, in that order", arguments: StoreKind.allCases)
    func storedTogether(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try await Self.awaiting(kind, scratch)
        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))

        #expect(try await store.recordApproval(alice, completing: Self.enough, at: at(11), actor: "alice"))

        #expect(try await store.approvals(of: runID("r1")) == [alice])
        #expect(try await store.run(runID("r1"))?.state == .approved)
        #expect(try await store.transitions(of: runID("r1")).last?.transition == Self.enough)
        let audit = try await store.auditEntries()
        let tail = audit.suffix(2)
        #expect(tail.map(\.kind) == [.approval, .transition])
        #expect(tail.last?.payload["to"] == "approved" && tail.last?.time == at(11) && tail.last?.actor == "alice")
        #expect(AuditChain.verify(audit).isIntact)
    }

    @Test("a lost compare-and-set (the run left awaiting_approval) stores neither the approval nor its audit entry", arguments: StoreKind.allCases)
    func lostRaceStoresNothing(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try await Self.awaiting(kind, scratch)
        // Someone else moved the run first (a rejection from another process).
        #expect(try await store.transition(runID("r1"), step(.awaitingApproval, .rejected, .rejected), update: RunUpdate(),
                                           at: at(5), actor: "bob"))
        let before = try await store.auditEntries()
        let transitionsBefore = try await store.transitions(of: runID("r1"))
        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))

        #expect(try await !store.recordApproval(alice, completing: Self.enough, at: at(11), actor: "alice"))

        #expect(try await store.approvals(of: runID("r1")).isEmpty, "the approval was rolled back with the transition")
        #expect(try await store.run(runID("r1"))?.state == .rejected)
        #expect(try await store.transitions(of: runID("r1")) == transitionsBefore)
        #expect(try await store.auditEntries() == before, "no audit entry for a write that did not happen")
        // Read straight from the file, outside GRDB: no approval row at all.
        if kind == .sqlite {
            #expect(try sqlite3(scratch.store, "SELECT count(*) FROM approvals;").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }
    }

    @Test("without a transition only the approval is stored and the run stays where it is", arguments: StoreKind.allCases)
    func partialApproval(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try await Self.awaiting(kind, scratch)
        let alice = Approval(runID: runID("r1"), identity: identity("alice"), digest: digest("d"), time: at(10))
        #expect(try await store.recordApproval(alice, completing: nil, at: at(11), actor: "alice"))
        #expect(try await store.approvals(of: runID("r1")) == [alice])
        #expect(try await store.run(runID("r1"))?.state == .awaitingApproval)
        #expect(try await store.auditEntries().last?.kind == .approval)
    }

    @Test("an approval of a run that does not exist is refused and writes nothing, with or without a transition", arguments: StoreKind.allCases)
    func unknownRun(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try await Self.awaiting(kind, scratch)
        let before = try await store.auditEntries()
        let ghost = Approval(runID: runID("ghost"), identity: identity("alice"), digest: digest("d"), time: at(10))
        for transition in [nil, Self.enough] {
            let error = await storeError {
                _ = try await store.recordApproval(ghost, completing: transition, at: at(11), actor: "alice")
            }
            #expect(error?.code == .notFound)
        }
        #expect(try await store.auditEntries() == before)
    }
}
