import Testing
@testable import LockstepCore

/// docs/CONTRACT.md §3 rule 4: promote only a tree that was applied and verified in the source environment.
@Suite struct PromotionTests {
    static let tree = object("7")
    static let staging = TargetID(project: project("net"), environment: env("staging"))

    static func record(_ state: RunState, tree: GitObjectID = tree, target: TargetID = staging,
                       reason: TransitionReason.Code? = nil, id: String = "run-1") -> RunRecord {
        RunRecord(runID: runID(id), target: target, commit: object("c"), tree: tree, state: state, lastReason: reason)
    }

    /// Table of recorded facts → promotion outcome.
    @Test(arguments: [
        ("verified in staging", [record(.verified)], PromotionCheck.satisfied(by: runID("run-1"))),
        ("nothing recorded", [], .notSatisfied(PromotionShortfall(code: .neverApplied, description: "this tree was never applied and verified in staging"))),
        ("applied, verify pending", [record(.verifying)],
         .notSatisfied(PromotionShortfall(code: .notYetVerified, description: "this tree was applied to staging but is not verified yet"))),
        ("verify failed", [record(.failed, reason: .verifyFailed)],
         .notSatisfied(PromotionShortfall(code: .verifyFailed, description: "verify failed for this tree in staging"))),
        ("only awaiting approval", [record(.awaitingApproval)],
         .notSatisfied(PromotionShortfall(code: .neverApplied, description: "this tree was never applied and verified in staging"))),
        ("verified, but another tree", [record(.verified, tree: object("8"))],
         .notSatisfied(PromotionShortfall(code: .neverApplied, description: "this tree was never applied and verified in staging"))),
        ("verified, but in dev", [record(.verified, target: TargetID(project: project("net"), environment: env("dev")))],
         .notSatisfied(PromotionShortfall(code: .neverApplied, description: "this tree was never applied and verified in staging"))),
        ("verified, but another project", [record(.verified, target: TargetID(project: project("app"), environment: env("staging")))],
         .notSatisfied(PromotionShortfall(code: .neverApplied, description: "this tree was never applied and verified in staging"))),
        ("failed once, verified later", [record(.failed, reason: .verifyFailed, id: "run-1"), record(.verified, id: "run-2")],
         .satisfied(by: runID("run-2"))),
    ] as [(String, [RunRecord], PromotionCheck)])
    func promotion(label: String, records: [RunRecord], expected: PromotionCheck) {
        #expect(PromotionRule.check(tree: Self.tree, project: project("net"), source: env("staging"), records: records) == expected, "\(label)")
    }
}
