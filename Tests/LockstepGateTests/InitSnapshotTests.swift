import Foundation
import LockstepCore
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// `terraform init` is skipped for a plan only when everything init reads is byte-identical to
/// the target's last init, and what is restored is what init wrote — never what plan-time code
/// left in a run's folder, never another environment's.
@Suite("Init snapshots against real terraform")
struct InitSnapshotTests {
    static let environments = """
      dev:
        serves: true
        approvals: 1
        approvers: [alice]
      staging:
        serves: true
        approvals: 1
        approvers: [alice]
    """

    /// Whether terraform init ran for the run (its own words in the run's log), or was skipped.
    func initRan(_ world: World, _ run: StoredRun) async throws -> Bool {
        let log = try await world.store.log(of: run.id)
        let ran = log.contains("Terraform has been successfully initialized")
        let skipped = log.contains("lockstep: terraform init skipped")
        #expect(ran != skipped, "exactly one of init or its snapshot: \(log.suffix(800))")
        return ran
    }

    /// Tags the current main for `env` as `version`, publishes, reconciles; returns the run, which must await approval.
    func plan(_ world: World, _ env: String, _ version: String) async throws -> StoredRun {
        try world.tag("\(env)/v\(version)")
        try world.publish()
        _ = try await world.gate.reconcile()
        let run = try await world.run(env, version)
        let log = try await world.store.log(of: run.id)
        try #require(run.state == .awaitingApproval, "\(run.state): \(log.suffix(1500))")
        return run
    }

    @Test("init is skipped when only values changed, and runs when a .tf file, the backend config or the environment differs")
    func skippedOnlyForIdenticalInputs() async throws {
        let world = try World(environmentsYAML: Self.environments, environments: ["dev", "staging"])
        defer { world.cleanup() }
        try world.mergeRelease("1.0.0")
        #expect(try await initRan(world, try await plan(world, "dev", "1.0.0")))
        #expect(FileManager.default.fileExists(atPath: world.gate.initSnapshotFile(world.target("dev")).path))

        // Only a var file changed: init's inputs are identical, and the plan still sees the new value.
        try world.mergePR(files: ["app/dev.tfvars": "size = 3\nenv  = \"dev\"\n"], message: "dev size 3")
        let valuesOnly = try await plan(world, "dev", "1.0.1")
        #expect(try await initRan(world, valuesOnly) == false)
        #expect(try #require(valuesOnly.plan).planJSON.contains("\"size\":\"3\""))

        // Staging has never been initialised: dev's snapshot is not its own.
        #expect(try await initRan(world, try await plan(world, "staging", "1.0.1")))

        // The backend config changed: init runs (and the plan uses the new state file).
        try world.mergePR(files: ["app/dev.backend.hcl": "path = \"\(world.stateDirectory.path)/dev-moved.tfstate\"\n"],
                          message: "move dev state")
        #expect(try await initRan(world, try await plan(world, "dev", "1.0.2")))

        // Nothing changed since that init: skipped again.
        try world.mergePR(files: ["app/dev.tfvars": "size = 4\nenv  = \"dev\"\n"], message: "dev size 4")
        #expect(try await initRan(world, try await plan(world, "dev", "1.0.3")) == false)

        // A .tf file changed (a new release in main.tf): init runs.
        try world.mergeRelease("1.1.0")
        #expect(try await initRan(world, try await plan(world, "dev", "1.1.0")))

        // A local module added: init runs; a change inside the module only: init runs again.
        let module = "variable \"name\" { type = string }\noutput \"name\" { value = var.name }\n"
        try world.mergePR(files: ["modules/naming/main.tf": module,
                                  "app/naming.tf": "module \"naming\" {\n  source = \"../modules/naming\"\n  name = \"x\"\n}\n"],
                          message: "add a module")
        #expect(try await initRan(world, try await plan(world, "dev", "1.1.1")))
        let snapshot = try #require(await world.gate.loadInitSnapshot(world.target("dev")))
        #expect(snapshot.moduleDirectories == ["../modules/naming"])
        try world.mergePR(files: ["modules/naming/main.tf": module + "output \"more\" { value = 1 }\n"], message: "change the module")
        #expect(try await initRan(world, try await plan(world, "dev", "1.1.2")))
        try world.mergePR(files: ["app/dev.tfvars": "size = 5\nenv  = \"dev\"\n"], message: "dev size 5")
        #expect(try await initRan(world, try await plan(world, "dev", "1.1.3")) == false)
    }

    @Test("an unreadable snapshot costs an init, not the run")
    func corruptSnapshotRunsInit() async throws {
        let world = try World(environmentsYAML: Self.environments, environments: ["dev", "staging"])
        defer { world.cleanup() }
        try world.mergeRelease("1.0.0")
        _ = try await plan(world, "dev", "1.0.0")
        try Data("{not json".utf8).write(to: world.gate.initSnapshotFile(world.target("dev")))
        try world.mergePR(files: ["app/dev.tfvars": "size = 3\nenv  = \"dev\"\n"], message: "dev size 3")
        #expect(try await initRan(world, try await plan(world, "dev", "1.0.1")))
        // …and that init was kept again.
        #expect(await world.gate.loadInitSnapshot(world.target("dev")) != nil)
    }

    /// The threat: plan-time code (here a provider wrapper, the gate unconfined) writes into
    /// the run's `.terraform/` — a file for a later run to pick up. The rule: the snapshot is
    /// taken right after init, before plan-time code runs, and restored from where no terraform
    /// command can write; a later run's folder gets only what init wrote.
    @Test("what plan-time code writes into .terraform is never carried to a later run")
    func plantedFileNotCarried() async throws {
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-planting-\(UUID().uuidString.prefix(12))", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let platform = scratch.appendingPathComponent("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64", isDirectory: true)
        try FileManager.default.createDirectory(at: platform, withIntermediateDirectories: true)
        let real = World.pinnedProviderMirror
            .appendingPathComponent("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")
        let wrapper = platform.appendingPathComponent("terraform-provider-null_v2.1.2_x4")
        // Started by plan and show in the project folder: plants a file in .terraform/ and
        // rewrites the backend settings init left there.
        try Data("""
        #!/bin/sh
        if [ -d .terraform ]; then
          echo planted > .terraform/planted
          sed -i 's/dev.tfstate/stolen.tfstate/' .terraform/terraform.tfstate 2>/dev/null
        fi
        exec "\(real.path)" "$@"
        """.utf8).write(to: wrapper)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        let world = try World(environmentsYAML: Self.environments, environments: ["dev", "staging"], providerMirror: scratch)
        defer { world.cleanup() }

        try world.mergeRelease("1.0.0")
        let first = try await plan(world, "dev", "1.0.0")
        #expect(try await initRan(world, first))
        // The wrapper did plant its file in the first run's folder (else this proves nothing).
        let planted = await world.gate.treeDirectory(first.id).appendingPathComponent("app/.terraform/planted")
        #expect(FileManager.default.fileExists(atPath: planted.path))
        let snapshot = try #require(await world.gate.loadInitSnapshot(world.target("dev")))
        #expect(!snapshot.entries.contains { $0.path.hasSuffix("planted") })
        let backend = try #require(snapshot.entries.first { $0.path == ".terraform/terraform.tfstate" }?.contents)
        #expect(String(decoding: backend, as: UTF8.self).contains("dev.tfstate"))
        #expect(!String(decoding: backend, as: UTF8.self).contains("stolen"))

        // The next plan restores init's result, applies on the real state, and nothing stolen exists.
        try world.mergePR(files: ["app/dev.tfvars": "size = 3\nenv  = \"dev\"\n"], message: "dev size 3")
        let second = try await plan(world, "dev", "1.0.1")
        #expect(try await initRan(world, second) == false)
        try await world.approve(second, by: ["alice"])
        guard case .applied = try await world.gate.apply(run: second.id) else {
            Issue.record("apply did not happen")
            return
        }
        #expect(try world.applied("dev")?["size"] == "3")
        #expect(!FileManager.default.fileExists(atPath: world.stateDirectory.appendingPathComponent("stolen.tfstate").path))
    }
}
