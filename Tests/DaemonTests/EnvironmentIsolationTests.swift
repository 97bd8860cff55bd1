import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Environments on one agent are isolated from each other, tried on the real daemon with real
/// Landlock confinement as an attacker with one dev approval would: dev and prod each keep a
/// local-backend state in a folder of their own (`environments.ENV.writable_paths`), and prod's
/// state holds a secret in plain text, as terraform state does. A dev release whose code reads
/// prod's state at plan time (`terraform_remote_state`) fails its plan; one whose `local-exec`
/// copies prod's state into dev's own folder, writes beside prod's state and into prod's
/// provider cache is applied after one dev approval, and every one of those accesses is refused
/// by the kernel, as are the same reads and writes by its verify command. Prod's next release
/// still plans against its intact state and applies.
@Suite(.serialized)
struct EnvironmentIsolationTests {
    @Test("a dev release can neither read prod's state (plan or apply time) nor write beside it or into prod's provider cache; prod's own next run plans against its intact state and applies")
    func devCannotReachProd() async throws {
        let world = try DaemonWorld(pipeline: .devAndProd)
        defer { world.cleanup() }
        // Providers cached per environment under a root outside the store's folder, so hiding
        // prod's cache from dev is what stops dev, not the store's folder being hidden.
        let cacheRoot = world.scratch.appendingPathComponent("plugin-cache")
        // Prod's secret reaches its state through a variable from its plan credentials file
        // (like a generated password): it is in no committed file a dev release could read.
        let secret = "prod-db-password-\(UUID().uuidString.prefix(12))"
        let secrets = world.scratch.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        let prodPlan = secrets.appendingPathComponent("prod-plan.env")
        try "TF_VAR_db_password=\(secret)\n".write(to: prodPlan, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: prodPlan.path)
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
        try config
            .replacingOccurrences(of: "terraform:\n", with: "terraform:\n  plugin_cache_dir: \(cacheRoot.path)\n")
            .replacingOccurrences(of: "  prod:\n", with: "  prod:\n    plan_credentials_file: \(prodPlan.path)\n")
            .write(toFile: world.configPath, atomically: true, encoding: .utf8)
        try world.writeTokenFiles()
        _ = try await world.startReadyDaemon()
        #expect(world.daemonLogs.contains("terraform runs confined"), "\(world.daemonLogs)")

        // 1.0.0 applied to dev and then to prod: prod's state now holds the secret.
        let outputs = """
            variable "db_password" {
              type    = string
              default = ""
            }
            output "db_password" {
              value = var.db_password
            }

            """
        try world.release("1.0.0", extra: ["app/outputs.tf": outputs])
        let dev = try await world.waitThroughCLI(tag: "dev/v1.0.0", state: "awaiting_approval")
        try world.approveThroughCLI(dev, as: "alice")
        _ = try await world.waitThroughCLI(tag: "dev/v1.0.0", state: "verified")
        try world.tagProd("1.0.0")
        let prod = try await world.waitThroughCLI(tag: "prod/v1.0.0", state: "awaiting_approval")
        try world.approveThroughCLI(prod, as: "bob")
        _ = try await world.waitThroughCLI(tag: "prod/v1.0.0", state: "verified")
        let prodState = try Data(contentsOf: world.stateFile("prod"))
        try #require(prodState.range(of: Data(secret.utf8)) != nil, "prod's state holds the secret in plain text")
        // Each environment's init filled only its own provider cache.
        for environment in ["dev", "prod"] {
            #expect(FileManager.default.fileExists(atPath: cacheRoot.appendingPathComponent("\(environment)/registry.terraform.io/hashicorp/null").path),
                    "\(environment) caches its providers in its own folder")
        }
        #expect(!FileManager.default.fileExists(atPath: cacheRoot.appendingPathComponent("registry.terraform.io").path),
                "no provider is cached where every environment would run it")

        // Plan time: dev's code reads prod's outputs from prod's state file. The plan fails.
        let prodStateFile = world.stateFile("prod").path
        try world.release("1.1.0", extra: ["app/peek.tf": """
            data "terraform_remote_state" "prod" {
              backend = "local"
              config = {
                path = "\(prodStateFile)"
              }
            }
            output "peek" {
              value = data.terraform_remote_state.prod.outputs
            }

            """])
        let peek = try await world.waitForTag("dev/v1.1.0", in: ["failed", "awaiting_approval"])
        let peekDetail = try world.raw("/api/v1/runs/\(peek)")
        #expect(try world.runState(peek) == "failed", "dev's plan must not read prod's state: \(peekDetail)")
        let peekLog = try run("/usr/bin/sqlite3", [world.storePath, "SELECT text FROM run_log_chunks WHERE run_id = '\(peek)'"])
        #expect(peekLog.out.lowercased().contains("permission denied"), "the kernel's refusal is in the run's log: \(peekLog.out)")

        // Apply time, after one dev approval: dev's local-exec copies prod's state into dev's own
        // state folder, writes beside prod's state, lists and writes prod's provider cache, and
        // records what each attempt said in dev's folder.
        let devFolder = world.stateDirectory.appendingPathComponent("dev")
        let prodFolder = world.stateDirectory.appendingPathComponent("prod")
        let prodCache = cacheRoot.appendingPathComponent("prod")
        // Its verify command (run with dev's grants, no credentials) tries the same.
        let verify = "cat '\(prodFolder.path)/terraform.tfstate' > '\(devFolder.path)/verify-stolen' 2> '\(devFolder.path)/verify-read-error'; "
            + "echo planted 2> '\(devFolder.path)/verify-write-error' > '\(prodFolder.path)/verify-planted'; "
            + "echo ran > '\(devFolder.path)/verify-ran'; true"
        try world.release("1.2.0", extra: [
            "lockstep.yaml": """
                projects:
                  app:
                    dir: app
                    environments:
                      dev:
                        var_files: [app/dev.tfvars]
                        backend_config_files: [app/dev.backend.hcl]
                        verify:
                          - [sh, -c, "\(verify)"]
                      prod:
                        var_files: [app/prod.tfvars]
                        backend_config_files: [app/prod.backend.hcl]

                """,
            "app/peek.tf": "# removed\n",
            "app/attack.tf": """
                resource "null_resource" "attack" {
                  provisioner "local-exec" {
                    command = <<-EOT
                      D='\(devFolder.path)'; P='\(prodFolder.path)'; C='\(prodCache.path)'
                      echo ran > "$D/attack-ran"
                      cat "$P/terraform.tfstate" > "$D/stolen.tfstate" 2> "$D/read-error"
                      echo planted 2> "$D/write-error" > "$P/planted"
                      ls "$C" > "$D/cache-list" 2> "$D/cache-error"
                      echo planted 2> "$D/cache-write-error" > "$C/planted"
                      true
                    EOT
                  }
                }

                """,
        ])
        let attack = try await world.waitThroughCLI(tag: "dev/v1.2.0", state: "awaiting_approval")
        try world.approveThroughCLI(attack, as: "alice")
        _ = try await world.waitThroughCLI(tag: "dev/v1.2.0", state: "verified")
        func text(_ name: String) -> String {
            (try? String(contentsOf: devFolder.appendingPathComponent(name), encoding: .utf8)) ?? ""
        }
        #expect(text("attack-ran") == "ran\n", "dev's code ran at apply, able to write its own state folder")
        #expect(text("read-error").contains("Permission denied"), "reading prod's state: \(text("read-error"))")
        #expect(!text("stolen.tfstate").contains(secret) && text("stolen.tfstate").isEmpty, "nothing of prod's state reached dev's folder")
        #expect(text("write-error").contains("Permission denied"), "writing beside prod's state: \(text("write-error"))")
        #expect(!FileManager.default.fileExists(atPath: prodFolder.appendingPathComponent("planted").path))
        #expect(text("cache-error").contains("Permission denied"), "listing prod's provider cache: \(text("cache-error"))")
        #expect(text("cache-write-error").contains("Permission denied"), "writing prod's provider cache: \(text("cache-write-error"))")
        #expect(!FileManager.default.fileExists(atPath: prodCache.appendingPathComponent("planted").path))
        #expect(text("verify-ran") == "ran\n", "dev's verify command ran, able to write dev's state folder")
        #expect(text("verify-read-error").contains("Permission denied"), "verify reading prod's state: \(text("verify-read-error"))")
        #expect(text("verify-stolen").isEmpty)
        #expect(text("verify-write-error").contains("Permission denied"), "verify writing beside prod's state: \(text("verify-write-error"))")
        #expect(!FileManager.default.fileExists(atPath: prodFolder.appendingPathComponent("verify-planted").path))
        #expect(try Data(contentsOf: world.stateFile("prod")) == prodState, "prod's state is byte for byte what prod's apply wrote")

        // Prod's own next release plans against its intact state (a replacement, not a creation)
        // and applies; the secret never left prod's state.
        try world.release("1.3.0", extra: ["app/attack.tf": "# removed\n"])
        try world.tagProd("1.3.0")
        let next = try await world.waitThroughCLI(tag: "prod/v1.3.0", state: "awaiting_approval")
        let summary = try world.http("GET", "/api/v1/runs/\(next)").json["summary"] as? [String: Any]
        #expect(summary?["replace"] as? Int == 1 && summary?["create"] as? Int == 0,
                "prod's plan read its state: the app is replaced, not created again: \(String(describing: summary))")
        try world.approveThroughCLI(next, as: "alice")
        _ = try await world.waitThroughCLI(tag: "prod/v1.3.0", state: "verified")
        let after = try String(contentsOf: world.stateFile("prod"), encoding: .utf8)
        #expect(after.contains(#""release": "1.3.0""#) && after.contains(secret))
        #expect(world.appliedReleases.filter { $0.hasPrefix("prod:") } == ["prod:1.0.0", "prod:1.3.0"])
        let places = ["runs": try world.raw("/api/v1/runs"), "peek run": peekDetail, "peek log": peekLog.out,
                      "daemon log": world.daemonLogs]
        for (place, text) in places {
            #expect(!text.contains(secret), "prod's secret leaked into \(place)")
        }
    }
}

extension DaemonWorld {
    /// Tags the commit of `dev/vVERSION` as `prod/vVERSION` and publishes it.
    func tagProd(_ version: String) throws {
        let commit = try git(["rev-parse", "dev/v\(version)^{commit}"])
        try git(["tag", "-a", "-m", "prod/v\(version)", "prod/v\(version)", commit])
        try publish()
    }

    /// Polls the runs until the run of `tag` is in one of `states`; returns its id.
    func waitForTag(_ tag: String, in states: Set<String>) async throws -> String {
        var found: String?
        try await eventually("\(tag) to reach one of \(states.sorted())", seconds: 45) {
            guard let run = try runs().first(where: { $0["tag"] as? String == tag }),
                  let state = run["state"] as? String, states.contains(state) else { return false }
            found = run["id"] as? String
            return true
        }
        return try #require(found)
    }
}
