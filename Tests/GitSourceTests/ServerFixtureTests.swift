import Foundation
import Testing

/// Proves the test fixtures themselves, with the git CLI only, so a GitSource
/// test that fails points at GitSource and not at its fixture.
@Suite("Server and repository fixtures")
struct ServerFixtureTests {
    /// A work repository with two commits on main, a PR branch merged with a
    /// merge commit, an annotated and a lightweight tag, published as `repo.git`.
    private func makeRepository() throws -> (GitFixture, String) {
        let fixture = try GitFixture()
        try fixture.commit(files: ["main.tf": "# v1\n"], message: "first")
        try fixture.branch("feature")
        try fixture.checkout("feature")
        try fixture.commit(files: ["modules/a.tf": "# a\n"], message: "feature work")
        try fixture.checkout("main")
        try fixture.merge("feature", noFF: true, message: "Merge pull request #1")
        try fixture.tag("staging/v1.0.0", annotated: true, message: "release 1.0.0")
        try fixture.tag("dev/v1.0.0")
        let bare = try fixture.makeBareMirror()
        return (fixture, bare)
    }

    @Test("GitFixture builds deterministic history: a two-parent PR merge, annotated vs lightweight tags")
    func fixtureHistory() throws {
        let (fixture, bare) = try makeRepository()
        defer { fixture.cleanup() }
        let merge = try fixture.revParse("main")
        #expect(try fixture.git("rev-list", "--parents", "-n", "1", merge).split(separator: " ").count == 3)
        #expect(try fixture.git("cat-file", "-t", "staging/v1.0.0") == "tag")
        #expect(try fixture.git("cat-file", "-t", "dev/v1.0.0") == "commit")
        #expect(try fixture.revParse("staging/v1.0.0^{commit}") == merge)

        // Same steps in another scratch directory give the same object ids.
        let (again, _) = try makeRepository()
        defer { again.cleanup() }
        #expect(try again.revParse("main") == merge)
        #expect(try again.revParse("staging/v1.0.0") == fixture.revParse("staging/v1.0.0"))

        // The bare mirror follows a force-moved and a deleted tag.
        let second = try fixture.commit(files: ["main.tf": "# v2\n"], message: "second")
        try fixture.forceMoveTag("staging/v1.0.0", to: second, annotated: true, message: "moved")
        try fixture.deleteTag("dev/v1.0.0")
        try fixture.makeBareMirror()
        let refs = try fixture.git("ls-remote", "--tags", bare)
        #expect(!refs.contains("dev/v1.0.0"))
        #expect(refs.contains("\(second)\trefs/tags/staging/v1.0.0^{}"))
    }

    @Test("cleanup() removes the scratch directory with every repository in it")
    func fixtureCleanup() throws {
        let (fixture, bare) = try makeRepository()
        #expect(FileManager.default.fileExists(atPath: bare + "/HEAD"))
        fixture.cleanup()
        #expect(!FileManager.default.fileExists(atPath: fixture.scratch.path))
    }

    @Test("symlink() commits a link verbatim, even one pointing outside the tree")
    func fixtureSymlink() throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.symlink("escape", target: "/etc/passwd")
        try fixture.symlink("dir/up", target: "../../outside")
        let commit = try fixture.commit(files: ["ok.txt": "ok\n"], message: "links")
        let tree = try fixture.git("ls-tree", "-r", commit)
        #expect(tree.contains("120000 blob") && tree.contains("\tescape") && tree.contains("\tdir/up"))
        #expect(try fixture.git("cat-file", "-p", "\(commit):escape") == "/etc/passwd")
    }

    @Test("An SSH-signed tag made by the fixture verifies with ssh-keygen")
    func fixtureSignedTag() throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        try fixture.commit(files: ["a": "a\n"], message: "a")
        let key = try fixture.makeSSHKey(named: "signer")
        try fixture.tag("prod/v1.0.0", message: "signed release", sshSigningKey: key.privateKey)
        let raw = try fixture.git("cat-file", "tag", "prod/v1.0.0")
        #expect(raw.contains("-----BEGIN SSH SIGNATURE-----"))
        let publicKey = try String(contentsOfFile: key.publicKey, encoding: .utf8)
        let signers = fixture.scratch.appendingPathComponent("allowed_signers").path
        try "\(GitFixture.authorEmail) \(publicKey)".write(toFile: signers, atomically: true, encoding: .utf8)
        let verified = try fixture.runGit(
            ["-c", "gpg.ssh.allowedSignersFile=\(signers)", "tag", "-v", "prod/v1.0.0"])
        #expect(verified.succeeded, "\(verified.stderrText)")
    }

    @Test("createManyTags makes 10,000 packed tags (lightweight) and 1,000 annotated ones")
    func manyTags() throws {
        let fixture = try GitFixture()
        defer { fixture.cleanup() }
        let head = try fixture.commit(files: ["a": "a\n"], message: "a")
        try fixture.createManyTags(count: 10_000)
        #expect(try fixture.git("tag", "--list").split(separator: "\n").count == 10_000)
        // Packed: no loose tag refs left to slow a fetch down.
        #expect(looseFiles(under: fixture.path + "/.git/refs/tags").isEmpty)
        #expect(try fixture.revParse("many/v0.0.9999") == head)

        try fixture.createManyTags(count: 1_000, annotated: true) { "staging/v2.\($0).0" }
        #expect(try fixture.git("cat-file", "-t", "staging/v2.999.0") == "tag")
        #expect(try fixture.revParse("staging/v2.999.0^{commit}") == head)
        #expect(try fixture.git("tag", "--list").split(separator: "\n").count == 11_000)
    }

    @Test("HTTP fixture: anonymous clone works, and stop() leaves no server process")
    func httpAnonymous() throws {
        let (fixture, _) = try makeRepository()
        defer { fixture.cleanup() }
        let server = try GitHTTPServer(root: fixture.servedRoot)
        let pid = server.pid
        let clone = fixture.scratch.appendingPathComponent("clone-anon").path
        do {
            defer { server.stop() }
            try fixture.git("clone", "-q", "--mirror", server.url(for: "repo.git"), clone)
            #expect(try fixture.git("--git-dir", clone, "rev-parse", "refs/tags/staging/v1.0.0^{commit}")
                == fixture.revParse("main"))
            #expect(server.unauthorizedCount == 0)
            #expect(server.requestCount >= 2)
        }
        #expect(!server.isRunning)
        #expect(processIsGone(pid))
    }

    @Test("HTTP fixture with basic auth: right password clones, none or a wrong one gets a bounded number of 401s")
    func httpBasicAuth() throws {
        let (fixture, _) = try makeRepository()
        defer { fixture.cleanup() }
        let server = try GitHTTPServer(root: fixture.servedRoot, basicAuth: ("deploy", "s3cret-token"))
        defer { server.stop() }

        let good = fixture.scratch.appendingPathComponent("clone-good").path
        try fixture.git("clone", "-q", server.url(for: "repo.git", user: "deploy", password: "s3cret-token"), good)
        #expect(FileManager.default.fileExists(atPath: good + "/main.tf"))
        let afterGood = server.unauthorizedCount

        let none = try fixture.runGit(["ls-remote", server.url(for: "repo.git")])
        #expect(!none.succeeded)
        #expect(server.unauthorizedCount > afterGood)

        let beforeWrong = server.unauthorizedCount
        let wrong = try fixture.runGit(["ls-remote", server.url(for: "repo.git", user: "deploy", password: "wrong")])
        #expect(!wrong.succeeded)
        #expect(wrong.stderrText.contains("Authentication failed"))
        let refusals = server.unauthorizedCount - beforeWrong
        #expect(refusals >= 1 && refusals <= 3, "git CLI made \(refusals) unauthorised requests")
    }

    @Test("SSH fixture: ls-remote with the client key and the right known_hosts works; a wrong host key is refused; no sshd left")
    func sshLsRemote() throws {
        try #require(SSHServer.isAvailable, "sshd missing: run scripts/install-test-deps.sh")
        let (fixture, bare) = try makeRepository()
        defer { fixture.cleanup() }
        let server = try SSHServer()
        let pid = server.pid
        let directory = server.directory
        do {
            defer { server.stop() }
            #expect(!processIsGone(pid) && !processGroupIsGone(pid))
            #expect(server.knownHostsLine.hasPrefix("[127.0.0.1]:\(server.port) ssh-ed25519 AAAA"))
            #expect(server.wrongKnownHostsLine != server.knownHostsLine)
            #expect(server.url(for: bare) == "ssh://\(server.user)@127.0.0.1:\(server.port)\(bare)")

            let refs = try fixture.git(
                ["ls-remote", "--tags", server.url(for: bare)],
                environment: ["GIT_SSH_COMMAND": server.gitSSHCommand(knownHostsPath: server.knownHostsPath)])
            #expect(refs.contains("refs/tags/staging/v1.0.0"))

            let refused = try fixture.runGit(
                ["ls-remote", server.url(for: bare)],
                environment: ["GIT_SSH_COMMAND": server.gitSSHCommand(knownHostsPath: server.wrongKnownHostsPath)])
            #expect(!refused.succeeded)
            #expect(refused.stderrText.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || refused.stderrText.contains("Host key verification failed"))
        }
        #expect(processIsGone(pid))
        #expect(processGroupIsGone(pid), "sshd's process group still has members")
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    private func looseFiles(under directory: String) -> [String] {
        let manager = FileManager.default
        return (manager.enumerator(atPath: directory)?.allObjects as? [String] ?? []).filter {
            var isDirectory: ObjCBool = false
            return manager.fileExists(atPath: directory + "/" + $0, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
    }
}
