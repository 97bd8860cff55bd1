import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import TerraformRunner

/// The bodies of notifications: Lockstep's JSON (documented in docs/CONTRACT.md, "Notifications")
/// and Slack's incoming-webhook message. Neither carries the plan's body or addresses.
enum NotificationBody {
    struct JSONBody: Encodable {
        struct Run: Encodable {
            var id: String
            var tag: String
            var version: String
            var commit: String
            var state: String
            var digest: String?
            var url: String?
        }
        struct Plan: Encodable {
            var create: Int
            var update: Int
            var replace: Int
            var delete: Int
        }
        struct Approvals: Encodable {
            var required: Int
            var approvedBy: [String]
        }
        var event: String
        var delivery: String
        var time: String
        var project: String
        var environment: String
        var run: Run?
        var plan: Plan?
        var approvals: Approvals?
        var reason: String?
        var detail: String?
        var tag: String?
        var rejections: [String]?
        /// The store's audit head when this was sent: the receiver keeps a witness of it
        /// outside the store (`lockstep audit verify --expect-head`).
        var auditHead: String?
    }

    static func json(_ event: OutboxEvent, _ kind: NotificationEvent, _ report: RunReport?, redactor: Redactor,
                     delivery: String, auditHead: AuditHash? = nil) -> Data {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var body = JSONBody(event: kind.rawValue, delivery: delivery, time: formatter.string(from: event.time),
                            project: event.target.project.rawValue, environment: event.target.environment.rawValue)
        if let report {
            let run = report.run.summary.run
            body.run = .init(id: run.id.rawValue, tag: run.tagName, version: run.version.description,
                             commit: run.commit.rawValue, state: report.state.rawValue,
                             digest: report.run.planDigest?.rawValue, url: report.runURL)
            body.plan = report.model.map { .init(create: $0.create, update: $0.update, replace: $0.replace, delete: $0.delete) }
            body.approvals = .init(required: report.requiredApprovals, approvedBy: event.facts.approvers)
        }
        body.reason = event.facts.reason
        body.detail = event.facts.detail.map { String($0.prefix(RunReport.detailLimit)) }
        body.tag = event.facts.tagName
        body.auditHead = auditHead?.hex
        body.rejections = event.facts.rejections.isEmpty ? nil : event.facts.rejections
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let data = (try? encoder.encode(body)) ?? Data("{}".utf8)
        // Redacted as text: a secret is replaced wherever in the JSON it is (inside a string,
        // so the JSON stays valid).
        return Data(redactor.redact(String(decoding: data, as: UTF8.self)).utf8)
    }

    static func slack(_ event: OutboxEvent, _ kind: NotificationEvent, _ report: RunReport?, redactor: Redactor) -> Data {
        let target = "\(event.target.project.rawValue) → \(event.target.environment.rawValue)"
        var lines: [String]
        switch kind {
        case .tagRejected:
            lines = ["Lockstep: tag \(escaped(event.facts.tagName ?? "?")) rejected for \(escaped(target))"]
            lines += event.facts.rejections.prefix(5).map { "• " + escaped($0) }
        case .drift:
            let what = event.facts.reason == "drift" ? "DRIFT in" : "drift check failed for"
            lines = ["Lockstep: \(what) \(escaped(target)) at \(escaped(event.facts.tagName ?? "?"))"]
            if let detail = event.facts.detail { lines.append(escaped(String(detail.prefix(500)))) }
        default:
            guard let report else { return Data("{}".utf8) }
            let run = report.run.summary.run
            var head = "Lockstep: \(escaped(target)) \(escaped(run.version.description)): \(escaped(report.statusDescription))"
            if let url = report.runURL { head += " <\(escaped(url))|run \(escaped(run.id.rawValue))>" }
            lines = [head]
            if kind == .approvalRecorded, let who = event.facts.approvedBy { lines.append("Approved by \(escaped(who))") }
            if kind == .awaitingApproval, let digest = report.run.planDigest {
                lines.append("`lockstep approve \(escaped(run.id.rawValue)) --digest \(escaped(digest.rawValue))`")
            }
            if let detail = event.facts.detail, [.failed, .interrupted, .breakGlassApply].contains(kind) {
                lines.append("```" + escaped(String(detail.prefix(500))).replacingOccurrences(of: "```", with: "'''") + "```")
            }
        }
        let text = redactor.redact(lines.joined(separator: "\n"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(["text": text])) ?? Data("{}".utf8)
    }

    /// Slack's three control characters, escaped as Slack asks: nothing in a tag or a reason can
    /// become a mention (`<!channel>`) or a link.
    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
