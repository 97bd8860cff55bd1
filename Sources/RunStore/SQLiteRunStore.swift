import Foundation
import GRDB
public import LockstepCore

/// The embedded store: one SQLite file (docs/CONTRACT.md §6), through GRDB.
///
/// Durability and concurrency, and the failure each setting stops:
/// * WAL with `synchronous = FULL`: a transition that returned has reached the disk, so a
///   power cut or kill -9 right after it can never lose it (docs/THREAT-MODEL.md §5.1, power loss mid-transition).
/// * Every write is one `BEGIN IMMEDIATE` transaction that also appends its audit entry:
///   the writer lock is taken before anything is read, so two processes sharing the file
///   queue behind each other (up to ``busyTimeout``) instead of both deciding on the same
///   old state; and a write never exists without its audit entry.
/// * `approved → applying` and every other transition is `UPDATE … WHERE id = ? AND state = ?`:
///   only one caller, in any process, sees its row change (docs/THREAT-MODEL.md §4.3, a plan applied twice).
/// * One open run per target is a partial unique index, so SQLite refuses a second one
///   even from a process that skipped the check.
/// * Foreign keys are on: approvals, transitions and logs cannot name a run that does not exist.
///
/// Run logs are the one thing not audited: they are diagnostics, bounded by cutting old
/// text, and every event they describe has its own audit entry.
public final class SQLiteRunStore: RunStore {
    /// The store file.
    public let path: String
    /// Most bytes of log text kept per run; older text is cut and the cut is marked.
    public let maxLogBytesPerRun: Int
    /// Whether this instance was opened with ``openReadOnly(path:)``.
    public let isReadOnly: Bool
    let database: any DatabaseWriter

    /// How long a write waits for another process holding the write lock.
    static let busyTimeout: TimeInterval = 10

    /// Opens (or creates) the store at `path`, migrating an older schema in place.
    ///
    /// Throws ``StoreError/Code/unusable`` naming the file when it is not a Lockstep
    /// store or was written by a newer Lockstep; such a file is left byte-identical.
    public convenience init(path: String, maxLogBytesPerRun: Int = 1 << 20) throws {
        try self.init(path: path, maxLogBytesPerRun: maxLogBytesPerRun, migrator: SQLiteSchema.migrator())
    }

    /// Opens with this build's migrations plus `extraMigrations` (identifier, SQL): tests
    /// use it to prove that an upgrade keeps every row and that a newer file is refused.
    convenience init(path: String, maxLogBytesPerRun: Int = 1 << 20,
                     extraMigrations: [(identifier: String, sql: String)]) throws(StoreError) {
        var migrator = SQLiteSchema.migrator()
        for (identifier, sql) in extraMigrations {
            migrator.registerMigration(identifier) { db in try db.execute(sql: sql) }
        }
        try self.init(path: path, maxLogBytesPerRun: maxLogBytesPerRun, migrator: migrator)
    }

    private init(path: String, maxLogBytesPerRun: Int, migrator: DatabaseMigrator) throws(StoreError) {
        let inspection = try SQLiteSchema.inspect(path: path, migrator: migrator)
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: Self.configuration(label: "lockstep.store"))
            // GRDB sets `synchronous = NORMAL` when it switches a pool to WAL, after any
            // prepareDatabase hook; FULL is set here on the writer, and again before every write.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        } catch {
            throw StoreError(.unusable, "store \(path) cannot be opened for writing (\(Self.sqliteReason(error)))")
        }
        if inspection != .lockstep(fullyMigrated: true) {
            do {
                try migrator.migrate(pool)
            } catch {
                // Another process may have created or migrated the same file at the same moment.
                let done = (try? pool.read { db in try migrator.hasCompletedMigrations(db) }) ?? false
                if !done {
                    try? pool.close()
                    throw StoreError(.unusable, "store \(path) could not be migrated (\(Self.sqliteReason(error))); "
                                     + "its data was left as it was")
                }
            }
        }
        self.path = path
        self.maxLogBytesPerRun = max(1, maxLogBytesPerRun)
        self.isReadOnly = false
        self.database = pool
    }

    private init(readOnlyPath path: String, queue: DatabaseQueue) {
        self.path = path
        self.maxLogBytesPerRun = 1 << 20
        self.isReadOnly = true
        self.database = queue
    }

    /// Opens an existing store for reading only (`lockstep audit verify|export`): never
    /// creates, migrates or writes the file. A missing file, a file that is not a Lockstep
    /// store and a newer schema are refused with ``StoreError/Code/unusable`` naming it.
    /// Every write method of the returned store fails.
    public static func openReadOnly(path: String) throws -> SQLiteRunStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.unusable, "store \(path) does not exist")
        }
        let inspection = try SQLiteSchema.inspect(path: path, migrator: SQLiteSchema.migrator())
        guard inspection != .empty else {
            throw StoreError(.unusable, "\(path) is not a Lockstep store (it is empty)")
        }
        var configuration = Self.configuration(label: "lockstep.store.readonly")
        configuration.readonly = true
        do {
            return SQLiteRunStore(readOnlyPath: path, queue: try DatabaseQueue(path: path, configuration: configuration))
        } catch {
            throw StoreError(.unusable, "store \(path) cannot be opened (\(sqliteReason(error)))")
        }
    }

    private static func configuration(label: String) -> Configuration {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(busyTimeout)
        configuration.label = label
        return configuration
    }

    /// Closes the file. Later calls fail.
    public func close() throws {
        do {
            try database.close()
        } catch {
            throw StoreError(.writeFailed, "store \(path) could not be closed (\(Self.sqliteReason(error)))")
        }
    }

    /// The settings a write transaction runs with (checked by a test: durability must not
    /// depend on SQLite's compiled-in defaults).
    func connectionSettings() async throws -> [String: Int] {
        try await database.write { db in
            ["synchronous": try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1,
             "foreign_keys": try Int.fetchOne(db, sql: "PRAGMA foreign_keys") ?? -1]
        }
    }

    // MARK: Transactions

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction; any error rolls everything back.
    func write<T: Sendable>(_ action: String, _ body: @escaping @Sendable (Database) throws -> T)
        async throws -> T {
        guard !isReadOnly else { throw StoreError(.writeFailed, "store \(path) was opened read-only; cannot \(action)") }
        do {
            return try await database.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                guard let result else { throw StoreError(.writeFailed, "could not \(action)") }
                return result
            }
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError {
            throw Self.storeError(error, writing: true, action: action, path: path)
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await database.read(body)
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError {
            throw Self.storeError(error, writing: false, action: "read", path: path)
        }
    }

    /// A client-safe error: SQLite's result code and message (which names tables and
    /// columns, never bound values) and what was being done.
    static func storeError(_ error: DatabaseError, writing: Bool, action: String, path: String) -> StoreError {
        let reason = sqliteReason(error)
        switch error.resultCode {
        case .SQLITE_CONSTRAINT where error.message?.contains("runs.project") == true:
            return StoreError(.targetBusy, "could not \(action): the target already has a run in progress")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return StoreError(.corrupt, "store \(path) is damaged (\(reason))")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StoreError(writing ? .writeFailed : .unusable,
                              "could not \(action): store \(path) stayed locked by another process for over "
                              + "\(Int(busyTimeout)) s")
        default:
            return StoreError(writing ? .writeFailed : .unusable, "could not \(action) in store \(path) (\(reason))")
        }
    }

    static func sqliteReason(_ error: any Error) -> String {
        guard let error = error as? DatabaseError else { return "an unexpected error" }
        return "SQLite \(error.extendedResultCode.rawValue): \(error.message ?? "no message")"
    }

    // MARK: Helpers used inside transactions

    /// The SQL list of non-final states, for the target-busy check.
    static let openStatesSQL =
        "(" + RunState.allCases.filter { !$0.isFinal }.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    /// Run ids read from the file are shown only when they are plain.
    static func shown(_ text: String) -> String { SQLiteSchema.displaySafeIdentifier(text) }

    static func runExists(_ db: Database, _ id: RunID) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [id.rawValue]) == true
    }

    static func fetchRun(_ db: Database, _ id: RunID) throws -> StoredRun? {
        try SQLiteFetch.one(FullRunRow.self, db, FullRunRow.selection + " WHERE runs.id = ?", [id.rawValue],
                            what: "run \(id)")?.run
    }

    static func targetIfExists(of id: RunID, _ db: Database) throws -> TargetID? {
        try SQLiteFetch.row(db, "SELECT project, environment FROM runs WHERE id = ?", [id.rawValue],
                            what: "run \(id)") { row throws(ColumnError) in try row.target() }
    }

    static func target(of id: RunID, _ db: Database) throws -> TargetID {
        guard let target = try targetIfExists(of: id, db) else {
            throw StoreError(.notFound, "run \(id) does not exist")
        }
        return target
    }

    static func activePin(_ db: Database, _ target: TargetID) throws -> PinRow? {
        try SQLiteFetch.one(PinRow.self, db, """
            SELECT id, version, ceiling, run_id FROM rollback_pins
            WHERE project = ? AND environment = ? AND cleared_ms IS NULL
            """, [target.project.rawValue, target.environment.rawValue], what: "the rollback pin of \(target)")
    }

    /// Appends the next audit entry, chained to the last one read in this same transaction
    /// (the writer lock is held, so no other writer can slip an entry in between).
    static func appendAudit(_ db: Database, time: Date, actor: String, kind: AuditKind, target: TargetID?,
                            runID: RunID?, payload: [String: String]) throws {
        let previous = try SQLiteFetch.one(AuditRow.self, db, AuditRow.selection + " ORDER BY sequence DESC LIMIT 1",
                                           what: "the last audit entry")?.entry
        let entry = AuditChain.append(after: previous, time: time, actor: actor, kind: kind, target: target,
                                      runID: runID, payload: payload)
        guard let sequence = Int64(exactly: entry.sequence) else {
            throw StoreError(.writeFailed, "the audit log is full")
        }
        try db.execute(sql: """
            INSERT INTO audit_log (sequence, time_ms, actor, kind, project, environment, run_id, payload,
                                   previous_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [sequence, entry.epochMilliseconds, entry.actor, entry.kind.rawValue,
                             entry.target?.project.rawValue, entry.target?.environment.rawValue, entry.runID?.rawValue,
                             try StoredJSON.encode(entry.payload), entry.previousHash.hex, entry.hash.hex])
    }

}

/// Thrown inside a write transaction to roll it back when its compare-and-set fails.
struct CompareAndSetLost: Error {}
