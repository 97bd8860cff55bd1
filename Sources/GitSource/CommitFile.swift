internal import CLibgit2
import Foundation
import LockstepCore

extension GitMirror {
    /// The bytes of the regular file at `path` in the tree of `commit`, read straight from the
    /// mirror's object database: nothing is written to disk. `nil` when the tree has no entry
    /// at that path.
    ///
    /// Only a regular file (executable or not) is read. A symlink is refused rather than
    /// followed (its target could name any file of the tree, or none), as are a folder, a
    /// submodule and a file larger than `maxBytes` (its size is read from the object header
    /// first, so an oversized blob is never loaded). Each refusal is a `GitError` naming the
    /// path, so a caller can tell "the file is wrong" from "the mirror could not be read".
    ///
    /// - Parameter path: relative to the repository root, `/`-separated (`lockstep.yaml`,
    ///   `infra/app/lockstep.yaml`); `..`, `.`, empty components and a leading `/` are refused.
    public func file(at path: String, commit: GitObjectID, maxBytes: Int) throws(GitError) -> Data? {
        try Self.checkFilePath(path)
        let shown = RefName.displayable(path)
        return try withRepository { repo throws(GitError) in
            var oid = try commit.gitOID()
            let commitObject = try make("commit not found", ref: commit.rawValue, free: { git_commit_free($0) }) {
                git_commit_lookup($0, repo.pointer, &oid)
            }
            let tree = try make("cannot read the commit's tree", ref: commit.rawValue, free: { git_tree_free($0) }) {
                git_commit_tree($0, commitObject.pointer)
            }
            var found: OpaquePointer?
            let rc = git_tree_entry_bypath(&found, tree.pointer, path)
            if rc == GIT_ENOTFOUND.rawValue {
                git_error_clear()
                return nil
            }
            try check(rc, "cannot look up a file in the commit", ref: commit.rawValue)
            guard let found else { return nil }
            let entry = Managed(found, free: { git_tree_entry_free($0) })
            switch git_tree_entry_filemode(entry.pointer) {
            case GIT_FILEMODE_BLOB, GIT_FILEMODE_BLOB_EXECUTABLE:
                break
            case GIT_FILEMODE_LINK:
                throw GitError(.notAFile, "the path is a symlink, which is not followed", ref: commit.rawValue, path: shown)
            case GIT_FILEMODE_TREE:
                throw GitError(.notAFile, "the path is a folder, not a file", ref: commit.rawValue, path: shown)
            case GIT_FILEMODE_COMMIT:
                throw GitError(.notAFile, "the path is a submodule, which is never followed", ref: commit.rawValue, path: shown)
            default:
                throw GitError(.notAFile, "the path has an unsupported entry mode", ref: commit.rawValue, path: shown)
            }
            guard let blobID = git_tree_entry_id(entry.pointer) else {
                throw GitError(.libgit2, "the file has no object id", ref: commit.rawValue, path: shown)
            }
            let odb = try make("cannot open the object database", free: { git_odb_free($0) }) {
                git_repository_odb($0, repo.pointer)
            }
            var size = 0
            var type = GIT_OBJECT_ANY
            try check(git_odb_read_header(&size, &type, odb.pointer, blobID), "cannot read the file's size", ref: commit.rawValue)
            guard size <= maxBytes else {
                throw GitError(.fileTooLarge, "the file is \(size) bytes, more than the \(maxBytes) allowed",
                               ref: commit.rawValue, path: shown)
            }
            let blob = try make("cannot read the file", ref: commit.rawValue, free: { git_blob_free($0) }) {
                git_blob_lookup($0, repo.pointer, blobID)
            }
            let count = Int(git_blob_rawsize(blob.pointer))
            guard count > 0, let raw = git_blob_rawcontent(blob.pointer) else { return Data() }
            return Data(bytes: raw, count: count)
        }
    }

    /// Refuses a path that is not a plain relative path inside the tree.
    static func checkFilePath(_ path: String) throws(GitError) {
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        let plain = !path.isEmpty && path.utf8.count <= 4096 && !path.utf8.contains(0)
            && components.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
        guard plain else {
            throw GitError(.unsafePath, "refused file path: expected a relative path without '.', '..' or empty parts",
                           path: RefName.displayable(path))
        }
    }
}

extension GitMirror {
    /// The message of `commit` as git stores it (for a merged pull request, the merge's
    /// "Merge pull request #N …" and the body the forge wrote), cut to `maxBytes`: repository
    /// text, shown to reviewers escaped.
    public func commitMessage(_ commit: GitObjectID, maxBytes: Int = 4_000) throws(GitError) -> String {
        try withRepository { repo throws(GitError) in
            var oid = try commit.gitOID()
            let object = try make("commit not found", ref: commit.rawValue, free: { git_commit_free($0) }) {
                git_commit_lookup($0, repo.pointer, &oid)
            }
            let bytes = git_commit_message(object.pointer).map { Array(UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: strlen($0))) } ?? []
            return String(decoding: bytes.prefix(maxBytes), as: UTF8.self)
        }
    }
}
