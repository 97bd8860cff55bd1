import Foundation
import LockstepCore
import Logging
import Testing
@testable import GitSource

/// `GitMirror.refWrites()` is what lets the gate skip a poll that finds nothing new: it must
/// stay put across syncs that change nothing, and change on every sync that writes a ref,
/// whatever kind of write and whoever asked for the sync.
@Suite("Mirror ref-write count")
struct RefWriteCountTests {
    @Test("unchanged by syncs that find nothing new; changed by a created, moved or deleted tag and a moved branch")
    func countsEveryWrite() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try makeMergedHistory(fixture)
        try fixture.tag("dev/v1.0.0", annotated: true, message: "release", at: history.merge)
        let mirror = localMirror(of: fixture)

        let before = await mirror.refWrites()
        _ = try await mirror.sync()
        var last = await mirror.refWrites()
        #expect(last != before, "the first sync (a clone) writes every ref")

        // Several idle polls: the count stays.
        for _ in 0..<3 {
            #expect(try await !mirror.sync().changed)
            #expect(await mirror.refWrites() == last)
        }

        let changes: [(String, () throws -> Void)] = [
            ("a created tag", { try fixture.tag("dev/v1.1.0", annotated: true, message: "release", at: history.fastForward) }),
            ("a moved tag", { try fixture.forceMoveTag("dev/v1.0.0", to: history.unmerged, annotated: true, message: "moved") }),
            ("a deleted tag", { try fixture.deleteTag("dev/v1.1.0") }),
            ("a moved branch", { _ = try fixture.commit(files: ["next.tf": "# next\n"], message: "next") }),
        ]
        for (what, change) in changes {
            try change()
            #expect(try await mirror.sync().changed, "\(what) is fetched")
            let now = await mirror.refWrites()
            #expect(now != last, "\(what) changes the count")
            last = now
            #expect(try await !mirror.sync().changed)
            #expect(await mirror.refWrites() == last, "the idle sync after \(what) leaves the count")
        }
    }

    @Test("a sync that fails changes the count: it may have written some refs before failing")
    func failedSyncCounts() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        _ = try makeMergedHistory(fixture)
        let path = mirrorPath(in: fixture)
        _ = try await GitMirror(remote: Remote(url: fixture.path), path: path, logger: .init(label: "t")).sync()
        // The same mirror folder pointed at a remote that does not exist.
        let broken = GitMirror(remote: Remote(url: fixture.scratch.path + "/gone.git"), path: path, logger: .init(label: "t"))
        let before = await broken.refWrites()
        await #expect(throws: GitError.self) { _ = try await broken.sync() }
        #expect(await broken.refWrites() != before)
    }
}
