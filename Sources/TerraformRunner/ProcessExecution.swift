import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Why not swift-subprocess (1.0.2): it ends reading a child's output the moment the child
// exits (one last read, no drain window) and its body cannot tell that end from end-of-file,
// so "output cut by a leftover still holding the pipe" could no longer be reported; and
// cancelling the calling task stops the body's reading while terraform is still shutting
// down within its grace period (up to ten minutes for apply, writing its state). Using it
// only to start and reap the child would keep the pipes, reading, signals and the
// close-from-3 rule here and add a dependency for the one posix_spawn call, so it is not used.
//
// Why posix_spawn and not Foundation.Process: a command must
// inherit exactly three descriptors (stdin on /dev/null, the stdout and stderr
// pipes) and nothing else of the daemon. Foundation.Process on Linux hands every
// child one end of a socket pair it uses to notice the exit, closes the other
// descriptors from a racy scan of /proc/self/fd, and keeps a /dev/null handle per
// launch; a child that leaves a process behind then keeps that socket and the
// pipes open. Here the pipes are created close-on-exec, stdin is opened by the
// spawn itself, and `posix_spawn_file_actions_addclosefrom_np` closes everything
// from 3 up inside the child, so a descriptor another thread opens meanwhile is
// never inherited either. The child gets its own process group (the runner
// signals the group), an environment built only from the request, default signal
// dispositions and an empty signal mask, and no shell.
//
// Output is read on one dedicated thread per command with poll(2), redacted and
// streamed line by line with a bounded tail. Once the child has exited, reading is
// bounded by `ProcessRequest.outputDrain`: a process left behind that still holds
// the pipes cannot stall the caller (under `lockstep-confine` none is left: the
// launcher's PID namespace dies with the command).

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
    /// Past `captureStdoutLimit`: true keeps the first `captureStdoutLimit` bytes (the result
    /// is a truncated capture, not an overflow); false keeps nothing more and reports an
    /// overflow. Either way the rest is read, counted and dropped, so memory stays bounded.
    var captureKeepsPrefix = false
    var retainedBytes: Int
    var maxLineBytes: Int
    var redactor: Redactor
    var sink: any TerraformOutputSink
    /// How long output is still read after the child exited; then the pipes are closed
    /// and the result says the output was cut.
    var outputDrain: Duration = ProcessExecution.defaultOutputDrain
    /// A file the child reads as stdin (opened read-only by the spawn); /dev/null when nil.
    var stdinPath: String?
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
    /// True when something still held the output open `outputDrain` after the child
    /// exited (a process it left behind): what it wrote after that was not read.
    var outputCut: Bool = false
    /// Bytes the child wrote to a captured stdout, kept or not.
    var stdoutBytes: Int = 0
}

/// glibc functions Swift's Glibc module does not show (glibc declares them only under
/// `_GNU_SOURCE`), looked up by name once. glibc 2.34 and newer have all three.
private enum GNULibc {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32

    struct Functions: @unchecked Sendable {
        let pipe2: Pipe2
        let addCloseFrom: AddCloseFrom
        let addChdir: AddChdir
    }

    static let functions: Functions? = {
        guard let pipe2 = dlsym(nil, "pipe2"),
              let closeFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np"),
              let chdir = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return nil }
        return Functions(pipe2: unsafeBitCast(pipe2, to: Pipe2.self),
                         addCloseFrom: unsafeBitCast(closeFrom, to: AddCloseFrom.self),
                         addChdir: unsafeBitCast(chdir, to: AddChdir.self))
    }()
}

enum ProcessExecution {
    /// Output is read this long after the child exited, at most.
    static let defaultOutputDrain: Duration = .seconds(2)

    static func run(_ request: ProcessRequest) async throws -> ProcessResult {
        let clock = ContinuousClock()
        let started = clock.now
        if Task.isCancelled {
            return ProcessResult(exitCode: -1, signalled: false, interruption: .cancelled, stdout: nil,
                                 stdoutOverflowed: false, tail: "", droppedBytes: 0, duration: .zero)
        }
        guard let gnu = GNULibc.functions else {
            throw TerraformRunnerError(.launchFailed, "this C library cannot start a command with only the descriptors it is given (glibc 2.34 or newer is needed)")
        }
        // Closed by the exit watcher once the child has exited: the reader then starts its
        // drain deadline.
        var wake: [Int32] = [-1, -1]
        guard gnu.pipe2(&wake, O_CLOEXEC) == 0 else {
            throw TerraformRunnerError(.launchFailed, "cannot create a pipe", context: ["reason": errorText(errno)])
        }
        let child: SpawnedChild
        do {
            child = try spawn(request, gnu)
        } catch {
            close(wake[0])
            close(wake[1])
            throw error
        }

        let control = ProcessControl(gracePeriod: request.gracePeriod)
        control.started(pid: child.pid)
        let exitWaiter = ExitWaiter()
        watchExit(child.pid, control: control, wake: wake[1], waiter: exitWaiter)

        let tail = OutputTail(capacity: request.retainedBytes)
        let redactor = request.redactor
        let sink = request.sink
        let captureLimit = request.captureStdoutLimit
        let capture = CaptureBuffer(limit: captureLimit ?? 0, keepsPrefix: request.captureKeepsPrefix)
        let maxLine = request.maxLineBytes
        let drain = request.outputDrain

        async let outputCut: Bool = readOutput(stdout: child.stdout, stderr: child.stderr, wake: wake[0], drain: drain) {
            [LineAssembler(maxLineBytes: maxLine, redactor: redactor) { line in
                tail.append(line)
                sink.receive(OutputLine(stream: .stdout, text: line))
            }, LineAssembler(maxLineBytes: maxLine, redactor: redactor) { line in
                tail.append(line)
                sink.receive(OutputLine(stream: .stderr, text: line))
            }]
        } onChunk: { stream, chunk, assembler in
            if stream == 0, captureLimit != nil {
                capture.take(chunk)
            } else {
                assembler.feed(chunk)
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
        let cut = await outputCut

        return ProcessResult(
            exitCode: status.0,
            signalled: status.1,
            interruption: control.interruption,
            stdout: captureLimit == nil ? nil : capture.data,
            stdoutOverflowed: capture.overflowed && !capture.keepsPrefix,
            tail: tail.text,
            droppedBytes: tail.droppedBytes,
            duration: clock.now - started,
            outputCut: cut,
            stdoutBytes: capture.total
        )
    }

    private struct SpawnedChild {
        let pid: pid_t
        /// Read ends of the child's stdout and stderr, close-on-exec.
        let stdout: Int32
        let stderr: Int32
    }

    private static func errorText(_ number: Int32) -> String { String(cString: strerror(number)) }

    /// Starts the child with stdin on /dev/null (or `request.stdinPath`), stdout and stderr on fresh pipes and no
    /// other descriptor, in its own process group, in `request.directory`.
    private static func spawn(_ request: ProcessRequest, _ gnu: GNULibc.Functions) throws -> SpawnedChild {
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard gnu.pipe2(&out, O_CLOEXEC) == 0 else {
            throw TerraformRunnerError(.launchFailed, "cannot create a pipe", context: ["reason": errorText(errno)])
        }
        guard gnu.pipe2(&err, O_CLOEXEC) == 0 else {
            let number = errno
            close(out[0])
            close(out[1])
            throw TerraformRunnerError(.launchFailed, "cannot create a pipe", context: ["reason": errorText(number)])
        }
        // The child has its own copies; ours must go or end-of-file never comes.
        defer {
            close(out[1])
            close(err[1])
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // Opened inside the child: the daemon holds no /dev/null descriptor for it.
        var rc = posix_spawn_file_actions_addopen(&actions, 0, request.stdinPath ?? "/dev/null", O_RDONLY, 0)
        if rc == 0 { rc = posix_spawn_file_actions_adddup2(&actions, out[1], 1) }
        if rc == 0 { rc = posix_spawn_file_actions_adddup2(&actions, err[1], 2) }
        if rc == 0 { rc = gnu.addCloseFrom(&actions, 3) }
        if rc == 0 { rc = request.directory.path.withCString { gnu.addChdir(&actions, $0) } }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        // Own process group (pgid = pid): the runner signals the group. Signals the daemon
        // ignores or blocks (SIGPIPE, …) are back to their defaults in the child.
        if rc == 0 {
            rc = posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        }
        if rc == 0 { rc = posix_spawnattr_setpgroup(&attributes, 0) }
        if rc == 0 { rc = posix_spawnattr_setsigmask(&attributes, &noSignals) }
        if rc == 0 { rc = posix_spawnattr_setsigdefault(&attributes, &allSignals) }

        var pid: pid_t = 0
        if rc == 0 {
            let argv = ([request.executable] + request.arguments).map { strdup($0) } + [nil]
            // Exactly the request's environment: nothing of the daemon's is inherited.
            let envp = request.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer {
                for pointer in argv { free(pointer) }
                for pointer in envp { free(pointer) }
            }
            rc = posix_spawn(&pid, request.executable, &actions, &attributes, argv, envp)
        }
        guard rc == 0 else {
            close(out[0])
            close(err[0])
            throw TerraformRunnerError(.launchFailed, "could not start \(URL(fileURLWithPath: request.executable).lastPathComponent)",
                                       context: ["executable": request.executable, "reason": errorText(rc)])
        }
        return SpawnedChild(pid: pid, stdout: out[0], stderr: err[0])
    }

    /// Waits for the child on a dedicated thread (a blocking wait never occupies the
    /// cooperative pool). The group is killed between the exit and the reaping, while the
    /// pid (and so the group id) cannot have been reused.
    private static func watchExit(_ pid: pid_t, control: ProcessControl, wake: Int32, waiter: ExitWaiter) {
        let thread = Thread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
            control.exited()
            var status: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
            close(wake)
            guard reaped == pid else {
                // Someone else reaped it: the status is unknown, never report success.
                waiter.finish(-1, signalled: false)
                return
            }
            let signal = status & 0x7f
            if signal == 0 {
                waiter.finish((status >> 8) & 0xff, signalled: false)
            } else {
                waiter.finish(signal, signalled: true)
            }
        }
        thread.start()
    }

    /// Reads stdout (stream 0) and stderr (stream 1) on a dedicated thread until both are
    /// closed, or until `drain` after `wake` was closed (the child exited); returns whether
    /// output was cut there. Closes both descriptors and `wake` before returning.
    private static func readOutput(
        stdout: Int32, stderr: Int32, wake: Int32, drain: Duration,
        makeAssemblers: @escaping @Sendable () -> [LineAssembler],
        onChunk: @escaping @Sendable (Int, UnsafeRawBufferPointer, inout LineAssembler) -> Void
    ) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let thread = Thread {
                var assemblers = makeAssemblers()
                let streams = [stdout, stderr]
                for fd in streams { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
                let size = 64 * 1024
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
                defer { buffer.deallocate() }

                /// Reads what is there now (a bounded number of reads, so the deadline is
                /// checked even against a writer that never stops); false once closed.
                func readAvailable(_ stream: Int) -> Bool {
                    for _ in 0..<16 {
                        let count = read(streams[stream], buffer.baseAddress, size)
                        if count > 0 {
                            onChunk(stream, UnsafeRawBufferPointer(rebasing: buffer[0..<count]), &assemblers[stream])
                        } else if count == 0 {
                            return false
                        } else if errno == EAGAIN || errno == EWOULDBLOCK {
                            return true
                        } else if errno != EINTR {
                            return false
                        }
                    }
                    return true
                }

                let clock = ContinuousClock()
                var open = [true, true]
                var deadline: ContinuousClock.Instant?
                var cut = false
                while open.contains(true) {
                    var timeout: Int32 = -1
                    if let deadline {
                        let left = deadline - clock.now
                        if left <= .zero {
                            cut = true
                            break
                        }
                        timeout = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000) + 1
                    }
                    var polled: [(stream: Int?, fd: pollfd)] = []
                    for stream in streams.indices where open[stream] {
                        polled.append((stream, pollfd(fd: streams[stream], events: Int16(POLLIN), revents: 0)))
                    }
                    if deadline == nil { polled.append((nil, pollfd(fd: wake, events: Int16(POLLIN), revents: 0))) }
                    var fds = polled.map(\.fd)
                    let ready = poll(&fds, nfds_t(fds.count), timeout)
                    if ready < 0 {
                        if errno == EINTR { continue }
                        cut = true
                        break
                    }
                    for (index, entry) in polled.enumerated() where fds[index].revents != 0 {
                        if let stream = entry.stream {
                            open[stream] = readAvailable(stream)
                        } else {
                            deadline = clock.now + drain
                        }
                    }
                }
                if cut {
                    for stream in streams.indices where open[stream] { _ = readAvailable(stream) }
                }
                for index in assemblers.indices { assemblers[index].finish() }
                if cut {
                    var notice = "lockstep: output cut: the command exited but a process it started still held its output \(drain) later"
                    notice.withUTF8 { bytes in
                        assemblers[1].feed(UnsafeRawBufferPointer(bytes))
                    }
                    assemblers[1].finish()
                }
                for fd in streams { close(fd) }
                close(wake)
                continuation.resume(returning: cut)
            }
            thread.start()
        }
    }
}
