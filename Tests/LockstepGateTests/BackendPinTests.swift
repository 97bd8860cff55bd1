import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Synchronization
import Testing
@testable import LockstepGate

/// moto's S3 server on a port of its own (installed by scripts/install-python-tools.sh), stopped by `stop()`.
private final class MotoServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    private static var venv: URL {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root.appendingPathComponent(".tools/moto-venv/bin")
    }

    init() throws {
        let server = Self.venv.appendingPathComponent("moto_server")
        try #require(FileManager.default.isExecutableFile(atPath: server.path), "moto is not installed: run scripts/install-python-tools.sh")
        process.executableURL = server
        process.arguments = ["-H", "127.0.0.1", "-p", "0"]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory(), "PYTHONUNBUFFERED": "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // The server prints the port it bound once it listens; read until then. A server that
        // says nothing for a minute is stopped, which ends the read.
        let watchdog = DispatchWorkItem { [process] in if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        defer { watchdog.cancel() }
        var seen = ""
        var found: Int?
        while found == nil {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
            if let range = seen.range(of: "Running on http://127.0.0.1:") {
                let digits = seen[range.upperBound...].prefix { $0.isNumber }
                if seen[range.upperBound...].dropFirst(digits.count).first?.isNumber == false { found = Int(digits) }
            }
        }
        guard let found else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw GitCommandFailed(arguments: ["moto_server"], stderr: seen)
        }
        port = found
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Runs boto3 (moto's own dependency) against the server: `script` gets a client `s3`.
    @discardableResult
    func boto(_ script: String) throws -> String {
        let process = Process()
        process.executableURL = Self.venv.appendingPathComponent("python")
        process.arguments = ["-c", """
            import boto3
            s3 = boto3.client("s3", endpoint_url="\(endpoint)", region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
            \(script)
            """]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "boto3: \(text)")
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func keys(in bucket: String) throws -> [String] {
        try boto("print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket='\(bucket)').get('Contents', [])))")
            .split(separator: "\n").map(String.init)
    }

    /// SIGKILL: werkzeug's development server does not always end on SIGTERM.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite("Gate: the agent pins each environment's state backend")
struct BackendPinTests {
    @Test("local backend: the pinned path plans and applies; a pull request that points dev's state elsewhere gets no plan, and the refusal names the difference")
    func localBackend() async throws {
        let world = try World(environmentsYAML: """
              dev:
                serves: true
                approvers: [alice]
                tagger_may_approve: true
                backend:
                  type: local
                  settings:
                    path: "{state}/dev.tfstate"
            """, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.0.0")

        // The pull request moves dev's state to a file of its choosing.
        let elsewhere = world.stateDirectory.appendingPathComponent("attacker.tfstate").path
        let commit = try world.mergePR(files: world.appFiles(release: "1.1.0")
            .merging(["app/dev.backend.hcl": "path = \"\(elsewhere)\"\n"]) { _, new in new }, message: "move state")
        try world.tag("dev/v1.1.0", at: commit)
        try world.publish()
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.1.0")
        #expect(run.state == .failed)
        #expect(run.plan == nil && run.planDigest == nil)
        let reason = try await world.store.transitions(of: run.id).last?.transition.reason.detail ?? ""
        #expect(reason.contains("the backend terraform resolved is not the one the agent config pins for dev"), "\(reason)")
        // Reviewers see the agent folder by its role (the daemon log keeps the path).
        #expect(reason.contains("path is \"<agent folder>/state/attacker.tfstate\", pinned \"<agent folder>/state/dev.tfstate\""), "\(reason)")
        #expect(reason.contains("terraform plan was not started"))
        #expect(!FileManager.default.fileExists(atPath: elsewhere))
        #expect(try world.applied("dev")?["release"] == "1.0.0")
    }

    @Test("S3 on a local moto server: the pinned bucket and key plan and apply; a pull request pointing prod's state at another bucket gets no plan and writes nothing there")
    func s3Backend() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        try moto.boto("s3.create_bucket(Bucket='lockstep-state'); s3.create_bucket(Bucket='attacker-state')")
        let creds = FileManager.default.temporaryDirectory.appendingPathComponent("lsmoto-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: creds, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: creds) }
        for name in ["plan", "apply"] {
            try Data("AWS_ACCESS_KEY_ID=\(name)-key\nAWS_SECRET_ACCESS_KEY=\(name)-secret\n".utf8)
                .write(to: creds.appendingPathComponent("\(name).env"))
        }
        let world = try World(environmentsYAML: """
              prod:
                serves: true
                approvers: [alice]
                tagger_may_approve: true
                plan_credentials_file: \(creds.path)/plan.env
                apply_credentials_file: \(creds.path)/apply.env
                backend:
                  type: s3
                  settings:
                    bucket: lockstep-state
                    key: "{project}/prod.tfstate"
                    endpoint: \(moto.endpoint)
                    region: us-east-1
                    force_path_style: "true"
                  unpinned: [skip_credentials_validation, skip_metadata_api_check, skip_region_validation]
            """, environments: ["prod"])
        defer { world.cleanup() }
        func s3Files(release: String, bucket: String, key: String, extra: String = "") -> [String: String] {
            var files = world.appFiles(release: release)
            files["app/main.tf"] = files["app/main.tf"]?.replacingOccurrences(of: "backend \"local\" {}", with: "backend \"s3\" {}")
            files["app/prod.backend.hcl"] = """
                bucket = "\(bucket)"
                key = "\(key)"
                region = "us-east-1"
                endpoint = "\(moto.endpoint)"
                force_path_style = true
                skip_credentials_validation = true
                skip_metadata_api_check = true
                skip_region_validation = true
                \(extra)
                """
            return files
        }
        let first = try world.mergePR(files: s3Files(release: "1.0.0", bucket: "lockstep-state", key: "app/prod.tfstate"),
                                      message: "state in S3")
        try world.tag("prod/v1.0.0", at: first)
        try world.publish()
        #expect(try await world.deploy("prod", "1.0.0") == .applied(.verified))
        #expect(try moto.keys(in: "lockstep-state") == ["app/prod.tfstate"])

        let moved = s3Files(release: "1.1.0", bucket: "attacker-state", key: "app/prod.tfstate")
        let second = try world.mergePR(files: moved, message: "move the state")
        try world.tag("prod/v1.1.0", at: second)
        try world.publish()
        _ = try await world.gate.reconcile()
        let run = try await world.run("prod", "1.1.0")
        #expect(run.state == .failed && run.plan == nil)
        let reason = try await world.store.transitions(of: run.id).last?.transition.reason.detail ?? ""
        #expect(reason.contains("bucket is \"attacker-state\", pinned \"lockstep-state\""), "\(reason)")
        #expect(!reason.contains("plan-secret") && !reason.contains("apply-secret"))
        #expect(try moto.keys(in: "attacker-state").isEmpty)
        #expect(try moto.keys(in: "lockstep-state") == ["app/prod.tfstate"])

        // Same bucket and key, but a setting the pin does not name (here a lock table that would
        // be created elsewhere): refused too, naming the setting.
        let sneaky = try world.mergePR(files: s3Files(release: "1.2.0", bucket: "lockstep-state", key: "app/prod.tfstate",
                                                      extra: "dynamodb_table = \"elsewhere\""), message: "add a lock table")
        try world.tag("prod/v1.2.0", at: sneaky)
        try world.publish()
        _ = try await world.gate.reconcile()
        let third = try await world.run("prod", "1.2.0")
        let why = try await world.store.transitions(of: third.id).last?.transition.reason.detail ?? ""
        #expect(third.state == .failed, "\(why)")
        #expect(why.contains("dynamodb_table is set to \"elsewhere\", which the pin neither names nor lists as unpinned"), "\(why)")
    }
}
