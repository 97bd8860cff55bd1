internal import CLibgit2
import Foundation
import LockstepCore
import Logging

// Fetching the remote into the mirror: creation, the cheap up-to-date check, the download,
// and the ref-by-ref update that skips unusable refs (see RefSync.swift).
extension GitMirror {
    /// Creates the mirror if it does not exist yet, then fetches branches and tags with pruning.
    ///
    /// The report lists created, moved and deleted tags and changed branches. When the remote's
    /// branch tips and tags already equal the mirror's, nothing is fetched (`UpToDateCheck`:
    /// libgit2's own no-op fetch costs several times `git ls-remote` with thousands of tags).
    /// Refs are packed after any fetch that changed something, so loose refs never pile up
    /// (thousands of loose tag refs make every later fetch several times slower).
    public func sync() throws(GitError) -> FetchReport {
        lastSyncPath = nil
        // Counted before anything is written: a sync that fails half-way may have written some refs.
        let writesBefore = refWriteCount
        refWriteCount &+= 1
        do throws(GitError) {
            _ = try remote.parsed()
            let (repo, created) = try openOrCreate()
            var report = try fetch(repo)
            report.initialClone = created
            if report.changed { try packRefs(repo) }
            // A sync that wrote no ref leaves the count as it was (every ref it writes or removes
            // is in the report; removing unusable refs counts on its own).
            if !report.changed && !created && refWriteCount == writesBefore &+ 1 { refWriteCount = writesBefore }
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

    func openOrCreate() throws(GitError) -> (Managed, Bool) {
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
            if UpToDateCheck.mirror(repo.pointer, matchesRepositoryAt: sourcePath, skipped: skippedTargets, skippedCount: skipped.count,
                                    remembered: &identicalRefs) {
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
                // If even that fails, the mirror's own ref store is broken: the sync stops.
                if change.old != nil {
                    try change.name.withCString { (cName) throws(GitError) in
                        let removed = git_reference_remove(repo.pointer, cName)
                        if removed == GIT_ENOTFOUND.rawValue { git_error_clear(); return }
                        try check(removed, "cannot remove a ref the mirror could not rewrite", ref: change.name.displayName)
                    }
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

    /// A number that changes whenever a sync may have written the mirror's refs (created,
    /// moved or deleted a tag or a branch, removed an unusable ref, or failed part-way), and
    /// only then. Equal answers mean the refs are exactly as they were: whoever reads the
    /// mirror's tags can keep what it concluded from them. Every sync counts, whoever asked
    /// for it (a pass, an apply re-resolving its tag, a rollback).
    public func refWrites() -> UInt64 { refWriteCount }

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
            refWriteCount &+= 1
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
}
