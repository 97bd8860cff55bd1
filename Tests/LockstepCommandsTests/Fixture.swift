import APITestSupport
import Foundation
import LockstepCore
import LockstepHTTP

// MARK: - The CLI tests' backend
//
// CannedBackend (APITestSupport) is a canned test backend: it does not plan, apply or
// store anything, and approvals are judged by the real core rules. These tests put it
// behind the real APIServer to show what the `lockstep` client binary does with real
// HTTP answers: output, exit statuses, credentials.

extension CannedBackend {
    /// Three environments and the runs below. An approval that completes the count moves
    /// the run to `approved`, as the gate does, so the client's screens show what an
    /// operator would see next.
    init() {
        self.init(environments: Fixture.environments, runs: Fixture.runs, promotesWhenApproved: true)
    }
}

// MARK: - Canned values of the CLI tests (the shared ones are in APITestSupport)
//
// These feed the golden files under Golden/: changing one changes a screen.

extension Fixture {
    /// Issued to nobody: the server answers 401.
    static let strangerToken = "stranger-token-99aa88bb77cc"
    static let allTokens = [aliceToken, bobToken, carolToken, strangerToken]

    static let net = project("net")
    static let v1_0_0 = version("1.0.0")
    static let v2_0_0 = version("2.0.0")

    static let netDev = APITarget(
        project: net, environment: environment("dev"),
        desired: APIRevision(version: v2_0_0, tag: "net/dev/v2.0.0", commit: object("c")),
        applied: APIRevision(version: v2_0_0, tag: "net/dev/v2.0.0", commit: object("c")),
        pending: nil, pin: nil, alerts: 0)
    /// The apply of run-stg-0 was cut off: the target is blocked until someone resolves it.
    static let appStaging = APITarget(
        project: app, environment: environment("staging"),
        desired: APIRevision(version: v1_1_0, tag: "staging/v1.1.0", commit: object("a")),
        applied: APIRevision(version: v1_0_0, tag: "staging/v1.0.0", commit: object("9")),
        pending: APIPendingRevision(runID: id("run-stg-0"), state: .interrupted, version: v1_1_0, tag: "staging/v1.1.0",
                                    commit: object("a")),
        pin: nil, alerts: 1)
    static let appProd = appProdTarget(alerts: 0)

    static let environments = [
        APIEnvironment(name: environment("dev"), promoteFrom: nil, requiredApprovals: 1, approvers: [alice, bob, carol],
                       served: true, targets: [appDev, netDev]),
        APIEnvironment(name: environment("staging"), promoteFrom: environment("dev"), requiredApprovals: 1,
                       approvers: [alice, bob, carol], served: true, targets: [appStaging]),
        APIEnvironment(name: environment("prod"), promoteFrom: environment("staging"), requiredApprovals: 2,
                       approvers: [alice, bob], served: true, targets: [appProd]),
    ]

    static let interruptedRun: APIRunDetail = {
        var run = Fixture.run("run-stg-0", environment: "staging", state: .interrupted, version: v1_1_0, commit: "a")
        run.alerts = [APIAlert(code: .applyInterrupted,
                               message: "the daemon stopped while this run was applying", time: now)]
        return run
    }()
    static let verifiedRun = run("run-dev-0", environment: "dev", state: .verified, version: v1_1_0, commit: "a")

    /// Repo-derived text with terminal escapes: a title change, a carriage return that would
    /// overwrite the line, and a bidi override that reorders what the eye reads.
    static let hostileRendering = "  # null_resource.x will be created\n\u{1B}]0;owned\u{07}\u{1B}[2Jhidden\rfake digest\u{202E}gnp.exe\n"
    static let hostileRun: APIRunDetail = {
        var run = Fixture.run("run-dev-2", environment: "dev", state: .checking, version: v1_2_0, commit: "b")
        run.planRendering = hostileRendering
        run.checks = [APICheck(name: "policy", passed: false, detail: "bad\u{1B}[31m red\u{9B}31m")]
        run.tagger = "Mallory <m@example.com>\u{1B}[8m"
        run.tagMessage = "Release notes\n\u{1B}[1Aapproved by alice\rsure"
        run.commitMessage = "Merge pull request #9 from m/x\u{07}\n\nbody"
        return run
    }()

    static let runs = [devRun, prodRun, interruptedRun, verifiedRun, hostileRun]
}
