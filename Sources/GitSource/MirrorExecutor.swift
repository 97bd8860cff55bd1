import Foundation

/// The executor of one `GitMirror`: every job of the actor runs, one at a time, on a thread
/// of its own.
///
/// Why: libgit2 calls block (a fetch waits on the network for as long as the remote takes,
/// an export writes thousands of files), and Swift's shared concurrency pool has only as
/// many threads as the machine has cores (two on a small agent). An actor on the default
/// executor would hold a pool thread for the whole call, and two slow fetches would stop
/// every other task of the process: the HTTP API, approvals, the shutdown handler. On this
/// thread a blocked libgit2 call only blocks its own mirror.
///
/// (On Linux `DispatchSerialQueue` does not exist, so it cannot serve as the executor.)
final class MirrorExecutor: SerialExecutor, @unchecked Sendable {
    // `@unchecked`: `jobs`, `stopping` and `thread` are only touched with `condition` locked.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false

    /// The thread's id, once it runs.
    private var thread: pthread_t?

    init() {
        // The thread keeps the executor alive until `shutdown()` and the last job.
        Thread { [self] in run() }.start()
    }

    /// Whether the caller runs on this executor's thread.
    var ownsCurrentThread: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    }

    /// Lets `assumeIsolated` work on the mirror's thread, and stops a caller anywhere else.
    func checkIsolated() {
        precondition(ownsCurrentThread, "not on the git mirror's thread")
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread end once the jobs already queued have run (the mirror is gone, so no
    /// new job can arrive).
    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        condition.lock()
        thread = pthread_self()
        condition.unlock()
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
