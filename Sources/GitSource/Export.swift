internal import CLibgit2
import Foundation
import LockstepCore

/// Caps on what one export may write. A commit is untrusted input: without caps, a tree of a
/// million files, a 50 GB blob or a path 10,000 folders deep fills the agent's disk or exhausts
/// its inodes (docs/THREAT-MODEL.md §1.7).
public struct ExportLimits: Sendable, Hashable {
    /// Total bytes of all files.
    public var maxBytes: Int
    /// Number of files and symlinks.
    public var maxFiles: Int
    /// Number of path components of the deepest entry (`a/b/c.tf` has depth 3).
    public var maxDepth: Int

    public init(maxBytes: Int = 256 << 20, maxFiles: Int = 20_000, maxDepth: Int = 32) {
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
        self.maxDepth = maxDepth
    }
}

/// What an export wrote.
public struct ExportResult: Sendable {
    public let commit: GitObjectID
    /// The tree of the exported commit (promotion compares trees).
    public let tree: GitObjectID
    public let fileCount: Int
    public let byteCount: Int
    /// Paths left out because a folder (or file or link) had an excluded name.
    public let excluded: [String]
    /// Submodule entries, which are never followed.
    public let skippedSubmodules: [String]

    public init(commit: GitObjectID, tree: GitObjectID, fileCount: Int, byteCount: Int, excluded: [String] = [],
                skippedSubmodules: [String] = []) {
        self.commit = commit
        self.tree = tree
        self.fileCount = fileCount
        self.byteCount = byteCount
        self.excluded = excluded
        self.skippedSubmodules = skippedSubmodules
    }
}

extension GitMirror {
    /// Writes the tree of `commit` into `directory`, which must exist and be empty.
    ///
    /// The whole tree is read and checked before the first byte is written: entry names that
    /// could escape (`..`, `/`, `.git`), symlinks whose target leaves the directory (absolute, or
    /// climbing out with `..`, also through other links of the tree), and the limits. Any problem
    /// fails the export with an error naming the path, and nothing is left in `directory`.
    /// Entries whose name is in `excludedNames` (e.g. `.terraform`, `terraform.d`: committed
    /// provider binaries must never run) are left out at any depth. Folders are created `0700`,
    /// files `0600` (`0700` when executable in git), so a run directory never exposes plan
    /// inputs to other users.
    public func export(commit: GitObjectID, to directory: String, limits: ExportLimits = ExportLimits(),
                       excludingNames excludedNames: Set<String> = []) throws(GitError) -> ExportResult {
        try withRepository { repo throws(GitError) in
            try checkTarget(directory)
            var oid = try commit.gitOID()
            let commitObject = try make("commit not found", ref: commit.rawValue, free: { git_commit_free($0) }) {
                git_commit_lookup($0, repo.pointer, &oid)
            }
            let tree = try make("cannot read the commit's tree", ref: commit.rawValue, free: { git_tree_free($0) }) {
                git_commit_tree($0, commitObject.pointer)
            }
            let treeID = GitObjectID(git_tree_id(tree.pointer))
            let odb = try make("cannot open the object database", free: { git_odb_free($0) }) {
                git_repository_odb($0, repo.pointer)
            }
            var plan = ExportPlan(limits: limits, excludedNames: excludedNames)
            try plan.collect(tree, prefix: [], repo: repo, odb: odb)
            try plan.checkSymlinks()
            do throws(GitError) {
                try plan.write(into: directory, repo: repo)
            } catch {
                removeContents(of: directory)
                throw error
            }
            return ExportResult(commit: commit, tree: treeID, fileCount: plan.fileCount, byteCount: plan.byteCount,
                                excluded: plan.excluded, skippedSubmodules: plan.submodules)
        }
    }

    private func checkTarget(_ directory: String) throws(GitError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw GitError(.exportTarget, "the export directory does not exist", path: directory)
        }
        guard (try? FileManager.default.contentsOfDirectory(atPath: directory))?.isEmpty == true else {
            throw GitError(.exportTarget, "the export directory is not empty: a run always starts from a fresh one", path: directory)
        }
    }

    private func removeContents(of directory: String) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] {
            try? fm.removeItem(atPath: directory + "/" + name)
        }
    }
}

/// The checked list of what an export will write, built before anything is written.
private struct ExportPlan {
    enum Kind { case directory, file(executable: Bool), symlink(target: String) }
    struct Entry { let path: [String]; let kind: Kind; let blob: git_oid? }

    let limits: ExportLimits
    let excludedNames: Set<String>
    var entries: [Entry] = []
    var kinds: [[String]: Kind] = [:]
    var fileCount = 0
    var byteCount = 0
    var excluded: [String] = []
    var submodules: [String] = []

    init(limits: ExportLimits, excludedNames: Set<String>) {
        self.limits = limits
        self.excludedNames = excludedNames
    }

    mutating func collect(_ tree: Managed, prefix: [String], repo: Managed, odb: Managed) throws(GitError) {
        let count = git_tree_entrycount(tree.pointer)
        for index in 0..<count {
            guard let entry = git_tree_entry_byindex(tree.pointer, index), let rawName = git_tree_entry_name(entry) else { continue }
            let name = String(cString: rawName)
            let path = prefix + [name]
            let shown = path.joined(separator: "/")
            if name.isEmpty || name == "." || name == ".." || name.contains("/")
                || name.lowercased() == ".git" || name.utf8.count > 255 {
                throw GitError(.unsafePath, "refused entry name \(RefName.displayable(name)) in the tree", path: RefName.displayable(shown))
            }
            if excludedNames.contains(name) {
                excluded.append(shown)
                continue
            }
            if path.count > limits.maxDepth {
                throw GitError(.exportLimit, "the tree is deeper than the export limit of \(limits.maxDepth) levels",
                               path: RefName.displayable(shown))
            }
            guard let oid = git_tree_entry_id(entry) else { continue }
            let mode = git_tree_entry_filemode(entry)
            switch mode {
            case GIT_FILEMODE_TREE:
                entries.append(Entry(path: path, kind: .directory, blob: nil))
                kinds[path] = .directory
                let subtree = try make("cannot read a subtree", free: { git_tree_free($0) }) {
                    git_tree_lookup($0, repo.pointer, oid)
                }
                try collect(subtree, prefix: path, repo: repo, odb: odb)
            case GIT_FILEMODE_COMMIT:
                submodules.append(shown)
            case GIT_FILEMODE_LINK:
                let target = try readBlob(oid, repo: repo, path: shown)
                guard let text = String(bytes: target, encoding: .utf8), !text.isEmpty, !text.utf8.contains(0) else {
                    throw GitError(.unsafeSymlink, "the symlink's target is empty or not text", path: RefName.displayable(shown))
                }
                try tally(bytes: 0, path: shown)
                entries.append(Entry(path: path, kind: .symlink(target: text), blob: nil))
                kinds[path] = .symlink(target: text)
            case GIT_FILEMODE_BLOB, GIT_FILEMODE_BLOB_EXECUTABLE:
                var size = 0
                var type = GIT_OBJECT_ANY
                try check(git_odb_read_header(&size, &type, odb.pointer, oid), "cannot read a file's size", ref: shown)
                try tally(bytes: size, path: shown)
                let kind = Kind.file(executable: mode == GIT_FILEMODE_BLOB_EXECUTABLE)
                entries.append(Entry(path: path, kind: kind, blob: oid.pointee))
                kinds[path] = kind
            default:
                throw GitError(.unsafePath, "unsupported entry mode \(mode.rawValue) in the tree", path: RefName.displayable(shown))
            }
        }
    }

    private mutating func tally(bytes: Int, path: String) throws(GitError) {
        fileCount += 1
        byteCount += bytes
        if fileCount > limits.maxFiles {
            throw GitError(.exportLimit, "the tree has more than the export limit of \(limits.maxFiles) files", path: RefName.displayable(path))
        }
        if byteCount > limits.maxBytes {
            throw GitError(.exportLimit, "the tree holds more than the export limit of \(limits.maxBytes) bytes", path: RefName.displayable(path))
        }
    }

    private func readBlob(_ oid: UnsafePointer<git_oid>, repo: Managed, path: String) throws(GitError) -> [UInt8] {
        let blob = try make("cannot read a file", ref: path, free: { git_blob_free($0) }) {
            git_blob_lookup($0, repo.pointer, oid)
        }
        let size = Int(git_blob_rawsize(blob.pointer))
        guard size > 0, let raw = git_blob_rawcontent(blob.pointer) else { return [] }
        return Array(UnsafeRawBufferPointer(start: raw, count: size))
    }

    /// Follows every symlink through the tree as the kernel would (each link's target is read
    /// relative to the link's folder, and links met on the way are followed too) and refuses
    /// any that leaves the tree. A target that does not exist inside the tree is allowed: it
    /// dangles, but it cannot reach anything outside.
    func checkSymlinks() throws(GitError) {
        for entry in entries {
            guard case let .symlink(target) = entry.kind else { continue }
            let shown = RefName.displayable(entry.path.joined(separator: "/"))
            if target.hasPrefix("/") {
                throw GitError(.unsafeSymlink, "the symlink points to an absolute path, outside the exported tree", path: shown)
            }
            var folder = Array(entry.path.dropLast())
            var pending = target.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
            var hops = 0
            while !pending.isEmpty {
                let component = pending.removeFirst()
                if component == "." { continue }
                if component == ".." {
                    if folder.isEmpty {
                        throw GitError(.unsafeSymlink, "the symlink climbs out of the exported tree with '..'", path: shown)
                    }
                    folder.removeLast()
                    continue
                }
                let next = folder + [component]
                if case let .symlink(innerTarget) = kinds[next] {
                    hops += 1
                    if hops > 40 {
                        throw GitError(.unsafeSymlink, "the symlink is part of a loop", path: shown)
                    }
                    if innerTarget.hasPrefix("/") {
                        throw GitError(.unsafeSymlink, "the symlink leads through a link to an absolute path", path: shown)
                    }
                    pending = innerTarget.split(separator: "/", omittingEmptySubsequences: true).map(String.init) + pending
                } else {
                    folder = next
                }
            }
        }
    }

    /// Writes folders and files first and symlinks last, so that no write ever goes through a
    /// link; files are created with `O_EXCL | O_NOFOLLOW`.
    func write(into directory: String, repo: Managed) throws(GitError) {
        for entry in entries {
            let full = directory + "/" + entry.path.joined(separator: "/")
            let shown = RefName.displayable(entry.path.joined(separator: "/"))
            switch entry.kind {
            case .directory:
                if mkdir(full, 0o700) != 0 {
                    throw GitError(.io, "cannot create a folder: \(String(cString: strerror(errno)))", path: shown)
                }
            case let .file(executable):
                guard var oid = entry.blob else { continue }
                let blob = try make("cannot read a file", ref: shown, free: { git_blob_free($0) }) {
                    git_blob_lookup($0, repo.pointer, &oid)
                }
                let fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, executable ? 0o700 : 0o600)
                if fd < 0 { throw GitError(.io, "cannot create a file: \(String(cString: strerror(errno)))", path: shown) }
                defer { close(fd) }
                var remaining = Int(git_blob_rawsize(blob.pointer))
                guard var cursor = git_blob_rawcontent(blob.pointer) else { continue }
                while remaining > 0 {
                    let written = Foundation.write(fd, cursor, remaining)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw GitError(.io, "cannot write a file: \(String(cString: strerror(errno)))", path: shown)
                    }
                    remaining -= written
                    cursor += written
                }
            case .symlink:
                break
            }
        }
        for entry in entries {
            guard case let .symlink(target) = entry.kind else { continue }
            let full = directory + "/" + entry.path.joined(separator: "/")
            if symlink(target, full) != 0 {
                throw GitError(.io, "cannot create a symlink: \(String(cString: strerror(errno)))",
                               path: RefName.displayable(entry.path.joined(separator: "/")))
            }
        }
    }
}
