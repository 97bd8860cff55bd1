import Foundation
import LockstepCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serialises `terraform init` against one shared provider plugin cache.
///
/// Terraform's plugin cache is not safe for concurrent writers: two inits
/// unpacking the same provider at once can leave a truncated binary that every
/// later run then links into its `.terraform/`. Writers are not only the tasks
/// of this daemon: `lockstep validate` in CI beside the daemon, or two daemons
/// on one agent, share the cache too. So the lock is two-level:
///
/// 1. an in-process single ``AsyncSlots`` per cache directory (tasks of this
///    process queue in order without polling, and a cancelled one leaves the queue);
/// 2. an exclusive `flock(2)` on ``fileName`` inside the cache directory, held
///    by a descriptor opened `O_CLOEXEC` (terraform and providers never
///    inherit it, so a leftover child cannot keep the lock) and closed on every
///    path out.
///
/// The `flock` is only ever tried with `LOCK_NB`; while another process holds
/// it the task sleeps with back-off, so a waiting init never blocks a thread of
/// the cooperative pool, and cancellation or the invocation's timeout end the
/// wait.
enum PluginCacheLock {
    /// The lock file's name in the cache directory. Terraform ignores files at
    /// the top of the cache (it only reads `HOST/NAMESPACE/TYPE/...`).
    static let fileName = ".lockstep-init.lock"

    /// Why the lock was not taken.
    enum Abandoned: Error {
        case cancelled
        case timedOut
    }

    private static let inProcess = Mutex<[String: AsyncSlots]>([:])

    private static func processLock(for path: String) -> AsyncSlots {
        inProcess.withLock { locks in
            if let lock = locks[path] { return lock }
            let lock = AsyncSlots(1)
            locks[path] = lock
            return lock
        }
    }

    /// Runs `body` while holding both locks for `cache`.
    static func withLock<T: Sendable>(
        cache: URL, deadline: ContinuousClock.Instant?, logger: Logger, _ body: () async throws -> T
    ) async throws -> T {
        let local = processLock(for: cache.path)
        do {
            try await local.acquire()
        } catch {
            throw Abandoned.cancelled
        }
        let result: Result<T, any Error>
        do {
            let descriptor = try await acquireFileLock(cache.appendingPathComponent(fileName), deadline: deadline, logger: logger)
            do { result = .success(try await body()) } catch { result = .failure(error) }
            // Closing the descriptor releases the flock; before the in-process
            // lock, so the next task here finds the file lock free.
            close(descriptor)
        } catch {
            result = .failure(error)
        }
        local.release()
        return try result.get()
    }

    private static func acquireFileLock(_ url: URL, deadline: ContinuousClock.Instant?, logger: Logger) async throws -> Int32 {
        let descriptor = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw TerraformRunnerError(.fileSystem, "cannot open the plugin cache lock file")
        }
        var delay = Duration.milliseconds(5)
        var announced = false
        while true {
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return descriptor }
            let error = errno
            if error == EINTR { continue }
            guard error == EWOULDBLOCK || error == EAGAIN else {
                close(descriptor)
                throw TerraformRunnerError(.fileSystem, "cannot lock the plugin cache", context: ["errno": "\(error)"])
            }
            if !announced {
                announced = true
                logger.info("waiting for the plugin cache lock held by another process")
            }
            if let deadline, ContinuousClock.now >= deadline {
                close(descriptor)
                throw Abandoned.timedOut
            }
            do {
                try await Task.sleep(for: delay)
            } catch {
                close(descriptor)
                throw Abandoned.cancelled
            }
            delay = min(delay * 2, .milliseconds(250))
        }
    }
}
