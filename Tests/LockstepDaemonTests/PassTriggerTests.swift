import Foundation
import Testing
@testable import LockstepDaemon

/// The poll loop's wait, as webhook deliveries drive it: a request ends the wait at once, any
/// number of requests before a pass make one pass, and a request is never lost.
@Suite("Pass requests: coalesced, never lost, and a wait ends on the first one")
struct PassTriggerTests {
    /// Runs `wait(upTo: 60 s)` and returns how long it took, failing past `limit`.
    func timedWait(_ trigger: PassTrigger, limit: Duration = .seconds(20),
                   sourceLocation: SourceLocation = #_sourceLocation) async -> Duration {
        let clock = ContinuousClock()
        let started = clock.now
        await trigger.wait(upTo: .seconds(60))
        let elapsed = clock.now - started
        #expect(elapsed < limit, "the wait did not end on the request", sourceLocation: sourceLocation)
        return elapsed
    }

    @Test("a request made while the loop waits ends the wait")
    func requestWakesWait() async throws {
        let trigger = PassTrigger()
        let waiting = Task { await timedWait(trigger) }
        while !trigger.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        trigger.request()
        _ = await waiting.value
        #expect(!trigger.isWaiting)
    }

    @Test("a request made while a pass runs (before the loop waits) is kept: the next wait ends at once")
    func requestDuringPassIsKept() async {
        let trigger = PassTrigger()
        trigger.passStarting()
        trigger.request()
        _ = await timedWait(trigger)
    }

    @Test("a thousand requests before a pass make one pass: once the pass starts, the next wait waits")
    func burstsCoalesce() async {
        let trigger = PassTrigger()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<1_000 { group.addTask { trigger.request() } }
        }
        _ = await timedWait(trigger)
        trigger.passStarting()
        let clock = ContinuousClock()
        let started = clock.now
        await trigger.wait(upTo: .milliseconds(300))
        #expect(clock.now - started >= .milliseconds(250), "no request was left after the pass started")
    }

    @Test("a cancelled wait ends at once and leaves no waiter behind: a later request is kept for the next wait")
    func cancelledWait() async throws {
        let trigger = PassTrigger()
        let waiting = Task { await timedWait(trigger) }
        while !trigger.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        waiting.cancel()
        _ = await waiting.value
        #expect(!trigger.isWaiting)
        trigger.request()
        _ = await timedWait(trigger)
    }
}
