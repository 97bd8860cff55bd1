import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// dev alone: one approval from alice.
let unitDev = """
  dev:
    serves: true
    approvals: 1
    approvers: [alice]
"""

/// One tag and the rules it meets, with the decision expected (no rejection: accepted).
struct TagCase: Sendable, CustomTestStringConvertible {
    var name: String
    var environmentYAML = unitDev
    var requireMergeCommit = true
    var tagName = "dev/1.0.0"
    var tagger: String? = "dave@example.com"
    var reachable = true
    var mergeCommit = true
    var rejections: [TagRejection.Code] = []
    var testDescription: String { name }
}

@Suite("Gate unit: tag decisions (event → decision)")
struct TagDecisionUnitTests {
    static let cases: [TagCase] = [
        TagCase(name: "an annotated merge commit on the branch is accepted"),
        TagCase(name: "a lightweight tag is rejected where the tagger may not approve", tagger: nil,
                rejections: [.notAnnotated]),
        TagCase(name: "a lightweight tag is accepted where the tagger may approve",
                environmentYAML: unitDev + "\n    tagger_may_approve: true", tagger: nil),
        TagCase(name: "a commit not reachable from the protected branch is rejected", reachable: false,
                rejections: [.notReachable]),
        TagCase(name: "a commit that is not a merge on the first-parent chain is rejected", mergeCommit: false,
                rejections: [.notMergeCommit]),
        TagCase(name: "a non-merge commit is accepted when the agent does not require merges", requireMergeCommit: false,
                mergeCommit: false),
        TagCase(name: "an environment that requires signed tags rejects (signatures fail closed)",
                environmentYAML: unitDev + "\n    require_signed_tags: true\n    allowed_signers_file: /nonexistent/allowed_signers",
                rejections: [.signatureNotVerified]),
        TagCase(name: "a version that is not SemVer is rejected, not ignored", tagName: "dev/1.x",
                rejections: [.versionUnparsable]),
    ]

    @Test("each tag gets its decision, recorded with every reason; only an accepted tag gets a run", arguments: cases)
    func decision(_ tagCase: TagCase) async throws {
        let world = try UnitWorld(environmentsYAML: tagCase.environmentYAML, requireMergeCommit: tagCase.requireMergeCommit)
        defer { world.cleanup() }
        let commit = await world.release("1.0.0")
        await world.source.tag(tagCase.tagName, at: commit, tagger: tagCase.tagger, reachable: tagCase.reachable,
                               mergeCommit: tagCase.mergeCommit)

        let report = try await world.gate.reconcile()

        let decision = try #require(try await world.decision("dev", tagCase.tagName))
        #expect(decision.rejections.map(\.code) == tagCase.rejections)
        #expect(decision.accepted == tagCase.rejections.isEmpty)
        #expect(decision.commit == commit)
        #expect(report.decisionsRecorded[world.target("dev")] == [tagCase.tagName])
        let runs = try await world.runs("dev")
        if tagCase.rejections.isEmpty {
            #expect(runs.map(\.run.tagName) == [tagCase.tagName])
            #expect(decision.version == semver("1.0.0"))
        } else {
            #expect(runs.isEmpty)
            #expect(await world.runner.calls.isEmpty, "a rejected tag is never planned")
            #expect(await world.source.exports.isEmpty)
        }
    }

    @Test("an unchanged decision is recorded once, not on every pass")
    func decisionRecordedOnce() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev"])
        _ = try await world.gate.reconcile()
        let second = try await world.gate.reconcile()
        #expect(second.decisionsRecorded.isEmpty)
        #expect(try await world.store.tagDecisions(for: world.target("dev")).count == 1)
    }

    @Test("a tag whose facts cannot be read is a reported problem, never a silent skip or an acceptance")
    func unreadableTagIsReported() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev"])
        await world.source.script { $0.releaseFactsFailure["dev/1.0.0"] = GitError(.corruptRepository, "object unreadable") }
        let report = try await world.gate.reconcile()
        #expect(report.problems.contains { $0.contains("dev/1.0.0") && $0.contains("could not be read") }, "\(report.problems)")
        #expect(try await world.decision("dev", "dev/1.0.0") == nil)
        #expect(try await world.runs("dev").isEmpty)
    }

    @Test("a fetch that fails ends the pass with a repository error and decides nothing")
    func fetchFailure() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev"])
        await world.source.script { $0.syncFailure = GitError(.network, "remote unreachable") }
        await #expect(throws: GateError.self) { try await world.gate.reconcile() }
        #expect(try await world.store.tagDecisions(for: world.target("dev")).isEmpty)
    }

    @Test("a moved tag raises an alert, ends the waiting run it named, and is not followed to its new commit")
    func movedTag() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun("1.0.0")
        #expect(run.state == .awaitingApproval)
        let other = await world.release("1.0.0-evil")
        await world.source.tag("dev/1.0.0", at: other)

        let report = try await world.gate.reconcile()

        #expect(report.tagsMoved == ["dev/1.0.0"])
        #expect(report.runsInvalidated == [run.id])
        #expect(try await world.store.run(run.id)?.state == .failed)
        #expect(try await world.path(run.id).last == "failed:tag_moved")
        let alerts = try await world.store.alerts(target: world.target("dev"))
        #expect(alerts.contains { $0.runID == nil && $0.alert.code == .tagMoved && $0.alert.description.contains("moved from") })
        #expect(alerts.contains { $0.runID == run.id && $0.alert.code == .tagMoved })
        #expect(alerts.contains { $0.alert.code == Gate.tagNotFollowed }, "the moved name is never planned again")
        #expect(try await world.runs("dev").count == 1)
        // The next pass raises nothing new: one alert per change, not one per poll.
        let again = try await world.gate.reconcile()
        #expect(again.alertsRaised.isEmpty)
    }

    @Test("a deleted tag raises an alert and ends the waiting run it named")
    func deletedTag() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        let run = try await world.plannedRun("1.0.0")
        await world.source.deleteTag("dev/1.0.0")

        let report = try await world.gate.reconcile()

        #expect(report.tagsDeleted == ["dev/1.0.0"])
        #expect(try await world.store.run(run.id)?.state == .failed)
        let alerts = try await world.store.alerts(target: world.target("dev"))
        #expect(alerts.contains { $0.runID == nil && $0.alert.code == .tagMoved && $0.alert.description.contains("was deleted") })
        #expect(await world.runner.applies.isEmpty)
    }

    @Test("two accepted tags with one version raise an alert and start no run: Lockstep does not guess")
    func ambiguousVersion() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev"])
        await world.source.tag("dev/v1.0.0", at: await world.release("1.0.0-again"))

        let report = try await world.gate.reconcile()

        #expect(try await world.decision("dev", "dev/1.0.0")?.accepted == true)
        #expect(try await world.decision("dev", "dev/v1.0.0")?.accepted == true)
        #expect(report.alertsRaised.map(\.code) == [Gate.ambiguousVersion])
        #expect(try await world.runs("dev").isEmpty)
        #expect(await world.runner.calls.isEmpty)
    }
}
