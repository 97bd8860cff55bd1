import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// The gate reads a commit's `lockstep.yaml` straight from the mirror's object database (no
/// export). The attack: a `lockstep.yaml` merged as a symlink (to another file of the tree,
/// or out of it) or as a folder, hoping the reader follows it or skips the layout without a
/// word. The rule: only a regular file is read; anything else is an invalid layout, reported
/// like any other, and the last valid layout stays in use.
@Suite("Gate: lockstep.yaml is read from the object database, and only as a regular file")
struct LayoutReadTests {
    private func world() throws -> World {
        try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"])
    }

    @Test("a lockstep.yaml that is a symlink on the branch is reported invalid and not followed; the last valid layout stays")
    func symlinkedLayoutIsReported() async throws {
        let world = try world()
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()
        let valid = try #require(world.layoutFiles()["lockstep.yaml"])
        // The link points at a file inside the tree holding the same, valid text.
        _ = try world.mergePR(files: ["layouts/real.yaml": valid], symlinks: ["lockstep.yaml": "layouts/real.yaml"],
                              message: "layout through a link")
        try world.publish()

        let report = try await world.gate.reconcile()
        let problem = try #require(await world.gate.branchLayoutProblem)
        #expect(problem.contains("is invalid") && problem.contains("symlink"), "\(problem)")
        #expect(report.problems.contains(problem))
        #expect(await world.gate.followsValidLayout)
        // Nothing was exported to read it: no scratch folder is left in the runs folder.
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: world.gate.runsDirectory.path)) ?? []
        #expect(leftovers.allSatisfy { !$0.hasPrefix(".") }, "\(leftovers)")
    }

    @Test("a lockstep.yaml that is a folder, or missing, is reported invalid with the reason")
    func folderOrMissingLayoutIsReported() async throws {
        let world = try world()
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()
        _ = try world.git(["rm", "-q", "lockstep.yaml"])
        _ = try world.mergePR(files: ["lockstep.yaml/inner.yaml": "x: 1\n"], message: "layout as a folder")
        try world.publish()
        _ = try await world.gate.reconcile()
        let folder = try #require(await world.gate.branchLayoutProblem)
        #expect(folder.contains("is invalid") && folder.contains("folder"), "\(folder)")
        #expect(await world.gate.followsValidLayout)
    }
}

@Suite("Gate: the release source is a seam")
struct ReleaseSourceSeamTests {
    @Test("the gate reads its layout through any ReleaseSource, never exports to do so, and reports a non-UTF-8 lockstep.yaml")
    func layoutThroughADouble() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"])
        defer { world.cleanup() }
        let valid = Data(try #require(world.layoutFiles()["lockstep.yaml"]).utf8)
        let source = ScriptedReleaseSource(path: "/nonexistent/in-memory-source", layout: String(decoding: valid, as: UTF8.self))
        let first = await source.tip
        let terraform = TerraformRunner.Configuration(
            executable: URL(fileURLWithPath: world.agent.terraform.binary),
            toolsDirectory: world.scratch.appendingPathComponent("tools"),
            providerInstallation: .filesystemMirror(World.pinnedProviderMirror),
            gracePeriod: .seconds(10), applyGracePeriod: .seconds(20))
        let gate = Gate(agent: world.agent, store: world.store, mirror: source, terraform: terraform,
                        runsDirectory: world.scratch.appendingPathComponent("runs-double"), logger: Logger(label: "test"))

        let report = try await gate.reconcile()
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(await gate.followsValidLayout)
        #expect(try await world.store.lastValidLayout(branch: "main")?.commit == first)

        // Bytes that are not UTF-8 are the layout's own problem: reported, last valid layout kept.
        await source.commit(bytes: ["lockstep.yaml": Data([0x70, 0xFF, 0xFE, 0x0A])])
        _ = try await gate.reconcile()
        let problem = try #require(await gate.branchLayoutProblem)
        #expect(problem.contains("is invalid") && problem.contains("UTF-8"), "\(problem)")
        #expect(await gate.followsValidLayout)
        #expect(try await world.store.lastValidLayout(branch: "main")?.commit == first)
        #expect(await source.exports.isEmpty)
    }
}
