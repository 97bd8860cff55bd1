import Foundation
import LockstepCore

/// How a terraform command ended, classified at the edge: a
/// non-zero exit is data the reconciler decides on, not an exception.
public enum CommandOutcome: Sendable, Equatable, CustomStringConvertible {
    /// Exit 0 (or exit 2 of `plan -detailed-exitcode`: changes present).
    case succeeded
    /// `apply` refused a saved plan because the state moved since it was made.
    case stalePlan
    /// Another process holds the state lock; its id when terraform printed it.
    case stateLocked(lockID: String?)
    /// The runner's timeout fired; terraform was interrupted.
    case timedOut
    /// The calling task was cancelled; terraform was interrupted.
    case cancelled
    /// Any other failure (terraform's diagnostics are in the result's output).
    case failed(exitCode: Int32)

    public var description: String {
        switch self {
        case .succeeded: "succeeded"
        case .stalePlan: "stale_plan"
        case .stateLocked(let id): id.map { "state_locked (lock \($0))" } ?? "state_locked"
        case .timedOut: "timed_out"
        case .cancelled: "cancelled"
        case .failed(let code): "failed with exit status \(code)"
        }
    }

    /// How a log line names the outcome of `plan -detailed-exitcode`, where exit 2 means the
    /// plan succeeded and found changes: `changes_present`, `no_changes`, else ``description``.
    public var planDescription: String {
        switch self {
        case .succeeded: PlanChanges.noChanges.rawValue
        case .failed(exitCode: 2): PlanChanges.changesPresent.rawValue
        default: description
        }
    }

    /// Retrying the same command later can help (lock held, timeout).
    public var isRetryable: Bool {
        switch self {
        case .stateLocked, .timedOut: true
        default: false
        }
    }

    /// Reads terraform's exit code and (redacted) output.
    static func classify(exitCode: Int32, interruption: Interruption?, output: String) -> CommandOutcome {
        switch interruption {
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        case nil: break
        }
        if exitCode == 0 { return .succeeded }
        if output.contains("Saved plan is stale") { return .stalePlan }
        if output.contains("Error acquiring the state lock") {
            return .stateLocked(lockID: lockID(in: output))
        }
        return .failed(exitCode: exitCode)
    }

    private static func lockID(in output: String) -> String? {
        var sawLockInfo = false
        for line in output.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("Lock Info:") { sawLockInfo = true; continue }
            if sawLockInfo, trimmed.hasPrefix("ID:") {
                let id = trimmed.dropFirst(3).trimmingCharacters(in: .whitespaces)
                return id.isEmpty ? nil : id
            }
        }
        return nil
    }
}

/// The result of one terraform invocation.
public struct CommandResult: Sendable {
    public var outcome: CommandOutcome
    /// Terraform's exit status (meaningless when interrupted).
    public var exitCode: Int32
    public var duration: Duration
    /// The last lines of stdout+stderr, redacted, bounded by the runner's retention. When
    /// earlier output was not kept, the first line says how much (``OutputNotice/notKept(_:)``).
    public var output: String
    /// Bytes of output that were streamed to the sink but not retained.
    public var droppedOutputBytes: Int

    public init(outcome: CommandOutcome, exitCode: Int32, duration: Duration, output: String, droppedOutputBytes: Int = 0) {
        self.outcome = outcome
        self.exitCode = exitCode
        self.duration = duration
        self.output = output
        self.droppedOutputBytes = droppedOutputBytes
    }
}

/// The lines Lockstep writes into kept output where something was left out, and the byte
/// sizes they show.
public enum OutputNotice {
    /// The line that opens a command's kept output when its start was dropped.
    public static func notKept(_ bytes: Int) -> String { "[… \(ByteSize(bytes)) of output not kept …]" }

    /// `tail` with the ``notKept(_:)`` line in front when `dropped` bytes were not kept,
    /// within `limit` bytes: the oldest kept lines make room for the notice (and are counted).
    public static func output(_ tail: String, dropped: Int, limit: Int) -> String {
        guard dropped > 0 else { return tail }
        var rest = Substring(tail)
        var dropped = dropped
        while true {
            let notice = notKept(dropped)
            let excess = notice.utf8.count + 1 + rest.utf8.count - limit
            if excess <= 0 || rest.isEmpty { return notice + "\n" + rest }
            if let newline = rest.utf8.firstIndex(of: UInt8(ascii: "\n")) {
                let next = rest.utf8.index(after: newline)
                dropped += rest.utf8.distance(from: rest.utf8.startIndex, to: next)
                rest = rest[next...]
            } else {
                // One line longer than the room left: keep its end, from a character boundary.
                var bytes = Array(rest.utf8)
                var start = min(excess, bytes.count)
                while start < bytes.count, bytes[start] & 0xC0 == 0x80 { start += 1 }
                dropped += start
                bytes.removeFirst(start)
                rest = Substring(String(decoding: bytes, as: UTF8.self))
            }
        }
    }
}

/// A byte count as people read it: `812 bytes`, `64.0 KiB`, `48.7 MiB`, `1.0 GiB`.
public struct ByteSize: Sendable, Hashable, CustomStringConvertible {
    public var bytes: Int
    public init(_ bytes: Int) { self.bytes = bytes }

    public var description: String {
        let units: [(String, Double)] = [("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1_024)]
        for (unit, size) in units where Double(bytes) >= size {
            let tenths = (Double(bytes) / size * 10).rounded(.down) / 10
            return String(format: "%.1f", tenths) + " " + unit
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }
}

extension TerraformRunnerError.Code {
    /// `show -json` printed more than the configured limit: the plan cannot be summarised or
    /// checked, so it must never be approved. The error's context has `limit_bytes` and `bytes`.
    public static let planJSONTooLarge = TerraformRunnerError.Code("plan_json_too_large")
}

/// `plan -detailed-exitcode` read as data (0 no changes, 2 changes present).
public enum PlanChanges: String, Sendable, Equatable, Codable {
    case noChanges = "no_changes"
    case changesPresent = "changes_present"
}

/// A plan file terraform wrote, with its digest taken right after.
///
/// `contents` are the plan's bytes, read once right after terraform exited; `digest` is the
/// digest of exactly those bytes. Whoever shows, checks or applies the plan must use copies of
/// `contents`, never `file` again: `file` sat in a place the plan command could write, and a
/// process that plan-time code left behind could rewrite it after it was hashed (so reviewers
/// would see one plan and another would be applied). See docs/THREAT-MODEL.md.
public struct SavedPlan: Sendable, Equatable {
    public var file: URL
    public var digest: Digest
    public var changes: PlanChanges
    public var contents: Data

    public init(file: URL, digest: Digest, changes: PlanChanges, contents: Data) {
        self.file = file
        self.digest = digest
        self.changes = changes
        self.contents = contents
    }
}

/// The result of `plan -out`.
public struct PlanResult: Sendable {
    public var command: CommandResult
    /// Present when the plan succeeded.
    public var plan: SavedPlan?

    public init(command: CommandResult, plan: SavedPlan?) {
        self.command = command
        self.plan = plan
    }
}

/// A saved plan read back for review and checks.
public struct ShownPlan: Sendable {
    /// What the plan would do, parsed once from the complete `show -json` (docs/ARCHITECTURE.md,
    /// "One pass per run"): the summary, the checks and the approval policy all read it.
    public var plan: PlanModel
    /// `show -json` with every sensitive value and known secret redacted:
    /// the only form of the JSON Lockstep keeps.
    public var redactedJSON: Data
    /// Terraform's own `show` text of the saved plan, redacted, for reviewers: at most the
    /// runner's `planTextBytes`, cut at a line end (or a character boundary, never inside a
    /// secret) when terraform printed more.
    public var rendering: String
    /// Bytes of text `show` printed, all of them (more than `rendering` holds when truncated).
    public var renderingBytes: Int
    /// True when `rendering` is only the start of the text. The model and the redacted
    /// JSON are complete all the same: they come from `show -json`, which is refused whole
    /// when it is over its limit.
    public var renderingTruncated: Bool

    public init(plan: PlanModel, redactedJSON: Data, rendering: String, renderingBytes: Int? = nil,
                renderingTruncated: Bool = false) {
        self.plan = plan
        self.redactedJSON = redactedJSON
        self.rendering = rendering
        self.renderingBytes = renderingBytes ?? rendering.utf8.count
        self.renderingTruncated = renderingTruncated
    }
}

/// One diagnostic from `validate -json`.
public struct Diagnostic: Sendable, Equatable, Codable {
    public var severity: String
    public var summary: String
    public var detail: String?
    public var filename: String?
    public var line: Int?

    public init(severity: String, summary: String, detail: String? = nil, filename: String? = nil, line: Int? = nil) {
        self.severity = severity
        self.summary = summary
        self.detail = detail
        self.filename = filename
        self.line = line
    }
}

/// The result of `init -backend=false` + `validate -json`.
public struct ValidationResult: Sendable {
    public var initialization: CommandResult
    /// Nil when init failed (validate was not run).
    public var validation: CommandResult?
    public var valid: Bool
    public var diagnostics: [Diagnostic]

    public init(initialization: CommandResult, validation: CommandResult?, valid: Bool, diagnostics: [Diagnostic]) {
        self.initialization = initialization
        self.validation = validation
        self.valid = valid
        self.diagnostics = diagnostics
    }
}

/// What `version -json` reported.
public struct TerraformVersion: Sendable, Equatable, Codable {
    /// The binary's file name (`terraform` or `tofu`).
    public var tool: String
    /// E.g. `1.0.3`.
    public var version: SemanticVersion
    public var platform: String?

    public init(tool: String, version: SemanticVersion, platform: String? = nil) {
        self.tool = tool
        self.version = version
        self.platform = platform
    }

    /// True when this version is at least `major.minor` (pre-release labels are not compared).
    public func isAtLeast(_ major: UInt64, _ minor: UInt64) -> Bool {
        (version.major, version.minor) >= (major, minor)
    }
}
