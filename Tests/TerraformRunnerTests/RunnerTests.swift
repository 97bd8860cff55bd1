import Foundation
import LockstepCore
import Testing
@testable import TerraformRunner

/// Behaviour of the runner against the pinned Terraform 1.0.3 and real null_resource configurations.
@Suite("TerraformRunner against terraform 1.0.3")
struct RunnerTests {
    @Test("version -json is detected and recorded (tool name and version)")
    func versionDetected() async throws {
        let scratch = try Fixtures.scratch()
        let version = try await Fixtures.runner(scratch: scratch).version()
        #expect(version.tool == "terraform")
        #expect(version.version == (try SemanticVersion("1.0.3")))
        #expect(version.isAtLeast(1, 0) && !version.isAtLeast(1, 1))
    }

    @Test("a version terraform reports that is not a semantic version is refused with a malformed-output error, not recorded")
    func unparseableVersionRefused() async throws {
        let scratch = try Fixtures.scratch()
        // A stand-in binary that answers `version -json` with a version that does not parse.
        let fake = scratch.appendingPathComponent("fake-terraform")
        try "#!/bin/sh\necho '{\"terraform_version\":\"1.0.x-local\",\"platform\":\"linux_amd64\"}'\n"
            .write(to: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: fake.path)
        let runner = try Fixtures.runner(scratch: scratch, executable: fake)
        let error = await #expect(throws: TerraformRunnerError.self) { try await runner.version() }
        #expect(error?.code == .malformedOutput)
        #expect(error?.description.contains("not a semantic version") == true)
    }

    @Test("init + plan + show + apply: typed summary, digest, 0700/0600, detailed exit code, deletes and replaces")
    func fullCycle() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            resource "null_resource" "keep" { triggers = { v = "1" } }
            resource "null_resource" "gone" {}
            resource "null_resource" "swap" { triggers = { v = "a" } }
            output "answer" { value = "42" }
            """])
        let invocation = TerraformRunner.Invocation(directory: directory)
        #expect(try await runner.initialize(invocation).outcome == .succeeded)

        let planFile = scratch.appendingPathComponent("plans/first.tfplan")
        let first = try await runner.plan(invocation, planFile: planFile)
        #expect(first.command.outcome == .succeeded)
        let saved = try #require(first.plan)
        #expect(saved.changes == .changesPresent)
        #expect(saved.digest == (try TerraformRunner.digest(ofFileAt: planFile)))
        #expect(mode(of: planFile) == 0o600)
        #expect(mode(of: planFile.deletingLastPathComponent()) == 0o700)
        #expect(mode(of: scratch) == 0o700)

        let shown = try await runner.show(invocation, planFile: planFile)
        #expect(shown.plan.formatVersion == "0.2")
        #expect(shown.plan.create == 3)
        #expect(shown.plan.delete + shown.plan.update + shown.plan.replace == 0)
        #expect(shown.plan.resourceTypes == ["null_resource"])
        #expect(shown.plan.outputChanges == [.init(name: "answer", action: .create)])
        #expect(shown.rendering.contains("null_resource.swap will be created"))

        let applied = try await runner.apply(invocation, planFile: planFile, expectedDigest: saved.digest)
        #expect(applied.outcome == .succeeded)
        #expect(!FileManager.default.fileExists(atPath: planFile.path), "the plan file is deleted after apply")

        let again = try await runner.plan(invocation, planFile: planFile)
        #expect(again.plan?.changes == .noChanges, "exit code 0 of -detailed-exitcode means no changes")

        try """
            resource "null_resource" "keep" { triggers = { v = "1" } }
            resource "null_resource" "swap" { triggers = { v = "b" } }
            """.write(to: directory.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let changed = try await runner.plan(invocation, planFile: planFile)
        let summary = try await runner.show(invocation, planFile: planFile).plan
        #expect(changed.plan?.changes == .changesPresent)
        #expect(summary.delete == 1 && summary.replace == 1 && summary.noOp == 1 && summary.create == 0)
        #expect(summary.deletedAddresses == ["null_resource.gone"])
        #expect(summary.replacedAddresses == ["null_resource.swap"])
        #expect(summary.outputChanges == [.init(name: "answer", action: .delete)])
    }

    @Test("plan refuses a plan directory other users can read")
    func planDirectoryMustBePrivate() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: ["main.tf": Fixtures.nullResources(1)])
        let invocation = TerraformRunner.Invocation(directory: directory)
        _ = try await runner.initialize(invocation)
        let open = scratch.appendingPathComponent("open")
        try FileManager.default.createDirectory(at: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let error = await #expect(throws: TerraformRunnerError.self) {
            _ = try await runner.plan(invocation, planFile: open.appendingPathComponent("p.tfplan"))
        }
        #expect(error?.code == .insecurePermissions)
    }

    @Test("concurrent inits of several directories sharing one plugin cache all succeed")
    func concurrentInits() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directories = try (0..<4).map { try Fixtures.project(scratch, "p\($0)", files: ["main.tf": Fixtures.nullResources(1)]) }
        let outcomes = try await withThrowingTaskGroup(of: CommandOutcome.self) { group in
            for directory in directories {
                group.addTask { try await runner.initialize(.init(directory: directory)).outcome }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes == Array(repeating: .succeeded, count: 4))
        for directory in directories {
            let provider = directory.appendingPathComponent(
                ".terraform/providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")
            #expect(FileManager.default.isExecutableFile(atPath: provider.path))
            let plan = try await runner.plan(.init(directory: directory), planFile: scratch.appendingPathComponent("\(directory.lastPathComponent).tfplan"))
            #expect(plan.plan?.changes == .changesPresent)
        }
    }

    @Test("init waits while another OS process holds the plugin cache lock and initialises against the same cache",
          .timeLimit(.minutes(2)))
    func pluginCacheLockAcrossProcesses() async throws {
        let flockTool = try #require(["/usr/bin/flock", "/bin/flock"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                     "flock(1) from util-linux is needed to play the other process")
        let scratch = try Fixtures.scratch()
        let logs = LogRecorder()
        let runner = try Fixtures.runner(scratch: scratch, logs: logs)
        let ours = try Fixtures.project(scratch, "ours", files: ["main.tf": Fixtures.nullResources(1)])
        let theirs = try Fixtures.project(scratch, "theirs", files: ["main.tf": Fixtures.nullResources(1)])
        _ = try await runner.version()  // writes the CLI config naming the shared cache
        let lockFile = runner.pluginCacheDirectory.appendingPathComponent(PluginCacheLock.fileName)

        // The other process (as a second daemon or `lockstep validate` would):
        // takes the lock, says so, waits for us, then runs a real terraform
        // init against the same cache while still holding it.
        let other = Process()
        other.executableURL = URL(fileURLWithPath: flockTool)
        other.arguments = [lockFile.path, "/bin/sh", "-c",
                           "echo locked; cat > /dev/null; exec \"$0\" init -input=false -no-color > init.log 2>&1",
                           try Fixtures.pinnedTerraform().path]
        other.currentDirectoryURL = theirs
        let otherHome = scratch.appendingPathComponent("other-home")
        try FileManager.default.createDirectory(at: otherHome, withIntermediateDirectories: false)
        other.environment = try runner.environment(for: .init(directory: theirs), home: otherHome)
        let input = Pipe(), output = Pipe()
        other.standardInput = input
        other.standardOutput = output
        try other.run()
        var said = Data()
        while !String(decoding: said, as: UTF8.self).contains("locked") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            said.append(chunk)
        }
        try #require(String(decoding: said, as: UTF8.self).contains("locked"), "the other process holds the lock")

        // Whichever comes first: our init reporting that it waits, or our init finishing.
        let (events, sender) = AsyncStream.makeStream(of: String.self)
        let forward = Task { for await message in logs.messages { sender.yield(message) } }
        let initialization = Task {
            defer { sender.yield("init finished") }
            return try await runner.initialize(.init(directory: ours))
        }
        var first: String?
        for await event in events where event.contains("waiting for the plugin cache lock") || event == "init finished" {
            first = event
            break
        }
        forward.cancel()
        #expect(first?.contains("waiting for the plugin cache lock") == true,
                "our init ran while another process held the plugin cache lock")
        #expect(!FileManager.default.fileExists(atPath: ours.appendingPathComponent(".terraform").path),
                "terraform was not started while the lock was held elsewhere")

        try input.fileHandleForWriting.close()  // let the other process init, then release
        let result = try await initialization.value
        other.waitUntilExit()
        #expect(other.terminationStatus == 0, "the other process's init succeeded")
        #expect(result.outcome == .succeeded)
        for directory in [ours, theirs] {
            let provider = directory.appendingPathComponent(
                ".terraform/providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")
            #expect(FileManager.default.isExecutableFile(atPath: provider.path))
        }
    }

    @Test("backend config files are passed through to init")
    func backendConfigFiles() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: [
            "main.tf": "terraform {\n  backend \"local\" {}\n}\n" + Fixtures.nullResources(1),
            "backend.hcl": "path = \"custom.tfstate\"\n",
        ])
        let invocation = TerraformRunner.Invocation(directory: directory)
        let initResult = try await runner.initialize(invocation, backendConfigFiles: [directory.appendingPathComponent("backend.hcl")])
        #expect(initResult.outcome == .succeeded)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
        #expect(try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest).outcome == .succeeded)
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("custom.tfstate").path))
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("terraform.tfstate").path))
    }

    @Test("apply refuses a plan whose digest changed, and deletes it anyway")
    func digestMismatch() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: ["main.tf": Fixtures.nullResources(1)])
        let invocation = TerraformRunner.Invocation(directory: directory)
        _ = try await runner.initialize(invocation)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
        let handle = try FileHandle(forWritingTo: planFile)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0]))
        try handle.close()
        let error = await #expect(throws: TerraformRunnerError.self) {
            _ = try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest)
        }
        #expect(error?.code == .planDigestMismatch)
        #expect(!FileManager.default.fileExists(atPath: planFile.path))
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("terraform.tfstate").path),
                "nothing was applied")
    }

    @Test("a plan made before another apply moved the state is classified as stale")
    func stalePlan() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: [
            "main.tf": "variable \"v\" {}\nresource \"null_resource\" \"r\" { triggers = { v = var.v } }\n",
        ])
        func invocation(_ value: String) -> TerraformRunner.Invocation {
            .init(directory: directory, environment: ["TF_VAR_v": value])
        }
        _ = try await runner.initialize(invocation("0"))
        let base = scratch.appendingPathComponent("base.tfplan")
        let basePlan = try #require(try await runner.plan(invocation("0"), planFile: base).plan)
        #expect(try await runner.apply(invocation("0"), planFile: base, expectedDigest: basePlan.digest).outcome == .succeeded)

        let planA = scratch.appendingPathComponent("a.tfplan"), planB = scratch.appendingPathComponent("b.tfplan")
        let a = try #require(try await runner.plan(invocation("a"), planFile: planA).plan)
        let b = try #require(try await runner.plan(invocation("b"), planFile: planB).plan)
        #expect(try await runner.apply(invocation("a"), planFile: planA, expectedDigest: a.digest).outcome == .succeeded)
        let stale = try await runner.apply(invocation("b"), planFile: planB, expectedDigest: b.digest)
        #expect(stale.outcome == .stalePlan)
        #expect(!FileManager.default.fileExists(atPath: planB.path), "a stale plan is deleted too")
    }

    @Test("a state lock held by another terraform process is classified with its lock id")
    func stateLockHeld() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: ["main.tf": Fixtures.nullResources(1)])
        let invocation = TerraformRunner.Invocation(directory: directory)
        _ = try await runner.initialize(invocation)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)

        // `terraform console` holds the state lock until its stdin closes.
        let holder = Process()
        holder.executableURL = try Fixtures.pinnedTerraform()
        holder.arguments = ["console", "-no-color"]
        holder.currentDirectoryURL = directory
        holder.environment = try runner.environment(for: invocation, home: scratch)
        let stdin = Pipe()
        holder.standardInput = stdin
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        try holder.run()
        defer {
            try? stdin.fileHandleForWriting.close()
            holder.waitUntilExit()
        }
        let lockInfo = directory.appendingPathComponent(".terraform.tfstate.lock.info")
        let deadline = ContinuousClock.now + .seconds(30)
        while !FileManager.default.fileExists(atPath: lockInfo.path), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))  // polling for a condition, with a deadline
        }
        struct Info: Decodable { var ID: String }
        let info = try JSONDecoder().decode(Info.self, from: try Data(contentsOf: lockInfo))

        let result = try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest)
        #expect(result.outcome == .stateLocked(lockID: info.ID))
        #expect(result.outcome.isRetryable)
        #expect(!FileManager.default.fileExists(atPath: planFile.path))
    }

    @Test("a timeout interrupts terraform, releases the lock and leaves no process behind")
    func timeout() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch, gracePeriod: .seconds(5))
        let marker = "31.\(Int.random(in: 100_000...999_999))"
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            resource "null_resource" "slow" {
              provisioner "local-exec" { command = "sleep \(marker)" }
            }
            """])
        let invocation = TerraformRunner.Invocation(directory: directory)
        _ = try await runner.initialize(invocation)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
        var timed = invocation
        timed.timeout = .seconds(3)
        let result = try await runner.apply(timed, planFile: planFile, expectedDigest: plan.digest)
        #expect(result.outcome == .timedOut)
        #expect(processes(containing: "sleep \(marker)").isEmpty, "no orphaned local-exec child")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent(".terraform.tfstate.lock.info").path),
                "SIGINT let terraform stop cleanly and remove its lock")
        #expect(!FileManager.default.fileExists(atPath: planFile.path))
        let next = try await runner.plan(invocation, planFile: planFile)
        #expect(next.command.outcome == .succeeded, "the state lock is free again")
    }

    @Test("cancelling the calling task interrupts terraform and leaves no process behind")
    func cancellation() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch, gracePeriod: .seconds(5))
        let marker = "32.\(Int.random(in: 100_000...999_999))"
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            resource "null_resource" "slow" {
              provisioner "local-exec" { command = "sleep \(marker)" }
            }
            """])
        let base = TerraformRunner.Invocation(directory: directory)
        _ = try await runner.initialize(base)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(base, planFile: planFile).plan)

        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        var invocation = base
        invocation.output = ClosureOutputSink { line in
            if line.text.contains("Provisioning with 'local-exec'") { startedContinuation.yield() }
        }
        let task = Task { try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest) }
        var iterator = started.makeAsyncIterator()
        _ = await iterator.next()
        task.cancel()
        let result = try await task.value
        #expect(result.outcome == .cancelled)
        #expect(processes(containing: "sleep \(marker)").isEmpty, "no orphaned local-exec child")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent(".terraform.tfstate.lock.info").path),
                "SIGINT let terraform release its lock")
        let next = try await runner.plan(base, planFile: planFile)
        #expect(next.command.outcome == .succeeded, "the state lock is free again")
    }

    @Test("validate returns terraform's diagnostics as data")
    func validate() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let good = try Fixtures.project(scratch, "good", files: ["main.tf": Fixtures.nullResources(2)])
        let bad = try Fixtures.project(scratch, "bad", files: ["main.tf": """
            resource "null_resource" "r" {
              triggers = { v = var.undeclared }
            }
            """])
        let ok = try await runner.validate(.init(directory: good))
        #expect(ok.valid && ok.diagnostics.isEmpty)
        let failed = try await runner.validate(.init(directory: bad))
        #expect(!failed.valid)
        let diagnostic = try #require(failed.diagnostics.first)
        #expect(diagnostic.severity == "error")
        #expect(diagnostic.summary == "Reference to undeclared input variable")
        #expect(diagnostic.filename == "main.tf" && diagnostic.line == 2)
        #expect(!FileManager.default.fileExists(atPath: bad.appendingPathComponent("terraform.tfstate").path))
    }

    @Test("output is streamed line by line while memory keeps only a bounded tail")
    func boundedOutput() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch, retainedOutputBytes: 2048)
        let directory = try Fixtures.project(scratch, files: ["main.tf": Fixtures.nullResources(150)])
        let sink = LineRecorder()
        let invocation = TerraformRunner.Invocation(directory: directory, output: sink)
        _ = try await runner.initialize(invocation)
        let result = try await runner.plan(invocation, planFile: scratch.appendingPathComponent("p.tfplan"))
        let created = sink.all.filter { $0.text.contains("will be created") }
        #expect(created.count == 150)
        #expect(result.command.output.utf8.count <= 2048)
        #expect(result.command.droppedOutputBytes > 0)
        #expect(result.command.output.contains("Plan: 150 to add"), "the tail keeps the end of the output")
    }
}
