import Foundation
import LockstepCore
import Logging
import Testing
@testable import GitSource

@Suite("Mirror and fetch")
struct MirrorFetchTests {
    @Test("the first sync clones branches and tags; a second sync with no change reports nothing")
    func initialCloneThenNoop() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try makeMergedHistory(fixture)
        try fixture.tag("staging/v1.0.0", annotated: true, message: "release", at: history.merge)
        try fixture.tag("dev/v1.0.0", at: history.base)
        let mirror = localMirror(of: fixture)

        let first = try await mirror.sync()
        #expect(first.initialClone)
        #expect(Set(first.createdTags.map(\.name)) == ["staging/v1.0.0", "dev/v1.0.0"])
        #expect(Set(first.branches.map(\.name)) == ["main", "feature", "unmerged"])
        #expect(try await mirror.branchTip("main").rawValue == history.fastForward)

        let second = try await mirror.sync()
        #expect(!second.initialClone)
        #expect(!second.changed)
    }

    @Test("a force-moved tag is reported as moved with both ids, a deleted tag as deleted")
    func movedAndDeletedTags() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try makeMergedHistory(fixture)
        try fixture.tag("prod/v1.0.0", at: history.base)
        try fixture.tag("prod/v1.1.0", at: history.merge)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()

        try fixture.forceMoveTag("prod/v1.0.0", to: history.unmerged)
        try fixture.deleteTag("prod/v1.1.0")
        try fixture.tag("prod/v1.2.0", at: history.fastForward)
        let report = try await mirror.sync()

        #expect(try report.movedTags == [FetchReport.Change(name: "prod/v1.0.0", old: GitObjectID(history.base), new: GitObjectID(history.unmerged))])
        #expect(try report.deletedTags == [FetchReport.Change(name: "prod/v1.1.0", old: GitObjectID(history.merge), new: nil)])
        #expect(report.createdTags.map(\.name) == ["prod/v1.2.0"])
        let tags = try await mirror.tags(matching: "prod/*", components: 2).tags.map(\.name)
        #expect(tags == ["prod/v1.0.0", "prod/v1.2.0"])
        #expect(try await mirror.tag(named: "prod/v1.0.0").commit.rawValue == history.unmerged)
    }

    @Test("a new branch tip is reported with its old and new commit")
    func branchMoves() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try makeMergedHistory(fixture)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let next = try fixture.commit(files: ["x.tf": "# x\n"], message: "next")
        let report = try await mirror.sync()
        #expect(try report.branches == [FetchReport.Change(name: "main", old: GitObjectID(history.fastForward), new: GitObjectID(next))])
        #expect(report.createdTags.isEmpty && report.movedTags.isEmpty)
    }

    @Test("refs are packed after a fetch that changed them, so loose refs never pile up")
    func refsArePacked() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        try fixture.createManyTags(count: 300)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let looseTags = FileManager.default.enumerator(atPath: mirror.path + "/refs/tags")?.allObjects.filter {
            !($0 as! String).isEmpty && !FileManager.default.fileExists(atPath: mirror.path + "/refs/tags/" + ($0 as! String) + "/.")
        } ?? []
        #expect(looseTags.isEmpty)
        let packed = try String(contentsOfFile: mirror.path + "/packed-refs", encoding: .utf8)
        #expect(packed.components(separatedBy: "refs/tags/many/").count - 1 == 300)
    }

    @Test("a file:// URL works like a path, and the mirror survives a restart of the actor")
    func fileURLAndReopen() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try makeMergedHistory(fixture)
        try fixture.tag("dev/v1.0.0", at: history.merge)
        let remote = Remote(url: "file://" + fixture.path)
        _ = try await GitMirror(remote: remote, path: mirrorPath(in: fixture), logger: .init(label: "t")).sync()
        let reopened = GitMirror(remote: remote, path: mirrorPath(in: fixture), logger: .init(label: "t"))
        let report = try await reopened.sync()
        #expect(!report.initialClone && !report.changed)
        #expect(try await reopened.tag(named: "dev/v1.0.0").commit.rawValue == history.merge)
    }

    @Test("a missing remote fails with a network or not-found error naming the repository")
    func missingRemote() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let mirror = GitMirror(remote: Remote(url: fixture.scratch.path + "/nope.git"), path: mirrorPath(in: fixture), logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.repository?.contains("nope.git") == true)
    }

    @Test("a mirror path holding unrelated files is refused, not overwritten")
    func refusesForeignDirectory() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        let path = mirrorPath(in: fixture)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path + "/precious.txt"))
        let mirror = GitMirror(remote: Remote(url: fixture.path), path: path, logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.code == .io)
        #expect(try String(contentsOfFile: path + "/precious.txt", encoding: .utf8) == "keep me")
    }

    @Test("unsupported or malformed remote URLs are refused before any network use", arguments: [
        "", "ftp://example.invalid/repo.git", "https:///nohost", "relative/path", "/tmp/repo\n.git",
    ])
    func badRemoteURL(url: String) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let mirror = GitMirror(remote: Remote(url: url), path: mirrorPath(in: fixture), logger: .init(label: "t"))
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.code == .invalidRemote)
        #expect(!FileManager.default.fileExists(atPath: mirrorPath(in: fixture)))
    }
}
