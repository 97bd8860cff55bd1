import Foundation
import LockstepConfig
import LockstepCore
import LockstepGate
import RunStore
import TerraformRunner

/// What one outbox event says about a run, rendered for a forge comment, a commit status and a
/// notification. Built only from what the store holds (already redacted when it was stored)
/// and the agent's policy, then passed through a ``Redactor`` with the environment's credential
/// values once more: the same text an API client could read, never the plan's body.
public struct RunReport: Sendable {
    /// A forge comment stays under this many characters whatever the plan: GitHub refuses a
    /// comment over 65,536, and the others take at least that.
    public static let commentLimit = 60_000
    /// Longest failure detail quoted; the rest is on the run page.
    static let detailLimit = 2_000
    /// Longest address shown; an address can carry a `for_each` key of any length.
    static let addressLimit = 300

    public var run: StoredRun
    /// The state the event reports (an approval is reported in `awaiting_approval`).
    public var state: RunState
    public var facts: OutboxFacts
    public var model: PlanModel?
    /// Approvals the run needs (the environment's, plus one for a protected destroy).
    public var requiredApprovals: Int
    public var approvers: [IdentityName]
    /// A link to the run, when the agent has a public URL.
    public var runURL: String?

    public init(run: StoredRun, event: OutboxEvent, policy: EnvironmentPolicy?, publicURL: String?) {
        self.run = run
        self.facts = event.facts
        self.state = event.kind == .transition ? (event.facts.to ?? run.state) : .awaitingApproval
        self.model = run.plan?.model
        var required = policy?.approvals ?? 0
        if let model, let policy,
           PlanChecks.evaluate(model, rules: PlanCheckRules(policy)).needsExtraApproval {
            required += 1
        }
        self.requiredApprovals = required
        self.approvers = policy?.approvers ?? []
        self.runURL = publicURL.map { "\($0)/ui/runs/\(run.id.rawValue)" }
    }

    /// Marks the comment as this run's, so a daemon that lost the comment's id (killed between
    /// posting it and storing the id) finds it again instead of writing a second.
    public static func marker(_ runID: RunID) -> String { "<!-- lockstep:run=\(runID.rawValue) -->" }

    // MARK: - Commit status

    /// A commit status's outcome, mapped to each forge's own words by the forge.
    public enum StatusOutcome: String, Sendable {
        case pending, running, success, failure, cancelled
    }

    public var statusOutcome: StatusOutcome {
        switch state {
        case .queued, .planning, .checking, .awaitingApproval, .approved: .pending
        case .applying, .applied, .verifying: .running
        case .verified, .noChanges: .success
        case .failed, .interrupted, .rejected: .failure
        case .superseded, .expired: .cancelled
        }
    }

    /// One line, at most 140 characters (GitHub's limit for a status description).
    public var statusDescription: String {
        var line: String
        switch state {
        case .queued, .planning, .checking: line = "Planning"
        case .awaitingApproval:
            line = "Plan \(counts): \(facts.approvers.count) of \(requiredApprovals) approvals"
        case .approved: line = "Approved; waiting to apply"
        case .applying: line = isBreakGlass ? "BREAK-GLASS apply: freeze or apply window bypassed" : "Applying"
        case .applied, .verifying: line = "Applied; verifying"
        case .verified: line = "Applied and verified"
        case .noChanges: line = "No changes"
        case .failed: line = "Failed: \(facts.reason ?? "unknown reason")"
        case .interrupted: line = "Interrupted during apply: needs an operator"
        case .rejected: line = "Rejected"
        case .superseded: line = "Superseded by a newer release"
        case .expired: line = "Approvals expired"
        }
        if line.count > 140 { line = String(line.prefix(139)) + "…" }
        return line
    }

    /// This event is an apply let through by break-glass approvals: it must stand out.
    var isBreakGlass: Bool { facts.reason == "break_glass" }

    var counts: String {
        guard let model else { return "not available" }
        return "+\(model.create) ~\(model.update) ±\(model.replace) -\(model.delete)"
    }

    // MARK: - Comment

    /// The comment for the run as of this event, in Markdown, at most `limit` characters.
    public func comment(limit: Int = commentLimit) -> String {
        let summary = run.summary.run
        var head: [String] = [Self.marker(run.id), ""]
        head.append("### Lockstep: `\(summary.target.project.rawValue)` → `\(summary.target.environment.rawValue)` \(summary.version.description)")
        head.append("")
        head.append("**\(stateLine)**")
        head.append("")
        head.append("Tag `\(summary.tagName)` at commit `\(summary.commit.rawValue)` · run `\(run.id.rawValue)`")
        if let digest = run.planDigest { head.append("Plan digest `\(digest.rawValue)`") }
        head.append("")
        if let model {
            head.append("| create | update | replace | delete | read |")
            head.append("|---:|---:|---:|---:|---:|")
            head.append("| \(model.create) | \(model.update) | \(model.replace) | \(model.delete) | \(model.read) |")
            head.append("")
        }
        var tail: [String] = []
        if state == .awaitingApproval, let digest = run.planDigest {
            let missing = max(0, requiredApprovals - facts.approvers.count)
            tail.append("\(missing) more approval\(missing == 1 ? "" : "s") needed (\(requiredApprovals) in all) from: \(approvers.map(\.rawValue).joined(separator: ", ")). To approve this exact plan:")
            tail.append("")
            tail.append("```")
            tail.append("lockstep approve \(run.id.rawValue) --digest \(digest.rawValue)")
            tail.append("```")
            tail.append("")
        }
        if !facts.approvers.isEmpty {
            tail.append("Approved by: \(facts.approvers.joined(separator: ", "))")
            tail.append("")
        }
        if [.failed, .interrupted, .rejected, .expired].contains(state) || isBreakGlass
            || facts.reason == "checks_failed_overridable" {
            tail.append("Reason: `\(facts.reason ?? "unknown")`")
            if let detail = facts.detail, !detail.isEmpty {
                let kept = detail.count > Self.detailLimit ? String(detail.prefix(Self.detailLimit)) + "\n… (cut; the whole text is on the run page)" : detail
                tail += Self.fenced(kept.split(separator: "\n", omittingEmptySubsequences: false).map { Self.printable(String($0)) })
            }
            tail.append("")
        }
        if let runURL { tail.append("[Run page](\(runURL)) · the plan itself is never posted here") } else {
            tail.append("The plan itself is never posted here: `lockstep show \(run.id.rawValue)`")
        }
        let fixed = (head + tail).reduce(0) { $0 + $1.count + 1 }
        var middle: [String] = []
        if let model {
            var budget = max(0, limit - fixed - 400)
            for (title, addresses) in [("Destroyed", model.deletedAddresses), ("Replaced (destroyed and created again)", model.replacedAddresses)]
            where !addresses.isEmpty {
                middle.append("**\(title): \(addresses.count)**")
                var shown: [String] = []
                for address in addresses {
                    let line = Self.printable(address.count > Self.addressLimit ? String(address.prefix(Self.addressLimit)) + "…" : address)
                    guard budget - line.count - 1 > 0 else { break }
                    budget -= line.count + 1
                    shown.append(line)
                }
                middle += Self.fenced(shown)
                if shown.count < addresses.count {
                    middle.append("… and \(addresses.count - shown.count) more, listed on the run page.")
                }
                middle.append("")
                budget -= 120
            }
        }
        var text = (head + middle + tail).joined(separator: "\n")
        if text.count > limit { text = String(text.prefix(limit - 1)) + "…" }
        return text
    }

    var stateLine: String {
        switch state {
        case .queued, .planning, .checking: "⏳ Planning"
        case .awaitingApproval: "🔍 Plan ready: awaiting approval (\(facts.approvers.count) of \(requiredApprovals))"
        case .approved: "✅ Approved: waiting to apply"
        case .applying where isBreakGlass: "🚨 BREAK-GLASS: applying inside a freeze or outside the apply windows"
        case .applying: "🚀 Applying"
        case .applied, .verifying: "🚀 Applied: verifying"
        case .verified: "✅ Applied and verified"
        case .noChanges: "✅ No changes: nothing to apply"
        case .failed: "❌ Failed"
        case .interrupted: "⚠️ Interrupted during apply: an operator must resolve it"
        case .rejected: "❌ Rejected"
        case .superseded: "⏭️ Superseded by a newer release"
        case .expired: "⌛ Approvals expired"
        }
    }

    /// Lines in a fence no line can close: longer than any run of backticks in them.
    static func fenced(_ lines: [String]) -> [String] {
        var longest = 0
        for line in lines {
            var run = 0
            for character in line {
                run = character == "`" ? run + 1 : 0
                longest = max(longest, run)
            }
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return [fence] + lines + [fence]
    }

    /// `text` with control characters shown as `\u{…}`: one line, nothing a terminal or Markdown acts on.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x202A...0x202E).contains(scalar.value)
                || (0x2066...0x2069).contains(scalar.value) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
