import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Why Foundation.Process and not swift-subprocess: on Linux it already starts
// the child in its own process group (so `kill(-pid, …)` reaches providers and
// anything they spawn), it takes an explicit environment that replaces the
// parent's, and it never goes through a shell. That is everything this edge
// needs; output is read with plain blocking reads on dedicated threads so it
// can be redacted and streamed line by line with a bounded tail.

/// Why a run was stopped early by the runner.
enum Interruption: Sendable, Equatable {
    case timedOut
    case cancelled
}

struct ProcessRequest: Sendable {
    var executable: String
    var arguments: [String]
    var directory: URL
    var environment: [String: String]
    var timeout: Duration?
    var gracePeriod: Duration
    /// When set, stdout is captured whole up to this many bytes instead of streamed.
    var captureStdoutLimit: Int?
    var retainedBytes: Int
    var maxLineBytes: Int
    var redactor: Redactor
    var sink: any TerraformOutputSink
}

struct ProcessResult: Sendable {
    var exitCode: Int32
    var signalled: Bool
    var interruption: Interruption?
    var stdout: Data?
    var stdoutOverflowed: Bool
    var tail: String
    var droppedBytes: Int
    var duration: Duration
}

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

    /// Called once the child has been reaped. Anything still in its process
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

/// Splits a byte stream into lines, redacts them and hands them on.
///
/// Redaction happens on whole lines of bytes, before decoding, so a secret
/// split across two reads is still seen whole. A line longer than
/// `maxLineBytes` is handed on in pieces; a piece is only cut where no secret
/// can straddle the cut: the last `longest secret - 1` bytes always wait for
/// more input (a secret starting there may continue in the next read), and a
/// cut that would fall inside a secret moves before it, or after it when the
/// secret starts the piece. Only a run of overlapping secrets longer than the
/// piece limit plus two secrets is cut inside; the rest of the run is then
/// remembered and redacted at the start of the next piece. Without this a
/// 100 KB line carrying a secret across byte 65,536 would leave in two clear
/// halves.
struct LineAssembler {
    private var pending: [UInt8] = []
    /// Bytes at the start of `pending` that continue a secret cut earlier.
    private var carried = 0
    let maxLineBytes: Int
    let redactor: Redactor
    let emit: (String) -> Void

    init(maxLineBytes: Int, redactor: Redactor, emit: @escaping (String) -> Void) {
        self.maxLineBytes = max(maxLineBytes, 1)
        self.redactor = redactor
        self.emit = emit
    }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            pending.append(contentsOf: bytes[start..<index])
            splitLongLine()
            flush()
            start = index + 1
        }
        pending.append(contentsOf: bytes[start...])
        splitLongLine()
    }

    private mutating func splitLongLine() {
        let keep = max(redactor.longestPatternBytes - 1, 0)
        while pending.count > maxLineBytes {
            let limit = pending.count - keep
            guard limit > 0 else { return }
            var cut = min(maxLineBytes, limit)
            // Do not cut a UTF-8 sequence in two (a continuation byte is 10xxxxxx).
            var boundary = cut
            while boundary > 1, cut - boundary < 3, pending[boundary] & 0xC0 == 0x80 { boundary -= 1 }
            if pending[boundary] & 0xC0 != 0x80 { cut = boundary }
            let carriedNow = carried
            let split: (piece: [UInt8], rest: Int)? = pending.withUnsafeBytes { bytes in
                let covered = redactor.coveredRanges(in: bytes, forced: carriedNow > 0 ? 0..<carriedNow : nil)
                var rest = 0
                if let straddling = covered.first(where: { $0.lowerBound < cut && cut < $0.upperBound }) {
                    if straddling.lowerBound > 0 {
                        cut = straddling.lowerBound
                    } else if straddling.upperBound <= limit {
                        cut = straddling.upperBound
                    } else if bytes.count < maxLineBytes + 2 * keep + 2 {
                        return nil  // the secret's end is not known yet: wait for more bytes
                    } else {
                        // A run of overlapping secrets longer than any one: bound memory.
                        rest = straddling.upperBound - cut
                    }
                }
                let inside = covered.compactMap { range -> Range<Int>? in
                    range.lowerBound < cut ? range.lowerBound..<min(range.upperBound, cut) : nil
                }
                return (Redactor.replacing(inside, in: UnsafeRawBufferPointer(rebasing: bytes[0..<cut])), rest)
            }
            guard let split else { return }
            carried = split.rest
            pending.removeFirst(cut)
            emit(String(decoding: split.piece, as: UTF8.self))
        }
    }

    private mutating func flush() {
        if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
        let line: String = pending.withUnsafeBytes { bytes in
            let covered = redactor.coveredRanges(in: bytes, forced: carried > 0 ? 0..<min(carried, bytes.count) : nil)
            if covered.isEmpty { return String(decoding: bytes, as: UTF8.self) }
            return String(decoding: Redactor.replacing(covered, in: bytes), as: UTF8.self)
        }
        carried = 0
        pending.removeAll(keepingCapacity: true)
        emit(line)
    }

    mutating func finish() {
        if !pending.isEmpty || carried > 0 { flush() }
    }
}

/// Collects a stream whole, up to a limit; the rest is drained and counted.
private final class CaptureBuffer: @unchecked Sendable {
    // Only touched by the single reader thread, then read after it finished.
    var data = Data()
    var overflowed = false
}

enum ProcessExecution {
    static func run(_ request: ProcessRequest) async throws -> ProcessResult {
        let clock = ContinuousClock()
        let started = clock.now
        if Task.isCancelled {
            return ProcessResult(exitCode: -1, signalled: false, interruption: .cancelled, stdout: nil,
                                 stdoutOverflowed: false, tail: "", droppedBytes: 0, duration: .zero)
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: request.executable)
        process.arguments = request.arguments
        // Replaces the parent's environment entirely (never inherited).
        process.environment = request.environment
        process.currentDirectoryURL = request.directory
        guard let devNull = FileHandle(forReadingAtPath: "/dev/null") else {
            throw TerraformRunnerError(.launchFailed, "cannot open /dev/null")
        }
        process.standardInput = devNull
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe

        let exitWaiter = ExitWaiter()
        process.terminationHandler = { finished in
            exitWaiter.finish(finished.terminationStatus, signalled: finished.terminationReason == .uncaughtSignal)
        }

        let control = ProcessControl(gracePeriod: request.gracePeriod)
        do {
            try process.run()
        } catch {
            throw TerraformRunnerError(.launchFailed, "could not start terraform",
                                       context: ["executable": request.executable])
        }
        control.started(pid: process.processIdentifier)
        // Our copies of the write ends must be closed or EOF never arrives.
        try? stdoutPipe.fileHandleForWriting.close()
        try? stderrPipe.fileHandleForWriting.close()

        let tail = OutputTail(capacity: request.retainedBytes)
        let redactor = request.redactor
        let sink = request.sink
        let capture = CaptureBuffer()
        let captureLimit = request.captureStdoutLimit
        let maxLine = request.maxLineBytes

        async let stdoutDone: Void = pump(stdoutPipe.fileHandleForReading) { chunk, assembler in
            if let limit = captureLimit {
                if capture.data.count + chunk.count <= limit {
                    capture.data.append(contentsOf: chunk)
                } else {
                    capture.overflowed = true
                }
            } else {
                assembler.feed(chunk)
            }
        } makeAssembler: {
            LineAssembler(maxLineBytes: maxLine, redactor: redactor) { line in
                tail.append(line)
                sink.receive(OutputLine(stream: .stdout, text: line))
            }
        }
        async let stderrDone: Void = pump(stderrPipe.fileHandleForReading) { chunk, assembler in
            assembler.feed(chunk)
        } makeAssembler: {
            LineAssembler(maxLineBytes: maxLine, redactor: redactor) { line in
                tail.append(line)
                sink.receive(OutputLine(stream: .stderr, text: line))
            }
        }

        let timer: Task<Void, Never>? = request.timeout.map { timeout in
            Task {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { control.interrupt(.timedOut) }
            }
        }

        // The wait itself must ignore cancellation: cancelling only starts the
        // SIGINT → grace → SIGKILL sequence, and we still wait for the exit.
        let status = await withTaskCancellationHandler {
            await exitWaiter.wait()
        } onCancel: {
            control.interrupt(.cancelled)
        }
        timer?.cancel()
        control.exited()
        _ = await (stdoutDone, stderrDone)
        _ = devNull

        return ProcessResult(
            exitCode: status.0,
            signalled: status.1,
            interruption: control.interruption,
            stdout: captureLimit == nil ? nil : capture.data,
            stdoutOverflowed: capture.overflowed,
            tail: tail.text,
            droppedBytes: tail.droppedBytes,
            duration: clock.now - started
        )
    }

    /// Reads `handle` to EOF on a dedicated thread (blocking reads never
    /// occupy the cooperative pool).
    private static func pump(
        _ handle: FileHandle,
        onChunk: @escaping @Sendable (UnsafeRawBufferPointer, inout LineAssembler) -> Void,
        makeAssembler: @escaping @Sendable () -> LineAssembler
    ) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                var assembler = makeAssembler()
                let fd = handle.fileDescriptor
                let size = 64 * 1024
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
                defer { buffer.deallocate() }
                while true {
                    let count = read(fd, buffer.baseAddress, size)
                    if count > 0 {
                        onChunk(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), &assembler)
                    } else if count == 0 || errno != EINTR {
                        break
                    }
                }
                assembler.finish()
                try? handle.close()
                continuation.resume()
            }
            thread.start()
        }
    }
}
