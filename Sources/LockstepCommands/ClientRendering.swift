import Foundation
import LockstepAPI
import LockstepCore

// The human forms of the API's answers. Every string that came from the server goes
// through `terminalSafe` (repo-derived text reaches these screens), and dates are shown in
// UTC as the API sends them, so two operators in different time zones read the same board.

/// Columns of text, padded with spaces; a cell may span several lines.
struct TextTable {
    var header: [String]
    var rows: [[[String]]] = []

    init(header: [String]) { self.header = header }

    mutating func add(_ cells: [[String]]) { rows.append(cells) }
    mutating func add(line cells: [String]) { rows.append(cells.map { [$0] }) }

    func render() -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.map(\.count).max() ?? 0)
            }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (index, cell) in cells.enumerated() {
                let isLast = index == cells.count - 1
                text += isLast ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }
            while text.hasSuffix(" ") { text.removeLast() }
            return text
        }
        var lines = [line(header)]
        for row in rows {
            let height = row.map(\.count).max() ?? 1
            for lineIndex in 0..<height {
                lines.append(line(row.map { lineIndex < $0.count ? $0[lineIndex] : "" }))
            }
        }
        return lines.joined(separator: "\n")
    }
}

enum ClientRendering {
    static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    static func safe(_ text: String, limit: Int = 200) -> String { terminalSafe(text, limit: limit) }

    static func plural(_ count: Int, _ singular: String, _ pluralForm: String? = nil) -> String {
        "\(count) \(count == 1 ? singular : (pluralForm ?? singular + "s"))"
    }

    /// A state, loud when it needs an operator.
    static func state(_ state: RunState) -> String {
        state == .interrupted ? "INTERRUPTED!!" : state.rawValue
    }

    // MARK: status

    /// The promotion board: one row per project, one column per environment in the order the
    /// API gives (promotion order), each cell showing applied, desired and pending versions.
    /// Interrupted runs and alerts are marked `!!` in their cell and repeated under ATTENTION
    /// with the command that settles them, because an interrupted apply blocks its target
    /// until a person looks at the infrastructure.
    static func board(_ environments: [APIEnvironment], interrupted: [APIRunSummary],
                      problems: [APIProblem] = [], validation: APIBranchValidation? = nil) -> String {
        // What keeps the daemon from following the repository comes first: the board below
        // it is as of the last fetch and the last valid layout.
        let warning = problems.map { "!! \(safe($0.message, limit: 600))" }.joined(separator: "\n")
        var board = boardTable(environments, interrupted: interrupted)
        if let validation { board += "\n\n" + branchValidation(validation) }
        return warning.isEmpty ? board : "PROBLEMS\n" + warning + "\n\n" + board
    }

    /// The daemon's `lockstep validate` of the branch tip: one line when it passed, the problems when not.
    static func branchValidation(_ validation: APIBranchValidation) -> String {
        let head = "validate \(validation.commit.short) (\(time(validation.checkedAt))): "
        guard validation.exitStatus != 0 else { return head + "passed" }
        var lines = ["!! " + head + (validation.exitStatus == 2 ? "could not validate" : "\(plural(validation.problems.count, "problem"))")]
        lines += validation.problems.prefix(10).map { "   \(safe($0, limit: 300))" }
        if validation.problems.count > 10 { lines.append("   … \(validation.problems.count - 10) more (--json)") }
        return lines.joined(separator: "\n")
    }

    private static func boardTable(_ environments: [APIEnvironment], interrupted: [APIRunSummary]) -> String {
        guard !environments.isEmpty else { return "no environments are configured on this daemon" }
        var projects: [ProjectName] = []
        for target in environments.flatMap(\.targets) where !projects.contains(target.project) {
            projects.append(target.project)
        }
        projects.sort()
        let header = ["PROJECT"] + environments.map { environment in
            var title = safe(environment.name.rawValue)
            if environment.requiredApprovals > 1 { title += " (\(environment.requiredApprovals) approvals)" }
            if !environment.served { title += " (not served here)" }
            return title
        }
        var table = TextTable(header: header)
        for project in projects {
            var row: [[String]] = [[safe(project.rawValue)]]
            for environment in environments {
                guard let target = environment.targets.first(where: { $0.project == project }) else {
                    row.append(["-"])
                    continue
                }
                row.append(cell(target, interrupted: interrupted.filter { $0.target == target.target }))
            }
            table.add(row)
            table.add(line: [""])
        }
        var text = table.render()
        while text.hasSuffix("\n") { text.removeLast() }

        var attention: [String] = []
        var seen = Set<RunID>()
        let pendingInterrupted = environments.flatMap(\.targets).compactMap { target -> (TargetID, RunID)? in
            guard let pending = target.pending, pending.state == .interrupted else { return nil }
            return (target.target, pending.runID)
        }
        for (target, run) in pendingInterrupted + interrupted.map({ ($0.target, $0.id) }) where seen.insert(run).inserted {
            attention.append("!! \(safe(target.description)): run \(run) is INTERRUPTED: its apply was cut off and is never retried by itself.")
            attention.append("   Check the infrastructure, then: lockstep resolve \(run) --as applied|failed --reason \"what you found\"")
        }
        for target in environments.flatMap(\.targets) where target.alerts > 0 {
            let where_ = target.pending.map { "lockstep show \($0.runID)" } ?? "lockstep runs --target \(safe(target.target.description))"
            attention.append("!! \(safe(target.target.description)): \(plural(target.alerts, "alert")) not yet acknowledged; see \(where_)")
        }
        if !attention.isEmpty {
            text += "\n\nATTENTION\n" + attention.joined(separator: "\n")
        }
        return text
    }

    private static func cell(_ target: APITarget, interrupted: [APIRunSummary]) -> [String] {
        var lines: [String] = []
        lines.append("applied  " + (target.applied.map { safe($0.version.description) } ?? "-"))
        var desired = "desired  " + (target.desired.map { safe($0.version.description) } ?? "-")
        if let pin = target.pin {
            desired += " (pinned until a tag above \(safe(pin.ceiling.description)))"
        }
        lines.append(desired)
        if let pending = target.pending {
            lines.append("pending  \(safe(pending.version.description)) \(state(pending.state))")
            if let held = pending.heldBecause {
                lines.append("         held: \(safe(held)); applies at " + (pending.appliesAt.map(time) ?? "no opening within a year"))
            }
            lines.append("         \(pending.runID)")
        } else {
            lines.append("pending  -")
        }
        // An interrupted run that is not the pending one (the pending line already says it).
        for run in interrupted where run.id != target.pending?.runID {
            lines.append("!! INTERRUPTED \(run.id)")
        }
        if target.alerts > 0 {
            lines.append("!! \(plural(target.alerts, "ALERT"))")
        }
        if let drift = target.drift {
            switch drift.outcome {
            case "drift":
                lines.append("!! DRIFT   \(plural(drift.addresses.count, "resource")) differ from \(safe(drift.version.description)) "
                             + "(checked \(time(drift.checkedAt))); lockstep drift fix \(safe(target.environment.rawValue))")
                for address in drift.addresses.prefix(5) { lines.append("         \(safe(address, limit: 200))") }
            case "failed":
                lines.append("drift    check failed \(time(drift.checkedAt)): \(safe(drift.detail, limit: 200))")
            default:
                lines.append("drift    none (checked \(time(drift.checkedAt)))")
            }
        }
        return lines
    }

    // MARK: tags

    /// The tag decisions of one environment: every tag with its version, decision and, for
    /// a rejection, every reason (one per line). The same form online and offline.
    static func tagDecisions(_ list: APITagDecisionList) -> String {
        guard !list.decisions.isEmpty else {
            return "no release tags of \(safe(list.environment.rawValue)) have been decided"
        }
        var table = TextTable(header: ["PROJECT", "TAG", "VERSION", "DECISION", "COMMIT", "REASON"])
        for decision in list.decisions {
            let reasons = decision.rejections.map { "\(safe($0.message, limit: 300)) [\($0.code)]" }
            table.add([[safe(decision.project.rawValue)], [safe(decision.tag)],
                       [decision.version.map { safe($0.description) } ?? "-"],
                       [decision.accepted ? "accepted" : "REJECTED"],
                       [decision.commit.map { String($0.rawValue.prefix(8)) } ?? "-"],
                       reasons.isEmpty ? [""] : reasons])
        }
        let accepted = list.decisions.filter(\.accepted).count
        return table.render() + "\n\n\(plural(accepted, "tag")) accepted, \(list.decisions.count - accepted) rejected"
    }

    // MARK: runs

    static func runTable(_ runs: [APIRunSummary]) -> String {
        guard !runs.isEmpty else { return "no runs match" }
        var table = TextTable(header: ["RUN", "TARGET", "TAG", "STATE", "DIGEST", "UPDATED (UTC)"])
        for run in runs {
            table.add(line: [
                run.id.rawValue,
                safe(run.target.description),
                safe(run.tag, limit: 80) + (run.rollback ? " (rollback)" : ""),
                state(run.state),
                run.digest.map { String($0.rawValue.prefix(12)) } ?? "-",
                time(run.updatedAt),
            ])
        }
        return table.render()
    }

    // MARK: show

    /// Everything a reviewer needs, ending with the digest on its own line and the exact
    /// command to approve it: the reviewer copies what they just read, never a digest from
    /// somewhere else.
    static func detail(_ run: APIRunDetail) -> String {
        var out: [String] = []
        out.append("run        \(run.id)")
        out.append("target     \(safe(run.target.description))")
        out.append("state      \(state(run.state))")
        out.append("tag        \(safe(run.tag, limit: 200)) (version \(safe(run.version.description)))" + (run.rollback ? ", a rollback" : ""))
        out.append("commit     \(run.commit)")
        out.append("tree       \(run.tree)")
        // Repository text below: each line escaped, so no terminal sequence reaches the screen.
        if let tagger = run.tagger { out.append("tagger     \(safe(tagger, limit: 200))") }
        if let signer = run.signer { out.append("signed by  \(safe(signer.description, limit: 300))") }
        if let prior = run.priorState { out.append("state      \(safe(prior.description, limit: 200)) (checked again before apply)") }
        if let merge = run.commitMessage?.split(separator: "\n").first { out.append("merge      \(safe(String(merge), limit: 200))") }
        if let message = run.tagMessage, !message.isEmpty {
            out.append("tag message:")
            for line in message.split(separator: "\n", omittingEmptySubsequences: false).prefix(20) {
                out.append("  \(safe(String(line), limit: 200))")
            }
        }
        out.append("created    \(time(run.createdAt))")
        out.append("updated    \(time(run.updatedAt))")

        out.append("")
        if let summary = run.summary {
            out.append("plan       \(summary.create) to create, \(summary.update) to update, \(summary.delete) to delete, \(summary.replace) to replace")
            if summary.destroyedAddresses.isEmpty {
                out.append("destroys   nothing")
            } else {
                out.append("destroys   \(plural(summary.destroyedAddresses.count, "resource")):")
                for address in summary.destroyedAddresses { out.append("  - \(safe(address, limit: 500))") }
            }
        } else {
            out.append("plan       not planned yet")
        }
        if let notice = truncationNotice(run) { out.append(notice) }

        if !run.checks.isEmpty {
            out.append("checks")
            for check in run.checks {
                let detail = check.detail.map { ": " + safe($0, limit: 1000) } ?? ""
                let overridable = !check.passed && check.mayOverride == true ? " (may be overridden: approve --override-check \(safe(check.name)) --reason …)" : ""
                out.append("  \(check.passed ? "passed" : "FAILED") \(safe(check.name))\(detail)\(overridable)")
                // A failed check's own words, last lines first cut: what the reviewer must read.
                if !check.passed, let output = check.output, !output.isEmpty {
                    for line in output.split(separator: "\n").suffix(15) { out.append("      \(safe(String(line), limit: 300))") }
                }
            }
        }

        out.append("approvals  \(run.approvals.count) of \(run.requiredApprovals)")
        for approval in run.approvals {
            out.append("  \(safe(approval.identity.rawValue)) at \(time(approval.time))"
                       + (approval.digest == run.digest ? "" : " (quoted another digest: \(approval.digest))")
                       + (approval.breakGlass == true ? " BREAK-GLASS" : "")
                       + ((approval.overrideChecks ?? []).isEmpty ? "" : " overriding " + (approval.overrideChecks ?? []).map { safe($0) }.joined(separator: ", "))
                       + (approval.reason.map { ": \(safe($0, limit: 300))" } ?? ""))
        }
        if let held = run.heldBecause {
            out.append("waiting    \(safe(held)); applies at " + (run.appliesAt.map(time) ?? "no opening within a year"))
            if let expiry = run.approvalsExpireAt {
                let late = run.appliesAt.map { $0 > expiry } ?? true
                out.append("           approvals valid until \(time(expiry))" + (late ? ": they expire before the run can apply (it will end expired)" : ""))
            }
        }
        if run.state == .awaitingApproval {
            out.append("may still approve: " + (run.mayApprove.isEmpty ? "nobody" : run.mayApprove.map { safe($0.rawValue) }.joined(separator: ", ")))
        }
        if !run.refusals.isEmpty {
            out.append("refused approvals")
            for refusal in run.refusals {
                out.append("  \(safe(refusal.identity.rawValue)) at \(time(refusal.time)): \(safe(refusal.code.rawValue)): \(safe(refusal.message, limit: 500))")
            }
        }
        if !run.alerts.isEmpty {
            out.append("ALERTS")
            for alert in run.alerts {
                out.append("  !! \(time(alert.time)) \(safe(alert.code.rawValue)): \(safe(alert.message, limit: 500))")
            }
        }
        if !run.transitions.isEmpty {
            out.append("history")
            for transition in run.transitions {
                let detail = transition.detail.map { " (\(safe($0, limit: 300)))" } ?? ""
                out.append("  \(time(transition.time))  \(transition.from) -> \(transition.to)  \(safe(transition.reason.rawValue)) by \(safe(transition.actor, limit: 80))\(detail)")
            }
        }

        if run.planRenderingState == .pending {
            out.append("")
            out.append("--- plan (redacted) ---")
            out.append("terraform is still rendering this plan's text; the summary and checks above are complete. Run this again in a moment.")
        } else if run.planRenderingState == .failed {
            out.append("")
            out.append("--- plan (redacted) ---")
            out.append("the plan's text could not be rendered: \(terminalSafe(run.planRendering ?? "", limit: 600, keepNewlines: false)); "
                       + "the summary and checks above are complete")
        } else if let rendering = run.planRendering {
            out.append("")
            out.append("--- plan (redacted) ---")
            // The daemon already bounds what it sends (`limits.plan_text_bytes`); this only
            // keeps a hostile or broken server from flooding the terminal, and says so.
            var body = terminalSafe(rendering, limit: renderingLimit, keepNewlines: true)
            while body.hasSuffix("\n") { body.removeLast() }
            out.append(body)
            if let notice = truncationNotice(run) {
                out.append("--- plan text cut here ---")
                out.append(notice)
            } else {
                out.append("--- end of plan ---")
            }
        }

        if run.state == .interrupted {
            out.append("")
            out.append("!! This run is INTERRUPTED: its apply was cut off and is never retried by itself.")
            out.append("!! Check the infrastructure, then run:")
            out.append("   lockstep resolve \(run.id) --as applied|failed --reason \"what you found\"")
        }

        out.append("")
        if let digest = run.digest {
            out.append("digest to quote:")
            out.append(digest.rawValue)
            if run.state == .awaitingApproval {
                out.append("")
                out.append("to approve this plan, run:")
                out.append("lockstep approve \(run.id) --digest \(digest.rawValue)")
            } else {
                out.append("(the run is \(run.state); it takes no approvals now)")
            }
        } else {
            out.append("no digest yet: the run has no plan to approve")
        }
        return out.joined(separator: "\n")
    }

    /// Unicode scalars of a rendering printed at most.
    static let renderingLimit = 1 << 30

    /// The line telling a reviewer the rendering is only the start of the plan's text, or nil.
    /// It says plainly what the approval still rests on: the summary and the checks come from
    /// the plan's complete JSON, bound to the digest.
    static func truncationNotice(_ run: APIRunDetail) -> String? {
        guard let rendering = run.planRendering else { return nil }
        let shown = rendering.utf8.count
        let total = max(run.planRenderingBytes ?? shown, shown)
        let cutHere = rendering.unicodeScalars.count > renderingLimit
        guard run.planRenderingTruncated || cutHere else { return nil }
        let what = cutHere ? "more than this terminal view keeps" : byteSize(shown)
        return "!! plan text truncated: showing the first \(what) of \(byteSize(total)); the summary and the checks cover the whole plan"
    }

    /// `812 bytes`, `4.0 MiB`, `52.3 MiB` (rounded down to a tenth).
    static func byteSize(_ bytes: Int) -> String {
        for (unit, size) in [("GiB", 1_073_741_824.0), ("MiB", 1_048_576.0), ("KiB", 1_024.0)] where Double(bytes) >= size {
            return String(format: "%.1f", (Double(bytes) / size * 10).rounded(.down) / 10) + " " + unit
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    // MARK: changes

    static func afterApproval(_ run: APIRunDetail) -> String {
        var lines = ["approval recorded for run \(run.id) (\(safe(run.target.description))): \(run.approvals.count) of \(run.requiredApprovals)"]
        lines.append("state: \(state(run.state))")
        if run.state == .awaitingApproval {
            lines.append("may still approve: " + (run.mayApprove.isEmpty ? "nobody" : run.mayApprove.map { safe($0.rawValue) }.joined(separator: ", ")))
        } else if run.state == .approved, let held = run.heldBecause {
            lines.append("the run has its approvals but is held (\(safe(held))); it applies at "
                         + (run.appliesAt.map(time) ?? "no opening within a year"))
        } else if run.state == .approved {
            lines.append("the run has its approvals; the daemon applies it once every precondition holds")
        }
        return lines.joined(separator: "\n")
    }

    static func afterRejection(_ run: APIRunDetail) -> String {
        "run \(run.id) (\(safe(run.target.description))) rejected; state: \(state(run.state))"
    }

    static func afterResolution(_ run: APIRunDetail, as resolution: String) -> String {
        "run \(run.id) (\(safe(run.target.description))) resolved as \(resolution); state: \(state(run.state))"
    }

    static func afterRollback(_ result: APIRollbackResult) -> String {
        guard !result.runs.isEmpty else { return "no rollback runs were created" }
        var lines: [String] = []
        for run in result.runs {
            lines.append("rollback run \(run.id): \(safe(run.target.description)) to \(safe(run.version.description)) (tag \(safe(run.tag))), state \(state(run.state))")
        }
        lines.append("each is planned, checked and approved like any run; review with: lockstep show \(result.runs[0].id)")
        return lines.joined(separator: "\n")
    }
}
