import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// `parity.ignore` in lockstep.yaml: the differences between environments a repository
/// declares intended. Untrusted layout like the rest of the file, so every entry is checked
/// against the projects it names and every error names its key path.
@Suite("Repo config: parity declarations")
struct ParityPolicyTests {
    /// The base fixture (project `app` with `staging` and `prod`) plus a `parity:` section.
    private func yaml(_ parity: String) -> String { repoYAML(top: "parity:\n" + parity) }

    @Test("a declaration parses into rules; without the key there are none")
    func parses() throws {
        #expect(try RepoConfig.parse(yaml: repoYAML()).parity == ParityPolicy())
        let config = try RepoConfig.parse(yaml: yaml("""
          ignore:
            - project: app
              environments: [prod]
              resources: [null_resource.waf, "module.cdn[\\"eu\\"]", data.null_data_source.x]
              variables: [enable_waf]
              reason: the WAF is paid for in prod only
            - project: app
              variables: [debug_level]

        """))
        #expect(config.parity.ignore == [
            ParityIgnore(project: "app", environments: ["prod"], resources: ["null_resource.waf", "module.cdn[\"eu\"]", "data.null_data_source.x"],
                         variables: ["enable_waf"], reason: "the WAF is paid for in prod only"),
            ParityIgnore(project: "app", variables: ["debug_level"]),
        ])
    }

    @Test("a rule covers a difference when all environments that have it, or all that lack it, are listed")
    func coverage() {
        let policy = ParityPolicy(ignore: [ParityIgnore(project: "app", environments: ["prod"], resources: ["null_resource.waf"])])
        let waf = ParityItem.address("null_resource.waf[0]")
        #expect(policy.rule(project: "app", item: waf, present: ["prod"], missing: ["dev", "staging"]) != nil)
        #expect(policy.rule(project: "app", item: waf, present: ["dev", "staging"], missing: ["prod"]) != nil)
        // Staging grew a WAF too: no longer the declared difference.
        #expect(policy.rule(project: "app", item: waf, present: ["staging", "prod"], missing: ["dev"]) == nil)
        #expect(policy.rule(project: "other", item: waf, present: ["prod"], missing: ["dev"]) == nil)
        #expect(policy.rule(project: "app", item: .address("null_resource.wafer"), present: ["prod"], missing: ["dev"]) == nil)
        #expect(policy.rule(project: "app", item: .variable("null_resource.waf"), present: ["prod"], missing: ["dev"]) == nil)
        let instance = ParityPolicy(ignore: [ParityIgnore(project: "app", resources: ["null_resource.x[\"a\"]"])])
        #expect(instance.rule(project: "app", item: .address("null_resource.x[\"a\"]"), present: ["prod"], missing: ["dev"]) != nil)
        #expect(instance.rule(project: "app", item: .address("null_resource.x[\"b\"]"), present: ["prod"], missing: ["dev"]) == nil)
    }

    static let badRows: [BadRow] = [
        BadRow(name: "parity is a list", yaml: repoYAML(top: "parity: [app]\n"), keyPath: "parity", code: .wrongType),
        BadRow(name: "unknown key under parity", yaml: repoYAML(top: "parity:\n  ignored: []\n"), keyPath: "parity.ignored", code: .unknownKey),
        BadRow(name: "ignore is a mapping", yaml: repoYAML(top: "parity:\n  ignore: {project: app}\n"), keyPath: "parity.ignore", code: .wrongType),
        BadRow(name: "no project", yaml: repoYAML(top: "parity:\n  ignore:\n    - variables: [x]\n"), keyPath: "parity.ignore[0].project", code: .missingKey),
        BadRow(name: "unknown project", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: web, variables: [x]}\n"), keyPath: "parity.ignore[0].project", code: .unknownReference),
        BadRow(name: "environment the project lacks", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, environments: [prod, dev], variables: [x]}\n"), keyPath: "parity.ignore[0].environments[1]", code: .unknownReference),
        BadRow(name: "empty environments", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, environments: [], variables: [x]}\n"), keyPath: "parity.ignore[0].environments", code: .invalidValue),
        BadRow(name: "names nothing", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, environments: [prod]}\n"), keyPath: "parity.ignore[0]", code: .missingKey),
        BadRow(name: "resource that is not an address", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, resources: [\"null_resource\"]}\n"), keyPath: "parity.ignore[0].resources[0]", code: .invalidValue),
        BadRow(name: "child module resource", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, resources: [module.a.null_resource.b]}\n"), keyPath: "parity.ignore[0].resources[0]", code: .invalidValue),
        BadRow(name: "variable with a dot", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, variables: [var.x]}\n"), keyPath: "parity.ignore[0].variables[0]", code: .invalidValue),
        BadRow(name: "variables as a string", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, variables: x}\n"), keyPath: "parity.ignore[0].variables", code: .wrongType),
        BadRow(name: "unknown key in an entry", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, variables: [x], resource: [a.b]}\n"), keyPath: "parity.ignore[0].resource", code: .unknownKey),
        BadRow(name: "multi-line reason", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, variables: [x], reason: \"a\\nb\"}\n"), keyPath: "parity.ignore[0].reason", code: .invalidValue),
        BadRow(name: "a trust key inside parity is refused as one", yaml: repoYAML(top: "parity:\n  ignore:\n    - {project: app, variables: [x], approvals: 0}\n"), keyPath: "parity.ignore[0].approvals", code: .trustInRepoConfig),
    ]

    @Test("every malformed declaration is refused with its key path and what was expected", arguments: badRows)
    func refused(row: BadRow) {
        let errors = repoErrors(row.yaml)
        #expect(errors.contains { $0.keyPath == row.keyPath && $0.code == row.code },
                "got \(errors.map { "\($0.keyPath) \($0.code): \($0.expected)" })")
        #expect(errors.allSatisfy { !$0.expected.isEmpty })
    }

    @Test("an unknown project is named together with the projects there are")
    func unknownProjectMessage() throws {
        let error = try #require(repoErrors(yaml("  ignore:\n    - {project: web, variables: [x]}\n")).first)
        #expect(error.description == "lockstep.yaml: parity.ignore[0].project: expected the name of a project under `projects` (app)")
    }
}
