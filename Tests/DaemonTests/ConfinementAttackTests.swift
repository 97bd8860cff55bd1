import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// docs/THREAT-MODEL.md §1.2 (plan-time code reads apply credentials), tried on the real daemon as an attacker
/// would: a merged release whose configuration reads the agent's apply credentials file at
/// plan time (`file()`, no provider needed). The daemon confines terraform by default, so the
/// plan fails with the kernel's refusal, and the secret reaches no plan, API answer, log or
/// stored byte; nothing is applied.
@Suite(.serialized)
struct ConfinementAttackTests {
    @Test("a release reading the apply credentials at plan time fails its plan; the secret is in no API answer, log or store file; nothing applied")
    func planCannotReadApplyCredentials() async throws {
        let world = try DaemonWorld(pipeline: .devWithCredentials)
        defer { world.cleanup() }
        _ = try await world.startReadyDaemon()
        #expect(world.daemonLogs.contains("terraform runs confined"), "\(world.daemonLogs)")

        try world.release("1.0.0", extra: [
            "app/leak.tf": "output \"leak\" { value = file(\"\(world.applyCredentialsFile.path)\") }\n",
        ])
        let id = try await world.waitForRun(in: ["failed", "awaiting_approval"])
        let detail = try world.raw("/api/v1/runs/\(id)")
        #expect(try world.runState(id) == "failed", "the plan must fail: \(detail)")
        // The run's stored terraform log carries the kernel's refusal.
        let log = try run("/usr/bin/sqlite3", [world.storePath, "SELECT text FROM run_log_chunks WHERE run_id = '\(id)'"])
        #expect(log.out.lowercased().contains("permission denied"), "the refusal is in the run's log: \(log)")

        let places = ["run detail": detail, "runs": try world.raw("/api/v1/runs"), "daemon log": world.daemonLogs,
                      "run log": log.out]
        for (place, text) in places {
            #expect(!text.contains(world.applySecret), "the apply secret leaked into \(place)")
            #expect(!text.contains(world.planSecret), "the plan secret leaked into \(place)")
        }
        // Every byte the daemon stored: the SQLite file and its WAL, the runs' folders.
        let stored = FileManager.default.enumerator(at: world.scratch.appendingPathComponent("var"), includingPropertiesForKeys: nil)
        var files = 0
        while let url = stored?.nextObject() as? URL {
            guard let data = try? Data(contentsOf: url) else { continue }
            files += 1
            #expect(data.range(of: Data(world.applySecret.utf8)) == nil, "the apply secret is stored in \(url.path)")
        }
        #expect(files > 0)
        #expect(world.applyCount == 0)
    }
}

extension ConfinementAttackTests {
    @Test("the daemon's validation of the branch tip runs confined: merged code reading the apply credentials fails there, and the secret is in no answer or log")
    func branchValidationIsConfined() async throws {
        let world = try DaemonWorld(pipeline: .devWithCredentials, agentExtraYAML: "validate_branch: true")
        defer { world.cleanup() }
        _ = try await world.startReadyDaemon()
        // The tip before the release validates clean: the daemon does validate.
        try await eventually("the first tip validated") {
            let text = try world.raw("/api/v1/environments")
            return text.contains("\"validation\"") && text.contains("\"exit_status\":0")
        }
        // Without confinement terraform would read the file and quote it in its error
        // ("cannot convert \"DEV_APPLY_TOKEN=…\" to number").
        try world.release("1.0.0", extra: [
            "app/leak.tf": """
            locals { leak = file("\(world.applyCredentialsFile.path)") }
            resource "null_resource" "probe" { count = tonumber(local.leak) }

            """,
        ])
        var answer = ""
        try await eventually("the new tip validated") {
            answer = try world.raw("/api/v1/environments")
            return answer.contains("\"exit_status\":1") || answer.contains("\"exit_status\":2")
        }
        #expect(answer.lowercased().contains("permission denied"), "the kernel's refusal is what validation reports: \(answer)")
        for (place, text) in ["board": answer, "daemon log": world.daemonLogs] {
            #expect(!text.contains(world.applySecret), "the apply secret leaked into \(place)")
        }
        try world.writeTokenFiles()
        let status = try world.cli(["status"])
        #expect(status.out.contains("!! validate "), "\(status)")
        #expect(!status.out.contains(world.applySecret))
    }

    @Test("a writable path that contains the store folder is refused at start, naming the key; nothing is served")
    func writablePathOverStoreRefused() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "writable_paths: [", with: "writable_paths: [\(world.scratch.path), ")
            .write(toFile: world.configPath, atomically: true, encoding: .utf8)
        let daemon = try world.startDaemon()
        daemon.waitUntilExit()
        #expect(daemon.terminationStatus != 0)
        #expect(world.daemonLogs.contains("environments.dev.writable_paths[0]: expected a folder that holds neither the store's folder"),
                "\(world.daemonLogs)")
        #expect((try? world.http("GET", "/readyz", as: nil)) == nil, "nothing listens")
    }
}

extension ConfinementAttackTests {
    @Test("terraform inherits no open file of the daemon (store, WAL, lock, mirror) and runs under Landlock with no new privileges")
    func noInheritedDescriptors() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try world.block("plan")
        _ = try await world.startReadyDaemon()
        try world.release("1.0.0")
        try await eventually("terraform plan to start") { world.started("plan") }
        let pidText = try String(contentsOf: world.control.appendingPathComponent("plan.pid"), encoding: .utf8)
        let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
        let targets = descriptors.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
        let daemonFiles = world.scratch.appendingPathComponent("var").path
        #expect(!targets.isEmpty)
        #expect(targets.allSatisfy { !$0.hasPrefix(daemonFiles) }, "inherited: \(targets)")
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("NoNewPrivs:\t1"), "lockstep-confine sets no_new_privs before Landlock")
        try world.release(blocked: "plan")
    }
}

extension DaemonWorld {
    /// The body of a GET as alice, as text (for searching it for secrets).
    func raw(_ path: String) throws -> String {
        let result = try run("/usr/bin/curl", ["-s", "-S", "--max-time", "30", "-H", "Authorization: Bearer \(tokens["alice"] ?? "")",
                                                "http://127.0.0.1:\(port)\(path)"])
        try #require(result.status == 0, "curl failed: \(result.err)")
        return result.out
    }
}
