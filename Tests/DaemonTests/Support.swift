import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Fixture constructors; they crash on invalid literals, which is a test bug.
func runID(_ text: String) -> RunID { try! RunID(text) }

enum Paths {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// The real binary, built by `swift build --build-tests` with the tests.
    static func lockstep() throws -> URL {
        let url = root.appendingPathComponent(".build/debug/lockstep")
        try #require(FileManager.default.isExecutableFile(atPath: url.path), "build first: \(url.path) is missing")
        return url
    }

    static func terraform() throws -> URL {
        let url = root.appendingPathComponent(".tools/terraform/bin/terraform")
        try #require(FileManager.default.isExecutableFile(atPath: url.path),
                     "Terraform 1.0.3 is not installed at \(url.path): run scripts/install-terraform.sh")
        return url
    }
}

/// Waits for a condition with a deadline, checking often: the daemon and terraform run in
/// other processes, so there is no event to await; a fixed sleep would be luck.
func eventually(_ what: String, seconds: Double = 120, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("timed out waiting for \(what)")
    throw TimedOut(what: what)
}

struct TimedOut: Error { let what: String }

/// The IPv4 loopback address with `port`.
func loopback(_ port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return address
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = loopback(0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    try #require(bound == 0)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

@discardableResult
func run(_ executable: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil,
         input: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try process.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// A delivery repository (one project `app`, environment `dev`), an agent config whose
/// terraform is a wrapper that can be told to stop before `plan` or `apply` at an exact,
/// observable point, and the daemon processes started on it.
final class DaemonWorld: @unchecked Sendable {
    let scratch: URL
    let work: URL
    let remote: URL
    let control: URL
    let stateDirectory: URL
    let configPath: String
    let storePath: String
    let port: Int
    let tokens = ["alice": "alice-token-for-tests", "bob": "bob-token-for-tests", "carol": "carol-token-for-tests"]
    /// The values in `secrets/dev-plan.env` and `secrets/dev-apply.env` (`devWithCredentials`).
    let planSecret = "plan-secret-\(UUID().uuidString.prefix(12))"
    let applySecret = "apply-secret-\(UUID().uuidString.prefix(12))"
    var applyCredentialsFile: URL { scratch.appendingPathComponent("secrets/dev-apply.env") }
    private var tick = 0
    private var prCount = 0
    var daemons: [Process] = []

    /// The environments in the agent config and the repo layout.
    enum Pipeline {
        /// `dev` only, approvals 1 by alice or bob; the tagger may approve.
        case devOnly
        /// dev → staging → prod (docs/CONTRACT.md §2): 1, 1 and 2 approvals; prod only by alice and bob;
        /// no environment lets the tagger approve, and no apply window limits prod.
        case devStagingProd
        /// `dev` as in `devOnly`, with plan and apply credentials files under `secrets/`.
        case devWithCredentials
        /// `dev` as in `devOnly` and `prod` without `promote_from`, one approval by alice or bob.
        case devAndProd

        var environments: [String] {
            switch self {
            case .devStagingProd: ["dev", "staging", "prod"]
            case .devAndProd: ["dev", "prod"]
            case .devOnly, .devWithCredentials: ["dev"]
            }
        }

        var agentConfig: String {
            switch self {
            case .devOnly:
                return """
                  dev:
                    serves: true
                    approvals: 1
                    approvers: [alice, bob]
                    tagger_may_approve: true
                """
            case .devWithCredentials:
                return Pipeline.devOnly.agentConfig + """

                    plan_credentials_file: secrets/dev-plan.env
                    apply_credentials_file: secrets/dev-apply.env
                """
            case .devAndProd:
                return Pipeline.devOnly.agentConfig + """

                  prod:
                    serves: true
                    approvals: 1
                    approvers: [alice, bob]
                    tagger_may_approve: true
                """
            case .devStagingProd:
                return """
                  dev:
                    serves: true
                    approvals: 1
                    approvers: [alice, bob, carol]
                    tagger_may_approve: false
                  staging:
                    serves: true
                    promote_from: dev
                    approvals: 1
                    approvers: [alice, bob, carol]
                    tagger_may_approve: false
                  prod:
                    serves: true
                    promote_from: staging
                    approvals: 2
                    approvers: [alice, bob]
                    tagger_may_approve: false
                """
            }
        }
    }

    /// - Parameters:
    ///   - agentExtraYAML: top-level keys added to the agent config.
    ///   - environmentExtraYAML: one line of keys added to every environment's policy.
    init(pipeline: Pipeline = .devOnly, agentExtraYAML: String = "", environmentExtraYAML: String = "") throws {
        scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-daemon-\(UUID().uuidString.prefix(12))", isDirectory: true)
        work = scratch.appendingPathComponent("work")
        remote = scratch.appendingPathComponent("remote.git")
        control = scratch.appendingPathComponent("control")
        stateDirectory = scratch.appendingPathComponent("tfstate")
        configPath = scratch.appendingPathComponent("agent.yaml").path
        storePath = scratch.appendingPathComponent("var/lockstep.sqlite").path
        port = try freePort()
        // Each environment writes only folders of its own: its state folder and the wrapper's
        // control folder (`control` for dev, `control-ENV` for the others).
        for dir in [control, stateDirectory] + pipeline.environments.flatMap({ environment in
            [stateDirectory.appendingPathComponent(environment), Self.controlFolder(environment, control: control)]
        }) {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        if pipeline == .devWithCredentials {
            let secrets = scratch.appendingPathComponent("secrets")
            try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
            try "DEV_PLAN_TOKEN=\(planSecret)\n".write(to: secrets.appendingPathComponent("dev-plan.env"), atomically: true, encoding: .utf8)
            try "DEV_APPLY_TOKEN=\(applySecret)\n".write(to: applyCredentialsFile, atomically: true, encoding: .utf8)
        }
        for step in ["plan", "apply"] {
            try #require(mkfifo(control.appendingPathComponent("\(step).fifo").path, 0o600) == 0)
        }
        // The wrapper: when `block-STEP` exists, it records its pid, says it started and
        // waits on a FIFO before running the real terraform; every real apply is counted.
        let wrapper = scratch.appendingPathComponent("terraform-wrapper.sh")
        try """
        #!/bin/bash
        ctl='\(control.path)'
        case "$1" in
          plan|apply)
            # Confined, each environment writes only its own control folder: found from the
            # state path its init recorded (.../tfstate/ENV/terraform.tfstate).
            env=$(basename "$(dirname "$(grep -o '/[^"]*/terraform.tfstate' .terraform/terraform.tfstate 2>/dev/null | head -n 1)")")
            case "$env" in staging|prod) ctl="$ctl-$env" ;; esac
            if [ -e "$ctl/block-$1" ]; then
              # Its pid as the test sees it: under lockstep-confine $$ is the pid inside the
              # command's PID namespace; /proc belongs to the daemon's namespace.
              read -r pid _ < /proc/self/stat
              echo "$pid" > "$ctl/$1.pid"
              : > "$ctl/$1.started"
              read -r _ < "$ctl/$1.fifo"
            fi
            if [ "$1" = apply ]; then echo apply >> "$ctl/apply-count"; fi
            ;;
        esac
        exec '\(try Paths.terraform().path)' "$@"

        """.write(to: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)

        var identities = "identities:\n"
        for (name, token) in tokens.sorted(by: { $0.key < $1.key }) {
            let hash = try run("/usr/bin/sha256sum", [], input: token).out.prefix(64)
            identities += "  \(name): {token_sha256: \(hash), emails: [\(name)@example.com]}\n"
        }
        try """
        repository:
          url: \(remote.path)
          branch: main
        mirror_dir: var/mirror
        poll_interval: 1s
        \(agentExtraYAML)
        terraform:
          binary: \(wrapper.path)
          provider_mirror: \(Paths.root.appendingPathComponent(".tools/terraform/mirror").path)
        store:
          sqlite: var/lockstep.sqlite
        listen: 127.0.0.1:\(port)
        environments:
        \(Self.grantingFolders(pipeline, state: stateDirectory, control: control, extra: environmentExtraYAML))
        \(identities)
        """.write(toFile: configPath, atomically: true, encoding: .utf8)

        try git(["init", "-q", "-b", "main", work.path], in: scratch)
        try git(["init", "-q", "--bare", remote.path], in: scratch)
        var layout = "projects:\n  app:\n    dir: app\n    environments:\n"
        var files = appFiles("0.0.0")
        for environment in pipeline.environments {
            layout += """
                  \(environment):
                    var_files: [app/\(environment).tfvars]
                    backend_config_files: [app/\(environment).backend.hcl]

            """
            files["app/\(environment).tfvars"] = "env = \"\(environment)\"\n"
            files["app/\(environment).backend.hcl"] = "path = \"\(stateFile(environment).path)\"\n"
        }
        files["lockstep.yaml"] = layout
        try write(files)
        try git(["commit", "-q", "-m", "initial layout"])
        try publish()
    }

    func appFiles(_ release: String) -> [String: String] {
        ["app/main.tf": """
        terraform {
          backend "local" {}
        }
        variable "env" {
          type = string
        }
        resource "null_resource" "app" {
          triggers = { release = "\(release)" }
          provisioner "local-exec" {
            command = "echo ${var.env}:\(release) >> \(stateDirectory.path)/${var.env}/applies.log"
          }
        }

        """]
    }

    func cleanup() {
        for daemon in daemons where daemon.isRunning {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
        }
        for step in ["plan", "apply"] { killBlocked(step) }
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: Git

    @discardableResult
    func git(_ arguments: [String], in directory: URL? = nil) throws -> String {
        tick += 1
        let when = "\(1_700_000_000 + 60 * tick) +0000"
        let result = try run("/usr/bin/git", arguments, in: directory ?? work, environment: [
            "PATH": "/usr/bin:/bin", "HOME": scratch.path, "LANG": "C", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_NAME": "Releaser", "GIT_COMMITTER_EMAIL": "dave@example.com", "GIT_COMMITTER_DATE": when,
            "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "commit.gpgSign", "GIT_CONFIG_VALUE_0": "false",
            "GIT_CONFIG_KEY_1": "tag.gpgSign", "GIT_CONFIG_VALUE_1": "false",
        ])
        try #require(result.status == 0, "git \(arguments) failed: \(result.err)")
        return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func write(_ files: [String: String]) throws {
        for (path, text) in files {
            let url = work.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try git(["add", "-A"])
    }

    func publish() throws {
        try git(["push", "-q", "--force", "--prune", remote.path, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
    }

    /// A merged pull request changing the release (and adding `extra` files), tagged
    /// `dev/vVERSION` and published.
    func release(_ version: String, extra: [String: String] = [:], message: String? = nil) throws {
        prCount += 1
        try git(["checkout", "-q", "-b", "feature-\(prCount)"])
        try write(appFiles(version).merging(extra) { _, new in new })
        try git(["commit", "-q", "-m", "release \(version)"])
        try git(["checkout", "-q", "main"])
        try git(["merge", "-q", "--no-ff", "-m", "Merge feature-\(prCount)", "feature-\(prCount)"])
        try git(["tag", "-a", "-m", message ?? "dev/v\(version)", "dev/v\(version)"])
        try publish()
    }

    // MARK: The wrapper's control files

    func block(_ step: String) throws {
        try Data().write(to: control.appendingPathComponent("block-\(step)"))
    }

    func unblockFuture(_ step: String) {
        try? FileManager.default.removeItem(at: control.appendingPathComponent("block-\(step)"))
    }

    func started(_ step: String) -> Bool {
        FileManager.default.fileExists(atPath: control.appendingPathComponent("\(step).started").path)
    }

    /// Lets a blocked wrapper go on to the real terraform.
    func release(blocked step: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: control.appendingPathComponent("\(step).fifo").path))
        handle.write(Data("go\n".utf8))
        try handle.close()
    }

    /// Kills a wrapper left blocked by a killed daemon (it is in its own process group).
    func killBlocked(_ step: String) {
        let pidFile = control.appendingPathComponent("\(step).pid")
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        kill(pid, SIGKILL)
        try? FileManager.default.removeItem(at: pidFile)
        try? FileManager.default.removeItem(at: control.appendingPathComponent("\(step).started"))
    }

    var applyCount: Int {
        ["dev", "staging", "prod"].reduce(0) { count, environment in
            let file = Self.controlFolder(environment, control: control).appendingPathComponent("apply-count")
            return count + ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
    }

    // MARK: The daemon

    var logPath: String { scratch.appendingPathComponent("daemon-\(daemons.count).log").path }

    /// Starts `lockstep serve` (stderr to a log file); `environment` adds variables such as
    /// `NOTIFY_SOCKET`; `executable` replaces the built binary (for example a copy of it in
    /// another folder, beside a `lockstep-confine` of the test's choosing).
    @discardableResult
    func startDaemon(executable: URL? = nil, environment: [String: String] = [:], arguments: [String] = []) throws -> Process {
        let process = Process()
        process.executableURL = try executable ?? Paths.lockstep()
        process.arguments = ["serve", "--config", configPath] + arguments
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": scratch.path, "LANG": "C"]
            .merging(environment) { _, new in new }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        daemons.append(process)
        return process
    }

    /// Starts a daemon and waits until `/readyz` answers 200.
    @discardableResult
    func startReadyDaemon(arguments: [String] = []) async throws -> Process {
        let daemon = try startDaemon(arguments: arguments)
        try await eventually("the daemon to be ready") {
            #expect(daemon.isRunning, "the daemon exited: \(self.daemonLogs)")
            guard daemon.isRunning else { throw TimedOut(what: "daemon exited") }
            return (try? http("GET", "/readyz"))?.status == 200
        }
        return daemon
    }

    var daemonLogs: String {
        (0..<daemons.count).map { index in
            (try? String(contentsOfFile: scratch.appendingPathComponent("daemon-\(index).log").path, encoding: .utf8)) ?? ""
        }.joined(separator: "\n---\n")
    }

    func kill9(_ daemon: Process) {
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
    }
}
