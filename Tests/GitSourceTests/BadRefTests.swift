import Foundation
import LockstepCore
import Logging
import Testing
@testable import GitSource

/// One unusable ref never blinds the gate: it is skipped and reported once with its reason,
/// every other ref is still fetched, and removing it upstream heals the mirror with no manual
/// step (docs/THREAT-MODEL.md, "one unusable ref").
@Suite("Unusable refs")
struct BadRefTests {
    /// How the delivery repository is reached.
    enum Transport: String, CustomStringConvertible, CaseIterable {
        case local, http
        var description: String { rawValue }
    }

    /// One way a pusher can plant an unusable ref, and how it is taken away again.
    struct BadRef: CustomStringConvertible, Sendable {
        let label: String
        /// The full ref name as `SkippedRef.displayName` shows it.
        let displayName: String
        let code: SkippedRef.Code
        /// A part of the expected reason.
        let reason: String
        let transports: [Transport]
        let plant: @Sendable (GitFixture) throws -> Void
        let remove: @Sendable (GitFixture) throws -> Void
        var description: String { label }
    }

    static let longName = "x/" + Array(repeating: String(repeating: "a", count: 199), count: 15).joined(separator: "/")

    static let cases: [BadRef] = [
        BadRef(label: "lightweight tag on a blob", displayName: "\"refs/tags/bad/blob\"", code: .notACommit,
               reason: "it points at a blob, not a commit", transports: Transport.allCases,
               plant: { try $0.git("tag", "bad/blob", "HEAD:a.tf") }, remove: { try $0.deleteTag("bad/blob") }),
        BadRef(label: "lightweight tag on a tree", displayName: "\"refs/tags/bad/tree\"", code: .notACommit,
               reason: "it points at a tree, not a commit", transports: Transport.allCases,
               plant: { try $0.git("tag", "bad/tree", "HEAD^{tree}") }, remove: { try $0.deleteTag("bad/tree") }),
        BadRef(label: "annotated tag on a tree", displayName: "\"refs/tags/bad/atree\"", code: .notACommit,
               reason: "its tag object points at a tree, not a commit", transports: Transport.allCases,
               plant: { try $0.git("tag", "-a", "-m", "tree", "bad/atree", "HEAD^{tree}") }, remove: { try $0.deleteTag("bad/atree") }),
        BadRef(label: "annotated tag on a blob", displayName: "\"refs/tags/dev/v9.0.0\"", code: .notACommit,
               reason: "its tag object points at a blob, not a commit", transports: Transport.allCases,
               plant: { try $0.git("tag", "-a", "-m", "blob", "dev/v9.0.0", "HEAD:a.tf") }, remove: { try $0.deleteTag("dev/v9.0.0") }),
        BadRef(label: "tag on a tag on a blob", displayName: "\"refs/tags/bad/outer\"", code: .notACommit,
               reason: "its tag object points at a blob, not a commit", transports: Transport.allCases,
               plant: { fixture in
                   try fixture.git("tag", "-a", "-m", "inner", "bad/inner", "HEAD:b.tf")
                   try fixture.git("tag", "-a", "-m", "outer", "bad/outer", "bad/inner")
                   try fixture.deleteTag("bad/inner")
               }, remove: { try $0.deleteTag("bad/outer") }),
        BadRef(label: "branch on a blob", displayName: "\"refs/heads/blob-branch\"", code: .notACommit,
               reason: "it points at a blob, not a commit", transports: Transport.allCases,
               plant: { fixture in
                   // git refuses to put a blob on a branch; a hostile server or a hand edit does not.
                   let blob = try fixture.revParse("HEAD:a.tf")
                   try Data("\(blob)\n".utf8).write(to: URL(fileURLWithPath: fixture.path + "/.git/refs/heads/blob-branch"))
               }, remove: { try FileManager.default.removeItem(atPath: $0.path + "/.git/refs/heads/blob-branch") }),
        BadRef(label: "3,000-byte tag name", displayName: RefName.displayable("refs/tags/" + longName), code: .nameTooLong,
               reason: "bytes long (at most 200)", transports: Transport.allCases,
               plant: { try $0.tag(longName) }, remove: { try $0.deleteTag(longName) }),
        BadRef(label: "name with bytes that are not UTF-8", displayName: "\"refs/tags/bad/v1\\u{FFFD}\\u{FFFD}\"", code: .invalidName,
               reason: "non-ASCII", transports: Transport.allCases,
               plant: { fixture in
                   let commit = try fixture.revParse("HEAD")
                   try fixture.git(["update-ref", "--stdin"], input: Data("create refs/tags/bad/v1".utf8) + Data([0xFF, 0xFE]) + Data(" \(commit)\n".utf8))
               }, remove: { fixture in
                   try fixture.git(["update-ref", "--stdin"], input: Data("delete refs/tags/bad/v1".utf8) + Data([0xFF, 0xFE, 0x0A]))
               }),
        BadRef(label: "name with shell characters", displayName: "\"refs/tags/dev/v1.0.1;$(id)\"", code: .invalidName,
               reason: "the name contains the character ;", transports: Transport.allCases,
               plant: { try $0.tag("dev/v1.0.1;$(id)") }, remove: { try $0.deleteTag("dev/v1.0.1;$(id)") }),
        BadRef(label: "annotated tag whose target object is missing", displayName: "\"refs/tags/bad/ghost\"", code: .missingObject,
               reason: "its tag object points at an object", transports: [.local],
               plant: { fixture in
                   let object = "tag-target-\(UUID().uuidString)"
                   let fake = try fixture.git(["hash-object", "--stdin"], input: Data(object.utf8))  // an id nothing stores
                   let body = "object \(fake)\ntype commit\ntag bad/ghost\ntagger T <t@example.invalid> 1700000000 +0000\n\nghost\n"
                   let tag = try fixture.git(["hash-object", "-t", "tag", "--literally", "-w", "--stdin"], input: Data(body.utf8))
                   try fixture.git("update-ref", "refs/tags/bad/ghost", tag)
               }, remove: { try $0.git("update-ref", "-d", "refs/tags/bad/ghost") }),
        BadRef(label: "lightweight tag on a missing object", displayName: "\"refs/tags/bad/nothing\"", code: .missingObject,
               reason: "the object it points at", transports: [.local],
               plant: { fixture in
                   try FileManager.default.createDirectory(atPath: fixture.path + "/.git/refs/tags/bad", withIntermediateDirectories: true)
                   try Data("\(String(repeating: "ab", count: 20))\n".utf8)
                       .write(to: URL(fileURLWithPath: fixture.path + "/.git/refs/tags/bad/nothing"))
               }, remove: { try FileManager.default.removeItem(atPath: $0.path + "/.git/refs/tags/bad/nothing") }),
        BadRef(label: "a tag that is also a folder of tags (a and a/b)", displayName: "\"refs/tags/bad/a/b\"", code: .unstorable,
               reason: "collides with another ref", transports: Transport.allCases,
               plant: { fixture in
                   // git never makes both; a crafted packed-refs file holds them side by side
                   // (and does not claim to be sorted, so git still reads it).
                   let commit = try fixture.revParse("HEAD")
                   try fixture.git("pack-refs", "--all")
                   let packed = fixture.path + "/.git/packed-refs"
                   let lines = try String(contentsOfFile: packed, encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("#") }
                   let text = (["# pack-refs with: peeled fully-peeled "] + lines.map(String.init)
                       + ["\(commit) refs/tags/bad/a/b", "\(commit) refs/tags/bad/a"]).joined(separator: "\n") + "\n"
                   try text.write(toFile: packed, atomically: true, encoding: .utf8)
               }, remove: { fixture in
                   try fixture.git("update-ref", "-d", "refs/tags/bad/a/b")
                   try fixture.git("update-ref", "-d", "refs/tags/bad/a")
               }),
    ]

    static var matrix: [(BadRef, Transport)] {
        cases.flatMap { bad in bad.transports.map { (bad, $0) } }
    }

    @Test("an unusable ref is skipped and reported once; a good tag pushed with it is fetched; removing it heals", arguments: matrix)
    func skippedReportedOnceAndHealed(bad: BadRef, transport: Transport) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, transport)
        defer { upstream.stop() }
        let mirror = upstream.mirror()
        #expect(try await mirror.sync().createdTags.map(\.name) == ["dev/v1.0.0"])

        // The bad ref arrives together with a good release tag.
        try bad.plant(fixture)
        try fixture.tag("dev/v1.1.0")
        try upstream.publish()
        let first = try await mirror.sync()
        #expect(first.createdTags.map(\.name).filter { $0.hasPrefix("dev/") } == ["dev/v1.1.0"])
        #expect(first.skippedRefs.map(\.displayName) == [bad.displayName])
        #expect(first.skippedRefs.first?.code == bad.code)
        #expect(first.skippedRefs.first?.reason.contains(bad.reason) == true, "\(first.skippedRefs)")
        #expect(try await mirror.tags(matching: "dev/*", components: 2).tags.map(\.name) == ["dev/v1.0.0", "dev/v1.1.0"])
        #expect(try !mirrorRefs(fixture).contains { RefName.displayable($0) == bad.displayName })

        // It stays skipped but is not reported again, while every other change still arrives.
        let next = try fixture.commit(files: ["c.tf": "# c\n"], message: "c")
        try fixture.tag("dev/v1.2.0")
        try upstream.publish()
        let second = try await mirror.sync()
        #expect(second.createdTags.map(\.name) == ["dev/v1.2.0"])
        #expect(try second.branches.map(\.new) == [GitObjectID(next)])
        #expect(second.skippedRefs.isEmpty)
        #expect(await mirror.skippedRefs().map(\.displayName) == [bad.displayName])
        // An idle poll is still the cheap comparison, not a full sync.
        let idle = try await mirror.sync()
        #expect(!idle.changed && idle.skippedRefs.isEmpty)
        #expect(await mirror.lastSyncPath == .upToDate)

        // Removed upstream: the next sync works and the skip is cleared, with no manual step.
        try bad.remove(fixture)
        try fixture.tag("dev/v1.3.0")
        try upstream.publish()
        let healed = try await mirror.sync()
        #expect(healed.createdTags.map(\.name) == ["dev/v1.3.0"])
        #expect(healed.clearedSkippedRefs.map(\.displayName) == [bad.displayName])
        #expect(await mirror.skippedRefs().isEmpty)
        #expect(try await mirror.sync().clearedSkippedRefs.isEmpty)
        #expect(try await mirror.tags().tags.map(\.name) == ["dev/v1.0.0", "dev/v1.1.0", "dev/v1.2.0", "dev/v1.3.0"])
        #expect(try mirrorRefs(fixture).count == 5)
    }

    @Test("a ref skipped, removed and pushed again is reported again: once per appearance")
    func reportedOncePerAppearance() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        let mirror = upstream.mirror()
        try fixture.git("tag", "bad/blob", "HEAD:a.tf")
        #expect(try await mirror.sync().skippedRefs.count == 1)
        try fixture.deleteTag("bad/blob")
        #expect(try await mirror.sync().clearedSkippedRefs.count == 1)
        try fixture.git("tag", "bad/blob", "HEAD:b.tf")
        let again = try await mirror.sync()
        #expect(again.skippedRefs.map(\.displayName) == ["\"refs/tags/bad/blob\""])
        // The same name on another unusable target is a new appearance too.
        try fixture.git("tag", "-f", "bad/blob", "HEAD^{tree}")
        let moved = try await mirror.sync()
        #expect(moved.skippedRefs.map(\.reason) == ["it points at a tree, not a commit"])
    }

    @Test("a release tag moved onto a blob is deleted from the mirror and reported, and comes back when fixed")
    func goodTagTurnedBad() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        let mirror = upstream.mirror()
        _ = try await mirror.sync()
        let commit = try fixture.revParse("HEAD")
        try fixture.git("tag", "-f", "dev/v1.0.0", "HEAD:a.tf")
        let report = try await mirror.sync()
        #expect(try report.deletedTags == [FetchReport.Change(name: "dev/v1.0.0", old: GitObjectID(commit), new: nil)])
        #expect(report.skippedRefs.map(\.code) == [.notACommit])
        try fixture.git("tag", "-f", "dev/v1.0.0", commit)
        let fixed = try await mirror.sync()
        #expect(fixed.createdTags.map(\.name) == ["dev/v1.0.0"])
        #expect(fixed.clearedSkippedRefs.count == 1)
    }

    @Test("a deleted branch replaced by one inside its name (feature → feature/x) and a force-push both sync", arguments: Transport.allCases)
    func branchDeletedAndForcePushed(transport: Transport) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, transport)
        defer { upstream.stop() }
        try fixture.branch("feature")
        try fixture.tag("dev/v2")
        try upstream.publish()
        let mirror = upstream.mirror()
        _ = try await mirror.sync()

        try fixture.git("branch", "-D", "feature")
        try fixture.branch("feature/x")
        try fixture.deleteTag("dev/v2")
        try fixture.tag("dev/v2/rc1")
        let base = try fixture.revParse("HEAD")
        let rewritten = try fixture.commit(files: ["a.tf": "# rewritten\n"], message: "rewritten")
        try fixture.git("reset", "-q", "--hard", base)
        let forced = try fixture.commit(files: ["a.tf": "# forced\n"], message: "forced")
        #expect(rewritten != forced)
        try upstream.publish()
        let report = try await mirror.sync()
        #expect(Set(report.branches.map(\.name)) == ["feature", "feature/x", "main"])
        #expect(report.deletedTags.map(\.name) == ["dev/v2"])
        #expect(report.createdTags.map(\.name).contains("dev/v2/rc1"))
        #expect(report.skippedRefs.isEmpty)
        #expect(try await mirror.branchTip("main").rawValue == forced)
        #expect(try await mirror.branchTip("feature/x").rawValue == base)
    }

    @Test("refs outside refs/heads and refs/tags are neither fetched nor reported, even ones libgit2 cannot handle")
    func otherNamespacesIgnored() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        let mirror = upstream.mirror()
        _ = try await mirror.sync()
        try fixture.git("update-ref", "refs/pull/1/head", "HEAD")
        try fixture.git("update-ref", "refs/notes/" + Self.longName, "HEAD")
        try fixture.git("update-ref", "refs/odd/blob", "HEAD:a.tf")
        try fixture.tag("dev/v1.1.0")
        let report = try await mirror.sync()
        #expect(report.createdTags.map(\.name) == ["dev/v1.1.0"])
        #expect(report.skippedRefs.isEmpty)
        #expect(try mirrorRefs(fixture) == ["refs/heads/main", "refs/tags/dev/v1.0.0", "refs/tags/dev/v1.1.0"])
    }

    @Test("thousands of unusable refs next to thousands of good tags: one report, then cheap idle polls")
    func manyBadRefs() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        let mirror = upstream.mirror()
        let blob = try fixture.revParse("HEAD:a.tf")
        let commit = try fixture.revParse("HEAD")
        var stream = ""
        for i in 0..<2_000 {
            stream += "create refs/tags/blob/v\(i) \(blob)\n"
            stream += "create refs/tags/dev/v2.0.\(i) \(commit)\n"
            stream += "create refs/tags/hostile/v\(i);x \(commit)\n"
        }
        try fixture.git(["update-ref", "--stdin"], input: Data(stream.utf8))
        try fixture.git("pack-refs", "--all")
        let report = try await mirror.sync()
        #expect(report.createdTags.count == 2_001)
        #expect(report.skippedRefs.count == 4_000)
        let again = try await mirror.sync()
        #expect(again.skippedRefs.isEmpty && !again.changed)
        #expect(await mirror.lastSyncPath == .upToDate)
        #expect(await mirror.skippedRefs().count == 4_000)
    }

    @Test("a mirror already holding a tag on a blob (left by an older version) is cleaned and syncs again")
    func brokenMirrorHeals() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        _ = try await upstream.mirror().sync()
        let mirrorGit = ["-C", mirrorPath(in: fixture)]
        try fixture.git(mirrorGit + ["update-ref", "refs/tags/bad/blob", try fixture.revParse("HEAD:a.tf")])
        try fixture.git(mirrorGit + ["update-ref", "refs/odd/tree", try fixture.revParse("HEAD^{tree}")])
        try fixture.tag("dev/v1.1.0")
        // A restarted daemon: a fresh actor over the same folder.
        let report = try await upstream.mirror().sync()
        #expect(report.createdTags.map(\.name) == ["dev/v1.1.0"])
        #expect(try mirrorRefs(fixture) == ["refs/heads/main", "refs/tags/dev/v1.0.0", "refs/tags/dev/v1.1.0"])
    }

    // MARK: Errors say whose problem it is

    @Test("an unreachable remote is a network error carrying libgit2's class and message")
    func unreachableIsNetwork() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let port = try LoopbackTCP.freePort()
        let mirror = GitMirror(remote: Remote(url: "http://127.0.0.1:\(port)/delivery.git"), path: mirrorPath(in: fixture), logger: Logger(label: "t"))
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.code == .network)
        #expect(error.description.contains("libgit2 os error -1: failed to connect to 127.0.0.1: " + String(cString: strerror(ECONNREFUSED))), "\(error.description)")
    }

    @Test("a read-only mirror filesystem is a filesystem error, not 'unreachable'")
    func readOnlyMirror() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let mount = try TmpfsMount(in: fixture, size: "4m")
        defer { mount.unmount() }
        let upstream = try Upstream(fixture, .local)
        let mirror = GitMirror(remote: Remote(url: fixture.path), path: mount.path + "/mirror.git", logger: Logger(label: "t"))
        _ = try await mirror.sync()
        try mount.remount(readOnly: true)
        _ = upstream
        try fixture.commit(files: ["n.tf": "# n\n"], message: "n")
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.code == .filesystem, "\(error.description)")
        #expect(error.description.contains(String(cString: strerror(EROFS))), "\(error.description)")
    }

    @Test("a full disk under the mirror is disk_full, with libgit2's words")
    func diskFull() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let mount = try TmpfsMount(in: fixture, size: "512k")
        defer { mount.unmount() }
        _ = try Upstream(fixture, .local)
        let mirror = GitMirror(remote: Remote(url: fixture.path), path: mount.path + "/mirror.git", logger: Logger(label: "t"))
        _ = try await mirror.sync()
        var generator = SystemRandomNumberGenerator()
        let random = (0..<200_000).map { _ in generator.next() as UInt64 }
        try random.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: fixture.path + "/big.bin")) }
        try fixture.git("add", "big.bin")
        try fixture.commit(files: [:], message: "big")
        let error = try await #require(throws: GitError.self) { try await mirror.sync() }
        #expect(error.code == .diskFull, "\(error.description)")
        #expect(error.description.contains(String(cString: strerror(ENOSPC))), "\(error.description)")
    }

    @Test("a damaged mirror object is corrupt_repository")
    func corruptMirror() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let upstream = try Upstream(fixture, .local)
        _ = try await upstream.mirror().sync()
        let packs = mirrorPath(in: fixture) + "/objects/pack"
        for file in try FileManager.default.contentsOfDirectory(atPath: packs) where file.hasSuffix(".pack") {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: packs + "/" + file))
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: 12)
            try handle.write(contentsOf: Data(repeating: 0x5A, count: Int(size) - 12 - 20))
            try handle.close()
        }
        let error = try await #require(throws: GitError.self) { try await upstream.mirror().sync() }
        #expect(error.code == .corruptRepository, "\(error.description)")
    }

    @Test("libgit2 failures of system calls are classified by errno: descriptors, disk, permissions")
    func systemFailuresClassified() {
        func code(_ errno: Int32, viaMessage: Bool) -> GitError.Code {
            let message = viaMessage ? "failed to open '/x/objects/pack/tmp': " + String(cString: strerror(errno)) : "failed"
            return classify(rc: -1, klass: 2, message: message, errno: errno)
        }
        for via in [true, false] {
            #expect(code(EMFILE, viaMessage: via) == .descriptorsExhausted)
            #expect(code(ENFILE, viaMessage: via) == .descriptorsExhausted)
            #expect(code(ENOSPC, viaMessage: via) == .diskFull)
            #expect(code(EROFS, viaMessage: via) == .filesystem)
            #expect(code(EACCES, viaMessage: via) == .filesystem)
        }
        #expect(classify(rc: -1, klass: 12, message: "failed to resolve address", errno: 0) == .network)
        #expect(classify(rc: -1, klass: 9, message: "object not found", errno: 0) == .corruptRepository)
    }

    // MARK: Support

    /// The git CLI's view of the mirror's refs.
    func mirrorRefs(_ fixture: GitFixture) throws -> [String] {
        try fixture.git("-C", mirrorPath(in: fixture), "for-each-ref", "--format=%(refname)")
            .split(separator: "\n").map(String.init).sorted()
    }
}

/// The delivery repository with one commit (`a.tf`, `b.tf`) on `main` tagged `dev/v1.0.0`,
/// reached over a local path or smart HTTP.
private final class Upstream {
    let fixture: GitFixture
    let transport: BadRefTests.Transport
    private var server: GitHTTPServer?

    init(_ fixture: GitFixture, _ transport: BadRefTests.Transport) throws {
        self.fixture = fixture
        self.transport = transport
        try fixture.commit(files: ["a.tf": "# a\n", "b.tf": "# b\n"], message: "a")
        try fixture.git("branch", "-M", "main")
        try fixture.tag("dev/v1.0.0")
        if transport == .http {
            try publish()
            server = try GitHTTPServer(root: fixture.servedRoot)
        }
    }

    /// Makes the served copy equal to the work repository (HTTP only).
    func publish() throws {
        guard transport == .http else { return }
        let target = fixture.servedRoot.appendingPathComponent("delivery.git").path
        if !FileManager.default.fileExists(atPath: target) {
            try FileManager.default.createDirectory(at: fixture.servedRoot, withIntermediateDirectories: true)
            try fixture.git("init", "-q", "--bare", target)
        }
        // Refs are copied by hand: `git push` refuses some of the refs these tests plant.
        let source = fixture.path + "/.git"
        try FixtureProcess.check("/bin/rm", ["-rf", target + "/refs", target + "/packed-refs", target + "/objects"], environment: [:])
        try FixtureProcess.check("/bin/cp", ["-a", source + "/refs", source + "/objects", target + "/"], environment: [:])
        if FileManager.default.fileExists(atPath: source + "/packed-refs") {
            try FixtureProcess.check("/bin/cp", ["-a", source + "/packed-refs", target + "/"], environment: [:])
        }
    }

    func mirror() -> GitMirror {
        let url = server.map { $0.url(for: "delivery.git") } ?? fixture.path
        return GitMirror(remote: Remote(url: url), path: mirrorPath(in: fixture), logger: Logger(label: "test"))
    }

    func stop() { server?.stop() }
}

/// A small tmpfs mounted inside the fixture's scratch folder (the tests run as root).
private struct TmpfsMount {
    let path: String

    init(in fixture: GitFixture, size: String) throws {
        path = fixture.scratch.appendingPathComponent("tmpfs").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try FixtureProcess.check("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path], environment: ["PATH": "/usr/bin:/bin"])
    }

    func remount(readOnly: Bool) throws {
        try FixtureProcess.check("/bin/mount", ["-o", readOnly ? "remount,ro" : "remount,rw", path], environment: ["PATH": "/usr/bin:/bin"])
    }

    func unmount() {
        _ = try? FixtureProcess.check("/bin/umount", [path], environment: ["PATH": "/usr/bin:/bin"])
    }
}
