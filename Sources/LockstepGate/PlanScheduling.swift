import Foundation
import LockstepConfig
import LockstepCore
import Logging
import RunStore

/// What became of one queued run handed to the planner.
enum PlanAttempt: Sendable {
    /// The calling task was cancelled before the plan started; the run stays `queued`.
    case notStarted(StoredRun)
    /// A plan of the same target is running in this process; the run waits for a later pass.
    case targetBusy(StoredRun)
    /// The run was driven (it may have lost the `queued → planning` compare-and-set).
    case driven(StoredRun, DriveResult)
    /// The store failed while driving it; the message is client-safe.
    case failed(StoredRun, String)
}

extension Gate {
    /// Plans queued runs of different targets concurrently, at most `max_concurrent_plans`
    /// at once across every pass of this gate, and never two on one target.
    ///
    /// Why bounded: each plan is a terraform process with its providers; a burst of tags
    /// must not exhaust the agent. Why never two on one target: two terraform processes on
    /// one state would fight over its lock and, worse, one run's plan would be judged
    /// against a state the other is about to change. The store allows one open run per
    /// target and the `queued → planning` compare-and-set lets one planner win; the
    /// in-memory ``planningTargets`` guard also keeps a stale snapshot of a run (taken by an
    /// overlapping pass) from even trying while a plan of its target runs.
    func planQueued(_ runs: [StoredRun], report: inout ReconcileReport) async {
        guard !runs.isEmpty else { return }
        var attempts: [PlanAttempt] = []
        // One child per queued run (at most one per target); the slots bound how many of
        // them run terraform, across overlapping passes too, where a per-group bound would not.
        await withTaskGroup(of: PlanAttempt.self) { group in
            for run in runs {
                group.addTask { await self.planOne(run) }
            }
            for await attempt in group {
                attempts.append(attempt)
            }
        }
        for attempt in attempts {
            switch attempt {
            case .notStarted(let run):
                logger.info("plan not started: stopping", metadata: ["run.id": "\(run.id)", "target": "\(run.target)"])
            case .targetBusy(let run):
                logger.info("plan deferred: the target is being planned", metadata: ["run.id": "\(run.id)",
                                                                                     "target": "\(run.target)"])
            case .driven(let run, let result):
                report.alertsRaised += result.alerts
                if !result.committed.isEmpty { report.runsAdvanced[run.id] = result.state }
            case .failed(let run, let problem):
                let line = "\(run.target): \(problem)"
                logger.error("plan failed to run", metadata: ["target": "\(run.target)", "error": "\(line)"])
                report.problems.append(line)
            }
        }
    }

    /// Plans one run: holds its target, then a slot, then drives `planStarted` (which
    /// persists `queued → planning` before terraform starts).
    func planOne(_ run: StoredRun) async -> PlanAttempt {
        guard !Task.isCancelled else { return .notStarted(run) }
        guard planningTargets.insert(run.target).inserted else { return .targetBusy(run) }
        defer { planningTargets.remove(run.target) }
        // A stop that arrives while waiting for a slot leaves the queue and starts nothing new.
        do {
            try await planSlots.acquire()
        } catch {
            return .notStarted(run)
        }
        defer { planSlots.release() }
        guard !Task.isCancelled else { return .notStarted(run) }
        do {
            return .driven(run, try await drive(run, .planStarted, actor: Self.systemActor))
        } catch {
            // A drive that failed after its plan was read leaves the plan's bytes for a text
            // that will not be rendered.
            pendingRenderings[run.id] = nil
            return .failed(run, safeDescription(error))
        }
    }
}
