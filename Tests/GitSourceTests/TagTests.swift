import Foundation
import LockstepCore
import Testing
@testable import GitSource

@Suite("Tags")
struct TagTests {
    @Test("listing by glob keeps only names with the right number of components (libgit2's * crosses /)")
    func depthIsChecked() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        for name in ["staging/v1.0.0", "staging/v1.1.0", "staging/extra/v9.0.0", "prod/v1.0.0", "stagingx/v1.0.0"] {
            try fixture.tag(name)
        }
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        let listing = try await mirror.tags(matching: "staging/*", components: 2)
        #expect(listing.tags.map(\.name) == ["staging/v1.0.0", "staging/v1.1.0"])
        let all = try await mirror.tags(matching: "*", components: nil)
        #expect(all.tags.count == 5)
    }

    @Test("listings come from one index per ref write: a new, moved or deleted tag shows in the next listing, globs match as libgit2's do")
    func indexFollowsEveryWrite() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let first = try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        for name in ["svc1/dev/v1.0.0", "svc1/dev/v1.1.0", "svc1/devx/v1.0.0", "svc10/dev/v1.0.0", "svc2/dev/v1.0.0"] {
            try fixture.tag(name, annotated: true, message: name)
        }
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        // The literal start narrows the names; `*` still crosses `/`.
        #expect(try await mirror.tags(matching: "svc1/dev/*").tags.map(\.name) == ["svc1/dev/v1.0.0", "svc1/dev/v1.1.0"])
        #expect(try await mirror.tags(matching: "svc1*").tags.count == 4)
        #expect(try await mirror.tags(matching: "*/dev/v1.0.0").tags.map(\.name) == ["svc1/dev/v1.0.0", "svc10/dev/v1.0.0", "svc2/dev/v1.0.0"])
        #expect(try await mirror.tags(matching: "svc*/dev/*").tags.count == 4)
        #expect(try await mirror.tags(matching: "svc2/dev/v1.0.0").tags.map(\.name) == ["svc2/dev/v1.0.0"])
        #expect(try await mirror.tags(matching: "svc3/*").tags.isEmpty)
        let before = try await mirror.tags(matching: "svc1/dev/*").tags

        // A new tag, a moved one and a deleted one are all in the very next listing.
        let second = try fixture.commit(files: ["a.tf": "# 2\n"], message: "b")
        try fixture.tag("svc1/dev/v1.2.0", annotated: true, message: "new")
        _ = try fixture.runGit(["tag", "-f", "-a", "-m", "moved", "svc1/dev/v1.1.0", second])
        _ = try fixture.runGit(["tag", "-d", "svc1/dev/v1.0.0"])
        _ = try await mirror.sync()
        let after = try await mirror.tags(matching: "svc1/dev/*").tags
        #expect(after.map(\.name) == ["svc1/dev/v1.1.0", "svc1/dev/v1.2.0"])
        #expect(after.first?.commit.rawValue == second)
        #expect(before.first { $0.name == "svc1/dev/v1.1.0" }?.commit.rawValue == first)
        #expect(after.first?.target != before.first { $0.name == "svc1/dev/v1.1.0" }?.target)
    }

    @Test("annotated tags carry tagger, time and message without the signature; lightweight tags have none")
    func annotationMetadata() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let commit = try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        try fixture.tag("dev/v1.0.0", annotated: true, message: "Release one\n\nnotes")
        try fixture.tag("dev/v1.0.1")
        let key = try fixture.makeSSHKey(named: "signer")
        try fixture.tag("dev/v1.0.2", message: "Signed release", sshSigningKey: key.privateKey)
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()

        let annotated = try await mirror.tag(named: "dev/v1.0.0")
        let annotation = try #require(annotated.annotation)
        #expect(annotation.taggerName == GitFixture.authorName)
        #expect(annotation.taggerEmail == GitFixture.authorEmail)
        #expect(annotation.message.hasPrefix("Release one\n\nnotes"))
        #expect(annotation.signatureFormat == nil)
        #expect(annotated.commit.rawValue == commit)
        #expect(annotated.target.rawValue == (try fixture.revParse("dev/v1.0.0")))
        #expect(annotated.target != annotated.commit)
        #expect(annotated.tree.rawValue == (try fixture.revParse("\(commit)^{tree}")))

        let lightweight = try await mirror.tag(named: "dev/v1.0.1")
        #expect(lightweight.annotation == nil)
        #expect(lightweight.target == lightweight.commit)

        let signed = try #require(try await mirror.tag(named: "dev/v1.0.2").annotation)
        #expect(signed.signatureFormat == .ssh)
        #expect(signed.message.hasPrefix("Signed release"))
        #expect(!signed.message.contains("BEGIN SSH SIGNATURE"))
    }

    @Test("a tag pointing at a tree, not a commit, is skipped by the sync with its reason, never listed or used")
    func tagOnTree() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        try fixture.tag("dev/v1.0.0", at: "HEAD^{tree}")
        try fixture.tag("dev/v1.0.1")
        let mirror = localMirror(of: fixture)
        let report = try await mirror.sync()
        #expect(report.createdTags.map(\.name) == ["dev/v1.0.1"])
        #expect(report.skippedRefs.map(\.displayName) == ["\"refs/tags/dev/v1.0.0\""])
        #expect(report.skippedRefs.first?.code == .notACommit)
        #expect(report.skippedRefs.first?.reason == "it points at a tree, not a commit")
        let listing = try await mirror.tags(matching: "dev/*", components: 2)
        #expect(listing.tags.map(\.name) == ["dev/v1.0.1"])
        let error = try await #require(throws: GitError.self) { try await mirror.tag(named: "dev/v1.0.0") }
        #expect(error.code == .notFound)
    }

    @Test("hostile tag names that git accepts are skipped by the sync with a reason each, never mirrored or used")
    func hostileNamesRefused() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        let hostile = ["prod/v1.0.0;reboot", "prod/v$(id)", "prod/v1`id`", "prod/" + String(repeating: "a", count: 240), "prod/v1'\"x"]
        for name in hostile { try fixture.tag(name) }
        try fixture.tag("prod/v1.0.0")
        let mirror = localMirror(of: fixture)
        let report = try await mirror.sync()
        #expect(report.createdTags.map(\.name) == ["prod/v1.0.0"])
        #expect(report.skippedRefs.count == hostile.count)
        #expect(Set(report.skippedRefs.map(\.code)) == [.invalidName, .nameTooLong])
        for skipped in report.skippedRefs {
            #expect(skipped.displayName.utf8.count < 100)
            #expect(skipped.isTag)
        }
        let listing = try await mirror.tags(matching: "prod/*", components: 2)
        #expect(listing.tags.map(\.name) == ["prod/v1.0.0"])
        #expect(listing.refused.isEmpty)
        for name in hostile {
            await #expect(throws: GitError.self) { try await mirror.tag(named: name) }
        }
    }

    @Test("10,000 tags are listed and peeled")
    func tenThousandTags() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let commit = try fixture.commit(files: ["a.tf": "#\n"], message: "a")
        try fixture.createManyTags(count: 5_000, name: { "dev/v1.0.\($0)" })
        try fixture.createManyTags(count: 5_000, annotated: true, name: { "prod/v1.0.\($0)" })
        let mirror = localMirror(of: fixture)
        let report = try await mirror.sync()
        #expect(report.createdTags.count == 10_000)
        let listing = try await mirror.tags(matching: "*", components: 2)
        #expect(listing.tags.count == 10_000)
        #expect(listing.tags.allSatisfy { $0.commit.rawValue == commit })
        #expect(listing.tags.filter(\.isAnnotated).count == 5_000)
    }
}

@Suite("Ref names")
struct RefNameTests {
    @Test("safe names are accepted", arguments: ["dev/v1.0.0", "app/prod/v2.3.4-rc.1+build.5", "main", "release_2024"])
    func accepted(name: String) throws {
        #expect(RefName.problem(with: name) == nil)
        try RefName.validate(name)
    }

    @Test("unsafe names are refused with a reason", arguments: [
        "", "dev/v1\n", "dev/v1\u{7}", "dev/../prod", "/dev", "dev/", "dev//v1", "dev/.hidden", "dev/v1.lock",
        "dev/v1.", "dev v1", "dev/v1;rm -rf", "dev/$(id)", "dev/`id`", "dev/é", "dev/v1@{0}", "dev/*",
        String(repeating: "x", count: 201),
    ])
    func refused(name: String) {
        #expect(RefName.problem(with: name) != nil)
        #expect(throws: GitError.self) { try RefName.validate(name) }
    }

    @Test("displayable names are escaped, quoted and cut")
    func displayable() {
        #expect(RefName.displayable("a\nb") == "\"a\\nb\"")
        #expect(RefName.displayable(String(repeating: "y", count: 500)).utf8.count < 90)
    }
}
