import Foundation
import LockstepCore
import Logging

/// `show -json` of a saved plan: the parsed model, the JSON redacted, and the sensitive values
/// the JSON revealed (kept in memory only, to redact the text rendering with).
public struct ShownPlanJSON: Sendable {
    public var plan: PlanModel
    public var redactedJSON: Data
    public var sensitiveValues: Set<String>

    public init(plan: PlanModel, redactedJSON: Data, sensitiveValues: Set<String> = []) {
        self.plan = plan
        self.redactedJSON = redactedJSON
        self.sensitiveValues = sensitiveValues
    }
}

/// Terraform's text rendering of a saved plan, redacted, for reviewers.
public struct PlanRendering: Sendable, Equatable {
    /// All of the text, or its start when ``truncated`` (cut at a line end, or a character
    /// boundary, never inside a secret).
    public var text: String
    /// Bytes of text `show` printed, all of them.
    public var bytes: Int
    public var truncated: Bool

    public init(text: String, bytes: Int? = nil, truncated: Bool = false) {
        self.text = text
        self.bytes = bytes ?? text.utf8.count
        self.truncated = truncated
    }
}

/// What `show` printed, not yet redacted with the sensitive values of the plan's JSON (which
/// may not be known when the text is read). Only ``redacting(_:invocation:)`` gives it out.
public struct CapturedRendering: Sendable {
    let command: CommandResult
    let stdout: Data?
    let stdoutBytes: Int
    let limit: Int
    let logger: Logger

    /// The rendering redacted with the invocation's secrets and `sensitiveValues`; throws when
    /// `show` did not succeed (its output redacted the same way).
    public func redacting(_ sensitiveValues: Set<String>, invocation: TerraformRunner.Invocation) throws -> PlanRendering {
        let redactor = invocation.redactor.adding(sensitiveValues)
        var command = self.command
        command.output = redactor.redact(command.output)
        guard command.outcome == .succeeded, let rendered = stdout else {
            throw TerraformRunner.failure("terraform show", command)
        }
        let truncated = stdoutBytes > limit
        // A secret that starts before the cut must lie whole in what was read: a sensitive value
        // longer than the allowance moves the cut earlier rather than leave its start in clear.
        let cut = min(limit, max(0, rendered.count - max(redactor.longestPatternBytes, 4)))
        let text = rendered.withUnsafeBytes { bytes in
            TerraformRunner.rendering(of: bytes, cutAt: truncated ? cut : nil, redactor: redactor)
        }
        if truncated {
            logger.notice("plan text truncated", metadata: [
                "plan.text.bytes": "\(stdoutBytes)", "plan.text.kept_bytes": "\(text.utf8.count)",
                "plan.text.limit_bytes": "\(limit)"])
        }
        return PlanRendering(text: text, bytes: stdoutBytes, truncated: truncated)
    }
}
