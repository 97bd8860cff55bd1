import Foundation
import LockstepCore
import Logging
import RunStore
import Testing
import TerraformRunner
@testable import LockstepGate

/// The threat: plan-time code (here a provider) leaves a process behind with `setsid`. It waits
/// until the daemon has hashed the real plan, writes a benign plan into the same path while
/// `terraform show` renders it for reviewers and the checks, then puts the real plan back for
/// apply. Reviewers would approve "1 to add" and apply would create a backdoor as well.
///
/// The rule: the plan's bytes are read once, hashed and sealed where no terraform command can
/// write; `show`, the checks and `apply` use copies of those bytes. The gate runs unconfined
/// here, so the leftover really lives on and really rewrites the path; what it writes is never
/// read.
@Suite("Plan integrity against a process left behind by plan-time code")
struct PlanIntegrityTests {
    @Test("a leftover that swaps the plan file during show changes nothing: the digest, the shown plan and the applied plan are one")
    func swappedPlanFileIsNeverRead() async throws {
        let attack = try HostileProvider()
        defer { attack.cleanup() }
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"], providerMirror: attack.mirror)
        defer { world.cleanup() }

        // The attacker's benign plan: the same project without the backdoor, planned beforehand.
        let benign = try await attack.benignPlan(mainTF: try #require(world.appFiles(release: "1.0.0")["app/main.tf"]))
        let backdoor = """
        resource "null_resource" "backdoor" {
          triggers = { opened = "yes" }
        }
        """
        try world.release("1.0.0", to: ["dev"], extra: backdoor)
        _ = try await world.gate.reconcile()

        let run = try await world.run("dev", "1.0.0")
        let runLog = try await world.store.log(of: run.id)
        try #require(run.state == .awaitingApproval, "\(run.state): \(runLog.suffix(1500))")
        // The leftover ran and rewrote the plan path while show ran.
        try await attack.waitFor("swapped")
        let digest = try #require(run.planDigest)
        #expect(Digest.sha256(of: benign) != digest, "the benign plan must differ, or the attack proves nothing")

        // What reviewers see and the checks read is the hashed plan: two resources to add.
        let plan = try #require(run.plan)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(plan.summaryJSON.utf8)) as? [String: Any])
        #expect(summary["create"] as? Int == 2)
        #expect(plan.rendering.contains("null_resource.backdoor"))
        #expect(plan.planJSON.contains("null_resource.backdoor"))

        // The leftover puts the real plan back after show, as the attack does before apply.
        try await attack.waitFor("restored")
        try await world.approve(run, by: ["alice"])
        let outcome = try await world.gate.apply(run: run.id)
        guard case .applied = outcome else {
            Issue.record("apply did not happen: \(outcome)")
            return
        }
        // What was applied is what was shown: both resources, no more.
        #expect(try world.applied("dev") != nil)
        #expect(try world.triggers("dev", "backdoor") == ["opened": "yes"])
        #expect(try await world.run("dev", "1.0.0").planDigest == digest)
        #expect(world.planFilesOnDisk().isEmpty, "\(world.planFilesOnDisk())")
    }
}

/// A provider mirror whose `hashicorp/null` is a wrapper: the first time terraform starts it,
/// it leaves a process behind (`setsid`, no descriptors of terraform) and then becomes the real
/// null provider. The process watches for a `terraform show` of its own run, copies the real
/// plan aside, writes the benign plan into the run's `plan.tfplan`, and once show has ended
/// writes the real plan back. Markers in `marks` say how far it got.
struct HostileProvider {
    let scratch: URL
    let mirror: URL
    let marks: URL
    let benignFile: URL

    init() throws {
        scratch = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-hostile-\(UUID().uuidString.prefix(12))", isDirectory: true)
        mirror = scratch.appendingPathComponent("mirror", isDirectory: true)
        marks = scratch.appendingPathComponent("marks", isDirectory: true)
        benignFile = scratch.appendingPathComponent("benign.tfplan")
        let platform = mirror.appendingPathComponent("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64", isDirectory: true)
        try FileManager.default.createDirectory(at: platform, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: marks, withIntermediateDirectories: true)
        let real = World.pinnedProviderMirror
            .appendingPathComponent("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")
        let leftover = scratch.appendingPathComponent("leftover.sh")
        try Data("""
        #!/bin/sh
        # cwd is the project folder of the run's tree: runs/ID/tree/app
        run=$(cd ../.. && pwd)
        showing() { grep -qPa "\\\\x00show\\\\x00.*\\\\Q$run/\\\\E" /proc/[0-9]*/cmdline 2>/dev/null; }
        n=0
        while [ $n -lt 6000 ]; do
          if showing; then
            cp "$run/plan.tfplan" "\(marks.path)/real.tfplan" 2>/dev/null
            cp "\(benignFile.path)" "$run/plan.tfplan"
            : > "\(marks.path)/swapped"
            m=0
            while showing && [ $m -lt 6000 ]; do m=$((m+1)); sleep 0.01; done
            if [ -s "\(marks.path)/real.tfplan" ]; then cp "\(marks.path)/real.tfplan" "$run/plan.tfplan"; fi
            : > "\(marks.path)/restored"
            exit 0
          fi
          n=$((n+1))
          sleep 0.01
        done
        """.utf8).write(to: leftover)
        let wrapper = platform.appendingPathComponent("terraform-provider-null_v2.1.2_x4")
        try Data("""
        #!/bin/sh
        if mkdir "\(marks.path)/started" 2>/dev/null; then
          setsid sh -x "\(leftover.path)" </dev/null >/dev/null 2>"\(marks.path)/trace" &
        fi
        exec "\(real.path)" "$@"
        """.utf8).write(to: wrapper)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
    }

    /// Plans `mainTF` (without the backdoor) on its own empty state with the pinned provider,
    /// as the attacker would beforehand, and keeps the plan where the leftover finds it.
    func benignPlan(mainTF: String) async throws -> Data {
        let project = scratch.appendingPathComponent("benign/app", isDirectory: true)
        try FileManager.default.createDirectory(at: project, withIntermediateDirectories: true)
        try Data(mainTF.utf8).write(to: project.appendingPathComponent("main.tf"))
        let backend = scratch.appendingPathComponent("benign.backend.hcl")
        try Data("path = \"\(scratch.path)/benign.tfstate\"\n".utf8).write(to: backend)
        let runner = TerraformRunner(configuration: .init(
            executable: try World.terraformBinary(), toolsDirectory: scratch.appendingPathComponent("tools"),
            providerInstallation: .filesystemMirror(World.pinnedProviderMirror)), logger: Logger(label: "benign"))
        let invocation = TerraformRunner.Invocation(directory: project, environment: ["TF_VAR_env": "dev"])
        #expect(try await runner.initialize(invocation, backendConfigFiles: [backend]).outcome == .succeeded)
        let planFolder = try TerraformRunner.makeRunDirectory(under: scratch, name: "benign-plan")
        let planned = try #require(try await runner.plan(invocation, planFile: planFolder.appendingPathComponent("out.tfplan")).plan)
        try planned.contents.write(to: benignFile)
        return planned.contents
    }

    /// Waits (up to a minute) for the leftover to leave `mark`.
    func waitFor(_ mark: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !FileManager.default.fileExists(atPath: marks.appendingPathComponent(mark).path) {
            let seen = (try? FileManager.default.contentsOfDirectory(atPath: marks.path)) ?? []
            let trace = (try? String(contentsOf: marks.appendingPathComponent("trace"), encoding: .utf8)) ?? ""
            try #require(ContinuousClock.now < deadline,
                         "the leftover process never got to \(mark) (marks: \(seen), trace starts: \(trace.prefix(300)))")
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func cleanup() { try? FileManager.default.removeItem(at: scratch) }
}
