import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tracks one child so signals go to the right place exactly while it lives.
final class ProcessControl: Sendable {
    private struct State {
        var pid: pid_t = 0
        var exited = false
        var interruption: Interruption?
        var escalation: Task<Void, Never>?
    }

    private let state = Mutex(State())
    private let gracePeriod: Duration

    init(gracePeriod: Duration) { self.gracePeriod = gracePeriod }

    func started(pid: pid_t) { state.withLock { $0.pid = pid } }

    var interruption: Interruption? { state.withLock { $0.interruption } }

    /// SIGINT first: terraform stops cleanly, tells providers to stop and
    /// releases its state lock. If it is still running after the grace period,
    /// SIGKILL the whole process group so nothing is left behind.
    func interrupt(_ reason: Interruption) {
        let grace = gracePeriod
        state.withLock { state in
            guard !state.exited, state.interruption == nil, state.pid > 0 else {
                if state.interruption == nil, !state.exited { state.interruption = reason }
                return
            }
            state.interruption = reason
            // To the whole group, as a terminal's Ctrl-C would: terraform 1.0's
            // panic-wrapper parent ignores a SIGINT sent to it alone and relies on
            // its child receiving the group signal.
            kill(-state.pid, SIGINT)
            let pid = state.pid
            state.escalation = Task { [weak self] in
                try? await Task.sleep(for: grace)
                guard !Task.isCancelled else { return }
                self?.killGroupIfRunning(pid)
            }
        }
    }

    private func killGroupIfRunning(_ pid: pid_t) {
        state.withLock { state in
            if !state.exited { kill(-pid, SIGKILL) }
        }
    }

    /// Called once the child has exited and before it is reaped (its pid, and so
    /// its process group id, cannot be reused yet). Anything still in its process
    /// group is an orphan (a provider or a local-exec child): kill it.
    func exited() {
        state.withLock { state in
            state.exited = true
            state.escalation?.cancel()
            state.escalation = nil
            if state.pid > 0 { kill(-state.pid, SIGKILL) }
        }
    }
}

/// Delivers the child's exit status once; waiting is not cancellable (an
/// `AsyncStream` iterator would return early on cancellation and the runner
/// would then kill terraform without the graceful SIGINT).
final class ExitWaiter: Sendable {
    private struct State {
        var status: (Int32, Bool)?
        var continuation: CheckedContinuation<(Int32, Bool), Never>?
    }

    private let state = Mutex(State())

    func finish(_ code: Int32, signalled: Bool) {
        let continuation = state.withLock { state -> CheckedContinuation<(Int32, Bool), Never>? in
            state.status = (code, signalled)
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: (code, signalled))
    }

    func wait() async -> (Int32, Bool) {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> (Int32, Bool)? in
                if let status = state.status { return status }
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
