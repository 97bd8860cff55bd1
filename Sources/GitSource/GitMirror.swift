internal import CLibgit2
import Foundation
import Logging

/// A bare mirror of the delivery repository, kept up to date by fetch, and every question
/// Lockstep asks of it.
///
/// All libgit2 handles live inside this actor and never leave it: libgit2 objects are not safe
/// to use from two threads at once, and an actor runs one call at a time. Nothing here relies on
/// the mirror's `HEAD` (a bare clone's HEAD may name a branch that does not exist): every
/// question names its branch or tag explicitly.
public actor GitMirror {
    /// Where the bare mirror lives on disk.
    public nonisolated let path: String
    public nonisolated let remote: Remote
    private let logger: Logger
    private var repository: Managed?
    private var redactor: SecretRedactor
    /// How the last `sync()` ended: the remote shown unchanged by the cheap check, or a libgit2
    /// fetch. For the debug log and for tests that must know which path a sync took.
    private(set) var lastSyncPath: SyncPath?
    /// Reachability answers for one branch tip, by tagged commit. Every poll asks the same
    /// question for every release tag, and each answer is a walk of the branch's history: with
    /// 300 tags that was a third of a CPU core at a 1 s poll. The answers only change when the
    /// tip moves, so they are kept until it does.
    private var answeredTip: ObjectID?
    private var answers: [ObjectID: (reachable: Bool, merge: Bool)] = [:]
    /// The refs skipped by the last sync that fetched, by raw name, with the id offered then.
    private var skipped: [RawRefName: SkipEntry] = [:]
    /// Whether the mirror's own refs were checked since this actor opened it.
    private var checkedMirrorRefs = false

    struct SkipEntry: Equatable {
        let target: GitOID?
        let ref: SkippedRef
    }

    enum SyncPath: Sendable, Equatable {
        /// The advertised branch tips and tags equalled the mirror's: nothing was fetched.
        case upToDate
        /// libgit2 fetched, updated and pruned.
        case fetched
    }

    /// Name of the remote inside the mirror's configuration.
    static let remoteName = "origin"
    /// Branch tips and tags are mirrored under their own names; nothing else is fetched. These
    /// globs choose what libgit2 downloads; which refs are written is decided ref by ref.
    static let refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]

    public init(remote: Remote, path: String, logger: Logger) {
        self.remote = remote
        self.path = path
        var logger = logger
        logger[metadataKey: "git.repository"] = .string(remote.redactedURL)
        self.logger = logger
        self.redactor = SecretRedactor(secrets: [remote.embeddedPassword].compactMap { $0 })
    }

    // MARK: Fetch

    /// Creates the mirror if it does not exist yet, then fetches branches and tags with pruning.
    ///
    /// The report lists created, moved and deleted tags and changed branches. When the remote's
    /// branch tips and tags already equal the mirror's, nothing is fetched (`UpToDateCheck`:
    /// libgit2's own no-op fetch costs several times `git ls-remote` with thousands of tags).
    /// Refs are packed after any fetch that changed something, so loose refs never pile up
    /// (thousands of loose tag refs make every later fetch several times slower).
    public func sync() throws(GitError) -> FetchReport {
        lastSyncPath = nil
        do throws(GitError) {
            _ = try remote.parsed()
            let (repo, created) = try openOrCreate()
            var report = try fetch(repo)
            report.initialClone = created
            if report.changed { try packRefs(repo) }
            logger.debug("git fetch done", metadata: [
                "git.fetch.path": "\(lastSyncPath.map { "\($0)" } ?? "none")",
                "git.tags.created": "\(report.createdTags.count)", "git.tags.moved": "\(report.movedTags.count)",
                "git.tags.deleted": "\(report.deletedTags.count)", "git.branches.changed": "\(report.branches.count)",
            ])
            return report
        } catch {
            throw error.located(repository: remote.redactedURL, redactor: redactor)
        }
    }

    private func openOrCreate() throws(GitError) -> (Managed, Bool) {
        if let repository { return (repository, false) }
        try ensureLibgit2()
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists, isDirectory.boolValue, fm.fileExists(atPath: path + "/HEAD") {
            let repo = try make("cannot open the mirror at \(path)", free: { git_repository_free($0) }) {
                git_repository_open_ext($0, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue | GIT_REPOSITORY_OPEN_BARE.rawValue, nil)
            }
            try ensureRemote(repo)
            repository = repo
            return (repo, false)
        }
        if exists, (try? fm.contentsOfDirectory(atPath: path))?.isEmpty == false {
            throw GitError(.io, "the mirror path \(path) exists and is not an empty directory or a git repository")
        }
        var options = git_repository_init_options()
        git_repository_init_options_init(&options, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION))
        options.flags = GIT_REPOSITORY_INIT_BARE.rawValue | GIT_REPOSITORY_INIT_MKPATH.rawValue
        let repo = try make("cannot create the mirror at \(path)", free: { git_repository_free($0) }) {
            git_repository_init_ext($0, path, &options)
        }
        let created = try make("cannot configure the mirror's remote", free: { git_remote_free($0) }) {
            git_remote_create_with_fetchspec($0, repo.pointer, Self.remoteName, remote.url, Self.refspecs[0])
        }
        _ = created
        try check(git_remote_add_fetch(repo.pointer, Self.remoteName, Self.refspecs[1]), "cannot configure the mirror's tag refspec")
        repository = repo
        return (repo, true)
    }

    /// Points the mirror's remote at the configured URL (the agent config may have changed).
    private func ensureRemote(_ repo: Managed) throws(GitError) {
        let existing = try make("the mirror has no remote \(Self.remoteName)", free: { git_remote_free($0) }) {
            git_remote_lookup($0, repo.pointer, Self.remoteName)
        }
        let current = git_remote_url(existing.pointer).map { String(cString: $0) }
        if current != remote.url {
            try check(git_remote_set_url(repo.pointer, Self.remoteName, remote.url), "cannot update the mirror's remote URL")
            logger.info("mirror remote URL changed to the configured one")
        }
    }

    private func fetch(_ repo: Managed) throws(GitError) -> FetchReport {
        let parsed = try remote.parsed()
        if !checkedMirrorRefs {
            try removeUnusableMirrorRefs(repo)
            checkedMirrorRefs = true
        }
        // Nothing changed upstream is the common case; see `UpToDateCheck` for why this check
        // comes first and why it can only skip work, never hide a change. Refs skipped before
        // count as matching while they are still offered with the same id, so one unusable
        // ref does not turn every poll into a full sync.
        let skippedTargets = skipped.compactMapValues { $0.target?.key }
        if parsed.transport == .local {
            let sourcePath = UpToDateCheck.localRepositoryPath(for: remote.url) ?? Self.decodedLocalPath(remote.url)
            if UpToDateCheck.mirror(repo.pointer, matchesRepositoryAt: sourcePath, skipped: skippedTargets, skippedCount: skipped.count) {
                lastSyncPath = .upToDate
                return FetchReport(initialClone: false)
            }
            let source = try make("cannot open the remote repository at \(sourcePath)", free: { git_repository_free($0) }) {
                git_repository_open_ext($0, sourcePath, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil)
            }
            let sourceODB = try make("cannot open the remote repository's object database", free: { git_odb_free($0) }) {
                git_repository_odb($0, source.pointer)
            }
            let offered = try RefListing.local(source.pointer)
            let report = try update(repo, offered: offered, vetIn: (source.pointer, sourceODB.pointer)) { (wanted, have) throws(GitError) in
                try LocalObjectCopy.copy(from: source.pointer, to: repo.pointer, wanted: wanted, have: have)
            }
            lastSyncPath = .fetched
            return report
        }
        let context = FetchContext(remote: remote, host: parsed.host, port: parsed.port)
        if parsed.transport == .ssh {
            guard let file = remote.knownHostsFile else {
                throw GitError(.credentials, "an SSH remote needs a known_hosts file: unknown host keys are refused")
            }
            context.knownHosts = try KnownHosts(path: file)
        }
        // The remote is looked up again so that both refspecs configured above are in effect.
        let handle = try make("cannot load the mirror's remote", free: { git_remote_free($0) }) {
            git_remote_lookup($0, repo.pointer, Self.remoteName)
        }
        var options = git_fetch_options()
        git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION))
        options.prune = GIT_FETCH_NO_PRUNE
        options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE
        options.update_fetchhead = 0
        options.callbacks.credentials = fetchCredentialsCallback
        options.callbacks.certificate_check = fetchCertificateCallback
        let payload = Unmanaged.passUnretained(context).toOpaque()
        options.callbacks.payload = payload
        // Connect and read the advertisement; when it shows nothing new, stop here. When it
        // does, `git_remote_download` below reuses this connection (libgit2 only reconnects a
        // remote that is not connected), so the refs are not downloaded twice.
        let rc = withExtendedLifetime(context) {
            git_remote_connect(handle.pointer, GIT_DIRECTION_FETCH, &options.callbacks, &options.proxy_opts, &options.custom_headers)
        }
        if rc < 0 { throw failure(rc, context, "cannot connect to the remote") }
        defer { git_remote_disconnect(handle.pointer) }
        if let token = context.token { redactor.add(token) }
        if UpToDateCheck.mirror(repo.pointer, matchesAdvertisementOf: handle.pointer, skipped: skippedTargets, skippedCount: skipped.count) {
            lastSyncPath = .upToDate
            return FetchReport(initialClone: false)
        }
        let offered = try RefListing.advertised(handle.pointer)
        // libgit2 downloads the objects of every advertised branch and tag (a name or a target
        // that is unusable costs a few objects, nothing more); the refs are then written here,
        // one by one, never by libgit2's update step.
        let downloaded = withExtendedLifetime(context) {
            git_remote_download(handle.pointer, nil, &options)
        }
        if downloaded < 0 { throw failure(downloaded, context, "fetch failed") }
        if let token = context.token { redactor.add(token) }
        let odb = try make("cannot open the mirror's object database", free: { git_odb_free($0) }) {
            git_repository_odb($0, repo.pointer)
        }
        let report = try update(repo, offered: offered, vetIn: (repo.pointer, odb.pointer)) { (_, _) throws(GitError) in }
        lastSyncPath = .fetched
        return report
    }

    /// The error of a failed connect or download: a callback's precise one if it set one, else
    /// libgit2's. The token, once read, is registered for redaction first.
    private func failure(_ rc: Int32, _ context: FetchContext, _ what: String) -> GitError {
        let fallback = lastError(rc, what)
        if let token = context.token { redactor.add(token) }
        return context.failure ?? fallback
    }

    /// A `file://` URL's path with percent escapes decoded (a plain path is returned as is).
    static func decodedLocalPath(_ url: String) -> String {
        guard url.hasPrefix("file://") else { return url }
        let path = String(url.dropFirst("file://".count))
        return path.removingPercentEncoding ?? path
    }

    /// Takes the offered refs into the mirror, ref by ref, and reports what changed.
    ///
    /// Names are vetted first; the targets of new and moved refs are vetted in `vetIn` (the
    /// local source before copying, the mirror after a download); `transfer` brings the objects
    /// of the usable ones. Then deletions (refs no longer offered, or no longer usable) come
    /// before creations, so `a` deleted and `a/b` created in one push is not a conflict. A ref
    /// that libgit2 still refuses to write is skipped; only a failure of the mirror itself
    /// (disk, permissions, a broken ref database) stops the sync.
    private func update(_ repo: Managed, offered: [OfferedRef], vetIn: (repo: OpaquePointer, odb: OpaquePointer),
                        transfer: ([GitOID], [GitOID]) throws(GitError) -> Void) throws(GitError) -> FetchReport {
        let mirrored = try RefListing.mirror(repo.pointer)
        var problems: [RawRefName: (target: GitOID?, problem: RefProblem)] = [:]
        var wanted: [RawRefName: GitOID] = [:]
        for ref in offered where wanted[ref.name] == nil && problems[ref.name] == nil {
            if let problem = RefVetting.nameProblem(ref.name) {
                problems[ref.name] = (ref.target, problem)
            } else if let target = ref.target {
                wanted[ref.name] = target
            } else {
                problems[ref.name] = (nil, RefProblem(code: .missingObject, reason: "it is a symbolic ref to a ref that does not exist"))
            }
        }
        // `a` and `a/b` cannot both be stored: the first in byte order stays.
        var folders = NameFolderCheck()
        for name in wanted.keys.sorted() where !folders.accept(name) {
            problems[name] = (wanted[name], RefProblem(code: .unstorable,
                reason: "its name collides with another ref (a ref cannot also be a folder of refs)"))
            wanted[name] = nil
        }
        var verdicts: [GitOID: RefProblem?] = [:]
        var changed: [(name: RawRefName, old: GitOID?, new: GitOID)] = []
        for (name, target) in wanted {
            let old = mirrored[name] ?? nil
            if old == target { continue }
            changed.append((name, old, target))
        }
        func vet() throws(GitError) {
            var usable: [(name: RawRefName, old: GitOID?, new: GitOID)] = []
            for change in changed {
                let verdict: RefProblem?
                if let known = verdicts[change.new] {
                    verdict = known
                } else {
                    verdict = try RefVetting.targetProblem(change.new, repo: vetIn.repo, odb: vetIn.odb)
                    verdicts[change.new] = verdict
                }
                if let verdict {
                    problems[change.name] = (change.new, verdict)
                    wanted[change.name] = nil
                } else {
                    usable.append(change)
                }
            }
            changed = usable
        }
        if vetIn.repo != repo.pointer { try vet() }
        try transfer(changed.map(\.new), mirrored.values.compactMap { $0 })
        if vetIn.repo == repo.pointer { try vet() }

        var report = FetchReport(initialClone: false)
        func record(_ name: RawRefName, old: GitOID?, new: GitOID?) {
            let change = FetchReport.Change(name: name.shortName, old: old?.objectID, new: new?.objectID)
            if name.isTag {
                switch (old, new) {
                case (nil, _): report.createdTags.append(change)
                case (_, nil): report.deletedTags.append(change)
                default: report.movedTags.append(change)
                }
            } else if name.isBranch {
                report.branches.append(change)
            }
        }
        for (name, old) in mirrored.sorted(by: { $0.key < $1.key }) where name.isMirrored && wanted[name] == nil {
            try name.withCString { (cName) throws(GitError) in
                let rc = git_reference_remove(repo.pointer, cName)
                if rc == GIT_ENOTFOUND.rawValue { git_error_clear(); return }
                try check(rc, "cannot delete a ref from the mirror", ref: name.displayName)
            }
            record(name, old: old, new: nil)
        }
        for change in changed.sorted(by: { $0.name < $1.name }) {
            var target = change.new.raw
            let rc = try change.name.withCString { (cName) throws(GitError) -> Int32 in
                var created: OpaquePointer?
                let rc = git_reference_create(&created, repo.pointer, cName, &target, 1, "lockstep fetch")
                git_reference_free(created)
                return rc
            }
            if rc < 0 {
                let error = lastError(rc, "cannot write a ref into the mirror", ref: change.name.displayName)
                // Only the ref's own problem (its name collides with another, libgit2 refuses
                // it) is skipped; the disk, permissions or a broken ref database stop the sync.
                guard rc == GIT_EEXISTS.rawValue || rc == GIT_EINVALIDSPEC.rawValue || rc == GIT_EDIRECTORY.rawValue
                        || error.code == .libgit2 || error.code == .invalidRefName else { throw error }
                let reason = rc == GIT_EEXISTS.rawValue || rc == GIT_EDIRECTORY.rawValue
                    ? "its name collides with another ref (a ref cannot also be a folder of refs)"
                    : "libgit2 refused to store it (\(error.underlying ?? "no detail"))"
                problems[change.name] = (change.new, RefProblem(code: .unstorable, reason: reason))
                wanted[change.name] = nil
                // A moved ref that could not be rewritten must not stay at its old target.
                if change.old != nil {
                    _ = try? change.name.withCString { (cName) throws(GitError) -> Int32 in git_reference_remove(repo.pointer, cName) }
                    git_error_clear()
                    record(change.name, old: change.old, new: nil)
                }
                continue
            }
            record(change.name, old: change.old, new: change.new)
        }
        recordSkips(problems, in: &report)
        return report
    }

    /// Remembers which refs are skipped now; the report lists only the new ones and the ones
    /// that are no longer skipped, so that each is told (and logged) once.
    private func recordSkips(_ problems: [RawRefName: (target: GitOID?, problem: RefProblem)], in report: inout FetchReport) {
        var now: [RawRefName: SkipEntry] = [:]
        for (name, item) in problems {
            let entry = SkipEntry(target: item.target, ref: SkippedRef(
                displayName: name.displayName, isTag: name.isTag, target: item.target?.objectID,
                code: item.problem.code, reason: item.problem.reason))
            now[name] = entry
            if skipped[name] != entry {
                report.skippedRefs.append(entry.ref)
                logger.warning("git ref skipped: the mirror does not take it; every other ref is still fetched", metadata: [
                    "git.ref": "\(entry.ref.displayName)", "git.ref.skip": "\(entry.ref.code)", "git.ref.reason": "\(entry.ref.reason)",
                ])
            }
        }
        for (name, entry) in skipped where now[name] == nil {
            report.clearedSkippedRefs.append(entry.ref)
            logger.info("git ref no longer skipped", metadata: ["git.ref": "\(entry.ref.displayName)"])
        }
        report.skippedRefs.sort { $0.displayName < $1.displayName }
        report.clearedSkippedRefs.sort { $0.displayName < $1.displayName }
        skipped = now
    }

    /// Every ref the mirror currently skips (see `FetchReport.skippedRefs`, which lists each
    /// only when it first appears), sorted by name. Empty until the first sync that fetched.
    public func skippedRefs() -> [SkippedRef] {
        skipped.values.map(\.ref).sorted { $0.displayName < $1.displayName }
    }

    /// Removes from the mirror every ref that could break a fetch or that Lockstep would not
    /// use: a mirror written by an older version, or edited by hand, may hold a tag on a blob
    /// (which breaks libgit2's local transport) or a ref to a missing object (which breaks its
    /// negotiation). Once per actor: afterwards the mirror only ever receives vetted refs.
    private func removeUnusableMirrorRefs(_ repo: Managed) throws(GitError) {
        let odb = try make("cannot open the mirror's object database", free: { git_odb_free($0) }) {
            git_repository_odb($0, repo.pointer)
        }
        var removed = 0
        var verdicts: [GitOID: Bool] = [:]
        for (name, target) in try RefListing.mirror(repo.pointer) {
            var usable = name.isMirrored && RefVetting.nameProblem(name) == nil
            if usable, let target {
                if let known = verdicts[target] {
                    usable = known
                } else {
                    usable = try RefVetting.targetProblem(target, repo: repo.pointer, odb: odb.pointer) == nil
                    verdicts[target] = usable
                }
            } else {
                usable = false
            }
            guard !usable else { continue }
            let rc = try name.withCString { (cName) throws(GitError) -> Int32 in git_reference_remove(repo.pointer, cName) }
            if rc < 0 {
                let error = lastError(rc, "cannot remove an unusable ref from the mirror", ref: name.displayName)
                logger.error("git mirror ref could not be removed", metadata: ["git.ref": "\(name.displayName)", "error": "\(error)"])
                continue
            }
            removed += 1
            logger.notice("git mirror ref removed: unusable", metadata: ["git.ref": "\(name.displayName)"])
        }
        if removed > 0 { try packRefs(repo) }
    }

    private func packRefs(_ repo: Managed) throws(GitError) {
        let refdb = try make("cannot open the mirror's ref database", free: { git_refdb_free($0) }) {
            git_repository_refdb($0, repo.pointer)
        }
        try check(git_refdb_compress(refdb.pointer), "cannot pack the mirror's refs")
    }

    // MARK: Queries

    private func openRepository() throws(GitError) -> Managed {
        if let repository { return repository }
        let fm = FileManager.default
        guard fm.fileExists(atPath: path + "/HEAD") else {
            throw GitError(.notFound, "the mirror at \(path) does not exist yet: sync first", repository: remote.redactedURL)
        }
        return try openOrCreate().0
    }

    /// Runs `body` with the open repository, attaching the repository to any error.
    func withRepository<T>(_ body: (Managed) throws(GitError) -> T) throws(GitError) -> T {
        do throws(GitError) {
            return try body(try openRepository())
        } catch {
            throw error.located(repository: remote.redactedURL, redactor: redactor)
        }
    }

    /// The commit at the tip of `branch` (an explicit `refs/heads/` lookup, never HEAD).
    public func branchTip(_ branch: String) throws(GitError) -> ObjectID {
        try withRepository { repo throws(GitError) in try tip(of: branch, in: repo) }
    }

    private func tip(of branch: String, in repo: Managed) throws(GitError) -> ObjectID {
        try RefName.validate(branch, kind: "branch")
        var oid = git_oid()
        try check(git_reference_name_to_id(&oid, repo.pointer, "refs/heads/" + branch), "branch not found", ref: branch)
        return ObjectID(&oid)
    }

    /// Tags whose names match `glob` (libgit2 glob syntax, relative to `refs/tags/`) and, when
    /// given, have exactly `components` slash-separated parts. The depth check matters because
    /// libgit2's `*` also matches `/`: `staging/*` would otherwise match `staging/x/v1.0.0`.
    public func tags(matching glob: String = "*", components: Int? = nil) throws(GitError) -> TagListing {
        try validateGlob(glob)
        return try withRepository { repo throws(GitError) in
            let iterator = try make("cannot list tags", free: { git_reference_iterator_free($0) }) {
                git_reference_iterator_glob_new($0, repo.pointer, "refs/tags/" + glob)
            }
            var listing = TagListing(tags: [], refused: [])
            while true {
                var reference: OpaquePointer?
                let rc = git_reference_next(&reference, iterator.pointer)
                if rc == GIT_ITEROVER.rawValue { break }
                try check(rc, "cannot list tags")
                guard let reference else { break }
                let ref = Managed(reference, free: { git_reference_free($0) })
                let fullName = String(cString: git_reference_name(ref.pointer))
                let name = String(fullName.dropFirst("refs/tags/".count))
                if let components, name.split(separator: "/", omittingEmptySubsequences: false).count != components {
                    continue
                }
                if let problem = RefName.problem(with: name) {
                    listing.refused.append(RefusedTag(displayName: RefName.displayable(name), reason: problem))
                    continue
                }
                do throws(GitError) {
                    listing.tags.append(try describe(ref, name: name, in: repo))
                } catch {
                    listing.refused.append(RefusedTag(displayName: RefName.displayable(name), reason: error.message))
                }
            }
            listing.tags.sort { $0.name < $1.name }
            return listing
        }
    }

    private func validateGlob(_ glob: String) throws(GitError) {
        let withoutStars = glob.replacingOccurrences(of: "*", with: "x")
        if glob != "*", let problem = RefName.problem(with: withoutStars) {
            throw GitError(.invalidPattern, "refused tag glob \(RefName.displayable(glob)): \(problem)")
        }
    }

    /// The tag called `name`, peeled to its commit.
    public func tag(named name: String) throws(GitError) -> TagInfo {
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
        let target = ObjectID(targetOID)
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
        return TagInfo(name: name, target: target, commit: ObjectID(commitOID), tree: ObjectID(treeOID), annotation: annotation)
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
    public func isReachable(_ commit: ObjectID, fromBranch branch: String) throws(GitError) -> Bool {
        try withRepository { repo throws(GitError) in
            var tipOID = try tip(of: branch, in: repo).gitOID
            return try reachable(commit, from: &tipOID, in: repo)
        }
    }

    private func reachable(_ commit: ObjectID, from tip: inout git_oid, in repo: Managed) throws(GitError) -> Bool {
        var commitOID = commit.gitOID
        let rc = git_graph_reachable_from_any(repo.pointer, &commitOID, &tip, 1)
        try check(rc, "cannot compute reachability", ref: commit.hex)
        return rc == 1
    }

    /// `true` when `commit` is on the first-parent chain of `branch` and has two or more parents:
    /// it is the merge commit that a pull request produced, not a commit that reached the branch
    /// some other way or sits on a merged side branch.
    public func isMergeOnFirstParentChain(_ commit: ObjectID, branch: String) throws(GitError) -> Bool {
        try withRepository { repo throws(GitError) in
            var tipOID = try tip(of: branch, in: repo).gitOID
            return try firstParentMerge(commit, tip: &tipOID, in: repo)
        }
    }

    private func firstParentMerge(_ commit: ObjectID, tip: inout git_oid, in repo: Managed) throws(GitError) -> Bool {
        var target = commit.gitOID
        let commitObject = try make("commit not found", ref: commit.hex, free: { git_commit_free($0) }) {
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
    public func releaseFacts(tag name: String, protectedBranch branch: String) throws(GitError) -> ReleaseFacts {
        let info = try tag(named: name)
        let branchTip = try withRepository { repo throws(GitError) in try tip(of: branch, in: repo) }
        if answeredTip != branchTip {
            answeredTip = branchTip
            answers.removeAll()
        }
        let answer: (reachable: Bool, merge: Bool)
        if let known = answers[info.commit] {
            answer = known
        } else {
            answer = try withRepository { repo throws(GitError) in
                var tipOID = branchTip.gitOID
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
        return try withRepository { repo throws(GitError) in
            let odb = try make("cannot open the object database", free: { git_odb_free($0) }) {
                git_repository_odb($0, repo.pointer)
            }
            var oid = info.target.gitOID
            let object = try make("cannot read the tag object", ref: name, free: { git_odb_object_free($0) }) {
                git_odb_read($0, odb.pointer, &oid)
            }
            let size = git_odb_object_size(object.pointer)
            guard let data = git_odb_object_data(object.pointer) else {
                throw GitError(.libgit2, "the tag object has no data", ref: name)
            }
            let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
            let split = RawTagObject.split(bytes)
            return RawTagObject(name: name, id: info.target, payload: split.payload,
                                signature: split.signature, signatureFormat: split.format)
        }
    }
}
