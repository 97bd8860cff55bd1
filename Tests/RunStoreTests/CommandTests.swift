import Foundation
import Testing
import LockstepCore
@testable import RunStore

/// The built `lockstep` executable, next to this test bundle in `.build/<config>/`.
/// Missing is a failure, never a skip: `swift build --build-tests` builds it.
func lockstepBinary() throws -> String {
    var candidates: [URL] = []
    if let bundle = Bundle.main.executableURL {
        candidates.append(bundle.deletingLastPathComponent().appendingPathComponent("lockstep"))
    }
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    candidates.append(root.appendingPathComponent(".build/debug/lockstep"))
    let found = candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    return try #require(found, "the lockstep executable was not built next to the tests: \(candidates)").path
}

func lockstep(_ arguments: String...) throws -> ProcessResult {
    try runProcess(try lockstepBinary(), arguments)
}

let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// `lockstep audit verify|export` run as a subprocess against real store files.
@Suite("lockstep audit verify and export (the built binary)")
struct AuditCommandTests {
    @Test("verify: an intact store exits 0 and prints the entry count and head; --expect-head is checked")
    func verifyIntact() async throws {
        let scratch = try Scratch()
        let entries = try await closedHistoryStore(scratch)
        let head = try #require(entries.last).hash.hex
        let bytes = try fileBytes(scratch.store)

        let result = try lockstep("audit", "verify", "--store", scratch.store)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "audit log intact: 18 entries, head \(head)\n")
        #expect(try lockstep("audit", "verify", "--store", scratch.store, "--expect-head", head).status == 0)

        let other = String(repeating: "0f", count: 32)
        let mismatch = try lockstep("audit", "verify", "--store", scratch.store, "--expect-head", other)
        #expect(mismatch.status == 1)
        #expect(mismatch.stdout.contains("code head_mismatch"))
        #expect(try lockstep("audit", "verify", "--store", scratch.store, "--expect-head", "zz").status != 0)
        // Read-only: the file is not migrated, rewritten or checkpointed by a check.
        #expect(try fileBytes(scratch.store) == bytes)
    }

    @Test("verify names the first broken entry (sequence, position, code, description) and exits 1",
          arguments: [
            ("UPDATE audit_log SET payload = '{}' WHERE sequence = 10;", "sequence 10, position 10, code edited",
             "the entry was edited"),
            ("DELETE FROM audit_log WHERE sequence = 10;", "sequence 11, position 10, code deleted",
             "1 entry is missing before it"),
            ("""
             UPDATE audit_log SET sequence = -1 WHERE sequence = 10;
             UPDATE audit_log SET sequence = 10 WHERE sequence = 11;
             UPDATE audit_log SET sequence = 11 WHERE sequence = -1;
             """, "sequence 10, position 10, code reordered", "reordered"),
          ])
    func verifyBroken(_ tamper: String, _ named: String, _ described: String) async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, tamper)
        let result = try lockstep("audit", "verify", "--store", scratch.store)
        #expect(result.status == 1, "\(result)")
        #expect(result.stdout.hasPrefix("audit log BROKEN at \(named)\n"), "\(result.stdout)")
        #expect(result.stdout.contains(described))
    }

    @Test("verify reads a live store whose newest entries are still in the WAL, and the store keeps working")
    func verifyLive() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        try await mixedHistory(store)
        let head = try await store.auditHead()
        let result = try lockstep("audit", "verify", "--store", scratch.store, "--expect-head", head.hex)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("18 entries"))
        try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: [:], at: at(50), actor: "x")
        #expect(AuditChain.verify(try await store.auditEntries()).isIntact)
    }

    @Test("verify reports an entry edited into unreadable text as broken at its position")
    func verifyUnreadable() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        try sqlite3(scratch.store, "UPDATE audit_log SET hash = 'nope' WHERE sequence = 7;")
        let result = try lockstep("audit", "verify", "--store", scratch.store)
        #expect(result.status == 1)
        #expect(result.stdout.contains("BROKEN") && result.stdout.contains("position 7"))
    }

    @Test("verify and export refuse a missing file (creating nothing) and a foreign file (leaving it identical)")
    func refusals() async throws {
        let scratch = try Scratch()
        let missing = scratch.file("missing.sqlite")
        for command in ["verify", "export"] {
            let result = try lockstep("audit", command, "--store", missing)
            #expect(result.status == 2)
            #expect(result.stderr.contains(missing) && result.stderr.contains("does not exist"))
            #expect(!FileManager.default.fileExists(atPath: missing))
        }
        let foreign = scratch.file("foreign.db")
        try sqlite3(foreign, "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada');")
        let bytes = try fileBytes(foreign)
        let result = try lockstep("audit", "verify", "--store", foreign)
        #expect(result.status == 2)
        #expect(result.stderr.contains("not a Lockstep store") && result.stderr.contains(foreign))
        #expect(try fileBytes(foreign) == bytes)
    }

    @Test("export writes one JSON object per line with sorted keys and every field; the chain re-verifies from it")
    func export() async throws {
        let scratch = try Scratch()
        let entries = try await closedHistoryStore(scratch)
        let result = try lockstep("audit", "export", "--store", scratch.store)
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == entries.count)
        #expect(result.stdout.hasSuffix("\n"))

        let keys = ["actor", "environment", "epoch_ms", "hash", "kind", "payload", "previous_hash", "project",
                    "run_id", "sequence", "time"]
        var rebuilt: [AuditEntry] = []
        for line in lines {
            // Stable key order in the text itself, not just in a parsed object.
            let positions = keys.map { line.range(of: "\"\($0)\":")?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil } && positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == Set(keys))
            func text(_ key: String) -> String? { object[key] as? String }
            let project = text("project").map { try? ProjectName($0) } ?? nil
            let environment = text("environment").map { try? EnvironmentName($0) } ?? nil
            rebuilt.append(AuditEntry(
                sequence: try #require((object["sequence"] as? NSNumber)?.uint64Value),
                epochMilliseconds: try #require((object["epoch_ms"] as? NSNumber)?.int64Value),
                actor: try #require(text("actor")), kind: AuditKind(rawValue: try #require(text("kind"))),
                target: project.flatMap { project in environment.map { TargetID(project: project, environment: $0) } },
                runID: try text("run_id").map { try RunID($0) },
                payload: try #require(object["payload"] as? [String: String]),
                previousHash: try AuditHash(hex: try #require(text("previous_hash"))),
                hash: try AuditHash(hex: try #require(text("hash")))))
        }
        #expect(rebuilt == entries)
        #expect(AuditChain.verify(rebuilt).isIntact)
        let first = try #require(lines.first)
        #expect(first.contains(#""time":"2027-01-15T08:00:00.000Z""#))
        #expect(lines.last?.contains(#""project":null"#) == true)
    }

    @Test("export --output writes the same lines to a file, and refuses to overwrite the store itself")
    func exportToFile() async throws {
        let scratch = try Scratch()
        _ = try await closedHistoryStore(scratch)
        let stdout = try lockstep("audit", "export", "--store", scratch.store).stdout
        let file = scratch.file("audit.jsonl")
        let written = try lockstep("audit", "export", "--store", scratch.store, "--output", file)
        #expect(written.status == 0)
        #expect(String(decoding: try fileBytes(file), as: UTF8.self) == stdout)
        #expect(written.stderr.contains("exported 18 audit entries"))

        let bytes = try fileBytes(scratch.store)
        let clobber = try lockstep("audit", "export", "--store", scratch.store, "--output", scratch.path + "/./lockstep.sqlite")
        #expect(clobber.status != 0)
        #expect(clobber.stderr.contains("names the store file itself"))
        #expect(try fileBytes(scratch.store) == bytes)
    }
}

/// `lockstep config check` run as a subprocess.
@Suite("lockstep config check (the built binary)")
struct ConfigCheckCommandTests {
    @Test("a valid agent config and repo print ok and a one-line summary, exit 0")
    func valid() throws {
        let scratch = try Scratch()
        let repo = scratch.file("delivery")
        for dir in ["app/envs", "policy"] {
            try FileManager.default.createDirectory(atPath: repo + "/" + dir, withIntermediateDirectories: true)
        }
        for file in ["app/envs/dev.tfvars", "app/envs/staging.tfvars", "app/envs/prod.tfvars",
                     "app/envs/dev.backend.hcl", "app/envs/staging.backend.hcl", "app/envs/prod.backend.hcl",
                     "policy/no-destroy.rego"] {
            #expect(FileManager.default.createFile(atPath: repo + "/" + file, contents: Data()))
        }
        try FileManager.default.copyItem(atPath: packageRoot + "/examples/delivery/lockstep.yaml",
                                         toPath: repo + "/lockstep.yaml")
        let agent = packageRoot + "/examples/agent.yaml"
        let result = try lockstep("config", "check", "--config", agent, "--repo", repo)
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first == "ok")
        #expect(lines.last == "\(agent): 3 environments (dev, prod, staging), serves dev, prod, staging, 3 identities; "
                + "lockstep.yaml: 1 project (app)")

        let agentOnly = try lockstep("config", "check", "--config", agent)
        #expect(agentOnly.status == 0 && agentOnly.stdout.hasPrefix("ok\n"))
    }

    @Test("every error is printed, one per line as FILE: KEY.PATH: expected …, without echoing values; exit 1")
    func invalid() throws {
        let scratch = try Scratch()
        let agent = scratch.file("agent.yaml")
        let yaml = """
            repository:
              url: git://hunter2-secret@example.com/repo.git
            bogus: hunter2-secret
            environments:
              prod:
                approvals: 0
            """
        #expect(FileManager.default.createFile(atPath: agent, contents: Data(yaml.utf8)))
        let result = try lockstep("config", "check", "--config", agent)
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count >= 5, "\(result.stdout)")
        for line in lines {
            #expect(line.hasPrefix("\(agent): ") && line.contains(": expected "), "\(line)")
        }
        for keyPath in ["repository.url", "bogus", "environments.prod.approvals", "store"] {
            #expect(lines.contains { $0.hasPrefix("\(agent): \(keyPath): expected") }, "no error at \(keyPath)")
        }
        #expect(!result.stdout.contains("hunter2") && !result.stderr.contains("hunter2"))
        #expect(!lines.contains("ok"))

        let missing = try lockstep("config", "check", "--config", scratch.file("nope.yaml"))
        #expect(missing.status == 1)
        #expect(missing.stdout.contains(scratch.file("nope.yaml")))
    }
}
