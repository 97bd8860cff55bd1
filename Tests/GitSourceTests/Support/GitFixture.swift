import Foundation

/// A git repository built with the git CLI in its own scratch directory.
///
/// Every command runs without a shell, with an explicit environment: fixed
/// author/committer identity, dates that advance by one minute per command
/// (so two runs of a test produce the same object ids), no system or user
/// config. The caller owns the scratch directory: `defer { fixture.cleanup() }`.
///
/// Layout: `scratch/work` (non-bare) or `scratch/repo.git` (bare); extra bare
/// repositories made by `makeBareMirror(named:)` go under `scratch/served/`,
/// which is the directory to hand to `GitHTTPServer`.
final class GitFixture {
    /// The unique scratch directory; everything this fixture makes lives inside.
    let scratch: URL
    /// Absolute path of the repository (work tree, or the bare repository).
    let path: String
    let isBare: Bool
    /// Directory for repositories served over HTTP/SSH (`scratch/served`).
    var servedRoot: URL { scratch.appendingPathComponent("served", isDirectory: true) }

    /// Fixed identity of every commit and tag the fixture writes.
    static let authorName = "Lockstep Test"
    static let authorEmail = "test@lockstep.invalid"
    /// Seconds since 1970 of the first command; each command adds 60.
    static let baseTime = 1_700_000_000

    private var tick = 0
    private var gitPath: String

    /// Creates the scratch directory and `git init`s a repository in it.
    init(bare: Bool = false) throws {
        guard let git = FixtureProcess.findExecutable(["/usr/bin/git", "/usr/local/bin/git"]) else {
            throw FixtureError(code: .missingTool, context: "git not found (run scripts/install-test-deps.sh)", detail: "")
        }
        gitPath = git
        scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-git-\(UUID().uuidString)", isDirectory: true)
        isBare = bare
        path = scratch.appendingPathComponent(bare ? "repo.git" : "work", isDirectory: true).path
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        do {
            try FixtureProcess.check(
                gitPath, bare ? ["init", "-q", "--bare", path] : ["init", "-q", path],
                environment: environment(), directory: scratch)
        } catch {
            cleanup()
            throw error
        }
    }

    /// Removes the scratch directory and everything in it.
    func cleanup() {
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: Running git

    /// The environment every git command gets. `extra` wins on conflicts.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        let when = "\(Self.baseTime + 60 * tick) +0000"
        var env: [String: String] = [
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": scratch.path,
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": Self.authorName,
            "GIT_AUTHOR_EMAIL": Self.authorEmail,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": Self.authorName,
            "GIT_COMMITTER_EMAIL": Self.authorEmail,
            "GIT_COMMITTER_DATE": when,
        ]
        // Config through the environment so every command, clone included, sees it.
        let config: [(String, String)] = [
            ("protocol.file.allow", "always"),
            ("init.defaultBranch", "main"),
            ("commit.gpgSign", "false"),
            ("tag.gpgSign", "false"),
            ("gc.auto", "0"),
            ("advice.detachedHead", "false"),
        ]
        env["GIT_CONFIG_COUNT"] = String(config.count)
        for (i, (key, value)) in config.enumerated() {
            env["GIT_CONFIG_KEY_\(i)"] = key
            env["GIT_CONFIG_VALUE_\(i)"] = value
        }
        env.merge(extra) { _, new in new }
        return env
    }

    /// Runs git in the repository; returns the outcome even when git fails
    /// (for tests that expect a refusal).
    func runGit(_ arguments: [String], environment extra: [String: String] = [:], input: Data? = nil) throws -> ProcessResult {
        tick += 1
        return try FixtureProcess.run(
            gitPath, arguments, environment: environment(extra), directory: URL(fileURLWithPath: path), input: input)
    }

    /// Runs git in the repository and returns stdout without the trailing
    /// newline; a non-zero exit throws with git's stderr.
    @discardableResult
    func git(_ arguments: [String], environment extra: [String: String] = [:], input: Data? = nil) throws -> String {
        tick += 1
        let result = try FixtureProcess.check(
            gitPath, arguments, environment: environment(extra), directory: URL(fileURLWithPath: path), input: input)
        var out = result.stdoutText
        while out.hasSuffix("\n") { out.removeLast() }
        return out
    }

    @discardableResult
    func git(_ arguments: String...) throws -> String { try git(arguments) }

    // MARK: History

    /// Writes `files` (path relative to the work tree → content), stages them
    /// together with anything already staged (e.g. by `symlink`), commits,
    /// and returns the new commit id. An empty `files` makes an empty commit.
    @discardableResult
    func commit(files: [String: String], message: String) throws -> String {
        try requireWorkTree("commit")
        for (relative, content) in files.sorted(by: { $0.key < $1.key }) {
            let url = URL(fileURLWithPath: path).appendingPathComponent(relative)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: url)
        }
        if !files.isEmpty {
            try git(["add", "--"] + files.keys.sorted())
        }
        try git(["commit", "-q", "--allow-empty", "-m", message])
        return try revParse("HEAD")
    }

    /// Creates and stages a symbolic link at `path` (relative to the work
    /// tree) pointing at `target`, verbatim. The next `commit` records it.
    func symlink(_ linkPath: String, target: String) throws {
        try requireWorkTree("symlink")
        let url = URL(fileURLWithPath: path).appendingPathComponent(linkPath)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
        try git(["add", "--", linkPath])
    }

    /// Creates branch `name` at `start` without switching to it.
    func branch(_ name: String, at start: String = "HEAD") throws {
        try git(["branch", name, start])
    }

    /// Switches the work tree to `name` (a branch, tag or commit).
    func checkout(_ name: String) throws {
        try requireWorkTree("checkout")
        try git(["checkout", "-q", name])
    }

    /// Merges `branch` into the current branch, like a merged pull request
    /// when `noFF` is true (always a two-parent merge commit). Returns HEAD.
    @discardableResult
    func merge(_ branch: String, noFF: Bool = true, message: String? = nil) throws -> String {
        try requireWorkTree("merge")
        try git(["merge", "-q", noFF ? "--no-ff" : "--ff", "-m", message ?? "Merge branch '\(branch)'", branch])
        return try revParse("HEAD")
    }

    /// Creates tag `name` at `at`: lightweight, annotated (`annotated` or a
    /// `message` given), or SSH-signed when `sshSigningKey` is a private key
    /// path (signed tags are always annotated).
    func tag(
        _ name: String, annotated: Bool = false, message: String? = nil, at target: String = "HEAD",
        sshSigningKey: String? = nil
    ) throws {
        try git(tagArguments(name, annotated: annotated, message: message, at: target, sshSigningKey: sshSigningKey, force: false))
    }

    /// Re-points an existing tag (`git tag -f`) — the "moved tag" attack.
    func forceMoveTag(_ name: String, to target: String, annotated: Bool = false, message: String? = nil) throws {
        try git(tagArguments(name, annotated: annotated, message: message, at: target, sshSigningKey: nil, force: true))
    }

    /// Deletes a tag.
    func deleteTag(_ name: String) throws {
        try git(["tag", "-d", name])
    }

    /// The full object id `rev` names (`git rev-parse --verify`); use
    /// `"TAG^{commit}"` to peel a tag.
    func revParse(_ rev: String) throws -> String {
        try git(["rev-parse", "--verify", "--end-of-options", rev])
    }

    /// Creates `count` tags named `name(i)` (i in 0..<count) at `target`
    /// quickly: lightweight ones in one `git update-ref --stdin` transaction,
    /// annotated ones in one `git fast-import` stream; then packs refs.
    func createManyTags(
        count: Int, annotated: Bool = false, at target: String = "HEAD",
        name: (Int) -> String = { "many/v0.0.\($0)" }
    ) throws {
        let commit = try revParse("\(target)^{commit}")
        var stream = ""
        stream.reserveCapacity(count * 100)
        if annotated {
            for i in 0..<count {
                let message = "release \(i)\n"
                stream += "tag \(name(i))\nfrom \(commit)\n"
                stream += "tagger \(Self.authorName) <\(Self.authorEmail)> \(Self.baseTime + i) +0000\n"
                stream += "data \(message.utf8.count)\n\(message)\n"
            }
            try git(["fast-import", "--quiet"], input: Data(stream.utf8))
        } else {
            for i in 0..<count {
                stream += "create refs/tags/\(name(i)) \(commit)\n"
            }
            try git(["update-ref", "--stdin"], input: Data(stream.utf8))
        }
        try git(["pack-refs", "--all"])
    }

    // MARK: Publishing

    /// Makes (or updates) the bare repository `servedRoot/name` an exact
    /// mirror of this repository's branches and tags — moved tags are
    /// force-updated, deleted ones removed — and returns its absolute path.
    @discardableResult
    func makeBareMirror(named name: String = "repo.git") throws -> String {
        let target = servedRoot.appendingPathComponent(name, isDirectory: true)
        if !FileManager.default.fileExists(atPath: target.path) {
            try FileManager.default.createDirectory(at: servedRoot, withIntermediateDirectories: true)
            try git(["init", "-q", "--bare", target.path])
        }
        try git(["push", "-q", "--force", "--prune", target.path, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        return target.path
    }

    /// Generates an ed25519 key pair (no passphrase) under the scratch
    /// directory; returns (private key path, public key path).
    func makeSSHKey(named name: String) throws -> (privateKey: String, publicKey: String) {
        let dir = scratch.appendingPathComponent("keys", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let key = dir.appendingPathComponent(name).path
        try SSHKeys.generate(at: key, comment: name)
        return (key, key + ".pub")
    }

    // MARK: Private

    private func tagArguments(
        _ name: String, annotated: Bool, message: String?, at target: String, sshSigningKey: String?, force: Bool
    ) -> [String] {
        var args: [String] = []
        if let key = sshSigningKey {
            args += ["-c", "gpg.format=ssh", "-c", "user.signingKey=\(key)"]
        }
        args.append("tag")
        if force { args.append("-f") }
        if sshSigningKey != nil {
            args += ["-s", "-m", message ?? name]
        } else if annotated || message != nil {
            args += ["-a", "-m", message ?? name]
        }
        args += ["--", name, target]
        return args
    }

    private func requireWorkTree(_ operation: String) throws {
        if isBare {
            throw FixtureError(code: .commandFailed, context: "\(operation) needs a work tree; this fixture is bare", detail: "")
        }
    }
}

/// ssh-keygen wrapper shared by the git and SSH fixtures.
enum SSHKeys {
    static func generate(at path: String, comment: String) throws {
        guard let keygen = FixtureProcess.findExecutable(["/usr/bin/ssh-keygen", "/usr/local/bin/ssh-keygen"]) else {
            throw FixtureError(code: .missingTool, context: "ssh-keygen not found (run scripts/install-test-deps.sh)", detail: "")
        }
        try FixtureProcess.check(
            keygen, ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
            environment: ["PATH": "/usr/bin:/bin"])
    }
}
