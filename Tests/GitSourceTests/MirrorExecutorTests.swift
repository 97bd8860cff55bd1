import Foundation
import Logging
import Testing
@testable import GitSource

/// Every `GitMirror` runs its libgit2 calls on a thread of its own. A fetch that blocks in
/// the network for minutes must not hold one of the shared pool's threads (two on a
/// two-core agent): the HTTP API, approvals and shutdown all run there.
@Suite("The mirror's libgit2 work stays off the shared concurrency pool")
struct MirrorExecutorTests {
    @Test("with more fetches stalled inside libgit2 than the pool has threads, other async work still runs to the end")
    func stalledFetchesLeaveThePoolFree() async throws {
        let server = try StalledServer()
        defer { server.release() }
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        // More stalled mirrors than pool threads: on the shared pool they would hold all of them.
        let count = ProcessInfo.processInfo.activeProcessorCount + 2
        let mirrors = (0..<count).map {
            GitMirror(remote: Remote(url: server.url), path: mirrorPath(in: fixture, "mirror-\($0).git"), logger: Logger(label: "test"))
        }
        let log = EventLog()
        let syncs = Task {
            await withTaskGroup(of: GitError?.self) { group in
                for mirror in mirrors {
                    group.addTask {
                        do throws(GitError) {
                            _ = try await mirror.sync()
                            return nil
                        } catch {
                            return error
                        }
                    }
                }
                var errors: [GitError?] = []
                for await error in group { errors.append(error) }
                log.append("syncs returned")
                return errors
            }
        }

        // Every fetch is inside libgit2, blocked on a connection that never answers.
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while server.acceptedCount < count && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(server.acceptedCount == count)

        // Work that needs the pool: many tasks, each suspending and resuming several times.
        let finished = await withTaskGroup(of: Int.self) { group in
            for index in 0..<(4 * count) {
                group.addTask {
                    var sum = index
                    for step in 0..<20 {
                        await Task.yield()
                        sum &+= step
                    }
                    return sum
                }
            }
            var done = 0
            for await _ in group { done += 1 }
            return done
        }
        log.append("pool work done")
        #expect(finished == 4 * count)
        // The fetches were still blocked while the pool did all that.
        #expect(!server.released)

        server.release()
        let errors = await syncs.value
        #expect(log.events == ["pool work done", "syncs returned"])
        // Each stalled fetch ended with its own error once the remote hung up.
        #expect(errors.count == count)
        #expect(errors.allSatisfy { $0 != nil }, "\(errors)")
    }

    @Test("a mirror's calls run on its own thread, never on a pool thread")
    func callsRunOnTheMirrorThread() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a": "1\n"], message: "one")
        try fixture.git("branch", "-M", "main")
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    // Here, on the pool, the mirror's thread is not the current one.
                    #expect(!mirror.executor.ownsCurrentThread)
                    return try await mirror.queryOnOwnThread()
                }
            }
            var answers: [Bool] = []
            for try await answer in group { answers.append(answer) }
            return answers
        }
        #expect(answers == Array(repeating: true, count: 8))
    }
}

extension GitMirror {
    /// Runs a libgit2 query and says whether it ran on the mirror's own thread (tests only).
    func queryOnOwnThread() throws(GitError) -> Bool {
        _ = try branchTip("main")
        return executor.ownsCurrentThread
    }
}
