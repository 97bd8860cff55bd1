import Foundation
import LockstepCore
import Logging
import Testing
@testable import GitSource

/// How the delivery repository is offered to the mirror. Each one reaches the cheap up-to-date
/// check by another road: a work tree with loose refs (libgit2 yields loose before packed refs,
/// so the sorted merge gives up and the set comparison decides), a bare repository with packed
/// refs (the sorted merge decides), a bare one with loose refs, and smart HTTP (the server's
/// advertisement, with `^{}` entries for annotated tags).
enum Publication: String, CaseIterable, CustomTestStringConvertible {
    case workTree, packedBare, looseBare, http
    var testDescription: String { rawValue }
}

/// One upstream change made after the mirror caught up, and what the next sync must report.
enum UpstreamChange: String, CaseIterable, CustomTestStringConvertible {
    case deleteLastTag, deleteFirstTag, moveTag, moveAnnotatedTag, createTagAtEnd, createTagAtStart, moveBranch, deleteBranch
    var testDescription: String { rawValue }
}

/// The fixture's repository as the mirror sees it, republished after every upstream change.
final class PublishedRepository {
    let fixture: GitFixture
    let kind: Publication
    private var server: GitHTTPServer?

    init(_ fixture: GitFixture, as kind: Publication) throws {
        self.fixture = fixture
        self.kind = kind
        try publish()
        if kind == .http { server = try GitHTTPServer(root: fixture.servedRoot) }
    }

    var url: String {
        switch kind {
        case .workTree: fixture.path
        case .packedBare: "file://" + fixture.servedRoot.appendingPathComponent("delivery.git").path
        case .looseBare: fixture.servedRoot.appendingPathComponent("delivery.git").path
        case .http: server?.url(for: "delivery.git") ?? ""
        }
    }

    var requestCount: Int { server?.requestCount ?? 0 }

    /// Brings the served copy up to date with the work tree (nothing to do for the work tree).
    func publish() throws {
        guard kind != .workTree else { return }
        let bare = try fixture.makeBareMirror(named: "delivery.git")
        if kind != .looseBare { try fixture.git(["-C", bare, "pack-refs", "--all"]) }
    }

    func stop() { server?.stop() }
}

@Suite("Up-to-date check before fetch")
struct UpToDateCheckTests {
    private func mirror(of published: PublishedRepository) -> GitMirror {
        GitMirror(remote: Remote(url: published.url), path: mirrorPath(in: published.fixture), logger: Logger(label: "test"))
    }

    /// A history with tags spread over the alphabet, so that a change can sit at either end.
    private func taggedHistory(_ fixture: GitFixture) throws -> MergedHistory {
        let history = try makeMergedHistory(fixture)
        try fixture.tag("prod/v1.0.0", at: history.base)
        try fixture.tag("prod/v1.1.0", annotated: true, message: "release", at: history.merge)
        try fixture.tag("staging/v1.1.0", at: history.merge)
        return history
    }

    /// Makes `change` upstream in the fixture's work tree; returns what the next sync must report.
    private func make(_ change: UpstreamChange, history: MergedHistory, in fixture: GitFixture) throws -> FetchReport {
        let annotated = try fixture.revParse("prod/v1.1.0")
        var expected = FetchReport(initialClone: false)
        switch change {
        case .deleteLastTag:
            try fixture.deleteTag("staging/v1.1.0")
            expected.deletedTags = [.init(name: "staging/v1.1.0", old: try GitObjectID(history.merge), new: nil)]
        case .deleteFirstTag:
            try fixture.deleteTag("prod/v1.0.0")
            expected.deletedTags = [.init(name: "prod/v1.0.0", old: try GitObjectID(history.base), new: nil)]
        case .moveTag:
            try fixture.forceMoveTag("prod/v1.0.0", to: history.unmerged)
            expected.movedTags = [.init(name: "prod/v1.0.0", old: try GitObjectID(history.base), new: try GitObjectID(history.unmerged))]
        case .moveAnnotatedTag:
            try fixture.forceMoveTag("prod/v1.1.0", to: history.unmerged, annotated: true, message: "moved")
            let moved = try fixture.revParse("prod/v1.1.0")
            expected.movedTags = [.init(name: "prod/v1.1.0", old: try GitObjectID(annotated), new: try GitObjectID(moved))]
        case .createTagAtEnd:
            try fixture.tag("zz/v9.9.9", at: history.fastForward)
            expected.createdTags = [.init(name: "zz/v9.9.9", old: nil, new: try GitObjectID(history.fastForward))]
        case .createTagAtStart:
            try fixture.tag("aa/v0.0.1", at: history.fastForward)
            expected.createdTags = [.init(name: "aa/v0.0.1", old: nil, new: try GitObjectID(history.fastForward))]
        case .moveBranch:
            let next = try fixture.commit(files: ["next.tf": "# next\n"], message: "next")
            expected.branches = [.init(name: "main", old: try GitObjectID(history.fastForward), new: try GitObjectID(next))]
        case .deleteBranch:
            try fixture.git(["branch", "-q", "-D", "unmerged"])
            expected.branches = [.init(name: "unmerged", old: try GitObjectID(history.unmerged), new: nil)]
        }
        return expected
    }

    @Test("after a no-op sync skipped the fetch, each upstream change is still reported exactly",
          arguments: Publication.allCases, UpstreamChange.allCases)
    func changeAfterSkippedFetch(publication: Publication, change: UpstreamChange) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try taggedHistory(fixture)
        let published = try PublishedRepository(fixture, as: publication)
        defer { published.stop() }
        let mirror = mirror(of: published)
        #expect(try await mirror.sync().initialClone)
        #expect(await mirror.lastSyncPath == .fetched)
        let idle = try await mirror.sync()
        #expect(!idle.changed && idle.skippedRefs.isEmpty)
        #expect(await mirror.lastSyncPath == .upToDate)

        let expected = try make(change, history: history, in: fixture)
        try published.publish()

        let report = try await mirror.sync()
        #expect(report == expected)
        #expect(await mirror.lastSyncPath == .fetched)
        let after = try await mirror.sync()
        #expect(!after.changed)
        #expect(await mirror.lastSyncPath == .upToDate)
        let upstreamTags = try fixture.git(["tag", "--list"]).split(separator: "\n").map(String.init).sorted()
        #expect(try await mirror.tags().tags.map(\.name) == upstreamTags)
    }

    /// Sets the times of every file and folder under `refs/` and of `packed-refs` two hours back
    /// (the change time moves on regardless: `touch` sets it to now).
    private func ageRefs(gitDirectory: String, _ fixture: GitFixture) throws {
        _ = try FixtureProcess.run("/usr/bin/find", [gitDirectory + "/refs", gitDirectory + "/packed-refs", "-exec",
                                                     "touch", "-h", "-d", "2 hours ago", "{}", "+"],
                                   environment: fixture.environment())
    }

    @Test("with the refs' stamps remembered, each upstream change is still reported, even one written with the old modification time",
          arguments: [Publication.workTree, .looseBare], UpstreamChange.allCases)
    func changeAfterRememberedStamps(publication: Publication, change: UpstreamChange) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try taggedHistory(fixture)
        let published = try PublishedRepository(fixture, as: publication)
        defer { published.stop() }
        let mirror = mirror(of: published)
        _ = try await mirror.sync()
        let source = publication == .workTree ? fixture.path + "/.git" : fixture.servedRoot.appendingPathComponent("delivery.git").path
        let mirrored = mirrorPath(in: fixture)
        try ageRefs(gitDirectory: source, fixture)
        try ageRefs(gitDirectory: mirrored, fixture)
        // Settled and identical: remembered, and the next poll is answered from the stamps.
        _ = try await mirror.sync()
        #expect(await mirror.identicalRefs != nil)
        #expect(try await !mirror.sync().changed)
        #expect(await mirror.lastSyncPath == .upToDate)

        let expected = try make(change, history: history, in: fixture)
        try published.publish()
        // As if the change had been written in the clock tick of the stamp: old modification times.
        try ageRefs(gitDirectory: source, fixture)

        let report = try await mirror.sync()
        #expect(report == expected, "\(change) went unnoticed or misreported")
        #expect(await mirror.lastSyncPath == .fetched)
        let upstreamTags = try fixture.git(["tag", "--list"]).split(separator: "\n").map(String.init).sorted()
        #expect(try await mirror.tags().tags.map(\.name) == upstreamTags)
        let upstreamMain = try fixture.revParse("main")
        #expect(try await mirror.branchTip("main").rawValue == upstreamMain)
    }

    @Test("several changes at once after a skipped fetch: created, moved and deleted tags and a branch move",
          arguments: Publication.allCases)
    func manyChangesAfterSkippedFetch(publication: Publication) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try taggedHistory(fixture)
        let published = try PublishedRepository(fixture, as: publication)
        defer { published.stop() }
        let mirror = mirror(of: published)
        _ = try await mirror.sync()
        _ = try await mirror.sync()
        #expect(await mirror.lastSyncPath == .upToDate)

        try fixture.forceMoveTag("prod/v1.0.0", to: history.unmerged)
        try fixture.deleteTag("staging/v1.1.0")
        try fixture.tag("prod/v1.2.0", at: history.fastForward)
        let next = try fixture.commit(files: ["next.tf": "# next\n"], message: "next")
        try published.publish()
        let report = try await mirror.sync()

        #expect(try report.movedTags == [.init(name: "prod/v1.0.0", old: GitObjectID(history.base), new: GitObjectID(history.unmerged))])
        #expect(try report.deletedTags == [.init(name: "staging/v1.1.0", old: GitObjectID(history.merge), new: nil)])
        #expect(try report.createdTags == [.init(name: "prod/v1.2.0", old: nil, new: GitObjectID(history.fastForward))])
        #expect(try report.branches == [.init(name: "main", old: GitObjectID(history.fastForward), new: GitObjectID(next))])
        #expect(try await mirror.tag(named: "prod/v1.0.0").commit.rawValue == history.unmerged)
    }

    @Test("a tag moved or added inside the mirror behind Lockstep's back is put back by the next sync and reported")
    func tamperedMirrorIsRepaired() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let history = try taggedHistory(fixture)
        let published = try PublishedRepository(fixture, as: .packedBare)
        let mirror = mirror(of: published)
        _ = try await mirror.sync()
        let mirrorGit = ["-C", mirrorPath(in: fixture)]
        try fixture.git(mirrorGit + ["update-ref", "refs/tags/prod/v1.0.0", history.unmerged])
        try fixture.git(mirrorGit + ["update-ref", "refs/tags/prod/v6.6.6", history.unmerged])

        let report = try await mirror.sync()
        #expect(await mirror.lastSyncPath == .fetched)
        #expect(try report.movedTags == [.init(name: "prod/v1.0.0", old: GitObjectID(history.unmerged), new: GitObjectID(history.base))])
        #expect(try report.deletedTags == [.init(name: "prod/v6.6.6", old: GitObjectID(history.unmerged), new: nil)])
        #expect(try await mirror.tag(named: "prod/v1.0.0").commit.rawValue == history.base)
    }

    @Test("a symbolic branch upstream is left to libgit2: every sync fetches, none reports a phantom change")
    func symbolicRefFallsBack() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        _ = try taggedHistory(fixture)
        try fixture.git(["symbolic-ref", "refs/heads/alias", "refs/heads/main"])
        let published = try PublishedRepository(fixture, as: .workTree)
        let mirror = mirror(of: published)
        _ = try await mirror.sync()
        let again = try await mirror.sync()
        #expect(await mirror.lastSyncPath == .fetched)
        #expect(!again.changed)
    }

    @Test("over HTTP a no-op sync is one request, and a sync that fetches reuses the connection that read the refs")
    func httpRequestsAreNotDoubled() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        _ = try taggedHistory(fixture)
        let published = try PublishedRepository(fixture, as: .http)
        defer { published.stop() }
        let mirror = mirror(of: published)
        _ = try await mirror.sync()

        var before = published.requestCount
        _ = try await mirror.sync()
        #expect(published.requestCount - before == 1)

        try fixture.commit(files: ["next.tf": "# next\n"], message: "next")
        try published.publish()
        before = published.requestCount
        #expect(try await mirror.sync().branches.map(\.name) == ["main"])
        // One GET of the refs, one POST for the pack: a reconnect would show a second GET.
        #expect(published.requestCount - before == 2)
    }

    // MARK: The comparison itself

    @Test("sorted streams: identical only when every name and id match; a gap anywhere is a difference")
    func sortedComparison() {
        let base = [("refs/heads/main", 1), ("refs/tags/a", 2), ("refs/tags/b", 3)]
        #expect(UpToDateCheck.compareSorted(ListedRefs(base), ListedRefs(base)) == .identical)
        #expect(UpToDateCheck.compareSorted(ListedRefs([]), ListedRefs([])) == .identical)
        for other in [
            Array(base.dropLast()), Array(base.dropFirst()), [base[0], base[2]],
            base + [("refs/tags/c", 4)], [("refs/heads/alpha", 9)] + base,
            [base[0], ("refs/tags/a", 7), base[2]], [],
        ] {
            #expect(UpToDateCheck.compareSorted(ListedRefs(base), ListedRefs(other)) == .different)
            #expect(UpToDateCheck.compareSorted(ListedRefs(other), ListedRefs(base)) == .different)
        }
    }

    @Test("out-of-order or repeated names are never called identical by the sorted merge")
    func unsortedStreams() {
        let sorted = [("refs/tags/a", 1), ("refs/tags/b", 2)]
        let swapped = [("refs/tags/b", 2), ("refs/tags/a", 1)]
        let repeated = [("refs/tags/a", 1), ("refs/tags/a", 1), ("refs/tags/b", 2)]
        #expect(UpToDateCheck.compareSorted(ListedRefs(sorted), ListedRefs(swapped)) == .undecided)
        #expect(UpToDateCheck.compareSorted(ListedRefs(repeated), ListedRefs(sorted)) == .undecided)
        #expect(UpToDateCheck.compareSorted(ListedRefs(repeated), ListedRefs(repeated)) == .undecided)
        // As sets, a repeated name is refused outright; a reordering alone is the same set.
        #expect(UpToDateCheck.collect(ListedRefs(repeated)) == nil)
        #expect(UpToDateCheck.collect(ListedRefs(sorted)) == UpToDateCheck.collect(ListedRefs(swapped)))
    }

    @Test("an unusual ref on either side makes the check say 'not identical'")
    func unusualRef() {
        let refs = [("refs/tags/a", 1), ("refs/tags/b", 2)]
        #expect(UpToDateCheck.compareSorted(ListedRefs(refs, unusualAt: 1), ListedRefs(refs)) == .different)
        #expect(UpToDateCheck.compareSorted(ListedRefs(refs), ListedRefs(refs, unusualAt: 0)) == .different)
        #expect(UpToDateCheck.collect(ListedRefs(refs, unusualAt: 1)) == nil)
    }

    @Test("advertised names: peeled entries and other namespaces are ignored; any other name is compared, usable or not",
          arguments: [
              ("refs/heads/main", AdvertisedRefs.Classification.mirrored),
              ("refs/tags/prod/v1.0.0", .mirrored),
              ("HEAD", .ignored),
              ("refs/pull/1/head", .ignored),
              ("refs/tags/prod/v1.0.0^{}", .ignored),
              ("refs/tags/a..b", .mirrored),
              ("refs/tags/x\u{01}y", .mirrored),
              ("refs/heads/with space", .mirrored),
              ("refs/tags/ends.lock", .mirrored),
          ])
    func advertisedNames(name: String, expected: AdvertisedRefs.Classification) {
        #expect(name.withCString { AdvertisedRefs.classify($0) } == expected)
    }

    @Test("the local fast path only opens a path it is sure libgit2 would open", arguments: [
        ("/srv/git/delivery.git", "/srv/git/delivery.git" as String?),
        ("file:///srv/git/delivery.git", "/srv/git/delivery.git"),
        ("file://host/srv/git/delivery.git", nil),
        ("file:///srv/git/deli%76ery.git", nil),
        ("https://example.invalid/delivery.git", nil),
        ("git@example.invalid:delivery.git", nil),
    ])
    func localPaths(url: String, expected: String?) {
        #expect(UpToDateCheck.localRepositoryPath(for: url) == expected)
    }
}

/// A ref stream from a list, for testing the comparison without a repository. Ids are small
/// numbers written as 40 hex digits.
final class ListedRefs: RefStream {
    private let names: [UnsafeMutablePointer<CChar>]
    private let targets: [RefTarget]
    private let unusualAt: Int?
    private var index = 0

    init(_ refs: [(String, Int)], unusualAt: Int? = nil) {
        names = refs.compactMap { strdup($0.0) }
        targets = refs.map { try! RefTarget(try! GitObjectID(String(format: "%040x", $0.1))) }
        self.unusualAt = unusualAt
    }

    deinit { names.forEach { free($0) } }

    func next() -> RefStep {
        guard index < names.count else { return .end }
        defer { index += 1 }
        if index == unusualAt { return .unusual }
        return .ref(UnsafePointer(names[index]), targets[index])
    }
}
