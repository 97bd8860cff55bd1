import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon world's HTTP requests (curl against the real listener) and direct store reads.
extension DaemonWorld {
    // MARK: HTTP (real requests with curl)

    struct Response {
        var status: Int
        var json: [String: Any]
    }

    func http(_ method: String, _ path: String, as identity: String? = "alice", body: String? = nil) throws -> Response {
        var arguments = ["-s", "-S", "--max-time", "30", "-X", method, "-w", "\n%{http_code}"]
        if let identity, let token = tokens[identity] { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        arguments.append("http://127.0.0.1:\(port)\(path)")
        let result = try run("/usr/bin/curl", arguments)
        guard result.status == 0, let newline = result.out.lastIndex(of: "\n"),
              let status = Int(result.out[result.out.index(after: newline)...]) else {
            throw TimedOut(what: "curl failed: \(result.err)")
        }
        let data = Data(result.out[..<newline].utf8)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return Response(status: status, json: json)
    }

    func runs() throws -> [[String: Any]] {
        try http("GET", "/api/v1/runs").json["runs"] as? [[String: Any]] ?? []
    }

    /// The digest of run `id`'s plan, as a reviewer reads it from `GET /api/v1/runs/ID`.
    func planDigest(of id: String) throws -> String {
        try #require(try http("GET", "/api/v1/runs/\(id)").json["digest"] as? String, "run \(id) has no plan digest")
    }

    /// Approves run `id` as alice, quoting `digest`.
    func approve(_ id: String, digest: String) throws -> Response {
        try http("POST", "/api/v1/runs/\(id)/approve", body: #"{"digest":"\#(digest)"}"#)
    }

    func runState(_ id: String) throws -> String? {
        try http("GET", "/api/v1/runs/\(id)").json["state"] as? String
    }

    /// Waits for the first run to exist and reach `state`; returns its id.
    /// Starts a ready daemon, releases 1.0.0, waits for its plan and approves it with
    /// `terraform apply` held (the wrapper blocks it), so a test can act before anything after
    /// `approved` happens. Returns the daemon and the run's id.
    func approveWithApplyHeld() async throws -> (daemon: Process, run: String) {
        let daemon = try await startReadyDaemon()
        try release("1.0.0")
        let id = try await waitForRun(in: ["awaiting_approval"])
        let digest = try planDigest(of: id)
        try block("apply")
        let approved = try approve(id, digest: digest)
        #expect(approved.status == 200, "\(approved.json)")
        return (daemon, id)
    }

    func waitForRun(in states: Set<String>) async throws -> String {
        var found: String?
        try await eventually("a run in \(states)") {
            guard let run = try? runs().first, let state = run["state"] as? String, states.contains(state) else { return false }
            found = run["id"] as? String
            return true
        }
        return try #require(found)
    }

    // MARK: The store, read directly

    func auditEntries() async throws -> [AuditEntry] {
        let store = try SQLiteRunStore.openReadOnly(path: storePath)
        defer { try? store.close() }
        return try await store.auditEntries()
    }

    /// Checks that every audit entry in `before` (read before a kill) is still there, in
    /// order, and the chain is intact; returns the entries now.
    @discardableResult
    func expectAuditKept(_ before: [AuditEntry]) async throws -> [AuditEntry] {
        let after = try await auditEntries()
        #expect(Array(after.prefix(before.count)) == before, "every audit entry stored before the kill is still there")
        #expect(AuditChain.verify(after).isIntact)
        return after
    }
}
