import Foundation
import Testing
import LockstepCore
@testable import RunStore

func sqlQuote(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }

/// The JSON the store keeps for a payload (sorted keys), for forging rows by hand.
func payloadJSON(_ payload: [String: String]) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(payload), as: UTF8.self)
}

func insertSQL(_ entry: AuditEntry) throws -> String {
    """
    INSERT INTO audit_log (sequence, time_ms, actor, kind, project, environment, run_id, payload, previous_hash, hash)
    VALUES (\(entry.sequence), \(entry.epochMilliseconds), \(sqlQuote(entry.actor)), \(sqlQuote(entry.kind.rawValue)),
            \(entry.target.map { sqlQuote($0.project.rawValue) } ?? "NULL"),
            \(entry.target.map { sqlQuote($0.environment.rawValue) } ?? "NULL"),
            \(entry.runID.map { sqlQuote($0.rawValue) } ?? "NULL"), \(sqlQuote(try payloadJSON(entry.payload))),
            \(sqlQuote(entry.previousHash.hex)), \(sqlQuote(entry.hash.hex)));
    """
}

/// Everything readable about a store, for before/after comparisons.
struct Snapshot: Equatable {
    var runs: [StoredRun]
    var transitions: [[StoredTransition]]
    var approvals: [[Approval]]
    var refusals: [[ApprovalRefusal]]
    var preconditions: [[ApplyPreconditionReport]]
    var logs: [String]
    var decisions: [StoredTagDecision]
    var alerts: [StoredAlert]
    var outputs: String?
    var pin: RollbackPin?
    var layout: StoredBranchLayout?
    var audit: [AuditEntry]

    init(_ store: SQLiteRunStore) async throws {
        runs = try await store.runs(target: nil, states: nil)
        transitions = []
        approvals = []
        refusals = []
        preconditions = []
        logs = []
        for run in runs {
            transitions.append(try await store.transitions(of: run.id))
            approvals.append(try await store.approvals(of: run.id))
            refusals.append(try await store.approvalRefusals(of: run.id))
            preconditions.append(try await store.applyPreconditions(of: run.id))
            logs.append(try await store.log(of: run.id))
        }
        decisions = try await store.tagDecisions(for: target("prod"))
        alerts = try await store.alerts(target: nil)
        outputs = try await store.outputs(of: target("prod"))
        pin = try await store.pin(for: target("prod"))
        layout = try await store.lastValidLayout(branch: "main")
        audit = try await store.auditEntries()
    }

    /// Guards against a snapshot that proves nothing because it is empty.
    var coversEveryTable: Bool {
        runs.count == 2 && transitions.joined().count > 5 && !approvals.joined().isEmpty && !refusals.joined().isEmpty
            && !preconditions.joined().isEmpty && logs.contains { !$0.isEmpty } && !decisions.isEmpty
            && !alerts.isEmpty && outputs != nil && layout != nil && audit.count == 18
    }
}

/// A store holding ``mixedHistory`` (18 audit entries), closed, with its entries.
func closedHistoryStore(_ scratch: Scratch) async throws -> [AuditEntry] {
    let store = try SQLiteRunStore(path: scratch.store)
    try await mixedHistory(store)
    let entries = try await store.auditEntries()
    try store.close()
    #expect(entries.count == 18)
    #expect(entries[9].kind == .transition && entries[9].payload["to"] == "applying")
    return entries
}

func verifyStore(_ path: String, expectedHead: AuditHash? = nil) async throws -> AuditVerification {
    let store = try SQLiteRunStore.openReadOnly(path: path)
    return AuditChain.verify(try await store.auditEntries(), expectedHead: expectedHead)
}

func expectBreak(_ verification: AuditVerification, _ code: AuditBreak.Code, sequence: UInt64, index: Int,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard case let .broken(found) = verification else {
        Issue.record("the chain verified as intact", sourceLocation: sourceLocation)
        return
    }
    #expect(found.code == code, "\(found)", sourceLocation: sourceLocation)
    #expect(found.sequence == sequence, "\(found)", sourceLocation: sourceLocation)
    #expect(found.index == index, "\(found)", sourceLocation: sourceLocation)
}

/// docs/THREAT-MODEL.md §5.2: someone edits the store to hide an apply. Each test edits the SQLite file
/// with the sqlite3 CLI, outside Lockstep, and the store's entries must name the first
/// broken entry with the right code.
@Suite("SQLiteRunStore: tampering with the audit log is named")
struct TamperTests {
    @Test("editing the payload of the apply entry is 'edited' at that entry")
    func edited() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, """
            UPDATE audit_log SET payload = '{"from":"approved","reason":"rejected","to":"rejected"}' WHERE sequence = 10;
            """)
        expectBreak(try await verifyStore(scratch.store), .edited, sequence: 10, index: 9)
    }

    @Test("deleting the apply entry is 'deleted' at the entry after the gap")
    func deleted() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "DELETE FROM audit_log WHERE sequence = 10;")
        expectBreak(try await verifyStore(scratch.store), .deleted, sequence: 11, index: 9)
    }

    @Test("a forged entry inserted in the middle, renumbered and correctly hashed, is 'inserted' at the forgery")
    func insertedInMiddle() async throws {
        let scratch = try Scratch()
        let entries = try await closedHistoryStore(scratch)
        let forged = AuditChain.append(after: entries[8], time: at(6), actor: "api:mallory", kind: .approval,
                                       target: target("prod"), runID: runID("m1"),
                                       payload: ["identity": "mallory", "digest": digest("d").rawValue])
        try sqlite3(scratch.store, """
            UPDATE audit_log SET sequence = sequence + 1000 WHERE sequence >= 10;
            UPDATE audit_log SET sequence = sequence - 999 WHERE sequence >= 1000;
            \(try insertSQL(forged))
            """)
        expectBreak(try await verifyStore(scratch.store), .inserted, sequence: 10, index: 9)
    }

    @Test("a forged entry appended with a made-up link is 'link_broken'; a perfectly chained one is caught by the head")
    func insertedAtEnd() async throws {
        let scratch = try Scratch()
        let entries = try await closedHistoryStore(scratch)
        let head = try #require(entries.last).hash
        let genuinePrevious = try #require(entries.last)
        // A forgery whose previous hash points nowhere.
        let unlinked = AuditEntry(sequence: 19, epochMilliseconds: 1, actor: "api:mallory", kind: .approval,
                                  target: nil, runID: nil, payload: [:],
                                  previousHash: try AuditHash(hex: String(repeating: "ab", count: 32)),
                                  hash: try AuditHash(hex: String(repeating: "cd", count: 32)))
        try sqlite3(scratch.store, try insertSQL(unlinked))
        expectBreak(try await verifyStore(scratch.store), .linkBroken, sequence: 19, index: 18)

        // Replace it with one chained correctly: only the externally kept head reveals it.
        let chained = AuditChain.append(after: genuinePrevious, time: at(20), actor: "api:mallory", kind: .approval)
        try sqlite3(scratch.store, "DELETE FROM audit_log WHERE sequence = 19;\n" + (try insertSQL(chained)))
        #expect(try await verifyStore(scratch.store).isIntact)
        let verification = try await verifyStore(scratch.store, expectedHead: head)
        guard case let .broken(found) = verification else {
            Issue.record("a forged tail passed the head check")
            return
        }
        #expect(found.code == .headMismatch)
    }

    @Test("entries cut off the end are caught by the expected head")
    func truncated() async throws {
        let scratch = try Scratch()
        let entries = try await closedHistoryStore(scratch)
        let head = try #require(entries.last).hash
        #expect(try await verifyStore(scratch.store, expectedHead: head).isIntact)
        try sqlite3(scratch.store, "DELETE FROM audit_log WHERE sequence >= 17;")
        guard case let .broken(found) = try await verifyStore(scratch.store, expectedHead: head) else {
            Issue.record("a truncated chain passed the head check")
            return
        }
        #expect(found.code == .headMismatch && found.sequence == 16)
    }

    @Test("swapping two entries is 'reordered' at the first of them")
    func swapped() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, """
            UPDATE audit_log SET sequence = -1 WHERE sequence = 10;
            UPDATE audit_log SET sequence = 10 WHERE sequence = 11;
            UPDATE audit_log SET sequence = 11 WHERE sequence = -1;
            """)
        expectBreak(try await verifyStore(scratch.store), .reordered, sequence: 10, index: 9)
    }

    @Test("an entry edited into something unreadable is store_corrupt naming its position, never a crash")
    func unreadable() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "UPDATE audit_log SET payload = 'not json' WHERE sequence = 7;")
        let store = try SQLiteRunStore.openReadOnly(path: scratch.store)
        let error = await storeError { _ = try await store.auditEntries() }
        #expect(error?.code == .corrupt)
        #expect(error?.description.contains("position 7") == true)
    }

    @Test("a run row edited into nonsense is store_corrupt naming the run")
    func corruptRun() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "UPDATE runs SET state = 'exploded' WHERE id = 'm2';")
        let store = try SQLiteRunStore(path: scratch.store)
        let error = await storeError { _ = try await store.run(runID("m2")) }
        #expect(error?.code == .corrupt)
        #expect(error?.description.contains("m2") == true && error?.description.contains("state") == true)
        try sqlite3(scratch.store, "UPDATE runs SET state = 'queued', created_ms = 'yesterday' WHERE id = 'm2';")
        #expect(await storeError { _ = try await store.runs(target: nil, states: nil) }?.code == .corrupt)
        #expect(await storeError { _ = try await store.runSummaries(target: nil, states: nil) }?.code == .corrupt)
    }

    @Test("text where an integer belongs is store_corrupt naming the column, never read as 0 (also through a cursor)")
    func textInIntegerColumn() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "UPDATE audit_log SET time_ms = 'soon' WHERE sequence = 5;")
        let store = try SQLiteRunStore.openReadOnly(path: scratch.store)
        let error = await storeError { _ = try await store.auditEntries() }
        #expect(error?.code == .corrupt)
        #expect(error?.description.contains("position 5") == true && error?.description.contains("time_ms") == true)
        try sqlite3(scratch.store, "UPDATE audit_log SET time_ms = 1 WHERE sequence = 5; UPDATE runs SET has_verify_commands = 2;")
        let flag = await storeError { _ = try await store.run(runID("m1")) }
        #expect(flag?.code == .corrupt && flag?.description.contains("has_verify_commands") == true)
    }

    @Test("a listing reads no plan: a damaged plan row fails the run's own read and the full list, never runSummaries")
    func listingReadsNoPlan() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        try await walk(store, "r1", [.queued, .planning])
        let plan = StoredPlan(summaryJSON: #"{"create":1}"#, rendering: "+ null_resource.a", planJSON: "{}")
        #expect(try await store.transition(runID("r1"), step(.planning, .checking, .planSucceeded),
                                           update: RunUpdate(planDigest: digest("d"), plan: plan), at: at(1),
                                           actor: "lockstep"))
        try sqlite3(scratch.store, "UPDATE plans SET rendering_truncated = 7, plan_json = 42;")
        let error = await storeError { _ = try await store.run(runID("r1")) }
        #expect(error?.code == .corrupt && error?.description.contains("run r1") == true)
        #expect(await storeError { _ = try await store.runs(target: nil, states: nil) }?.code == .corrupt)
        let summaries = try await store.runSummaries(target: nil, states: nil)
        #expect(summaries.map(\.id) == [runID("r1")] && summaries.first?.planDigest == digest("d"))
    }
}

@Suite("SQLiteRunStore: files, reopening, migrations and atomic writes")
struct FileTests {
    @Test("everything written survives close and reopen, and the chain continues from the stored head")
    func reopen() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        try await mixedHistory(store)
        let before = try await Snapshot(store)
        #expect(before.coversEveryTable)
        try store.close()

        let reopened = try SQLiteRunStore(path: scratch.store)
        #expect(try await Snapshot(reopened) == before)
        try await reopened.appendAudit(kind: .refusal, target: nil, runID: nil, payload: [:], at: at(30), actor: "x")
        let entries = try await reopened.auditEntries()
        #expect(entries.last?.previousHash == before.audit.last?.hash)
        #expect(AuditChain.verify(entries).isIntact)
    }

    @Test("the file is WAL with synchronous=FULL and foreign keys on")
    func pragmas() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        #expect(try sqlite3(scratch.store, "PRAGMA journal_mode;") == "wal\n")
        #expect(try sqlite3(scratch.store, "PRAGMA application_id;") == "\(SQLiteSchema.applicationID)\n")
        let settings = try await store.connectionSettings()
        #expect(settings == ["synchronous": 2, "foreign_keys": 1])
    }

    @Test("a foreign file is refused, named, and left byte-identical", arguments: ForeignFile.all)
    func foreignFile(_ foreign: ForeignFile) async throws {
        let scratch = try Scratch()
        let path = scratch.file("other.db")
        try foreign.make(path)
        let bytes = try fileBytes(path)
        let opens: [() throws -> Void] = [{ _ = try SQLiteRunStore(path: path) },
                                          { _ = try SQLiteRunStore.openReadOnly(path: path) }]
        for open in opens {
            do {
                try open()
                Issue.record("\(foreign.name) was opened as a store")
            } catch let error as StoreError {
                #expect(error.code == .unusable)
                #expect(error.description.contains(path))
                #expect(error.description.contains(foreign.expected), "\(error)")
            }
            #expect(try fileBytes(path) == bytes)
        }
    }

    @Test("a store written by a newer schema is refused, named, and left byte-identical")
    func newerSchema() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "INSERT INTO grdb_migrations (identifier) VALUES ('v9_from_the_future');")
        let bytes = try fileBytes(scratch.store)
        let opens: [() throws -> Void] = [{ _ = try SQLiteRunStore(path: scratch.store) },
                                          { _ = try SQLiteRunStore.openReadOnly(path: scratch.store) }]
        for open in opens {
            do {
                try open()
                Issue.record("a newer store was opened")
            } catch let error as StoreError {
                #expect(error.code == .unusable)
                #expect(error.description.contains(scratch.store))
                #expect(error.description.contains("newer") && error.description.contains("v9_from_the_future"))
            }
            #expect(try fileBytes(scratch.store) == bytes)
        }
    }

    @Test("openReadOnly of a missing file names it and creates nothing; an empty file becomes a new store")
    func missingAndEmpty() async throws {
        let scratch = try Scratch()
        let missing = scratch.file("missing.sqlite")
        let error = await storeError { _ = try SQLiteRunStore.openReadOnly(path: missing) }
        #expect(error?.code == .unusable && error?.description.contains(missing) == true)
        #expect(!FileManager.default.fileExists(atPath: missing))

        let empty = scratch.file("empty.sqlite")
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        let store = try SQLiteRunStore(path: empty)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        #expect(try await store.run(runID("r1")) != nil)
    }

    @Test("a read-only store reads everything and refuses every write without touching the file")
    func readOnly() async throws {
        let scratch = try Scratch()
        let writable = try SQLiteRunStore(path: scratch.store)
        try await mixedHistory(writable)
        let before = try await Snapshot(writable)
        try writable.close()
        let bytes = try fileBytes(scratch.store)
        let store = try SQLiteRunStore.openReadOnly(path: scratch.store)
        #expect(store.isReadOnly)
        #expect(try await Snapshot(store) == before)
        let error = await storeError { _ = try await store.createRun(newRun("r9", "dev"), at: at(0), actor: "x") }
        #expect(error?.code == .writeFailed)
        #expect(await storeError { try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: [:],
                                                                at: at(0), actor: "x") }?.code == .writeFailed)
        try store.close()
        #expect(try fileBytes(scratch.store) == bytes)
    }

    @Test("migrating a v1 store through a table-rebuilding migration keeps every row and the audit chain")
    func migrationKeepsData() async throws {
        let scratch = try Scratch()
        let v1 = try SQLiteRunStore(path: scratch.store)
        try await mixedHistory(v1)
        let before = try await Snapshot(v1)
        #expect(before.coversEveryTable)
        try v1.close()

        // A test-only v2 that rebuilds the runs table (the way SQLite changes a column),
        // the riskiest kind of migration for data that other tables point at.
        let rebuild = """
                CREATE TABLE runs_new (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, project TEXT NOT NULL,
                    environment TEXT NOT NULL, tag_name TEXT NOT NULL, tag_object TEXT NOT NULL, version TEXT NOT NULL,
                    commit_id TEXT NOT NULL, tree_id TEXT NOT NULL, tagger_email TEXT, pin_version TEXT,
                    pin_ceiling TEXT, has_verify_commands INTEGER NOT NULL, state TEXT NOT NULL, last_reason TEXT,
                    plan_digest TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                    signer_format TEXT, signer_principal TEXT, signer_key TEXT,
                    note TEXT NOT NULL DEFAULT '');
                INSERT INTO runs_new (seq, id, project, environment, tag_name, tag_object, version, commit_id, tree_id,
                    tagger_email, pin_version, pin_ceiling, has_verify_commands, state, last_reason, plan_digest,
                    created_ms, updated_ms, signer_format, signer_principal, signer_key)
                SELECT seq, id, project, environment, tag_name, tag_object, version, commit_id, tree_id, tagger_email,
                    pin_version, pin_ceiling, has_verify_commands, state, last_reason, plan_digest, created_ms,
                    updated_ms, signer_format, signer_principal, signer_key FROM runs;
                DROP TABLE runs;
                ALTER TABLE runs_new RENAME TO runs;
                CREATE UNIQUE INDEX runs_one_open_run_per_target ON runs (project, environment)
                    WHERE state NOT IN ('verified', 'no_changes', 'rejected', 'superseded', 'failed', 'expired');
                CREATE INDEX runs_by_target ON runs (project, environment, seq);
                """
        let v2 = try SQLiteRunStore(path: scratch.store, extraMigrations: [("v2_test_rebuild_runs", rebuild)])
        #expect(try sqlite3(scratch.store, "SELECT identifier FROM grdb_migrations ORDER BY identifier;")
                    == "v1_initial_schema\nv2_branch_layouts\nv2_test_rebuild_runs\nv3_plan_rendering_truncation\nv4_plan_rendering_state\nv5_outbox\nv6_tag_signer\nv7_plan_prior_state\nv8_checks_and_overrides\nv9_drift_checks\n")
        #expect(try sqlite3(scratch.store, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'note';")
                    == "1\n")
        #expect(try await Snapshot(v2) == before)
        // The migrated store keeps working and keeps its rules.
        _ = try await v2.createRun(newRun("after", "dev"), at: at(40), actor: "lockstep")
        #expect(await storeError { _ = try await v2.createRun(newRun("again", "dev"), at: at(41), actor: "lockstep") }?
                    .code == .targetBusy)
        #expect(AuditChain.verify(try await v2.auditEntries()).isIntact)
        try v2.close()

        // And this build, which does not know v2, now refuses the file rather than guess.
        let bytes = try fileBytes(scratch.store)
        let error = await storeError { _ = try SQLiteRunStore(path: scratch.store) }
        #expect(error?.code == .unusable && error?.description.contains("v2_test_rebuild_runs") == true)
        #expect(try fileBytes(scratch.store) == bytes)
    }

    @Test("a write that fails part-way leaves nothing: a corrupt chain head aborts the transition it follows")
    func failedWriteIsAtomic() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        _ = try await store.createRun(newRun("r1"), at: at(0), actor: "lockstep")
        // The run update runs first in the transaction; the audit append then fails.
        try sqlite3(scratch.store, "UPDATE audit_log SET hash = 'zz' WHERE sequence = 1;")
        let error = await storeError {
            _ = try await store.transition(runID("r1"), step(.queued, .planning), update: RunUpdate(), at: at(1),
                                           actor: "lockstep")
        }
        #expect(error?.code == .corrupt)
        #expect(try await store.run(runID("r1"))?.state == .queued)
        #expect(try await store.transitions(of: runID("r1")).isEmpty)
        #expect(try sqlite3(scratch.store, "SELECT count(*) FROM audit_log;") == "1\n")
        // Every other write fails closed too until an operator looks at the store.
        #expect(await storeError { _ = try await store.createRun(newRun("d1", "dev"), at: at(2), actor: "x") }?.code
                    == .corrupt)
        #expect(try await store.run(runID("d1")) == nil)
    }
}

/// A file that is not a Lockstep store.
struct ForeignFile: Sendable, CustomTestStringConvertible {
    var name: String
    /// Text the refusal must contain.
    var expected: String
    var sql: String?
    var text: String?

    var testDescription: String { name }

    func make(_ path: String) throws {
        if let sql { try sqlite3(path, sql) }
        if let text { #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8))) }
    }

    static let all: [ForeignFile] = [
        ForeignFile(name: "another application's SQLite database", expected: "not a Lockstep store",
                    sql: "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada');"),
        ForeignFile(name: "a WAL database of another application", expected: "not a Lockstep store",
                    sql: "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);"),
        ForeignFile(name: "a text file", expected: "not an SQLite database",
                    text: String(repeating: "this is a config file, not a database\n", count: 40)),
        ForeignFile(name: "a file claiming Lockstep's id without a schema record", expected: "no schema record",
                    sql: "PRAGMA application_id = \(SQLiteSchema.applicationID); CREATE TABLE t (x);"),
    ]
}
