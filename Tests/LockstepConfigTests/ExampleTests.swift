import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

@Suite("Shipped examples stay valid")
struct ExampleTests {
    @Test("examples/agent.yaml loads, with paths resolved against examples/")
    func exampleAgent() throws {
        let config = try AgentConfig.load(path: packageRoot + "/examples/agent.yaml")
        let examples = normaliseAbsolute(packageRoot + "/examples")
        #expect(config.mirrorDir == examples + "/state/mirror")
        #expect(config.repository.transport == .local)
        #expect(config.environments["prod"]?.approvals == 2)
        #expect(config.environments["prod"]?.promoteFrom == "staging")
    }

    @Test("examples/delivery/lockstep.yaml loads and agrees with the example agent config")
    func exampleRepo() throws {
        let agent = try AgentConfig.load(path: packageRoot + "/examples/agent.yaml")
        let repo = try RepoConfig.load(root: packageRoot + "/examples/delivery")
        #expect(repo.check(against: agent).isEmpty)
        #expect(repo.environmentNames == ["dev", "staging", "prod"])
    }

    @Test("deploy/agent.example.yaml is valid and mentions every agent key")
    func deployExample() throws {
        let path = packageRoot + "/deploy/agent.example.yaml"
        let config = try AgentConfig.load(path: path)
        #expect(config.repository.transport == .ssh)
        #expect(config.forge?.kind == .github && config.environments["dev"]?.notifications.count == 2)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let keys = [
            "repository:", "url:", "branch:", "credentials:", "token_file:", "username:", "ssh_key_file:", "known_hosts_file:",
            "mirror_dir:", "poll_interval:", "require_merge_commit:", "tag_pattern:", "export_limits:", "max_bytes:", "max_files:",
            "max_depth:", "terraform:", "binary:", "plugin_cache_dir:", "store:", "sqlite:", "listen:", "webhooks:", "secret_files:", "max_body_bytes:",
            "environments:", "serves:", "promote_from:", "approvals:", "approvers:", "tagger_may_approve:", "approval_ttl:",
            "require_signed_tags:", "allowed_signers_file:", "revoked_signers_file:", "openpgp_keyring_file:",
            "signer_may_approve:", "backend:", "settings:", "workspace:", "unpinned:", "apply_windows:", "days:", "from:", "to:", "timezone:",
            "plan_credentials_file:", "apply_credentials_file:", "protected_resource_types:", "allowed_resource_types:",
            "identities:", "token_sha256:", "emails:", "public_url:", "forge:", "kind:", "api_url:", "repository:",
            "status_context:", "notifications:", "url_file:", "format:", "secret_file:", "events:", "metrics_listen:", "log_format:",
        ]
        for key in keys { #expect(text.contains(key), "deploy/agent.example.yaml does not document \(key)") }
    }
}
