import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

@Suite("Gate: promotion path")
struct PromotionTests {
    @Test("dev → staging → prod: prod is rejected until staging verifies, then needs two approvers; every apply is in the state and the audit log")
    func devStagingProd() async throws {
        let world = try World(environmentsYAML: threeEnvironments, verify: ["staging": "[true]"])
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev", "staging", "prod"])

        // Pass 1: dev is accepted and planned; staging and prod wait for their sources.
        let first = try await world.gate.reconcile()
        #expect(first.problems.isEmpty, "\(first.problems)")
        let staging0 = try #require(try await world.decision("staging", "staging/v1.0.0"))
        #expect(!staging0.accepted)
        #expect(staging0.rejections.map(\.code) == [.promotionSourceNotVerified])
        let prod0 = try #require(try await world.decision("prod", "prod/v1.0.0"))
        #expect(prod0.rejections.map(\.code) == [.promotionSourceNotVerified])
        #expect(try await world.runs("staging").isEmpty)
        #expect(try await world.runs("prod").isEmpty)
        let dev = try await world.run("dev", "1.0.0")
        #expect(dev.state == .awaitingApproval)
        #expect(dev.plan?.rendering.contains("null_resource.app") == true)

        #expect(try await world.approve(dev, by: ["alice"]) == [.approved])
        #expect(try await world.gate.apply(run: dev.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.0.0")
        #expect(try await world.store.outputs(of: world.target("dev"))?.contains("1.0.0") == true)

        // A second apply of an applied run is refused and applies nothing.
        let again = try await world.gate.apply(run: dev.id)
        guard case .notApplied = again else { Issue.record("second apply: \(again)"); return }
        #expect(world.applyLog == ["dev:1.0.0"])

        // Pass 2: staging accepted (dev verified the same tree); prod still waits for staging.
        let second = try await world.gate.reconcile()
        #expect(second.problems.isEmpty, "\(second.problems)")
        #expect(try await world.decision("staging", "staging/v1.0.0")?.accepted == true)
        #expect(try await world.decision("prod", "prod/v1.0.0")?.accepted == false)
        let staging = try await world.run("staging", "1.0.0")
        #expect(staging.state == .awaitingApproval)
        #expect(try await world.approve(staging, by: ["bob"]) == [.approved])
        #expect(try await world.gate.apply(run: staging.id) == .applied(.verified))
        let stagingStates = try await world.store.transitions(of: staging.id).map(\.transition.to)
        #expect(stagingStates == [.planning, .checking, .awaitingApproval, .approved, .applying, .applied, .verifying, .verified])

        // Pass 3: prod accepted now; one approval is not enough, two distinct ones are.
        let third = try await world.gate.reconcile()
        #expect(third.problems.isEmpty, "\(third.problems)")
        #expect(try await world.decision("prod", "prod/v1.0.0")?.accepted == true)
        let prod = try await world.run("prod", "1.0.0")
        #expect(prod.state == .awaitingApproval)
        #expect(try await world.approve(prod, by: ["alice"]) == [.recorded(valid: 1, required: 2)])
        let early = try await world.gate.apply(run: prod.id)
        guard case .notApplied = early else { Issue.record("apply with one of two approvals: \(early)"); return }
        #expect(try world.applied("prod") == nil)
        #expect(try await world.approve(prod, by: ["carol"]) == [.approved])
        #expect(try await world.gate.apply(run: prod.id) == .applied(.verified))

        #expect(try world.applied("prod")?["release"] == "1.0.0")
        #expect(world.applyLog == ["dev:1.0.0", "staging:1.0.0", "prod:1.0.0"])
        #expect(world.planFilesOnDisk().isEmpty)

        // The audit log covers the prod run end to end and the prod tag's two decisions.
        let kinds = try await world.auditKinds(prod.id)
        #expect(kinds.filter { $0 == "approval" }.count == 2)
        #expect(kinds.contains("apply_preconditions"))
        #expect(kinds.filter { $0 == "transition" }.count >= 7)
        let prodDecisions = try await world.store.auditEntries().filter {
            $0.kind == .tagDecision && $0.target == world.target("prod")
        }
        #expect(prodDecisions.count == 2)
        #expect(AuditChain.verify(try await world.store.auditEntries()).isIntact)
    }
}
