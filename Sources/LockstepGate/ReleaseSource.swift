public import Foundation
public import GitSource
public import LockstepCore

/// Where the gate reads releases from: the delivery repository's branch tip, its tags, the
/// facts about a tagged commit, one file of a commit, and a fresh export of a commit's tree.
///
/// The gate owns this seam so that its decisions can be tested against an in-memory double
/// (every value type below has a public memberwise initialiser), while production uses the
/// libgit2 mirror. It holds exactly what the gate asks of the mirror, nothing more: a new
/// question is added here first, so the double and the mirror stay in step.
public protocol ReleaseSource: Sendable {
    /// The mirror's folder on the agent: failure reasons shown to reviewers name it by its role.
    var path: String { get }

    /// Brings the mirror up to date with the remote and reports what changed.
    func sync() async throws(GitError) -> FetchReport

    /// The commit at the tip of `branch`.
    func branchTip(_ branch: String) async throws(GitError) -> GitObjectID

    /// Tags whose names match `glob` with exactly `components` slash-separated parts (when
    /// given); refused tags are listed with their reason, never dropped.
    func tags(matching glob: String, components: Int?) async throws(GitError) -> TagListing

    /// The tag called `name`, peeled to its commit.
    func tag(named name: String) async throws(GitError) -> TagInfo

    /// The message of `commit`, at most `maxBytes` (shown to reviewers).
    func commitMessage(_ commit: GitObjectID, maxBytes: Int) async throws(GitError) -> String

    /// The tag peeled to its commit and tree, and how that commit relates to the protected branch.
    func releaseFacts(tag name: String, protectedBranch branch: String) async throws(GitError) -> ReleaseFacts

    /// ``releaseFacts(tag:protectedBranch:)`` for several tags at once, by name (one trip to
    /// the mirror's thread instead of one per tag: a pass decides every tag of every target).
    func releaseFacts(tags names: [String], protectedBranch branch: String) async -> [String: Result<ReleaseFacts, GitError>]

    /// The listing of each query and the release facts of every listed tag, in query order (one
    /// trip to the mirror's thread for every target of a pass).
    func releaseInputs(for queries: [TagQuery], protectedBranch branch: String) async -> [Result<ReleaseInputs, GitError>]

    /// Writes the tree of `commit` into the empty folder `directory`, within `limits`.
    func export(commit: GitObjectID, to directory: String, limits: ExportLimits,
                excludingNames excludedNames: Set<String>) async throws(GitError) -> ExportResult

    /// The bytes of the regular file at `path` in `commit` (nil when absent); a symlink, a
    /// folder, a submodule or a file over `maxBytes` is refused with an error naming the path.
    func file(at path: String, commit: GitObjectID, maxBytes: Int) async throws(GitError) -> Data?

    /// The tag object `id` (listed as tag `name`), split into the signed payload and the
    /// signature block; its bytes are hashed again and must give `id`.
    func rawTag(id: GitObjectID, name: String) async throws(GitError) -> RawTagObject

    /// The refs the source skips now, each with its reason.
    func skippedRefs() async -> [SkippedRef]
}

extension ReleaseSource {
    /// One question per tag (for sources that have no cheaper way).
    public func releaseFacts(tags names: [String], protectedBranch branch: String) async -> [String: Result<ReleaseFacts, GitError>] {
        var facts: [String: Result<ReleaseFacts, GitError>] = [:]
        for name in names {
            do { facts[name] = .success(try await releaseFacts(tag: name, protectedBranch: branch)) } catch { facts[name] = .failure(error) }
        }
        return facts
    }

    /// One listing and one batch of facts per query (for sources that have no cheaper way).
    public func releaseInputs(for queries: [TagQuery], protectedBranch branch: String) async -> [Result<ReleaseInputs, GitError>] {
        var inputs: [Result<ReleaseInputs, GitError>] = []
        for query in queries {
            do throws(GitError) {
                let listing = try await tags(matching: query.glob, components: query.components)
                let facts = await releaseFacts(tags: listing.tags.map(\.name), protectedBranch: branch)
                inputs.append(.success(ReleaseInputs(listing: listing, facts: facts)))
            } catch {
                inputs.append(.failure(error))
            }
        }
        return inputs
    }
}

extension GitMirror: ReleaseSource {}

extension ReleaseSource {
    /// A source that cannot read commit messages shows none.
    public func commitMessage(_ commit: GitObjectID, maxBytes: Int) async throws(GitError) -> String { "" }
}
