import Foundation
import GRDB
public import LockstepCore

// The outbox (Outbox.swift): events written inside the transactions of other writes, and
// each sink's place in them.
extension SQLiteRunStore {
    /// Appends an event inside the caller's transaction: it is stored exactly when the write it
    /// reports is.
    static func enqueue(_ db: Database, _ kind: OutboxEvent.Kind, target: TargetID, runID: RunID?, at time: Date,
                        facts: OutboxFacts) throws {
        try db.execute(sql: """
            INSERT INTO outbox (kind, project, environment, run_id, facts_json, time_ms) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [kind.rawValue, target.project.rawValue, target.environment.rawValue, runID?.rawValue,
                             try StoredJSON.encode(facts), Milliseconds.from(time)])
    }

    /// The identities that approved `runID`, in the order they approved.
    static func approvers(of runID: RunID, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT identity FROM approvals WHERE run_id = ? ORDER BY id", arguments: [runID.rawValue])
    }

    public func outboxEvents(after id: Int64, limit: Int) async throws -> [OutboxEvent] {
        try await read { db in
            try SQLiteFetch.rows(db, "SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?", [id, max(1, limit)],
                                 what: "outbox events") { row throws(ColumnError) in
                OutboxEvent(
                    id: try row.integer("id"),
                    kind: try row.parsed("kind", "transition, approval or tag_rejected") { raw in
                        guard let kind = OutboxEvent.Kind(rawValue: raw) else { throw ColumnError(column: "kind", expected: "") }
                        return kind
                    },
                    target: try row.target(),
                    runID: try row.parsedIfPresent("run_id", "a run id", RunID.init),
                    time: try row.date("time_ms"),
                    facts: try row.json("facts_json", as: OutboxFacts.self, "the event's facts"))
            }
        }
    }

    public func outboxLastEventID() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT max(id) FROM outbox") ?? 0 }
    }

    public func outboxPosition(of sink: String) async throws -> Int64? {
        try await read { db in
            try Int64.fetchOne(db, sql: "SELECT event_id FROM outbox_positions WHERE sink = ?", arguments: [sink])
        }
    }

    public func setOutboxPosition(of sink: String, to id: Int64, at time: Date) async throws {
        try await write("record the outbox position of \(sink)") { db in
            try db.execute(sql: """
                INSERT INTO outbox_positions (sink, event_id, updated_ms) VALUES (?, ?, ?)
                ON CONFLICT (sink) DO UPDATE SET event_id = max(event_id, excluded.event_id), updated_ms = excluded.updated_ms
                """, arguments: [sink, id, Milliseconds.from(time)])
        }
    }

    public func forgeThread(sink: String, runID: RunID) async throws -> ForgeThread? {
        try await read { db in
            try SQLiteFetch.row(db, "SELECT pull, comment FROM forge_threads WHERE sink = ? AND run_id = ?",
                                [sink, runID.rawValue], what: "the forge thread of run \(runID)") { row throws(ColumnError) in
                ForgeThread(pull: try row.optionalText("pull"), comment: try row.optionalText("comment"))
            }
        }
    }

    public func recordForgeThread(_ thread: ForgeThread, sink: String, runID: RunID, at time: Date) async throws {
        try await write("record the forge thread of run \(runID)") { db in
            try db.execute(sql: """
                INSERT INTO forge_threads (sink, run_id, pull, comment, updated_ms) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (sink, run_id) DO UPDATE SET pull = excluded.pull, comment = excluded.comment,
                    updated_ms = excluded.updated_ms
                """, arguments: [sink, runID.rawValue, thread.pull, thread.comment, Milliseconds.from(time)])
        }
    }
}
