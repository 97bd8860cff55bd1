import Foundation
import LockstepConfig
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

/// dev and staging, both served, neither promoted from the other: two independent targets.
let twoTargets = """
  dev:
    serves: true
    approvals: 1
    approvers: [alice, bob, carol]
  staging:
    serves: true
    approvals: 1
    approvers: [alice, bob, carol]
"""

/// Terraform behind a wrapper that, while `block-plan` exists, stops every `plan` before
/// the real terraform runs: it makes a FIFO named after its pid, says it started and waits
/// on that FIFO. The wrapper then `exec`s terraform, so the pid is terraform's: a test can
/// tell whether terraform is still alive after a cancellation.
final class BlockingTerraform: Sendable {
    let control: URL
    let wrapper: URL

    init() throws {
        let root = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-wrapper-\(UUID().uuidString.prefix(12))", isDirectory: true)
        control = root.appendingPathComponent("control", isDirectory: true)
        wrapper = root.appendingPathComponent("terraform-wrapper.sh")
        try FileManager.default.createDirectory(at: control, withIntermediateDirectories: true)
        try """
        #!/bin/bash
        ctl='\(control.path)'
        case "$1" in
          plan|apply)
            if [ -e "$ctl/block-$1" ]; then
              mkfifo "$ctl/$1-$$.fifo"
              printf '%s\\n' "$*" > "$ctl/$1-$$.args"
              : > "$ctl/$1-$$.started"
              read -r _ < "$ctl/$1-$$.fifo"
            fi
            ;;
        esac
        exec '\(try World.terraformBinary().path)' "$@"

        """.write(to: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
    }

    func cleanup() { try? FileManager.default.removeItem(at: control.deletingLastPathComponent()) }

    func blockPlans() throws { try block("plan") }
    func block(_ step: String) throws { try Data().write(to: control.appendingPathComponent("block-\(step)")) }
    func unblockFuturePlans() { unblockFuture("plan") }
    func unblockFuture(_ step: String) { try? FileManager.default.removeItem(at: control.appendingPathComponent("block-\(step)")) }

    /// Pids of plans that reached the wrapper's wait (and were not released yet).
    func started(_ step: String = "plan") -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: control.path)) ?? []
        return names.compactMap { name -> Int32? in
            guard name.hasPrefix("\(step)-"), name.hasSuffix(".started") else { return nil }
            return Int32(name.dropFirst(step.count + 1).dropLast(".started".count))
        }.sorted()
    }

    /// Waits until `count` plans are blocked in the wrapper (the event the test needs; the
    /// suite's time limit ends a test that never gets there).
    func waitForStarted(_ count: Int, _ step: String = "plan") async throws -> [Int32] {
        while started(step).count < count {
            try await Task.sleep(for: .milliseconds(20))
        }
        return started(step)
    }

    /// The environment a blocked plan is for, read from its `-var-file` argument.
    func environment(of pid: Int32) -> String? {
        let args = (try? String(contentsOf: control.appendingPathComponent("plan-\(pid).args"), encoding: .utf8)) ?? ""
        return ["dev", "staging"].first { args.contains("/\($0).tfvars") }
    }

    /// Lets one blocked plan go on to the real terraform.
    func release(_ pid: Int32, _ step: String = "plan") throws {
        try FileManager.default.removeItem(at: control.appendingPathComponent("\(step)-\(pid).started"))
        let handle = try #require(FileHandle(forWritingAtPath: control.appendingPathComponent("\(step)-\(pid).fifo").path))
        handle.write(Data("go\n".utf8))
        try handle.close()
    }
}

/// Whether a process with this pid exists (a reaped one does not).
func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}

// The time limit only ends a test that hangs (a plan that never reaches the wrapper). It is
// generous because these tests start with the whole suite and wait for two cores with it.
@Suite("Gate: concurrent and cancelled plans", .timeLimit(.minutes(10)))
struct PlanSchedulingTests {
    /// Tags `dev/v1.0.0` and starts a pass whose dev plan is held inside terraform plan;
    /// returns the pass and the pid of the held terraform.
    func startBlockedDevPlan(_ world: World, _ terraform: BlockingTerraform) async throws
        -> (Task<ReconcileReport, any Error>, Int32) {
        let commit = try world.mergeRelease("1.0.0")
        try world.tag("dev/v1.0.0", at: commit)
        try world.publish()
        try terraform.blockPlans()
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }
        return (pass, try #require(try await terraform.waitForStarted(1).first))
    }

    /// A pass with `max_concurrent_plans: 1` and releases of dev and staging, returned once one
    /// plan is inside terraform and the other waits for the only slot: from then on the waiting
    /// one cannot start until the slot is handed over. Returns the pass, the running plan's pid
    /// and the two environments (running first).
    func startOneOfTwoPlans(_ world: World, _ terraform: BlockingTerraform) async throws
        -> (pass: Task<ReconcileReport, any Error>, first: Int32, running: String, waiting: String) {
        try world.release("1.0.0", to: ["dev", "staging"])
        try terraform.blockPlans()
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }
        let first = try #require(try await terraform.waitForStarted(1).first)
        while gate.planSlots.waiting < 1 { try await Task.sleep(for: .milliseconds(20)) }
        let running = try #require(terraform.environment(of: first))
        return (pass, first, running, running == "dev" ? "staging" : "dev")
    }

    func makeWorld(_ terraform: BlockingTerraform, limit: Int) throws -> World {
        try World(environmentsYAML: twoTargets, environments: ["dev", "staging"], terraformBinary: terraform.wrapper,
                  agentExtraYAML: "max_concurrent_plans: \(limit)")
    }

    @Test("with max_concurrent_plans 2, plans of two targets are inside terraform plan at the same time")
    func twoTargetsPlanTogether() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 2)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev", "staging"])
        try terraform.blockPlans()
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }

        let pids = try await terraform.waitForStarted(2)
        #expect(Set(pids.compactMap(terraform.environment(of:))) == ["dev", "staging"])
        #expect(try await world.run("dev", "1.0.0").state == .planning)
        #expect(try await world.run("staging", "1.0.0").state == .planning)
        for pid in pids { try terraform.release(pid) }

        let report = try await pass.value
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await world.run("dev", "1.0.0").state == .awaitingApproval)
        #expect(try await world.run("staging", "1.0.0").state == .awaitingApproval)
    }

    @Test("with max_concurrent_plans 1, the second target waits, still queued, until the first plan is done")
    func limitOnePlansOneAtATime() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 1)
        defer { world.cleanup() }
        let gate = world.gate
        // What is seen now is what the limit allows.
        let (pass, first, firstEnv, secondEnv) = try await startOneOfTwoPlans(world, terraform)
        #expect(terraform.started() == [first])
        #expect(gate.planSlots.held == 1)
        #expect(try await world.run(firstEnv, "1.0.0").state == .planning)
        #expect(try await world.run(secondEnv, "1.0.0").state == .queued, "the waiting plan must not even be marked planning")

        try terraform.release(first)
        let second = try #require(try await terraform.waitForStarted(1).first)
        #expect(terraform.environment(of: second) == secondEnv)
        #expect(try await world.run(firstEnv, "1.0.0").state == .awaitingApproval, "the first plan ended before the second began")
        try terraform.release(second)

        let report = try await pass.value
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await world.run(secondEnv, "1.0.0").state == .awaitingApproval)
        #expect(gate.planSlots.held == 0)
    }

    @Test("an approval of one target is answered while terraform plans another")
    func approvalDuringAnotherPlan() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 2)
        defer { world.cleanup() }
        let commit = try world.mergeRelease("1.0.0")
        try world.tag("dev/v1.0.0", at: commit)
        try world.publish()
        _ = try await world.gate.reconcile()
        let dev = try await world.run("dev", "1.0.0")
        try #require(dev.state == .awaitingApproval)

        try world.tag("staging/v1.0.0", at: commit)
        try world.publish()
        try terraform.blockPlans()
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }
        let blocked = try #require(try await terraform.waitForStarted(1).first)
        #expect(terraform.environment(of: blocked) == "staging")

        // Before planning left the gate's serialisation this call waited for the whole pass,
        // i.e. for the blocked terraform: it would never return here.
        let outcome = try await world.approve(dev, by: ["alice"])
        #expect(outcome == [.approved])
        #expect(try await world.run("dev", "1.0.0").state == .approved)
        #expect(try await world.run("staging", "1.0.0").state == .planning, "the other plan is still blocked")
        #expect(processExists(blocked))

        try terraform.release(blocked)
        let report = try await pass.value
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await world.run("staging", "1.0.0").state == .awaitingApproval)
    }

    @Test("an approval of one target is answered while a pass applies another")
    func approvalDuringApplyInPass() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 2)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev", "staging"])
        _ = try await world.gate.reconcile()
        let dev = try await world.run("dev", "1.0.0")
        let staging = try await world.run("staging", "1.0.0")
        try #require(dev.state == .awaitingApproval && staging.state == .awaitingApproval)
        // Approved, not applied: the next pass triggers the apply.
        #expect(try await world.approve(dev, by: ["alice"]) == [.approved])

        try terraform.block("apply")
        let gate = world.gate
        let pass = Task { try await gate.reconcile() }
        let blocked = try #require(try await terraform.waitForStarted(1, "apply").first)
        #expect(try await world.run("dev", "1.0.0").state == .applying)

        // Held the whole apply long before; now answered while terraform apply waits.
        #expect(try await world.approve(staging, by: ["bob"]) == [.approved])
        #expect(try await world.run("dev", "1.0.0").state == .applying, "the apply is still blocked")
        #expect(processExists(blocked))

        // staging, approved meanwhile, is applied by the same pass once dev is done.
        terraform.unblockFuture("apply")
        try terraform.release(blocked, "apply")
        let report = try await pass.value
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await world.run("dev", "1.0.0").state == .verified)
        #expect(try await world.run("staging", "1.0.0").state == .verified)
        #expect(try world.applied("dev")?["release"] == "1.0.0")
    }

    @Test("a stop while a plan waits for a slot takes it out of the queue at once: it never starts, its run stays queued")
    func cancelledWhileWaitingForSlot() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 1)
        defer { world.cleanup() }
        let gate = world.gate
        let (pass, _, _, secondEnv) = try await startOneOfTwoPlans(world, terraform)
        // The stop reaches both: the running plan is killed (as in the test below) and the
        // waiting one leaves the queue instead of taking the slot the killed plan frees.
        pass.cancel()
        _ = try? await pass.value
        #expect(gate.planSlots.waiting == 0)
        let waited = try await world.run(secondEnv, "1.0.0")
        #expect(waited.state == .queued)
        let states = try await world.store.transitions(of: waited.id).map(\.transition.to)
        #expect(!states.contains(.planning), "the waiting plan never started: \(states)")
        #expect(gate.planSlots.held == 0)
    }

    @Test("a cancelled plan kills terraform, cleans its directory and re-queues the run with a reason; the next pass plans it")
    func cancelledPlanIsQueuedAgain() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 2)
        defer { world.cleanup() }
        let (pass, pid) = try await startBlockedDevPlan(world, terraform)
        let gate = world.gate
        let planning = try await world.run("dev", "1.0.0")
        #expect(planning.state == .planning)
        #expect(FileManager.default.fileExists(atPath: world.scratch.appendingPathComponent("runs/\(planning.id.rawValue)").path))

        pass.cancel()
        let report = try await pass.value
        #expect(report.problems.isEmpty, "a stop is not a problem: \(report.problems)")

        let queued = try await world.run("dev", "1.0.0")
        #expect(queued.state == .queued, "never failed: a stop says nothing about the release")
        #expect(queued.lastReason == .planCancelled)
        let last = try #require(try await world.store.transitions(of: queued.id).last)
        #expect(last.transition == RunTransition(from: .planning, to: .queued,
                                                 reason: TransitionReason(.planCancelled, detail: Gate.planCancelledReason)))
        #expect(try await world.auditKinds(queued.id).last == "transition")
        #expect(!processExists(pid), "terraform (pid \(pid)) must not outlive the cancelled plan")
        #expect(!FileManager.default.fileExists(atPath: world.scratch.appendingPathComponent("runs/\(queued.id.rawValue)").path))
        #expect(gate.planSlots.held == 0)
        #expect(await gate.planningTargets.isEmpty)

        terraform.unblockFuturePlans()
        let again = try await world.gate.reconcile()
        #expect(again.problems.isEmpty, "\(again.problems)")
        let planned = try await world.run("dev", "1.0.0")
        #expect(planned.id == queued.id)
        #expect(planned.state == .awaitingApproval)
    }

    @Test("a second pass while a plan runs starts no second plan of that target: neither the in-memory guard nor the store lets it")
    func noSecondPlanOfOneTarget() async throws {
        let terraform = try BlockingTerraform()
        defer { terraform.cleanup() }
        let world = try makeWorld(terraform, limit: 2)
        defer { world.cleanup() }
        let (pass, pid) = try await startBlockedDevPlan(world, terraform)
        let gate = world.gate

        // A whole second pass runs to its end while the first plan is blocked.
        let second = try await gate.reconcile()
        #expect(second.problems.isEmpty, "\(second.problems)")
        #expect(second.runsAdvanced.isEmpty)

        // A stale snapshot of the run, taken while it was queued, handed to the planner of
        // this process: the target is held, so it does not even try.
        var stale = try await world.run("dev", "1.0.0")
        #expect(stale.state == .planning)
        stale.state = .queued
        stale.lastReason = nil
        guard case .targetBusy = await gate.planOne(stale) else {
            Issue.record("a second plan of a target being planned was started")
            return
        }
        // Another gate over the same store (no shared memory): the store's
        // queued → planning compare-and-set refuses it.
        let (other, otherStore) = try world.secondGate()
        let result = try await other.drive(stale, .planStarted, actor: Gate.systemActor)
        #expect(result.lostRace)
        #expect(result.committed.isEmpty)
        _ = otherStore

        #expect(terraform.started() == [pid], "exactly one terraform plan ran for the target")
        try terraform.release(pid)
        let report = try await pass.value
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try await world.run("dev", "1.0.0").state == .awaitingApproval)
        #expect(try await world.store.transitions(of: stale.id).filter { $0.transition.to == .planning }.count == 1)
    }
}

