import Foundation
import Testing
@testable import LockstepDaemon

/// The poll loop's wait, as webhook deliveries drive it: a request ends the wait, any number of
/// requests before a pass make one pass, and a request is never lost. Each wait below would last
/// an hour if the request were lost; the suite's time limit turns that into a failure (no test
/// here measures how fast a wait ends: a busy test process schedules tasks late).
@Suite("Pass requests: coalesced, never lost, and a wait ends on the first one", .timeLimit(.minutes(5)))
struct PassTriggerTests {
    /// A wait that only a request (or cancellation) ends in time.
    func timedWait(_ trigger: PassTrigger) async {
        await trigger.wait(upTo: .seconds(3_600))
    }

    @Test("a request made while the loop waits ends the wait")
    func requestWakesWait() async throws {
        let trigger = PassTrigger()
        let waiting = Task { await timedWait(trigger) }
        while !trigger.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        trigger.request()
        await waiting.value
        #expect(!trigger.isWaiting)
    }

    @Test("a request made while a pass runs (before the loop waits) is kept: the next wait ends on it")
    func requestDuringPassIsKept() async {
        let trigger = PassTrigger()
        trigger.passStarting()
        trigger.request()
        await timedWait(trigger)
    }

    @Test("a thousand requests before a pass make one pass: once the pass starts, the next wait waits")
    func burstsCoalesce() async {
        let trigger = PassTrigger()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<1_000 { group.addTask { trigger.request() } }
        }
        await timedWait(trigger)
        trigger.passStarting()
        let clock = ContinuousClock()
        let started = clock.now
        await trigger.wait(upTo: .milliseconds(300))
        #expect(clock.now - started >= .milliseconds(250), "no request was left after the pass started")
    }

    @Test("a cancelled wait ends and leaves no waiter behind: a later request is kept for the next wait")
    func cancelledWait() async throws {
        let trigger = PassTrigger()
        let waiting = Task { await timedWait(trigger) }
        while !trigger.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        waiting.cancel()
        await waiting.value
        #expect(!trigger.isWaiting)
        trigger.request()
        await timedWait(trigger)
    }
}
