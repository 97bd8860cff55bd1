import Foundation
import GRDB
import LockstepCore

// Reading rows back into domain types with GRDB's throwing decode. A store file can be
// edited by hand; every value read is therefore checked, and a bad one becomes
// `StoreError(.corrupt)` naming the row and the column, never a crash or a silent default.
//
// Each table has a `FetchableRecord` whose `init(row:)` throws ``ColumnError`` (which column,
// what it should hold); ``SQLiteFetch`` runs the query and turns that into a StoreError naming
// the row ("run r-1", "audit entry at position 4"), which only the caller knows.

/// Times are kept as whole milliseconds since 1970 (the audit chain's resolution), so a
/// value written and read back is the same everywhere: in rows, in audit entries, in exports.
enum Milliseconds {
    static func from(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded(.down)
        guard value.isFinite else { return 0 }
        if value >= Double(Int64.max) { return Int64.max }
        if value <= Double(Int64.min) { return Int64.min }
        return Int64(value)
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// `date` as the store keeps it (cut to whole milliseconds).
    static func stored(_ date: Date) -> Date { self.date(from(date)) }
}

/// A column that does not hold what its table says: thrown by a record's `init(row:)`.
struct ColumnError: Error {
    let column: String
    let expected: String

    func storeError(_ what: String) -> StoreError {
        StoreError(.corrupt, "\(what): column \(column) does not hold \(expected); the store file was edited or damaged")
    }
}

extension Row {
    /// GRDB's throwing decode of one column. Called with a generic `T`, GRDB reads the stored
    /// value with its SQLite type, so a TEXT where an INTEGER belongs is an error, never 0.
    func value<T: DatabaseValueConvertible>(_ column: String, _ expected: String,
                                            as type: T.Type = T.self) throws(ColumnError) -> T {
        do {
            return try decode(T.self, forColumn: column)
        } catch {
            throw ColumnError(column: column, expected: expected)
        }
    }

    func text(_ column: String) throws(ColumnError) -> String { try value(column, "text") }

    func optionalText(_ column: String) throws(ColumnError) -> String? { try value(column, "text") }

    func integer(_ column: String) throws(ColumnError) -> Int64 { try value(column, "an integer") }

    func optionalInteger(_ column: String) throws(ColumnError) -> Int64? { try value(column, "an integer") }

    /// Exactly 0 or 1 (GRDB's own Bool would read any non-zero integer as true).
    func bool(_ column: String) throws(ColumnError) -> Bool {
        switch try integer(column) {
        case 0: false
        case 1: true
        default: throw ColumnError(column: column, expected: "0 or 1")
        }
    }

    func date(_ column: String) throws(ColumnError) -> Date { Milliseconds.date(try integer(column)) }

    /// A text column parsed by a validated type's throwing initialiser.
    func parsed<T>(_ column: String, _ expected: String, _ make: (String) throws -> T) throws(ColumnError) -> T {
        let raw: String = try value(column, expected)
        do { return try make(raw) } catch { throw ColumnError(column: column, expected: expected) }
    }

    func parsedIfPresent<T>(_ column: String, _ expected: String,
                            _ make: (String) throws -> T) throws(ColumnError) -> T? {
        guard let raw: String = try value(column, expected) else { return nil }
        do { return try make(raw) } catch { throw ColumnError(column: column, expected: expected) }
    }

    func state(_ column: String) throws(ColumnError) -> RunState {
        try parsed(column, "a run state") { raw in
            guard let state = RunState(rawValue: raw) else { throw ColumnError(column: column, expected: "") }
            return state
        }
    }

    func target(project: String = "project", environment: String = "environment") throws(ColumnError) -> TargetID {
        TargetID(project: try parsed(project, "a project name", ProjectName.init),
                 environment: try parsed(environment, "an environment name", EnvironmentName.init))
    }

    /// A target from two nullable columns: both set or both NULL.
    func optionalTarget(project: String = "project", environment: String = "environment") throws(ColumnError) -> TargetID? {
        let projectName = try parsedIfPresent(project, "a project name", ProjectName.init)
        let environmentName = try parsedIfPresent(environment, "an environment name", EnvironmentName.init)
        switch (projectName, environmentName) {
        case (nil, nil): return nil
        case let (project?, environment?): return TargetID(project: project, environment: environment)
        default: throw ColumnError(column: "\(project)/\(environment)", expected: "a complete target (both set or both empty)")
        }
    }

    func json<T: Decodable>(_ column: String, as type: T.Type, _ expected: String) throws(ColumnError) -> T {
        try parsed(column, expected) { raw in try JSONDecoder().decode(T.self, from: Data(raw.utf8)) }
    }
}

/// Queries whose rows become records; a ``ColumnError`` becomes a StoreError naming the row.
enum SQLiteFetch {
    static func all<R: FetchableRecord>(_ type: R.Type, _ db: Database, _ sql: String,
                                        _ arguments: StatementArguments = [], what: String) throws -> [R] {
        try named(what) { try R.fetchAll(db, sql: sql, arguments: arguments) }
    }

    static func one<R: FetchableRecord>(_ type: R.Type, _ db: Database, _ sql: String,
                                        _ arguments: StatementArguments = [], what: String) throws -> R? {
        try named(what) { try R.fetchOne(db, sql: sql, arguments: arguments) }
    }

    /// Rows read with `read` (for queries of one or two columns that need no record type).
    static func rows<T>(_ db: Database, _ sql: String, _ arguments: StatementArguments = [], what: String,
                        _ read: (Row) throws(ColumnError) -> T) throws -> [T] {
        try named(what) { try Row.fetchAll(db, sql: sql, arguments: arguments).map { row throws(ColumnError) in try read(row) } }
    }

    static func row<T>(_ db: Database, _ sql: String, _ arguments: StatementArguments = [], what: String,
                       _ read: (Row) throws(ColumnError) -> T) throws -> T? {
        try named(what) { try Row.fetchOne(db, sql: sql, arguments: arguments).map { row throws(ColumnError) in try read(row) } }
    }

    /// Every record in order; a bad row is named by its position (1-based), e.g. "audit entry at position 4".
    static func numbered<R: FetchableRecord>(_ type: R.Type, _ db: Database, _ sql: String,
                                             what: (Int) -> String) throws -> [R] {
        var records: [R] = []
        let cursor = try R.fetchCursor(db, sql: sql)
        while true {
            let next = try named(what(records.count + 1)) { try cursor.next() }
            guard let next else { return records }
            records.append(next)
        }
    }

    private static func named<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ColumnError {
            throw error.storeError(what)
        }
    }
}

/// Stable JSON for columns holding small structured values (sorted keys, so identical
/// values are identical text).
enum StoredJSON {
    static func encode<T: Encodable>(_ value: T) throws(StoreError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw StoreError(.writeFailed, "a value could not be encoded for the store")
        }
    }
}

// MARK: Records

/// A row of `runs` (the summary columns only: no plan text is read for a listing).
struct RunRecordRow: FetchableRecord {
    static let selection = "SELECT runs.* FROM runs"

    let summary: RunSummary

    /// The three signer columns are written together (v6), so they are read together.
    private static func signer(_ row: Row) throws -> TagSigner? {
        switch (try row.optionalText("signer_format"), try row.optionalText("signer_principal"), try row.optionalText("signer_key")) {
        case (nil, nil, nil): return nil
        case let (format?, principal?, key?): return TagSigner(format: format, principal: principal, key: key)
        default: throw ColumnError(column: "signer_format/signer_principal/signer_key", expected: "a complete tag signer")
        }
    }

    init(row: Row) throws {
        let pinVersion = try row.parsedIfPresent("pin_version", "a version", SemanticVersion.init)
        let pinCeiling = try row.parsedIfPresent("pin_ceiling", "a version", SemanticVersion.init)
        var pin: RollbackPin?
        switch (pinVersion, pinCeiling) {
        case (nil, nil): pin = nil
        case let (version?, ceiling?): pin = RollbackPin(version: version, ceiling: ceiling)
        default: throw ColumnError(column: "pin_version/pin_ceiling", expected: "a complete rollback pin")
        }
        let run = NewRun(
            id: try row.parsed("id", "a run id", RunID.init),
            target: try row.target(),
            tagName: try row.text("tag_name"),
            tagObject: try row.parsed("tag_object", "a git object id", GitObjectID.init),
            version: try row.parsed("version", "a version", SemanticVersion.init),
            commit: try row.parsed("commit_id", "a git object id", GitObjectID.init),
            tree: try row.parsed("tree_id", "a git object id", GitObjectID.init),
            taggerEmail: try row.optionalText("tagger_email"),
            rollbackPin: pin,
            hasVerifyCommands: try row.bool("has_verify_commands"),
            signer: try Self.signer(row))
        summary = RunSummary(run: run, state: try row.state("state"),
                             planDigest: try row.parsedIfPresent("plan_digest", "a digest", Digest.init),
                             lastReason: try row.optionalText("last_reason").map(TransitionReason.Code.init(rawValue:)),
                             createdAt: try row.date("created_ms"), updatedAt: try row.date("updated_ms"))
    }
}

/// A row of `runs` joined with its plan: one run's whole record.
struct FullRunRow: FetchableRecord {
    static let selection = """
        SELECT runs.*, plans.summary_json, plans.rendering, plans.plan_json, plans.rendering_truncated,
            plans.rendering_bytes, plans.rendering_state, plans.prior_lineage, plans.prior_serial, plans.checks_json
        FROM runs LEFT JOIN plans ON plans.run_id = runs.id
        """

    let run: StoredRun

    init(row: Row) throws {
        let summary = try RunRecordRow(row: row).summary
        var plan: StoredPlan?
        if let summaryJSON = try row.optionalText("summary_json") {
            let size = try row.optionalInteger("rendering_bytes")
            guard size.map({ $0 >= 0 && $0 <= Int64(Int.max) }) ?? true else {
                throw ColumnError(column: "rendering_bytes", expected: "a byte count")
            }
            plan = StoredPlan(summaryJSON: summaryJSON, rendering: try row.text("rendering"),
                              planJSON: try row.text("plan_json"), renderingTruncated: try row.bool("rendering_truncated"),
                              renderingBytes: size.map { Int($0) },
                              renderingState: try row.parsed("rendering_state", "ready, pending or failed") { raw in
                                  guard let state = RenderingState(rawValue: raw) else {
                                      throw ColumnError(column: "rendering_state", expected: "")
                                  }
                                  return state
                              })
            plan?.checkResults = try row.json("checks_json", as: [CheckResult].self, "a list of check results")
            switch (try row.optionalText("prior_lineage"), try row.optionalInteger("prior_serial")) {
            case (nil, nil): break
            case let (lineage?, serial?) where serial >= 0:
                plan?.priorState = StateBinding(lineage: lineage, serial: UInt64(serial))
            default: throw ColumnError(column: "prior_lineage/prior_serial", expected: "a complete prior state")
            }
        }
        run = StoredRun(summary: summary, plan: plan)
    }
}

struct AuditRow: FetchableRecord {
    static let selection = """
        SELECT sequence, time_ms, actor, kind, project, environment, run_id, payload, previous_hash, hash
        FROM audit_log
        """

    let entry: AuditEntry

    init(row: Row) throws {
        let sequence = try row.integer("sequence")
        guard sequence >= 0 else { throw ColumnError(column: "sequence", expected: "a non-negative integer") }
        entry = AuditEntry(sequence: UInt64(sequence),
                           epochMilliseconds: try row.integer("time_ms"),
                           actor: try row.text("actor"),
                           kind: AuditKind(rawValue: try row.text("kind")),
                           target: try row.optionalTarget(),
                           runID: try row.parsedIfPresent("run_id", "a run id", RunID.init),
                           payload: try row.json("payload", as: [String: String].self, "a JSON object of strings"),
                           previousHash: try row.parsed("previous_hash", "a SHA-256 hash", AuditHash.init(hex:)),
                           hash: try row.parsed("hash", "a SHA-256 hash", AuditHash.init(hex:)))
    }
}

struct TransitionRow: FetchableRecord {
    let stored: StoredTransition

    init(row: Row) throws {
        let transition = RunTransition(
            from: try row.state("from_state"), to: try row.state("to_state"),
            reason: TransitionReason(TransitionReason.Code(rawValue: try row.text("reason")),
                                     detail: try row.optionalText("detail")))
        stored = StoredTransition(sequence: try row.integer("sequence"),
                                  runID: try row.parsed("run_id", "a run id", RunID.init), transition: transition,
                                  actor: try row.text("actor"), time: try row.date("time_ms"))
    }
}

struct ApprovalRow: FetchableRecord {
    let approval: Approval

    init(row: Row) throws {
        approval = try Self.approval(row, time: "time_ms")
    }

    static func approval(_ row: Row, time column: String) throws(ColumnError) -> Approval {
        Approval(runID: try row.parsed("run_id", "a run id", RunID.init),
                 identity: try row.parsed("identity", "an identity name", IdentityName.init),
                 digest: try row.parsed("digest", "a digest", Digest.init), time: try row.date(column),
                 overrideChecks: try row.json("override_checks_json", as: [String].self, "a list of check names"),
                 breakGlass: try row.bool("break_glass"), reason: try row.optionalText("reason"))
    }
}

struct RefusalRow: FetchableRecord {
    let refusal: ApprovalRefusal

    init(row: Row) throws {
        refusal = ApprovalRefusal(code: ApprovalRefusal.Code(rawValue: try row.text("code")),
                                  approval: try ApprovalRow.approval(row, time: "approval_time_ms"),
                                  description: try row.text("description"))
    }
}

struct TagDecisionRow: FetchableRecord {
    let decision: StoredTagDecision

    init(row: Row) throws {
        decision = StoredTagDecision(
            target: try row.target(), tagName: try row.text("tag_name"),
            tagObject: try row.parsed("tag_object", "a git object id", GitObjectID.init),
            commit: try row.parsedIfPresent("commit_id", "a git object id", GitObjectID.init),
            version: try row.parsedIfPresent("version", "a version", SemanticVersion.init),
            accepted: try row.bool("accepted"),
            rejections: try row.json("rejections_json", as: [TagRejection].self, "a list of rejections"))
    }
}

struct PreconditionReportRow: FetchableRecord {
    let report: ApplyPreconditionReport

    init(row: Row) throws {
        report = ApplyPreconditionReport(failures: try row.json("failures_json", as: [ApplyPreconditionFailure].self,
                                                                "a list of precondition failures"))
    }
}

struct AlertRow: FetchableRecord {
    let alert: StoredAlert

    init(row: Row) throws {
        alert = StoredAlert(id: try row.integer("id"), target: try row.optionalTarget(),
                            runID: try row.parsedIfPresent("run_id", "a run id", RunID.init),
                            alert: RunAlert(code: RunAlert.Code(rawValue: try row.text("code")),
                                            description: try row.text("description")),
                            time: try row.date("time_ms"))
    }
}

/// The active rollback pin of a target, with its row id and the run that set it.
struct PinRow: FetchableRecord {
    let id: Int64
    let pin: RollbackPin
    let runID: RunID

    init(row: Row) throws {
        id = try row.integer("id")
        pin = RollbackPin(version: try row.parsed("version", "a version", SemanticVersion.init),
                          ceiling: try row.parsed("ceiling", "a version", SemanticVersion.init))
        runID = try row.parsed("run_id", "a run id", RunID.init)
    }
}
