internal import CLibgit2
import Foundation
import LockstepCore

/// Tells cheaply whether a fetch would change the mirror, so that the common case — nothing
/// changed upstream — costs about what `git ls-remote` costs.
///
/// Why: libgit2 1.5.1 makes a no-op fetch cost far more than the refs it compares. Its update
/// step looks every advertised ref up one at a time (a failed `stat` of a loose ref file, a
/// formatted error, a `stat` of `packed-refs`, per ref), negotiation asks the object database
/// about each, and pruning lists every local ref again; over `file://` its local transport
/// first does the same per-ref lookups in the remote repository. With 10,000 tags a no-op
/// fetch took several times `git ls-remote`. One pass over each side's refs gives the answer.
///
/// The verdict is only ever "identical" or "not identical". "Identical" needs every mirrored ref
/// (`refs/heads/*`, `refs/tags/*`) to be advertised with the same id, every advertised one to be
/// mirrored, and nothing unusual on either side (a symbolic ref, a name libgit2 would not take,
/// the same name twice, an unreadable ref). Anything else runs the full libgit2 fetch, so every
/// change — created, moved and deleted tags, branch moves — is still reported by libgit2's own
/// update and prune steps, and a hostile or broken remote can at worst make a sync as slow as it
/// was before this check existed, never make a change go unreported.
enum UpToDateCheck {
    /// `true` when the repository at `path` (the remote of a `file://` or path URL, opened the
    /// way libgit2's local transport opens it) has exactly the mirror's branch tips and tags.
    ///
    /// With `remembered`, two repositories whose refs' stamps (``RefsStamp``) equal those of the
    /// last time they were found identical are identical without comparing; a comparison that
    /// finds them identical again remembers the stamps taken before it, when they are settled.
    static func mirror(_ mirror: OpaquePointer, matchesRepositoryAt path: String,
                       skipped: [RawRefName: RefTarget] = [:], skippedCount: Int = 0,
                       remembered: inout IdenticalRefs?) -> Bool {
        var out: OpaquePointer?
        guard git_repository_open_ext(&out, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil) == 0, let out else {
            remembered = nil
            return false
        }
        let source = Managed(out, free: { git_repository_free($0) })
        let takenAt = RefsStamp.now()
        var stamps: IdenticalRefs?
        // The common folder holds the refs (a linked worktree's own folder does not).
        if let mirrorDirectory = git_repository_commondir(mirror).map({ String(cString: $0) }),
           let sourceDirectory = git_repository_commondir(source.pointer).map({ String(cString: $0) }),
           let mirrorStamp = RefsStamp(gitDirectory: mirrorDirectory), let sourceStamp = RefsStamp(gitDirectory: sourceDirectory) {
            stamps = IdenticalRefs(mirror: mirrorStamp, source: sourceStamp, skipped: skipped, skippedCount: skippedCount)
        }
        if let stamps, stamps == remembered { return true }
        let identical = Self.mirror(mirror, matches: source.pointer, skipped: skipped, skippedCount: skippedCount)
        if identical, let stamps, stamps.mirror.isSettled(takenAt: takenAt), stamps.source.isSettled(takenAt: takenAt) {
            remembered = stamps
        } else {
            remembered = nil
        }
        return identical
    }

    /// `true` when `source` (open) has exactly the mirror's branch tips and tags.
    static func mirror(_ mirror: OpaquePointer, matchesRepositoryAt path: String,
                       skipped: [RawRefName: RefTarget] = [:], skippedCount: Int = 0) -> Bool {
        var out: OpaquePointer?
        guard git_repository_open_ext(&out, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil) == 0, let out else {
            return false
        }
        let source = Managed(out, free: { git_repository_free($0) })
        return Self.mirror(mirror, matches: source.pointer, skipped: skipped, skippedCount: skippedCount)
    }

    private static func mirror(_ mirror: OpaquePointer, matches source: OpaquePointer,
                               skipped: [RawRefName: RefTarget], skippedCount: Int) -> Bool {
        guard let mine = RepositoryRefs(mirror), let theirs = RepositoryRefs(source) else { return false }
        switch compareSorted(mine, theirs, skipped: skipped, skippedCount: skippedCount) {
        case .identical: return true
        case .different: return false
        case .undecided:
            // A loose ref comes before the packed ones in libgit2's iteration: compare as sets.
            guard let mirrored = collect(RepositoryRefs(mirror)), let advertised = collect(RepositoryRefs(source)) else {
                return false
            }
            return equal(mirrored, advertised, skipped: skipped, skippedCount: skippedCount)
        }
    }

    /// `true` when the refs that `remote` (connected) advertised are exactly the mirror's
    /// branch tips and tags.
    static func mirror(_ mirror: OpaquePointer, matchesAdvertisementOf remote: OpaquePointer,
                       skipped: [RawRefName: RefTarget] = [:], skippedCount: Int = 0) -> Bool {
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        guard git_remote_ls(&heads, &count, remote) == 0, let heads else { return false }
        let list = UnsafeBufferPointer(start: heads, count: count)
        guard let mine = RepositoryRefs(mirror) else { return false }
        switch compareSorted(mine, AdvertisedRefs(list), skipped: skipped, skippedCount: skippedCount) {
        case .identical: return true
        case .different: return false
        case .undecided:
            guard let mirrored = collect(RepositoryRefs(mirror)), let advertised = collect(AdvertisedRefs(list)) else {
                return false
            }
            return equal(mirrored, advertised, skipped: skipped, skippedCount: skippedCount)
        }
    }

    /// The repository path libgit2's local transport would open for `url`, when that is
    /// certain: a plain absolute path, or `file:///path` without percent escapes (libgit2
    /// decodes those; guessing its decoding could compare against the wrong repository).
    static func localRepositoryPath(for url: String) -> String? {
        if url.hasPrefix("/") { return url }
        let prefix = "file://"
        guard url.hasPrefix(prefix) else { return nil }
        let path = String(url.dropFirst(prefix.count))
        guard path.hasPrefix("/"), !path.contains("%") else { return nil }
        return path
    }

    enum Verdict: Equatable { case identical, different, undecided }

    /// Merges two name-ordered ref streams without copying a name: packed refs and a server's
    /// advertisement both come sorted, so with no loose refs around this is one `strcmp` and one
    /// id comparison per ref. The verdict is exact only if both streams prove sorted to the end;
    /// a stream found out of order gives `.undecided` (compare as sets instead).
    ///
    /// `skipped` are the refs the last full sync skipped (full name → the id offered then): one
    /// offered again with the same id matches though the mirror does not hold it. The verdict is
    /// identical only if all `skippedCount` skipped refs are offered again, unchanged (a skip
    /// whose ref is gone upstream must be cleared by a full sync).
    static func compareSorted(_ left: some RefStream, _ right: some RefStream,
                              skipped: [RawRefName: RefTarget] = [:], skippedCount: Int = 0) -> Verdict {
        var left = OrderChecked(left), right = OrderChecked(right)
        var a = left.next(), b = right.next()
        var differs = false
        var skippedSeen = 0
        func isSkipped(_ name: UnsafePointer<CChar>, _ id: RefTarget) -> Bool {
            guard !skipped.isEmpty, skipped[RawRefName(name)] == id else { return false }
            skippedSeen += 1
            return true
        }
        while true {
            switch (a, b) {
            case (.end, .end):
                return differs || skippedSeen != skippedCount ? .different : .identical
            case (.unsorted, _), (_, .unsorted):
                return .undecided
            case (.unusual, _), (_, .unusual):
                return .different
            case let (.end, .ref(rightName, rightID)):
                if !isSkipped(rightName, rightID) { differs = true }
                b = right.next()
            case (.ref, .end):
                differs = true
                a = left.next()
            case let (.ref(leftName, leftID), .ref(rightName, rightID)):
                let order = strcmp(leftName, rightName)
                if order == 0 {
                    // The same name with two ids: changed, whatever the order of the rest.
                    guard leftID == rightID else { return .different }
                    a = left.next()
                    b = right.next()
                } else if order < 0 {
                    differs = true
                    a = left.next()
                } else {
                    if !isSkipped(rightName, rightID) { differs = true }
                    b = right.next()
                }
            }
        }
    }

    /// Set comparison with the same rule for skipped refs as `compareSorted`.
    static func equal(_ mirrored: [String: RefTarget], _ advertised: [String: RefTarget],
                      skipped: [RawRefName: RefTarget], skippedCount: Int) -> Bool {
        var advertised = advertised
        var seen = 0
        for (name, id) in advertised where mirrored[name] == nil && skipped[RawRefName(name)] == id {
            advertised[name] = nil
            seen += 1
        }
        return seen == skippedCount && mirrored == advertised
    }

    /// The whole stream as a dictionary (full name → id); `nil` when a ref is unusual or a name
    /// comes twice.
    static func collect(_ stream: (some RefStream)?) -> [String: RefTarget]? {
        guard var stream else { return nil }
        var refs: [String: RefTarget] = [:]
        while true {
            switch stream.next() {
            case .end, .unsorted: return refs
            case .unusual: return nil
            case let .ref(name, id):
                guard refs.updateValue(id, forKey: String(cString: name)) == nil else { return nil }
            }
        }
    }
}

/// The 20 bytes of an object id, compared without formatting them as hex.
struct RefTarget: Hashable {
    private let first: UInt64, second: UInt64, third: UInt32

    init(_ oid: git_oid) {
        (first, second, third) = withUnsafeBytes(of: oid.id) { bytes in
            (bytes.loadUnaligned(as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
             bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        }
    }

    init(_ id: GitObjectID) throws(GitError) {
        self.init(try id.gitOID())
    }
}

/// One ref as a stream yields it: the name stays valid until the next call to `next()`.
enum RefStep {
    case ref(UnsafePointer<CChar>, RefTarget)
    case end
    /// Something the check does not decide on (a symbolic ref, an invalid name, a read error).
    case unusual
    /// Only from `OrderChecked`: a name that is not greater than the one before it.
    case unsorted
}

/// A sequence of mirrored refs (`refs/heads/*` and `refs/tags/*` only).
protocol RefStream {
    mutating func next() -> RefStep
}

/// `true` for the namespaces `GitMirror.refspecs` mirrors.
private func isMirrored(_ name: UnsafePointer<CChar>) -> Bool {
    strncmp(name, "refs/tags/", 10) == 0 || strncmp(name, "refs/heads/", 11) == 0
}

/// The branch tips and tags of a repository, in libgit2's iteration order (loose refs, then
/// packed refs by name).
final class RepositoryRefs: RefStream {
    private let iterator: Managed
    private var current: OpaquePointer?

    init?(_ repo: OpaquePointer) {
        var out: OpaquePointer?
        guard git_reference_iterator_new(&out, repo) == 0, let out else { return nil }
        iterator = Managed(out, free: { git_reference_iterator_free($0) })
    }

    deinit { git_reference_free(current) }

    func next() -> RefStep {
        while true {
            git_reference_free(current)
            current = nil
            var reference: OpaquePointer?
            let rc = git_reference_next(&reference, iterator.pointer)
            if rc == GIT_ITEROVER.rawValue { return .end }
            guard rc == 0, let reference else { return .unusual }
            current = reference
            guard let name = git_reference_name(reference) else { return .unusual }
            guard isMirrored(name) else { continue }
            guard git_reference_type(reference) == GIT_REFERENCE_DIRECT, let target = git_reference_target(reference) else {
                return .unusual
            }
            return .ref(name, RefTarget(target.pointee))
        }
    }
}

/// The refs a connected remote advertised, in the server's order (sorted by name).
struct AdvertisedRefs: RefStream {
    private let heads: UnsafeBufferPointer<UnsafePointer<git_remote_head>?>
    private var index = 0

    init(_ heads: UnsafeBufferPointer<UnsafePointer<git_remote_head>?>) {
        self.heads = heads
    }

    mutating func next() -> RefStep {
        while index < heads.count {
            defer { index += 1 }
            guard let head = heads[index], let name = UnsafePointer(head.pointee.name) else { return .unusual }
            switch Self.classify(name) {
            case .ignored: continue
            case .unusual: return .unusual
            case .mirrored: return .ref(name, RefTarget(head.pointee.oid))
            }
        }
        return .end
    }
}

extension AdvertisedRefs {
    enum Classification: Equatable { case mirrored, ignored, unusual }

    /// What the check makes of an advertised name: outside the mirrored namespaces and the
    /// peeled entries of annotated tags (`refs/tags/v1^{}`, not refs) are ignored. Every other
    /// name is compared as it is, even one that is not usable: the mirror never holds such a
    /// name, so it matches only a ref the last full sync skipped with the same id.
    static func classify(_ name: UnsafePointer<CChar>) -> Classification {
        guard isMirrored(name) else { return .ignored }
        let length = strlen(name)
        if length >= 3, strcmp(name + length - 3, "^{}") == 0 { return .ignored }
        return .mirrored
    }
}

/// Passes a stream through, reporting `.unsorted` when a name is not strictly greater than the
/// one before it (which also catches a name given twice).
struct OrderChecked<Base: RefStream>: RefStream {
    private var base: Base
    private var previous: [CChar] = [0]

    init(_ base: Base) { self.base = base }

    mutating func next() -> RefStep {
        let step = base.next()
        guard case let .ref(name, _) = step else { return step }
        if previous.count > 1, strcmp(name, previous) <= 0 { return .unsorted }
        previous.removeAll(keepingCapacity: true)
        previous.append(contentsOf: UnsafeBufferPointer(start: name, count: strlen(name) + 1))
        return step
    }
}
