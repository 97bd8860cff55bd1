import Foundation
import LockstepCore
import Testing

/// `lockstep provenance`: a run the real daemon took to verified proves its chain offline; a
/// store edited afterwards, or a head that is not the one kept elsewhere, names the broken link.
@Suite(.serialized)
struct ProvenanceTests {
    @Test("a verified run's chain holds from the merge commit to verify, its audit head is in the daemon's log; an edited approval or a wrong audit head breaks it at that link")
    func provenanceOfVerifiedRun() async throws {
        let world = try DaemonWorld(pipeline: .devOnly)
        defer { world.cleanup() }
        let daemon = try await world.startReadyDaemon()
        try world.release("1.0.0")
        let id = try await world.waitForRun(in: ["awaiting_approval"])
        let planDigest = try world.planDigest(of: id)
        let approved = try world.approve(id, digest: planDigest)
        #expect(approved.status == 200, "\(approved.json)")
        _ = try await world.waitForRun(in: ["verified"])
        // The daemon writes each new audit head to its log (the journal under systemd): the
        // witness `--expect-head` compares with, kept outside the store.
        let storeHead = try #require(try await world.auditEntries().last?.hash.hex)
        try await eventually("the daemon to log the audit head") { world.daemonLogs.contains("audit.head=\(storeHead)") }
        daemon.terminate()
        daemon.waitUntilExit()

        let environment = ["PATH": "/usr/bin:/bin", "HOME": world.scratch.path]
        func provenance(_ arguments: [String], store: String? = nil) throws -> (status: Int32, out: String, err: String) {
            let result = try run(try Paths.lockstep().path, ["provenance"] + arguments + ["--store", store ?? world.storePath,
                                                                                          "--repo", world.remote.path],
                                 in: world.scratch, environment: environment)
            return (result.status, result.out, result.err)
        }

        let json = try provenance([id, "--config", world.configPath, "--json"])
        #expect(json.status == 0, "\(json.out)\(json.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
        #expect(report["verified"] as? Bool == true)
        let links = try #require(report["links"] as? [[String: Any]])
        #expect(links.map { $0["name"] as? String ?? "" } == ["audit_log", "run_created", "commit", "tag", "plan", "state", "approvals", "apply", "verify"])
        #expect(links.allSatisfy { $0["ok"] as? Bool == true }, "\(links)")
        let head = try #require(report["audit_head"] as? String)
        #expect(head == storeHead)

        // ENV@VERSION finds the same run; the head kept elsewhere is accepted.
        let human = try provenance(["dev@1.0.0", "--expect-head", head])
        #expect(human.status == 0, "\(human.out)\(human.err)")
        #expect(human.out.contains("provenance of run \(id)") && human.out.contains("chain verified: every link holds"), "\(human.out)")

        // The same chain as an in-toto statement: the applied plan is the subject, the tagged commit the dependency.
        let statementRun = try provenance([id, "--in-toto"])
        #expect(statementRun.status == 0, "\(statementRun.err)")
        let statement = try #require(try JSONSerialization.jsonObject(with: Data(statementRun.out.utf8)) as? [String: Any])
        #expect(statement["_type"] as? String == "https://in-toto.io/Statement/v1")
        #expect(statement["predicateType"] as? String == "https://slsa.dev/provenance/v1")
        let subject = try #require((statement["subject"] as? [[String: Any]])?.first)
        #expect((subject["digest"] as? [String: String])?["sha256"] == planDigest)
        let definition = try #require((statement["predicate"] as? [String: Any])?["buildDefinition"] as? [String: Any])
        let dependency = try #require((definition["resolvedDependencies"] as? [[String: Any]])?.first)
        let created = try #require(links.first { $0["name"] as? String == "commit" }?["detail"] as? String)
        #expect(created.hasPrefix(String(((dependency["digest"] as? [String: String])?["gitCommit"] ?? "").prefix(12))))

        // A head that is not the one kept elsewhere: the audit log itself is the broken link.
        let wrongHead = try provenance([id, "--expect-head", String(repeating: "ab", count: 32)])
        #expect(wrongHead.status == 1)
        #expect(wrongHead.out.contains("chain BROKEN at audit_log"), "\(wrongHead.out)")

        // Someone edits the stored approval to quote another digest: the approvals link breaks.
        let copy = world.scratch.appendingPathComponent("edited.sqlite").path
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: world.storePath + suffix) {
            try FileManager.default.copyItem(atPath: world.storePath + suffix, toPath: copy + suffix)
        }
        let edit = try run("/usr/bin/sqlite3", [copy, "UPDATE approvals SET digest = '\(String(repeating: "0", count: 64))';"],
                           environment: environment)
        try #require(edit.status == 0, "\(edit.err)")
        let edited = try provenance([id], store: copy)
        #expect(edited.status == 1)
        #expect(edited.out.contains("chain BROKEN at approvals"), "\(edited.out)")
        #expect(try provenance([id, "--in-toto"], store: copy).status == 1, "no statement of a broken chain")

        // Unknown runs and nonsense are input errors (exit 2), not verdicts.
        #expect(try provenance(["prod@1.0.0"]).status == 2)
        #expect(try provenance(["not a run"]).status == 2)
    }
}
