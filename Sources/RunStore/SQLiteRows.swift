import Foundation
import GRDB
import LockstepCore

// Reading rows back into domain types. A store file can be edited by hand; every value
// read is therefore checked and a bad one becomes `StoreError(.corrupt)` naming the row,
// never a crash (GRDB's non-optional subscripts would trap on a wrong type).

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
}

/// A row with the place it came from, for error messages.
struct CheckedRow {
    let row: Row
    /// e.g. `run r-1`, `audit entry at position 4`.
    let what: String

    func corrupt(_ column: String, _ expected: String) -> StoreError {
        StoreError(.corrupt, "\(what): column \(column) does not hold \(expected); the store file was edited or damaged")
    }

    func text(_ column: String) throws(StoreError) -> String {
        guard let value = row[column] as? String else { throw corrupt(column, "text") }
        return value
    }

    func optionalText(_ column: String) throws(StoreError) -> String? {
        let value = row[column]
        if value == nil { return nil }
        guard let text = value as? String else { throw corrupt(column, "text") }
        return text
    }

    func integer(_ column: String) throws(StoreError) -> Int64 {
        guard let value = row[column] as? Int64 else { throw corrupt(column, "an integer") }
        return value
    }

    func optionalInteger(_ column: String) throws(StoreError) -> Int64? {
        let value = row[column]
        if value == nil { return nil }
        guard let number = value as? Int64 else { throw corrupt(column, "an integer") }
        return number
    }

    func bool(_ column: String) throws(StoreError) -> Bool {
        switch try integer(column) {
        case 0: false
        case 1: true
        default: throw corrupt(column, "0 or 1")
        }
    }

    func date(_ column: String) throws(StoreError) -> Date {
        Milliseconds.date(try integer(column))
    }

    /// Parses a column with a throwing initialiser of a validated type.
    func parse<T>(_ column: String, _ expected: String, _ make: (String) throws -> T) throws(StoreError) -> T {
        let raw = try text(column)
        do {
            return try make(raw)
        } catch {
            throw corrupt(column, expected)
        }
    }

    func parseOptional<T>(_ column: String, _ expected: String, _ make: (String) throws -> T) throws(StoreError) -> T? {
        guard let raw = try optionalText(column) else { return nil }
        do {
            return try make(raw)
        } catch {
            throw corrupt(column, expected)
        }
    }

    func state(_ column: String) throws(StoreError) -> RunState {
        try parse(column, "a run state") { raw in
            guard let state = RunState(rawValue: raw) else { throw corrupt(column, "a run state") }
            return state
        }
    }

    func target(project: String = "project", environment: String = "environment") throws(StoreError) -> TargetID {
        TargetID(project: try parse(project, "a project name", ProjectName.init),
                 environment: try parse(environment, "an environment name", EnvironmentName.init))
    }

    /// A target from two nullable columns: both set or both NULL.
    func optionalTarget(project: String = "project", environment: String = "environment") throws(StoreError) -> TargetID? {
        let projectName = try parseOptional(project, "a project name", ProjectName.init)
        let environmentName = try parseOptional(environment, "an environment name", EnvironmentName.init)
        switch (projectName, environmentName) {
        case (nil, nil): return nil
        case let (project?, environment?): return TargetID(project: project, environment: environment)
        default: throw corrupt("\(project)/\(environment)", "a complete target (both set or both empty)")
        }
    }

    func json<T: Decodable>(_ column: String, as type: T.Type, _ expected: String) throws(StoreError) -> T {
        try parse(column, expected) { raw in try JSONDecoder().decode(T.self, from: Data(raw.utf8)) }
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

extension StoredRun {
    /// The columns of `runs` joined with `plans`.
    static let selection = """
        SELECT runs.*, plans.summary_json, plans.rendering, plans.plan_json, plans.rendering_truncated,
            plans.rendering_bytes
        FROM runs LEFT JOIN plans ON plans.run_id = runs.id
        """

    init(checked row: CheckedRow) throws(StoreError) {
        let pinVersion = try row.parseOptional("pin_version", "a version", SemanticVersion.init)
        let pinCeiling = try row.parseOptional("pin_ceiling", "a version", SemanticVersion.init)
        var pin: RollbackPin?
        switch (pinVersion, pinCeiling) {
        case (nil, nil): pin = nil
        case let (version?, ceiling?): pin = RollbackPin(version: version, ceiling: ceiling)
        default: throw row.corrupt("pin_version/pin_ceiling", "a complete rollback pin")
        }
        let run = NewRun(
            id: try row.parse("id", "a run id", RunID.init),
            target: try row.target(),
            tagName: try row.text("tag_name"),
            tagObject: try row.parse("tag_object", "a git object id", GitObjectID.init),
            version: try row.parse("version", "a version", SemanticVersion.init),
            commit: try row.parse("commit_id", "a git object id", GitObjectID.init),
            tree: try row.parse("tree_id", "a git object id", GitObjectID.init),
            taggerEmail: try row.optionalText("tagger_email"),
            rollbackPin: pin,
            hasVerifyCommands: try row.bool("has_verify_commands"))
        var plan: StoredPlan?
        if let summary = try row.optionalText("summary_json") {
            let rendering = try row.text("rendering")
            let size = try row.optionalInteger("rendering_bytes")
            guard size.map({ $0 >= 0 && $0 <= Int64(Int.max) }) ?? true else {
                throw row.corrupt("rendering_bytes", "a byte count")
            }
            plan = StoredPlan(summaryJSON: summary, rendering: rendering, planJSON: try row.text("plan_json"),
                              renderingTruncated: try row.bool("rendering_truncated"), renderingBytes: size.map { Int($0) })
        }
        self.init(run: run, state: try row.state("state"),
                  planDigest: try row.parseOptional("plan_digest", "a digest", Digest.init),
                  plan: plan,
                  lastReason: try row.optionalText("last_reason").map(TransitionReason.Code.init(rawValue:)),
                  createdAt: try row.date("created_ms"), updatedAt: try row.date("updated_ms"))
    }
}

extension AuditEntry {
    static let selection = """
        SELECT sequence, time_ms, actor, kind, project, environment, run_id, payload, previous_hash, hash
        FROM audit_log
        """

    init(checked row: CheckedRow) throws(StoreError) {
        let sequence = try row.integer("sequence")
        guard sequence >= 0 else { throw row.corrupt("sequence", "a non-negative integer") }
        self.init(sequence: UInt64(sequence),
                  epochMilliseconds: try row.integer("time_ms"),
                  actor: try row.text("actor"),
                  kind: AuditKind(rawValue: try row.text("kind")),
                  target: try row.optionalTarget(),
                  runID: try row.parseOptional("run_id", "a run id", RunID.init),
                  payload: try row.json("payload", as: [String: String].self, "a JSON object of strings"),
                  previousHash: try row.parse("previous_hash", "a SHA-256 hash", AuditHash.init(hex:)),
                  hash: try row.parse("hash", "a SHA-256 hash", AuditHash.init(hex:)))
    }
}
