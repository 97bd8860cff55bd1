import Foundation
import LockstepCore

/// The payload of the audit entry each store write appends: defined once, so every
/// ``RunStore`` implementation writes the same entries for the same writes.
enum AuditPayload {
    static func runCreated(_ run: NewRun) -> [String: String] {
        var payload = [
            "state": RunState.queued.rawValue, "tag": run.tagName, "tag_object": run.tagObject.rawValue,
            "version": run.version.description, "commit": run.commit.rawValue, "tree": run.tree.rawValue,
        ]
        if let pin = run.rollbackPin {
            payload["pin_version"] = pin.version.description
            payload["pin_ceiling"] = pin.ceiling.description
        }
        if let signer = run.signer {
            payload["signer_format"] = signer.format
            payload["signer"] = signer.principal
            payload["signer_key"] = signer.key
        }
        return payload
    }

    static func transition(_ transition: RunTransition, digest: Digest?, priorState: StateBinding? = nil,
                           checks: [CheckResult]? = nil) -> [String: String] {
        var payload = ["from": transition.from.rawValue, "to": transition.to.rawValue,
                       "reason": transition.reason.code.rawValue]
        if let detail = transition.reason.detail { payload["detail"] = detail }
        if let digest { payload["digest"] = digest.rawValue }
        if let priorState {
            // The state the plan is bound to: `lockstep provenance` reads it from here.
            payload["state_lineage"] = priorState.lineage
            payload["state_serial"] = String(priorState.serial)
        }
        if let checks, !checks.isEmpty {
            payload["checks"] = checks.map { "\($0.name)=\($0.passed ? "passed" : "failed")" }.joined(separator: ",")
        }
        return payload
    }

    static func approval(_ approval: Approval) -> [String: String] {
        var payload = ["identity": approval.identity.rawValue, "digest": approval.digest.rawValue]
        if !approval.overrideChecks.isEmpty { payload["override_checks"] = approval.overrideChecks.joined(separator: ",") }
        if approval.breakGlass { payload["break_glass"] = "true" }
        if let reason = approval.reason { payload["approver_reason"] = reason }
        return payload
    }

    static func drift(_ check: DriftCheck) -> [String: String] {
        var payload = ["applied_run": check.runID.rawValue, "tag": check.tagName, "version": check.version.description,
                       "commit": check.commit.rawValue, "outcome": check.outcome.rawValue, "detail": check.detail]
        if !check.addresses.isEmpty { payload["addresses"] = check.addresses.prefix(50).joined(separator: ",") }
        return payload
    }

    static func refusal(_ refusal: ApprovalRefusal) -> [String: String] {
        approval(refusal.approval).merging(["code": refusal.code.rawValue, "reason": refusal.description]) { $1 }
    }

    static func tagDecision(_ decision: StoredTagDecision) -> [String: String] {
        var payload = ["tag": decision.tagName, "tag_object": decision.tagObject.rawValue,
                       "decision": decision.accepted ? "accepted" : "rejected"]
        if let commit = decision.commit { payload["commit"] = commit.rawValue }
        if let version = decision.version { payload["version"] = version.description }
        if !decision.rejections.isEmpty {
            payload["rejections"] = decision.rejections.map(\.code.rawValue).joined(separator: ",")
            payload["detail"] = decision.rejections.map(\.description).joined(separator: "; ")
        }
        return payload
    }

    static func applyPreconditions(_ report: ApplyPreconditionReport) -> [String: String] {
        var payload = ["result": report.allHold ? "hold" : "failed", "disposition": report.disposition.rawValue]
        if !report.failures.isEmpty {
            payload["failures"] = report.failures.map(\.code.rawValue).joined(separator: ",")
            payload["detail"] = report.failures.map(\.description).joined(separator: "; ")
        }
        return payload
    }

    static func alert(_ alert: RunAlert) -> [String: String] {
        ["code": alert.code.rawValue, "description": alert.description]
    }

    /// The outputs' SHA-256 and size, never their text.
    static func outputs(_ json: String) -> [String: String] {
        ["digest": Digest.sha256(of: json.utf8).rawValue, "bytes": String(json.utf8.count)]
    }

    static func pinCleared(_ pin: RollbackPin) -> [String: String] {
        ["version": pin.version.description, "ceiling": pin.ceiling.description]
    }
}
