import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// The attack: a `lockstep.yaml` that does not parse is merged to the protected branch and the
/// daemon restarts. Before, the restarted gate knew no target at all: the board emptied, new
/// valid release tags were never decided, and status said only that no valid layout was seen.
///
/// The rule: the last valid layout is kept in the store and used until a valid one arrives;
/// the broken one is reported (once in the log, on every status and problems answer) and never
/// loosens anything (the runs of a commit still use that commit's own layout).
@Suite("Gate: a broken layout on the branch never empties the board")
struct BranchLayoutTests {
    @Test("after a broken lockstep.yaml is merged and the gate restarts, a new valid tag is still planned; a valid layout clears the problem")
    func brokenLayoutAcrossRestart() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"])
        defer { world.cleanup() }
        _ = try await world.gate.reconcile()
        let initial = try #require(try await world.store.lastValidLayout(branch: "main"), "the first valid layout is stored")

        let release = try world.mergeRelease("1.0.0")
        _ = try world.mergePR(files: ["lockstep.yaml": "projects: [\n"], message: "a broken layout")
        try world.tag("dev/v1.0.0", at: release)
        try world.publish()

        // A restarted process: a new gate over the same store, with a mirror of its own.
        let (restarted, store) = try world.secondGate()
        let report = try await restarted.reconcile()
        #expect(report.problems.contains { $0.contains("lockstep.yaml at main") && $0.contains("is invalid") }, "\(report.problems)")
        let problem = try #require(await restarted.branchLayoutProblem)
        #expect(problem.contains("lockstep.yaml at main"))
        #expect(await restarted.followsValidLayout)
        let run = try await world.run("dev", "1.0.0")
        #expect(run.state == .awaitingApproval, "the tag was decided and planned with the last valid layout")
        // The broken layout replaced nothing that was stored.
        #expect(try await store.lastValidLayout(branch: "main") == initial)

        // The same broken tip is examined once, not on every pass.
        _ = try await restarted.reconcile()
        let said = world.logs.text.components(separatedBy: "the layout at the protected branch is not used").count - 1
        #expect(said == 1, "logged \(said) times")

        // A valid layout merged again clears the problem and becomes the stored one.
        let fixed = try world.mergePR(files: world.layoutFiles(), message: "fix the layout")
        try world.publish()
        _ = try await restarted.reconcile()
        #expect(await restarted.branchLayoutProblem == nil)
        #expect(try await store.lastValidLayout(branch: "main")?.commit.rawValue == fixed)
    }

    @Test("with no valid layout ever seen, a broken one serves no target and says so")
    func noValidLayoutEver() async throws {
        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"])
        defer { world.cleanup() }
        // Broken before the gate ever looked: nothing valid is known, nothing is stored.
        _ = try world.mergePR(files: ["lockstep.yaml": "projects: [\n"], message: "a broken layout")
        try world.publish()
        await #expect(throws: GateError.self) { _ = try await world.gate.reconcile() }
        #expect(await world.gate.branchLayoutProblem?.contains("is invalid") == true)
        #expect(await !world.gate.followsValidLayout)
        #expect(try await world.store.lastValidLayout(branch: "main") == nil)
    }
}
