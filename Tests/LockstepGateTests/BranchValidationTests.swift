import Foundation
import LockstepCore
import Testing
@testable import LockstepGate

@Suite("Gate: lockstep validate of every new tip of the protected branch")
struct BranchValidationTests {
    static let threeEnvironments = """
      dev:
        serves: true
        approvals: 1
        approvers: [alice]
      staging:
        serves: true
        approvals: 1
        approvers: [alice]
      prod:
        serves: true
        approvals: 1
        approvers: [alice]
    """

    func world(validate: Bool = true) throws -> World {
        // The first extra line continues `terraform:` (the validation's providers come from the
        // mirror); the second is a top-level key.
        try World(environmentsYAML: Self.threeEnvironments,
                  agentExtraYAML: "  provider_mirror: \(World.pinnedProviderMirror.path)\nvalidate_branch: \(validate)")
    }

    @Test("each new tip is validated once: a clean tip passes, a variable set for one environment only and a broken file fail with what and where")
    func newTips() async throws {
        let world = try world()
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()
        let first = try #require(await world.gate.validateBranchIfNew())
        #expect(first.exitStatus == 0, "\(first.problems)")
        #expect(await world.gate.validateBranchIfNew() == nil, "the same tip is not validated twice")
        #expect(await world.gate.branchValidation() == first)

        var files = world.layoutFiles()
        files["app/dev.tfvars"] = "size = 1\nenv  = \"dev\"\ndebug_level = 3\n"
        try world.mergePR(files: files, message: "dev-only variable")
        try world.publish()
        _ = try await world.gate.reconcile()
        let parity = try #require(await world.gate.validateBranchIfNew())
        #expect(parity.commit != first.commit)
        #expect(parity.exitStatus == 1)
        #expect(parity.problems.contains { $0.contains("variable debug_level is set in dev but not in") }, "\(parity.problems)")

        try world.mergePR(files: ["app/broken.tf": "resource \"null_resource\" \"x\" {\n  triggers = {\n"], message: "broken")
        try world.publish()
        _ = try await world.gate.reconcile()
        let broken = try #require(await world.gate.validateBranchIfNew())
        #expect(broken.exitStatus == 1)
        #expect(broken.problems.contains { $0.contains("app/broken.tf:") }, "\(broken.problems)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: world.scratch.appendingPathComponent("runs").path)
        #expect(!leftovers.contains { $0.hasPrefix("validate-") }, "nothing of a validation is left behind")
    }

    @Test("without validate_branch nothing is validated")
    func off() async throws {
        let world = try world(validate: false)
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()
        #expect(await world.gate.validateBranchIfNew() == nil)
        #expect(await world.gate.branchValidation() == nil)
    }
}
