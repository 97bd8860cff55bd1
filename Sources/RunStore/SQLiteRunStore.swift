import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif
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

    // MARK: Runs

    public func createRun(_ run: NewRun, at time: Date, actor: String) async throws -> StoredRun {
        let openStates = Self.openStatesSQL
        return try await write("create run \(run.id)") { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [run.id.rawValue]) == true {
                throw StoreError(.writeFailed, "run \(run.id) already exists")
            }
            if let busy = try String.fetchOne(db, sql: """
                SELECT id FROM runs WHERE project = ? AND environment = ? AND state IN \(openStates)
                """, arguments: [run.target.project.rawValue, run.target.environment.rawValue]) {
                throw StoreError(.targetBusy, "target \(run.target) already has run \(Self.shown(busy)) in progress")
            }
            let ms = Milliseconds.from(time)
            try db.execute(sql: """
                INSERT INTO runs (id, project, environment, tag_name, tag_object, version, commit_id, tree_id,
                                  tagger_email, pin_version, pin_ceiling, has_verify_commands, state, last_reason,
                                  plan_digest, created_ms, updated_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)
                """, arguments: [
                    run.id.rawValue, run.target.project.rawValue, run.target.environment.rawValue, run.tagName,
                    run.tagObject.rawValue, run.version.description, run.commit.rawValue, run.tree.rawValue,
                    run.taggerEmail, run.rollbackPin?.version.description, run.rollbackPin?.ceiling.description,
                    run.hasVerifyCommands, RunState.queued.rawValue, ms, ms,
                ])
            var payload = [
                "state": RunState.queued.rawValue, "tag": run.tagName, "tag_object": run.tagObject.rawValue,
                "version": run.version.description, "commit": run.commit.rawValue, "tree": run.tree.rawValue,
            ]
            if let pin = run.rollbackPin {
                try db.execute(sql: """
                    UPDATE rollback_pins SET cleared_ms = ?, cleared_by = ?
                    WHERE project = ? AND environment = ? AND cleared_ms IS NULL
                    """, arguments: [ms, "replaced by rollback run \(run.id)", run.target.project.rawValue,
                                     run.target.environment.rawValue])
                try db.execute(sql: """
                    INSERT INTO rollback_pins (project, environment, version, ceiling, run_id, set_ms)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [run.target.project.rawValue, run.target.environment.rawValue,
                                     pin.version.description, pin.ceiling.description, run.id.rawValue, ms])
                payload["pin_version"] = pin.version.description
                payload["pin_ceiling"] = pin.ceiling.description
            }
            try Self.appendAudit(db, time: time, actor: actor, kind: .runCreated, target: run.target, runID: run.id,
                                 payload: payload)
            guard let stored = try Self.fetchRun(db, run.id) else {
                throw StoreError(.writeFailed, "run \(run.id) was not stored")
            }
            return stored
        }
    }

    public func transition(_ runID: RunID, _ transition: RunTransition, update: RunUpdate, at time: Date,
                           actor: String) async throws -> Bool {
        try await write("move run \(runID) from \(transition.from) to \(transition.to)") { db in
            guard try Self.move(db, runID, transition, update: update, at: time, actor: actor) else {
                guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
                return false
            }
            return true
        }
    }

    /// The compare-and-set of a transition, inside the caller's transaction: moves the run
    /// from `transition.from` and stores the transition, the update and its audit entry.
    /// Returns `false`, having written nothing, when the run is not in `transition.from`.
    private static func move(_ db: Database, _ runID: RunID, _ transition: RunTransition, update: RunUpdate,
                             at time: Date, actor: String) throws -> Bool {
        let ms = Milliseconds.from(time)
        // Only the caller that finds the run in `from` changes it.
        try db.execute(sql: """
            UPDATE runs SET state = ?, last_reason = ?, updated_ms = ?, plan_digest = coalesce(?, plan_digest)
            WHERE id = ? AND state = ?
            """, arguments: [transition.to.rawValue, transition.reason.code.rawValue, ms,
                             update.planDigest?.rawValue, runID.rawValue, transition.from.rawValue])
        guard db.changesCount == 1 else { return false }
        if let plan = update.plan {
            try db.execute(sql: """
                INSERT INTO plans (run_id, summary_json, rendering, plan_json, rendering_truncated, rendering_bytes)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id) DO UPDATE SET summary_json = excluded.summary_json,
                    rendering = excluded.rendering, plan_json = excluded.plan_json,
                    rendering_truncated = excluded.rendering_truncated, rendering_bytes = excluded.rendering_bytes
                """, arguments: [runID.rawValue, plan.summaryJSON, plan.rendering, plan.planJSON,
                                 plan.renderingTruncated, plan.renderingBytes])
        }
        try db.execute(sql: """
            INSERT INTO transitions (run_id, from_state, to_state, reason, detail, actor, time_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [runID.rawValue, transition.from.rawValue, transition.to.rawValue,
                             transition.reason.code.rawValue, transition.reason.detail, actor, ms])
        let target = try Self.target(of: runID, db)
        var payload = ["from": transition.from.rawValue, "to": transition.to.rawValue,
                       "reason": transition.reason.code.rawValue]
        if let detail = transition.reason.detail { payload["detail"] = detail }
        if let digest = update.planDigest { payload["digest"] = digest.rawValue }
        try Self.appendAudit(db, time: time, actor: actor, kind: .transition, target: target, runID: runID,
                             payload: payload)
        return true
    }

    public func run(_ id: RunID) async throws -> StoredRun? {
        try await read { db in try Self.fetchRun(db, id) }
    }

    public func runs(target: TargetID?, states: Set<RunState>?) async throws -> [StoredRun] {
        try await read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let target {
                conditions.append("runs.project = ? AND runs.environment = ?")
                arguments += [target.project.rawValue, target.environment.rawValue]
            }
            if let states {
                if states.isEmpty { return [] }
                conditions.append("runs.state IN (\(Array(repeating: "?", count: states.count).joined(separator: ", ")))")
                arguments += StatementArguments(states.map(\.rawValue).sorted())
            }
            let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            let rows = try Row.fetchAll(db, sql: StoredRun.selection + whereClause + " ORDER BY runs.seq DESC",
                                        arguments: arguments)
            return try rows.map { row throws(StoreError) in try StoredRun(checked: Self.checked(row, "a run")) }
        }
    }

    public func transitions(of runID: RunID) async throws -> [StoredTransition] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM transitions WHERE run_id = ? ORDER BY sequence
                """, arguments: [runID.rawValue])
            return try rows.map { raw throws(StoreError) in
                let row = Self.checked(raw, "a transition of run \(runID)")
                let transition = RunTransition(
                    from: try row.state("from_state"), to: try row.state("to_state"),
                    reason: TransitionReason(TransitionReason.Code(rawValue: try row.text("reason")),
                                             detail: try row.optionalText("detail")))
                return StoredTransition(sequence: try row.integer("sequence"), runID: runID, transition: transition,
                                        actor: try row.text("actor"), time: try row.date("time_ms"))
            }
        }
    }

    /// A run that never finished planning counts every apply the target ever had: with no
    /// plan to compare against, "no other apply since the plan" must fail closed.
    public func appliesStarted(on target: TargetID, sincePlanOf runID: RunID) async throws -> [RunID] {
        try await read { db in
            guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
            let planned = try Int64.fetchOne(db, sql: """
                SELECT max(sequence) FROM transitions
                WHERE run_id = ? AND from_state = 'planning' AND to_state = 'checking'
                """, arguments: [runID.rawValue]) ?? 0
            let rows = try Row.fetchAll(db, sql: """
                SELECT transitions.run_id AS run_id, min(transitions.sequence) AS first
                FROM transitions JOIN runs ON runs.id = transitions.run_id
                WHERE runs.project = ? AND runs.environment = ? AND transitions.to_state = 'applying'
                  AND transitions.sequence > ? AND transitions.run_id <> ?
                GROUP BY transitions.run_id ORDER BY first
                """, arguments: [target.project.rawValue, target.environment.rawValue, planned, runID.rawValue])
            return try rows.map { row throws(StoreError) in
                try Self.checked(row, "an apply on \(target)").parse("run_id", "a run id", RunID.init)
            }
        }
    }

    // MARK: Approvals

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
                    INSERT INTO approvals (run_id, identity, digest, time_ms, actor) VALUES (?, ?, ?, ?, ?)
                    """, arguments: [approval.runID.rawValue, approval.identity.rawValue, approval.digest.rawValue,
                                     Milliseconds.from(approval.time), actor])
                try Self.appendAudit(db, time: approval.time, actor: actor, kind: .approval, target: target,
                                     runID: approval.runID,
                                     payload: ["identity": approval.identity.rawValue, "digest": approval.digest.rawValue])
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
                                               time_ms, actor)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [approval.runID.rawValue, approval.identity.rawValue, approval.digest.rawValue,
                                 Milliseconds.from(approval.time), refusal.code.rawValue, refusal.description,
                                 Milliseconds.from(time), actor])
            try Self.appendAudit(db, time: time, actor: actor, kind: .approvalRefusal,
                                 target: try Self.targetIfExists(of: approval.runID, db), runID: approval.runID,
                                 payload: ["identity": approval.identity.rawValue, "digest": approval.digest.rawValue,
                                           "code": refusal.code.rawValue, "reason": refusal.description])
        }
    }

    public func approvals(of runID: RunID) async throws -> [Approval] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM approvals WHERE run_id = ? ORDER BY id",
                                        arguments: [runID.rawValue])
            return try rows.map { raw throws(StoreError) in
                try Self.approval(Self.checked(raw, "an approval of run \(runID)"), runID: runID, time: "time_ms")
            }
        }
    }

    public func approvalRefusals(of runID: RunID) async throws -> [ApprovalRefusal] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM approval_refusals WHERE run_id = ? ORDER BY id",
                                        arguments: [runID.rawValue])
            return try rows.map { raw throws(StoreError) in
                let row = Self.checked(raw, "a refused approval of run \(runID)")
                return ApprovalRefusal(code: ApprovalRefusal.Code(rawValue: try row.text("code")),
                                       approval: try Self.approval(row, runID: runID, time: "approval_time_ms"),
                                       description: try row.text("description"))
            }
        }
    }

    // MARK: Decisions, checks, alerts, outputs, logs

    @discardableResult
    public func recordTagDecision(_ decision: StoredTagDecision, at time: Date, actor: String) async throws -> Bool {
        try await write("record the decision on tag \(decision.tagName)") { db in
            let last = try Row.fetchOne(db, sql: """
                SELECT * FROM tag_decisions WHERE project = ? AND environment = ? AND tag_name = ? AND tag_object = ?
                ORDER BY id DESC LIMIT 1
                """, arguments: [decision.target.project.rawValue, decision.target.environment.rawValue,
                                 decision.tagName, decision.tagObject.rawValue])
            if let last, try Self.tagDecision(Self.checked(last, "a tag decision")) == decision { return false }
            try db.execute(sql: """
                INSERT INTO tag_decisions (project, environment, tag_name, tag_object, commit_id, version, accepted,
                                           rejections_json, time_ms, actor)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [decision.target.project.rawValue, decision.target.environment.rawValue,
                                 decision.tagName, decision.tagObject.rawValue, decision.commit?.rawValue,
                                 decision.version?.description, decision.accepted,
                                 try StoredJSON.encode(decision.rejections), Milliseconds.from(time), actor])
            var payload = ["tag": decision.tagName, "tag_object": decision.tagObject.rawValue,
                           "decision": decision.accepted ? "accepted" : "rejected"]
            if let commit = decision.commit { payload["commit"] = commit.rawValue }
            if let version = decision.version { payload["version"] = version.description }
            if !decision.rejections.isEmpty {
                payload["rejections"] = decision.rejections.map(\.code.rawValue).joined(separator: ",")
                payload["detail"] = decision.rejections.map(\.description).joined(separator: "; ")
            }
            try Self.appendAudit(db, time: time, actor: actor, kind: .tagDecision, target: decision.target, runID: nil,
                                 payload: payload)
            return true
        }
    }

    public func tagDecisions(for target: TargetID) async throws -> [StoredTagDecision] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM tag_decisions AS d
                WHERE project = ? AND environment = ?
                  AND id = (SELECT max(id) FROM tag_decisions AS e WHERE e.project = d.project
                            AND e.environment = d.environment AND e.tag_name = d.tag_name)
                ORDER BY id
                """, arguments: [target.project.rawValue, target.environment.rawValue])
            return try rows.map { raw throws(StoreError) in
                try Self.tagDecision(Self.checked(raw, "a tag decision of \(target)"))
            }
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
            var payload = ["result": report.allHold ? "hold" : "failed", "disposition": report.disposition.rawValue]
            if !report.failures.isEmpty {
                payload["failures"] = report.failures.map(\.code.rawValue).joined(separator: ",")
                payload["detail"] = report.failures.map(\.description).joined(separator: "; ")
            }
            try Self.appendAudit(db, time: time, actor: actor, kind: .applyPreconditions, target: target, runID: runID,
                                 payload: payload)
        }
    }

    public func applyPreconditions(of runID: RunID) async throws -> [ApplyPreconditionReport] {
        try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT failures_json FROM apply_precondition_reports WHERE run_id = ? ORDER BY id
                """, arguments: [runID.rawValue])
            return try rows.map { raw throws(StoreError) in
                ApplyPreconditionReport(failures: try Self.checked(raw, "an apply precondition report of run \(runID)")
                    .json("failures_json", as: [ApplyPreconditionFailure].self, "a list of precondition failures"))
            }
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
                                 payload: ["code": alert.code.rawValue, "description": alert.description])
        }
    }

    public func alerts(target: TargetID?) async throws -> [StoredAlert] {
        try await read { db in
            let rows: [Row]
            if let target {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM alerts WHERE project = ? AND environment = ? ORDER BY id",
                                        arguments: [target.project.rawValue, target.environment.rawValue])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM alerts ORDER BY id")
            }
            return try rows.map { raw throws(StoreError) in
                let row = Self.checked(raw, "an alert")
                return StoredAlert(id: try row.integer("id"), target: try row.optionalTarget(),
                                   runID: try row.parseOptional("run_id", "a run id", RunID.init),
                                   alert: RunAlert(code: RunAlert.Code(rawValue: try row.text("code")),
                                                   description: try row.text("description")),
                                   time: try row.date("time_ms"))
            }
        }
    }

    /// The audit entry records the outputs' SHA-256 and size, never their text.
    public func setOutputs(_ json: String, target: TargetID, runID: RunID, at time: Date) async throws {
        try await write("store the outputs of \(target)") { db in
            guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
            try db.execute(sql: """
                INSERT INTO outputs (project, environment, run_id, json, time_ms) VALUES (?, ?, ?, ?, ?)
                """, arguments: [target.project.rawValue, target.environment.rawValue, runID.rawValue, json,
                                 Milliseconds.from(time)])
            try Self.appendAudit(db, time: time, actor: "lockstep", kind: .outputs, target: target, runID: runID,
                                 payload: ["digest": Digest.sha256(of: json.utf8).rawValue,
                                           "bytes": String(json.utf8.count)])
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
            try Row.fetchOne(db, sql: "SELECT commit_id, yaml FROM branch_layouts WHERE branch = ?", arguments: [branch])
                .map { row throws(StoreError) in
                    let checked = try Self.checked(row, "the last valid layout of \(branch)")
                    let commit: GitObjectID
                    do {
                        commit = try GitObjectID(try checked.text("commit_id"))
                    } catch {
                        throw StoreError(.corrupt, "the last valid layout of \(branch) names no valid commit")
                    }
                    return StoredBranchLayout(branch: branch, commit: commit, yaml: try checked.text("yaml"))
                }
        }
    }

    public func outputs(of target: TargetID) async throws -> String? {
        try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT json FROM outputs WHERE project = ? AND environment = ? ORDER BY id DESC LIMIT 1
                """, arguments: [target.project.rawValue, target.environment.rawValue])
                .map { row throws(StoreError) in try Self.checked(row, "the outputs of \(target)").text("json") }
        }
    }

    public func outputs(of target: TargetID, storedBy runID: RunID) async throws -> String? {
        try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT json FROM outputs WHERE project = ? AND environment = ? AND run_id = ? ORDER BY id DESC LIMIT 1
                """, arguments: [target.project.rawValue, target.environment.rawValue, runID.rawValue])
                .map { row throws(StoreError) in try Self.checked(row, "the outputs of run \(runID)").text("json") }
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
            guard let summary = try Row.fetchOne(db, sql: "SELECT * FROM run_logs WHERE run_id = ?",
                                                 arguments: [runID.rawValue]) else { return "" }
            let cut = try Self.checked(summary, "the log of run \(runID)").integer("cut_bytes")
            var out = cut > 0 ? RunLog.cutMarker(cutBytes: cut) : ""
            var previous: String?
            for raw in try Row.fetchAll(db, sql: "SELECT stream, text FROM run_log_chunks WHERE run_id = ? ORDER BY id",
                                        arguments: [runID.rawValue]) {
                let row = Self.checked(raw, "the log of run \(runID)")
                let stream = try row.text("stream")
                if stream != previous {
                    if !out.isEmpty && !out.hasSuffix("\n") { out += "\n" }
                    out += RunLog.header(stream: stream)
                    previous = stream
                }
                out += try row.text("text")
            }
            return out
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
                                 payload: ["version": active.pin.version.description,
                                           "ceiling": active.pin.ceiling.description])
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
            var entries: [AuditEntry] = []
            let cursor = try Row.fetchCursor(db, sql: AuditEntry.selection + " ORDER BY sequence")
            while let raw = try cursor.next() {
                entries.append(try AuditEntry(checked: Self.checked(raw, "audit entry at position \(entries.count + 1)")))
            }
            return entries
        }
    }

    /// The hash of the last audit entry (``AuditHash/genesis`` when there is none): keep it
    /// outside the store and pass it to `audit verify --expect-head` to detect a cut-off or
    /// rewritten chain.
    public func auditHead() async throws -> AuditHash {
        try await read { db in
            guard let raw = try Row.fetchOne(db, sql: AuditEntry.selection + " ORDER BY sequence DESC LIMIT 1") else {
                return AuditHash.genesis
            }
            return try AuditEntry(checked: Self.checked(raw, "the last audit entry")).hash
        }
    }

    // MARK: Transactions

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction; any error rolls everything back.
    private func write<T: Sendable>(_ action: String, _ body: @escaping @Sendable (Database) throws -> T)
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

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
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
    private static let openStatesSQL =
        "(" + RunState.allCases.filter { !$0.isFinal }.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    private static func checked(_ row: Row, _ what: String) -> CheckedRow { CheckedRow(row: row, what: what) }

    /// Run ids read from the file are shown only when they are plain.
    private static func shown(_ text: String) -> String { SQLiteSchema.displaySafeIdentifier(text) }

    private static func runExists(_ db: Database, _ id: RunID) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [id.rawValue]) == true
    }

    private static func fetchRun(_ db: Database, _ id: RunID) throws -> StoredRun? {
        try Row.fetchOne(db, sql: StoredRun.selection + " WHERE runs.id = ?", arguments: [id.rawValue])
            .map { row throws(StoreError) in try StoredRun(checked: checked(row, "run \(id)")) }
    }

    private static func targetIfExists(of id: RunID, _ db: Database) throws -> TargetID? {
        try Row.fetchOne(db, sql: "SELECT project, environment FROM runs WHERE id = ?", arguments: [id.rawValue])
            .map { row throws(StoreError) in try checked(row, "run \(id)").target() }
    }

    private static func target(of id: RunID, _ db: Database) throws -> TargetID {
        guard let target = try targetIfExists(of: id, db) else {
            throw StoreError(.notFound, "run \(id) does not exist")
        }
        return target
    }

    private static func approval(_ row: CheckedRow, runID: RunID, time column: String) throws(StoreError) -> Approval {
        Approval(runID: runID, identity: try row.parse("identity", "an identity name", IdentityName.init),
                 digest: try row.parse("digest", "a digest", Digest.init), time: try row.date(column))
    }

    private static func tagDecision(_ row: CheckedRow) throws(StoreError) -> StoredTagDecision {
        StoredTagDecision(target: try row.target(), tagName: try row.text("tag_name"),
                          tagObject: try row.parse("tag_object", "a git object id", GitObjectID.init),
                          commit: try row.parseOptional("commit_id", "a git object id", GitObjectID.init),
                          version: try row.parseOptional("version", "a version", SemanticVersion.init),
                          accepted: try row.bool("accepted"),
                          rejections: try row.json("rejections_json", as: [TagRejection].self, "a list of rejections"))
    }

    private static func activePin(_ db: Database, _ target: TargetID) throws
        -> (id: Int64, pin: RollbackPin, runID: RunID)? {
        guard let raw = try Row.fetchOne(db, sql: """
            SELECT id, version, ceiling, run_id FROM rollback_pins
            WHERE project = ? AND environment = ? AND cleared_ms IS NULL
            """, arguments: [target.project.rawValue, target.environment.rawValue]) else { return nil }
        let row = checked(raw, "the rollback pin of \(target)")
        return (try row.integer("id"),
                RollbackPin(version: try row.parse("version", "a version", SemanticVersion.init),
                            ceiling: try row.parse("ceiling", "a version", SemanticVersion.init)),
                try row.parse("run_id", "a run id", RunID.init))
    }

    /// Appends the next audit entry, chained to the last one read in this same transaction
    /// (the writer lock is held, so no other writer can slip an entry in between).
    static func appendAudit(_ db: Database, time: Date, actor: String, kind: AuditKind, target: TargetID?,
                            runID: RunID?, payload: [String: String]) throws {
        let previous = try Row.fetchOne(db, sql: AuditEntry.selection + " ORDER BY sequence DESC LIMIT 1")
            .map { row throws(StoreError) in try AuditEntry(checked: checked(row, "the last audit entry")) }
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

    /// Adds `text` to a run's log and cuts the oldest text until the log fits `limit` bytes.
    private static func appendLog(_ db: Database, text: String, stream: LogStream, runID: RunID, time: Date,
                                  limit: Int) throws {
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
        guard let summary = try Row.fetchOne(db, sql: "SELECT kept_bytes FROM run_logs WHERE run_id = ?",
                                             arguments: [runID.rawValue]) else { return }
        var kept = try checked(summary, "the log of run \(runID)").integer("kept_bytes") + bytes
        while kept > Int64(limit) {
            guard let oldest = try Row.fetchOne(db, sql: """
                SELECT id, bytes, text FROM run_log_chunks WHERE run_id = ? ORDER BY id LIMIT 1
                """, arguments: [runID.rawValue]) else { break }
            let row = checked(oldest, "the log of run \(runID)")
            let id = try row.integer("id")
            let oldText = try row.text("text")
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

    /// `text` without its first `count` bytes, moved forward to a character boundary.
    static func suffix(of text: String, droppingAtLeast count: Int) -> String {
        let bytes = Array(text.utf8)
        var start = min(max(count, 0), bytes.count)
        while start < bytes.count && (bytes[start] & 0xC0) == 0x80 { start += 1 }
        return String(decoding: bytes[start...], as: UTF8.self)
    }
}

/// Thrown inside a write transaction to roll it back when its compare-and-set fails.
private struct CompareAndSetLost: Error {}

/// Places inside a store transaction where a crash test kills the process, to show on the
/// real daemon that what the transaction writes is all-or-nothing.
///
/// Only debug builds (which the tests use) contain the check, and it is armed only by
/// `LOCKSTEP_TEST_KILL_AT` in the daemon's own environment, read once at start: nothing a
/// delivery repository or an API request sends can set it (terraform and verify commands
/// get an environment built from nothing, and the daemon's environment is never read from
/// input). A release build compiles it to nothing.
enum CrashPoint: String {
    /// An approval row and its audit entry are written; the transition it completes is not yet.
    case approvalRecordedBeforeTransition = "approval-recorded-before-transition"

    #if DEBUG
    private static let armed: CrashPoint? = ProcessInfo.processInfo.environment["LOCKSTEP_TEST_KILL_AT"]
        .flatMap(CrashPoint.init(rawValue:))
    #endif

    /// Kills the process with SIGKILL (as `kill -9` would) when this point is armed.
    static func reached(_ point: CrashPoint) {
        #if DEBUG
        if armed == point { kill(getpid(), SIGKILL) }
        #endif
    }
}
