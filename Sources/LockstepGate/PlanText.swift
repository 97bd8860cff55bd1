import Foundation
import LockstepCore
import Logging
import RunStore
import TerraformRunner

/// A plan stored before its text was rendered: what rendering it needs.
struct PendingRendering: Sendable {
    /// The `show` invocation of the plan (plan credentials, nothing writable).
    var invocation: TerraformRunner.Invocation
    /// The sealed bytes, as hashed.
    var contents: Data
    /// What the plan's JSON marked sensitive: redacted from the text too.
    var sensitiveValues: Set<String>
}

extension Gate {
    /// Renders terraform's text of a plan stored as `.pending` and attaches it to the run.
    ///
    /// Why after the run is stored: the summary, the checks and every approval rest on the plan's
    /// JSON, which is complete before the text exists; the text is for reading, and a second
    /// terraform process run before the run could move on was the largest wait between a tag and
    /// a reviewable plan after `plan` itself. It comes moments later, from a copy of the same
    /// sealed bytes. A text that cannot be rendered (or an agent that stops meanwhile) is
    /// attached as `.failed` with the reason; the run is unaffected.
    func renderPendingText(of run: StoredRun) async {
        guard let job = pendingRenderings.removeValue(forKey: run.id) else { return }
        let log = runLogger(run)
        var rendering: PlanRendering?
        var problem = ""
        do {
            let copy = try planCopy(job.contents, run: run.id, for: "render")
            defer { try? FileManager.default.removeItem(at: copy.deletingLastPathComponent()) }
            var invocation = job.invocation
            invocation.readable = [treeDirectory(run.id), copy.deletingLastPathComponent()]
            rendering = try await runner.renderText(invocation, planFile: copy, sensitiveValues: job.sensitiveValues)
        } catch let failure as RunFailure {
            problem = failure.reason
        } catch {
            problem = Task.isCancelled ? "the agent stopped before terraform rendered it" : safeDescription(error)
        }
        let attached: Bool
        do {
            let (store, id) = (store, run.id)
            let (text, truncated, bytes) = rendering.map { ($0.text, $0.truncated, $0.bytes) }
                ?? (shownToReviewers(problem), false, 0)
            let state: RenderingState = rendering == nil ? .failed : .ready
            attached = try await uncancelled {
                try await store.attachRendering(id, rendering: text, truncated: truncated, bytes: bytes, state: state)
            }
        } catch {
            log.warning("the plan's text could not be stored", metadata: ["error": "\(safeDescription(error))"])
            return
        }
        guard attached else { return }
        if let rendering, rendering.truncated {
            await appendLog("lockstep: the plan's text is \(ByteSize(rendering.bytes)); only its first "
                            + "\(ByteSize(rendering.text.utf8.count)) are kept (limits.plan_text_bytes); the summary and "
                            + "the checks cover the whole plan", stream: .lockstep, run: run.id)
        } else if rendering == nil {
            log.warning("the plan's text could not be rendered", metadata: ["reason": "\(problem)"])
            await appendLog("lockstep: the plan's text could not be rendered: \(shownToReviewers(problem)); the summary, "
                            + "the checks and the JSON are complete", stream: .lockstep, run: run.id)
        }
    }
}
