import LockstepCore
import Synchronization
import Testing

/// Waits (yielding, never sleeping) until `condition` holds; fails the test after many tries.
private func eventually(_ what: Comment, _ condition: () -> Bool) async {
    for _ in 0..<100_000 where !condition() { await Task.yield() }
    #expect(condition(), what)
}

/// What the holders of a slot saw, shared by the test's tasks.
private final class Holders: Sendable {
    let state = Mutex((order: [Int](), now: 0, most: 0))
}

@Suite("Waiting for a slot")
struct AsyncSlotsTests {
    @Test("slots are handed out in arrival order, never more at once than there are", arguments: [1, 2])
    func fifoAndBounded(count: Int) async throws {
        let slots = AsyncSlots(count)
        let holders = Holders()
        for _ in 0..<count { try await slots.acquire() }
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<6 {
            tasks.append(Task {
                try await slots.withSlot {
                    holders.state.withLock { $0.order.append(index); $0.now += 1; $0.most = max($0.most, $0.now) }
                    await Task.yield()
                    holders.state.withLock { $0.now -= 1 }
                }
            })
            // Each task queues before the next starts, so arrival order is 0…5.
            await eventually("task \(index) queued") { slots.waiting == index + 1 }
        }
        for _ in 0..<count { slots.release() }
        for task in tasks { try await task.value }
        if count == 1 {
            // One holder at a time: they entered in the order they queued.
            #expect(holders.state.withLock { $0.order } == Array(0..<6))
        } else {
            #expect(holders.state.withLock { $0.order }.sorted() == Array(0..<6))
        }
        #expect(holders.state.withLock { $0.most } <= count)
    }

    @Test("a cancelled waiter leaves the queue, throws, and takes no slot")
    func cancelWhileWaiting() async throws {
        let slots = AsyncSlots(1)
        try await slots.acquire()
        let waiter = Task { try await slots.acquire() }
        await eventually("waiter queued") { slots.waiting == 1 }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(slots.waiting == 0)
        slots.release()
        // The slot is free again: the cancelled waiter did not keep it.
        try await slots.acquire()
        slots.release()
    }

    @Test("a task cancelled before it asks gets no slot")
    func cancelledBeforeAsking() async throws {
        let slots = AsyncSlots(1)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await slots.acquire()
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        try await slots.acquire()
        #expect(slots.waiting == 0)
    }

    @Test("a holder that let go gets a slot back even when cancelled")
    func reacquireIgnoringCancellation() async throws {
        let slots = AsyncSlots(1)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await slots.acquireIgnoringCancellation()
            return true
        }
        #expect(await task.value)
        #expect(slots.waiting == 0)
        let other = Task { try await slots.acquire() }
        await eventually("the slot is held") { slots.waiting == 1 }
        slots.release()
        try await other.value
    }
}
