import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

extension World {
    /// Someone else applies to the environment's state behind Lockstep's back: real terraform in a
    /// folder of its own, with the same local backend file and one `null_resource.intruder`.
    func applyOutOfBand(_ env: String, marker: String) throws {
        let folder = scratch.appendingPathComponent("out-of-band-\(env)-\(marker)", isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("""
            terraform {
              backend "local" { path = "\(stateDirectory.path)/\(env).tfstate" }
            }
            resource "null_resource" "intruder" {
              triggers = { marker = "\(marker)" }
            }
            """.utf8).write(to: folder.appendingPathComponent("main.tf"))
        try Data("provider_installation {\n  filesystem_mirror {\n    path = \"\(providerMirror.path)\"\n  }\n}\n".utf8)
            .write(to: folder.appendingPathComponent("cli.tfrc"))
        for arguments in [["init", "-input=false", "-no-color"], ["apply", "-input=false", "-no-color", "-auto-approve"]] {
            let process = Process()
            process.executableURL = try World.terraformBinary()
            process.arguments = arguments
            process.currentDirectoryURL = folder
            process.environment = ["PATH": "/usr/bin:/bin", "HOME": folder.path,
                                   "TF_CLI_CONFIG_FILE": folder.appendingPathComponent("cli.tfrc").path]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            try #require(process.terminationStatus == 0, "terraform \(arguments[0]): \(String(decoding: text, as: UTF8.self))")
        }
    }

    /// Lineage and serial of the environment's state file, as terraform wrote it.
    func stateFileHead(_ env: String) throws -> StateBinding? {
        let url = stateDirectory.appendingPathComponent("\(env).tfstate")
        guard let data = FileManager.default.contents(atPath: url.path),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let lineage = json["lineage"] as? String, let serial = json["serial"] as? Int else { return nil }
        return StateBinding(lineage: lineage, serial: UInt64(serial))
    }
}

@Suite("Gate: a plan is applied only to the state it was made against")
struct StateBindingTests {
    @Test("terraform issue 24078: a plan made against no state is refused once someone else created the state; nothing is applied")
    func planAgainstEmptyStateRefused() async throws {
        let world = try World(environmentsYAML: threeEnvironments)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        let report = try await world.gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        let run = try await world.run("dev", "1.0.0")
        #expect(run.plan?.priorState == StateBinding.none)
        let planned = try await world.store.auditEntries().first { $0.runID == run.id && $0.payload["to"] == "checking" }
        #expect(planned?.payload["state_lineage"] == "" && planned?.payload["state_serial"] == "0")
        #expect(try await world.approve(run, by: ["alice"]) == [.approved])

        try world.applyOutOfBand("dev", marker: "first")
        let created = try #require(try world.stateFileHead("dev"))

        let outcome = try await world.gate.apply(run: run.id)
        guard case .applyFailed(let reason) = outcome else { Issue.record("apply: \(outcome)"); return }
        #expect(reason.contains("the plan was made against no state, and the state now exists"), "\(reason)")
        #expect(reason.contains(created.lineage))
        #expect(world.applyLog.isEmpty)
        #expect(try world.applied("dev") == nil)
        #expect(try world.triggers("dev", "intruder")?["marker"] == "first")
        #expect(try world.stateFileHead("dev") == created)
        #expect(try await world.store.run(run.id)?.state == .failed)
    }

    @Test("a plan whose state moved after it was made is refused before terraform's own check; the other change is kept")
    func movedStateRefused() async throws {
        let world = try World(environmentsYAML: threeEnvironments)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        let afterFirst = try #require(try world.stateFileHead("dev"))

        try world.release("2.0.0", to: ["dev"])
        _ = try await world.gate.reconcile()
        let second = try await world.run("dev", "2.0.0")
        #expect(second.plan?.priorState == afterFirst, "\(String(describing: second.plan?.priorState)) vs \(afterFirst)")
        #expect(try await world.approve(second, by: ["alice"]) == [.approved])

        try world.applyOutOfBand("dev", marker: "moved")
        let moved = try #require(try world.stateFileHead("dev"))
        #expect(moved.lineage == afterFirst.lineage && moved.serial > afterFirst.serial)

        let outcome = try await world.gate.apply(run: second.id)
        guard case .applyFailed(let reason) = outcome else { Issue.record("apply: \(outcome)"); return }
        #expect(reason.contains("the plan was made against serial \(afterFirst.serial), and the state is now at serial \(moved.serial)"),
                "\(reason)")
        #expect(world.applyLog == ["dev:1.0.0"])
        #expect(try world.triggers("dev", "intruder")?["marker"] == "moved")
        #expect(try world.stateFileHead("dev") == moved)
    }

    @Test("an unchanged state is applied, and the run's log says it was checked")
    func unchangedStateApplied() async throws {
        let world = try World(environmentsYAML: threeEnvironments)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        let run = try await world.run("dev", "1.0.0")
        let log = try await world.store.log(of: run.id)
        #expect(log.contains("the state is still the one the plan was made against (no state)"), "\(log)")
    }
}
