import Foundation
import Logging
import Metrics
import RunStore

/// Delivers the outbox to its sinks (docs/ARCHITECTURE.md, "The outbox").
///
/// Each sink runs in a task of its own, in event order, and moves its position in the store
/// only after an event was delivered (or given up): a restart, even after kill -9, resumes at
/// the first event not delivered, so an event is delivered at least once. A sink that fails
/// waits (what the other side asked for, else a doubling backoff up to five minutes) and tries
/// the same event again; it never blocks another sink, and nothing here writes a run: a forge
/// that is down, slow, rate-limiting or answering garbage changes nothing about the gate.
///
/// A sink seen for the first time starts at the newest event: configuring a forge does not
/// replay the store's history onto it.
public final class OutboxWorker: Sendable {
    /// Events read from the store at once.
    static let batch = 100
    /// How often an idle sink looks for new events.
    public static let idleWait: Duration = .milliseconds(250)
    /// Longest backoff between two tries of one event.
    public static let longestBackoff: Duration = .seconds(300)
    /// Tries of an event whose answers cannot be read: a forge answering garbage is tried this
    /// often, then the event is given up.
    static let garbageTries = 5

    let store: any RunStore
    let sinks: [any OutboxSink]
    let logger: Logger
    let firstBackoff: Duration

    public init(store: any RunStore, sinks: [any OutboxSink], logger: Logger, firstBackoff: Duration = .seconds(1)) {
        self.store = store
        self.sinks = sinks
        self.logger = logger
        self.firstBackoff = firstBackoff
    }

    /// True when there is no sink: ``run()`` would return at once.
    public var isIdle: Bool { sinks.isEmpty }

    /// Runs every sink until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for sink in sinks {
                group.addTask { await self.run(sink) }
            }
        }
    }

    private func run(_ sink: any OutboxSink) async {
        var logger = self.logger
        logger[metadataKey: "outbox.sink"] = "\(sink.name)"
        guard var position = await startingPosition(sink, logger) else { return }
        while !Task.isCancelled {
            let events: [OutboxEvent]
            do {
                events = try await store.outboxEvents(after: position, limit: Self.batch)
            } catch {
                logger.warning("the outbox could not be read", metadata: ["error": "\(error)"])
                guard (try? await Task.sleep(for: .seconds(5))) != nil else { return }
                continue
            }
            if events.isEmpty {
                guard (try? await Task.sleep(for: Self.idleWait)) != nil else { return }
                continue
            }
            var unsaved = false
            for event in events {
                guard let sent = await deliver(event, to: sink, logger) else { return }
                position = event.id
                unsaved = true
                // Kept after every event sent, so a restart repeats at most one; events the sink
                // had nothing to send for are kept with the next one, or at the end of the batch.
                if sent, await save(position, sink, logger) { unsaved = false }
            }
            if unsaved { _ = await save(position, sink, logger) }
        }
    }

    private func save(_ position: Int64, _ sink: any OutboxSink, _ logger: Logger) async -> Bool {
        do {
            try await store.setOutboxPosition(of: sink.name, to: position, at: Date())
            return true
        } catch {
            logger.warning("the outbox position could not be stored; an event may be sent again after a restart",
                           metadata: ["outbox.event": "\(position)", "error": "\(error)"])
            return false
        }
    }

    private func startingPosition(_ sink: any OutboxSink, _ logger: Logger) async -> Int64? {
        while !Task.isCancelled {
            do {
                if let position = try await store.outboxPosition(of: sink.name) { return position }
                let newest = try await store.outboxLastEventID()
                try await store.setOutboxPosition(of: sink.name, to: newest, at: Date())
                logger.info("new outbox sink: starts with the next event", metadata: ["outbox.event": "\(newest)"])
                return newest
            } catch {
                logger.warning("the outbox position could not be read", metadata: ["error": "\(error)"])
                guard (try? await Task.sleep(for: .seconds(5))) != nil else { return nil }
            }
        }
        return nil
    }

    /// `lockstep_outbox_deliveries_total{destination, result}`: the destination's kind (`forge`,
    /// `notification`), never its URL.
    static func count(_ sink: any OutboxSink, _ result: String) {
        let destination = sink.name.split(separator: "/").first.map(String.init) ?? "unknown"
        Counter(label: "lockstep_outbox_deliveries_total", dimensions: [("destination", destination), ("result", result)]).increment()
    }

    /// Tries `event` until it is delivered or given up: whether anything was sent, nil when
    /// cancelled first.
    private func deliver(_ event: OutboxEvent, to sink: any OutboxSink, _ logger: Logger) async -> Bool? {
        var backoff = firstBackoff
        var tries = 0
        while !Task.isCancelled {
            tries += 1
            do {
                let sent = try await sink.deliver(event)
                if sent { Self.count(sink, "sent") }
                if tries > 1 {
                    logger.notice("outbox event delivered after retries", metadata: ["outbox.event": "\(event.id)", "tries": "\(tries)"])
                }
                return sent
            } catch {
                var after: Duration?
                switch error {
                case .permanent(let reason):
                    Self.count(sink, "given_up")
                    logger.error("outbox event given up", metadata: ["outbox.event": "\(event.id)", "reason": "\(reason)"])
                    return true
                case .unreadable(let reason) where tries >= Self.garbageTries:
                    Self.count(sink, "given_up")
                    logger.error("outbox event given up: the answers cannot be read",
                                 metadata: ["outbox.event": "\(event.id)", "tries": "\(tries)", "reason": "\(reason)"])
                    return true
                case .unreadable: after = nil
                case .transient(let wait, _): after = wait
                }
                Self.count(sink, "retried")
                let reason = error.reason
                let wait = after.map { max($0, .milliseconds(100)) } ?? backoff
                logger.warning("outbox event not delivered; trying again", metadata: [
                    "outbox.event": "\(event.id)", "tries": "\(tries)", "reason": "\(reason)",
                    "retry_in_ms": "\(wait.components.seconds * 1_000 + wait.components.attoseconds / 1_000_000_000_000_000)"])
                backoff = min(backoff * 2, Self.longestBackoff)
                guard (try? await Task.sleep(for: wait)) != nil else { return false }
            }
        }
        return nil
    }
}
