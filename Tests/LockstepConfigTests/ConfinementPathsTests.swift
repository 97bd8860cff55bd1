import Foundation
import Testing
@testable import LockstepConfig

/// What the daemon hides from terraform, and the grants `config check` and the daemon refuse.
@Suite("Agent config: confinement paths")
struct ConfinementPathsTests {
    /// An agent folder on disk: the store in `var/`, a state folder next to it, credentials in `secrets/`.
    func agent(terraform: String) throws -> (AgentConfig, String) {
        let base = NSTemporaryDirectory() + "lockstep-confine-config-\(UUID().uuidString.prefix(8))"
        for folder in ["var", "tfstate", "secrets"] {
            try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true)
        }
        let yaml = agentYAML(replacing: [
            "terraform": terraform,
            "store": "store: {sqlite: var/lockstep.sqlite}",
            "mirror_dir": "mirror_dir: var/mirror",
        ], prod: "apply_credentials_file: secrets/prod-apply.env")
        try yaml.write(toFile: base + "/agent.yaml", atomically: true, encoding: .utf8)
        return (try AgentConfig.load(path: base + "/agent.yaml"), base)
    }

    @Test("hidden: the store's folder, the mirror, the config itself and every credentials file")
    func hidden() throws {
        let (config, base) = try agent(terraform: "terraform: {binary: /usr/bin/terraform}")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let hidden = config.confinementHiddenPaths(configPath: base + "/agent.yaml")
        #expect(hidden.contains(base + "/var"))
        #expect(hidden.contains(base + "/var/mirror"))
        #expect(hidden.contains(base + "/agent.yaml"))
        #expect(hidden.contains(base + "/secrets/prod-apply.env"))
        #expect(config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: true).isEmpty)
    }

    @Test("a grant that contains a hidden path, and (on the daemon's machine) a writable path that is not a folder, are reported with their keys")
    func unsafeGrants() throws {
        let (config, base) = try agent(terraform: """
            terraform:
              binary: /usr/bin/terraform
              writable_paths: [tfstate, ., missing]
              provider_mirror: secrets
            """)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let problems = config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: true)
        #expect(problems.map(\.keyPath) == ["terraform.writable_paths[1]", "terraform.writable_paths[2]", "terraform.provider_mirror"],
                "\(problems)")
        #expect(problems.first?.code == .conflict)
        #expect(problems.allSatisfy { !$0.description.contains(base + "/secrets") && !$0.description.contains(base + "/missing") },
                "no configured value is echoed")
        // `lockstep config check` reports the conflicts; whether a folder exists is the
        // daemon's check on its own machine.
        #expect(checkConfiguration(agentPath: base + "/agent.yaml", repoRoot: nil).map(\.keyPath)
                == ["terraform.writable_paths[1]", "terraform.provider_mirror"])
    }

    @Test("confine: false grants nothing, so nothing is reported")
    func unconfined() throws {
        let (config, base) = try agent(terraform: "terraform: {binary: /usr/bin/terraform, confine: false, writable_paths: [.]}")
        defer { try? FileManager.default.removeItem(atPath: base) }
        #expect(config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: true).isEmpty)
    }
}
