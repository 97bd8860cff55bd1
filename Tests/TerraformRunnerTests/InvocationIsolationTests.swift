import Foundation
import Logging
import Testing
@testable import TerraformRunner

/// One environment's command against another environment's files, at the runner: what an
/// invocation hides (``TerraformRunner/Invocation/hidden``) and which provider cache it uses
/// (``TerraformRunner/Invocation/pluginCache``). The attack is first shown to work when the
/// other environment's folder is not hidden, so a passing test proves the hiding stopped it.
@Suite("TerraformRunner: per-invocation hidden paths and provider cache", .serialized)
struct InvocationIsolationTests {
    @Test("an invocation's own provider cache is the one its init fills; its hidden folder (another environment's state) can be neither read nor written by apply-time code")
    func hiddenAndOwnCache() async throws {
        let scratch = try Fixtures.scratch()
        // Another environment's local-backend state, holding a secret in plain text.
        let otherState = scratch.appendingPathComponent("prod-state")
        try FileManager.default.createDirectory(at: otherState, withIntermediateDirectories: true)
        let secret = "prod-secret-\(UUID().uuidString.prefix(12))"
        try Data("{\"outputs\": {\"password\": \"\(secret)\"}}\n".utf8).write(to: otherState.appendingPathComponent("terraform.tfstate"))
        let cacheRoot = scratch.appendingPathComponent("caches")
        let base = try Fixtures.runner(scratch: scratch.appendingPathComponent("agent"))
        var configuration = base.configuration
        configuration.pluginCache = cacheRoot
        configuration.confinement = Confinement(launcher: try ConfinementTests.launcher(), hiddenPaths: [])
        let runner = TerraformRunner(configuration: configuration, logger: Logger(label: "test") { _ in LogRecorder() })

        func attempt(_ name: String, hidden: [URL]) async throws -> String {
            let project = try Fixtures.project(scratch, name, files: [
                "main.tf": """
                resource "null_resource" "attack" {
                  provisioner "local-exec" {
                    command = <<-EOT
                      cat '\(otherState.path)/terraform.tfstate'
                      echo planted > '\(otherState.path)/planted-\(name)' && echo "planted-$((1+1))"
                      true
                    EOT
                  }
                }
                """,
            ])
            let planFile = scratch.appendingPathComponent("\(name).tfplan")
            let invocation = TerraformRunner.Invocation(directory: project, writable: [project, planFile], hidden: hidden,
                                                        pluginCache: cacheRoot.appendingPathComponent("dev"))
            let initialized = try await runner.initialize(invocation)
            #expect(initialized.outcome == .succeeded, "\(initialized.output)")
            let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
            let applied = try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest)
            #expect(applied.outcome == .succeeded, "\(applied.output)")
            return applied.output
        }

        // Not hidden, the other environment's state is readable (never writable: it was not granted).
        let open = try await attempt("open", hidden: [])
        #expect(open.contains(secret), "the attack must work without hiding, or this test proves nothing: \(open)")
        // Hidden, the kernel refuses both.
        let guarded = try await attempt("guarded", hidden: [otherState])
        #expect(!guarded.contains(secret), "\(guarded)")
        #expect(guarded.contains("Permission denied"), "\(guarded)")
        #expect(!guarded.contains("planted-2"))
        #expect(!FileManager.default.fileExists(atPath: otherState.appendingPathComponent("planted-guarded").path))

        // Init filled the invocation's own cache (created 0700), not the configuration's.
        let own = cacheRoot.appendingPathComponent("dev")
        #expect(FileManager.default.fileExists(atPath: own.appendingPathComponent("registry.terraform.io/hashicorp/null").path))
        #expect(!FileManager.default.fileExists(atPath: cacheRoot.appendingPathComponent("registry.terraform.io").path))
        let mode = (try FileManager.default.attributesOfItem(atPath: own.path)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o700)
    }
}
