import Foundation
import LockstepCore
import Testing
@testable import RunStore

@Suite("SQLiteRunStore: a plan's rendering truncation is stored")
struct PlanTruncationTests {
    @Test("a truncated rendering keeps its flag and the whole text's size; a plan row from before the migration reads as whole")
    func roundTrip() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        for id in ["r1", "r2"] {
            _ = try await store.createRun(newRun(id, id == "r1" ? "prod" : "dev"), at: at(0), actor: "lockstep")
            #expect(try await store.transition(runID(id), step(.queued, .planning), update: RunUpdate(), at: at(1), actor: "lockstep"))
        }
        let cut = StoredPlan(summaryJSON: #"{"create":300}"#, rendering: "+ null_resource.a\n", planJSON: "{}",
                             renderingTruncated: true, renderingBytes: 54_900_000)
        #expect(try await store.transition(runID("r1"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("d"), plan: cut), at: at(2), actor: "lockstep"))
        #expect(try await store.run(runID("r1"))?.plan == cut)

        let whole = StoredPlan(summaryJSON: #"{"create":1}"#, rendering: "+ null_resource.b\n", planJSON: "{}")
        #expect(whole.renderingBytes == 18 && !whole.renderingTruncated)
        #expect(try await store.transition(runID("r2"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("e"), plan: whole), at: at(2), actor: "lockstep"))
        try store.close()
        // What the migration leaves in a row written before it: no size, not truncated.
        _ = try sqlite3(scratch.store, "UPDATE plans SET rendering_bytes = NULL WHERE run_id = 'r2';")
        let reopened = try SQLiteRunStore(path: scratch.store)
        #expect(try await reopened.run(runID("r2"))?.plan == whole)
        #expect(try sqlite3(scratch.store, "SELECT count(*) FROM grdb_migrations WHERE identifier = 'v3_plan_rendering_truncation';") == "1\n")
        // Plans stored with their text read as ready.
        #expect(try sqlite3(scratch.store, "SELECT rendering_state FROM plans ORDER BY run_id;") == "ready\nready\n")
        try reopened.close()

        // A size that is not a byte count is damage, never a silent zero.
        _ = try sqlite3(scratch.store, "UPDATE plans SET rendering_bytes = -5 WHERE run_id = 'r2';")
        let damaged = try SQLiteRunStore(path: scratch.store)
        #expect(await storeError { _ = try await damaged.run(runID("r2")) }?.code == .corrupt)
        try damaged.close()

        // A rendering state this build does not know is damage too, never taken for "ready".
        _ = try sqlite3(scratch.store, "UPDATE plans SET rendering_bytes = 18, rendering_state = 'maybe' WHERE run_id = 'r2';")
        let unknown = try SQLiteRunStore(path: scratch.store)
        #expect(await storeError { _ = try await unknown.run(runID("r2")) }?.code == .corrupt)
        try unknown.close()
    }
}
