import Foundation
import GRDB
public import LockstepCore

// Tag decisions, apply preconditions, alerts, rollback pins and the audit log.
extension SQLiteRunStore {
    @discardableResult
    public func recordTagDecision(_ decision: StoredTagDecision, at time: Date, actor: String) async throws -> Bool {
        try await write("record the decision on tag \(decision.tagName)") { db in
            try Self.record(decision, db, at: time, actor: actor)
        }
    }

    public func recordTagDecisions(_ decisions: [StoredTagDecision], at time: Date, actor: String) async throws -> [Bool] {
        guard !decisions.isEmpty else { return [] }
        return try await write("record \(decisions.count) tag decisions") { db in
            try decisions.map { decision in try Self.record(decision, db, at: time, actor: actor) }
        }
    }

    /// Records `decision` inside the caller's transaction unless it equals the last one for the
    /// same target, tag name and tag object.
    private static func record(_ decision: StoredTagDecision, _ db: Database, at time: Date, actor: String) throws -> Bool {
        let last = try SQLiteFetch.one(TagDecisionRow.self, db, """
            SELECT * FROM tag_decisions WHERE project = ? AND environment = ? AND tag_name = ? AND tag_object = ?
            ORDER BY id DESC LIMIT 1
            """, [decision.target.project.rawValue, decision.target.environment.rawValue, decision.tagName,
                  decision.tagObject.rawValue], what: "a tag decision")
        if last?.decision == decision { return false }
        try db.execute(sql: """
            INSERT INTO tag_decisions (project, environment, tag_name, tag_object, commit_id, version, accepted,
                                       rejections_json, time_ms, actor)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [decision.target.project.rawValue, decision.target.environment.rawValue,
                             decision.tagName, decision.tagObject.rawValue, decision.commit?.rawValue,
                             decision.version?.description, decision.accepted,
                             try StoredJSON.encode(decision.rejections), Milliseconds.from(time), actor])
        try appendAudit(db, time: time, actor: actor, kind: .tagDecision, target: decision.target, runID: nil,
                        payload: AuditPayload.tagDecision(decision))
        if !decision.accepted {
            try enqueue(db, .tagRejected, target: decision.target, runID: nil, at: time,
                        facts: OutboxFacts(tagName: decision.tagName, rejections: decision.rejections.map(\.description)))
        }
        return true
    }

    public func tagDecisions(for target: TargetID) async throws -> [StoredTagDecision] {
        try await read { db in
            try SQLiteFetch.all(TagDecisionRow.self, db, """
                SELECT * FROM tag_decisions AS d
                WHERE project = ? AND environment = ?
                  AND id = (SELECT max(id) FROM tag_decisions AS e WHERE e.project = d.project
                            AND e.environment = d.environment AND e.tag_name = d.tag_name)
                ORDER BY id
                """, [target.project.rawValue, target.environment.rawValue],
                what: "a tag decision of \(target)").map(\.decision)
        }
    }

    public func recordApplyPreconditions(_ report: ApplyPreconditionReport, runID: RunID, at time: Date,
                                         actor: String) async throws {
        try await write("record the apply preconditions of run \(runID)") { db in
            guard let target = try Self.targetIfExists(of: runID, db) else {
                throw StoreError(.notFound, "run \(runID) does not exist")
            }
            try db.execute(sql: """
                INSERT INTO apply_precondition_reports (run_id, failures_json, time_ms, actor) VALUES (?, ?, ?, ?)
                """, arguments: [runID.rawValue, try StoredJSON.encode(report.failures), Milliseconds.from(time), actor])
            try Self.appendAudit(db, time: time, actor: actor, kind: .applyPreconditions, target: target, runID: runID,
                                 payload: AuditPayload.applyPreconditions(report))
        }
    }

    public func applyPreconditions(of runID: RunID) async throws -> [ApplyPreconditionReport] {
        try await read { db in
            try SQLiteFetch.all(PreconditionReportRow.self, db, """
                SELECT failures_json FROM apply_precondition_reports WHERE run_id = ? ORDER BY id
                """, [runID.rawValue], what: "an apply precondition report of run \(runID)").map(\.report)
        }
    }

    public func raiseAlert(_ alert: RunAlert, target: TargetID?, runID: RunID?, at time: Date,
                           actor: String) async throws {
        try await write("raise an alert") { db in
            try db.execute(sql: """
                INSERT INTO alerts (project, environment, run_id, code, description, time_ms, actor)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [target?.project.rawValue, target?.environment.rawValue, runID?.rawValue,
                                 alert.code.rawValue, alert.description, Milliseconds.from(time), actor])
            try Self.appendAudit(db, time: time, actor: actor, kind: .alert, target: target, runID: runID,
                                 payload: AuditPayload.alert(alert))
        }
    }

    public func alerts(target: TargetID?) async throws -> [StoredAlert] {
        try await read { db in
            let alerts = if let target {
                try SQLiteFetch.all(AlertRow.self, db, "SELECT * FROM alerts WHERE project = ? AND environment = ? ORDER BY id",
                                    [target.project.rawValue, target.environment.rawValue], what: "an alert")
            } else {
                try SQLiteFetch.all(AlertRow.self, db, "SELECT * FROM alerts ORDER BY id", what: "an alert")
            }
            return alerts.map(\.alert)
        }
    }

    // MARK: Rollback pins

    public func pin(for target: TargetID) async throws -> RollbackPin? {
        try await read { db in try Self.activePin(db, target)?.pin }
    }

    public func clearPin(for target: TargetID, at time: Date, actor: String) async throws {
        try await write("clear the rollback pin of \(target)") { db in
            guard let active = try Self.activePin(db, target) else { return }
            try db.execute(sql: "UPDATE rollback_pins SET cleared_ms = ?, cleared_by = ? WHERE id = ?",
                           arguments: [Milliseconds.from(time), actor, active.id])
            try Self.appendAudit(db, time: time, actor: actor, kind: .pinCleared, target: target, runID: active.runID,
                                 payload: AuditPayload.pinCleared(active.pin))
        }
    }

    // MARK: Audit

    public func appendAudit(kind: AuditKind, target: TargetID?, runID: RunID?, payload: [String: String],
                            at time: Date, actor: String) async throws {
        try await write("append an audit entry") { db in
            try Self.appendAudit(db, time: time, actor: actor, kind: kind, target: target, runID: runID, payload: payload)
        }
    }

    public func auditEntries() async throws -> [AuditEntry] {
        try await read { db in
            try SQLiteFetch.numbered(AuditRow.self, db, AuditRow.selection + " ORDER BY sequence") { position in
                "audit entry at position \(position)"
            }.map(\.entry)
        }
    }

    /// The hash of the last audit entry (``AuditHash/genesis`` when there is none): keep it
    /// outside the store and pass it to `audit verify --expect-head` to detect a cut-off or
    /// rewritten chain.
    public func auditHead() async throws -> AuditHash {
        try await read { db in
            try SQLiteFetch.one(AuditRow.self, db, AuditRow.selection + " ORDER BY sequence DESC LIMIT 1",
                                what: "the last audit entry")?.entry.hash ?? AuditHash.genesis
        }
    }

    public func auditTargets(after sequence: UInt64?) async throws -> AuditTargets {
        try await read { db in
            let last = UInt64(clamping: try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM audit_log") ?? 0)
            guard let sequence else { return AuditTargets(lastSequence: last, targets: [], untargeted: true) }
            var changes = AuditTargets(lastSequence: last, targets: [], untargeted: last < sequence)
            let rows = try Row.fetchCursor(db, sql: """
                SELECT DISTINCT project, environment FROM audit_log WHERE sequence > ? AND kind <> ?
                """, arguments: [Int64(clamping: sequence), AuditKind.refusal.rawValue])
            while let row = try rows.next() {
                if let target = try row.optionalTarget() { changes.targets.insert(target) } else { changes.untargeted = true }
            }
            return changes
        }
    }
}
