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
private struct LineAssembler {
    var pending: [UInt8] = []
    let maxLineBytes: Int
    let emit: (String) -> Void

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            pending.append(contentsOf: bytes[start..<index])
            flush()
            start = index + 1
        }
        pending.append(contentsOf: bytes[start...])
        while pending.count > maxLineBytes {
            let head = Array(pending.prefix(maxLineBytes))
            pending.removeFirst(maxLineBytes)
            emit(String(decoding: head, as: UTF8.self))
        }
    }

    mutating func flush() {
        var line = pending
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        emit(String(decoding: line, as: UTF8.self))
        pending.removeAll(keepingCapacity: true)
    }

    mutating func finish() {
        if !pending.isEmpty { flush() }
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
            LineAssembler(maxLineBytes: maxLine) { raw in
                let line = redactor.redact(raw)
                tail.append(line)
                sink.receive(OutputLine(stream: .stdout, text: line))
            }
        }
        async let stderrDone: Void = pump(stderrPipe.fileHandleForReading) { chunk, assembler in
            assembler.feed(chunk)
        } makeAssembler: {
            LineAssembler(maxLineBytes: maxLine) { raw in
                let line = redactor.redact(raw)
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
