import Synchronization

/// One line printed by terraform, already redacted.
public struct OutputLine: Sendable, Equatable {
    /// Which pipe the line came from.
    public enum Stream: String, Sendable, Equatable {
        case stdout, stderr
    }

    public var stream: Stream
    public var text: String

    public init(stream: Stream, text: String) {
        self.stream = stream
        self.text = text
    }
}

/// Receives terraform's output live, line by line, so a UI can show progress.
///
/// Lines are redacted before they reach a sink; lines longer than the runner's
/// line limit arrive split. `receive` is called from a reader thread and must
/// not block for long (terraform stalls when its pipe is full).
public protocol TerraformOutputSink: Sendable {
    func receive(_ line: OutputLine)
}

/// Drops every line (the retained tail in the result is still kept).
public struct DiscardingOutputSink: TerraformOutputSink {
    public init() {}
    public func receive(_ line: OutputLine) {}
}

/// Forwards every line to a closure.
public struct ClosureOutputSink: TerraformOutputSink {
    private let body: @Sendable (OutputLine) -> Void
    public init(_ body: @escaping @Sendable (OutputLine) -> Void) { self.body = body }
    public func receive(_ line: OutputLine) { body(line) }
}

/// The last `capacity` bytes of a command's output, whole lines where possible.
///
/// Invariant: memory stays bounded whatever terraform prints (a plan that
/// prints 100 MB must not hold 100 MB); what was dropped is counted.
final class OutputTail: Sendable {
    private struct State {
        var lines: [String] = []
        var head = 0
        var bytes = 0
        var dropped = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = max(capacity, 1) }

    func append(_ line: String) {
        var line = line
        var size = line.utf8.count + 1
        if size > capacity {
            // Keep only the end of a huge line.
            let keep = capacity - 1
            let utf8 = Array(line.utf8)
            line = String(decoding: utf8[(utf8.count - keep)...], as: UTF8.self)
            let cut = size - (line.utf8.count + 1)
            size = line.utf8.count + 1
            state.withLock { $0.dropped += cut }
        }
        state.withLock { state in
            state.lines.append(line)
            state.bytes += size
            while state.bytes > capacity, state.head < state.lines.count {
                let removed = state.lines[state.head].utf8.count + 1
                state.bytes -= removed
                state.dropped += removed
                state.head += 1
            }
            // Compact now and then so the array does not grow with dropped lines.
            if state.head > 1024, state.head * 2 > state.lines.count {
                state.lines.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    var text: String {
        state.withLock { state in
            state.lines[state.head...].joined(separator: "\n")
        }
    }

    var droppedBytes: Int { state.withLock { $0.dropped } }
}
