import Foundation
import LockstepCore
import Testing
@testable import TerraformRunner

/// Attacks from docs/THREAT-MODEL.md (and docs/CONTRACT.md §7) tried against real terraform: each shows nothing
/// leaked and nothing foreign ran.
@Suite("TerraformRunner security")
struct SecurityTests {
    static let sensitiveVariableSecret = "tfvars-secret-9f8e7d"
    static let sensitiveFunctionSecret = "marked-sensitive-4c3b2a"
    static let credentialSecret = "credential-secret-1a2b3c"

    @Test("secrets from sensitive variables, sensitive_values and credentials appear nowhere Lockstep keeps or shows")
    func secretsRedacted() async throws {
        let scratch = try Fixtures.scratch()
        let logs = LogRecorder()
        let runner = try Fixtures.runner(scratch: scratch, logs: logs)
        let directory = try Fixtures.project(scratch, files: [
            "main.tf": """
            variable "db_password" {
              type      = string
              sensitive = true
            }
            variable "api_token" { type = string }
            resource "null_resource" "r" {
              triggers = {
                password = var.db_password
                marked   = sensitive("\(Self.sensitiveFunctionSecret)")
                token    = var.api_token
              }
              provisioner "local-exec" { command = "echo token is $TOKEN_ECHO" }
            }
            output "token" { value = var.api_token }
            """,
            "prod.tfvars": "db_password = \"\(Self.sensitiveVariableSecret)\"\n",
        ])
        let sink = LineRecorder()
        let invocation = TerraformRunner.Invocation(
            directory: directory,
            credentials: ["TF_VAR_api_token": Self.credentialSecret, "TOKEN_ECHO": Self.credentialSecret],
            output: sink)
        _ = try await runner.initialize(invocation)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try await runner.plan(invocation, planFile: planFile, varFiles: [directory.appendingPathComponent("prod.tfvars")])
        let saved = try #require(plan.plan)
        let shown = try await runner.show(invocation, planFile: planFile)
        let applied = try await runner.apply(invocation, planFile: planFile, expectedDigest: saved.digest)
        #expect(applied.outcome == .succeeded)

        let json = String(decoding: shown.redactedJSON, as: UTF8.self)
        let places = [
            "rendering": shown.rendering, "json": json, "sink": sink.text, "logs": logs.text,
            "plan output": plan.command.output, "apply output": applied.output,
        ]
        for secret in [Self.sensitiveVariableSecret, Self.sensitiveFunctionSecret, Self.credentialSecret] {
            for (place, text) in places {
                #expect(!text.contains(secret), "\(secret) leaked into \(place)")
            }
        }
        // The secrets were really there and were replaced, not merely absent.
        #expect(json.contains(Redactor.placeholder))
        #expect(applied.output.contains("token is \(Redactor.placeholder)"))
        #expect(shown.rendering.contains(Redactor.placeholder), "the credential in a plain output is redacted in the rendering")
        // The redacted JSON is still the plan: it decodes to the same summary.
        #expect(try PlanModel(planJSON: shown.redactedJSON) == shown.plan)
    }

    @Test("a credential echoed in a terraform error is redacted from the result and errors")
    func secretsRedactedFromErrors() async throws {
        let scratch = try Fixtures.scratch()
        let logs = LogRecorder()
        let runner = try Fixtures.runner(scratch: scratch, logs: logs)
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            variable "api_token" { type = string }
            resource "null_resource" "r" { triggers = { n = tonumber(var.api_token) } }
            """])
        let sink = LineRecorder()
        let invocation = TerraformRunner.Invocation(
            directory: directory, credentials: ["TF_VAR_api_token": Self.credentialSecret], output: sink)
        _ = try await runner.initialize(invocation)
        let plan = try await runner.plan(invocation, planFile: scratch.appendingPathComponent("p.tfplan"))
        #expect(plan.command.outcome == .failed(exitCode: 1))
        #expect(plan.plan == nil)
        #expect(plan.command.output.contains(Redactor.placeholder), "terraform printed the value; it was replaced")
        for text in [plan.command.output, sink.text, logs.text] {
            #expect(!text.contains(Self.credentialSecret))
        }
        let error = await #expect(throws: TerraformRunnerError.self) {
            _ = try await runner.show(invocation, planFile: scratch.appendingPathComponent("p.tfplan"))
        }
        #expect(error.map { !$0.debugDescription.contains(Self.credentialSecret) } ?? false)
    }

    @Test("a credential terraform prints only in escaped form (\\u003c, \\u0026, \\\") is redacted from the stored JSON and rendering")
    func escapedCredentialRedacted() async throws {
        let secret = "tok<en>&\"quoted\"-7d6e5f"
        let goEscaped = #"tok\u003cen\u003e\u0026\"quoted\"-7d6e5f"#
        let scratch = try Fixtures.scratch()
        let logs = LogRecorder()
        let runner = try Fixtures.runner(scratch: scratch, logs: logs)
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            variable "api_token" { type = string }
            resource "null_resource" "r" { triggers = { token = var.api_token } }
            output "token" { value = var.api_token }
            """])
        let sink = LineRecorder()
        let invocation = TerraformRunner.Invocation(directory: directory, credentials: ["TF_VAR_api_token": secret], output: sink)
        #expect(try await runner.initialize(invocation).outcome == .succeeded)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try await runner.plan(invocation, planFile: planFile)
        #expect(plan.plan != nil)

        // The attack is real: terraform's own JSON carries the value only escaped.
        let raw = Process()
        raw.executableURL = try Fixtures.pinnedTerraform()
        raw.arguments = ["show", "-json", planFile.path]
        raw.currentDirectoryURL = directory
        raw.environment = try runner.environment(for: invocation, home: scratch)
        let pipe = Pipe()
        raw.standardOutput = pipe
        raw.standardError = FileHandle.nullDevice
        try raw.run()
        let rawJSON = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        raw.waitUntilExit()
        #expect(rawJSON.contains(goEscaped) && !rawJSON.contains(secret))

        let shown = try await runner.show(invocation, planFile: planFile)
        let json = String(decoding: shown.redactedJSON, as: UTF8.self)
        let decoded = "\(try JSONSerialization.jsonObject(with: shown.redactedJSON))"
        let places = ["json": json, "decoded json": decoded, "rendering": shown.rendering, "sink": sink.text, "logs": logs.text,
                      "plan output": plan.command.output]
        for (place, text) in places {
            #expect(!text.contains(secret) && !text.contains(goEscaped) && !text.contains("tok<en>") && !text.contains(#"tok\u003cen"#),
                    "the credential leaked into \(place)")
        }
        #expect(json.contains(Redactor.placeholder) && shown.rendering.contains(Redactor.placeholder))
        #expect(try PlanModel(planJSON: shown.redactedJSON) == shown.plan)
    }

    @Test("a file a run writes into HOME is gone before the next command: every command gets a fresh, empty HOME")
    func homeIsPerCommand() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        // A hostile apply plants files a later process would read (an AWS config
        // whose credential_process runs with the next run's credentials). The
        // markers are assembled by printf so terraform's echo of the command
        // line cannot match them.
        let first = try Fixtures.project(scratch, "first", files: ["main.tf": #"""
            resource "null_resource" "plant" {
              provisioner "local-exec" {
                command = "echo planted > \"$HOME/planted\" && mkdir -p \"$HOME/.aws\" && echo '[default]' > \"$HOME/.aws/config\" && test -s \"$HOME/planted\" && printf 'PLANTED%sINTO %s/\\n' - \"$HOME\""
              }
            }
            """#])
        let second = try Fixtures.project(scratch, "second", files: ["main.tf": #"""
            resource "null_resource" "look" {
              provisioner "local-exec" {
                command = "if [ -e \"$HOME/planted\" ] || [ -e \"$HOME/.aws\" ]; then printf 'HOME-HAS%sPLANTED\\n' -; else printf 'HOME-IS%sCLEAN\\n' -; fi; printf 'HOME%sIS %s/\\n' - \"$HOME\""
              }
            }
            """#])
        func initPlanApply(_ directory: URL) async throws -> CommandResult {
            let invocation = TerraformRunner.Invocation(directory: directory)
            #expect(try await runner.initialize(invocation).outcome == .succeeded)
            let planFile = scratch.appendingPathComponent("\(directory.lastPathComponent).tfplan")
            let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
            return try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest)
        }
        func path(after marker: String, in output: String) throws -> String {
            let line = try #require(output.split(separator: "\n").first { $0.contains(marker) })
            let rest = try #require(line.range(of: marker)).upperBound
            return String(line[rest...].prefix { $0 != " " }.dropLast())  // the trailing "/"
        }

        let planted = try await initPlanApply(first)
        #expect(planted.outcome == .succeeded)
        let firstHome = try path(after: "PLANTED-INTO ", in: planted.output)
        #expect(firstHome.hasPrefix(runner.homesDirectory.path), "HOME is runner-owned, outside the exported tree")
        #expect(!FileManager.default.fileExists(atPath: firstHome), "the HOME of a command is removed when it ends")

        let looked = try await initPlanApply(second)
        #expect(looked.outcome == .succeeded)
        #expect(looked.output.contains("HOME-IS-CLEAN"))
        #expect(!looked.output.contains("HOME-HAS-PLANTED"), "a file planted by the previous run was visible")
        #expect(try path(after: "HOME-IS ", in: looked.output) != firstHome)
        #expect(try FileManager.default.contentsOfDirectory(atPath: runner.homesDirectory.path).isEmpty, "no HOME is left behind")
    }

    @Test("the daemon's environment (TF_CLI_ARGS_plan, TF_VAR_, TF_CLI_CONFIG_FILE) is invisible to terraform")
    func environmentIsolation() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let directory = try Fixtures.project(scratch, files: ["main.tf": """
            variable "canary" { default = "unset" }
            resource "null_resource" "r" {}
            output "canary" { value = var.canary }
            """])
        let bogusConfig = scratch.appendingPathComponent("bogus.tfrc")
        try "provider_installation {\n  filesystem_mirror { path = \"/nonexistent\" }\n}\n"
            .write(to: bogusConfig, atomically: true, encoding: .utf8)
        // These would break or change the plan if they reached terraform. No other
        // test reads them: the runner never inherits the process environment.
        setenv("TF_CLI_ARGS_plan", "-this-flag-does-not-exist", 1)
        setenv("TF_CLI_ARGS", "-this-flag-does-not-exist", 1)
        setenv("TF_VAR_canary", "from-daemon", 1)
        setenv("TF_CLI_CONFIG_FILE", bogusConfig.path, 1)
        defer {
            for name in ["TF_CLI_ARGS_plan", "TF_CLI_ARGS", "TF_VAR_canary", "TF_CLI_CONFIG_FILE"] { unsetenv(name) }
        }
        let invocation = TerraformRunner.Invocation(directory: directory)
        #expect(try await runner.initialize(invocation).outcome == .succeeded)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try await runner.plan(invocation, planFile: planFile)
        #expect(plan.command.outcome == .succeeded)
        let json = String(decoding: try await runner.show(invocation, planFile: planFile).redactedJSON, as: UTF8.self)
        #expect(json.contains("\"unset\""))
        #expect(!json.contains("from-daemon"))

        let environment = try runner.environment(for: invocation, home: scratch)
        #expect(Set(environment.keys) == ["PATH", "HOME", "TF_CLI_CONFIG_FILE", "TF_IN_AUTOMATION", "TF_INPUT", "CHECKPOINT_DISABLE"])
        #expect(environment["PATH"] == "/usr/bin:/bin")
        #expect(!environment["TF_CLI_CONFIG_FILE"]!.hasPrefix(directory.path), "the CLI config lives outside the exported tree")
    }

    @Test("a caller cannot pass variables that steer terraform", arguments: [
        "TF_CLI_ARGS", "TF_CLI_ARGS_apply", "TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR", "TF_LOG", "TF_DATA_DIR",
        "TF_REATTACH_PROVIDERS", "PATH", "HOME", "BAD=NAME",
    ])
    func forbiddenVariables(name: String) async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let error = #expect(throws: TerraformRunnerError.self) {
            _ = try runner.environment(for: .init(directory: scratch, environment: [name: "x"]), home: scratch)
        }
        #expect(error?.code == .forbiddenEnvironmentVariable)
    }

    @Test("providers committed in terraform.d/plugins and .terraform/, and a repo .terraformrc, are never used")
    func committedProvidersNeverExecuted() async throws {
        let scratch = try Fixtures.scratch()
        let runner = try Fixtures.runner(scratch: scratch)
        let marker = scratch.appendingPathComponent("fake-provider-ran")
        let fake = "#!/bin/sh\ntouch \(marker.path)\nexit 1\n"
        let providerPath = "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4"
        let directory = try Fixtures.project(scratch, files: [
            "main.tf": Fixtures.nullResources(1),
            "terraform.d/plugins/\(providerPath)": fake,
            ".terraform/providers/\(providerPath)": fake,
            ".terraformrc": "provider_installation {\n  filesystem_mirror { path = \"terraform.d/plugins\" }\n}\n",
            "terraform.rc": "provider_installation {\n  filesystem_mirror { path = \"terraform.d/plugins\" }\n}\n",
        ])
        for path in ["terraform.d/plugins/\(providerPath)", ".terraform/providers/\(providerPath)"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.appendingPathComponent(path).path)
        }
        let invocation = TerraformRunner.Invocation(directory: directory)
        #expect(try await runner.initialize(invocation).outcome == .succeeded)
        let planFile = scratch.appendingPathComponent("p.tfplan")
        let plan = try #require(try await runner.plan(invocation, planFile: planFile).plan)
        #expect(try await runner.apply(invocation, planFile: planFile, expectedDigest: plan.digest).outcome == .succeeded)
        #expect(!FileManager.default.fileExists(atPath: marker.path), "the committed fake provider was executed")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("terraform.d").path))
        let installed = directory.appendingPathComponent(".terraform/providers/\(providerPath)")
        let realDigest = try TerraformRunner.digest(ofFileAt: Fixtures.mirror.appendingPathComponent(providerPath))
        #expect(try TerraformRunner.digest(ofFileAt: installed) == realDigest, "the provider in use is the mirror's")
    }

    @Test("the written CLI config always has an explicit provider_installation block")
    func cliConfigIsExplicit() throws {
        for installation: CLIConfiguration.ProviderInstallation in [
            .filesystemMirror(URL(fileURLWithPath: "/m")), .direct,
            .mirrorThenDirect(URL(fileURLWithPath: "/m"), include: ["registry.terraform.io/hashicorp/*"]),
        ] {
            let text = try CLIConfiguration(providerInstallation: installation).rendered()
            #expect(text.hasPrefix("provider_installation {"))
        }
        #expect(throws: TerraformRunnerError.self) {
            _ = try CLIConfiguration(providerInstallation: .filesystemMirror(URL(fileURLWithPath: "/m\"\n}\nx {"))).rendered()
        }
    }
}
