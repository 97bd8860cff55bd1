import Foundation
import GRDB

extension SQLiteRunStore {
    /// Why the store cannot be trusted with the next transition, or nil when it can.
    ///
    /// Why: a store that is damaged or can no longer be written fails every transition, and
    /// each failure alone looks like a problem of the run it hit. Checked at start and
    /// periodically, the daemon says it once, plainly (`/readyz` 503, `STATUS=`, the log),
    /// before work piles onto it.
    ///
    /// Two checks:
    /// * `PRAGMA quick_check` (page structure, record formats, NOT NULL and CHECK
    ///   constraints; no index-content check, so it is fast enough to repeat);
    /// * a committed write that changes no content: `application_id` is set to the value it
    ///   already has. It takes the write lock and appends to the WAL with `synchronous=FULL`,
    ///   so a read-only or failing file system, a full disk or a lock held elsewhere for
    ///   longer than the busy timeout show up here rather than on a run's next transition.
    ///
    /// The reason names the store's role, not its path, because `/readyz` answers anyone.
    public func healthProblem() async -> String? {
        do {
            let findings = try await database.read { db in
                try String.fetchAll(db, sql: "PRAGMA quick_check(3)")
            }
            if findings != ["ok"] {
                let shown = findings.prefix(3).map { String($0.prefix(120)) }.joined(separator: "; ")
                return "STORE DAMAGED: the store failed its integrity check (\(shown)); restore it from a backup"
            }
        } catch let error as DatabaseError where [.SQLITE_CORRUPT, .SQLITE_NOTADB].contains(error.resultCode) {
            // A page damaged badly enough stops the check itself: the same finding.
            return "STORE DAMAGED: the store failed its integrity check (\(Self.sqliteReason(error))); restore it from a backup"
        } catch {
            return "STORE UNREADABLE: the store cannot be read (\(Self.sqliteReason(error)))"
        }
        guard !isReadOnly else { return nil }
        do {
            try await database.write { db in
                let current = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                try db.execute(sql: "PRAGMA application_id = \(current)")
            }
        } catch {
            return "STORE NOT WRITABLE: the store cannot be written (\(Self.sqliteReason(error))); no run can advance"
        }
        return nil
    }
}
