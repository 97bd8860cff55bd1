import Foundation
import LockstepConfig
import LockstepCore
import Metrics
import Prometheus
import RunStore

/// `/metrics` in the Prometheus text format (docs/CONTRACT.md §5, "Metrics").
///
/// Two kinds of figure. What happens is counted where it happens, through swift-metrics: plan,
/// apply and fetch durations (`GateMetrics`), webhook deliveries, outbox deliveries, tag
/// rejections. What *is* is read from the store at each scrape: runs by environment and state,
/// approvals waiting and the age of the oldest, so a restart or another process's write never
/// leaves a stale gauge. Labels are environments (from the agent config), states, outcomes and
/// reason codes: never a run id, a tag, a commit or a project.
enum DaemonMetrics {
    /// Histogram buckets for terraform commands: a second to an hour.
    static let commandBuckets: [Duration] = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600].map { .seconds($0) }
    /// Histogram buckets for a fetch of the delivery repository.
    static let fetchBuckets: [Duration] = [.milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                           .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
                                           .seconds(60), .seconds(120)]

    /// The process's registry, with swift-metrics bootstrapped onto it (once per process: the
    /// bootstrap cannot be undone or repeated).
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "lockstep_plan_duration_seconds": commandBuckets,
            "lockstep_apply_duration_seconds": commandBuckets,
            "lockstep_fetch_duration_seconds": fetchBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// The scrape: the store's gauges refreshed, then everything in the text format. A store that
    /// cannot be read leaves the gauges as they were and counts the failure.
    static func render(store: any RunStore, agent: AgentConfig, now: Date = Date()) async -> [UInt8] {
        let registry = self.registry
        do {
            let runs = try await store.runSummaries(target: nil, states: nil)
            for environment in agent.environments.keys {
                let mine = runs.filter { $0.target.environment == environment }
                for state in RunState.allCases {
                    registry.makeGauge(name: "lockstep_runs", labels: [("environment", environment.rawValue), ("state", state.rawValue)],
                                       help: "Runs in the store by environment and state.")
                        .set(Int64(mine.count { $0.state == state }))
                }
                let waiting = mine.filter { $0.state == .awaitingApproval }
                registry.makeGauge(name: "lockstep_approvals_waiting", labels: [("environment", environment.rawValue)],
                                   help: "Runs whose plan waits for approval.")
                    .set(Int64(waiting.count))
                let oldest = waiting.map(\.updatedAt).min().map { max(0, now.timeIntervalSince($0)) } ?? 0
                registry.makeGauge(name: "lockstep_approval_oldest_wait_seconds", labels: [("environment", environment.rawValue)],
                                   help: "How long the oldest plan waiting for approval has waited (0 when none waits).")
                    .set(oldest)
            }
        } catch {
            registry.makeCounter(name: "lockstep_metrics_store_read_failures_total",
                                 help: "Scrapes whose store read failed (the run gauges kept their last values).")
                .increment()
        }
        return registry.emitToBuffer()
    }
}
