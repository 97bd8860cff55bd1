import Foundation
import GRDB
public import LockstepCore

// Outputs, the last valid branch layout and run logs.
extension SQLiteRunStore {
    /// The audit entry records the outputs' SHA-256 and size, never their text.
    public func setOutputs(_ json: String, target: TargetID, runID: RunID, at time: Date) async throws {
        try await write("store the outputs of \(target)") { db in
            guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
            try db.execute(sql: """
                INSERT INTO outputs (project, environment, run_id, json, time_ms) VALUES (?, ?, ?, ?, ?)
                """, arguments: [target.project.rawValue, target.environment.rawValue, runID.rawValue, json,
                                 Milliseconds.from(time)])
            try Self.appendAudit(db, time: time, actor: "lockstep", kind: .outputs, target: target, runID: runID,
                                 payload: AuditPayload.outputs(json))
        }
    }

    public func recordValidLayout(_ layout: StoredBranchLayout, at time: Date) async throws {
        try await write("keep the last valid layout of \(layout.branch)") { db in
            try db.execute(sql: """
                INSERT INTO branch_layouts (branch, commit_id, yaml, recorded_ms) VALUES (?, ?, ?, ?)
                ON CONFLICT (branch) DO UPDATE SET commit_id = excluded.commit_id, yaml = excluded.yaml,
                                                   recorded_ms = excluded.recorded_ms
                """, arguments: [layout.branch, layout.commit.rawValue, layout.yaml, Milliseconds.from(time)])
        }
    }

    public func lastValidLayout(branch: String) async throws -> StoredBranchLayout? {
        try await read { db in
            try SQLiteFetch.row(db, "SELECT commit_id, yaml FROM branch_layouts WHERE branch = ?", [branch],
                                what: "the last valid layout of \(branch)") { row throws(ColumnError) in
                StoredBranchLayout(branch: branch, commit: try row.parsed("commit_id", "a git object id", GitObjectID.init),
                                   yaml: try row.text("yaml"))
            }
        }
    }

    public func outputs(of target: TargetID) async throws -> String? {
        try await read { db in
            try SQLiteFetch.row(db, """
                SELECT json FROM outputs WHERE project = ? AND environment = ? ORDER BY id DESC LIMIT 1
                """, [target.project.rawValue, target.environment.rawValue],
                what: "the outputs of \(target)") { row throws(ColumnError) in try row.text("json") }
        }
    }

    public func outputs(of target: TargetID, storedBy runID: RunID) async throws -> String? {
        try await read { db in
            try SQLiteFetch.row(db, """
                SELECT json FROM outputs WHERE project = ? AND environment = ? AND run_id = ? ORDER BY id DESC LIMIT 1
                """, [target.project.rawValue, target.environment.rawValue, runID.rawValue],
                what: "the outputs of run \(runID)") { row throws(ColumnError) in try row.text("json") }
        }
    }

    public func appendLog(_ text: String, stream: LogStream, runID: RunID, at time: Date) async throws {
        let limit = maxLogBytesPerRun
        try await write("append to the log of run \(runID)") { db in
            guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
            try Self.appendLog(db, text: text, stream: stream, runID: runID, time: time, limit: limit)
        }
    }

    public func log(of runID: RunID) async throws -> String {
        try await read { db in
            let what = "the log of run \(runID)"
            guard let cut = try SQLiteFetch.row(db, "SELECT cut_bytes FROM run_logs WHERE run_id = ?", [runID.rawValue],
                                                what: what, { row throws(ColumnError) in try row.integer("cut_bytes") })
            else { return "" }
            let chunks = try SQLiteFetch.rows(db, "SELECT stream, text FROM run_log_chunks WHERE run_id = ? ORDER BY id",
                                              [runID.rawValue], what: what) { row throws(ColumnError) in
                (stream: try row.text("stream"), text: try row.text("text"))
            }
            return RunLog.render(cutBytes: cut, chunks: chunks)
        }
    }

    /// Adds `text` to a run's log and cuts the oldest text until the log fits `limit` bytes.
    static func appendLog(_ db: Database, text: String, stream: LogStream, runID: RunID, time: Date,
                          limit: Int) throws {
        let what = "the log of run \(runID)"
        var chunk = text
        var cut: Int64 = 0
        if chunk.utf8.count > limit {
            let kept = RunLog.suffix(of: chunk, droppingAtLeast: chunk.utf8.count - limit)
            cut += Int64(chunk.utf8.count - kept.utf8.count)
            chunk = kept
        }
        let bytes = Int64(chunk.utf8.count)
        try db.execute(sql: """
            INSERT INTO run_logs (run_id, kept_bytes, cut_bytes) VALUES (?, 0, 0) ON CONFLICT (run_id) DO NOTHING
            """, arguments: [runID.rawValue])
        if bytes > 0 {
            try db.execute(sql: """
                INSERT INTO run_log_chunks (run_id, stream, time_ms, bytes, text) VALUES (?, ?, ?, ?, ?)
                """, arguments: [runID.rawValue, stream.rawValue, Milliseconds.from(time), bytes, chunk])
        }
        guard let stored = try SQLiteFetch.row(db, "SELECT kept_bytes FROM run_logs WHERE run_id = ?", [runID.rawValue],
                                               what: what, { row throws(ColumnError) in try row.integer("kept_bytes") })
        else { return }
        var kept = stored + bytes
        while kept > Int64(limit) {
            guard let (id, oldText) = try SQLiteFetch.row(db, """
                SELECT id, text FROM run_log_chunks WHERE run_id = ? ORDER BY id LIMIT 1
                """, [runID.rawValue], what: what, { row throws(ColumnError) in (try row.integer("id"), try row.text("text")) })
            else { break }
            let excess = Int(kept - Int64(limit))
            let oldBytes = oldText.utf8.count
            if oldBytes <= excess {
                try db.execute(sql: "DELETE FROM run_log_chunks WHERE id = ?", arguments: [id])
                kept -= Int64(oldBytes)
                cut += Int64(oldBytes)
            } else {
                let rest = RunLog.suffix(of: oldText, droppingAtLeast: excess)
                let dropped = Int64(oldBytes - rest.utf8.count)
                try db.execute(sql: "UPDATE run_log_chunks SET text = ?, bytes = ? WHERE id = ?",
                               arguments: [rest, rest.utf8.count, id])
                kept -= dropped
                cut += dropped
            }
        }
        try db.execute(sql: "UPDATE run_logs SET kept_bytes = ?, cut_bytes = cut_bytes + ? WHERE run_id = ?",
                       arguments: [kept, cut, runID.rawValue])
    }
}

/// How a run's log is shown.
enum RunLog {
    static func cutMarker(cutBytes: Int64) -> String {
        "[lockstep: \(cutBytes) earlier bytes of this log were cut to keep it within the store's limit]\n"
    }

    static func header(stream: String) -> String { "--- \(stream) ---\n" }

    /// The text of a log: the cut marker (when text was cut), then its chunks in order, each
    /// run of chunks from one stream under that stream's header.
    static func render(cutBytes: Int64, chunks: [(stream: String, text: String)]) -> String {
        var out = cutBytes > 0 ? cutMarker(cutBytes: cutBytes) : ""
        var previous: String?
        for chunk in chunks {
            if chunk.stream != previous {
                if !out.isEmpty && !out.hasSuffix("\n") { out += "\n" }
                out += header(stream: chunk.stream)
                previous = chunk.stream
            }
            out += chunk.text
        }
        return out
    }

    /// `text` without its first `count` bytes, moved forward to a character boundary.
    static func suffix(of text: String, droppingAtLeast count: Int) -> String {
        let bytes = Array(text.utf8)
        var start = min(max(count, 0), bytes.count)
        while start < bytes.count && (bytes[start] & 0xC0) == 0x80 { start += 1 }
        return String(decoding: bytes[start...], as: UTF8.self)
    }
}
