import LockstepCore
import RunStore
import Metrics

/// What the gate measures, through swift-metrics (the daemon exposes it at `/metrics`,
/// docs/CONTRACT.md §5, "Metrics"; without a metrics backend every call here does nothing).
///
/// Labels stay few and bounded so a scrape stays small however many releases go by: an
/// environment (named in the agent config), an outcome or a reason (fixed codes). Never a run
/// id, a tag, a commit or a project.
enum GateMetrics {
    /// Time from the start of a plan (export, `init`, `plan`, `show`) to its outcome.
    static func planFinished(_ environment: EnvironmentName, _ event: RunEvent, after duration: Duration) {
        let outcome = switch event {
        case .planSucceeded(_, let hasChanges): hasChanges ? "changes" : "no_changes"
        case .planCancelled: "cancelled"
        default: "failed"
        }
        Timer(label: "lockstep_plan_duration_seconds", dimensions: [("environment", environment.rawValue), ("outcome", outcome)])
            .recordNanoseconds(nanoseconds(duration))
    }

    /// Time `terraform apply` took, with whether it succeeded.
    static func applyFinished(_ environment: EnvironmentName, _ event: RunEvent, after duration: Duration) {
        let outcome = if case .applySucceeded = event { "succeeded" } else { "failed" }
        Timer(label: "lockstep_apply_duration_seconds", dimensions: [("environment", environment.rawValue), ("outcome", outcome)])
            .recordNanoseconds(nanoseconds(duration))
    }

    /// One fetch of the delivery repository.
    static func fetched(after duration: Duration, failed: Bool) {
        Timer(label: "lockstep_fetch_duration_seconds", dimensions: [("outcome", failed ? "failed" : "succeeded")])
            .recordNanoseconds(nanoseconds(duration))
        if failed { Counter(label: "lockstep_fetch_failures_total").increment() }
    }

    /// A tag decision newly recorded as a rejection: one count per reason it gives.
    static func tagRejected(_ environment: EnvironmentName, _ rejections: [TagRejection]) {
        for code in Set(rejections.map(\.code.rawValue)) {
            Counter(label: "lockstep_tag_rejections_total", dimensions: [("environment", environment.rawValue), ("reason", code)])
                .increment()
        }
    }

    /// One drift check, by outcome (`no_drift`, `drift`, `failed`).
    static func driftChecked(_ environment: EnvironmentName, _ outcome: DriftCheck.Outcome) {
        Counter(label: "lockstep_drift_checks_total", dimensions: [("environment", environment.rawValue), ("outcome", outcome.rawValue)])
            .increment()
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
