import Foundation
import GRDB
public import LockstepCore

// Drift checks.
extension SQLiteRunStore {
    public func recordDriftCheck(_ check: DriftCheck, actor: String) async throws {
        try await write("record a drift check of \(check.target)") { db in
            try db.execute(sql: """
                INSERT INTO drift_checks (project, environment, run_id, tag_name, version, commit_id, time_ms, outcome,
                                          detail, addresses_json, actor)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [check.target.project.rawValue, check.target.environment.rawValue, check.runID.rawValue,
                                 check.tagName, check.version.description, check.commit.rawValue,
                                 Milliseconds.from(check.time), check.outcome.rawValue, check.detail,
                                 try StoredJSON.encode(check.addresses), actor])
            try Self.appendAudit(db, time: check.time, actor: actor, kind: .drift, target: check.target, runID: nil,
                                 payload: AuditPayload.drift(check))
            if check.outcome != .noDrift {
                try Self.enqueue(db, .drift, target: check.target, runID: nil, at: check.time,
                                 facts: OutboxFacts(reason: check.outcome.rawValue, detail: check.detail, tagName: check.tagName))
            }
        }
    }

    public func driftChecks(of target: TargetID, limit: Int) async throws -> [DriftCheck] {
        try await read { db in
            try SQLiteFetch.all(DriftCheckRow.self, db, """
                SELECT * FROM drift_checks WHERE project = ? AND environment = ? ORDER BY id DESC LIMIT ?
                """, [target.project.rawValue, target.environment.rawValue, max(0, limit)],
                what: "a drift check of \(target)").map(\.check)
        }
    }
}

struct DriftCheckRow: FetchableRecord {
    let check: DriftCheck

    init(row: Row) throws {
        check = DriftCheck(
            target: try row.target(), runID: try row.parsed("run_id", "a run id", RunID.init),
            tagName: try row.text("tag_name"), version: try row.parsed("version", "a version", SemanticVersion.init),
            commit: try row.parsed("commit_id", "a git object id", GitObjectID.init), time: try row.date("time_ms"),
            outcome: try row.parsed("outcome", "no_drift, drift or failed") { raw in
                guard let outcome = DriftCheck.Outcome(rawValue: raw) else {
                    throw ColumnError(column: "outcome", expected: "no_drift, drift or failed")
                }
                return outcome
            },
            detail: try row.text("detail"),
            addresses: try row.json("addresses_json", as: [String].self, "a list of addresses"))
    }
}
