import Foundation
import Testing
import LockstepCore
@testable import RunStore

enum Outcome: Equatable, Sendable {
    case won, lost
    case failed(String)
}

/// The two guarantees that stop a double apply and two plans racing on one target
/// (docs/THREAT-MODEL.md §4.3: the same plan applied twice; docs/CONTRACT.md §4: one pending plan per target).
@Suite("RunStore: compare-and-set and one open run per target under concurrency")
struct ConcurrencyTests {
    /// Many callers, spread over `stores`, all try `approved → applying` on one run.
    private func race(_ stores: [any RunStore], callers: Int) async -> [Outcome] {
        await withTaskGroup(of: Outcome.self) { group in
            for caller in 0..<callers {
                let store = stores[caller % stores.count]
                group.addTask {
                    do {
                        let moved = try await store.transition(
                            runID("r1"), step(.approved, .applying, .preconditionsHeld), update: RunUpdate(),
                            at: at(100), actor: "trigger-\(caller)")
                        return moved ? .won : .lost
                    } catch {
                        return .failed("\(error)")
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
    }

    private func expectExactlyOneApply(_ outcomes: [Outcome], _ store: any RunStore,
                                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(outcomes.filter { $0 == .won }.count == 1, sourceLocation: sourceLocation)
        #expect(outcomes.filter { $0 == .lost }.count == outcomes.count - 1, "failures: \(outcomes)",
                sourceLocation: sourceLocation)
        let applying = try await store.transitions(of: runID("r1")).filter { $0.transition.to == .applying }
        #expect(applying.count == 1, sourceLocation: sourceLocation)
        let audited = try await store.auditEntries().filter { $0.kind == .transition && $0.payload["to"] == "applying" }
        #expect(audited.count == 1, sourceLocation: sourceLocation)
        #expect(audited.first?.actor == applying.first?.actor, sourceLocation: sourceLocation)
        #expect(try await store.run(runID("r1"))?.state == .applying, sourceLocation: sourceLocation)
        let entries = try await store.auditEntries()
        #expect(AuditChain.verify(entries).isIntact, sourceLocation: sourceLocation)
    }

    @Test("approved → applying from 40 concurrent tasks on one store: exactly one wins", arguments: StoreKind.allCases)
    func casOneStore(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(store, "r1", toApproved)
        let outcomes = await race([store], callers: 40)
        try await expectExactlyOneApply(outcomes, store)
    }

    @Test("approved → applying from two store instances on one file (as two processes): exactly one wins")
    func casTwoStores() async throws {
        let scratch = try Scratch()
        let first = try SQLiteRunStore(path: scratch.store)
        let second = try SQLiteRunStore(path: scratch.store)
        _ = try await first.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(second, "r1", toApproved)
        let outcomes = await race([first, second], callers: 40)
        try await expectExactlyOneApply(outcomes, first)
        try await expectExactlyOneApply(outcomes, second)
    }

    @Test("a second open run on a target is target_busy and writes nothing; after the first ends, a new one is allowed",
          arguments: StoreKind.allCases)
    func targetBusy(_ kind: StoreKind) async throws {
        let scratch = try Scratch()
        let store = try kind.make(scratch)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let before = try await store.auditEntries()
        let error = await storeError { _ = try await store.createRun(newRun("r2"), at: at(1), actor: "lockstep") }
        #expect(error?.code == .targetBusy)
        #expect(error?.description.contains("r1") == true)
        #expect(try await store.run(runID("r2")) == nil)
        #expect(try await store.auditEntries() == before)
        // Another target is independent; an `interrupted` run still holds its target.
        _ = try await store.createRun(newRun("d1", "dev"), at: at(2), actor: "lockstep")
        try await walk(store, "r1", toApproved + [.applying, .interrupted])
        #expect(await storeError { _ = try await store.createRun(newRun("r2"), at: at(3), actor: "lockstep") }?.code
                    == .targetBusy)
        try await walk(store, "r1", [.interrupted, .failed])
        _ = try await store.createRun(newRun("r2"), at: at(4), actor: "lockstep")
        // A run id is never reused.
        try await walk(store, "r2", [.queued, .superseded])
        let reused = await storeError { _ = try await store.createRun(newRun("r1"), at: at(5), actor: "lockstep") }
        #expect(reused?.code == .writeFailed)
    }

    @Test("two store instances creating runs for one target from 20 tasks: exactly one run exists")
    func targetBusyTwoStores() async throws {
        let scratch = try Scratch()
        let stores = [try SQLiteRunStore(path: scratch.store), try SQLiteRunStore(path: scratch.store)]
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for caller in 0..<20 {
                let store = stores[caller % 2]
                group.addTask {
                    do {
                        _ = try await store.createRun(newRun("r\(caller)"), at: at(0), actor: "lockstep")
                        return .won
                    } catch let error as StoreError where error.code == .targetBusy {
                        return .lost
                    } catch {
                        return .failed("\(error)")
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .won }.count == 1)
        #expect(outcomes.filter { $0 == .lost }.count == 19, "failures: \(outcomes)")
        #expect(try await stores[1].runs(target: target("prod"), states: nil).count == 1)
        #expect(try await stores[0].auditEntries().count == 1)
    }

    @Test("the one-open-run rule is SQLite's own: a raw insert of a second open run is refused")
    func targetBusyInSQL() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        let sql = """
            INSERT INTO runs (id, project, environment, tag_name, tag_object, version, commit_id, tree_id,
                              has_verify_commands, state, created_ms, updated_ms)
            SELECT 'sneaky', project, environment, tag_name, tag_object, version, commit_id, tree_id,
                   has_verify_commands, 'planning', created_ms, updated_ms FROM runs WHERE id = 'r1';
            """
        let raw = try runProcess("/usr/bin/sqlite3", ["-batch", "-bail", scratch.store], input: sql)
        #expect(raw.status != 0)
        #expect(raw.stderr.contains("UNIQUE constraint failed"))
        #expect(try await store.run(runID("sneaky")) == nil)
        // A final run moved back to an open state while another is open is refused too, by this
        // same index: RunStoreContractTests.reopenIsTargetBusy, on both stores.
    }
}
