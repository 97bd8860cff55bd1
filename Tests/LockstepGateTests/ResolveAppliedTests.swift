import Foundation
import LockstepCore
import RunStore
import Testing
@testable import LockstepGate
#if canImport(Glibc)
import Glibc
#endif

/// The case: an apply finishes its work but the daemon dies before recording it. After the
/// restart the run is `interrupted`; the operator checks the infrastructure and resolves it
/// as applied. Before, verify then ran inside the operator's request against the outputs the
/// *previous* apply stored, failed the run and blocked promotion.
///
/// The rule: a run's verify reads the outputs that run stored, or reads them again from the
/// state; and the resolve request only records the resolution: verify runs afterwards.
@Suite("Gate: resolve --as applied verifies what was applied")
struct ResolveAppliedTests {
    @Test("an apply that completed before a crash, resolved as applied: verify reads the new outputs from the state, after the request")
    func resolvedAppliedReadsOutputsAgain() async throws {
        let control = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-resolve-\(UUID().uuidString.prefix(12))", isDirectory: true)
        try FileManager.default.createDirectory(at: control, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: control) }
        // While `hold-apply` exists, an apply runs to its end, says so and then never returns:
        // the daemon that started it is as good as dead.
        let wrapper = control.appendingPathComponent("terraform-wrapper.sh")
        try """
        #!/bin/sh
        ctl='\(control.path)'
        if [ "$1" = apply ] && [ -e "$ctl/hold-apply" ]; then
          '\(try World.terraformBinary().path)' "$@"
          read -r pid _ < /proc/self/stat
          echo "$pid" > "$ctl/apply.pid"
          : > "$ctl/applied"
          read -r _ < "$ctl/never"  # a FIFO nobody writes: blocks for good
        fi
        exec '\(try World.terraformBinary().path)' "$@"

        """.write(to: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        try #require(mkfifo(control.appendingPathComponent("never").path, 0o600) == 0)

        let world = try World(environmentsYAML: """
          dev:
            serves: true
            approvals: 1
            approvers: [alice]
        """, environments: ["dev"], verify: ["dev": "[./verify.sh]"], terraformBinary: wrapper)
        defer { world.cleanup() }
        // Verify passes only when the outputs name the release being verified.
        let verifyLog = world.stateDirectory.appendingPathComponent("verify.log")
        let verify = """
        #!/bin/sh
        echo "$LOCKSTEP_VERSION" >> '\(verifyLog.path)'
        grep -q "\\"$LOCKSTEP_VERSION\\"" "$LOCKSTEP_OUTPUTS_FILE"

        """
        func release(_ version: String) throws {
            let commit = try world.mergePR(files: world.appFiles(release: version).merging(["verify.sh": verify]) { _, new in new })
            try world.tag("dev/v\(version)", at: commit)
            try world.publish()
        }
        try release("1.0.0")
        #expect(try await world.deploy("dev", "1.0.0") == .applied(.verified))

        try release("1.1.0")
        _ = try await world.gate.reconcile()
        let run = try await world.run("dev", "1.1.0")
        try #require(run.state == .awaitingApproval)
        try await world.approve(run, by: ["alice"])
        try Data().write(to: control.appendingPathComponent("hold-apply"))
        let gate = world.gate
        let dying = Task { try await gate.apply(run: run.id) }
        let deadline = ContinuousClock.now + .seconds(120)
        while !FileManager.default.fileExists(atPath: control.appendingPathComponent("applied").path) {
            try #require(ContinuousClock.now < deadline, "the held apply never finished its work")
            try await Task.sleep(for: .milliseconds(50))
        }
        let pidText = try String(contentsOf: control.appendingPathComponent("apply.pid"), encoding: .utf8)
        let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer {
            kill(pid, SIGKILL)
            dying.cancel()
        }

        // The restart: another gate over the same store and mirror finds the run applying.
        let (restarted, store) = try world.secondGate(mirrorName: "mirror")
        #expect(try await restarted.recover()[run.id] == .interrupted)
        #expect(try await store.outputs(of: run.target, storedBy: run.id) == nil, "the dead process stored no outputs")

        let verifiedBefore = try String(contentsOf: verifyLog, encoding: .utf8)
        let outcome = try await restarted.resolve(run: run.id, as: .applied, identity: identity("alice"), reason: "checked the console")
        #expect(outcome == .done(.verifying))
        #expect(try String(contentsOf: verifyLog, encoding: .utf8) == verifiedBefore, "verify did not run inside the request")

        let verified = try await restarted.verifyResolved(run: run.id)
        let reason = try await store.transitions(of: run.id).last?.transition.reason.detail ?? ""
        #expect(verified == .verified, "\(reason)")
        #expect(try String(contentsOf: verifyLog, encoding: .utf8) == verifiedBefore + "1.1.0\n")
        let outputs = try #require(try await store.outputs(of: run.target, storedBy: run.id))
        #expect(outputs.contains("\"1.1.0\""), "\(outputs)")
        #expect(try await store.run(run.id)?.state == .verified)
        // Asked again (a duplicate request), nothing runs twice.
        #expect(try await restarted.verifyResolved(run: run.id) == nil)
    }
}
