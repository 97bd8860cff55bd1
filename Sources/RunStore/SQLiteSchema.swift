import Foundation
import GRDB
public import LockstepCore

/// The SQLite schema of a Lockstep store and the rules for opening a file as one.
///
/// Rules that protect what was stored:
/// * Schema changes happen only through named migrations, applied in order and recorded
///   in `grdb_migrations`; a migration transforms rows, it never drops data (an older
///   store is migrated, never recreated).
/// * States and codes are stored as their string names, never as ordinals, so adding a
///   state can never silently re-label the rows already written.
/// * A file is used only when it carries Lockstep's `application_id` (or is an empty
///   database, which becomes a new store). Any other file, or a store whose recorded
///   migrations include one this build does not know (written by a newer Lockstep), is
///   refused before anything writes to it, so a mistyped `store:` path can never turn
///   someone else's database into a Lockstep store, and a downgrade can never run old
///   code over a newer schema.
enum SQLiteSchema {
    /// `PRAGMA application_id` of every Lockstep store: the bytes "LKST".
    static let applicationID: Int32 = 0x4C4B_5354

    /// Final states as written into the v1 partial unique index. Frozen with the
    /// migration: if ``RunState/isFinal`` ever changes, a new migration must rebuild the
    /// index (a test compares this list with ``RunState``).
    static let finalStatesV1 = ["verified", "no_changes", "rejected", "superseded", "failed", "expired"]

    /// Every migration this build knows, in order.
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1_initial_schema") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2_branch_layouts") { db in
            try db.execute(sql: v2)
        }
        migrator.registerMigration("v3_plan_rendering_truncation") { db in
            try db.execute(sql: v3PlanRenderingTruncation)
        }
        migrator.registerMigration("v4_plan_rendering_state") { db in
            try db.execute(sql: v4PlanRenderingState)
        }
        migrator.registerMigration("v5_outbox") { db in
            try db.execute(sql: v5Outbox)
        }
        migrator.registerMigration("v6_tag_signer") { db in
            try db.execute(sql: v6TagSigner)
        }
        migrator.registerMigration("v7_plan_prior_state") { db in
            try db.execute(sql: v7PlanPriorState)
        }
        migrator.registerMigration("v8_checks_and_overrides") { db in
            try db.execute(sql: v8ChecksAndOverrides)
        }
        migrator.registerMigration("v9_drift_checks") { db in
            try db.execute(sql: v9DriftChecks)
        }
        return migrator
    }

    /// The last valid `lockstep.yaml` per protected branch (one row per branch).
    static let v2 = """
        CREATE TABLE branch_layouts (
            branch TEXT PRIMARY KEY NOT NULL,
            commit_id TEXT NOT NULL,
            yaml TEXT NOT NULL,
            recorded_ms INTEGER NOT NULL
        );
        """

    /// The first schema. Column names and meanings of `audit_log` are frozen: read-only
    /// tools (`lockstep audit verify`) read them from stores of every schema version.
    static let v1 = """
        PRAGMA application_id = \(applicationID);

        CREATE TABLE runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            tag_name TEXT NOT NULL,
            tag_object TEXT NOT NULL,
            version TEXT NOT NULL,
            commit_id TEXT NOT NULL,
            tree_id TEXT NOT NULL,
            tagger_email TEXT,
            pin_version TEXT,
            pin_ceiling TEXT,
            has_verify_commands INTEGER NOT NULL,
            state TEXT NOT NULL,
            last_reason TEXT,
            plan_digest TEXT,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        -- At most one run that is not final per target, enforced by SQLite itself so that
        -- two processes sharing the file cannot both create one.
        CREATE UNIQUE INDEX runs_one_open_run_per_target ON runs (project, environment)
            WHERE state NOT IN (\(finalStatesV1.map { "'\($0)'" }.joined(separator: ", ")));
        CREATE INDEX runs_by_target ON runs (project, environment, seq);

        CREATE TABLE plans (
            run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs (id),
            summary_json TEXT NOT NULL,
            rendering TEXT NOT NULL,
            plan_json TEXT NOT NULL
        );

        CREATE TABLE transitions (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (id),
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            actor TEXT NOT NULL,
            time_ms INTEGER NOT NULL
        );
        CREATE INDEX transitions_by_run ON transitions (run_id, sequence);
        CREATE INDEX transitions_by_state ON transitions (to_state, sequence);

        CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (id),
            identity TEXT NOT NULL,
            digest TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX approvals_by_run ON approvals (run_id, id);

        -- No foreign key: a refused approval may name a run that does not exist, and the
        -- refusal must be kept all the same.
        CREATE TABLE approval_refusals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            identity TEXT NOT NULL,
            digest TEXT NOT NULL,
            approval_time_ms INTEGER NOT NULL,
            code TEXT NOT NULL,
            description TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX approval_refusals_by_run ON approval_refusals (run_id, id);

        CREATE TABLE tag_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            tag_name TEXT NOT NULL,
            tag_object TEXT NOT NULL,
            commit_id TEXT,
            version TEXT,
            accepted INTEGER NOT NULL,
            rejections_json TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX tag_decisions_by_tag ON tag_decisions (project, environment, tag_name, id);

        CREATE TABLE apply_precondition_reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (id),
            failures_json TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX apply_precondition_reports_by_run ON apply_precondition_reports (run_id, id);

        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project TEXT,
            environment TEXT,
            run_id TEXT,
            code TEXT NOT NULL,
            description TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL
        );

        -- Every setOutputs call is kept; the newest row of a target is its current outputs.
        CREATE TABLE outputs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs (id),
            json TEXT NOT NULL,
            time_ms INTEGER NOT NULL
        );
        CREATE INDEX outputs_by_target ON outputs (project, environment, id);

        -- A run's log: chunks in order, at most the store's byte limit in total. Older
        -- chunks are cut (and counted in cut_bytes) to stay under the limit.
        CREATE TABLE run_logs (
            run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs (id),
            kept_bytes INTEGER NOT NULL,
            cut_bytes INTEGER NOT NULL
        );
        CREATE TABLE run_log_chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES run_logs (run_id),
            stream TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX run_log_chunks_by_run ON run_log_chunks (run_id, id);

        -- Pins are never deleted: clearing one stamps cleared_ms. At most one is active per target.
        CREATE TABLE rollback_pins (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            version TEXT NOT NULL,
            ceiling TEXT NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs (id),
            set_ms INTEGER NOT NULL,
            cleared_ms INTEGER,
            cleared_by TEXT
        );
        CREATE UNIQUE INDEX rollback_pins_one_active ON rollback_pins (project, environment)
            WHERE cleared_ms IS NULL;

        -- The hash-chained audit log (AuditChain). Stored order is sequence order; nothing
        -- in Lockstep updates or deletes a row of it.
        CREATE TABLE audit_log (
            sequence INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,
            project TEXT,
            environment TEXT,
            run_id TEXT,
            payload TEXT NOT NULL,
            previous_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        """

    /// Whether a plan's stored rendering is only the start of terraform's text, and how
    /// long the whole text was (`rendering_bytes`; NULL for plans stored before: their
    /// rendering was kept whole, so its own length is the size).
    static let v3PlanRenderingTruncation = """
        ALTER TABLE plans ADD COLUMN rendering_truncated INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE plans ADD COLUMN rendering_bytes INTEGER;
        """

    /// Whether a plan's rendering is terraform's text yet (`ready`, `pending`, `failed`): plans
    /// stored before had their text stored with them.
    static let v4PlanRenderingState = """
        ALTER TABLE plans ADD COLUMN rendering_state TEXT NOT NULL DEFAULT 'ready';
        """

    /// The outbox (RunStore/Outbox.swift): events written with the transitions, approvals and
    /// rejections they report; each sink's position; each forge sink's pull request and comment
    /// per run. Events start with this migration: a store's earlier history is not replayed.
    /// The verified signer of a run's release tag (NULL where signatures are not required).
    static let v6TagSigner = """
        ALTER TABLE runs ADD COLUMN signer_format TEXT;
        ALTER TABLE runs ADD COLUMN signer_principal TEXT;
        ALTER TABLE runs ADD COLUMN signer_key TEXT;
        """

    /// The state a plan was made against (NULL for plans stored before v7).
    /// Drift checks of applied revisions, newest last.
    static let v9DriftChecks = """
        CREATE TABLE drift_checks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            run_id TEXT NOT NULL,
            tag_name TEXT NOT NULL,
            version TEXT NOT NULL,
            commit_id TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            addresses_json TEXT NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE INDEX drift_checks_by_target ON drift_checks (project, environment, id);
        """

    /// External check results with the plan; what an approval takes on itself beyond the plan
    /// (overridden checks, break-glass) and why, on approvals and on refused ones alike.
    static let v8ChecksAndOverrides = """
        ALTER TABLE plans ADD COLUMN checks_json TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE approvals ADD COLUMN override_checks_json TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE approvals ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE approvals ADD COLUMN reason TEXT;
        ALTER TABLE approval_refusals ADD COLUMN override_checks_json TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE approval_refusals ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE approval_refusals ADD COLUMN reason TEXT;
        """

    static let v7PlanPriorState = """
        ALTER TABLE plans ADD COLUMN prior_lineage TEXT;
        ALTER TABLE plans ADD COLUMN prior_serial INTEGER;
        """

    static let v5Outbox = """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            project TEXT NOT NULL,
            environment TEXT NOT NULL,
            run_id TEXT,
            facts_json TEXT NOT NULL,
            time_ms INTEGER NOT NULL
        );
        CREATE TABLE outbox_positions (
            sink TEXT PRIMARY KEY NOT NULL,
            event_id INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE TABLE forge_threads (
            sink TEXT NOT NULL,
            run_id TEXT NOT NULL,
            pull TEXT,
            comment TEXT,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (sink, run_id)
        );
        """

    /// What was found at a store path before anything wrote to it.
    enum Inspection: Equatable {
        /// No file, or an empty database: a new store may be created there.
        case empty
        /// A Lockstep store whose migrations are all known to this build.
        case lockstep(fullyMigrated: Bool)
    }

    /// Looks at `path` through a read-only connection and decides whether it may be used.
    /// Never writes to the file.
    static func inspect(path: String, migrator: DatabaseMigrator) throws(StoreError) -> Inspection {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .empty }
        guard !isDirectory.boolValue else {
            throw StoreError(.unusable, "store \(path) is a directory, not a Lockstep store file")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(SQLiteRunStore.busyTimeout)
        configuration.label = "lockstep.store.inspect"
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db throws -> Inspection in
                let found = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                if found != Self.applicationID {
                    let objects = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") ?? 0
                    if found == 0 && objects == 0 { return .empty }
                    throw StoreError(.unusable, "\(path) is not a Lockstep store (it is another SQLite database); "
                                     + "it was left untouched")
                }
                guard try db.tableExists("grdb_migrations") else {
                    throw StoreError(.unusable, "\(path) is marked as a Lockstep store but has no schema record; "
                                     + "it was left untouched")
                }
                if try migrator.hasBeenSuperseded(db) {
                    let known = Set(migrator.migrations)
                    let unknown = try migrator.appliedIdentifiers(db).subtracting(known).sorted()
                    throw StoreError(.unusable, "store \(path) was written by a newer Lockstep (schema "
                                     + unknown.map(displaySafeIdentifier).joined(separator: ", ")
                                     + " is unknown to this build); it was left untouched")
                }
                return .lockstep(fullyMigrated: try migrator.hasCompletedMigrations(db))
            }
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw StoreError(.unusable, "\(path) is not a Lockstep store (not an SQLite database); it was left untouched")
        } catch let error as DatabaseError {
            throw StoreError(.unusable, "store \(path) cannot be read (SQLite \(error.resultCode.rawValue): "
                             + "\(error.message ?? "no message"))")
        } catch {
            throw StoreError(.unusable, "store \(path) cannot be read")
        }
    }

    /// Migration identifiers come from the file: show plain ones, count the bytes of others.
    static func displaySafeIdentifier(_ text: String) -> String {
        let plain = text.utf8.count <= 64 && text.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2D
        }
        return plain ? text : "<\(text.utf8.count) bytes>"
    }
}

/// Audit kinds written by the store for writes that ``AuditKind`` does not name yet.
extension AuditKind {
    /// A run was created (queued); a rollback run's pin is part of the same entry.
    public static let runCreated = AuditKind(rawValue: "run_created")
    /// A rollback pin was cleared.
    public static let pinCleared = AuditKind(rawValue: "pin_cleared")
    /// A target's outputs were stored after an apply (the entry holds their digest, not their text).
    public static let outputs = AuditKind(rawValue: "outputs")
}
