import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

@Suite("Gate: credentials, verify and rollback")
struct CredentialsAndVerifyTests {
    static let planSecret = "plan-secret-7Q2xW9fk"
    static let applySecret = "apply-secret-K8mZ3vPq"

    @Test("plan never sees apply credentials; apply gets them; verify gets neither; no secret is stored or logged; committed providers never run")
    func planNeverSeesApplyCredentials() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
            plan_credentials_file: creds/dev-plan.env
            apply_credentials_file: creds/dev-apply.env
        """, environments: ["dev"], verify: ["dev": "[./verify.sh]"])
        defer { world.cleanup() }
        let creds = world.scratch.appendingPathComponent("creds")
        try "# plan: read-only\nTF_VAR_plan_token=\(Self.planSecret)\n".write(to: creds.appendingPathComponent("dev-plan.env"),
                                                                             atomically: true, encoding: .utf8)
        try "TF_VAR_apply_token=\"\(Self.applySecret)\"\n".write(to: creds.appendingPathComponent("dev-apply.env"),
                                                               atomically: true, encoding: .utf8)
        let state = world.stateDirectory.path
        // Plan-time probe: terraform reads TF_VAR_* at plan time, so the plan's triggers say
        // whether each credential was in the plan process's environment (without the value).
        // Apply-time probe: a local-exec provisioner records whether apply had its credential.
        let probe = """
        variable "apply_token" {
          default = "not-seen"
        }
        variable "plan_token" {
          default = "not-seen"
        }
        resource "null_resource" "probe" {
          triggers = {
            apply_token_at_plan = var.apply_token == "not-seen" ? "absent" : "PRESENT"
            plan_token_at_plan  = var.plan_token == "not-seen" ? "absent" : "PRESENT"
          }
          provisioner "local-exec" {
            command = "if [ -n \\"$TF_VAR_apply_token\\" ]; then echo apply-had-token; else echo apply-no-token; fi >> \(state)/probe.log"
          }
        }
        output "plan_token_echo" {
          value     = var.plan_token
          sensitive = true
        }
        """
        let verify = """
        #!/bin/sh
        env | cut -d= -f1 | sort > \(state)/verify-env.txt
        cp "$LOCKSTEP_OUTPUTS_FILE" \(state)/verify-outputs.json
        """
        // Provider binaries committed to the repo (docs/THREAT-MODEL.md §1.1) must never run.
        let fake = "#!/bin/sh\ntouch \(state)/committed-provider-ran\nexit 1\n"
        let providerPath = "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4"
        let committed = ["verify.sh": verify, "app/terraform.d/plugins/\(providerPath)": fake,
                         "app/.terraform/providers/\(providerPath)": fake]
        let commit = try world.mergePR(files: world.appFiles(release: "1.0.0", extra: probe).merging(committed) { _, new in new })
        try world.tag("dev/v1.0.0", at: commit)
        try world.publish()

        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        #expect(!FileManager.default.fileExists(atPath: world.stateDirectory.appendingPathComponent("committed-provider-ran").path))
        let probeTriggers = try #require(try world.triggers("dev", "probe"))
        #expect(probeTriggers["apply_token_at_plan"] == "absent")
        #expect(probeTriggers["plan_token_at_plan"] == "PRESENT")  // the probe works: plan credentials do arrive
        let probeLog = try String(contentsOf: world.stateDirectory.appendingPathComponent("probe.log"), encoding: .utf8)
        #expect(probeLog == "apply-had-token\n")

        let verifyEnvironment = try String(contentsOf: world.stateDirectory.appendingPathComponent("verify-env.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        #expect(verifyEnvironment.contains("LOCKSTEP_OUTPUTS_FILE"))
        #expect(!verifyEnvironment.contains { $0.hasPrefix("TF_VAR_") })
        let outputs = try String(contentsOf: world.stateDirectory.appendingPathComponent("verify-outputs.json"), encoding: .utf8)
        #expect(outputs.contains("1.0.0"))
        #expect(outputs.contains("(redacted)"))

        let run = try await world.run("dev", "1.0.0")
        #expect(run.plan?.planJSON.contains("(redacted)") == true)
        for secret in [Self.planSecret, Self.applySecret] {
            #expect(!world.rawStoreText().contains(secret))
            #expect(!world.logs.text.contains(secret))
            #expect(!outputs.contains(secret))
            #expect(run.plan.map { $0.planJSON + $0.rendering + $0.summaryJSON }?.contains(secret) == false)
        }
    }

    @Test("apply and verify run the committed scripts even when the plan's tree was changed after the plan, as plan-time code could")
    func applyAndVerifyIgnoreThePlanTree() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"], verify: ["dev": "[./verify.sh]"])
        defer { world.cleanup() }
        let state = world.stateDirectory.path
        let deployScript = """
        resource "null_resource" "deploy" {
          provisioner "local-exec" {
            command = "sh ./deploy.sh"
          }
        }
        """
        let files = world.appFiles(release: "1.0.0", extra: deployScript).merging([
            "app/deploy.sh": "echo committed-deploy >> \(state)/scripts.log\n",
            "verify.sh": "#!/bin/sh\necho committed-verify >> \(state)/scripts.log\n",
        ]) { _, new in new }
        let commit = try world.mergePR(files: files)
        try world.tag("dev/v1.0.0", at: commit)
        try world.publish()
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        try #require(run.state == .awaitingApproval)

        // What a process left behind by plan-time code could do: rewrite the plan's tree.
        let planTree = world.scratch.appendingPathComponent("runs/\(run.id.rawValue)/tree")
        for (path, text) in ["app/deploy.sh": "echo TAMPERED-deploy >> \(state)/scripts.log\n",
                             "verify.sh": "#!/bin/sh\necho TAMPERED-verify >> \(state)/scripts.log\n"] {
            let url = planTree.appendingPathComponent(path)
            try #require(FileManager.default.fileExists(atPath: url.path), "the plan ran in \(planTree.path)")
            try text.write(to: url, atomically: true, encoding: .utf8)
        }

        try await world.approve(run, by: ["alice"])
        #expect(try await world.gate.apply(run: run.id) == .applied(.verified))
        let log = try String(contentsOf: world.stateDirectory.appendingPathComponent("scripts.log"), encoding: .utf8)
        #expect(log == "committed-deploy\ncommitted-verify\n")
    }

    @Test("an apply that outlives apply_timeout is interrupted; the run fails saying part of the plan may be applied; the plan is gone")
    func applyTimeout() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"], agentExtraYAML: "  apply_timeout: 2s")
        defer { world.cleanup() }
        let hang = """
        resource "null_resource" "slow" {
          provisioner "local-exec" {
            command = "sleep 300"
          }
        }
        """
        try world.release("1.0.0", to: ["dev"], extra: hang)
        let started = ContinuousClock.now
        let outcome = try await world.deploy("dev", "1.0.0")
        // The provisioner sleeps 300 s; timeout 2 s plus 20 s of grace, however slow the machine.
        #expect(ContinuousClock.now - started < .seconds(280), "interrupted, not waited out")
        guard case .applyFailed(let reason) = outcome else {
            Issue.record("the apply should have failed: \(outcome)")
            return
        }
        let run = try await world.run("dev", "1.0.0")
        #expect(run.state == .failed)
        #expect(reason.contains("apply_timeout (2s)") && reason.contains("part of the plan may have been applied"), "\(reason)")
        #expect(world.planFilesOnDisk().isEmpty)
        // The runner SIGKILLs terraform's whole process group as it returns; a killed process
        // can stay visible in /proc for a while on a loaded machine (seen: over 10 s with the
        // suite beside a release build), so allow it 60 s to go (a real leftover would live
        // for the 300 s of its sleep).
        let deadline = ContinuousClock.now + .seconds(60)
        var leftovers = Self.processes(containing: "sleep 300")
        while !leftovers.isEmpty && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            leftovers = Self.processes(containing: "sleep 300")
        }
        #expect(leftovers.isEmpty, "the provisioner's process is gone")
    }

    /// Live processes whose command line contains `marker` (zombies have an empty one).
    static func processes(containing marker: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int32(entry) != nil, let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker)
        }
    }

    @Test("a failed verify fails the run and blocks promotion, with the reason")
    func verifyFailureBlocksPromotion() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
          staging:
            serves: true
            promote_from: dev
            approvals: 1
            approvers: [alice]
        """, environments: ["dev", "staging"], verify: ["dev": "[\"false\"]"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev", "staging"])

        #expect(try await world.deploy("dev", "1.0.0") == .applied(.failed))
        let run = try await world.run("dev", "1.0.0")
        #expect(run.lastReason == .verifyFailed)
        let detail = try #require(try await world.store.transitions(of: run.id).last?.transition.reason.detail)
        #expect(detail.contains("verify command 1"), "\(detail)")
        #expect(try world.applied("dev")?["release"] == "1.0.0")

        let report = try await world.gate.reconcile()
        #expect(report.runsCreated.isEmpty)
        let decision = try #require(try await world.decision("staging", "staging/v1.0.0"))
        #expect(decision.rejections.map(\.code) == [.promotionSourceNotVerified])
        #expect(try await world.runs("staging").isEmpty)
        #expect(try world.applied("staging") == nil)
    }

    @Test("rollback is a gated run of an earlier accepted version that pins the target until a higher version is accepted")
    func rollbackPins() async throws {
        let world = try World(environmentsYAML: devOnly, environments: ["dev"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        try world.release("1.1.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.1.0") == .applied(.verified))

        // Who may roll back, and to what, are trust decisions.
        await #expect(throws: GateError.self) {
            try await world.gate.rollback(environment: envName("dev"), to: semver("1.0.0"), identity: identity("dave"))
        }
        await #expect(throws: GateError.self) {
            try await world.gate.rollback(environment: envName("dev"), to: semver("0.9.0"), identity: identity("alice"))
        }

        let rollback = try await world.gate.rollback(environment: envName("dev"), to: semver("1.0.0"), identity: identity("alice"))
        #expect(rollback.state == .queued)
        #expect(rollback.run.rollbackPin == RollbackPin(version: semver("1.0.0"), ceiling: semver("1.1.0")))
        #expect(try await world.store.pin(for: world.target("dev"))?.version == semver("1.0.0"))
        #expect(try await world.store.auditEntries().contains { $0.runID == rollback.id && $0.actor == "alice" })

        _ = try await world.gate.reconcile()
        let planned = try #require(try await world.store.run(rollback.id))
        #expect(planned.state == .awaitingApproval)  // gated like any other run
        #expect(try await world.approve(planned, by: ["bob"]) == [.approved])
        #expect(try await world.gate.apply(run: rollback.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.0.0")

        // Pinned: 1.1.0 is still the highest accepted version, but nothing moves the target.
        let pinned = try await world.gate.reconcile()
        #expect(pinned.runsCreated.isEmpty)

        // A higher version than the ceiling releases the pin.
        try world.release("1.2.0", to: ["dev"])
        let released = try await world.gate.reconcile()
        #expect(released.runsCreated.count == 1)
        #expect(try await world.store.pin(for: world.target("dev")) == nil)
        #expect(try await world.run("dev", "1.2.0").state == .awaitingApproval)
        #expect(world.applyLog == ["dev:1.0.0", "dev:1.1.0", "dev:1.0.0"])
    }
}
