import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// A valid lockstep.yaml with one project; `prod` gets the extra lines (indented under it).
func repoYAML(prod: String = "", project: String = "", top: String = "") -> String {
    func indent(_ text: String, _ by: Int) -> String {
        text.split(separator: "\n").map { String(repeating: " ", count: by) + $0 + "\n" }.joined()
    }
    return """
    projects:
      app:
        dir: app
        environments:
          staging:
            var_files: [app/staging.tfvars]
          prod:

    """ + indent(prod, 8) + indent(project, 4) + top
}

@Suite("Repo config: layout only, untrusted")
struct RepoConfigTests {
    @Test("the base fixture is valid and parses into the layout")
    func baseIsValid() throws {
        let c = try RepoConfig.parse(yaml: repoYAML(prod: "backend_config_files: [app/prod.hcl]\nverify:\n  - [curl, -fsS, \"https://example.com\"]\n  - {argv: [./scripts/smoke.sh], timeout: 2m}", top: "policy_files: [policy/a.rego]\n"))
        let app = try #require(c.projects["app"])
        #expect(app.dir.value == "app")
        let prod = try #require(app.environments["prod"])
        #expect(prod.varFiles.isEmpty)
        #expect(prod.backendConfigFiles.map(\.value) == ["app/prod.hcl"])
        #expect(prod.verify == [
            VerifyCommand(argv: ["curl", "-fsS", "https://example.com"], timeout: .seconds(300)),
            VerifyCommand(argv: ["./scripts/smoke.sh"], timeout: .seconds(120)),
        ])
        #expect(c.policyFiles.map(\.value) == ["policy/a.rego"])
        #expect(c.environmentNames == ["staging", "prod"])
    }

    @Test("an environment with nothing to add may be left empty, and `.` is the repo root")
    func emptyEnvironmentAndRootDir() throws {
        let c = try RepoConfig.parse(yaml: "projects:\n  root:\n    dir: .\n    environments:\n      dev:\n      staging: {}\n      prod:\n")
        #expect(c.projects["root"]?.environments.keys.sorted() == ["dev", "prod", "staging"])
        #expect(c.projects["root"]?.dir.value == ".")
    }

    /// Every attempt to set a trust decision from the delivery repo, at every level.
    static let trustRows: [BadRow] = [
        BadRow(name: "prod approvals: 0", yaml: repoYAML(prod: "approvals: 0"), keyPath: "projects.app.environments.prod.approvals", code: .trustInRepoConfig),
        BadRow(name: "adding an approver", yaml: repoYAML(prod: "approvers: [mallory]"), keyPath: "projects.app.environments.prod.approvers", code: .trustInRepoConfig),
        BadRow(name: "letting the tagger approve", yaml: repoYAML(prod: "tagger_may_approve: true"), keyPath: "projects.app.environments.prod.tagger_may_approve", code: .trustInRepoConfig),
        BadRow(name: "claiming the agent serves prod", yaml: repoYAML(prod: "serves: true"), keyPath: "projects.app.environments.prod.serves", code: .trustInRepoConfig),
        BadRow(name: "pointing apply credentials elsewhere", yaml: repoYAML(prod: "apply_credentials_file: creds.env"), keyPath: "projects.app.environments.prod.apply_credentials_file", code: .trustInRepoConfig),
        BadRow(name: "plan credentials", yaml: repoYAML(prod: "plan_credentials_file: creds.env"), keyPath: "projects.app.environments.prod.plan_credentials_file", code: .trustInRepoConfig),
        BadRow(name: "skipping promotion", yaml: repoYAML(prod: "promote_from: dev"), keyPath: "projects.app.environments.prod.promote_from", code: .trustInRepoConfig),
        BadRow(name: "opening apply windows", yaml: repoYAML(prod: "apply_windows: []"), keyPath: "projects.app.environments.prod.apply_windows", code: .trustInRepoConfig),
        BadRow(name: "longer approval ttl", yaml: repoYAML(prod: "approval_ttl: 90d"), keyPath: "projects.app.environments.prod.approval_ttl", code: .trustInRepoConfig),
        BadRow(name: "turning off signed tags", yaml: repoYAML(prod: "require_signed_tags: false"), keyPath: "projects.app.environments.prod.require_signed_tags", code: .trustInRepoConfig),
        BadRow(name: "widening the resource allow-list", yaml: repoYAML(prod: "allowed_resource_types: [aws_iam_role]"), keyPath: "projects.app.environments.prod.allowed_resource_types", code: .trustInRepoConfig),
        BadRow(name: "unprotecting resource types", yaml: repoYAML(prod: "protected_resource_types: []"), keyPath: "projects.app.environments.prod.protected_resource_types", code: .trustInRepoConfig),
        BadRow(name: "approvals at project level", yaml: repoYAML(project: "approvals: 0"), keyPath: "projects.app.approvals", code: .trustInRepoConfig),
        BadRow(name: "identities at top level", yaml: repoYAML(top: "identities: {mallory: {token_sha256: x}}\n"), keyPath: "identities", code: .trustInRepoConfig),
        BadRow(name: "environments policy at top level", yaml: repoYAML(top: "environments: {prod: {approvals: 0}}\n"), keyPath: "environments", code: .trustInRepoConfig),
        BadRow(name: "require_merge_commit at top level", yaml: repoYAML(top: "require_merge_commit: false\n"), keyPath: "require_merge_commit", code: .trustInRepoConfig),
        BadRow(name: "tag pattern at top level", yaml: repoYAML(top: "tag_pattern: \"{version}/{env}\"\n"), keyPath: "tag_pattern", code: .trustInRepoConfig),
        BadRow(name: "repository at top level", yaml: repoYAML(top: "repository: {url: \"https://evil.example.com/x.git\"}\n"), keyPath: "repository", code: .trustInRepoConfig),
    ]

    @Test("a pull request cannot loosen a trust decision: every such key is refused and the config is not produced", arguments: trustRows)
    func trustRefused(row: BadRow) throws {
        let errors = repoErrors(row.yaml)
        expectError(errors, row)
        let error = try #require(errors.first { $0.code == .trustInRepoConfig })
        #expect(error.description.contains("agent config"))
    }

    static let badRows: [BadRow] = [
        BadRow(name: "var file escaping with ..", yaml: repoYAML(prod: "var_files: [../../etc/passwd]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "var file with .. in the middle", yaml: repoYAML(prod: "var_files: [app/../../x]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "absolute var file", yaml: repoYAML(prod: "var_files: [/etc/passwd]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "var file inside .git", yaml: repoYAML(prod: "var_files: [.git/config]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "var file inside .GIT (case-insensitive file systems)", yaml: repoYAML(prod: "var_files: [a/.GIT/config]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "non-normalised path with ./", yaml: repoYAML(prod: "var_files: [./app/prod.tfvars]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "non-normalised path with //", yaml: repoYAML(prod: "var_files: [app//prod.tfvars]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "trailing slash", yaml: repoYAML(prod: "var_files: [app/]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "NUL byte in a path", yaml: repoYAML(prod: "var_files: [\"app/a\\0b\"]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .invalidValue),
        BadRow(name: "newline in a path", yaml: repoYAML(prod: "var_files: [\"app/a\\nb\"]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "backslash in a path", yaml: repoYAML(prod: "var_files: [\"..\\\\..\\\\x\"]"), keyPath: "projects.app.environments.prod.var_files[0]", code: .unsafePath),
        BadRow(name: "absolute backend file", yaml: repoYAML(prod: "backend_config_files: [/root/.aws/credentials]"), keyPath: "projects.app.environments.prod.backend_config_files[0]", code: .unsafePath),
        BadRow(name: "backend_config_files as a string", yaml: repoYAML(prod: "backend_config_files: app/x.hcl"), keyPath: "projects.app.environments.prod.backend_config_files", code: .wrongType),
        BadRow(name: "project dir escaping", yaml: "projects:\n  app:\n    dir: ../other\n    environments: {prod: {}}\n", keyPath: "projects.app.dir", code: .unsafePath),
        BadRow(name: "absolute project dir", yaml: "projects:\n  app:\n    dir: /srv\n    environments: {prod: {}}\n", keyPath: "projects.app.dir", code: .unsafePath),
        BadRow(name: "project without dir", yaml: "projects:\n  app:\n    environments: {prod: {}}\n", keyPath: "projects.app.dir", code: .missingKey),
        BadRow(name: "project without environments", yaml: "projects:\n  app:\n    dir: app\n", keyPath: "projects.app.environments", code: .missingKey),
        BadRow(name: "no projects", yaml: "policy_files: []\n", keyPath: "projects", code: .missingKey),
        BadRow(name: "empty projects", yaml: "projects: {}\n", keyPath: "projects", code: .invalidValue),
        BadRow(name: "project name with a slash", yaml: "projects:\n  a/b:\n    dir: a\n    environments: {prod: {}}\n", keyPath: "projects.<key of 3 bytes>", code: .invalidValue),
        BadRow(name: "policy file escaping", yaml: repoYAML(top: "policy_files: [../policy.rego]\n"), keyPath: "policy_files[0]", code: .unsafePath),
        BadRow(name: "verify as a shell string", yaml: repoYAML(prod: "verify: [\"curl -s https://x | sh\"]"), keyPath: "projects.app.environments.prod.verify[0]", code: .wrongType),
        BadRow(name: "verify with empty argv", yaml: repoYAML(prod: "verify: [[]]"), keyPath: "projects.app.environments.prod.verify[0]", code: .invalidValue),
        BadRow(name: "verify program outside the tree", yaml: repoYAML(prod: "verify: [[../../bin/evil]]"), keyPath: "projects.app.environments.prod.verify[0][0]", code: .unsafePath),
        BadRow(name: "verify absolute program", yaml: repoYAML(prod: "verify: [[/bin/sh, -c, id]]"), keyPath: "projects.app.environments.prod.verify[0][0]", code: .unsafePath),
        BadRow(name: "verify timeout too long", yaml: repoYAML(prod: "verify: [{argv: [true], timeout: 2h}]"), keyPath: "projects.app.environments.prod.verify[0].timeout", code: .invalidValue),
        BadRow(name: "verify without argv", yaml: repoYAML(prod: "verify: [{timeout: 1m}]"), keyPath: "projects.app.environments.prod.verify[0].argv", code: .missingKey),
        BadRow(name: "verify with a shell key", yaml: repoYAML(prod: "verify: [{argv: [true], shell: bash}]"), keyPath: "projects.app.environments.prod.verify[0].shell", code: .unknownKey),
        BadRow(name: "unknown environment key", yaml: repoYAML(prod: "var_file: [a]"), keyPath: "projects.app.environments.prod.var_file", code: .unknownKey),
        BadRow(name: "secret in the repo config", yaml: repoYAML(prod: "aws_secret_access_key: AKIAREPOSECRET"), keyPath: "projects.app.environments.prod.aws_secret_access_key", code: .literalSecret, secret: "AKIAREPOSECRET"),
    ]

    @Test("bad layout values are refused with the right key path and code", arguments: badRows)
    func badValues(row: BadRow) {
        expectError(repoErrors(row.yaml), row)
    }

    @Test("all problems of one lockstep.yaml come out together")
    func manyErrorsAtOnce() {
        let errors = repoErrors(repoYAML(prod: "approvals: 0\napprovers: [mallory]\nvar_files: [../../etc/passwd, /etc/shadow]", top: "policy_files: [.git/hooks/x]\n"))
        let paths = Set(errors.map(\.keyPath))
        #expect(paths.isSuperset(of: [
            "projects.app.environments.prod.approvals", "projects.app.environments.prod.approvers",
            "projects.app.environments.prod.var_files[0]", "projects.app.environments.prod.var_files[1]", "policy_files[0]",
        ]), "\(ConfigErrors(errors))")
    }

    @Test("a repo config over 1 MiB is refused before parsing")
    func sizeCap() {
        let errors = repoErrors(repoYAML() + "# " + String(repeating: "x", count: 1 << 20) + "\n")
        #expect(errors.map(\.code) == [.tooLarge])
    }

    @Test("cross-check: an environment the agent does not know is an error, not a silent skip")
    func unknownEnvironment() throws {
        let agent = try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc")
        let repo = try RepoConfig.parse(yaml: repoYAML().replacingOccurrences(of: "staging:", with: "qa:"))
        let errors = repo.check(against: agent)
        #expect(errors.count == 1)
        #expect(errors.first?.keyPath == "projects.app.environments.qa")
        #expect(errors.first?.code == .unknownReference)
        let fine = try RepoConfig.parse(yaml: repoYAML())
        #expect(fine.check(against: agent).isEmpty)
    }

    @Test("cross-check: several projects need `{project}` in an explicit tag pattern")
    func severalProjectsNeedProjectInPattern() throws {
        let agent = try AgentConfig.parse(yaml: agentYAML(extra: "tag_pattern: \"{env}/{version}\"\n"), file: "agent.yaml", baseDirectory: "/etc")
        let repo = try RepoConfig.parse(yaml: "projects:\n  a: {dir: a, environments: {prod: }}\n  b: {dir: b, environments: {prod: }}\n")
        let errors = repo.check(against: agent)
        #expect(errors.contains { $0.file == "agent.yaml" && $0.keyPath == "tag_pattern" && $0.code == .conflict })
        let defaulted = try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc")
        #expect(repo.check(against: defaulted).isEmpty)
        #expect(defaulted.tagPattern(projectCount: repo.projects.count) == "{project}/{env}/{version}")
    }

    @Test("lexical check: accepted and refused paths", arguments: [
        ("app/prod.tfvars", true), ("a", true), ("a.b/c-d_e", true), ("..", false), ("a/..", false), ("", false),
        ("/a", false), ("a//b", false), ("./a", false), (".git", false), ("x/.Git/y", false), (".github/ok", true), ("a\u{0}b", false),
    ] as [(String, Bool)])
    func lexical(path: String, accepted: Bool) {
        #expect((RelativePath(path) != nil) == accepted)
    }
}
