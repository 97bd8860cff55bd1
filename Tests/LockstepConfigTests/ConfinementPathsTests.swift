import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

/// What the daemon hides from terraform, and the grants `config check` and the daemon refuse.
@Suite("Agent config: confinement paths")
struct ConfinementPathsTests {
    /// An agent folder on disk: the store in `var/`, a state folder next to it, credentials in `secrets/`.
    func agent(terraform: String, prod: String = "") throws -> (AgentConfig, String) {
        let base = NSTemporaryDirectory() + "lockstep-confine-config-\(UUID().uuidString.prefix(8))"
        for folder in ["var", "tfstate", "secrets", "cache", "mirror"] {
            try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true)
        }
        let yaml = agentYAML(replacing: [
            "terraform": terraform,
            "store": "store: {sqlite: var/lockstep.sqlite}",
            "mirror_dir": "mirror_dir: var/mirror",
        ], prod: "apply_credentials_file: secrets/prod-apply.env\n" + prod)
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
              provider_mirror: secrets
            """, prod: "writable_paths: [tfstate, ., missing]")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let problems = config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: true)
        // `.` holds the store's folder and also the provider mirror: two problems with one key.
        #expect(problems.map(\.keyPath) == ["environments.prod.writable_paths[1]", "environments.prod.writable_paths[1]",
                                            "environments.prod.writable_paths[2]", "terraform.provider_mirror"],
                "\(problems)")
        #expect(problems.first?.code == .conflict)
        #expect(problems.allSatisfy { !$0.description.contains(base + "/secrets") && !$0.description.contains(base + "/missing") },
                "no configured value is echoed")
        // `lockstep config check` reports the conflicts; whether a folder exists is the
        // daemon's check on its own machine.
        #expect(checkConfiguration(agentPath: base + "/agent.yaml", repoRoot: nil).map(\.keyPath)
                == ["environments.prod.writable_paths[1]", "environments.prod.writable_paths[1]", "terraform.provider_mirror"])
    }

    @Test("a writable folder around or inside the provider caches or the provider mirror is refused: the grant would override their hiding or read-only-ness",
          arguments: [
            ("plugin_cache_dir: cache", "writable_paths: [cache/prod]", "environments.prod.writable_paths[0]"),
            ("plugin_cache_dir: cache/all", "writable_paths: [cache]", "environments.prod.writable_paths[0]"),
            ("provider_mirror: mirror", "writable_paths: [mirror/x]", "environments.prod.writable_paths[0]"),
            ("provider_mirror: tfstate", "writable_paths: [tfstate/prod]", "environments.prod.writable_paths[0]"),
            ("{plugin_cache_dir: cache, provider_mirror: cache/mirror}", "", "terraform.provider_mirror"),
          ])
    func cacheAndMirrorOverlap(terraformLine: String, prodLine: String, keyPath: String) throws {
        let terraform = terraformLine.hasPrefix("{")
            ? "terraform: {binary: /usr/bin/terraform, " + terraformLine.dropFirst()
            : "terraform:\n  binary: /usr/bin/terraform\n  " + terraformLine
        let (config, base) = try agent(terraform: terraform, prod: prodLine)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let problems = config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: false)
        #expect(problems.map(\.keyPath) == [keyPath], "\(problems)")
        #expect(problems.allSatisfy { $0.code == .conflict && !$0.expected.contains(base) }, "no configured value is echoed")
    }

    @Test("each environment has its own provider cache folder inside plugin_cache_dir, none without it")
    func pluginCachePerEnvironment() throws {
        let (config, base) = try agent(terraform: "terraform: {binary: /usr/bin/terraform, plugin_cache_dir: cache}")
        defer { try? FileManager.default.removeItem(atPath: base) }
        #expect(config.pluginCacheDirectory(environment: "prod") == base + "/cache/prod")
        #expect(config.pluginCacheDirectory(environment: "staging") == base + "/cache/staging")
        let (bare, other) = try agent(terraform: "terraform: {binary: /usr/bin/terraform}")
        defer { try? FileManager.default.removeItem(atPath: other) }
        #expect(bare.pluginCacheDirectory(environment: "prod") == nil)
    }

    @Test("confine: false grants nothing, so nothing is reported")
    func unconfined() throws {
        let (config, base) = try agent(terraform: "terraform: {binary: /usr/bin/terraform, confine: false}", prod: "writable_paths: [.]")
        defer { try? FileManager.default.removeItem(atPath: base) }
        #expect(config.confinementProblems(configPath: base + "/agent.yaml", onThisMachine: true).isEmpty)
    }
}
