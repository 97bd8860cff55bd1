import Foundation
import Testing

/// `lockstep validate` as CI runs it: the built binary, its exit status and what it prints.
@Suite("lockstep validate, the command")
struct ValidateCommandTests {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// A delivery checkout whose prod turns a WAF on, and a CLI config naming the pinned mirror.
    private func checkout(_ home: Scratch, parity: String = "") throws -> (dir: String, cliConfig: String, terraform: String) {
        let terraform = Self.root.appendingPathComponent(".tools/terraform/bin/terraform").path
        try #require(FileManager.default.isExecutableFile(atPath: terraform), "run scripts/install-terraform.sh")
        var yaml = "projects:\n  app:\n    dir: app\n    environments:\n"
        for env in ["dev", "prod"] {
            yaml += "      \(env):\n        var_files: [app/\(env).tfvars]\n"
            try home.write("repo/app/\(env).tfvars", "enable_waf = \(env == "prod")\n")
        }
        try home.write("repo/lockstep.yaml", yaml + parity)
        try home.write("repo/app/main.tf", "variable \"enable_waf\" {\n  type = bool\n}\n\nresource \"null_resource\" \"waf\" {\n  count = var.enable_waf ? 1 : 0\n}\n")
        let mirror = Self.root.appendingPathComponent(".tools/terraform/mirror").path
        let cli = try home.write("cli.tfrc", "provider_installation {\n  filesystem_mirror {\n    path = \"\(mirror)\"\n  }\n}\n")
        return (home.url.appendingPathComponent("repo").path, cli, terraform)
    }

    @Test("an undeclared difference exits 1 and is annotated on its line for GitHub")
    func githubFailure() async throws {
        let home = try Scratch()
        let repo = try checkout(home)
        let result = try await CLI.run(["validate", repo.dir, "--terraform", repo.terraform, "--cli-config", repo.cliConfig, "--format", "github"], home: home)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stdout == """
        ::error file=app/main.tf,line=5,title=lockstep validate%3A parity_resource::app: resource null_resource.waf[0] exists in prod but not in dev
        lockstep validate: failed

        """)
    }

    @Test("the same difference declared intended exits 0; --json carries the exit status")
    func declaredPasses() async throws {
        let home = try Scratch()
        let repo = try checkout(home, parity: "parity:\n  ignore:\n    - {project: app, environments: [prod], resources: [null_resource.waf]}\n")
        let result = try await CLI.run(["validate", repo.dir, "--terraform", repo.terraform, "--cli-config", repo.cliConfig, "--json"], home: home)
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["exit_status"] as? Int == 0)
    }

    @Test("bad input exits 2 and names the problem", arguments: [
        (["validate", "missing-folder"], "missing-folder: no such directory"),
        (["validate", ".", "--format", "sarif"], "--format sarif: expected human, json, github or gitlab"),
        (["validate", ".", "--project", "Not A Name"], "--project Not A Name: not a project name"),
        (["validate", "."], "--terraform terraform: no executable terraform or tofu binary on PATH"),
    ])
    func badInput(arguments: [String], message: String) async throws {
        let home = try Scratch()
        // PATH without terraform: the default `--terraform terraform` is not found.
        let result = try await CLI.run(arguments, home: home, environment: ["PATH": home.url.path])
        #expect(result.status == 2)
        #expect((result.stdout + result.stderr).contains(message), "\(result.stdout)\(result.stderr)")
    }
}
