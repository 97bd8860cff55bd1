import NameLiterals
import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import Synchronization
import Testing
import TerraformRunner
@testable import LockstepGate

// MARK: - Release source

/// A delivery repository held in memory: commits with their files, a branch tip, tags with
/// their annotation and the facts the gate asks about them (reachable from the protected
/// branch, merge commit on its first-parent chain). `sync()` reports what changed since the
/// last sync, as the mirror does, so moving or deleting a tag here is seen by the next pass.
/// Failures are scripted per operation; every export is recorded.
actor ScriptedReleaseSource: ReleaseSource {
    /// One commit: its tree id and files (path → bytes; executable paths listed apart).
    struct Commit: Sendable {
        var tree: GitObjectID
        var files: [String: Data]
        var executable: Set<String> = []
    }

    /// One tag as the remote has it now.
    struct Tag: Sendable {
        var info: TagInfo
        var reachable: Bool
        var mergeCommit: Bool
    }

    nonisolated let path: String
    private(set) var tip: GitObjectID
    private(set) var commits: [GitObjectID: Commit] = [:]
    private(set) var tags: [String: Tag] = [:]
    /// Tag name → object at the last successful sync (what the mirror has fetched).
    private var fetched: [String: GitObjectID] = [:]
    private var objectCounter = 0

    /// Scripted failures (nil: the operation works).
    var syncFailure: GitError?
    var exportFailure: GitError?
    var releaseFactsFailure: [String: GitError] = [:]
    /// The tree the export reports, when it should differ from the commit's (a mirror that lies).
    var exportedTreeOverride: GitObjectID?

    /// What the gate asked: commits exported (in order) and syncs.
    private(set) var exports: [GitObjectID] = []
    private(set) var syncs = 0

    /// Tag objects by id, for environments that require signed tags.
    var rawTags: [GitObjectID: RawTagObject] = [:]

    func rawTag(id: GitObjectID, name: String) throws(GitError) -> RawTagObject {
        guard let raw = rawTags[id] else { throw GitError(.notFound, "no tag object \(id)", ref: name) }
        return raw
    }

    init(path: String, layout: String) {
        self.path = path
        tip = try! GitObjectID(String(format: "%040x", 1))
        objectCounter = 2
        commits[tip] = Commit(tree: try! GitObjectID(String(format: "%040x", 2)), files: ["lockstep.yaml": Data(layout.utf8)])
    }

    /// A fresh object id, distinct from every other this source handed out.
    func newObjectID() -> GitObjectID {
        objectCounter += 1
        return try! GitObjectID(String(format: "%040x", objectCounter))
    }

    /// Adds a commit with `files` (its own tree) and, when `onBranch`, makes it the branch tip.
    @discardableResult
    func commit(files: [String: String], executable: Set<String> = [], onBranch: Bool = true) -> GitObjectID {
        commit(bytes: files.mapValues { Data($0.utf8) }, executable: executable, onBranch: onBranch)
    }

    /// The same with the files' bytes as they are (not necessarily text).
    @discardableResult
    func commit(bytes files: [String: Data], executable: Set<String> = [], onBranch: Bool = true) -> GitObjectID {
        let id = newObjectID()
        commits[id] = Commit(tree: newObjectID(), files: files, executable: executable)
        if onBranch { tip = id }
        return id
    }

    /// Creates (or replaces) the tag `name` on `commit`: annotated by `tagger` unless nil.
    @discardableResult
    func tag(_ name: String, at commit: GitObjectID, tagger: String? = "dave@example.com", reachable: Bool = true,
             mergeCommit: Bool = true) -> TagInfo {
        let annotation = tagger.map {
            TagAnnotation(taggerName: "Tagger", taggerEmail: $0, taggedAt: Date(timeIntervalSince1970: 1_800_000_000),
                          message: "release", signatureFormat: nil)
        }
        // An annotated tag is an object of its own; a lightweight one names the commit.
        let object = annotation == nil ? commit : newObjectID()
        let info = TagInfo(name: name, target: object, commit: commit, tree: commits[commit]!.tree, annotation: annotation)
        tags[name] = Tag(info: info, reachable: reachable, mergeCommit: mergeCommit)
        return info
    }

    func deleteTag(_ name: String) { tags[name] = nil }

    /// Whether the tag's commit is reachable from the branch tip now (a merge can make it so).
    func setReachable(_ name: String, _ reachable: Bool) { tags[name]?.reachable = reachable }

    /// Changes the script (failures, overrides) in one step.
    func script(_ body: @Sendable (isolated ScriptedReleaseSource) -> Void) { body(self) }

    // ReleaseSource

    func sync() throws(GitError) -> FetchReport {
        syncs += 1
        if let syncFailure { throw syncFailure }
        var report = FetchReport(initialClone: false)
        for (name, tag) in tags.sorted(by: { $0.key < $1.key }) {
            switch fetched[name] {
            case nil: report.createdTags.append(.init(name: name, old: nil, new: tag.info.target))
            case let old? where old != tag.info.target: report.movedTags.append(.init(name: name, old: old, new: tag.info.target))
            default: break
            }
        }
        for (name, old) in fetched.sorted(by: { $0.key < $1.key }) where tags[name] == nil {
            report.deletedTags.append(.init(name: name, old: old, new: nil))
        }
        fetched = tags.mapValues(\.info.target)
        return report
    }

    func branchTip(_ branch: String) throws(GitError) -> GitObjectID { tip }

    func tags(matching glob: String, components: Int?) throws(GitError) -> TagListing {
        let names = tags.keys.sorted().filter { name in
            fnmatch(glob, name, 0) == 0 && (components == nil || name.split(separator: "/").count == components)
        }
        return TagListing(tags: names.compactMap { tags[$0]?.info })
    }

    func tag(named name: String) throws(GitError) -> TagInfo {
        guard let tag = tags[name] else { throw GitError(.notFound, "tag not found", ref: name) }
        return tag.info
    }

    func releaseFacts(tag name: String, protectedBranch branch: String) throws(GitError) -> ReleaseFacts {
        if let failure = releaseFactsFailure[name] { throw failure }
        guard let tag = tags[name] else { throw GitError(.notFound, "tag not found", ref: name) }
        return ReleaseFacts(tag: tag.info, branchTip: tip, reachableFromBranch: tag.reachable,
                            isMergeOnFirstParentChain: tag.mergeCommit)
    }

    func export(commit: GitObjectID, to directory: String, limits: GitSource.ExportLimits,
                excludingNames excludedNames: Set<String>) throws(GitError) -> ExportResult {
        exports.append(commit)
        if let exportFailure { throw exportFailure }
        guard let stored = commits[commit] else { throw GitError(.notFound, "commit not found") }
        let root = URL(fileURLWithPath: directory, isDirectory: true)
        var bytes = 0
        do {
            for (path, data) in stored.files {
                let file = root.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try data.write(to: file)
                if stored.executable.contains(path) {
                    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
                }
                bytes += data.count
            }
        } catch {
            throw GitError(.io, "the double could not write the export")
        }
        return ExportResult(commit: commit, tree: exportedTreeOverride ?? stored.tree, fileCount: stored.files.count,
                            byteCount: bytes)
    }

    func file(at path: String, commit: GitObjectID, maxBytes: Int) throws(GitError) -> Data? {
        commits[commit]?.files[path]
    }

    func skippedRefs() -> [SkippedRef] { [] }
}
