import Foundation
import GitSource
import LockstepConfig
import LockstepCore

/// `lockstep.yaml` of a commit, read straight from the release source and parsed once per
/// commit (docs/ARCHITECTURE.md, "One pass per run"). A commit is immutable, so the branch
/// tip's examination, run creation (does the target have verify commands?), the plan, apply
/// and verify all use the one parse; each export still checks the layout's paths in its own
/// tree, since paths are resolved on disk.
extension Gate {
    /// The largest `lockstep.yaml` read from a commit (the config reader's own document limit).
    static let repoConfigMaxBytes = 1 << 20

    /// The text of `commit`'s `lockstep.yaml`, read straight from the release source's object
    /// database (no export). A file that is missing, a symlink, a folder, too large or not
    /// UTF-8 is the layout's own problem, reported as a config error; a source that cannot
    /// be read throws its own error, so the caller can try again later.
    func repoConfigText(at commit: GitObjectID) async throws -> String {
        try await Self.repoConfigText(from: source, at: commit)
    }

    /// ``repoConfigText(at:)`` from any release source, for `lockstep tags --offline`, which
    /// reads the layout at a branch tip the way the daemon does.
    public static func repoConfigText(from source: any ReleaseSource, at commit: GitObjectID) async throws -> String {
        let file = RepoConfig.fileName
        let data: Data?
        do {
            data = try await source.file(at: file, commit: commit, maxBytes: repoConfigMaxBytes)
        } catch {
            let code = error.code
            guard code == .notAFile || code == .fileTooLarge || code == .unsafePath else { throw error }
            throw ConfigErrors([ConfigError(file: file, keyPath: "", expected: "a regular file of at most \(repoConfigMaxBytes) bytes "
                                            + "at the repository root (\(error.message))",
                                            code: code == .fileTooLarge ? .tooLarge : .unsafePath)])
        }
        guard let data else {
            throw ConfigErrors([ConfigError(file: file, keyPath: "", expected: "a \(file) at the repository root of the commit",
                                            code: .pathMissing)])
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw ConfigErrors([ConfigError(file: file, keyPath: "", expected: "UTF-8 text", code: .syntax)])
        }
        return text
    }

    /// `commit`'s `lockstep.yaml` as text and parsed, from the cache or read and parsed now.
    /// A file invalid as written is cached with its errors (it cannot change); a source that
    /// could not be read is not, so the next call tries again.
    func repoConfig(at commit: GitObjectID) async throws -> (text: String, config: RepoConfig) {
        if let cached = parsedRepoConfigs[commit] { return try cached.get() }
        let parsed: Result<(text: String, config: RepoConfig), ConfigErrors>
        do {
            let text = try await repoConfigText(at: commit)
            parsed = layout(parsing: text).map { (text, $0) }
        } catch let error as ConfigErrors {
            parsed = .failure(error)
        }
        // A handful of commits are live at once (the tip, a few runs); a burst of tags cannot grow this.
        if parsedRepoConfigs.count >= Self.parsedRepoConfigLimit { parsedRepoConfigs.removeAll() }
        parsedRepoConfigs[commit] = parsed
        return try parsed.get()
    }

    /// The parse of `text`, shared by every commit whose `lockstep.yaml` reads the same: most
    /// commits leave the layout alone, and at 334 projects each parse held most of a megabyte.
    private func layout(parsing text: String) -> Result<RepoConfig, ConfigErrors> {
        if let known = parsedLayouts[text] { return known }
        let parsed = Result { () throws(ConfigErrors) in try RepoConfig.parse(yaml: text) }
        if parsedLayouts.count >= Self.parsedLayoutLimit { parsedLayouts.removeAll() }
        parsedLayouts[text] = parsed
        return parsed
    }

    /// How many commits' parsed layouts are kept.
    static let parsedRepoConfigLimit = 64
    /// How many distinct layout texts are kept parsed.
    static let parsedLayoutLimit = 8
}
