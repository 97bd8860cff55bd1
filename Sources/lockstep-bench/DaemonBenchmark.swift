import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The daemon end to end: the time from a new tag in a delivery repo to its run
/// `awaiting_approval` (seen through the JSON API), next to a shell script doing
/// what a CI job does (fresh clone, init, plan, show) on the same repo; and the
/// resident memory of the idle daemon with the example and with ~100 targets.
/// Prints Markdown tables.
struct DaemonBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Benchmark tag-to-awaiting_approval latency of `lockstep serve` against a CI-style shell script, and its idle RSS."
    )

    @Option(help: "The built lockstep binary.")
    var lockstep: String

    @Option(help: "Repetitions of the latency measurement (median and minimum reported).")
    var repetitions: Int = 5

    @Option(help: "Terraform binary.")
    var terraform: String = ".tools/terraform/bin/terraform"

    @Option(help: "Provider mirror directory.")
    var mirror: String = ".tools/terraform/mirror"

    @Option(help: "The example delivery layout copied into the repo.")
    var example: String = "examples/delivery"

    @Option(help: "Scratch directory.")
    var workDirectory: String = ".bench/daemon"

    @Option(help: "The daemon's poll_interval in seconds (bounds the latency).")
    var pollInterval: Int = 1

    @Option(help: "Projects of the large repo (each served in dev, staging and prod).")
    var projects: Int = 34

    @Option(help: "Release tags of the repo whose idle CPU is measured (one environment, poll_interval as above).")
    var tags: Int = 300

    @Option(help: "Seconds of idle CPU measured.")
    var idleSeconds: Int = 20

    @Option(help: "First TCP port used by the daemons.")
    var port: Int = 18_420

    /// The example's API token of alice (its SHA-256 sits in the generated agent config).
    static let token = "alice-example-token"

    mutating func run() async throws {
        try await benchmark()
    }

    /// The measurement itself (non-mutating, so its closures may capture `self`).
    func benchmark() async throws {
        let fm = FileManager.default
        let work = URL(fileURLWithPath: workDirectory).standardizedFileURL
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        let lockstepBin = URL(fileURLWithPath: lockstep).standardizedFileURL.path
        let tf = URL(fileURLWithPath: terraform).standardizedFileURL.path
        let mirrorPath = URL(fileURLWithPath: mirror).standardizedFileURL.path
        let cliConfig = work.appendingPathComponent("ci.tfrc")
        try "provider_installation {\n  filesystem_mirror {\n    path = \"\(mirrorPath)\"\n  }\n}\ndisable_checkpoint = true\n"
            .write(to: cliConfig, atomically: true, encoding: .utf8)

        // 1. The example: latency and idle RSS.
        let ex = work.appendingPathComponent("example")
        try makeExampleRepo(ex)
        try writeAgentConfig(ex, port: port, tf: tf, mirror: mirrorPath)
        let daemon = try startDaemon(ex, binary: lockstepBin)
        defer { stop(daemon) }
        let server = "http://127.0.0.1:\(port)"
        let readyAfter = try await waitReady(server, daemon: daemon, timeout: 120)
        let rssReady = Self.rss(daemon.processIdentifier)
        _ = try await waitAwaiting(server, tags: ["dev/v1.0.0"], timeout: 300)
        try await Task.sleep(for: .seconds(3))
        let rssIdle = Self.rss(daemon.processIdentifier)

        var daemonTimes: [Double] = [], ciTimes: [Double] = []
        for n in 1...max(repetitions, 1) {
            // Alternate the order so neither side always runs right after the other.
            for side in n % 2 == 1 ? [0, 1] : [1, 0] {
                if side == 0 {
                    // A random pause first: the loop is otherwise periodic, so every tag would
                    // reach the daemon at the same point of its poll cycle.
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0..<(pollInterval * 1_000))))
                    let tag = "dev/v1.0.\(n)"
                    try Self.sh(Self.releaseScript(repo: ex, version: "1.0.\(n)", tag: tag))
                    let start = ContinuousClock.now
                    _ = try await waitAwaiting(server, tags: [tag], timeout: 300)
                    daemonTimes.append(Self.seconds(ContinuousClock.now - start))
                } else {
                    let dir = ex.appendingPathComponent("ci-\(n)")
                    let start = ContinuousClock.now
                    try Self.sh(Self.ciScript(repo: ex, dir: dir, tf: tf, cliConfig: cliConfig))
                    ciTimes.append(Self.seconds(ContinuousClock.now - start))
                    try? fm.removeItem(at: dir)
                }
            }
        }
        try await Task.sleep(for: .seconds(3))
        let rssAfter = Self.rss(daemon.processIdentifier)
        stop(daemon)

        // 2. ~100 targets: RSS after the first pass settles.
        let big = work.appendingPathComponent("large")
        try makeLargeRepo(big)
        try writeAgentConfig(big, port: port + 1, tf: tf, mirror: mirrorPath)
        let bigDaemon = try startDaemon(big, binary: lockstepBin)
        defer { stop(bigDaemon) }
        let bigServer = "http://127.0.0.1:\(port + 1)"
        // READY (and /readyz 200) comes once the first pass has fetched and decided every tag;
        // the tagged targets are planned afterwards.
        let bigReadyAfter = try await waitReady(bigServer, daemon: bigDaemon, timeout: 900)
        let bigRssReady = Self.rss(bigDaemon.processIdentifier)
        let passStart = ContinuousClock.now
        let bigTags = Set((0..<projects).map { "\(Self.projectName($0))/dev/v1.0.0" })
        let planned = try await waitAwaiting(bigServer, tags: bigTags, count: projects, timeout: 900)
        let passSeconds = Self.seconds(ContinuousClock.now - passStart)
        try await Task.sleep(for: .seconds(3))
        let bigRssIdle = Self.rss(bigDaemon.processIdentifier)
        stop(bigDaemon)

        print("| tag → `awaiting_approval`, \(daemonTimes.count) repetitions | median (s) | min (s) | max (s) |")
        print("|---|---:|---:|---:|")
        print("| `lockstep serve` (poll_interval \(pollInterval)s, API polled every 50 ms) | \(Self.format(Self.median(daemonTimes))) | \(Self.format(daemonTimes.min() ?? .nan)) | \(Self.format(daemonTimes.max() ?? .nan)) |")
        print("| CI-style shell script (fresh clone, init, plan -out, show -json, show) | \(Self.format(Self.median(ciTimes))) | \(Self.format(ciTimes.min() ?? .nan)) | \(Self.format(ciTimes.max() ?? .nan)) |")
        print("")
        print("| daemon resident memory (VmRSS) | MiB |")
        print("|---|---:|")
        print("| example (1 project × 3 envs), at /readyz | \(Self.mib(rssReady)) |")
        print("| example, idle after dev/v1.0.0 awaits approval | \(Self.mib(rssIdle.current)) (peak \(Self.mib(rssIdle.peak))) |")
        print("| example, idle after the \(daemonTimes.count) timed releases | \(Self.mib(rssAfter.current)) (peak \(Self.mib(rssAfter.peak))) |")
        print("| \(projects) projects × 3 envs = \(projects * 3) targets, at /readyz (tags decided, plans to follow) | \(Self.mib(bigRssReady)) |")
        print("| \(projects * 3) targets, idle after \(planned) dev plans await approval | \(Self.mib(bigRssIdle.current)) (peak \(Self.mib(bigRssIdle.peak))) |")
        print("")
        print("example ready \(Self.format(readyAfter)) s after start; the large repo ready \(Self.format(bigReadyAfter)) s after start, "
              + "then its first pass planned \(planned) dev targets (max_concurrent_plans 2; \(Self.format(passSeconds)) s more until all were listed)")

        // 3. Many tags: what an idle daemon spends per poll re-deciding them.
        let tagged = work.appendingPathComponent("tagged")
        try makeExampleRepo(tagged)
        try Self.sh(Self.gitPrelude + """
            w='\(tagged.path)/work'
            as "Alice Maintainer" alice@example.com
            for i in $(seq 1 \(tags)); do
              g -C "$w" checkout -qb r$i
              printf 'app_version = "2.0.%s"\\n' $i > "$w/app/release.auto.tfvars"
              g -C "$w" commit -qam "Release 2.0.$i"
              g -C "$w" checkout -q main
              g -C "$w" merge -q --no-ff -m "Merge release 2.0.$i" r$i
              g -C "$w" tag -a dev/v2.0.$i -m "Release 2.0.$i to dev"
              g -C "$w" branch -qD r$i
            done
            g -C "$w" push -q '\(tagged.path)/delivery.git' main --follow-tags
            """)
        try writeAgentConfig(tagged, port: port + 2, tf: tf, mirror: mirrorPath)
        let taggedDaemon = try startDaemon(tagged, binary: lockstepBin)
        defer { stop(taggedDaemon) }
        _ = try await waitReady("http://127.0.0.1:\(port + 2)", daemon: taggedDaemon, timeout: 300)
        try await Task.sleep(for: .seconds(3))
        let ticksBefore = Self.cpuTicks(taggedDaemon.processIdentifier)
        try await Task.sleep(for: .seconds(idleSeconds))
        let ticks = Self.cpuTicks(taggedDaemon.processIdentifier) - ticksBefore
        stop(taggedDaemon)
        print("")
        print("| idle daemon, \(tags + 1) dev tags, poll_interval \(pollInterval)s | CPU over \(idleSeconds) s | share of one core |")
        print("|---|---:|---:|")
        print("| after the first pass | \(Self.format(Double(ticks) / 100)) s | \(String(format: "%.1f", Double(ticks) / Double(idleSeconds))) % |")
        try? fm.removeItem(at: work)
    }

    /// utime + stime of a process in clock ticks (100 per second on Linux), from /proc/PID/stat.
    static func cpuTicks(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = text.lastIndex(of: ")") else { return 0 }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

    // MARK: Repositories

    /// A git identity and no user or system git config, as scripts/demo.sh does.
    static let gitPrelude = """
        set -eu
        export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
        g() { git -c init.defaultBranch=main -c advice.detachedHead=false "$@"; }
        as() { export GIT_AUTHOR_NAME="$1" GIT_AUTHOR_EMAIL="$2" GIT_COMMITTER_NAME="$1" GIT_COMMITTER_EMAIL="$2"; }

        """

    /// scripts/demo.sh's repo: the example layout, state outside the run folders,
    /// a merged release pull request and `dev/v1.0.0`, pushed to a bare repo.
    private func makeExampleRepo(_ dir: URL) throws {
        let src = URL(fileURLWithPath: example).standardizedFileURL.path
        try Self.sh(Self.gitPrelude + """
            d='\(dir.path)'
            mkdir -p "$d/tfstate" "$d/secrets"
            g init -q "$d/work"
            cp -R '\(src)'/. "$d/work/"
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

    static func projectName(_ index: Int) -> String { String(format: "svc%02d", index) }

    /// `projects` tiny null_resource modules, each served in dev, staging and prod,
    /// merged and tagged `svcNN/dev/v1.0.0` (several projects: the default tag pattern is
    /// `{project}/{env}/{version}`), so the first pass plans every dev target.
    private func makeLargeRepo(_ dir: URL) throws {
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
            let name = Self.projectName(p)
            let folder = work.appendingPathComponent(name)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            try module.write(to: folder.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
            try "app_version = \"0.9.0\"\n".write(to: folder.appendingPathComponent("release.auto.tfvars"), atomically: true, encoding: .utf8)
            yaml += "  \(name):\n    dir: \(name)\n    environments:\n      dev:\n      staging:\n      prod:\n"
        }
        try yaml.write(to: work.appendingPathComponent("lockstep.yaml"), atomically: true, encoding: .utf8)
        try Self.sh(Self.gitPrelude + """
            d='\(dir.path)'
            mkdir -p "$d/secrets" "$d/tfstate/dev" "$d/tfstate/staging" "$d/tfstate/prod"
            g init -q "$d/work"
            as "Dana Developer" dana@example.com
            g -C "$d/work" add -A; g -C "$d/work" commit -qm "Initial layout"
            g -C "$d/work" checkout -qb release-1.0.0
            for f in "$d"/work/svc*/release.auto.tfvars; do printf 'app_version = "1.0.0"\\n' > "$f"; done
            g -C "$d/work" commit -qam "Release 1.0.0"
            g -C "$d/work" checkout -q main
            as "Alice Maintainer" alice@example.com
            g -C "$d/work" merge -q --no-ff -m "Merge pull request #1" release-1.0.0
            for p in "$d"/work/svc*/; do
              p=$(basename "$p")
              g -C "$d/work" tag -a "$p/dev/v1.0.0" -m "Release 1.0.0 of $p to dev"
            done
            g init -q --bare "$d/delivery.git"
            g -C "$d/work" push -q "$d/delivery.git" main release-1.0.0 --follow-tags
            """)
    }

    /// A new merged release commit and its dev tag, pushed; returns when the push has.
    static func releaseScript(repo: URL, version: String, tag: String) -> String {
        gitPrelude + """
            w='\(repo.path)/work'
            as "Dana Developer" dana@example.com
            g -C "$w" checkout -qb release-\(version)
            printf 'app_version = "\(version)"\\n' > "$w/app/release.auto.tfvars"
            g -C "$w" commit -qam "Release \(version)"
            g -C "$w" checkout -q main
            as "Alice Maintainer" alice@example.com
            g -C "$w" merge -q --no-ff -m "Merge release \(version)" release-\(version)
            g -C "$w" tag -a \(tag) -m "Release \(version) to dev"
            g -C "$w" push -q '\(repo.path)/delivery.git' main release-\(version) \(tag)
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
    private func writeAgentConfig(_ dir: URL, port: Int, tf: String, mirror: String) throws {
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

    // MARK: The daemon

    private func startDaemon(_ dir: URL, binary: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--config", dir.appendingPathComponent("agent.yaml").path]
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("lockstep.log").path, contents: nil)
        let log = try FileHandle(forWritingTo: dir.appendingPathComponent("lockstep.log"))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        return process
    }

    private func stop(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// Seconds from now until /readyz answers 200.
    private func waitReady(_ server: String, daemon: Process, timeout: Double) async throws -> Double {
        let start = ContinuousClock.now
        while Self.seconds(ContinuousClock.now - start) < timeout {
            guard daemon.isRunning else { throw ValidationError("the daemon exited before it was ready") }
            if let (_, status) = try? await Self.get("\(server)/readyz"), status == 200 {
                return Self.seconds(ContinuousClock.now - start)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("\(server) not ready after \(timeout)s")
    }

    /// Polls `GET /api/v1/runs?state=awaiting_approval` every 50 ms until at least
    /// `count` runs of `tags` are listed; returns how many are.
    private func waitAwaiting(_ server: String, tags: Set<String>, count: Int = 1, timeout: Double) async throws -> Int {
        let start = ContinuousClock.now
        while Self.seconds(ContinuousClock.now - start) < timeout {
            if let (data, status) = try? await Self.get("\(server)/api/v1/runs?state=awaiting_approval"), status == 200,
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let runs = object["runs"] as? [[String: Any]] {
                let found = runs.filter { ($0["tag"] as? String).map(tags.contains) ?? false }.count
                if found >= count { return found }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("no run of \(tags.sorted()) awaited approval within \(timeout)s")
    }

    static func get(_ url: String) async throws -> (Data, Int) {
        guard let address = URL(string: url) else { throw ValidationError("bad URL \(url)") }
        var request = URLRequest(url: address)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 5
        let (data, response) = try await URLSession.shared.data(for: request)
        return (data, (response as? HTTPURLResponse)?.statusCode ?? 0)
    }

    // MARK: Helpers

    /// VmRSS and VmHWM (peak) of a process, in KiB, from /proc/PID/status.
    static func rss(_ pid: Int32) -> (current: Int, peak: Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (-1, -1) }
        func field(_ name: String) -> Int {
            for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
            }
            return -1
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    static func mib(_ kib: (current: Int, peak: Int)) -> String { mib(kib.current) }
    static func mib(_ kib: Int) -> String { String(format: "%.1f", Double(kib) / 1024) }

    static func sh(_ script: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("script failed (\(process.terminationStatus)): \(script.prefix(300))")
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func format(_ v: Double) -> String { String(format: "%.2f", v) }
}
