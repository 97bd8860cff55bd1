import ArgumentParser
import Foundation

// The delivery repositories and agent configs the daemon benchmark serves, and the scripts it
// times against the daemon.
enum DaemonRepos {
    /// A git identity and no user or system git config, as scripts/demo.sh does.
    static let gitPrelude = """
        set -eu
        export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
        g() { git -c init.defaultBranch=main -c advice.detachedHead=false "$@"; }
        as() { export GIT_AUTHOR_NAME="$1" GIT_AUTHOR_EMAIL="$2" GIT_COMMITTER_NAME="$1" GIT_COMMITTER_EMAIL="$2"; }

        """

    /// scripts/demo.sh's repo: the example layout, state outside the run folders,
    /// a merged release pull request and `dev/v1.0.0`, pushed to a bare repo.
    static func makeExample(_ dir: URL, from example: String) async throws {
        try await Child.sh(gitPrelude + """
            d='\(dir.path)'
            mkdir -p "$d/tfstate" "$d/secrets"
            g init -q "$d/work"
            cp -R '\(example)'/. "$d/work/"
            for env in dev staging prod; do
              mkdir -p "$d/tfstate/$env"
              printf 'path = "%s"\\n' "$d/tfstate/$env/terraform.tfstate" > "$d/work/app/envs/$env.backend.hcl"
            done
            printf 'app_version = "0.9.0"\\n' > "$d/work/app/release.auto.tfvars"
            as "Dana Developer" dana@example.com
            g -C "$d/work" add -A; g -C "$d/work" commit -qm "Initial delivery layout"
            g -C "$d/work" checkout -qb release-1.0.0
            printf 'app_version = "1.0.0"\\n' > "$d/work/app/release.auto.tfvars"
            g -C "$d/work" commit -qam "Release 1.0.0"
            g -C "$d/work" checkout -q main
            as "Alice Maintainer" alice@example.com
            g -C "$d/work" merge -q --no-ff -m "Merge pull request #1" release-1.0.0
            g -C "$d/work" tag -a dev/v1.0.0 -m "Release 1.0.0 to dev"
            g init -q --bare "$d/delivery.git"
            g -C "$d/work" push -q "$d/delivery.git" main release-1.0.0 --follow-tags
            """)
    }

    static func projectName(_ index: Int) -> String { String(format: "svc%03d", index) }

    /// `projects` tiny null_resource modules, each served in dev, staging and prod (the default
    /// tag pattern for several projects is `{project}/{env}/{version}`), `versions` merged
    /// releases that each change every project, and every release tagged `svcNNN/dev/v1.0.K` for
    /// every project: projects × versions annotated tags, written by one `git fast-import` into
    /// the bare repo (a `git tag` process per tag would take minutes). Refs are packed, as a
    /// server's are.
    static func makeLarge(_ dir: URL, projects: Int, versions: Int) async throws {
        let fm = FileManager.default
        let work = dir.appendingPathComponent("work")
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        var yaml = "projects:\n"
        let module = """
            terraform {
              required_providers {
                null = {
                  source  = "hashicorp/null"
                  version = "2.1.2"
                }
              }
            }
            variable "app_version" {
              type    = string
              default = "0.9.0"
            }
            resource "null_resource" "app" {
              triggers = { app_version = var.app_version }
            }

            """
        for p in 0..<projects {
            let name = projectName(p)
            let folder = work.appendingPathComponent(name)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            try module.write(to: folder.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
            try "app_version = \"0.9.0\"\n".write(to: folder.appendingPathComponent("release.auto.tfvars"), atomically: true, encoding: .utf8)
            yaml += "  \(name):\n    dir: \(name)\n    environments:\n      dev:\n      staging:\n      prod:\n"
        }
        try yaml.write(to: work.appendingPathComponent("lockstep.yaml"), atomically: true, encoding: .utf8)
        try await Child.sh(gitPrelude + """
            d='\(dir.path)'
            mkdir -p "$d/secrets" "$d/tfstate/dev" "$d/tfstate/staging" "$d/tfstate/prod"
            g init -q "$d/work"
            as "Dana Developer" dana@example.com
            g -C "$d/work" add -A; g -C "$d/work" commit -qm "Initial layout"
            : > "$d/merges.txt"
            for k in $(seq 1 \(versions)); do
              as "Dana Developer" dana@example.com
              g -C "$d/work" checkout -qb release-1.0.$k
              for f in "$d"/work/svc*/release.auto.tfvars; do printf 'app_version = "1.0.%s"\\n' $k > "$f"; done
              g -C "$d/work" commit -qam "Release 1.0.$k"
              g -C "$d/work" checkout -q main
              as "Alice Maintainer" alice@example.com
              g -C "$d/work" merge -q --no-ff -m "Merge pull request #$k" release-1.0.$k
              g -C "$d/work" branch -qD release-1.0.$k
              g -C "$d/work" rev-parse HEAD >> "$d/merges.txt"
            done
            g init -q --bare "$d/delivery.git"
            g -C "$d/work" push -q "$d/delivery.git" main
            """)
        let merges = try String(contentsOf: dir.appendingPathComponent("merges.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        guard merges.count == versions else { throw ValidationError("expected \(versions) merge commits, found \(merges.count)") }
        var stream = ""
        stream.reserveCapacity(projects * versions * 160)
        let epoch = 1_780_000_000
        for (k, commit) in merges.enumerated() {
            for p in 0..<projects {
                let name = projectName(p)
                let message = "Release 1.0.\(k + 1) of \(name) to dev\n"
                stream += "tag \(name)/dev/v1.0.\(k + 1)\nfrom \(commit)\n"
                    + "tagger Alice Maintainer <alice@example.com> \(epoch + k * 60) +0000\n"
                    + "data \(message.utf8.count)\n\(message)\n"
            }
        }
        let streamFile = dir.appendingPathComponent("tags.fast-import")
        try stream.write(to: streamFile, atomically: true, encoding: .utf8)
        try await Child.sh(gitPrelude + """
            d='\(dir.path)'
            g -C "$d/delivery.git" fast-import --quiet < '\(streamFile.path)'
            g -C "$d/delivery.git" pack-refs --all
            """)
    }

    /// A new merged release commit of `file` and its tag, pushed; returns when the push has.
    static func releaseScript(repo: URL, file: String, version: String, tag: String) -> String {
        gitPrelude + """
            w='\(repo.path)/work'
            as "Dana Developer" dana@example.com
            g -C "$w" checkout -qb release-\(tag.replacingOccurrences(of: "/", with: "-"))
            printf 'app_version = "\(version)"\\n' > "$w/\(file)"
            g -C "$w" commit -qam "Release \(version)"
            g -C "$w" checkout -q main
            as "Alice Maintainer" alice@example.com
            g -C "$w" merge -q --no-ff -m "Merge release \(version)" release-\(tag.replacingOccurrences(of: "/", with: "-"))
            g -C "$w" tag -a \(tag) -m "Release \(version) to dev"
            g -C "$w" push -q '\(repo.path)/delivery.git' main \(tag)
            """
    }

    /// What a CI job does for one plan: fresh clone, init (same CLI config and
    /// mirror, state outside the checkout like the daemon's), plan -out, show -json, show.
    static func ciScript(repo: URL, dir: URL, tf: String, cliConfig: URL) -> String {
        """
        set -eu
        export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null TF_CLI_CONFIG_FILE='\(cliConfig.path)' TF_IN_AUTOMATION=1
        export TF_DATA_DIR='\(dir.path)/tfdata'
        git clone -q '\(repo.path)/delivery.git' '\(dir.path)/src'
        cd '\(dir.path)/src/app'
        '\(tf)' init -input=false -no-color -backend-config=path='\(dir.path)/ci.tfstate' > /dev/null
        '\(tf)' plan -input=false -no-color -var-file=envs/dev.tfvars -out='\(dir.path)/plan.tfplan' > /dev/null
        '\(tf)' show -json '\(dir.path)/plan.tfplan' > '\(dir.path)/plan.json'
        '\(tf)' show -no-color '\(dir.path)/plan.tfplan' > '\(dir.path)/plan.txt'
        """
    }

    /// The example's agent config with this benchmark's paths, port and poll interval.
    static func writeAgentConfig(_ dir: URL, port: Int, pollInterval: Int, tf: String, mirror: String) throws {
        let d = dir.path
        var envs = ""
        for (env, extra) in [("dev", "    tagger_may_approve: true\n"), ("staging", "    promote_from: dev\n"), ("prod", "    promote_from: staging\n")] {
            for kind in ["plan", "apply"] {
                try "EXAMPLE_CLOUD_TOKEN=fake-\(env)-\(kind)\n".write(
                    to: dir.appendingPathComponent("secrets/\(env)-\(kind).env"), atomically: true, encoding: .utf8)
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: "\(d)/secrets/\(env)-\(kind).env")
            }
            envs += """
                  \(env):
                    serves: true
                    approvals: \(env == "prod" ? 2 : 1)
                    approvers: [alice, bob, carol]
                \(extra)    plan_credentials_file: \(d)/secrets/\(env)-plan.env
                    apply_credentials_file: \(d)/secrets/\(env)-apply.env
                    writable_paths: [\(d)/tfstate/\(env)]

                """
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: "\(d)/secrets")
        let yaml = """
            repository:
              url: \(d)/delivery.git
              branch: main
            mirror_dir: \(d)/mirror
            poll_interval: \(pollInterval)s
            max_concurrent_plans: 2
            require_merge_commit: true
            terraform:
              binary: \(tf)
              provider_mirror: \(mirror)
              plugin_cache_dir: \(d)/plugin-cache
            store:
              sqlite: \(d)/lockstep.sqlite
            listen: 127.0.0.1:\(port)
            environments:
            \(envs)identities:
              alice:
                token_sha256: 62743fdd6bbb8413deedd0657c152fbae2ccb3675ee686ec872974ee5d1ff547
                emails: [alice@example.com]
              bob:
                token_sha256: 60615d34bea5234cc4783eb73a437cc6c6bb846e244cc28a4495f9139706641f
                emails: [bob@example.com]
              carol:
                token_sha256: 0c4863ad090b806de2b2ea32924f0a6152aa0bf61b794104518267691262b112
                emails: [carol@example.com]

            """
        try yaml.write(to: dir.appendingPathComponent("agent.yaml"), atomically: true, encoding: .utf8)
    }
}
