import Foundation
import GRDB
public import LockstepCore

// Approvals and refused approvals.
extension SQLiteRunStore {
    public func recordApproval(_ approval: Approval, completing transition: RunTransition?, at time: Date,
                               actor: String) async throws -> Bool {
        let action = transition.map { "record an approval of run \(approval.runID) and move it to \($0.to)" }
            ?? "record an approval of run \(approval.runID)"
        do {
            try await write(action) { db in
                guard let target = try Self.targetIfExists(of: approval.runID, db) else {
                    throw StoreError(.notFound, "run \(approval.runID) does not exist")
                }
                try db.execute(sql: """
                    INSERT INTO approvals (run_id, identity, digest, time_ms, actor, override_checks_json, break_glass, reason)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [approval.runID.rawValue, approval.identity.rawValue, approval.digest.rawValue,
                                     Milliseconds.from(approval.time), actor, try StoredJSON.encode(approval.overrideChecks),
                                     approval.breakGlass, approval.reason])
                try Self.appendAudit(db, time: approval.time, actor: actor, kind: .approval, target: target,
                                     runID: approval.runID,
                                     payload: AuditPayload.approval(approval))
                try Self.enqueue(db, .approval, target: target, runID: approval.runID, at: approval.time,
                                 facts: OutboxFacts(approvedBy: approval.identity.rawValue,
                                                    approvers: try Self.approvers(of: approval.runID, db)))
                CrashPoint.reached(.approvalRecordedBeforeTransition)
                // Thrown, not returned: the approval written above must be rolled back with it.
                if let transition, try !Self.move(db, approval.runID, transition, update: RunUpdate(), at: time,
                                                  actor: actor) {
                    throw CompareAndSetLost()
                }
            }
            return true
        } catch is CompareAndSetLost {
            return false
        }
    }

    public func recordApprovalRefusal(_ refusal: ApprovalRefusal, at time: Date, actor: String) async throws {
        try await write("record a refused approval of run \(refusal.approval.runID)") { db in
            let approval = refusal.approval
            try db.execute(sql: """
                INSERT INTO approval_refusals (run_id, identity, digest, approval_time_ms, code, description,
                                               time_ms, actor, override_checks_json, break_glass, reason)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [approval.runID.rawValue, approval.identity.rawValue, approval.digest.rawValue,
                                 Milliseconds.from(approval.time), refusal.code.rawValue, refusal.description,
                                 Milliseconds.from(time), actor, try StoredJSON.encode(approval.overrideChecks),
                                 approval.breakGlass, approval.reason])
            try Self.appendAudit(db, time: time, actor: actor, kind: .approvalRefusal,
                                 target: try Self.targetIfExists(of: approval.runID, db), runID: approval.runID,
                                 payload: AuditPayload.refusal(refusal))
        }
    }

    public func approvals(of runID: RunID) async throws -> [Approval] {
        try await read { db in
            try SQLiteFetch.all(ApprovalRow.self, db, "SELECT * FROM approvals WHERE run_id = ? ORDER BY id", [runID.rawValue],
                                what: "an approval of run \(runID)").map(\.approval)
        }
    }

    public func approvalRefusals(of runID: RunID) async throws -> [ApprovalRefusal] {
        try await read { db in
            try SQLiteFetch.all(RefusalRow.self, db, "SELECT * FROM approval_refusals WHERE run_id = ? ORDER BY id",
                                [runID.rawValue], what: "a refused approval of run \(runID)").map(\.refusal)
        }
    }
}

