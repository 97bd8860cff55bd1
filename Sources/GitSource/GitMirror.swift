internal import CLibgit2
import Foundation
import LockstepCore
import Logging

/// A bare mirror of the delivery repository, kept up to date by fetch, and every question
/// Lockstep asks of it.
///
/// All libgit2 handles live inside this actor and never leave it: libgit2 objects are not safe
/// to use from two threads at once, and an actor runs one call at a time. Nothing here relies on
/// the mirror's `HEAD` (a bare clone's HEAD may name a branch that does not exist): every
/// question names its branch or tag explicitly.
///
/// The actor runs on its own thread (`MirrorExecutor`), never on Swift's shared pool: a
/// libgit2 call that blocks for minutes (a slow remote, a large export) blocks this mirror
/// only, not the rest of the process.
public actor GitMirror {
    /// Where the bare mirror lives on disk.
    public nonisolated let path: String
    public nonisolated let remote: Remote
    let logger: Logger
    var repository: Managed?
    var redactor: SecretRedactor
    /// How the last `sync()` ended: the remote shown unchanged by the cheap check, or a libgit2
    /// fetch. For the debug log and for tests that must know which path a sync took.
    var lastSyncPath: SyncPath?
    /// Reachability answers for one branch tip, by tagged commit. Every poll asks the same
    /// question for every release tag, and each answer is a walk of the branch's history: with
    /// 300 tags that was a third of a CPU core at a 1 s poll. The answers only change when the
    /// tip moves, so they are kept until it does.
    var answeredTip: GitObjectID?
    var answers: [GitObjectID: (reachable: Bool, merge: Bool)] = [:]
    /// The refs skipped by the last sync that fetched, by raw name, with the id offered then.
    var skipped: [RawRefName: SkipEntry] = [:]
    /// Whether the mirror's own refs were checked since this actor opened it.
    var checkedMirrorRefs = false
    /// How many syncs may have written the mirror's refs since this actor was made (see
    /// ``refWrites()``).
    var refWriteCount: UInt64 = 0
    /// Every tag of the mirror, read and described once per ``refWriteCount`` (see ``tags(matching:components:)``).
    var tagIndex: TagIndex?
    /// The refs' stamps of the mirror and a local source the last time they were identical
    /// (``RefsStamp``).
    var identicalRefs: IdenticalRefs?
    /// Tag globs already checked (``tags(matching:components:)``).
    var validGlobs: Set<String> = []
    /// Branch tips by name, with the ref-write count they were read at.
    var branchTips: [String: (writes: UInt64, tip: GitObjectID)] = [:]

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

    /// The thread every job of this actor runs on.
    nonisolated let executor: MirrorExecutor

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(remote: Remote, path: String, logger: Logger) {
        self.executor = MirrorExecutor()
        self.remote = remote
        self.path = path
        var logger = logger
        logger[metadataKey: "git.repository"] = .string(remote.redactedURL)
        self.logger = logger
        self.redactor = SecretRedactor(secrets: [remote.embeddedPassword].compactMap { $0 })
    }

    deinit { executor.shutdown() }

    // MARK: Repository access

    /// The open repository; opened (never created) on first use.
    func openRepository() throws(GitError) -> Managed {
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
}
