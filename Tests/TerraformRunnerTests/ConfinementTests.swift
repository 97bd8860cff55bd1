import Foundation
import Logging
import Testing
@testable import TerraformRunner

/// Attacks by code from the delivery repository on the agent's own files, tried against real
/// terraform with and without ``Confinement`` (docs/THREAT-MODEL.md §1.2: plan never sees apply credentials; the
/// store, the plugin cache and other runs are not terraform's to touch). Each attack is first
/// shown to work unconfined, so a test that passes proves the confinement stopped it.
@Suite("TerraformRunner confinement", .serialized)
struct ConfinementTests {
    /// The launcher built with the tests (`swift build --build-tests` builds every product).
    static func launcher() throws -> URL {
        let url = Fixtures.repositoryRoot.appendingPathComponent(".build/debug/lockstep-confine")
        try #require(FileManager.default.isExecutableFile(atPath: url.path), "build first: \(url.path) is missing")
        return url
    }

    /// An agent's private files next to the run: an apply credentials file and a store.
    struct AgentFiles {
        let secrets: URL
        let applyCredentials: URL
        let secret: String
        let store: URL
        let storeBytes = Data("SQLite format 3\0 the store's bytes".utf8)

        init(_ scratch: URL) throws {
            secrets = scratch.appendingPathComponent("secrets")
            applyCredentials = secrets.appendingPathComponent("prod-apply.env")
            secret = "apply-secret-\(UUID().uuidString.prefix(12))"
            store = scratch.appendingPathComponent("var/lockstep.sqlite")
            for folder in [secrets, store.deletingLastPathComponent()] {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            }
            try Data("CLOUD_TOKEN=\(secret)\n".utf8).write(to: applyCredentials)
            try storeBytes.write(to: store)
        }

        var hidden: [URL] { [secrets, store.deletingLastPathComponent()] }
    }

    static func runner(scratch: URL, confinement: Confinement?, logs: LogRecorder = LogRecorder()) throws -> TerraformRunner {
        let base = try Fixtures.runner(scratch: scratch, logs: logs)
        var configuration = base.configuration
        configuration.confinement = confinement
        return TerraformRunner(configuration: configuration, logger: .init(label: "test") { _ in logs })
    }

    @Test("plan-time file() of the apply credentials: unconfined the secret reaches the plan; confined the plan fails and the secret is nowhere")
    func planCannotReadApplyCredentials() async throws {
        let scratch = try Fixtures.scratch()
        let agent = try AgentFiles(scratch)
        let project = try Fixtures.project(scratch, files: [
            "main.tf": """
            output "leak" { value = file("\(agent.applyCredentials.path)") }
            """,
        ])
        let planFile = scratch.appendingPathComponent("plan.tfplan")

        // Unconfined, the attack works: the apply secret is in the saved plan's outputs.
        let open = try Self.runner(scratch: scratch.appendingPathComponent("open"), confinement: nil)
        let invocation = TerraformRunner.Invocation(directory: project, writable: [project, planFile])
        #expect(try await open.initialize(invocation).outcome == .succeeded)
        let leaked = try await open.plan(invocation, planFile: planFile)
        let leakedPlan = try #require(leaked.plan, "\(leaked.command.output)")
        let shown = try await open.show(invocation, planFile: leakedPlan.file)
        #expect(shown.rendering.contains(agent.secret) || String(decoding: shown.redactedJSON, as: UTF8.self).contains(agent.secret),
                "the attack must work without confinement, or this test proves nothing")
        try? FileManager.default.removeItem(at: project.appendingPathComponent(".terraform"))

        // Confined, file() is refused by the kernel and the plan fails.
        let logs = LogRecorder()
        let sink = LineRecorder()
        let confined = try Self.runner(
            scratch: scratch.appendingPathComponent("confined"),
            confinement: Confinement(launcher: try Self.launcher(), hiddenPaths: agent.hidden), logs: logs)
        var guarded = invocation
        guarded.output = sink
        #expect(try await confined.initialize(guarded).outcome == .succeeded)
        let refused = try await confined.plan(guarded, planFile: planFile)
        #expect(refused.plan == nil, "a plan that read the apply credentials must not be saved")
        #expect(refused.command.outcome != .succeeded)
        #expect(refused.command.output.lowercased().contains("permission denied"), "\(refused.command.output)")
        for (place, text) in ["output": refused.command.output, "sink": sink.text, "logs": logs.text] {
            #expect(!text.contains(agent.secret), "the apply secret leaked into \(place)")
        }
    }

    @Test("apply-time local-exec cannot replace the provider it runs, plant one in the plugin cache, write the store or write outside its run; its own folder stays writable")
    func applyCannotTouchAgentFiles() async throws {
        let scratch = try Fixtures.scratch()
        let agent = try AgentFiles(scratch)
        let outside = scratch.appendingPathComponent("outside.txt")
        // A copy of the provider mirror, so a failed defence could not damage the shared one.
        let mirror = scratch.appendingPathComponent("mirror")
        try FileManager.default.copyItem(at: Fixtures.mirror, to: mirror)
        let logs = LogRecorder()
        var runner = try Self.runner(
            scratch: scratch.appendingPathComponent("agent"),
            confinement: Confinement(launcher: try Self.launcher(), hiddenPaths: agent.hidden), logs: logs)
        var configuration = runner.configuration
        configuration.providerInstallation = .filesystemMirror(mirror)
        runner = TerraformRunner(configuration: configuration, logger: .init(label: "test") { _ in logs })
        let cache = runner.pluginCacheDirectory
        // Each success marker is printed as computed text ($((1+1)) → 2), so terraform's echo
        // of the command itself never contains it.
        let project = try Fixtures.project(scratch, files: [
            "main.tf": """
            resource "null_resource" "attack" {
              provisioner "local-exec" {
                command = <<-EOT
                  for f in $(find -L .terraform/providers -type f); do cp /bin/sh "$(readlink -f "$f")" && echo "provider-replaced-$((1+1))"; done
                  echo planted > '\(cache.path)/planted' && echo "cache-planted-$((1+1))"
                  echo pwned > '\(agent.store.path)' && echo "store-written-$((1+1))"
                  echo pwned > '\(outside.path)' && echo "outside-written-$((1+1))"
                  cat '\(agent.applyCredentials.path)'
                  echo own-folder > own.txt && echo "own-folder-written-$((1+1))"
                  true
                EOT
              }
            }
            """,
        ])
        let planFile = scratch.appendingPathComponent("plan.tfplan")
        let invocation = TerraformRunner.Invocation(directory: project, writable: [project, planFile])
        #expect(try await runner.initialize(invocation).outcome == .succeeded)
        let providers = try regularFiles(mirror) + regularFiles(cache)
        try #require(providers.contains { $0.lastPathComponent.hasPrefix("terraform-provider-null") })
        let before = try providers.map { try Data(contentsOf: $0) }

        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
        let applied = try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest)
        #expect(applied.outcome == .succeeded, "\(applied.output)")
        #expect(applied.output.contains("own-folder-written-2"), "the run's own folder stays writable: \(applied.output)")
        #expect(applied.output.contains("Permission denied"), "\(applied.output)")
        for marker in ["provider-replaced-2", "cache-planted-2", "store-written-2", "outside-written-2"] {
            #expect(!applied.output.contains(marker), "\(marker): \(applied.output)")
        }
        #expect(try providers.map { try Data(contentsOf: $0) } == before, "the provider terraform runs is unchanged")
        #expect(!FileManager.default.fileExists(atPath: cache.appendingPathComponent("planted").path))
        #expect(try Data(contentsOf: agent.store) == agent.storeBytes, "the store is unchanged")
        #expect(!FileManager.default.fileExists(atPath: outside.path))
        #expect(!applied.output.contains(agent.secret) && !logs.text.contains(agent.secret))
    }

    @Test("verify commands run confined too: a hidden file cannot be read, the granted ones can")
    func verifyCommandsConfined() async throws {
        let scratch = try Fixtures.scratch()
        let agent = try AgentFiles(scratch)
        let granted = scratch.appendingPathComponent("outputs.json")
        try Data(#"{"ok":true}"#.utf8).write(to: granted)
        let confinement = Confinement(launcher: try Self.launcher(), hiddenPaths: agent.hidden + [scratch])
        let sink = LineRecorder()
        let result = try await ExternalProgram.run(ExternalProgram.Request(
            executable: "/bin/sh",
            arguments: ["-c", "cat '\(granted.path)'; cat '\(agent.applyCredentials.path)' || echo refused"],
            directory: URL(fileURLWithPath: "/"), environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(30),
            output: sink, confinement: confinement, readable: [granted]))
        #expect(result.outcome == .succeeded, "\(result.output)")
        #expect(sink.text.contains(#"{"ok":true}"#), "\(sink.text)")
        #expect(sink.text.contains("refused"))
        #expect(!sink.text.contains(agent.secret))
    }

    @Test("the CLI config is not rewritten (same inode) by a later command: a confined command that started before could not read a new inode")
    func cliConfigKeptInPlace() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Self.runner(scratch: scratch, confinement: Confinement(launcher: try Self.launcher(), hiddenPaths: []))
        _ = try await runner.version()
        let first = try FileManager.default.attributesOfItem(atPath: runner.cliConfigFile.path)[.systemFileNumber] as? NSNumber
        _ = try await runner.version()
        let second = try FileManager.default.attributesOfItem(atPath: runner.cliConfigFile.path)[.systemFileNumber] as? NSNumber
        #expect(first != nil && first == second)
    }

    @Test("a launcher that cannot confine is reported by check(), naming why")
    func missingLauncher() async throws {
        let confinement = Confinement(launcher: URL(fileURLWithPath: "/nonexistent/lockstep-confine"), hiddenPaths: [])
        await #expect {
            _ = try await confinement.check()
        } throws: { error in
            (error as? TerraformRunnerError)?.code == .confinementUnavailable
                && "\(error)".contains("/nonexistent/lockstep-confine")
        }
        let answer = try await Confinement(launcher: try Self.launcher(), hiddenPaths: []).check()
        #expect(answer.hasPrefix("landlock abi "))
    }

    private func regularFiles(_ folder: URL) throws -> [URL] {
        let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey])
        var files: [URL] = []
        while let url = enumerator?.nextObject() as? URL {
            if (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true { files.append(url) }
        }
        return files
    }
}
