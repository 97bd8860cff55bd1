import Foundation
import GRDB
public import LockstepCore

// Runs and their transitions.
extension SQLiteRunStore {
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
                                  plan_digest, created_ms, updated_ms, signer_format, signer_principal, signer_key)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)
                """, arguments: [
                    run.id.rawValue, run.target.project.rawValue, run.target.environment.rawValue, run.tagName,
                    run.tagObject.rawValue, run.version.description, run.commit.rawValue, run.tree.rawValue,
                    run.taggerEmail, run.rollbackPin?.version.description, run.rollbackPin?.ceiling.description,
                    run.hasVerifyCommands, RunState.queued.rawValue, ms, ms,
                    run.signer?.format, run.signer?.principal, run.signer?.key,
                ])
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
            }
            try Self.appendAudit(db, time: time, actor: actor, kind: .runCreated, target: run.target, runID: run.id,
                                 payload: AuditPayload.runCreated(run))
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

    public func transition(_ runID: RunID, through steps: [RunStep], at time: Date, actor: String) async throws -> Bool {
        struct StepLost: Error {}
        do {
            return try await write("move run \(runID) through \(steps.map(\.transition.to.rawValue).joined(separator: ", "))") { db in
                for step in steps {
                    guard try Self.move(db, runID, step.transition, update: step.update, at: time, actor: actor) else {
                        guard try Self.runExists(db, runID) else { throw StoreError(.notFound, "run \(runID) does not exist") }
                        // Undoes the steps already taken: all of them or none.
                        throw StepLost()
                    }
                }
                return true
            }
        } catch is StepLost {
            return false
        }
    }

    /// The compare-and-set of a transition, inside the caller's transaction: moves the run
    /// from `transition.from` and stores the transition, the update and its audit entry.
    /// Returns `false`, having written nothing, when the run is not in `transition.from`.
    static func move(_ db: Database, _ runID: RunID, _ transition: RunTransition, update: RunUpdate,
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
                INSERT INTO plans (run_id, summary_json, rendering, plan_json, rendering_truncated, rendering_bytes,
                                   rendering_state, prior_lineage, prior_serial)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id) DO UPDATE SET summary_json = excluded.summary_json,
                    rendering = excluded.rendering, plan_json = excluded.plan_json,
                    rendering_truncated = excluded.rendering_truncated, rendering_bytes = excluded.rendering_bytes,
                    rendering_state = excluded.rendering_state, prior_lineage = excluded.prior_lineage,
                    prior_serial = excluded.prior_serial
                """, arguments: [runID.rawValue, plan.summaryJSON, plan.rendering, plan.planJSON,
                                 plan.renderingTruncated, plan.renderingBytes, plan.renderingState.rawValue,
                                 plan.priorState?.lineage, plan.priorState.map { Int64(clamping: $0.serial) }])
        }
        if let results = update.checkResults {
            try db.execute(sql: "UPDATE plans SET checks_json = ? WHERE run_id = ?",
                           arguments: [try StoredJSON.encode(results), runID.rawValue])
        }
        try db.execute(sql: """
            INSERT INTO transitions (run_id, from_state, to_state, reason, detail, actor, time_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [runID.rawValue, transition.from.rawValue, transition.to.rawValue,
                             transition.reason.code.rawValue, transition.reason.detail, actor, ms])
        let target = try Self.target(of: runID, db)
        try Self.appendAudit(db, time: time, actor: actor, kind: .transition, target: target, runID: runID,
                             payload: AuditPayload.transition(transition, digest: update.planDigest,
                                                              priorState: update.plan?.priorState,
                                                              checks: update.checkResults))
        try Self.enqueue(db, .transition, target: target, runID: runID, at: time,
                         facts: OutboxFacts(from: transition.from, to: transition.to,
                                            reason: transition.reason.code.rawValue, detail: transition.reason.detail,
                                            approvers: try Self.approvers(of: runID, db)))
        return true
    }

    public func attachRendering(_ runID: RunID, rendering: String, truncated: Bool, bytes: Int,
                                state: RenderingState) async throws -> Bool {
        try await write("attach the plan rendering of run \(runID)") { db in
            try db.execute(sql: """
                UPDATE plans SET rendering = ?, rendering_truncated = ?, rendering_bytes = ?, rendering_state = ?
                WHERE run_id = ? AND rendering_state = 'pending'
                """, arguments: [rendering, truncated, bytes, state.rawValue, runID.rawValue])
            return db.changesCount == 1
        }
    }

    public func run(_ id: RunID) async throws -> StoredRun? {
        try await read { db in try Self.fetchRun(db, id) }
    }

    public func runs(target: TargetID?, states: Set<RunState>?) async throws -> [StoredRun] {
        guard let (filter, arguments) = Self.runFilter(target: target, states: states) else { return [] }
        return try await read { db in
            try SQLiteFetch.all(FullRunRow.self, db, FullRunRow.selection + filter + " ORDER BY runs.seq DESC", arguments,
                                what: "a run").map(\.run)
        }
    }

    public func runSummaries(target: TargetID?, states: Set<RunState>?) async throws -> [RunSummary] {
        guard let (filter, arguments) = Self.runFilter(target: target, states: states) else { return [] }
        return try await read { db in
            try SQLiteFetch.all(RunRecordRow.self, db, RunRecordRow.selection + filter + " ORDER BY runs.seq DESC",
                                arguments, what: "a run").map(\.summary)
        }
    }

    /// The WHERE clause of a run listing, or nil when it can match nothing.
    private static func runFilter(target: TargetID?, states: Set<RunState>?) -> (String, StatementArguments)? {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let target {
            conditions.append("runs.project = ? AND runs.environment = ?")
            arguments += [target.project.rawValue, target.environment.rawValue]
        }
        if let states {
            if states.isEmpty { return nil }
            conditions.append("runs.state IN (\(Array(repeating: "?", count: states.count).joined(separator: ", ")))")
            arguments += StatementArguments(states.map(\.rawValue).sorted())
        }
        return (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "), arguments)
    }

    public func transitions(of runID: RunID) async throws -> [StoredTransition] {
        try await read { db in
            try SQLiteFetch.all(TransitionRow.self, db, "SELECT * FROM transitions WHERE run_id = ? ORDER BY sequence",
                                [runID.rawValue], what: "a transition of run \(runID)").map(\.stored)
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
            return try SQLiteFetch.rows(db, """
                SELECT transitions.run_id AS run_id, min(transitions.sequence) AS first
                FROM transitions JOIN runs ON runs.id = transitions.run_id
                WHERE runs.project = ? AND runs.environment = ? AND transitions.to_state = 'applying'
                  AND transitions.sequence > ? AND transitions.run_id <> ?
                GROUP BY transitions.run_id ORDER BY first
                """, [target.project.rawValue, target.environment.rawValue, planned, runID.rawValue],
                what: "an apply on \(target)") { row throws(ColumnError) in try row.parsed("run_id", "a run id", RunID.init) }
        }
    }
}
