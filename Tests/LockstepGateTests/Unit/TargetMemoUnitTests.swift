import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// Three projects served in one environment (and in staging, promoted from dev, where a test
/// says so): a change to one project's tags or runs must wake that project's targets alone,
/// and a gate that remembers nothing must find nothing left to do afterwards.
@Suite("Gate unit: a pass visits only the targets whose tags, facts, runs or clock changed")
struct TargetMemoUnitTests {
    static let projects = ["alpha", "beta", "gamma"]
    static let promoted = unitDev + "\n  staging:\n    serves: true\n    promote_from: dev\n    approvals: 1\n    approvers: [alice]"

    /// A world with every project tagged 1.0.0 in `envs`, planned and settled.
    func settled(_ yaml: String = unitDev, environments: [String] = ["dev"]) async throws -> QuietWorld {
        let quiet = try QuietWorld(environmentsYAML: yaml, environments: environments, projects: Self.projects)
        let commit = await quiet.world.release("1.0.0")
        for project in Self.projects { await quiet.world.source.tag("\(project)/dev/1.0.0", at: commit) }
        let first = try await quiet.poll()
        #expect(first.report.targetsVisited.count == first.report.targetsServed)
        try await quiet.settle()
        return quiet
    }

    func target(_ project: String, _ env: String = "dev") -> TargetID {
        TargetID(project: try! ProjectName(project), environment: try! EnvironmentName(env))
    }

    func newest(_ quiet: QuietWorld, _ project: String, _ env: String = "dev") async throws -> StoredRun {
        try #require(try await quiet.world.store.runs(target: target(project, env), states: nil).first)
    }

    @Test("a new merged release tagged for one project visits that target alone, though the branch tip moved for all")
    func newTagVisitsItsTarget() async throws {
        let quiet = try await settled()
        defer { quiet.cleanup() }
        let commit = await quiet.world.release("1.1.0")
        await quiet.world.source.tag("beta/dev/1.1.0", at: commit)

        let result = try await quiet.poll()
        #expect(result.report.targetsVisited == [target("beta")])
        #expect(result.report.targetsServed == 3)
        #expect(try await newest(quiet, "beta").run.tagName == "beta/dev/1.1.0")
        #expect(try await newest(quiet, "beta").state == .awaitingApproval)
        try await quiet.freshPass()
        try await quiet.settle()
    }

    @Test("a tag that a merge makes reachable is accepted, though its name and object did not change")
    func factsChangeWithoutTagChange() async throws {
        let quiet = try await settled()
        defer { quiet.cleanup() }
        let beside = await quiet.world.release("1.2.0", onBranch: false)
        await quiet.world.source.tag("gamma/dev/1.2.0", at: beside, reachable: false)
        #expect(try await quiet.poll().report.targetsVisited == [target("gamma")])
        #expect(try await quiet.world.store.tagDecisions(for: target("gamma")).last?.accepted == false)
        try await quiet.settle()

        // The pull request is merged: the branch moves and the tagged commit is now on it.
        _ = await quiet.world.release("1.2.1")
        await quiet.world.source.setReachable("gamma/dev/1.2.0", true)
        let result = try await quiet.poll()
        #expect(result.report.targetsVisited == [target("gamma")])
        #expect(try await newest(quiet, "gamma").run.tagName == "gamma/dev/1.2.0")
        try await quiet.freshPass()
        try await quiet.settle()
    }

    @Test("a moved tag wakes its target: the waiting run ends and the alert is raised")
    func movedTag() async throws {
        let quiet = try await settled()
        defer { quiet.cleanup() }
        let waiting = try await newest(quiet, "alpha")
        let other = await quiet.world.release("1.0.0-moved")
        await quiet.world.source.tag("alpha/dev/1.0.0", at: other)
        let result = try await quiet.poll()
        #expect(result.report.targetsVisited == [target("alpha")])
        #expect(result.report.runsInvalidated == [waiting.id])
        try await quiet.freshPass()
        try await quiet.settle()
    }

    @Test("an approval, a rejection by another gate and a rollback each wake their own target")
    func storeWritesWakeTheirTarget() async throws {
        let quiet = try await settled()
        defer { quiet.cleanup() }
        let alpha = try await newest(quiet, "alpha")
        #expect(try await quiet.gate.approve(run: alpha.id, identity: "alice", digest: try #require(alpha.planDigest)) == .approved)
        let approved = try await quiet.poll()
        #expect(approved.report.targetsVisited == [target("alpha")])
        #expect(try await quiet.world.store.run(alpha.id)?.state == .verified)
        try await quiet.settle()

        let beta = try await newest(quiet, "beta")
        let other = UnitWorld.gate(agent: quiet.world.agent, store: quiet.world.store, source: quiet.world.source,
                                   runner: quiet.world.runner, scratch: quiet.world.scratch, clock: quiet.world.clock)
        #expect(try await other.reject(run: beta.id, identity: "alice", reason: "not today") == .done(.rejected))
        #expect(try await quiet.poll().report.targetsVisited == [target("beta")])
        try await quiet.settle()

        let commit = await quiet.world.release("1.1.0")
        await quiet.world.source.tag("alpha/dev/1.1.0", at: commit)
        try await quiet.settle()
        let newer = try await newest(quiet, "alpha")
        #expect(try await quiet.gate.approve(run: newer.id, identity: "alice", digest: try #require(newer.planDigest)) == .approved)
        try await quiet.settle()
        let rollback = try await quiet.gate.rollback(environment: "dev", project: "alpha", to: try SemanticVersion("1.0.0"),
                                                     identity: "alice")
        let result = try await quiet.poll()
        #expect(result.report.targetsVisited == [target("alpha")])
        #expect(try await quiet.world.store.run(rollback.id)?.state == .awaitingApproval)
        try await quiet.freshPass()
    }

    @Test("approvals of a skipped target expire on time while other targets keep changing")
    func expiryOfSkippedTarget() async throws {
        let quiet = try await settled(unitDev + "\n    approval_ttl: 1h")
        defer { quiet.cleanup() }
        let waiting = try await newest(quiet, "alpha")
        for minute in 1...3 {
            quiet.world.clock.advance(seconds: 20 * 60 - 1)
            let commit = await quiet.world.release("1.1.\(minute)")
            await quiet.world.source.tag("beta/dev/1.1.\(minute)", at: commit)
            #expect(try await quiet.poll().report.targetsVisited == [target("beta")], "alpha's approvals are not due yet")
            #expect(try await quiet.world.store.run(waiting.id)?.state == .awaitingApproval)
            try await quiet.settle()
        }
        quiet.world.clock.advance(seconds: 3)
        let commit = await quiet.world.release("1.1.9")
        await quiet.world.source.tag("gamma/dev/1.1.9", at: commit)
        let result = try await quiet.poll()
        #expect(Set(result.report.targetsVisited) == [target("alpha"), target("gamma")])
        #expect(result.report.runsAdvanced[waiting.id] == .expired)
        // The expiry was written: the next pass visits alpha again and plans the release anew.
        let again = try await quiet.poll()
        #expect(again.report.targetsVisited.contains(target("alpha")) && again.report.runsCreated.count == 1)
        try await quiet.freshPass()
    }

    @Test("a run verified in dev wakes its project's staging in the same pass, and no other project's")
    func promotionWakesDependants() async throws {
        let quiet = try await settled(Self.promoted, environments: ["dev", "staging"])
        defer { quiet.cleanup() }
        let commit = try await newest(quiet, "beta").run.commit
        for project in Self.projects { await quiet.world.source.tag("\(project)/staging/1.0.0", at: commit) }
        // Nothing verified in dev yet: nothing to promote.
        try await quiet.settle()
        for project in Self.projects {
            #expect(try await quiet.world.store.runs(target: target(project, "staging"), states: nil).isEmpty)
        }

        let dev = try await newest(quiet, "beta")
        #expect(try await quiet.gate.approve(run: dev.id, identity: "alice", digest: try #require(dev.planDigest)) == .approved)
        #expect(try await quiet.gate.apply(run: dev.id) == .applied(.verified))
        let result = try await quiet.poll()
        #expect(result.report.targetsVisited == [target("beta"), target("beta", "staging")])
        #expect(try await newest(quiet, "beta", "staging").state == .awaitingApproval)
        try await quiet.freshPass()
        try await quiet.settle()
    }

    @Test("an audit entry that names no target wakes every target")
    func untargetedEntryWakesAll() async throws {
        let quiet = try await settled()
        defer { quiet.cleanup() }
        try await quiet.world.store.raiseAlert(RunAlert(code: .init(rawValue: "operator_note"), description: "checked by hand"),
                                               target: nil, runID: nil, at: quiet.world.clock.now, actor: "alice")
        let result = try await quiet.poll()
        #expect(result.report.targetsVisited.count == 3)
        try await quiet.settle()
        // A refusal changes nothing but the log: it wakes no target (and the poll stays skipped).
        try await quiet.world.store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: ["reason": "no token"],
                                                at: quiet.world.clock.now, actor: "anonymous")
        let refused = try await quiet.poll()
        #expect(refused.report.targetsVisited.isEmpty)
    }
}
