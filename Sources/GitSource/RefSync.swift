internal import CLibgit2
import Foundation
import LockstepCore

// How the mirror takes refs from the remote, one ref at a time.
//
// libgit2's own fetch treats the refs as one unit, and one unusable ref makes the whole fetch
// fail, on every later sync too (libgit2 1.5.1, measured with repositories built by the git CLI):
//
// * Its local transport (`/path`, `file://`) hides every ref of the *mirror* in a revwalk and
//   only tolerates commits there: once a tag on a tree or a blob was mirrored, every later
//   fetch failed ("object is not a committish"), and since pruning runs after the failing
//   step, deleting the tag upstream never healed the mirror.
// * The same transport looks up every ref of the remote by name while connecting and
//   negotiating, so one name longer than libgit2's 1,024-byte buffer anywhere in the remote
//   (even outside `refs/heads` and `refs/tags`) failed every fetch.
// * Its update step creates refs before pruning, so a deleted `dev/v1` replaced by `dev/v1/x`
//   (a name that is a folder of another) failed every fetch, over every transport; a name too
//   long to store failed the whole update.
//
// So the mirror only uses libgit2 to *download objects* (smart transports) or copies them
// itself (local paths), then decides ref by ref: a ref with an unusable name or target is
// skipped with its reason, the others are written, deletions first. The mirror never holds an
// unusable ref, so nothing in it can break a later fetch, and a ref removed upstream is simply
// no longer offered. See docs/THREAT-MODEL.md, "one unusable ref".

/// A full ref name as the remote gave it: raw bytes, which need not be UTF-8.
struct RawRefName: Hashable, Comparable {
    let bytes: [UInt8]

    init(_ name: UnsafePointer<CChar>) {
        bytes = Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    init(_ name: String) { bytes = Array(name.utf8) }

    init(bytes: [UInt8]) { self.bytes = bytes }

    static let tagsPrefix = Array("refs/tags/".utf8)
    static let headsPrefix = Array("refs/heads/".utf8)

    var isTag: Bool { bytes.starts(with: Self.tagsPrefix) }
    var isBranch: Bool { bytes.starts(with: Self.headsPrefix) }
    /// Under `refs/heads/` or `refs/tags/`: the only namespaces the mirror keeps.
    var isMirrored: Bool { isTag || isBranch }

    /// The name without `refs/tags/` or `refs/heads/`, bytes not UTF-8 replaced.
    var shortName: String {
        let prefix = isTag ? Self.tagsPrefix.count : isBranch ? Self.headsPrefix.count : 0
        return String(decoding: bytes[prefix...], as: UTF8.self)
    }

    var shortByteCount: Int { bytes.count - (isTag ? Self.tagsPrefix.count : isBranch ? Self.headsPrefix.count : 0) }

    /// Quoted, escaped, cut: safe for one line of a log or an API answer.
    var displayName: String { RefName.displayable(String(decoding: bytes, as: UTF8.self)) }

    func withCString<T>(_ body: (UnsafePointer<CChar>) throws(GitError) -> T) throws(GitError) -> T {
        var terminated = bytes
        terminated.append(0)
        return try terminated.withUnsafeBufferPointer { (buffer) throws(GitError) -> T in
            try buffer.withMemoryRebound(to: CChar.self) { (chars) throws(GitError) -> T in try body(chars.baseAddress!) }
        }
    }

    /// Byte order, the order of `strcmp`, of packed-refs and of a server's advertisement.
    static func < (lhs: RawRefName, rhs: RawRefName) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}

/// An object id usable as a dictionary key and handed back to libgit2.
struct GitOID: Hashable {
    let raw: git_oid
    let key: RefTarget

    init(_ oid: git_oid) {
        raw = oid
        key = RefTarget(oid)
    }

    var objectID: GitObjectID {
        var copy = raw
        return GitObjectID(&copy)
    }

    static func == (lhs: GitOID, rhs: GitOID) -> Bool { lhs.key == rhs.key }
    func hash(into hasher: inout Hasher) { key.hash(into: &hasher) }
}

/// A ref the remote offers for the mirrored namespaces.
struct OfferedRef {
    let name: RawRefName
    /// `nil` when the ref could not be resolved (a symbolic ref to nothing).
    let target: GitOID?
}

/// Why one ref is not taken.
struct RefProblem: Equatable {
    let code: SkippedRef.Code
    let reason: String
}

enum RefVetting {
    /// The longest tag chain followed (`tag → tag → … → commit`): git never makes long ones.
    static let maximumTagDepth = 8

    /// Why the mirror cannot or will not keep a ref of this name, or `nil`.
    ///
    /// The mirror keeps only names Lockstep would use: everything downstream — the tag list, the
    /// gate, logs, run folders — can then trust that a mirrored name is short and plain, and a
    /// name too long for libgit2's buffers never reaches libgit2's ref code.
    static func nameProblem(_ name: RawRefName) -> RefProblem? {
        let length = name.shortByteCount
        if length > RefName.maximumLength {
            return RefProblem(code: .nameTooLong, reason: "the name is \(length) bytes long (at most \(RefName.maximumLength))")
        }
        if let problem = RefName.problem(with: name.shortName) {
            return RefProblem(code: .invalidName, reason: problem)
        }
        var valid: Int32 = 0
        let rc = try? name.withCString { (pointer) throws(GitError) -> Int32 in git_reference_name_is_valid(&valid, pointer) }
        if rc != 0 || valid == 0 {
            return RefProblem(code: .invalidName, reason: "git does not accept the name")
        }
        return nil
    }

    /// Why the ref's target is unusable, or `nil` when it is a commit, directly or through tag
    /// objects. Reads object headers in `odb` (of `repo`); only a failure to read the object
    /// database itself throws (that is not one ref's problem).
    static func targetProblem(_ oid: GitOID, repo: OpaquePointer, odb: OpaquePointer) throws(GitError) -> RefProblem? {
        var current = oid.raw
        for depth in 0...maximumTagDepth {
            var size = 0
            var type = GIT_OBJECT_INVALID
            let rc = git_odb_read_header(&size, &type, odb, &current)
            if rc == GIT_ENOTFOUND.rawValue {
                git_error_clear()
                let id = GitObjectID(&current).short
                return RefProblem(code: .missingObject, reason: depth == 0
                    ? "the object it points at (\(id)) does not exist"
                    : "its tag object points at an object (\(id)) that does not exist")
            }
            try check(rc, "cannot read an object of the repository")
            let via = depth == 0 ? "it points at" : "its tag object points at"
            switch type {
            case GIT_OBJECT_COMMIT:
                return nil
            case GIT_OBJECT_TAG:
                var tag: OpaquePointer?
                guard git_tag_lookup(&tag, repo, &current) == 0, let tag, let next = git_tag_target_id(tag) else {
                    git_error_clear()
                    return RefProblem(code: .notACommit, reason: "its tag object \(GitObjectID(&current).short) cannot be parsed")
                }
                current = next.pointee
                git_tag_free(tag)
            case GIT_OBJECT_TREE:
                return RefProblem(code: .notACommit, reason: "\(via) a tree, not a commit")
            case GIT_OBJECT_BLOB:
                return RefProblem(code: .notACommit, reason: "\(via) a blob, not a commit")
            default:
                return RefProblem(code: .notACommit, reason: "\(via) an object of unknown type")
            }
        }
        return RefProblem(code: .unstorable, reason: "it is more than \(maximumTagDepth) tag objects deep")
    }
}

enum RefListing {
    /// The mirrored-namespace refs a connected remote advertised (peeled `^{}` entries left out).
    static func advertised(_ remote: OpaquePointer) throws(GitError) -> [OfferedRef] {
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        try check(git_remote_ls(&heads, &count, remote), "cannot read the refs the remote advertised")
        guard let heads else { return [] }
        var refs: [OfferedRef] = []
        refs.reserveCapacity(count)
        for head in UnsafeBufferPointer(start: heads, count: count) {
            guard let head, let cName = UnsafePointer(head.pointee.name) else { continue }
            let name = RawRefName(cName)
            guard name.isMirrored, !name.bytes.reversed().starts(with: Array("}{^".utf8)) else { continue }
            refs.append(OfferedRef(name: name, target: GitOID(head.pointee.oid)))
        }
        return refs
    }

    /// The mirrored-namespace refs of a local repository, as its advertisement would show them
    /// (a symbolic ref as the id it resolves to). Ref by ref: one that cannot be resolved is
    /// offered without a target, never a reason to stop.
    static func local(_ repo: OpaquePointer) throws(GitError) -> [OfferedRef] {
        let iterator = try make("cannot list the remote repository's refs", free: { git_reference_iterator_free($0) }) {
            git_reference_iterator_new($0, repo)
        }
        var refs: [OfferedRef] = []
        while true {
            var reference: OpaquePointer?
            let rc = git_reference_next(&reference, iterator.pointer)
            if rc == GIT_ITEROVER.rawValue { break }
            try check(rc, "cannot list the remote repository's refs")
            guard let reference else { break }
            defer { git_reference_free(reference) }
            guard let cName = git_reference_name(reference) else { continue }
            let name = RawRefName(cName)
            guard name.isMirrored else { continue }
            if git_reference_type(reference) == GIT_REFERENCE_DIRECT, let target = git_reference_target(reference) {
                refs.append(OfferedRef(name: name, target: GitOID(target.pointee)))
                continue
            }
            var resolved: OpaquePointer?
            if git_reference_resolve(&resolved, reference) == 0, let resolved, let target = git_reference_target(resolved) {
                refs.append(OfferedRef(name: name, target: GitOID(target.pointee)))
                git_reference_free(resolved)
            } else {
                git_error_clear()
                refs.append(OfferedRef(name: name, target: nil))
            }
        }
        return refs
    }

    /// Every ref of the mirror, by name: direct ones with their id, anything else (a symbolic
    /// ref) with `nil`.
    static func mirror(_ repo: OpaquePointer) throws(GitError) -> [RawRefName: GitOID?] {
        let iterator = try make("cannot list the mirror's refs", free: { git_reference_iterator_free($0) }) {
            git_reference_iterator_new($0, repo)
        }
        var refs: [RawRefName: GitOID?] = [:]
        while true {
            var reference: OpaquePointer?
            let rc = git_reference_next(&reference, iterator.pointer)
            if rc == GIT_ITEROVER.rawValue { break }
            try check(rc, "cannot list the mirror's refs")
            guard let reference else { break }
            defer { git_reference_free(reference) }
            guard let cName = git_reference_name(reference) else { continue }
            if git_reference_type(reference) == GIT_REFERENCE_DIRECT, let target = git_reference_target(reference) {
                refs[RawRefName(cName)] = GitOID(target.pointee)
            } else {
                refs[RawRefName(cName)] = .some(nil)
            }
        }
        return refs
    }
}

/// Copies the objects that the wanted commits and tags need from a local repository into the
/// mirror, as one pack: what libgit2's local transport does, without its per-ref failures.
///
/// The pack is built through a second handle on the mirror with the source's objects added as
/// an alternate (in memory only, never written to the mirror's config): libgit2's pack builder
/// lists the tags of the repository it works on, and the source's tags may include a name it
/// cannot read (one of 3,000 bytes made the whole copy fail), while the mirror's are vetted.
enum LocalObjectCopy {
    /// `wanted` are ref targets already vetted in `source` (tag chains end at a commit);
    /// `have` are the mirror's ref targets (all commits), whose history is left out.
    static func copy(from source: OpaquePointer, to mirror: OpaquePointer, wanted: [GitOID], have: [GitOID]) throws(GitError) {
        let mirrorODB = try make("cannot open the mirror's object database", free: { git_odb_free($0) }) {
            git_repository_odb($0, mirror)
        }
        let missing = Set(wanted).filter { oid in
            var raw = oid.raw
            return git_odb_exists(mirrorODB.pointer, &raw) == 0
        }
        guard !missing.isEmpty else { return }
        guard let mirrorDir = git_repository_path(mirror), let sourceDir = git_repository_path(source) else {
            throw GitError(.libgit2, "the mirror or the remote repository has no path")
        }
        let packDir = String(cString: mirrorDir) + "objects/pack"
        let sourceObjects = String(cString: sourceDir) + "objects"
        let builderRepo = try make("cannot open the mirror", free: { git_repository_free($0) }) {
            git_repository_open_ext($0, String(cString: mirrorDir), GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue | GIT_REPOSITORY_OPEN_BARE.rawValue, nil)
        }
        let odb = try make("cannot open the mirror's object database", free: { git_odb_free($0) }) {
            git_repository_odb($0, builderRepo.pointer)
        }
        try check(git_odb_add_disk_alternate(odb.pointer, sourceObjects), "cannot read the remote repository's objects")
        let walk = try make("cannot walk the remote repository's history", free: { git_revwalk_free($0) }) {
            git_revwalk_new($0, builderRepo.pointer)
        }
        let builder = try make("cannot build a pack", free: { git_packbuilder_free($0) }) {
            git_packbuilder_new($0, builderRepo.pointer)
        }
        for oid in missing {
            var current = oid.raw
            for _ in 0...RefVetting.maximumTagDepth {
                var size = 0
                var type = GIT_OBJECT_INVALID
                try check(git_odb_read_header(&size, &type, odb.pointer, &current), "cannot read an object of the remote repository")
                if type == GIT_OBJECT_COMMIT {
                    try check(git_revwalk_push(walk.pointer, &current), "cannot walk the remote repository's history")
                    break
                }
                guard type == GIT_OBJECT_TAG else { break }
                try check(git_packbuilder_insert(builder.pointer, &current, nil), "cannot build a pack")
                let tag = try make("cannot read a tag object of the remote repository", free: { git_tag_free($0) }) {
                    git_tag_lookup($0, builderRepo.pointer, &current)
                }
                guard let next = git_tag_target_id(tag.pointer) else { break }
                current = next.pointee
            }
        }
        for oid in Set(have) {
            var raw = oid.raw
            // History the mirror already has is not copied again.
            if git_revwalk_hide(walk.pointer, &raw) < 0 { git_error_clear() }
        }
        try check(git_packbuilder_insert_walk(builder.pointer, walk.pointer), "cannot build a pack of the new objects")
        guard git_packbuilder_object_count(builder.pointer) > 0 else { return }
        try check(git_packbuilder_write(builder.pointer, packDir, 0, nil, nil), "cannot write the new objects into the mirror")
        try check(git_odb_refresh(mirrorODB.pointer), "cannot reload the mirror's object database")
    }
}

/// Finds names that cannot live next to each other in a ref store: `a` and `a/b` (a ref file
/// cannot also be a folder). Names are taken in byte order, so the shorter one wins, the same
/// way on every sync.
struct NameFolderCheck {
    private var taken: Set<RawRefName> = []

    /// `true` when `name` can join the names accepted so far; it is then accepted. Must be
    /// called in byte order (a prefix sorts before every name that extends it).
    mutating func accept(_ name: RawRefName) -> Bool {
        let slash = UInt8(ascii: "/")
        let start = name.isTag ? RawRefName.tagsPrefix.count : RawRefName.headsPrefix.count
        var index = start
        while index < name.bytes.count {
            if name.bytes[index] == slash, taken.contains(RawRefName(bytes: Array(name.bytes[..<index]))) {
                return false
            }
            index += 1
        }
        taken.insert(name)
        return true
    }
}
