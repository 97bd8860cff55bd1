import NameLiterals
import Foundation
import LockstepCore
import RunStore
import TerraformRunner
import Testing
@testable import LockstepGate

/// dev, and staging promoted from dev: one approval from alice each.
private let devThenStaging = unitDev + """

  staging:
    serves: true
    promote_from: dev
    approvals: 1
    approvers: [alice]
"""

@Suite("Gate unit: promotion (a staging tag waits for its tree to be verified in dev)")
struct PromotionUnitTests {
    @Test("a staging tag is rejected until the same commit is verified in dev, then accepted and planned")
    func acceptedOnlyAfterVerifiedInSource() async throws {
        let world = try UnitWorld(environmentsYAML: devThenStaging, environments: ["dev", "staging"])
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev", "staging"])
        _ = try await world.gate.reconcile()

        #expect(try await world.decision("staging", "staging/1.0.0")?.rejections.map(\.code) == [.promotionSourceNotVerified])
        #expect(try await world.runs("staging").isEmpty)
        let dev = try await world.newestRun("dev")
        #expect(dev.state == .awaitingApproval)

        // Approved but not yet verified: still not promotable.
        #expect(try await world.gate.approve(run: dev.id, identity: "alice", digest: try #require(dev.planDigest)) == .approved)
        #expect(try await world.decision("staging", "staging/1.0.0")?.accepted == false)

        // The next pass applies dev first (sources of promotion first), then accepts staging.
        let report = try await world.gate.reconcile()

        #expect(try await world.store.run(dev.id)?.state == .verified)
        let decision = try #require(try await world.decision("staging", "staging/1.0.0"))
        #expect(decision.accepted && decision.rejections.isEmpty)
        #expect(report.decisionsRecorded[world.target("staging")] == ["staging/1.0.0"])
        let staging = try await world.newestRun("staging")
        #expect(staging.run.commit == dev.run.commit)
        #expect(staging.state == .awaitingApproval)
    }

    @Test("a staging tag on a tree dev never verified stays rejected, whatever dev verified")
    func otherTreeStaysRejected() async throws {
        let world = try UnitWorld(environmentsYAML: devThenStaging, environments: ["dev", "staging"])
        defer { world.cleanup() }
        let dev = try await world.approvedRun("1.0.0")
        #expect(try await world.gate.apply(run: dev.id) == .applied(.verified))
        await world.releaseTagged("1.1.0", in: ["staging"])

        _ = try await world.gate.reconcile()

        #expect(try await world.decision("staging", "staging/1.1.0")?.rejections.map(\.code) == [.promotionSourceNotVerified])
        #expect(try await world.runs("staging").isEmpty)
    }

    @Test("a dev run whose verify failed does not promote its tree")
    func failedVerifyDoesNotPromote() async throws {
        let world = try UnitWorld(environmentsYAML: devThenStaging, environments: ["dev", "staging"],
                                  verify: ["dev": ["true"]])
        defer { world.cleanup() }
        await world.runner.script { $0.programOutcomes = [.failed(exitCode: 1)] }
        let dev = try await world.approvedRun("1.0.0")
        #expect(try await world.gate.apply(run: dev.id) == .applied(.failed))
        await world.source.tag("staging/1.0.0", at: dev.run.commit)

        _ = try await world.gate.reconcile()

        #expect(try await world.decision("staging", "staging/1.0.0")?.rejections.map(\.code) == [.promotionSourceNotVerified])
    }
}
