import NameLiterals
import Foundation
import GitSource
import LockstepCore
import RunStore
import Synchronization
import Testing
import TerraformRunner
@testable import LockstepGate

/// The scripted repository behind a ref-write count, as the mirror keeps one: every sync that
/// reports a changed tag, or finds the branch tip moved, counts. It also counts the tag
/// listings and release facts the gate asks for, so a test can see a skipped pass ask nothing.
actor CountingSource: RefWriteCounting {
    let inner: ScriptedReleaseSource
    nonisolated let path: String
    private var writes: UInt64 = 0
    private var lastTip: GitObjectID?
    private(set) var listings = 0
    private(set) var factsAsked = 0

    init(_ inner: ScriptedReleaseSource) {
        self.inner = inner
        path = inner.path
    }

    func refWrites() -> UInt64 { writes }

    func sync() async throws(GitError) -> FetchReport {
        let report = try await inner.sync()
        let tip = try await inner.branchTip("main")
        if report.changed || tip != lastTip {
            writes += 1
            lastTip = tip
        }
        return report
    }

    func branchTip(_ branch: String) async throws(GitError) -> GitObjectID { try await inner.branchTip(branch) }

    func tags(matching glob: String, components: Int?) async throws(GitError) -> TagListing {
        listings += 1
        return try await inner.tags(matching: glob, components: components)
    }

    func tag(named name: String) async throws(GitError) -> TagInfo { try await inner.tag(named: name) }

    func rawTag(id: GitObjectID, name: String) async throws(GitError) -> RawTagObject { try await inner.rawTag(id: id, name: name) }

    func releaseFacts(tag name: String, protectedBranch branch: String) async throws(GitError) -> ReleaseFacts {
        factsAsked += 1
        return try await inner.releaseFacts(tag: name, protectedBranch: branch)
    }

    func export(commit: GitObjectID, to directory: String, limits: ExportLimits,
                excludingNames excludedNames: Set<String>) async throws(GitError) -> ExportResult {
        try await inner.export(commit: commit, to: directory, limits: limits, excludingNames: excludedNames)
    }

    func file(at path: String, commit: GitObjectID, maxBytes: Int) async throws(GitError) -> Data? {
        try await inner.file(at: path, commit: commit, maxBytes: maxBytes)
    }

    func skippedRefs() async -> [SkippedRef] { await inner.skippedRefs() }
}

/// A unit world whose gate reads the repository through a ``CountingSource`` and is driven
/// the way the daemon drives it: `poll(after:)` with the memo of the previous poll.
final class QuietWorld: Sendable {
    let world: UnitWorld
    let counting: CountingSource
    let gate: Gate
    private let memo = Mutex<QuietPass?>(nil)

    init(environmentsYAML: String, environments: [String] = ["dev"], verify: [String: [String]] = [:],
         projects: [String] = ["app"]) throws {
        world = try UnitWorld(environmentsYAML: environmentsYAML, environments: environments, verify: verify, projects: projects)
        counting = CountingSource(world.source)
        gate = UnitWorld.gate(agent: world.agent, store: world.store, source: counting, runner: world.runner,
                              scratch: world.scratch, clock: world.clock)
    }

    /// One poll as the daemon makes it. When it is skipped, a full pass made right after it
    /// by a gate that remembers nothing must find nothing to do: no decision recorded, no run
    /// created or moved, no alert. That is the whole promise of skipping, checked on every
    /// skipped poll of these tests.
    @discardableResult
    func poll(sourceLocation: SourceLocation = #_sourceLocation) async throws -> PollResult {
        let result = try await gate.poll(after: memo.withLock { $0 })
        memo.withLock { $0 = result.quiet }
        if result.skipped {
            let full = try await freshPass(sourceLocation: sourceLocation)
            #expect(full.problems == result.report.problems, sourceLocation: sourceLocation)
        }
        return result
    }

    /// A full pass of a new gate over the same store and repository (no memo of any kind),
    /// which must find nothing left to do. Returns its report.
    @discardableResult
    func freshPass(sourceLocation: SourceLocation = #_sourceLocation) async throws -> ReconcileReport {
        let fresh = UnitWorld.gate(agent: world.agent, store: world.store, source: counting, runner: world.runner,
                                   scratch: world.scratch, clock: world.clock)
        let full = try await fresh.reconcile()
        #expect(full.decisionsRecorded.isEmpty && full.runsCreated.isEmpty && full.runsAdvanced.isEmpty
                && full.alertsRaised.isEmpty && full.runsInvalidated.isEmpty && full.runsSuperseded.isEmpty,
                "skipping missed work a full pass does: \(full)", sourceLocation: sourceLocation)
        return full
    }

    /// Polls until one is skipped (a change takes a full pass, and the store writes of that
    /// pass one more); fails when three full passes in a row did not settle.
    func settle(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for _ in 0..<3 where !(try await poll(sourceLocation: sourceLocation).skipped) {}
        #expect(try await poll(sourceLocation: sourceLocation).skipped, "polls did not settle", sourceLocation: sourceLocation)
    }

    func cleanup() { world.cleanup() }
}

@Suite("Gate unit: a poll that finds nothing changed skips the pass, and every kind of change is still seen")
struct QuietPassUnitTests {
    @Test("an unchanged poll lists no tag and asks no release fact; the first poll and one after a change do")
    func unchangedPollDoesNothing() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        #expect(try await quiet.poll().skipped == false, "the first poll has nothing to compare with")
        #expect(try await quiet.world.newestRun("dev").state == .awaitingApproval)
        try await quiet.settle()

        let (listings, facts) = (await quiet.counting.listings, await quiet.counting.factsAsked)
        let result = try await quiet.gate.poll(after: try await quiet.gate.poll(after: nil).quiet)
        #expect(result.skipped)
        // The poll without a memo listed and decided; the one after it only compared.
        #expect(await quiet.counting.listings == listings + 1)
        #expect(await quiet.counting.factsAsked == facts + 1)
        #expect(result.report.runsCreated.isEmpty && result.report.runsAdvanced.isEmpty)
    }

    @Test("a new tag after a quiet spell is decided and planned on the next poll")
    func newTag() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        let first = try await quiet.world.newestRun("dev")

        await quiet.world.releaseTagged("1.1.0", in: ["dev"])
        let result = try await quiet.poll()
        #expect(!result.skipped)
        #expect(result.report.tagsCreated == ["dev/1.1.0"])
        #expect(try await quiet.world.store.run(first.id)?.state == .superseded)
        #expect(try await quiet.world.newestRun("dev").run.tagName == "dev/1.1.0")
        try await quiet.settle()
    }

    @Test("a moved tag and a deleted tag end the waiting run and raise their alerts on the next poll")
    func movedAndDeletedTags() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        let commit = await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        let run = try await quiet.world.newestRun("dev")

        await quiet.world.source.tag("dev/1.0.0", at: commit, tagger: "eve@example.com")
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.store.run(run.id)?.state.isFinal == true)
        #expect(try await quiet.world.alertCodes("dev").contains(RunAlert.Code.tagMoved.rawValue))
        try await quiet.settle()

        let alerts = try await quiet.world.alertCodes("dev").count
        await quiet.world.source.deleteTag("dev/1.0.0")
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.alertCodes("dev").count > alerts, "the deletion is told")
        try await quiet.settle()
    }

    @Test("an approval given between polls is acted on: the next poll applies the approved run")
    func approvalBetweenPolls() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        let run = try await quiet.world.newestRun("dev")

        #expect(try await quiet.gate.approve(run: run.id, identity: "alice", digest: try #require(run.planDigest)) == .approved)
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.store.run(run.id)?.state == .verified)
        try await quiet.settle()
    }

    @Test("approvals expire on time though nothing else changes")
    func approvalLifetime() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev + "\n    approval_ttl: 1h")
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        let run = try await quiet.world.newestRun("dev")

        quiet.world.clock.advance(seconds: 3_599)
        #expect(try await quiet.poll().skipped, "not due yet")
        quiet.world.clock.advance(seconds: 1)
        let result = try await quiet.poll()
        #expect(!result.skipped)
        #expect(result.report.runsAdvanced[run.id] == .expired)
    }

    @Test("an approved run held by a closed apply window is applied on the first poll after the window opens")
    func applyWindowOpens() async throws {
        // The clock starts on a Sunday at 17:46 UTC.
        let quiet = try QuietWorld(environmentsYAML: unitDev + "\n    apply_windows:\n      - {days: [sun], from: \"18:00\", to: \"19:00\"}")
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        let run = try await quiet.world.newestRun("dev")
        #expect(try await quiet.gate.approve(run: run.id, identity: "alice", digest: try #require(run.planDigest)) == .approved)
        try await quiet.settle()
        #expect(try await quiet.world.store.run(run.id)?.state == .approved)

        quiet.world.clock.advance(seconds: 15 * 60)
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.store.run(run.id)?.state == .verified)
    }

    @Test("a run verified in dev between polls promotes its tree to staging on the next poll")
    func promotion() async throws {
        let yaml = unitDev + "\n  staging:\n    serves: true\n    promote_from: dev\n    approvals: 1\n    approvers: [alice]"
        let quiet = try QuietWorld(environmentsYAML: yaml, environments: ["dev", "staging"])
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev", "staging"])
        try await quiet.settle()
        #expect(try await quiet.world.runs("staging").isEmpty)
        let dev = try await quiet.world.newestRun("dev")
        #expect(try await quiet.gate.approve(run: dev.id, identity: "alice", digest: try #require(dev.planDigest)) == .approved)
        // Applied outside the poll loop (the daemon's apply worker), as the API's approval does.
        #expect(try await quiet.gate.apply(run: dev.id) == .applied(.verified))

        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.newestRun("staging").state == .awaitingApproval)
        try await quiet.settle()
    }

    @Test("a rollback and a store written by another gate are seen on the next poll")
    func storeWrittenElsewhere() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.poll()
        let first = try await quiet.world.newestRun("dev")
        #expect(try await quiet.gate.approve(run: first.id, identity: "alice", digest: try #require(first.planDigest)) == .approved)
        try await quiet.settle()
        await quiet.world.releaseTagged("1.1.0", in: ["dev"])
        try await quiet.settle()
        let second = try await quiet.world.newestRun("dev")
        #expect(second.run.tagName == "dev/1.1.0")

        // Another process over the same store rejects the waiting run: this gate's next poll
        // must not keep believing nothing changed.
        let other = UnitWorld.gate(agent: quiet.world.agent, store: quiet.world.store, source: quiet.world.source,
                                   runner: quiet.world.runner, scratch: quiet.world.scratch, clock: quiet.world.clock)
        #expect(try await other.reject(run: second.id, identity: "alice", reason: "not today") == .done(.rejected))
        #expect(try await quiet.poll().skipped == false)
        try await quiet.settle()

        // A rollback to 1.0.0 is queued outside any poll; the next poll plans it.
        let rollback = try await quiet.gate.rollback(environment: "dev", to: try SemanticVersion("1.0.0"), identity: "alice")
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.store.run(rollback.id)?.state == .awaitingApproval)
        try await quiet.settle()
    }

    @Test("a branch tip that moves (a new layout) is read on the next poll")
    func layoutChange() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        try await quiet.settle()
        // A broken lockstep.yaml merged to the branch: reported, and reported again while it stays.
        _ = await quiet.world.release("1.0.1", layout: "projects: [")
        let result = try await quiet.poll()
        #expect(!result.skipped)
        #expect(result.report.problems.contains { $0.contains("lockstep.yaml") })
        try await quiet.settle()
        let skipped = try await quiet.poll()
        #expect(skipped.skipped && skipped.report.problems == result.report.problems)
    }

    @Test("a failed target is retried on every poll: a pass with a problem leaves no memo")
    func problemsAreRetried() async throws {
        let quiet = try QuietWorld(environmentsYAML: unitDev)
        defer { quiet.cleanup() }
        await quiet.world.releaseTagged("1.0.0", in: ["dev"])
        await quiet.world.source.script { $0.releaseFactsFailure["dev/1.0.0"] = GitError(.io, "disk hiccup") }
        let first = try await quiet.poll()
        #expect(first.quiet == nil && !first.report.problems.isEmpty)
        #expect(try await quiet.poll().skipped == false)
        await quiet.world.source.script { $0.releaseFactsFailure = [:] }
        #expect(try await quiet.poll().skipped == false)
        #expect(try await quiet.world.newestRun("dev").state == .awaitingApproval)
        try await quiet.settle()
    }

    @Test("a source that cannot count its ref writes is never skipped")
    func uncountedSourceNeverSkips() async throws {
        let world = try UnitWorld(environmentsYAML: unitDev)
        defer { world.cleanup() }
        await world.releaseTagged("1.0.0", in: ["dev"])
        var memo: QuietPass?
        for _ in 0..<3 {
            let result = try await world.gate.poll(after: memo)
            #expect(!result.skipped && result.quiet == nil)
            memo = result.quiet
        }
    }
}
