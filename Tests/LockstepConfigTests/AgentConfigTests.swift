import NameLiterals
import LockstepCore
import Foundation
import Testing
@testable import LockstepConfig

@Suite("Agent config: every trust decision, validated")
struct AgentConfigTests {
    @Test("the base fixture is valid, so each bad row below fails only for its own change")
    func baseIsValid() {
        #expect(agentErrors(agentYAML()).isEmpty, "\(ConfigErrors(agentErrors(agentYAML())))")
    }

    @Test("omitted keys get the documented safe defaults")
    func defaults() throws {
        let c = try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(c.pollInterval == .seconds(60))
        #expect(c.maxConcurrentPlans == 2)
        #expect(c.requireMergeCommit)
        #expect(c.listen == ListenAddress(host: "127.0.0.1", port: 8420))
        #expect(c.exportLimits == ExportLimits.defaults)
        #expect(c.repository.branch == "main")
        #expect(c.repository.transport == .https)
        #expect(c.repository.credentials == nil)
        #expect(c.tagPattern(projectCount: 1) == "{env}/{version}")
        #expect(c.tagPattern(projectCount: 3) == "{project}/{env}/{version}")
        let prod = try #require(c.environments["prod"])
        #expect(prod.approvals == 1)
        #expect(!prod.taggerMayApprove, "four eyes by default")
        #expect(prod.approvalTTL == .seconds(86_400))
        #expect(!prod.requireSignedTags)
        #expect(prod.applyWindows.isEmpty && prod.applyWindowOpen(at: Date()))
        #expect(prod.allowedResourceTypes == nil)
        #expect(c.store == .sqlite(path: "/var/lib/lockstep/db.sqlite"))
    }

    @Test("webhooks: each forge's secret files (relative to the config), a longer default poll, and every secret file hidden from terraform")
    func webhooks() throws {
        let yaml = agentYAML(extra: "webhooks:\n  github: {secret_files: [hooks/github-old, hooks/github-new]}\n  generic: {secret_files: [/run/credentials/generic]}\n")
        let c = try AgentConfig.parse(yaml: yaml, file: "agent.yaml", baseDirectory: "/etc/lockstep")
        let hooks = try #require(c.webhooks)
        #expect(hooks.secretFiles == [.github: ["/etc/lockstep/hooks/github-old", "/etc/lockstep/hooks/github-new"],
                                      .generic: ["/run/credentials/generic"]])
        #expect(hooks.maxBodyBytes == 1 << 20)
        #expect(c.pollInterval == .seconds(300), "the poll is the safety net once webhooks wake the daemon")
        let hidden = c.confinementHiddenPaths(configPath: "/etc/lockstep/agent.yaml")
        #expect(hooks.allSecretFiles.allSatisfy(hidden.contains))
        let explicit = try AgentConfig.parse(yaml: yaml + "poll_interval: 30s\n", file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(explicit.pollInterval == .seconds(30))
        #expect(try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc/lockstep").webhooks == nil)
    }

    @Test("forge and notifications: default API URLs, files relative to the config, every secret file hidden from terraform")
    func forgeAndNotifications() throws {
        let yaml = agentYAML(prod: """
            notifications:
              - {url_file: secrets/slack-url, format: slack, events: [awaiting_approval, failed]}
              - {url: "https://ops.example.com/lockstep?team=infra", format: json, secret_file: secrets/ops-key}
            """, extra: "public_url: https://lockstep.example.com/\nforge: {kind: gitlab, repository: infra/platform/delivery, token_file: secrets/gitlab-token}\n")
        let c = try AgentConfig.parse(yaml: yaml, file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(c.forge == ForgeSettings(kind: .gitlab, apiURL: "https://gitlab.com/api/v4", repository: "infra/platform/delivery",
                                         tokenFile: "/etc/lockstep/secrets/gitlab-token", statusContext: "lockstep"))
        #expect(c.publicURL == "https://lockstep.example.com", "the final slash is dropped so links join cleanly")
        let notifications = try #require(c.environments["prod"]?.notifications)
        #expect(notifications.count == 2)
        #expect(notifications[0] == NotificationSettings(destination: .urlFile("/etc/lockstep/secrets/slack-url"), format: .slack,
                                                         secretFile: nil, events: [.awaitingApproval, .failed]))
        #expect(notifications[1].destination == .url("https://ops.example.com/lockstep?team=infra"))
        #expect(notifications[1].events == Set(NotificationEvent.allCases), "every event when none is named")
        #expect(c.environments["staging"]?.notifications == [])
        let hidden = c.confinementHiddenPaths(configPath: "/etc/lockstep/agent.yaml")
        for file in ["gitlab-token", "slack-url", "ops-key"] {
            #expect(hidden.contains("/etc/lockstep/secrets/\(file)"), "\(file) is hidden from terraform")
        }
        let github = try AgentConfig.parse(yaml: agentYAML(extra: "forge: {kind: github, repository: acme/delivery, token_file: /t}\n"),
                                           file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(github.forge?.apiURL == "https://api.github.com")
    }

    /// Good values: each row changes the fixture and checks the parsed value.
    struct GoodRow: Sendable, CustomTestStringConvertible {
        var name: String
        var yaml: String
        var check: @Sendable (AgentConfig) -> Bool
        var testDescription: String { name }
    }

    static let goodRows: [GoodRow] = [
        GoodRow(name: "metrics on their own address, JSON logs", yaml: agentYAML(extra: "metrics_listen: 0.0.0.0:9420\nlog_format: json\n")) {
            $0.metricsListen == ListenAddress(host: "0.0.0.0", port: 9420) && $0.logFormat == .json
        },
        GoodRow(name: "metrics beside the API and logfmt logs by default", yaml: agentYAML()) { $0.metricsListen == nil && $0.logFormat == .logfmt },
        GoodRow(name: "poll_interval 1h30m", yaml: agentYAML(extra: "poll_interval: 1h30m\n")) { $0.pollInterval == .seconds(5_400) },
        GoodRow(name: "max_concurrent_plans 1", yaml: agentYAML(extra: "max_concurrent_plans: 1\n")) { $0.maxConcurrentPlans == 1 },
        GoodRow(name: "max_concurrent_plans 64", yaml: agentYAML(extra: "max_concurrent_plans: 64\n")) { $0.maxConcurrentPlans == 64 },
        GoodRow(name: "poll_interval 30s", yaml: agentYAML(extra: "poll_interval: 30s\n")) { $0.pollInterval == .seconds(30) },
        GoodRow(name: "listen on IPv6", yaml: agentYAML(extra: "listen: \"[::1]:9000\"\n")) { $0.listen == ListenAddress(host: "::1", port: 9000) },
        GoodRow(name: "listen on a host name", yaml: agentYAML(extra: "listen: lockstep.internal:443\n")) { $0.listen.port == 443 },
        GoodRow(name: "require_merge_commit false", yaml: agentYAML(extra: "require_merge_commit: false\n")) { !$0.requireMergeCommit },
        GoodRow(name: "tag pattern with project", yaml: agentYAML(extra: "tag_pattern: \"releases/{project}/{env}/{version}\"\n")) {
            $0.tagPattern(projectCount: 1) == "releases/{project}/{env}/{version}"
        },
        GoodRow(name: "export limits", yaml: agentYAML(extra: "export_limits: {max_bytes: 1024, max_files: 10, max_depth: 4}\n")) {
            $0.exportLimits == ExportLimits(maxBytes: 1_024, maxFiles: 10, maxDepth: 4)
        },
        GoodRow(name: "relative paths resolve against the config folder", yaml: agentYAML(replacing: ["mirror_dir": "mirror_dir: state/mirror", "store": "store: {sqlite: ../db/x.sqlite}"])) {
            $0.mirrorDir == "/etc/lockstep/state/mirror" && $0.store == .sqlite(path: "/etc/db/x.sqlite")
        },
        GoodRow(name: "plugin cache dir", yaml: agentYAML(replacing: ["terraform": "terraform: {binary: bin/tf, plugin_cache_dir: /var/cache/tf}"])) {
            $0.terraform == TerraformSettings(binary: "/etc/lockstep/bin/tf", pluginCacheDir: "/var/cache/tf")
        },
        GoodRow(name: "terraform confined by default, no environment writes a folder", yaml: agentYAML()) {
            $0.terraform.confine && $0.environments.values.allSatisfy(\.writablePaths.isEmpty)
        },
        GoodRow(name: "plan and apply timeouts default to 1h and 4h", yaml: agentYAML()) {
            $0.terraform.planTimeout == .seconds(3_600) && $0.terraform.applyTimeout == .seconds(14_400)
        },
        GoodRow(name: "plan_timeout 30m, apply_timeout 2d",
                yaml: agentYAML(replacing: ["terraform": "terraform: {binary: /usr/bin/tf, plan_timeout: 30m, apply_timeout: 2d}"])) {
            $0.terraform.planTimeout == .seconds(1_800) && $0.terraform.applyTimeout == .seconds(172_800)
        },
        GoodRow(name: "confine false and an environment's writable paths resolved against the config folder",
                yaml: agentYAML(replacing: ["terraform": "terraform: {binary: /usr/bin/tf, confine: false}"], prod: "writable_paths: [state, /srv/tf]")) {
            !$0.terraform.confine && $0.environments["prod"]?.writablePaths == ["/etc/lockstep/state", "/srv/tf"]
                && $0.environments["staging"]?.writablePaths == []
        },
        GoodRow(name: "ssh URL with key and known_hosts", yaml: agentYAML(replacing: ["repository": """
            repository:
              url: git@git.example.com:infra/delivery.git
              branch: release/main
              credentials: {ssh_key_file: key, known_hosts_file: /etc/ssh/known}
            """])) {
            $0.repository.transport == .ssh && $0.repository.branch == "release/main"
                && $0.repository.credentials == .ssh(keyFile: "/etc/lockstep/key", knownHostsFile: "/etc/ssh/known")
        },
        GoodRow(name: "https URL with token file", yaml: agentYAML(replacing: ["repository": """
            repository:
              url: https://git.example.com/x.git
              credentials: {token_file: token, username: bot}
            """])) {
            $0.repository.credentials == .https(username: "bot", tokenFile: "/etc/lockstep/token")
        },
        GoodRow(name: "local relative repository", yaml: agentYAML(replacing: ["repository": "repository: {url: ./delivery.git}"])) {
            $0.repository.transport == .local && $0.repository.url == "/etc/lockstep/delivery.git"
        },
        GoodRow(name: "file:// repository", yaml: agentYAML(replacing: ["repository": "repository: {url: \"file:///srv/git/d.git\"}"])) {
            $0.repository.transport == .local && $0.repository.url == "/srv/git/d.git"
        },
        GoodRow(name: "backend pinned", yaml: agentYAML(prod: """
            backend:
              type: s3
              settings: {bucket: acme-prod-state, key: "{project}/prod.tfstate", region: eu-west-1, encrypt: "true"}
              workspace: blue
              unpinned: [skip_metadata_api_check]
            """)) { c in
            guard let pin = c.environments["prod"]?.backendPin else { return false }
            return pin.type == "s3" && pin.settings(for: "app") == ["bucket": "acme-prod-state", "key": "app/prod.tfstate",
                                                                     "region": "eu-west-1", "encrypt": "true"]
                && pin.workspace == "blue" && pin.unpinned == ["skip_metadata_api_check"] && c.environments["staging"]?.backendPin == nil
        },
        GoodRow(name: "OpenPGP signers, signer may approve", yaml: agentYAML(prod: """
            require_signed_tags: true
            openpgp_keyring_file: release-keys.asc
            signer_may_approve: true
            """)) { c in
            guard let p = c.environments["prod"] else { return false }
            return p.requireSignedTags && p.openPGPKeyringFile == "/etc/lockstep/release-keys.asc" && p.allowedSignersFile == nil
                && p.signerMayApprove && c.environments["staging"]?.signerMayApprove == false
        },
        GoodRow(name: "prod policy with every key", yaml: agentYAML(prod: """
            promote_from: staging
            approvals: 2
            tagger_may_approve: true
            approval_ttl: 2h
            require_signed_tags: true
            allowed_signers_file: signers
            revoked_signers_file: revoked
            openpgp_keyring_file: keys.asc
            signer_may_approve: false
            apply_windows: [{days: [mon-wed, fri], from: "09:00", to: "17:00", timezone: Europe/Paris}]
            plan_credentials_file: plan.env
            apply_credentials_file: apply.env
            protected_resource_types: [aws_db_instance]
            allowed_resource_types: [aws_db_instance, null_resource]
            """)) { c in
            guard let p = c.environments["prod"] else { return false }
            return p.promoteFrom == "staging" && p.approvals == 2 && p.taggerMayApprove && p.approvalTTL == .seconds(7_200)
                && p.requireSignedTags && p.allowedSignersFile == "/etc/lockstep/signers"
                && p.revokedSignersFile == "/etc/lockstep/revoked" && p.openPGPKeyringFile == "/etc/lockstep/keys.asc" && !p.signerMayApprove
                && p.applyWindows.first?.days.map(\.description).sorted() == ["fri", "mon", "tue", "wed"]
                && p.applyWindows.first?.timeZone == "Europe/Paris"
                && p.planCredentialsFile == "/etc/lockstep/plan.env" && p.applyCredentialsFile == "/etc/lockstep/apply.env"
                && p.protectedResourceTypes == ["aws_db_instance"] && p.allowedResourceTypes == ["aws_db_instance", "null_resource"]
        },
    ]

    @Test("good values parse into the expected domain values", arguments: goodRows)
    func goodValues(row: GoodRow) throws {
        let c = try AgentConfig.parse(yaml: row.yaml, file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(row.check(c))
    }

    static let badRows: [BadRow] = [
        // top level
        BadRow(name: "unknown top-level key (typo)", yaml: agentYAML(extra: "pol_interval: 5m\n"), keyPath: "pol_interval", code: .unknownKey),
        BadRow(name: "apply_timeout above 7d",
               yaml: agentYAML(replacing: ["terraform": "terraform: {binary: /usr/bin/tf, apply_timeout: 8d}"]),
               keyPath: "terraform.apply_timeout", code: .invalidValue),
        BadRow(name: "plan_timeout that is not a duration",
               yaml: agentYAML(replacing: ["terraform": "terraform: {binary: /usr/bin/tf, plan_timeout: soon}"]),
               keyPath: "terraform.plan_timeout", code: .invalidValue),
        BadRow(name: "confine is only true or false (a trust switch)",
               yaml: agentYAML(replacing: ["terraform": "terraform: {binary: /usr/bin/tf, confine: \"no\"}"]),
               keyPath: "terraform.confine", code: .wrongType),
        BadRow(name: "an environment's writable_paths with a `~` path",
               yaml: agentYAML(prod: "writable_paths: [~/state]"),
               keyPath: "environments.prod.writable_paths[0]", code: .invalidValue),
        BadRow(name: "missing mirror_dir", yaml: agentYAML(removing: ["mirror_dir"]), keyPath: "mirror_dir", code: .missingKey),
        BadRow(name: "missing repository", yaml: agentYAML(removing: ["repository"]), keyPath: "repository", code: .missingKey),
        BadRow(name: "missing environments", yaml: agentYAML(removing: ["environments"]), keyPath: "environments", code: .missingKey),
        BadRow(name: "empty environments", yaml: agentYAML(replacing: ["environments": "environments: {}"]), keyPath: "environments", code: .invalidValue),
        BadRow(name: "poll_interval without unit", yaml: agentYAML(extra: "poll_interval: 30\n"), keyPath: "poll_interval", code: .invalidValue),
        BadRow(name: "max_concurrent_plans zero", yaml: agentYAML(extra: "max_concurrent_plans: 0\n"), keyPath: "max_concurrent_plans", code: .invalidValue),
        BadRow(name: "max_concurrent_plans over 64", yaml: agentYAML(extra: "max_concurrent_plans: 65\n"), keyPath: "max_concurrent_plans", code: .invalidValue),
        BadRow(name: "max_concurrent_plans not an integer", yaml: agentYAML(extra: "max_concurrent_plans: two\n"), keyPath: "max_concurrent_plans", code: .wrongType),
        BadRow(name: "poll_interval zero", yaml: agentYAML(extra: "poll_interval: 0s\n"), keyPath: "poll_interval", code: .invalidValue),
        BadRow(name: "poll_interval units out of order", yaml: agentYAML(extra: "poll_interval: 5s1m\n"), keyPath: "poll_interval", code: .invalidValue),
        BadRow(name: "require_merge_commit as yes", yaml: agentYAML(extra: "require_merge_commit: yes\n"), keyPath: "require_merge_commit", code: .wrongType),
        BadRow(name: "require_merge_commit quoted", yaml: agentYAML(extra: "require_merge_commit: \"true\"\n"), keyPath: "require_merge_commit", code: .wrongType),
        BadRow(name: "tag pattern without version", yaml: agentYAML(extra: "tag_pattern: \"{env}\"\n"), keyPath: "tag_pattern", code: .invalidValue),
        BadRow(name: "tag pattern with unknown placeholder", yaml: agentYAML(extra: "tag_pattern: \"{env}/{version}/{who}\"\n"), keyPath: "tag_pattern", code: .invalidValue),
        BadRow(name: "tag pattern with ..", yaml: agentYAML(extra: "tag_pattern: \"../{env}/{version}\"\n"), keyPath: "tag_pattern", code: .invalidValue),
        BadRow(name: "tag pattern with shell characters", yaml: agentYAML(extra: "tag_pattern: \"{env};{version}\"\n"), keyPath: "tag_pattern", code: .invalidValue),
        BadRow(name: "export max_bytes zero", yaml: agentYAML(extra: "export_limits: {max_bytes: 0}\n"), keyPath: "export_limits.max_bytes", code: .invalidValue),
        BadRow(name: "export max_files not a number", yaml: agentYAML(extra: "export_limits: {max_files: lots}\n"), keyPath: "export_limits.max_files", code: .wrongType),
        BadRow(name: "export unknown key", yaml: agentYAML(extra: "export_limits: {max_size: 1}\n"), keyPath: "export_limits.max_size", code: .unknownKey),
        BadRow(name: "terraform without binary", yaml: agentYAML(replacing: ["terraform": "terraform: {plugin_cache_dir: /x}"]), keyPath: "terraform.binary", code: .missingKey),
        BadRow(name: "terraform binary with ~", yaml: agentYAML(replacing: ["terraform": "terraform: {binary: ~/bin/terraform}"]), keyPath: "terraform.binary", code: .invalidValue),
        BadRow(name: "store other than sqlite", yaml: agentYAML(replacing: ["store": "store: {postgres: db}"]), keyPath: "store.postgres", code: .unknownKey),
        BadRow(name: "store without sqlite", yaml: agentYAML(replacing: ["store": "store: {postgres: db}"]), keyPath: "store.sqlite", code: .missingKey),
        BadRow(name: "store as a string", yaml: agentYAML(replacing: ["store": "store: /var/db.sqlite"]), keyPath: "store", code: .wrongType),
        BadRow(name: "listen without port", yaml: agentYAML(extra: "listen: localhost\n"), keyPath: "listen", code: .invalidValue),
        BadRow(name: "listen port too big", yaml: agentYAML(extra: "listen: 0.0.0.0:70000\n"), keyPath: "listen", code: .invalidValue),
        BadRow(name: "webhook secret as a literal", yaml: agentYAML(extra: "webhook_secret: hunter2-webhook\n"), keyPath: "webhook_secret", code: .literalSecret, secret: "hunter2-webhook"),
        BadRow(name: "the old webhook_secret_file", yaml: agentYAML(extra: "webhook_secret_file: /etc/lockstep/hook\n"), keyPath: "webhook_secret_file", code: .invalidValue),
        BadRow(name: "webhooks with no forge", yaml: agentYAML(extra: "webhooks: {max_body_bytes: 4096}\n"), keyPath: "webhooks", code: .missingKey),
        BadRow(name: "a forge Lockstep does not know", yaml: agentYAML(extra: "webhooks: {bitbucket: {secret_files: [/s]}}\n"), keyPath: "webhooks.bitbucket", code: .unknownKey),
        BadRow(name: "a forge without secret files", yaml: agentYAML(extra: "webhooks: {github: {}}\n"), keyPath: "webhooks.github.secret_files", code: .missingKey),
        BadRow(name: "an empty list of secret files", yaml: agentYAML(extra: "webhooks: {github: {secret_files: []}}\n"), keyPath: "webhooks.github.secret_files", code: .invalidValue),
        BadRow(name: "nine secret files", yaml: agentYAML(extra: "webhooks: {gitea: {secret_files: [/1, /2, /3, /4, /5, /6, /7, /8, /9]}}\n"), keyPath: "webhooks.gitea.secret_files", code: .invalidValue),
        BadRow(name: "a webhook secret written into the config", yaml: agentYAML(extra: "webhooks: {gitlab: {secret: gl-hunter2-token}}\n"), keyPath: "webhooks.gitlab.secret", code: .literalSecret, secret: "gl-hunter2-token"),
        BadRow(name: "a webhook body limit too small", yaml: agentYAML(extra: "webhooks: {generic: {secret_files: [/s]}, max_body_bytes: 10}\n"), keyPath: "webhooks.max_body_bytes", code: .invalidValue),
        // metrics and logs
        BadRow(name: "metrics on the API's own address", yaml: agentYAML(extra: "listen: 127.0.0.1:9000\nmetrics_listen: 127.0.0.1:9000\n"), keyPath: "metrics_listen", code: .conflict),
        BadRow(name: "metrics_listen without a port", yaml: agentYAML(extra: "metrics_listen: 127.0.0.1\n"), keyPath: "metrics_listen", code: .invalidValue),
        BadRow(name: "a log format Lockstep does not write", yaml: agentYAML(extra: "log_format: xml\n"), keyPath: "log_format", code: .invalidValue),
        // forge and notifications
        BadRow(name: "a forge Lockstep cannot post to", yaml: agentYAML(extra: "forge: {kind: bitbucket, repository: a/b, token_file: t}\n"), keyPath: "forge.kind", code: .invalidValue),
        BadRow(name: "Gitea without its API URL (there is no public default)", yaml: agentYAML(extra: "forge: {kind: gitea, repository: a/b, token_file: t}\n"), keyPath: "forge.api_url", code: .missingKey),
        BadRow(name: "a forge API URL with a user", yaml: agentYAML(extra: "forge: {kind: gitea, api_url: \"https://bot:pw@git.example.com/api/v1\", repository: a/b, token_file: t}\n"), keyPath: "forge.api_url", code: .invalidValue),
        BadRow(name: "a forge API URL that is not http(s)", yaml: agentYAML(extra: "forge: {kind: github, api_url: \"file:///etc/passwd\", repository: a/b, token_file: t}\n"), keyPath: "forge.api_url", code: .invalidValue),
        BadRow(name: "a GitHub repository that is not owner/name", yaml: agentYAML(extra: "forge: {kind: github, repository: \"a/b/../c\", token_file: t}\n"), keyPath: "forge.repository", code: .invalidValue),
        BadRow(name: "a forge without a token file", yaml: agentYAML(extra: "forge: {kind: github, repository: a/b}\n"), keyPath: "forge.token_file", code: .missingKey),
        BadRow(name: "a forge token written into the config", yaml: agentYAML(extra: "forge: {kind: github, repository: a/b, token_file: t, token: ghp_hunter2hunter2}\n"), keyPath: "forge.token", code: .literalSecret, secret: "ghp_hunter2hunter2"),
        BadRow(name: "a status context with a space", yaml: agentYAML(extra: "forge: {kind: github, repository: a/b, token_file: t, status_context: \"lock step\"}\n"), keyPath: "forge.status_context", code: .invalidValue),
        BadRow(name: "a public URL with a query", yaml: agentYAML(extra: "public_url: \"https://lockstep.example.com/?a=b\"\n"), keyPath: "public_url", code: .invalidValue),
        BadRow(name: "a Slack webhook URL written into the config", yaml: agentYAML(prod: "notifications: [{url: \"https://hooks.slack.com/services/T0/B0/sekritsekrit\", format: slack}]"), keyPath: "environments.prod.notifications[0].url", code: .literalSecret, secret: "sekritsekrit"),
        BadRow(name: "a JSON notification without its signing key", yaml: agentYAML(prod: "notifications: [{url: \"https://ops.example.com/hook\", format: json}]"), keyPath: "environments.prod.notifications[0].secret_file", code: .missingKey),
        BadRow(name: "a Slack notification with a signing key", yaml: agentYAML(prod: "notifications: [{url_file: slack-url, format: slack, secret_file: k}]"), keyPath: "environments.prod.notifications[0].secret_file", code: .conflict),
        BadRow(name: "a notification with url and url_file", yaml: agentYAML(prod: "notifications: [{url: \"https://ops.example.com/hook\", url_file: u, format: json, secret_file: k}]"), keyPath: "environments.prod.notifications[0].url_file", code: .conflict),
        BadRow(name: "a notification event Lockstep does not send", yaml: agentYAML(prod: "notifications: [{url_file: u, format: slack, events: [planned]}]"), keyPath: "environments.prod.notifications[0].events[0]", code: .invalidValue),
        BadRow(name: "a notification with no events", yaml: agentYAML(prod: "notifications: [{url_file: u, format: slack, events: []}]"), keyPath: "environments.prod.notifications[0].events", code: .invalidValue),
        BadRow(name: "a notification format Lockstep does not write", yaml: agentYAML(prod: "notifications: [{url_file: u, format: teams}]"), keyPath: "environments.prod.notifications[0].format", code: .invalidValue),
        // repository
        BadRow(name: "plain http URL", yaml: agentYAML(replacing: ["repository": "repository: {url: \"http://git.example.com/x.git\"}"]), keyPath: "repository.url", code: .invalidValue),
        BadRow(name: "git:// URL", yaml: agentYAML(replacing: ["repository": "repository: {url: \"git://git.example.com/x.git\"}"]), keyPath: "repository.url", code: .invalidValue),
        BadRow(name: "password in https URL", yaml: agentYAML(replacing: ["repository": "repository: {url: \"https://bot:s3cretPass@git.example.com/x.git\"}"]), keyPath: "repository.url", code: .literalSecret, secret: "s3cretPass"),
        BadRow(name: "ssh URL without credentials", yaml: agentYAML(replacing: ["repository": "repository: {url: \"ssh://git@git.example.com/x.git\"}"]), keyPath: "repository.credentials", code: .missingKey),
        BadRow(name: "ssh credentials without known_hosts", yaml: agentYAML(replacing: ["repository": "repository: {url: \"ssh://git@h/x.git\", credentials: {ssh_key_file: /k}}"]), keyPath: "repository.credentials.known_hosts_file", code: .missingKey),
        BadRow(name: "https URL with ssh credentials", yaml: agentYAML(replacing: ["repository": "repository: {url: \"https://h/x.git\", credentials: {ssh_key_file: /k, known_hosts_file: /h}}"]), keyPath: "repository.credentials", code: .conflict),
        BadRow(name: "both kinds of credentials", yaml: agentYAML(replacing: ["repository": "repository: {url: \"https://h/x.git\", credentials: {ssh_key_file: /k, token_file: /t, username: u}}"]), keyPath: "repository.credentials", code: .conflict),
        BadRow(name: "token_file without username", yaml: agentYAML(replacing: ["repository": "repository: {url: \"https://h/x.git\", credentials: {token_file: /t}}"]), keyPath: "repository.credentials.username", code: .missingKey),
        BadRow(name: "literal token in credentials", yaml: agentYAML(replacing: ["repository": "repository: {url: \"https://h/x.git\", credentials: {token: ghp_abcdef123456, username: u}}"]), keyPath: "repository.credentials.token", code: .literalSecret, secret: "ghp_abcdef123456"),
        BadRow(name: "local repository with credentials", yaml: agentYAML(replacing: ["repository": "repository: {url: /srv/x.git, credentials: {token_file: /t, username: u}}"]), keyPath: "repository.credentials", code: .conflict),
        BadRow(name: "branch starting with -", yaml: agentYAML(replacing: ["repository": "repository: {url: /srv/x.git, branch: \"-upload-pack=x\"}"]), keyPath: "repository.branch", code: .invalidValue),
        BadRow(name: "branch with ..", yaml: agentYAML(replacing: ["repository": "repository: {url: /srv/x.git, branch: a..b}"]), keyPath: "repository.branch", code: .invalidValue),
        // environments.prod
        BadRow(name: "approvals 0", yaml: agentYAML(prod: "approvals: 0"), keyPath: "environments.prod.approvals", code: .invalidValue),
        BadRow(name: "approvals negative", yaml: agentYAML(prod: "approvals: -1"), keyPath: "environments.prod.approvals", code: .wrongType),
        BadRow(name: "approvals quoted", yaml: agentYAML(prod: "approvals: \"2\""), keyPath: "environments.prod.approvals", code: .wrongType),
        BadRow(name: "approvals above approver count", yaml: agentYAML(prod: "approvals: 3"), keyPath: "environments.prod.approvals", code: .conflict),
        BadRow(name: "approver without identity", yaml: agentYAML(prodApprovers: "[alice, mallory]"), keyPath: "environments.prod.approvers[1]", code: .unknownReference),
        BadRow(name: "approver listed twice", yaml: agentYAML(prodApprovers: "[alice, alice]"), keyPath: "environments.prod.approvers[1]", code: .duplicateKey),
        BadRow(name: "no approvers", yaml: agentYAML(prodApprovers: "[]"), keyPath: "environments.prod.approvers", code: .invalidValue),
        BadRow(name: "approvers as a string", yaml: agentYAML(prodApprovers: "alice"), keyPath: "environments.prod.approvers", code: .wrongType),
        BadRow(name: "serves as yes", yaml: agentYAML(prod: "serves: yes").replacingOccurrences(of: "    serves: true\n    approvers: [alice, bob]\n", with: "    approvers: [alice, bob]\n"), keyPath: "environments.prod.serves", code: .wrongType),
        BadRow(name: "tagger_may_approve as 1", yaml: agentYAML(prod: "tagger_may_approve: 1"), keyPath: "environments.prod.tagger_may_approve", code: .wrongType),
        BadRow(name: "promote_from unknown environment", yaml: agentYAML(prod: "promote_from: qa"), keyPath: "environments.prod.promote_from", code: .unknownReference),
        BadRow(name: "promote_from itself", yaml: agentYAML(prod: "promote_from: prod"), keyPath: "environments.prod.promote_from", code: .cycle),
        BadRow(name: "approval_ttl without unit", yaml: agentYAML(prod: "approval_ttl: 10"), keyPath: "environments.prod.approval_ttl", code: .invalidValue),
        BadRow(name: "approval_ttl below a minute", yaml: agentYAML(prod: "approval_ttl: 30s"), keyPath: "environments.prod.approval_ttl", code: .invalidValue),
        BadRow(name: "signed tags without signers file", yaml: agentYAML(prod: "require_signed_tags: true"), keyPath: "environments.prod.allowed_signers_file", code: .missingKey),
        BadRow(name: "signers file without signed tags", yaml: agentYAML(prod: "allowed_signers_file: /etc/s"), keyPath: "environments.prod.allowed_signers_file", code: .conflict),
        BadRow(name: "backend pin with a credential", yaml: agentYAML(prod: "backend: {type: s3, settings: {bucket: b, secret_key: x}}"), keyPath: "environments.prod.backend.settings.secret_key", code: .literalSecret),
        BadRow(name: "backend pin without type", yaml: agentYAML(prod: "backend: {settings: {bucket: b}}"), keyPath: "environments.prod.backend.type", code: .missingKey),
        BadRow(name: "backend pin unknown key", yaml: agentYAML(prod: "backend: {type: s3, settings: {bucket: b}, bucket: b}"), keyPath: "environments.prod.backend.bucket", code: .unknownKey),
        BadRow(name: "backend setting both pinned and unpinned", yaml: agentYAML(prod: "backend: {type: s3, settings: {bucket: b}, unpinned: [bucket]}"), keyPath: "environments.prod.backend.unpinned[0]", code: .conflict),
        BadRow(name: "backend workspace with a slash", yaml: agentYAML(prod: "backend: {type: local, settings: {path: p}, workspace: a/b}"), keyPath: "environments.prod.backend.workspace", code: .invalidValue),
        BadRow(name: "OpenPGP keyring without signed tags", yaml: agentYAML(prod: "openpgp_keyring_file: /etc/k.asc"), keyPath: "environments.prod.openpgp_keyring_file", code: .conflict),
        BadRow(name: "signer_may_approve without signed tags", yaml: agentYAML(prod: "signer_may_approve: true"), keyPath: "environments.prod.signer_may_approve", code: .conflict),
        BadRow(name: "revocation list without allowed_signers", yaml: agentYAML(prod: "require_signed_tags: true\nopenpgp_keyring_file: k.asc\nrevoked_signers_file: r"), keyPath: "environments.prod.revoked_signers_file", code: .conflict),
        BadRow(name: "only a revocation list", yaml: agentYAML(prod: "require_signed_tags: true\nrevoked_signers_file: r"), keyPath: "environments.prod.allowed_signers_file", code: .missingKey),
        BadRow(name: "apply window bad day", yaml: agentYAML(prod: "apply_windows: [{days: [funday], from: \"09:00\", to: \"17:00\"}]"), keyPath: "environments.prod.apply_windows[0].days[0]", code: .invalidValue),
        BadRow(name: "apply window backwards range", yaml: agentYAML(prod: "apply_windows: [{days: [fri-mon], from: \"09:00\", to: \"17:00\"}]"), keyPath: "environments.prod.apply_windows[0].days[0]", code: .invalidValue),
        BadRow(name: "apply window bad time", yaml: agentYAML(prod: "apply_windows: [{days: [mon], from: \"9:00\", to: \"17:00\"}]"), keyPath: "environments.prod.apply_windows[0].from", code: .invalidValue),
        BadRow(name: "apply window ends before it starts", yaml: agentYAML(prod: "apply_windows: [{days: [mon], from: \"17:00\", to: \"09:00\"}]"), keyPath: "environments.prod.apply_windows[0].to", code: .invalidValue),
        BadRow(name: "apply window unknown zone", yaml: agentYAML(prod: "apply_windows: [{days: [mon], from: \"09:00\", to: \"17:00\", timezone: Mars/Olympus}]"), keyPath: "environments.prod.apply_windows[0].timezone", code: .invalidValue),
        BadRow(name: "apply window unknown key", yaml: agentYAML(prod: "apply_windows: [{days: [mon], from: \"09:00\", to: \"17:00\", hours: 8}]"), keyPath: "environments.prod.apply_windows[0].hours", code: .unknownKey),
        BadRow(name: "plan and apply credentials are one file", yaml: agentYAML(prod: "plan_credentials_file: /etc/c.env\napply_credentials_file: /etc/./c.env"), keyPath: "environments.prod.plan_credentials_file", code: .conflict),
        BadRow(name: "protected type not a type name", yaml: agentYAML(prod: "protected_resource_types: [AWS_S3]"), keyPath: "environments.prod.protected_resource_types[0]", code: .invalidValue),
        BadRow(name: "empty allow-list", yaml: agentYAML(prod: "allowed_resource_types: []"), keyPath: "environments.prod.allowed_resource_types", code: .invalidValue),
        BadRow(name: "typo in an environment key", yaml: agentYAML(prod: "aprovals: 2"), keyPath: "environments.prod.aprovals", code: .unknownKey),
        BadRow(name: "literal apply credentials", yaml: agentYAML(prod: "apply_password: Tr0ub4dor&3"), keyPath: "environments.prod.apply_password", code: .literalSecret, secret: "Tr0ub4dor"),
        BadRow(name: "environment name with capitals", yaml: agentYAML(extra: "").replacingOccurrences(of: "  staging:", with: "  Staging:"), keyPath: "environments.Staging", code: .invalidValue),
        // identities
        BadRow(name: "token hash in capitals", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token_sha256: \(String(repeating: "A", count: 64))}, bob: {token_sha256: \(String(repeating: "b", count: 64))}}"]), keyPath: "identities.alice.token_sha256", code: .invalidValue),
        BadRow(name: "token hash too short", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token_sha256: abc123}, bob: {token_sha256: \(String(repeating: "b", count: 64))}}"]), keyPath: "identities.alice.token_sha256", code: .invalidValue, secret: "abc123"),
        BadRow(name: "literal token in an identity", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token: plain-token-value, token_sha256: \(String(repeating: "a", count: 64))}, bob: {token_sha256: \(String(repeating: "b", count: 64))}}"]), keyPath: "identities.alice.token", code: .literalSecret, secret: "plain-token-value"),
        BadRow(name: "one token hash for two identities", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token_sha256: \(String(repeating: "a", count: 64))}, bob: {token_sha256: \(String(repeating: "a", count: 64))}}"]), keyPath: "identities.bob.token_sha256", code: .conflict),
        BadRow(name: "one e-mail for two identities", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token_sha256: \(String(repeating: "a", count: 64)), emails: [x@e.com]}, bob: {token_sha256: \(String(repeating: "b", count: 64)), emails: [X@E.com]}}"]), keyPath: "identities.bob.emails[0]", code: .conflict),
        BadRow(name: "e-mail without @", yaml: agentYAML(replacing: ["identities": "identities: {alice: {token_sha256: \(String(repeating: "a", count: 64)), emails: [alice]}, bob: {token_sha256: \(String(repeating: "b", count: 64))}}"]), keyPath: "identities.alice.emails[0]", code: .invalidValue),
        BadRow(name: "identity without token hash", yaml: agentYAML(replacing: ["identities": "identities: {alice: {emails: [a@e.com]}, bob: {token_sha256: \(String(repeating: "b", count: 64))}}"]), keyPath: "identities.alice.token_sha256", code: .missingKey),
    ]

    @Test("bad values are refused with the right key path and code, never echoing a secret", arguments: badRows)
    func badValues(row: BadRow) {
        expectError(agentErrors(row.yaml), row)
    }

    @Test("promote_from cycles across environments are refused")
    func promotionCycle() {
        let yaml = agentYAML(prod: "promote_from: staging").replacingOccurrences(of: "  staging:\n    serves: true\n", with: "  staging:\n    serves: true\n    promote_from: prod\n")
        let errors = agentErrors(yaml)
        #expect(errors.contains { $0.code == .cycle && $0.keyPath.hasSuffix(".promote_from") }, "\(ConfigErrors(errors))")
    }

    @Test("every error of a file is reported in one pass, one line each")
    func manyErrorsAtOnce() {
        let yaml = agentYAML(removing: ["mirror_dir"], prod: "approvals: 0\naprovals: 2\nplan_credentials_file: /a\napply_credentials_file: /a", extra: "poll_interval: soon\nlisten: nowhere\n")
        let errors = agentErrors(yaml)
        let paths = Set(errors.map(\.keyPath))
        for expected in ["mirror_dir", "environments.prod.approvals", "environments.prod.aprovals", "environments.prod.plan_credentials_file", "poll_interval", "listen"] {
            #expect(paths.contains(expected), "missing \(expected) in:\n\(ConfigErrors(errors))")
        }
        let text = ConfigErrors(errors).description
        #expect(text.split(separator: "\n").count == errors.count)
        #expect(text.split(separator: "\n").allSatisfy { $0.hasPrefix("agent.yaml: ") })
    }

    @Test("an e-mail maps a tagger to exactly one identity, case-insensitively")
    func taggerMapping() throws {
        let c = try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc")
        #expect(c.identityName(forEmail: "Alice@Example.COM") == "alice")
        #expect(c.identityName(forEmail: "eve@example.com") == nil)
    }

    @Test("apply windows open and close by weekday and time in their zone")
    func applyWindowMath() throws {
        let c = try AgentConfig.parse(yaml: agentYAML(prod: "apply_windows: [{days: [mon-fri], from: \"09:00\", to: \"17:00\", timezone: UTC}]"), file: "agent.yaml", baseDirectory: "/etc")
        let prod = try #require(c.environments["prod"])
        // 2024-01-01 is a Monday.
        let monday10 = Date(timeIntervalSince1970: 1_704_103_200)  // 2024-01-01 10:00 UTC
        let monday17 = Date(timeIntervalSince1970: 1_704_128_400)  // 2024-01-01 17:00 UTC (end is exclusive)
        let saturday10 = Date(timeIntervalSince1970: 1_704_535_200)  // 2024-01-06 10:00 UTC
        #expect(prod.applyWindowOpen(at: monday10))
        #expect(!prod.applyWindowOpen(at: monday17))
        #expect(!prod.applyWindowOpen(at: saturday10))
    }

    @Test("load reads a file and resolves relative paths against its folder")
    func loadResolvesAgainstFolder() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/agent.yaml"
        try agentYAML(replacing: ["mirror_dir": "mirror_dir: state/mirror"]).write(toFile: file, atomically: true, encoding: .utf8)
        let c = try AgentConfig.load(path: file)
        #expect(c.mirrorDir == normaliseAbsolute(dir) + "/state/mirror")
    }

    @Test("load refuses a missing file and a file over 1 MiB without parsing it")
    func loadRefusals() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ConfigErrors.self) { try AgentConfig.load(path: dir + "/nope.yaml") }
        let big = dir + "/big.yaml"
        try (agentYAML() + "# " + String(repeating: "x", count: 1 << 20) + "\n").write(toFile: big, atomically: true, encoding: .utf8)
        do {
            _ = try AgentConfig.load(path: big)
            Issue.record("a 1 MiB config was accepted")
        } catch {
            #expect(error.codes == [.tooLarge])
        }
    }
}
