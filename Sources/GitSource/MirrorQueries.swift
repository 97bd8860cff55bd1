internal import CLibgit2
import Foundation
import LockstepCore
import Logging

// The questions the gate asks of the mirror: branch tips, tags, reachability, raw tag objects.
extension GitMirror {
    /// The commit at the tip of `branch` (an explicit `refs/heads/` lookup, never HEAD).
    public func branchTip(_ branch: String) throws(GitError) -> GitObjectID {
        try withRepository { repo throws(GitError) in try tip(of: branch, in: repo) }
    }

    private func tip(of branch: String, in repo: Managed) throws(GitError) -> GitObjectID {
        try RefName.validate(branch, kind: "branch")
        var oid = git_oid()
        try check(git_reference_name_to_id(&oid, repo.pointer, "refs/heads/" + branch), "branch not found", ref: branch)
        return GitObjectID(&oid)
    }

    /// Tags whose names match `glob` (libgit2 glob syntax, relative to `refs/tags/`) and, when
    /// given, have exactly `components` slash-separated parts. The depth check matters because
    /// libgit2's `*` also matches `/`: `staging/*` would otherwise match `staging/x/v1.0.0`.
    ///
    /// Answered from an index of every tag, read and described once per ref write of the mirror:
    /// a pass asks this once per target, and with 1,000 targets and 10,000 tags one libgit2
    /// listing of all packed refs per target was most of a pass. The glob's literal start narrows
    /// the sorted names before anything is matched, so a target's tags cost about what they number.
    public func tags(matching glob: String = "*", components: Int? = nil) throws(GitError) -> TagListing {
        try validateGlob(glob)
        let index = try currentTagIndex()
        var listing = TagListing(tags: [], refused: [])
        for entry in index.entries(matching: glob) {
            if let components, entry.name.split(separator: "/", omittingEmptySubsequences: false).count != components {
                continue
            }
            switch entry.outcome {
            case .tag(let info): listing.tags.append(info)
            case .refused(let refused): listing.refused.append(refused)
            }
        }
        listing.tags.sort { $0.name < $1.name }
        return listing
    }

    /// The tip of `branch`, read once per ref write of the mirror (a pass asks for every tag).
    func currentBranchTip(_ branch: String) throws(GitError) -> GitObjectID {
        if let known = branchTips[branch], known.writes == refWriteCount { return known.tip }
        let current: GitObjectID = try withRepository { repo throws(GitError) in try self.tip(of: branch, in: repo) }
        branchTips[branch] = (refWriteCount, current)
        return current
    }

    /// The tag index of the mirror as it is now: rebuilt when a sync may have written a ref since.
    func currentTagIndex() throws(GitError) -> TagIndex {
        if let tagIndex, tagIndex.writes == refWriteCount { return tagIndex }
        let previous = tagIndex
        let index = try withRepository { repo throws(GitError) in
            let iterator = try make("cannot list tags", free: { git_reference_iterator_free($0) }) {
                git_reference_iterator_glob_new($0, repo.pointer, "refs/tags/*")
            }
            var entries: [TagIndex.Entry] = []
            while true {
                var reference: OpaquePointer?
                let rc = git_reference_next(&reference, iterator.pointer)
                if rc == GIT_ITEROVER.rawValue { break }
                try check(rc, "cannot list tags")
                guard let reference else { break }
                let ref = Managed(reference, free: { git_reference_free($0) })
                let fullName = String(cString: git_reference_name(ref.pointer))
                let name = String(fullName.dropFirst("refs/tags/".count))
                // A tag object never changes: what the last index read for the same name and
                // ref target (a name that passed the check below then) is reused.
                if let target = git_reference_target(ref.pointer), git_reference_type(ref.pointer) == GIT_REFERENCE_DIRECT,
                   let known = previous?.described[name], known.target == GitObjectID(target) {
                    entries.append(TagIndex.Entry(name: name, outcome: .tag(known)))
                    continue
                }
                if let problem = RefName.problem(with: name) {
                    entries.append(TagIndex.Entry(name: name, outcome: .refused(RefusedTag(displayName: RefName.displayable(name),
                                                                                           reason: problem))))
                    continue
                }
                do throws(GitError) {
                    entries.append(TagIndex.Entry(name: name, outcome: .tag(try describe(ref, name: name, in: repo))))
                } catch {
                    entries.append(TagIndex.Entry(name: name, outcome: .refused(RefusedTag(displayName: RefName.displayable(name),
                                                                                           reason: error.message))))
                }
            }
            return TagIndex(writes: refWriteCount, entries: entries)
        }
        tagIndex = index
        return index
    }

    private func validateGlob(_ glob: String) throws(GitError) {
        // A pass asks with every target's glob, the same ones each time.
        guard !validGlobs.contains(glob) else { return }
        let withoutStars = glob.replacingOccurrences(of: "*", with: "x")
        if glob != "*", let problem = RefName.problem(with: withoutStars) {
            throw GitError(.invalidPattern, "refused tag glob \(RefName.displayable(glob)): \(problem)")
        }
        if validGlobs.count >= 10_000 { validGlobs.removeAll() }
        validGlobs.insert(glob)
    }

    /// The tag called `name`, peeled to its commit.
    public func tag(named name: String) throws(GitError) -> TagInfo {
        // A tag the current index described is answered from it (its name passed the same
        // check); anything else is looked up, and fails, as it always did.
        if let known = try currentTagIndex().tag(named: name) { return known }
        try RefName.validate(name, kind: "tag")
        return try withRepository { repo throws(GitError) in
            let ref = try make("tag not found", ref: name, free: { git_reference_free($0) }) {
                git_reference_lookup($0, repo.pointer, "refs/tags/" + name)
            }
            return try describe(ref, name: name, in: repo)
        }
    }

    private func describe(_ ref: Managed, name: String, in repo: Managed) throws(GitError) -> TagInfo {
        let resolved = try make("cannot resolve tag", ref: name, free: { git_reference_free($0) }) {
            git_reference_resolve($0, ref.pointer)
        }
        guard let targetOID = git_reference_target(resolved.pointer) else {
            throw GitError(.notFound, "tag has no target", ref: name)
        }
        let target = GitObjectID(targetOID)
        let object = try make("cannot read the tag's object", ref: name, free: { git_object_free($0) }) {
            git_object_lookup($0, repo.pointer, targetOID, GIT_OBJECT_ANY)
        }
        var annotation: TagAnnotation?
        if git_object_type(object.pointer) == GIT_OBJECT_TAG {
            annotation = readAnnotation(object)
        }
        var peeledPointer: OpaquePointer?
        guard git_object_peel(&peeledPointer, object.pointer, GIT_OBJECT_COMMIT) == 0, let peeledPointer else {
            throw GitError(.notACommit, "the tag does not point at a commit", ref: name)
        }
        let peeled = Managed(peeledPointer, free: { git_object_free($0) })
        guard let commitOID = git_object_id(peeled.pointer),
              let treeOID = git_commit_tree_id(peeled.pointer) else {
            throw GitError(.notACommit, "the tag does not point at a commit", ref: name)
        }
        return TagInfo(name: name, target: target, commit: GitObjectID(commitOID), tree: GitObjectID(treeOID), annotation: annotation)
    }

    private func readAnnotation(_ tagObject: Managed) -> TagAnnotation {
        // A git_object of type tag is a git_tag.
        let tag = tagObject.pointer
        var taggerName = "", taggerEmail = "", when = Date(timeIntervalSince1970: 0)
        if let signature = git_tag_tagger(tag) {
            taggerName = signature.pointee.name.map { String(cString: $0) } ?? ""
            taggerEmail = signature.pointee.email.map { String(cString: $0) } ?? ""
            when = Date(timeIntervalSince1970: TimeInterval(signature.pointee.when.time))
        }
        let rawMessage = git_tag_message(tag).map { String(cString: $0) } ?? ""
        let split = RawTagObject.split(Array(rawMessage.utf8))
        return TagAnnotation(taggerName: taggerName, taggerEmail: taggerEmail, taggedAt: when,
                             message: String(decoding: split.payload, as: UTF8.self), signatureFormat: split.format)
    }

    /// `true` when `commit` is the tip of `branch` or one of its ancestors.
    public func isReachable(_ commit: GitObjectID, fromBranch branch: String) throws(GitError) -> Bool {
        try withRepository { repo throws(GitError) in
            var tipOID = try tip(of: branch, in: repo).gitOID()
            return try reachable(commit, from: &tipOID, in: repo)
        }
    }

    private func reachable(_ commit: GitObjectID, from tip: inout git_oid, in repo: Managed) throws(GitError) -> Bool {
        var commitOID = try commit.gitOID()
        let rc = git_graph_reachable_from_any(repo.pointer, &commitOID, &tip, 1)
        try check(rc, "cannot compute reachability", ref: commit.rawValue)
        return rc == 1
    }

    /// `true` when `commit` is on the first-parent chain of `branch` and has two or more parents:
    /// it is the merge commit that a pull request produced, not a commit that reached the branch
    /// some other way or sits on a merged side branch.
    public func isMergeOnFirstParentChain(_ commit: GitObjectID, branch: String) throws(GitError) -> Bool {
        try withRepository { repo throws(GitError) in
            var tipOID = try tip(of: branch, in: repo).gitOID()
            return try firstParentMerge(commit, tip: &tipOID, in: repo)
        }
    }

    private func firstParentMerge(_ commit: GitObjectID, tip: inout git_oid, in repo: Managed) throws(GitError) -> Bool {
        var target = try commit.gitOID()
        let commitObject = try make("commit not found", ref: commit.rawValue, free: { git_commit_free($0) }) {
            git_commit_lookup($0, repo.pointer, &target)
        }
        guard git_commit_parentcount(commitObject.pointer) >= 2 else { return false }
        let walk = try make("cannot walk history", free: { git_revwalk_free($0) }) { git_revwalk_new($0, repo.pointer) }
        try check(git_revwalk_simplify_first_parent(walk.pointer), "cannot walk history")
        try check(git_revwalk_push(walk.pointer, &tip), "cannot walk history")
        var next = git_oid()
        while true {
            let rc = git_revwalk_next(&next, walk.pointer)
            if rc == GIT_ITEROVER.rawValue { return false }
            try check(rc, "cannot walk history")
            if git_oid_equal(&next, &target) != 0 { return true }
        }
    }

    /// Everything GitSource can tell about a release tag in one call: the tag peeled to its commit
    /// and tree, and how that commit relates to the protected branch.
    /// ``releaseFacts(tag:protectedBranch:)`` for each of `names`, in one job of this actor.
    public func releaseFacts(tags names: [String], protectedBranch branch: String) -> [String: Result<ReleaseFacts, GitError>] {
        var facts: [String: Result<ReleaseFacts, GitError>] = [:]
        for name in names {
            do throws(GitError) { facts[name] = .success(try releaseFacts(tag: name, protectedBranch: branch)) } catch {
                facts[name] = .failure(error)
            }
        }
        return facts
    }

    /// ``tags(matching:components:)`` and ``releaseFacts(tags:protectedBranch:)`` of the listed
    /// tags for each query, in one job of this actor: a pass asks this for every served target
    /// at once, and one trip to this thread per target was a good part of a pass at 1,000 targets.
    public func releaseInputs(for queries: [TagQuery], protectedBranch branch: String) -> [Result<ReleaseInputs, GitError>] {
        queries.map { query in
            do throws(GitError) {
                let listing = try tags(matching: query.glob, components: query.components)
                return .success(ReleaseInputs(listing: listing,
                                              facts: releaseFacts(tags: listing.tags.map(\.name), protectedBranch: branch)))
            } catch {
                return .failure(error)
            }
        }
    }

    public func releaseFacts(tag name: String, protectedBranch branch: String) throws(GitError) -> ReleaseFacts {
        let info = try tag(named: name)
        let branchTip = try currentBranchTip(branch)
        if answeredTip != branchTip {
            answeredTip = branchTip
            answers.removeAll()
        }
        let answer: (reachable: Bool, merge: Bool)
        if let known = answers[info.commit] {
            answer = known
        } else {
            answer = try withRepository { repo throws(GitError) in
                var tipOID = try branchTip.gitOID()
                let isReachable = try reachable(info.commit, from: &tipOID, in: repo)
                return (isReachable, isReachable ? try firstParentMerge(info.commit, tip: &tipOID, in: repo) : false)
            }
            answers[info.commit] = answer
        }
        return ReleaseFacts(tag: info, branchTip: branchTip, reachableFromBranch: answer.reachable,
                            isMergeOnFirstParentChain: answer.merge)
    }

    /// The raw tag object of `name`, split into signed payload and signature block, for
    /// `ssh-keygen -Y verify` or `gpg --verify`.
    public func rawTag(named name: String) throws(GitError) -> RawTagObject {
        let info = try tag(named: name)
        guard info.isAnnotated else {
            throw GitError(.notAnnotated, "the tag is lightweight: it has no tag object to verify", ref: name)
        }
        return try rawTag(id: info.target, name: name)
    }

    /// The tag object `id` itself (not whatever a ref names now: a tag moved between listing and
    /// verification must not lend its signature to the object that was listed), split into signed
    /// payload and signature block. The bytes are hashed again here and must give `id`.
    public func rawTag(id: GitObjectID, name: String) throws(GitError) -> RawTagObject {
        try withRepository { repo throws(GitError) in
            let odb = try make("cannot open the object database", free: { git_odb_free($0) }) {
                git_repository_odb($0, repo.pointer)
            }
            var oid = try id.gitOID()
            let object = try make("cannot read the tag object", ref: name, free: { git_odb_object_free($0) }) {
                git_odb_read($0, odb.pointer, &oid)
            }
            guard git_odb_object_type(object.pointer) == GIT_OBJECT_TAG else {
                throw GitError(.notAnnotated, "the object is not a tag object", ref: name)
            }
            let size = git_odb_object_size(object.pointer)
            guard let data = git_odb_object_data(object.pointer) else {
                throw GitError(.libgit2, "the tag object has no data", ref: name)
            }
            var hashed = git_oid()
            try check(git_odb_hash(&hashed, data, size, GIT_OBJECT_TAG), "cannot hash the tag object", ref: name)
            guard git_oid_equal(&hashed, &oid) != 0 else {
                throw GitError(.libgit2, "the tag object's bytes do not hash to its id", ref: name)
            }
            let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
            let split = RawTagObject.split(bytes)
            return RawTagObject(name: name, id: id, payload: split.payload,
                                signature: split.signature, signatureFormat: split.format)
        }
    }
}
