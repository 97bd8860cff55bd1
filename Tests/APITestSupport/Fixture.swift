import Foundation
import LockstepCore
import LockstepHTTP

// MARK: - Canned values both test targets share
//
// Only values identical for the HTTP and the CLI tests live here: the clock, the three
// identities and their tokens, the approval policies, and the runs both use. Each test
// target adds its own environments, targets and extra runs in an `extension Fixture`,
// because the CLI's feed its golden files and the HTTP's feed its JSON expectations.

public enum Fixture {
    public static let now = Date(timeIntervalSince1970: 1_800_000_000)

    public static func id(_ raw: String) -> RunID { try! RunID(raw) }
    public static func identity(_ raw: String) -> IdentityName { try! IdentityName(raw) }
    public static func environment(_ raw: String) -> EnvironmentName { try! EnvironmentName(raw) }
    public static func project(_ raw: String) -> ProjectName { try! ProjectName(raw) }
    public static func object(_ character: Character) -> GitObjectID {
        try! GitObjectID(String(repeating: character, count: 40))
    }
    public static func version(_ raw: String) -> SemanticVersion { try! SemanticVersion(raw) }

    public static let alice = identity("alice")
    public static let bob = identity("bob")
    public static let carol = identity("carol")
    public static let knownIdentities: Set<IdentityName> = [alice, bob, carol]

    /// Tokens as a client holds them; the server only ever sees their hashes. Each is
    /// distinctive so a test can search every byte of output for it.
    public static let aliceToken = "alice-token-7f3a9c2e41d8b6"
    public static let bobToken = "bob-token-52e1f0aa9c7d43"
    public static let carolToken = "carol-token-0c9b8a7d6e5f41"

    public static var credentials: [APICredential] {
        [(alice, aliceToken), (bob, bobToken), (carol, carolToken)].map {
            APICredential(identity: $0.0, tokenSHA256: Digest.sha256(of: $0.1.utf8))
        }
    }

    /// dev, staging: anyone of the three, one approval. prod: alice and bob only, two approvals.
    public static let policies: [String: ApprovalPolicy] = [
        "dev": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol], taggerMayApprove: true,
                                   approvalLifetime: 86_400),
        "staging": try! ApprovalPolicy(requiredApprovals: 1, allowedIdentities: [alice, bob, carol],
                                       taggerMayApprove: false, approvalLifetime: 86_400),
        "prod": try! ApprovalPolicy(requiredApprovals: 2, allowedIdentities: [alice, bob], taggerMayApprove: false,
                                    approvalLifetime: 86_400),
    ]

    public static let app = project("app")
    public static let v1_1_0 = version("1.1.0")
    public static let v1_2_0 = version("1.2.0")
    public static let planDigest = Digest.sha256(of: "the plan file".utf8)
    public static let otherDigest = Digest.sha256(of: "another plan file".utf8)

    /// app in dev: 1.1.0 applied, 1.2.0 waiting for approval in run-dev-1.
    public static let appDev = APITarget(
        project: app, environment: environment("dev"),
        desired: APIRevision(version: v1_2_0, tag: "dev/v1.2.0", commit: object("b")),
        applied: APIRevision(version: v1_1_0, tag: "dev/v1.1.0", commit: object("a")),
        pending: APIPendingRevision(runID: id("run-dev-1"), state: .awaitingApproval, version: v1_2_0, tag: "dev/v1.2.0",
                                    commit: object("b")),
        pin: nil, alerts: 0)

    /// app in prod: nothing applied yet, 1.1.0 (pinned below 1.2.0) waiting for two
    /// approvals in run-prod-1. The alert count differs per test target's screens.
    public static func appProdTarget(alerts: Int) -> APITarget {
        APITarget(
            project: app, environment: environment("prod"),
            desired: APIRevision(version: v1_1_0, tag: "prod/v1.1.0", commit: object("a")),
            applied: nil,
            pending: APIPendingRevision(runID: id("run-prod-1"), state: .awaitingApproval, version: v1_1_0,
                                        tag: "prod/v1.1.0", commit: object("a")),
            pin: APIPin(version: v1_1_0, ceiling: v1_2_0), alerts: alerts)
    }

    public static func run(_ runID: String, environment env: String, state: RunState, version: SemanticVersion,
                           commit: Character) -> APIRunDetail {
        APIRunDetail(
            id: id(runID), project: app, environment: environment(env), tag: "\(env)/v\(version)", version: version,
            commit: object(commit), tree: object("e"), state: state, digest: planDigest, rollback: false,
            summary: APIPlanSummary(create: 1, update: 0, delete: 1, replace: 0, destroyedAddresses: ["null_resource.old"]),
            planRendering: "  # null_resource.old will be destroyed\n  - resource \"null_resource\" \"old\" {}\n",
            checks: [APICheck(name: "allowed_resource_types", passed: true, detail: nil)],
            approvals: [], requiredApprovals: env == "prod" ? 2 : 1,
            mayApprove: env == "prod" ? [alice, bob] : [alice, bob, carol], refusals: [],
            transitions: [APITransition(from: .checking, to: state, reason: .checksPassed, detail: nil,
                                        actor: "lockstep", time: now)],
            alerts: [], createdAt: now, updatedAt: now)
    }

    public static let devRun = run("run-dev-1", environment: "dev", state: .awaitingApproval, version: v1_2_0,
                                   commit: "b")
    public static let prodRun = run("run-prod-1", environment: "prod", state: .awaitingApproval, version: v1_1_0,
                                    commit: "a")

    public static func summary(_ detail: APIRunDetail) -> APIRunSummary {
        APIRunSummary(id: detail.id, project: detail.project, environment: detail.environment, tag: detail.tag,
                      version: detail.version, commit: detail.commit, state: detail.state, digest: detail.digest,
                      rollback: detail.rollback, createdAt: detail.createdAt, updatedAt: detail.updatedAt)
    }

    /// app in dev as the daemon decided its tags: 1.2.0 and 1.1.0 accepted, a tag on an
    /// unmerged branch rejected, a tag whose version does not parse rejected.
    public static let devTagDecisions = APITagDecisionList(environment: environment("dev"), decisions: [
        APITagDecision(project: app, environment: environment("dev"), tag: "dev/v9.9.9", tagObject: object("9"),
                       commit: object("9"), version: version("9.9.9"), accepted: false,
                       rejections: [APITagRejection(code: .notReachable,
                                                    message: "tag \"dev/v9.9.9\" points to a commit that is not on the protected branch")]),
        APITagDecision(project: app, environment: environment("dev"), tag: "dev/v1.2.0", tagObject: object("2"),
                       commit: object("b"), version: v1_2_0, accepted: true, rejections: []),
        APITagDecision(project: app, environment: environment("dev"), tag: "dev/v1.1.0", tagObject: object("1"),
                       commit: object("a"), version: v1_1_0, accepted: true, rejections: []),
        APITagDecision(project: app, environment: environment("dev"), tag: "dev/vnext", tagObject: object("7"),
                       commit: object("7"), version: nil, accepted: false,
                       rejections: [APITagRejection(code: .versionUnparsable,
                                                    message: "tag \"dev/vnext\": \"next\" is not a semantic version")]),
    ])
}
