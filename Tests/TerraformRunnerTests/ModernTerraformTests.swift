import Foundation
import LockstepCore
import Testing
@testable import TerraformRunner

/// The same runner against a current terraform (>= 1.1) when the machine has one on PATH.
@Suite("TerraformRunner against a current terraform", .enabled(if: Fixtures.modernTerraform != nil, "no terraform >= 1.1 on PATH"))
struct ModernTerraformTests {
    static let secret = "modern-sensitive-5e6f7a"

    @Test("version, plan (format 1.2), show and apply of a saved plan work with terraform_data; sensitive variables redacted")
    func cycle() async throws {
        let scratch = try Fixtures.scratch()
        let executable = try #require(Fixtures.modernTerraform)
        let runner = try Fixtures.runner(scratch: scratch, executable: executable)
        let version = try await runner.version()
        #expect(version.isAtLeast(1, 1))

        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            variable "pw" {
              type      = string
              sensitive = true
            }
            resource "terraform_data" "a" { input = var.pw }
            resource "terraform_data" "b" { input = "plain" }
            """, "secret.tfvars": "pw = \"\(Self.secret)\"\n"])
        let invocation = TerraformRunner.Invocation(directory: directory)
        #expect(try await runner.initialize(invocation).outcome == .succeeded)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try await runner.plan(invocation, planFile: planFile, varFiles: [directory.appendingPathComponent("secret.tfvars")])
        let saved = try #require(plan.plan)
        let shown = try await runner.show(invocation, planFile: planFile)
        #expect(shown.plan.formatVersion == "1.2")
        #expect(shown.plan.create == 2)
        #expect(shown.plan.resourceTypes == ["terraform_data"])
        let json = String(decoding: shown.redactedJSON, as: UTF8.self)
        #expect(!json.contains(Self.secret) && !shown.rendering.contains(Self.secret))
        #expect(try await runner.apply(invocation, planFile: planFile, expectedDigest: saved.digest).outcome == .succeeded)
        #expect(!FileManager.default.fileExists(atPath: planFile.path))
    }
}
