import Foundation
import LockstepCore
import Testing
@testable import GitSource

/// `GitMirror.file(at:commit:maxBytes:)` reads one file of a commit from the object database
/// (the gate reads `lockstep.yaml` this way instead of exporting the whole commit). A commit
/// is untrusted input: only a regular file within the size cap is ever returned.
@Suite("One file of a commit, read from the object database")
struct CommitFileTests {
    /// A repository whose HEAD has a plain file, an executable, a folder, a symlink, a
    /// submodule entry and a file over the cap used below; the mirror synced from it.
    private func repository() async throws -> (GitFixture, GitMirror, GitObjectID) {
        let fixture = try GitFixture()
        let first = try fixture.commit(files: [
            "lockstep.yaml": "projects: {}\n",
            "infra/app/lockstep.yaml": "nested\n",
            "scripts/run.sh": "#!/bin/sh\n",
            "big.txt": String(repeating: "x", count: 4096),
            "empty.txt": "",
        ], message: "layout")
        try fixture.git("update-index", "--chmod=+x", "scripts/run.sh")
        try fixture.symlink("linked.yaml", target: "lockstep.yaml")
        // A submodule entry (mode 160000) naming a commit; no .gitmodules needed for the tree.
        try fixture.git("update-index", "--add", "--cacheinfo", "160000,\(first),vendor/sub")
        let head = try fixture.commit(files: [:], message: "link, exec bit and submodule")
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        return (fixture, mirror, try GitObjectID(head))
    }

    @Test("a regular file's bytes come back exactly, at the root, in a folder, executable or empty")
    func readsRegularFiles() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        #expect(try await mirror.file(at: "lockstep.yaml", commit: commit, maxBytes: 1024) == Data("projects: {}\n".utf8))
        #expect(try await mirror.file(at: "infra/app/lockstep.yaml", commit: commit, maxBytes: 1024) == Data("nested\n".utf8))
        #expect(try await mirror.file(at: "scripts/run.sh", commit: commit, maxBytes: 1024) == Data("#!/bin/sh\n".utf8))
        #expect(try await mirror.file(at: "empty.txt", commit: commit, maxBytes: 1024) == Data())
        // Exactly at the cap is allowed.
        #expect(try await mirror.file(at: "big.txt", commit: commit, maxBytes: 4096)?.count == 4096)
    }

    @Test("a path the commit does not have is nil, also below a file or in a missing folder")
    func absentIsNil() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        #expect(try await mirror.file(at: "missing.yaml", commit: commit, maxBytes: 1024) == nil)
        #expect(try await mirror.file(at: "nowhere/lockstep.yaml", commit: commit, maxBytes: 1024) == nil)
        #expect(try await mirror.file(at: "lockstep.yaml/inner", commit: commit, maxBytes: 1024) == nil)
    }

    @Test("a symlink, a folder and a submodule are refused with an error naming the path, never followed")
    func refusesWhatIsNotAFile() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        for (path, words) in [("linked.yaml", "symlink"), ("infra", "folder"), ("infra/app", "folder"), ("vendor/sub", "submodule")] {
            let error = await #expect(throws: GitError.self, "\(path)") {
                try await mirror.file(at: path, commit: commit, maxBytes: 1024)
            }
            #expect(error?.code == .notAFile, "\(path)")
            #expect(error?.description.contains(words) == true, "\(path): \(error?.description ?? "")")
            #expect(error?.path?.contains(path) == true, "\(path)")
        }
    }

    @Test("a file over the cap is refused with its size and the path, before it is read")
    func refusesOversize() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        let error = await #expect(throws: GitError.self) {
            try await mirror.file(at: "big.txt", commit: commit, maxBytes: 4095)
        }
        #expect(error?.code == .fileTooLarge)
        #expect(error?.description.contains("4096 bytes") == true)
        #expect(error?.path?.contains("big.txt") == true)
    }

    @Test("paths that climb, start at / or have empty parts are refused before libgit2 sees them")
    func refusesUnsafePaths() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        for path in ["", "/etc/passwd", "../lockstep.yaml", "infra/../lockstep.yaml", "./lockstep.yaml", "infra//app", "infra/"] {
            let error = await #expect(throws: GitError.self, "\(path)") {
                try await mirror.file(at: path, commit: commit, maxBytes: 1024)
            }
            #expect(error?.code == .unsafePath, "\(path)")
        }
    }

    @Test("a commit that is not in the mirror is an error, not an absent file")
    func unknownCommit() async throws {
        let (fixture, mirror, _) = try await repository()
        defer { fixture.cleanup() }
        let error = await #expect(throws: GitError.self) {
            try await mirror.file(at: "lockstep.yaml", commit: try GitObjectID(String(repeating: "ab", count: 20)), maxBytes: 1024)
        }
        #expect(error?.code == .notFound)
    }

    @Test("a commit's message comes back as git stored it, cut at the byte limit; an unknown commit is an error")
    func commitMessage() async throws {
        let (fixture, mirror, commit) = try await repository()
        defer { fixture.cleanup() }
        #expect(try await mirror.commitMessage(commit) == "link, exec bit and submodule\n")
        #expect(try await mirror.commitMessage(commit, maxBytes: 4) == "link")
        await #expect(throws: GitError.self) {
            _ = try await mirror.commitMessage(try GitObjectID(String(repeating: "0", count: 40)))
        }
    }
}

/// Object ids cross into GitSource as Core's `GitObjectID`, which also admits SHA-256 ids
/// (64 digits) from the store or an API. The libgit2 this agent links reads SHA-1 only: such
/// an id is refused with its own error, never cut to 40 digits (which would name another
/// object) and never dropped.
@Suite("Object ids this libgit2 cannot address")
struct ObjectFormatTests {
    @Test("a SHA-256 id is refused by file, export and reachability with unsupported_object_format, naming the id")
    func sha256Refused() async throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let head = try fixture.commit(files: ["lockstep.yaml": "x\n"], message: "one")
        try fixture.git("branch", "-M", "main")
        let mirror = localMirror(of: fixture)
        _ = try await mirror.sync()
        // The SHA-1 head followed by 24 more digits: its first 40 digits name a real commit.
        let long = try GitObjectID(head + String(repeating: "0", count: 24))

        let file = await #expect(throws: GitError.self) { try await mirror.file(at: "lockstep.yaml", commit: long, maxBytes: 64) }
        #expect(file?.code == .unsupportedObjectFormat)
        #expect(file?.ref == long.rawValue)
        let directory = try freshDirectory(in: fixture)
        let export = await #expect(throws: GitError.self) { try await mirror.export(commit: long, to: directory) }
        #expect(export?.code == .unsupportedObjectFormat)
        #expect(contents(of: directory).isEmpty)
        let reach = await #expect(throws: GitError.self) { try await mirror.isReachable(long, fromBranch: "main") }
        #expect(reach?.code == .unsupportedObjectFormat)
    }
}
