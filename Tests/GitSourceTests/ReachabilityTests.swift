import Testing
@testable import GitSource
import LockstepCore

@Suite("Reachability from the protected branch")
struct ReachabilityTests {
    @Test("reachable and merge-commit facts for every kind of commit in a PR history")
    func facts() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let id = { (hex: String) in try GitObjectID(hex) }

        // (commit, reachable from main, merge commit on main's first-parent chain)
        let table: [(String, String, Bool, Bool)] = [
            ("base commit", h.base, true, false),
            ("commit on a merged PR branch", h.featureCommit, true, false),
            ("the PR merge commit", h.merge, true, true),
            ("commit on an unmerged branch", h.unmerged, false, false),
            ("commit pushed directly to main (the tip)", h.fastForward, true, false),
        ]
        for (label, commit, reachable, merge) in table {
            #expect(try await mirror.isReachable(id(commit), fromBranch: "main") == reachable, "\(label)")
            #expect(try await mirror.isMergeOnFirstParentChain(id(commit), branch: "main") == merge, "\(label)")
        }
    }

    @Test("the branch tip itself is reachable, and a merge at the tip is on the first-parent chain")
    func sameCommitEdgeCase() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        try fixture.git("reset", "-q", "--hard", h.merge)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let merge = try GitObjectID(h.merge)
        #expect(try await mirror.branchTip("main") == merge)
        #expect(try await mirror.isReachable(merge, fromBranch: "main"))
        #expect(try await mirror.isMergeOnFirstParentChain(merge, branch: "main"))
    }

    @Test("a merge commit of main into a feature branch is not on main's first-parent chain")
    func mergeOnSideBranch() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        try fixture.checkout("unmerged")
        let sideMerge = try fixture.merge("main", noFF: true, message: "sync main into branch")
        try fixture.checkout("main")
        try fixture.branch("feature2", at: "unmerged")
        try fixture.checkout("feature2")
        try fixture.checkout("main")
        _ = try fixture.merge("feature2", noFF: true, message: "Merge pull request #2")
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let side = try GitObjectID(sideMerge)
        #expect(try await mirror.isReachable(side, fromBranch: "main"))
        #expect(try await mirror.isMergeOnFirstParentChain(side, branch: "main") == false)
        _ = h
    }

    @Test("release facts for a tag on an unmerged commit say it is not reachable")
    func releaseFactsUnmerged() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        try fixture.tag("prod/v9.0.0", annotated: true, message: "sneaky", at: h.unmerged)
        try fixture.tag("prod/v1.0.0", annotated: true, message: "good", at: h.merge)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let sneaky = try await mirror.releaseFacts(tag: "prod/v9.0.0", protectedBranch: "main")
        #expect(!sneaky.reachableFromBranch && !sneaky.isMergeOnFirstParentChain)
        let good = try await mirror.releaseFacts(tag: "prod/v1.0.0", protectedBranch: "main")
        #expect(good.reachableFromBranch && good.isMergeOnFirstParentChain)
        #expect(good.tag.commit.rawValue == h.merge)
        #expect(good.branchTip.rawValue == h.fastForward)
    }

    @Test("release facts follow the branch: an unmerged tag becomes reachable once merged, and a branch reset makes a tag unreachable again (answers kept per tip)")
    func releaseFactsFollowTheBranch() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        try fixture.tag("prod/v9.0.0", annotated: true, message: "later merged", at: h.unmerged)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let before = try await mirror.releaseFacts(tag: "prod/v9.0.0", protectedBranch: "main")
        #expect(!before.reachableFromBranch)
        #expect(try await mirror.releaseFacts(tag: "prod/v9.0.0", protectedBranch: "main").reachableFromBranch == false,
                "asked again with the same tip: the same answer")

        _ = try fixture.merge("unmerged", noFF: true, message: "Merge pull request #9")
        _ = try await mirror.sync()
        let merged = try await mirror.releaseFacts(tag: "prod/v9.0.0", protectedBranch: "main")
        #expect(merged.reachableFromBranch, "the tip moved: the answer is computed again")
        #expect(!merged.isMergeOnFirstParentChain, "the tagged commit is the branch's, not the merge")

        try fixture.git("reset", "-q", "--hard", h.fastForward)
        _ = try await mirror.sync()
        let reset = try await mirror.releaseFacts(tag: "prod/v9.0.0", protectedBranch: "main")
        #expect(!reset.reachableFromBranch, "the tip went back: the merged answer is not reused")
        #expect(reset.branchTip.rawValue == h.fastForward)
    }

    @Test("releaseInputs answers each query as tags(matching:) and releaseFacts would, in query order, a bad glob failing alone")
    func releaseInputsPerQuery() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        try fixture.tag("prod/v9.0.0", annotated: true, message: "sneaky", at: h.unmerged)
        try fixture.tag("prod/v1.0.0", annotated: true, message: "good", at: h.merge)
        try fixture.tag("dev/v1.0.0", at: h.base)
        try fixture.tag("prod/extra/v1.0.0", annotated: true, message: "too deep", at: h.merge)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let queries = [TagQuery(glob: "prod/*", components: 2), TagQuery(glob: "dev/*", components: 2),
                       TagQuery(glob: "qa/*", components: 2), TagQuery(glob: "prod/../*", components: 2)]
        let inputs = await mirror.releaseInputs(for: queries, protectedBranch: "main")
        #expect(inputs.count == 4)

        let prod = try inputs[0].get()
        #expect(prod.listing.tags.map(\.name) == ["prod/v1.0.0", "prod/v9.0.0"])
        #expect(prod.listing.tags == (try await mirror.tags(matching: "prod/*", components: 2)).tags)
        let good = try #require(try prod.facts["prod/v1.0.0"]?.get())
        #expect(good.reachableFromBranch && good.isMergeOnFirstParentChain && good.tag.commit.rawValue == h.merge)
        let sneaky = try #require(try prod.facts["prod/v9.0.0"]?.get())
        #expect(!sneaky.reachableFromBranch && !sneaky.isMergeOnFirstParentChain)
        #expect(prod.facts.count == 2)

        let dev = try inputs[1].get()
        #expect(dev.listing.tags.map(\.name) == ["dev/v1.0.0"])
        #expect(try dev.facts["dev/v1.0.0"]?.get().reachableFromBranch == true)
        #expect(try inputs[2].get().listing.tags.isEmpty)
        #expect(throws: GitError.self) { try inputs[3].get() }
    }

    @Test("an unknown or hostile branch name is refused")
    func badBranch() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let h = try makeMergedHistory(fixture)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let missing = try await #require(throws: GitError.self) { try await mirror.branchTip("release") }
        #expect(missing.code == .notFound)
        #expect(missing.ref == "release")
        let hostile = try await #require(throws: GitError.self) {
            try await mirror.isReachable(try GitObjectID(h.base), fromBranch: "main\n../x")
        }
        #expect(hostile.code == .invalidRefName)
    }
}
