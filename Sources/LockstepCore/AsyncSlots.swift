import Synchronization

/// The one way Lockstep's tasks wait for each other: a fixed number of slots, handed out in
/// arrival order, where a waiting task that is cancelled leaves the queue at once and gets a
/// `CancellationError` (docs/ARCHITECTURE.md, "Waiting").
///
/// One slot serialises (the gate's review and reconcile work, the in-process side of the
/// plugin-cache lock); `n` slots bound concurrency (`max_concurrent_plans`). A shutdown that
/// cancels the daemon's tasks therefore never leaves one parked behind a plan that will
/// never end.
///
/// Hand-written: neither the standard library nor swift-async-algorithms ships an async
/// semaphore with FIFO order and cancellation.
public final class AsyncSlots: Sendable {
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var free: Int
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
        /// Tickets issued and not yet granted or cancelled.
        var pending: Set<UInt64> = []
        /// Tickets cancelled before their waiter was queued.
        var cancelledEarly: Set<UInt64> = []
    }

    private let state: Mutex<State>
    /// How many holders at once.
    public let count: Int

    /// - Parameter count: how many holders at once (at least one).
    public init(_ count: Int) {
        precondition(count >= 1, "AsyncSlots needs at least one slot")
        self.count = count
        state = Mutex(State(free: count))
    }

    /// How many tasks are waiting now (for status and tests).
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// How many slots are held now (for status and tests).
    public var held: Int { count - state.withLock { $0.free } }

    /// Takes a slot, waiting in arrival order. Throws `CancellationError` (and holds nothing)
    /// when the task is cancelled before or while it waits.
    public func acquire() async throws(CancellationError) {
        if Task.isCancelled { throw CancellationError() }
        let ticket: UInt64? = state.withLock { state in
            if state.free > 0, state.waiters.isEmpty {
                state.free -= 1
                return nil
            }
            state.nextID += 1
            state.pending.insert(state.nextID)
            return state.nextID
        }
        guard let ticket else { return }
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let cancelled = state.withLock { state in
                        if state.cancelledEarly.remove(ticket) != nil {
                            state.pending.remove(ticket)
                            return true
                        }
                        state.waiters.append(Waiter(id: ticket, continuation: continuation))
                        return false
                    }
                    if cancelled { continuation.resume(throwing: CancellationError()) }
                }
            } onCancel: {
                let waiter: Waiter? = state.withLock { state in
                    if let index = state.waiters.firstIndex(where: { $0.id == ticket }) {
                        state.pending.remove(ticket)
                        return state.waiters.remove(at: index)
                    }
                    // Not queued yet: the queueing step sees this and gives up.
                    if state.pending.contains(ticket) { state.cancelledEarly.insert(ticket) }
                    return nil
                }
                waiter?.continuation.resume(throwing: CancellationError())
            }
        } catch {
            throw CancellationError()
        }
    }

    /// Takes a slot whatever the task's cancellation, for a holder that must get back a slot
    /// it let go of for a while (``Gate``'s apply inside a reconcile pass).
    public func acquireIgnoringCancellation() async {
        await Task.detached { [self] in
            // A detached task is never cancelled, so this cannot throw.
            try? await acquire()
        }.value
    }

    /// Gives a slot back; the longest waiter, if any, gets it.
    public func release() {
        let next: Waiter? = state.withLock { state in
            guard !state.waiters.isEmpty else {
                state.free += 1
                return nil
            }
            let waiter = state.waiters.removeFirst()
            state.pending.remove(waiter.id)
            return waiter
        }
        next?.continuation.resume()
    }

    /// Runs `body` holding a slot, on the caller's actor.
    public func withSlot<T: Sendable>(isolation: isolated (any Actor)? = #isolation,
                                      _ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }
}
