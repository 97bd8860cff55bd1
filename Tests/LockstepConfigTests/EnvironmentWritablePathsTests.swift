import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// Writable folders belong to one environment: the global `terraform.writable_paths` is refused,
/// and no two environments may write the same folder or one inside the other's.
@Suite("Agent config: writable paths per environment")
struct EnvironmentWritablePathsTests {
    /// The fixture with `staging` and `prod` given these extra lines.
    func yaml(staging: String, prod: String, terraform: String? = nil) -> String {
        agentYAML(replacing: [
            "environments": """
                environments:
                  staging:
                    serves: true
                    approvers: [alice]
                    \(staging)
                  prod:
                    serves: true
                    approvers: [alice, bob]
                    \(prod)
                """,
        ].merging(terraform.map { ["terraform": $0] } ?? [:]) { a, _ in a })
    }

    @Test("each environment keeps its own writable folders, resolved against the config folder")
    func perEnvironment() throws {
        let config = try AgentConfig.parse(yaml: yaml(staging: "writable_paths: [state/staging]", prod: "writable_paths: [/srv/prod-state, state/prod]"),
                                           file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(config.environments["staging"]?.writablePaths == ["/etc/lockstep/state/staging"])
        #expect(config.environments["prod"]?.writablePaths == ["/srv/prod-state", "/etc/lockstep/state/prod"])
    }

    @Test("the global terraform.writable_paths is refused, saying where each folder goes and why; nothing is moved silently")
    func globalRefused() {
        let errors = agentErrors(yaml(staging: "", prod: "", terraform: "terraform: {binary: /usr/bin/terraform, writable_paths: [/srv/tfstate]}"))
        #expect(errors.map(\.keyPath) == ["terraform.writable_paths"], "\(ConfigErrors(errors))")
        let message = errors.first?.description ?? ""
        #expect(errors.first?.code == .invalidValue)
        #expect(message.contains("environments.NAME.writable_paths"))
        #expect(message.contains("read and write another's state"))
        #expect(!message.contains("/srv/tfstate"), "the configured value is not echoed")
    }

    @Test("two environments writing one folder, or one inside the other's, are refused naming both keys",
          arguments: [
            ("writable_paths: [/srv/state]", "writable_paths: [/srv/state]"),
            ("writable_paths: [/srv/state/staging]", "writable_paths: [/srv/state]"),
            ("writable_paths: [/srv/state]", "writable_paths: [/srv/other, /srv/state/prod]"),
            ("writable_paths: [/]", "writable_paths: [/srv/prod]"),
          ])
    func overlapRefused(staging: String, prod: String) {
        let errors = agentErrors(yaml(staging: staging, prod: prod))
        #expect(errors.count == 1, "\(ConfigErrors(errors))")
        let error = errors.first
        #expect(error?.code == .conflict)
        #expect(error?.keyPath.hasPrefix("environments.staging.writable_paths[") == true, "\(ConfigErrors(errors))")
        #expect(error?.description.contains("environments.prod.writable_paths[") == true, "the other key is named")
        #expect(error?.description.contains("/srv") == false, "no configured value is echoed")
    }

    @Test("neighbouring folders with a common name prefix do not overlap")
    func prefixIsNotInside() throws {
        _ = try AgentConfig.parse(yaml: yaml(staging: "writable_paths: [/srv/state-staging]", prod: "writable_paths: [/srv/state]"),
                                  file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(pathsOverlap("/srv/state", "/srv/state/x"))
        #expect(!pathsOverlap("/srv/state", "/srv/state-staging"))
        #expect(pathsOverlap("/", "/srv"))
    }
}
