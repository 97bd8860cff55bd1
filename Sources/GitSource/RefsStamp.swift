internal import CLibgit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What two local repositories' refs look like on disk (every file and folder under `refs/`, and
/// `packed-refs`: inode, size, mode, change and modification times), taken before they were
/// compared and found identical. When both stamps are the same again, nothing under `refs/` was
/// written, and the comparison is not repeated.
///
/// Why: with 10,000 tags the up-to-date check read every loose ref file of both repositories on
/// every poll, most of an idle daemon's CPU. A stat of each file answers the same question.
///
/// Kept conservative, like git's index ("racily clean" entries): a stamp is only kept when its
/// newest modification time is at least ``settle`` older than when it was taken, because a file
/// written in the same coarse clock tick as the stat can keep its times. Change times are compared
/// too: nobody can set them back, so a write that restores an old modification time (`touch -d`)
/// still shows. Anything unusual (an unreadable folder, too many entries) gives no stamp, and the
/// full comparison runs.
struct RefsStamp: Equatable, Sendable {
    private var entries: [String: FileStamp] = [:]
    /// The newest modification time seen, in nanoseconds since the epoch.
    private(set) var newest: Int64 = 0

    struct FileStamp: Equatable, Sendable {
        let inode: UInt64
        let size: Int64
        let mode: UInt32
        let modified: Int64
        let changed: Int64
    }

    /// How much older than the stamp's taking its newest time must be for it to be kept.
    static let settle: Int64 = 3_000_000_000
    /// Past this many files and folders no stamp is taken.
    static let maxEntries = 200_000

    /// The stamp of the repository whose git folder is `gitDirectory`; nil when it cannot be taken.
    init?(gitDirectory: String) {
        let root = gitDirectory.hasSuffix("/") ? String(gitDirectory.dropLast()) : gitDirectory
        guard record(root + "/packed-refs", "packed-refs", allowMissing: true), walk(root + "/refs", "refs") else { return nil }
    }

    /// Whether the stamp, taken at `takenAt` (ns since the epoch), is safe to trust later.
    func isSettled(takenAt: Int64) -> Bool { takenAt - newest >= Self.settle }

    /// The current time in nanoseconds since the epoch, as file times are written.
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    private mutating func record(_ path: String, _ key: String, allowMissing: Bool = false) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0 else { return allowMissing && errno == ENOENT }
        let modified = Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec)
        let changed = Int64(status.st_ctim.tv_sec) * 1_000_000_000 + Int64(status.st_ctim.tv_nsec)
        entries[key] = FileStamp(inode: UInt64(status.st_ino), size: Int64(status.st_size), mode: UInt32(status.st_mode),
                                 modified: modified, changed: changed)
        newest = max(newest, modified)
        return entries.count <= Self.maxEntries
    }

    private mutating func walk(_ path: String, _ key: String) -> Bool {
        guard record(path, key), let directory = opendir(path) else { return false }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        for name in names {
            let child = path + "/" + name
            let childKey = key + "/" + name
            var status = stat()
            guard lstat(child, &status) == 0 else { return false }
            if (status.st_mode & S_IFMT) == S_IFDIR {
                guard walk(child, childKey) else { return false }
            } else {
                guard record(child, childKey) else { return false }
            }
        }
        return true
    }
}

/// The stamps of the mirror and the source repository the last time they were found identical
/// (with the skipped refs of then), kept by the mirror between polls.
struct IdenticalRefs: Equatable, Sendable {
    let mirror: RefsStamp
    let source: RefsStamp
    let skipped: [RawRefName: RefTarget]
    let skippedCount: Int
}
