import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// Real files and symlinks in a scratch folder: the export keeps symlinks as committed, so
/// only resolution on disk can tell an inside path from an escaping one.
@Suite("resolveInside: symlinks must not leave the exported tree")
struct ResolveInsideTests {
    let fm = FileManager.default

    func tree() throws -> (base: String, root: String) {
        let base = try makeTempDir()
        let root = base + "/export"
        try fm.createDirectory(atPath: root + "/app/envs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/.git", withIntermediateDirectories: true)
        try "x = 1\n".write(toFile: root + "/app/envs/prod.tfvars", atomically: true, encoding: .utf8)
        try "secret\n".write(toFile: base + "/outside.txt", atomically: true, encoding: .utf8)
        try "[core]\n".write(toFile: root + "/.git/config", atomically: true, encoding: .utf8)
        return (base, root)
    }

    @Test("a plain file and an inside symlink resolve to real paths under the root")
    func insideResolves() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/app/current.tfvars", withDestinationPath: "envs/prod.tfvars")
        let real = try resolveInside(root: root, relative: "app/envs/prod.tfvars")
        #expect(real.hasSuffix("/export/app/envs/prod.tfvars"))
        let viaLink = try resolveInside(root: root, relative: "app/current.tfvars")
        #expect(viaLink == real)
        #expect(try resolveInside(root: root, relative: ".").hasSuffix("/export"))
    }

    @Test("a symlink to an absolute path outside is refused")
    func absoluteLinkEscapes() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/app/passwd.tfvars", withDestinationPath: "/etc/passwd")
        #expect(throws: ConfigError.self) { try resolveInside(root: root, relative: "app/passwd.tfvars") }
        do {
            _ = try resolveInside(root: root, relative: "app/passwd.tfvars", file: "lockstep.yaml", keyPath: "projects.app.environments.prod.var_files[0]")
        } catch {
            #expect(error.code == .pathEscapes)
            #expect(error.keyPath == "projects.app.environments.prod.var_files[0]")
        }
    }

    @Test("a directory symlink to `..` cannot be used to climb out")
    func dotDotDirectoryLink() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/up", withDestinationPath: "..")
        #expect(RelativePath("up/outside.txt") != nil, "lexically clean, so only resolution can catch it")
        #expect(code(root, "up/outside.txt") == .pathEscapes)
    }

    @Test("a symlink into .git is refused after resolution")
    func linkIntoGit() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/app/git.tfvars", withDestinationPath: "../.git/config")
        #expect(code(root, "app/git.tfvars") == .unsafePath)
    }

    @Test("symlink loops, missing files and lexically bad paths each get their own code")
    func otherRefusals() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/loop1", withDestinationPath: "loop2")
        try fm.createSymbolicLink(atPath: root + "/loop2", withDestinationPath: "loop1")
        #expect(code(root, "loop1") == .pathEscapes)
        #expect(code(root, "app/missing.tfvars") == .pathMissing)
        #expect(code(root, "../outside.txt") == .unsafePath)
        #expect(code(root, base + "/outside.txt") == .unsafePath)
        #expect(code(base + "/no-such-root", "a") == .pathMissing)
    }

    @Test("a root reached through a symlink still compares correctly")
    func symlinkedRoot() throws {
        let (base, _) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: base + "/alias", withDestinationPath: "export")
        let real = try resolveInside(root: base + "/alias", relative: "app/envs/prod.tfvars")
        #expect(real.hasSuffix("/export/app/envs/prod.tfvars"))
    }

    @Test("RepoConfig.load refuses a lockstep.yaml that is a symlink out of the tree")
    func loadRefusesLinkedConfig() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/lockstep.yaml", withDestinationPath: base + "/outside.txt")
        do {
            _ = try RepoConfig.load(root: root)
            Issue.record("an escaping lockstep.yaml was read")
        } catch {
            #expect(error.codes == [.pathEscapes])
        }
    }

    @Test("checkPaths reports each escaping or missing layout path, and accepts the rest")
    func checkPaths() throws {
        let (base, root) = try tree()
        defer { try? fm.removeItem(atPath: base) }
        try fm.createSymbolicLink(atPath: root + "/app/envs/staging.tfvars", withDestinationPath: "/etc/hostname")
        let yaml = "projects:\n  app:\n    dir: app\n    environments:\n      staging: {var_files: [app/envs/staging.tfvars]}\n      prod: {var_files: [app/envs/prod.tfvars], backend_config_files: [app/envs/none.hcl]}\n"
        try yaml.write(toFile: root + "/lockstep.yaml", atomically: true, encoding: .utf8)
        let config = try RepoConfig.load(root: root)
        let errors = config.checkPaths(root: root)
        #expect(errors.map(\.keyPath).sorted() == ["projects.app.environments.prod.backend_config_files[0]", "projects.app.environments.staging.var_files[0]"])
        #expect(Set(errors.map(\.code)) == [.pathEscapes, .pathMissing])
    }

    private func code(_ root: String, _ relative: String) -> ConfigError.Code? {
        do {
            _ = try resolveInside(root: root, relative: relative)
            return nil
        } catch {
            return error.code
        }
    }
}

@Suite("checkConfiguration: what `lockstep config check` prints")
struct ConfigCheckTests {
    @Test("errors from the agent config, the repo config, the cross-check and the paths come out together")
    func everythingAtOnce() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let agentPath = dir + "/agent.yaml"
        try agentYAML(prod: "approvals: 0").write(toFile: agentPath, atomically: true, encoding: .utf8)
        let repo = dir + "/repo"
        try FileManager.default.createDirectory(atPath: repo + "/app", withIntermediateDirectories: true)
        try "projects:\n  app:\n    dir: app\n    environments:\n      qa: {var_files: [app/qa.tfvars]}\n".write(toFile: repo + "/lockstep.yaml", atomically: true, encoding: .utf8)

        let errors = checkConfiguration(agentPath: agentPath, repoRoot: repo)
        // The agent config is invalid, so no cross-check is possible, but the repo's own paths are still checked.
        #expect(errors.map(\.keyPath) == ["environments.prod.approvals", "projects.app.environments.qa.var_files[0]"], "\(ConfigErrors(errors))")

        try agentYAML().write(toFile: agentPath, atomically: true, encoding: .utf8)
        let second = checkConfiguration(agentPath: agentPath, repoRoot: repo)
        #expect(second.map(\.code) == [.unknownReference, .pathMissing], "\(ConfigErrors(second))")
        #expect(checkConfiguration(agentPath: agentPath, repoRoot: nil).isEmpty)
    }
}
