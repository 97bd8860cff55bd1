import Foundation
import LockstepCore
import Testing
@testable import GitSource

@Suite("Export of a commit's tree")
struct ExportTests {
    private func mirrorWith(_ fixture: GitFixture) async throws -> (GitMirror, GitObjectID) {
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        return (mirror, try GitObjectID(try fixture.revParse("HEAD")))
    }

    @Test("files, folders, modes and the tree id are exported exactly; excluded folders are dropped at any depth")
    func exportsTree() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: [
            "infra/main.tf": "resource \"null_resource\" \"a\" {}\n",
            "infra/modules/net/net.tf": "# net\n",
            "infra/.terraform/providers/evil": "binary",
            "infra/terraform.d/plugins/evil": "binary",
            "terraform.d/plugins/x": "binary",
            "scripts/check.sh": "#!/bin/sh\nexit 0\n",
        ], message: "layout")
        try fixture.git("update-index", "--chmod=+x", "scripts/check.sh")
        try fixture.symlink("infra/link.tf", target: "modules/net/net.tf")
        try fixture.commit(files: [:], message: "exec bit and link")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)

        let result = try await mirror.export(commit: commit, to: directory, excludingNames: [".terraform", "terraform.d"])

        #expect(result.tree.rawValue == (try fixture.revParse("HEAD^{tree}")))
        #expect(result.fileCount == 4)
        #expect(Set(result.excluded) == ["infra/.terraform", "infra/terraform.d", "terraform.d"])
        #expect(try String(contentsOfFile: directory + "/infra/main.tf", encoding: .utf8) == "resource \"null_resource\" \"a\" {}\n")
        #expect(try String(contentsOfFile: directory + "/infra/link.tf", encoding: .utf8) == "# net\n")
        #expect(contents(of: directory + "/infra") == ["link.tf", "main.tf", "modules"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/terraform.d"))
        let fileMode = try FileManager.default.attributesOfItem(atPath: directory + "/infra/main.tf")[.posixPermissions] as? Int
        let execMode = try FileManager.default.attributesOfItem(atPath: directory + "/scripts/check.sh")[.posixPermissions] as? Int
        let dirMode = try FileManager.default.attributesOfItem(atPath: directory + "/infra")[.posixPermissions] as? Int
        #expect(fileMode == 0o600 && execMode == 0o700 && dirMode == 0o700)
    }

    @Test("symlinks leaving the tree are refused, naming the path, and nothing is written", arguments: [
        ("abs.tf", "/etc/passwd"),
        ("up.tf", "../outside"),
        ("deep/up.tf", "../../etc/passwd"),
        ("deep/sneaky.tf", "../deep/../../x"),
    ])
    func escapingSymlinks(link: String, target: String) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["main.tf": "#\n", "deep/a.tf": "#\n"], message: "base")
        try fixture.symlink(link, target: target)
        try fixture.commit(files: [:], message: "link")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)
        let error = try await #require(throws: GitError.self) { try await mirror.export(commit: commit, to: directory) }
        #expect(error.code == .unsafeSymlink)
        #expect(error.path == "\"\(link)\"")
        #expect(contents(of: directory).isEmpty)
    }

    @Test("a chain of links that escapes only when followed is refused; links that stay inside are fine")
    func chainedSymlinks() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["sub/inner/a.tf": "#\n"], message: "base")
        // sub/l2 -> ../.. climbs out only from inside sub; l1 -> sub/l2/x looks harmless lexically.
        try fixture.symlink("sub/l2", target: "../..")
        try fixture.symlink("l1", target: "sub/l2/x")
        try fixture.commit(files: [:], message: "links")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)
        let error = try await #require(throws: GitError.self) { try await mirror.export(commit: commit, to: directory) }
        #expect(error.code == .unsafeSymlink)
        #expect(contents(of: directory).isEmpty)

        let ok = try GitFixture()
        defer { ok.cleanup() }
        try ok.commit(files: ["sub/inner/a.tf": "#\n"], message: "base")
        try ok.symlink("sub/up", target: "..")
        try ok.symlink("l1", target: "sub/up/sub/inner/a.tf")
        try ok.symlink("dangling", target: "does/not/exist")
        try ok.commit(files: [:], message: "links inside")
        let (okMirror, okCommit) = try await mirrorWith(ok)
        let okDirectory = try freshDirectory(in: ok)
        let result = try await okMirror.export(commit: okCommit, to: okDirectory)
        #expect(result.fileCount == 4)
        #expect(try String(contentsOfFile: okDirectory + "/l1", encoding: .utf8) == "#\n")
    }

    @Test("a symlink loop is refused")
    func symlinkLoop() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["main.tf": "#\n"], message: "base")
        try fixture.symlink("a", target: "b")
        try fixture.symlink("b", target: "a")
        try fixture.commit(files: [:], message: "loop")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)
        let error = try await #require(throws: GitError.self) { try await mirror.export(commit: commit, to: directory) }
        #expect(error.code == .unsafeSymlink)
    }

    @Test("each export limit fails cleanly with nothing written", arguments: [
        ("files", ExportLimits(maxBytes: 1 << 20, maxFiles: 5, maxDepth: 10)),
        ("bytes", ExportLimits(maxBytes: 1_000, maxFiles: 100, maxDepth: 10)),
        ("depth", ExportLimits(maxBytes: 1 << 20, maxFiles: 100, maxDepth: 3)),
    ])
    func limits(name: String, limits: ExportLimits) async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        var files: [String: String] = [:]
        for index in 0..<6 { files["f\(index).tf"] = "# small\n" }
        files["a/b/c/d.tf"] = "# deep\n"
        files["big.bin"] = String(repeating: "x", count: 2_000)
        try fixture.commit(files: files, message: "big")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)
        let error = try await #require(throws: GitError.self) {
            try await mirror.export(commit: commit, to: directory, limits: limits)
        }
        #expect(error.code == .exportLimit, "\(name)")
        #expect(contents(of: directory).isEmpty)
        // The same commit exports with default limits.
        let ok = try freshDirectory(in: fixture, "ok")
        #expect(try await mirror.export(commit: commit, to: ok).fileCount == 8)
    }

    @Test("submodules are not followed, and a non-empty or missing target is refused")
    func submodulesAndTargets() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let first = try fixture.commit(files: ["main.tf": "#\n"], message: "base")
        try fixture.git("update-index", "--add", "--cacheinfo", "160000,\(first),vendored")
        try fixture.commit(files: [:], message: "submodule")
        let (mirror, commit) = try await mirrorWith(fixture)
        let directory = try freshDirectory(in: fixture)
        let result = try await mirror.export(commit: commit, to: directory)
        #expect(result.skippedSubmodules == ["vendored"])
        #expect(contents(of: directory) == ["main.tf"])

        let again = try await #require(throws: GitError.self) { try await mirror.export(commit: commit, to: directory) }
        #expect(again.code == .exportTarget)
        #expect(try String(contentsOfFile: directory + "/main.tf", encoding: .utf8) == "#\n")
        let missing = try await #require(throws: GitError.self) {
            try await mirror.export(commit: commit, to: fixture.scratch.path + "/absent")
        }
        #expect(missing.code == .exportTarget)
    }
}
