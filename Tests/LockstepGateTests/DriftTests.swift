import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate

@Suite("Gate: drift detection with real terraform")
struct DriftTests {
    static let devWithDrift = """
      dev:
        serves: true
        approvals: 1
        approvers: [alice, bob]
        drift: {interval: 1h}
    """

    @Test("no drift is reported when there is none; a state changed out of band is found, audited and notified; a gated run of the applied revision undoes it")
    func driftFoundAndFixed() async throws {
        let world = try World(environmentsYAML: Self.devWithDrift, environments: ["dev"])
        defer { world.cleanup() }
        #expect(try await world.gate.driftPass().isEmpty, "nothing applied yet: nothing to check")
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        let applied = try await world.run("dev", "1.0.0")

        let clean = try await world.gate.driftPass()
        #expect(clean.map(\.outcome) == [.noDrift])
        #expect(clean.first?.runID == applied.id)
        #expect(clean.first?.version == semver("1.0.0"))
        #expect(try await world.gate.driftPass().isEmpty, "not due again within the interval")
        #expect(world.applyLog == ["dev:1.0.0"], "a drift check applies nothing")

        // Someone applies by hand to dev's state: the app resource is destroyed and an intruder created.
        try world.applyOutOfBand("dev", marker: "by-hand")
        world.clock.advance(seconds: 3_601)
        let found = try await world.gate.driftPass()
        let drift = try #require(found.first)
        #expect(drift.outcome == .drift)
        #expect(drift.addresses == ["null_resource.app", "null_resource.intruder"])
        #expect(drift.detail.contains("1 to create") && drift.detail.contains("1 to delete"), "\(drift.detail)")
        #expect(try world.triggers("dev", "intruder")?["marker"] == "by-hand", "the check changed nothing")

        let audited = try await world.store.auditEntries().filter { $0.kind == .drift }
        #expect(audited.map { $0.payload["outcome"] } == ["no_drift", "drift"])
        #expect(audited.last?.payload["addresses"] == "null_resource.app,null_resource.intruder")
        let events = try await world.store.outboxEvents(after: 0, limit: 100).filter { $0.kind == .drift }
        #expect(events.count == 1, "drift is notified; no drift is not")
        #expect(events.first?.facts.reason == "drift")

        // The one command: a gated run of the applied revision (plan, approve, apply).
        let fix = try await world.gate.rollback(environment: envName("dev"), to: semver("1.0.0"), identity: identity("alice"))
        _ = try await world.gate.reconcile()
        let planned = try #require(try await world.store.run(fix.id))
        #expect(planned.state == .awaitingApproval)
        #expect(planned.plan?.model?.create == 1 && planned.plan?.model?.delete == 1)
        try await world.approve(planned, by: ["bob"])
        #expect(try await world.gate.apply(run: fix.id) == .applied(.verified))
        #expect(try world.applied("dev")?["release"] == "1.0.0")
        #expect(try world.triggers("dev", "intruder") == nil)

        world.clock.advance(seconds: 3_601)
        let after = try await world.gate.driftPass()
        #expect(after.map(\.outcome) == [.noDrift])
        #expect(after.first?.runID == fix.id, "the check is of the run that applied last")
    }

    @Test("a drift check that cannot run is recorded as failed with the reason, and notified")
    func failedCheck() async throws {
        let world = try World(environmentsYAML: Self.devWithDrift + "\n    plan_credentials_file: {state}/../creds/missing.env",
                              environments: ["dev"])
        defer { world.cleanup() }
        try "TF_VAR_x=1\n".write(to: world.scratch.appendingPathComponent("creds/missing.env"), atomically: true, encoding: .utf8)
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        try FileManager.default.removeItem(at: world.scratch.appendingPathComponent("creds/missing.env"))

        let checks = try await world.gate.driftPass()
        let check = try #require(checks.first)
        #expect(check.outcome == .failed)
        #expect(check.detail.contains("plan credentials could not be read"), "\(check.detail)")
        #expect(!check.detail.contains(world.scratch.path), "the agent's paths are not shown")
        let events = try await world.store.outboxEvents(after: 0, limit: 100).filter { $0.kind == .drift }
        #expect(events.map(\.facts.reason) == ["failed"])
    }

    @Test("a drift check's plan takes no state lock, so it never makes a release's plan or apply wait or fail on it; a release's plan does take it")
    func driftPlanTakesNoLock() async throws {
        // A wrapper that notes each command's arguments, then runs the pinned terraform.
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lockstep-args-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let log = folder.appendingPathComponent("args.log")
        let wrapper = folder.appendingPathComponent("terraform")
        try "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '\(log.path)'\nexec '\(try World.terraformBinary().path)' \"$@\"\n"
            .write(to: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        let world = try World(environmentsYAML: Self.devWithDrift, environments: ["dev"], terraformBinary: wrapper)
        defer { world.cleanup() }
        try world.release("1.0.0", to: ["dev"])
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))
        let before = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("plan ") }
        #expect(before.count == 1 && before[0].contains("-lock-timeout=") && !before[0].contains("-lock=false"), "\(before)")

        #expect(try await world.gate.driftPass().map(\.outcome) == [.noDrift])
        let plans = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("plan ") }
        #expect(plans.count == 2)
        #expect(plans.last?.contains("-lock=false") == true && plans.last?.contains("-lock-timeout") == false, "\(plans)")
    }
}
