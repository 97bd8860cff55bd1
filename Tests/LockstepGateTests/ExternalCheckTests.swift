import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// The scanners of the external check tests (scripts/install-python-tools.sh puts them in
/// .tools/checks-venv) and the Rego runner shipped in contrib/.
enum CheckTools {
    static var root: URL {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root
    }

    static func venv(_ program: String) throws -> String {
        let path = root.appendingPathComponent(".tools/checks-venv/bin/\(program)").path
        try #require(FileManager.default.isExecutableFile(atPath: path), "\(program) is not installed: run scripts/install-python-tools.sh")
        return path
    }

    static var regoCheck: String { root.appendingPathComponent("contrib/rego-check").path }
}

/// A Checkov policy (YAML, Checkov's own format) that a `null_resource` whose triggers make it
/// public fails: the null provider is the only one here, so the known misconfiguration is one
/// the agent's own policy defines.
private let publicPolicy = """
metadata:
  id: "CKV2_LOCKSTEP_1"
  name: "Nothing is readable by the public"
  category: "GENERAL_SECURITY"
definition:
  cond_type: attribute
  resource_types: [null_resource]
  attribute: triggers.acl
  operator: not_equals
  value: public-read
"""

private let publicBucket = """

resource "null_resource" "bucket" {
  triggers = {
    acl = "public-read"
  }
}
"""

private let privateBucket = """

resource "null_resource" "bucket" {
  triggers = {
    acl = "private"
  }
}
"""

/// The agent's Rego policy: nothing named `*_admin` may be created.
private let agentRego = """
package lockstep.agent

import rego.v1

deny contains msg if {
    some change in input.resource_changes
    "create" in change.change.actions
    endswith(change.name, "_admin")
    msg := sprintf("%s would create an admin", [change.address])
}
"""

@Suite("Gate: external checks with real scanners", .serialized)
struct ExternalCheckTests {
    @Test("Checkov (--framework terraform_plan) blocks a plan with the misconfiguration and passes a clean one")
    func checkov() async throws {
        let checkov = try CheckTools.venv("checkov")
        let scratchPolicies = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("checkov-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratchPolicies, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratchPolicies) }
        try publicPolicy.write(to: scratchPolicies.appendingPathComponent("public.yaml"), atomically: true, encoding: .utf8)
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice, bob]
            checks:
              - name: checkov
                command: [\(checkov), --framework, terraform_plan, -f, "{plan_json}", --external-checks-dir, \(scratchPolicies.path), --check, CKV2_LOCKSTEP_1, --compact, --quiet, --skip-download]
                timeout: 5m
        """, environments: ["dev"])
        defer { world.cleanup() }

        try world.release("1.0.0", to: ["dev"], extra: publicBucket)
        _ = try await world.gate.reconcile()
        let blocked = try await world.run("dev", "1.0.0")
        #expect(blocked.state == .failed)
        let result = try #require(blocked.plan?.checkResults.first)
        #expect(result.name == "checkov")
        #expect(!result.passed)
        #expect(result.output.contains("CKV2_LOCKSTEP_1"), "\(result.output)")
        #expect(result.output.contains("null_resource.bucket"))
        let reason = try #require(try await world.store.transitions(of: blocked.id).last?.transition.reason)
        #expect(reason.code == .checksFailed && reason.detail?.contains("check checkov") == true)
        let refused = try await world.approve(blocked, by: ["alice"])
        #expect(refused.allSatisfy { if case .refused = $0 { true } else { false } })
        #expect(try world.triggers("dev", "bucket") == nil, "nothing applied")

        try world.release("1.0.1", to: ["dev"], extra: privateBucket)
        _ = try await world.gate.reconcile()
        let clean = try await world.run("dev", "1.0.1")
        #expect(clean.state == .awaitingApproval)
        #expect(clean.plan?.checkResults.map(\.passed) == [true])
        try await world.approve(clean, by: ["alice"])
        #expect(try await world.gate.apply(run: clean.id) == .applied(.verified))
        #expect(try world.triggers("dev", "bucket")?["acl"] == "private")
    }

    @Test("Rego through regopy: the agent's policy and the repository's own run apart; a repository can add a failure, never remove the agent's")
    func rego() async throws {
        let python = try CheckTools.venv("python")
        let policies = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("rego-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: policies) }
        let agentPolicy = policies.appendingPathComponent("agent.rego")
        try agentRego.write(to: agentPolicy, atomically: true, encoding: .utf8)
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice, bob]
            checks:
              - name: rego
                command: [\(python), \(CheckTools.regoCheck), --plan, "{plan_json}", "{policy_files}"]
                policy_files: [\(agentPolicy.path)]
                repo_policies: true
                may_override: true
        """, environments: ["dev"])
        defer { world.cleanup() }

        // The repository adds its own policy (no null_resource named `*_debug`) and a file that
        // tries to empty the agent's `deny` from the agent's own package.
        var layout = world.layoutFiles()
        layout["lockstep.yaml"]! += "policy_files: [policy/repo.rego, policy/weaken.rego]\n"
        layout["policy/repo.rego"] = """
        package lockstep.repo

        import rego.v1

        deny contains msg if {
            some change in input.resource_changes
            endswith(change.name, "_debug")
            msg := sprintf("%s is a debug resource", [change.address])
        }
        """
        layout["policy/weaken.rego"] = "package lockstep.agent\n\ndefault deny := set()\n"
        try world.mergePR(files: layout, message: "add the repository's policies")

        try world.release("1.0.0", to: ["dev"], extra: "\nresource \"null_resource\" \"ops_admin\" {}\n")
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.0.0")
        let results = try #require(run.plan?.checkResults)
        #expect(results.map(\.name) == ["rego", "rego/repo"])
        #expect(results[0].passed == false, "the agent's policy still denies: \(results[0].output)")
        #expect(results[0].output.contains("null_resource.ops_admin would create an admin"))
        // The weakening file empties `deny` only in the repository's own run, where nothing else is.
        #expect(results[1].passed, "\(results[1].output)")
        #expect(run.state == .awaitingApproval)
        #expect(try await world.gate.reviewFacts(of: run).requiredApprovals == 2)

        try world.release("1.0.1", to: ["dev"], extra: "\nresource \"null_resource\" \"trace_debug\" {}\n")
        _ = try await world.gate.reconcile()
        let debug = try await world.run("dev", "1.0.1")
        let debugResults = try #require(debug.plan?.checkResults)
        #expect(debugResults.map(\.passed) == [true, false])
        #expect(debugResults[1].output.contains("null_resource.trace_debug is a debug resource"), "\(debugResults[1].output)")
    }

    @Test("a check that hangs is killed at its timeout and counts as failed; a check's output never shows a credential")
    func hangingAndRedacted() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
            plan_credentials_file: {state}/../creds/plan.env
            checks:
              - {name: talkative, command: [/bin/echo, "token=s3cr3t-plan-value", "{plan_json}"], timeout: 30s}
              - {name: hangs, command: [/bin/sleep, "600"], timeout: 2s}
        """, environments: ["dev"])
        defer { world.cleanup() }
        try "TF_VAR_unused=s3cr3t-plan-value\n".write(to: world.scratch.appendingPathComponent("creds/plan.env"),
                                                      atomically: true, encoding: .utf8)
        try world.release("1.0.0", to: ["dev"])
        let started = ContinuousClock.now
        _ = try await world.gate.reconcile()
        #expect(ContinuousClock.now - started < .seconds(120))
        let run = try await world.run("dev", "1.0.0")
        #expect(run.state == .failed)
        let results = try #require(run.plan?.checkResults)
        #expect(results.map(\.name) == ["talkative", "hangs"])
        #expect(results[0].passed)
        #expect(!results[0].output.contains("s3cr3t-plan-value"))
        #expect(results[0].output.contains("token="))
        #expect(results[1].outcome.contains("timed out"))
        #expect(!world.rawStoreText().contains("s3cr3t-plan-value"))
    }
}
