import Foundation
import LockstepCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `lockstep tags ENV --offline` decides with the daemon's own code, so it says what the daemon
/// says. Before, the offline mode had rules of its own, skipped the promotion check and printed
/// `accepted` for a tag the daemon rejected. And a rejected tag is logged once, when it is first
/// decided, not on every poll.
@Suite(.serialized)
struct TagDecisionAgreementTests {
    @Test("the daemon's decisions (API) and --offline with its store agree tag by tag, promotion rule included; a rejected tag is logged once")
    func offlineAgreesWithDaemon() async throws {
        let world = try DaemonWorld(pipeline: .devStagingProd)
        defer { world.cleanup() }
        try await world.startReadyDaemon()
        // dev/v1.0.0 on a merge commit (accepted); staging/v1.0.0 on the same commit before dev
        // verified it (the promotion rule rejects it); dev/v9.9.9 on an unmerged branch.
        try world.release("1.0.0")
        try world.git(["tag", "-a", "-m", "staging/v1.0.0", "staging/v1.0.0", "dev/v1.0.0^{commit}"])
        try world.git(["checkout", "-q", "-b", "unmerged"])
        try world.git(["commit", "-q", "--allow-empty", "-m", "not reviewed"])
        try world.git(["tag", "-a", "-m", "dev/v9.9.9", "dev/v9.9.9"])
        try world.git(["checkout", "-q", "main"])
        try world.publish()

        let tokenFile = world.scratch.appendingPathComponent("alice.token")
        try Data((world.tokens["alice"] ?? "").utf8).write(to: tokenFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokenFile.path)
        func daemonSays(_ environment: String) throws -> [Decision] {
            let result = try run(try Paths.lockstep().path, ["tags", environment, "--json", "--server", "http://127.0.0.1:\(world.port)",
                                                            "--token-file", tokenFile.path],
                                 environment: ["PATH": "/usr/bin:/bin", "HOME": world.scratch.path])
            try #require(result.status == 0, "lockstep tags \(environment): \(result.err)")
            return try Decision.list(result.out)
        }
        try await eventually("the daemon to decide all three tags") {
            (try? daemonSays("dev").count) == 2 && (try? daemonSays("staging").count) == 1
        }

        let offlineMirror = world.scratch.appendingPathComponent("offline-mirror")
        for environment in ["dev", "staging"] {
            let daemon = try daemonSays(environment)
            let offline = try run(try Paths.lockstep().path, ["tags", environment, "--offline", "--json", "--config", world.configPath,
                                                             "--mirror", offlineMirror.path, "--store", world.storePath],
                                  in: world.scratch, environment: ["PATH": "/usr/bin:/bin", "HOME": world.scratch.path])
            try #require(offline.status == 0, "lockstep tags \(environment) --offline: \(offline.err)")
            #expect(try Decision.list(offline.out) == daemon, "\(environment): offline and daemon disagree")
        }
        let dev = try daemonSays("dev")
        #expect(dev.first { $0.tag == "dev/v1.0.0" }?.accepted == true)
        #expect(dev.first { $0.tag == "dev/v9.9.9" }?.rejections == ["not_reachable_from_protected_branch"])
        let staging = try daemonSays("staging")
        #expect(staging.first?.accepted == false)
        #expect(staging.first?.rejections.contains("promotion_source_not_verified") == true, "\(staging)")

        // Later passes decide nothing new about those tags and log nothing more about them: a
        // new tag's decision shows at least one later pass ran.
        try world.release("1.0.1")
        try await eventually("the daemon to decide dev/v1.0.1") { (try? daemonSays("dev").count) == 3 }
        let logged = world.daemonLogs.components(separatedBy: "tag=dev/v9.9.9 tag.accepted=false").count - 1
        #expect(logged == 1, "the rejected tag was logged \(logged) times")
    }
}

/// One tag decision as `lockstep tags --json` prints it, reduced to what must agree.
struct Decision: Equatable, CustomStringConvertible {
    var tag: String
    var accepted: Bool
    var rejections: [String]

    static func list(_ json: String) throws -> [Decision] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let decisions = try #require(object?["decisions"] as? [[String: Any]], "not a decision list: \(json.prefix(300))")
        return decisions.map { decision in
            Decision(tag: decision["tag"] as? String ?? "", accepted: decision["accepted"] as? Bool ?? false,
                     rejections: (decision["rejections"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String })
        }
    }

    var description: String { "\(tag) \(accepted ? "accepted" : "rejected \(rejections)")" }
}
