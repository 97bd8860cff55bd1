import Synchronization

/// Asks the poll loop for a pass now (a webhook delivery), coalescing bursts: any number of
/// requests before a pass starts make one pass, and a request that arrives while a pass runs
/// makes one more right after it, so a tag pushed during a burst is never missed and the
/// fetches stay bounded by the passes (docs/ARCHITECTURE.md, "Webhooks").
final class PassTrigger: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// A pass is wanted: wakes the loop if it waits, else leaves a note for its next wait.
    func request() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Whether the loop is waiting for a request now (for tests).
    var isWaiting: Bool { state.withLock { $0.waiter != nil } }

    /// A pass is starting: every request so far is answered by it.
    func passStarting() {
        state.withLock { $0.pending = false }
    }

    /// Waits `duration`, or less when a pass is requested (or was, since the last pass started),
    /// or the task is cancelled.
    func wait(upTo duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.nextRequest() }
            await group.next()
            group.cancelAll()
        }
    }

    private func nextRequest() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Cancellation sets the flag before its handler runs, and both take the lock: either
                // this sees the flag, or the handler sees the stored waiter.
                let resumeNow = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
