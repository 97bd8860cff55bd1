import NameLiterals
import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore
import Synchronization
import Testing
import TerraformRunner
@testable import LockstepGate

// MARK: - Plan runner

/// The ShownPlan the double's `show` returns for `planJSON`. The one place that builds a
/// ShownPlan from plan JSON, so a change of its summary type is one line here.
func shown(planJSON: String) throws -> ShownPlan {
    let json = Data(planJSON.utf8)
    return ShownPlan(plan: try PlanModel(planJSON: json), redactedJSON: json, rendering: "the plan, as text\n")
}

/// Plan JSON (terraform's `show -json` shape) with the given resource changes.
func planJSON(_ changes: [(address: String, type: String, actions: [String])]) -> String {
    let entries = changes.map { change in
        let actions = change.actions.map { "\"\($0)\"" }.joined(separator: ",")
        return """
        {"address":"\(change.address)","mode":"managed","type":"\(change.type)","name":"x","change":{"actions":[\(actions)]}}
        """
    }
    return """
    {"format_version":"0.2","terraform_version":"1.0.3","resource_changes":[\(entries.joined(separator: ","))]}
    """
}

/// One null_resource created: a plan every default policy passes.
let createsOneResource = planJSON([("null_resource.app", "null_resource", ["create"])])

/// What the scripted runner was asked, in order.
enum RunnerCall: Sendable, Hashable {
    case initialize
    case plan
    case show
    case render
    case apply(Digest)
    case outputs
    case stateHead
    case program(String)
}

/// An error a scripted runner operation throws.
struct ScriptedRunnerFailure: Error {}

/// A ``PlanRunner`` whose every operation returns a scripted outcome or throws, and records
/// the call. `plan` returns bytes (a fresh body per plan) and their digest; `show` returns
/// ``shown(planJSON:)`` of the scripted JSON.
actor ScriptedPlanRunner: PlanRunner {
    /// How `plan` ends.
    enum PlanScript: Sendable {
        /// Succeeded with changes.
        case changes
        /// Succeeded, nothing to change.
        case noChanges
        /// Terraform ended with this outcome and output (no plan saved).
        case ends(CommandOutcome, output: String)
        /// The runner could not run terraform.
        case throwing
        /// Runs until the calling task is cancelled, then ends `cancelled` (as the runner does
        /// when it kills terraform's process group).
        case untilCancelled
    }

    nonisolated let pluginCacheDirectory: URL
    nonisolated let searchPath = "/usr/bin:/bin"
    nonisolated let confinement: Confinement? = nil

    var initOutcome: CommandOutcome = .succeeded
    var initOutput = ""
    var initThrows = false
    var planScript: PlanScript = .changes
    var shownJSON = createsOneResource
    var showError: (any Error)?
    /// Thrown by the text rendering (after the JSON was shown).
    var renderError: (any Error)?
    var applyOutcome: CommandOutcome = .succeeded
    var outputsThrows = false
    /// The prior state every plan records, and the state `stateHead` reports (the plan's unless set).
    var priorState = StateBinding.none
    var stateNow: StateBinding?
    /// Outcomes of verify programs, in call order (`.succeeded` once they run out).
    var programOutcomes: [CommandOutcome] = []

    private(set) var calls: [RunnerCall] = []
    private var plans = 0

    init(pluginCacheDirectory: URL) {
        self.pluginCacheDirectory = pluginCacheDirectory
    }

    func script(_ body: @Sendable (isolated ScriptedPlanRunner) -> Void) { body(self) }

    private static func result(_ outcome: CommandOutcome, _ output: String = "") -> CommandResult {
        let exit: Int32 = if case .failed(let code) = outcome { code } else { outcome == .succeeded ? 0 : 1 }
        return CommandResult(outcome: outcome, exitCode: exit, duration: .milliseconds(1), output: output)
    }

    func initialize(_ invocation: TerraformRunner.Invocation, backend: Bool, backendConfigFiles: [URL]) throws -> CommandResult {
        calls.append(.initialize)
        if initThrows { throw ScriptedRunnerFailure() }
        return Self.result(initOutcome, initOutput)
    }

    func plan(_ invocation: TerraformRunner.Invocation, planFile: URL, varFiles: [URL], destroy: Bool) async throws -> PlanResult {
        calls.append(.plan)
        plans += 1
        let bytes = Self.storedZip(name: "tfstate", contents: Data("""
            {"version": 4, "terraform_version": "1.0.3", "serial": \(priorState.serial), "lineage": "\(priorState.lineage)",
             "outputs": {}, "resources": [], "plan": \(plans)}
            """.utf8))
        switch planScript {
        case .changes, .noChanges:
            let changes: PlanChanges = if case .noChanges = planScript { .noChanges } else { .changesPresent }
            return PlanResult(command: Self.result(.succeeded),
                              plan: SavedPlan(file: planFile, digest: Digest.sha256(of: bytes), changes: changes, contents: bytes))
        case .ends(let outcome, let output):
            return PlanResult(command: Self.result(outcome, output), plan: nil)
        case .throwing:
            throw ScriptedRunnerFailure()
        case .untilCancelled:
            // Not a wait for luck: a sleep that only a cancellation ends within a test's run.
            try? await Task.sleep(for: .seconds(3_600))
            return PlanResult(command: Self.result(.cancelled), plan: nil)
        }
    }

    func showJSON(_ invocation: TerraformRunner.Invocation, planFile: URL) throws -> ShownPlanJSON {
        calls.append(.show)
        if let showError { throw showError }
        let shown = try shown(planJSON: shownJSON)
        return ShownPlanJSON(plan: shown.plan, redactedJSON: shown.redactedJSON)
    }

    func renderText(_ invocation: TerraformRunner.Invocation, planFile: URL, sensitiveValues: Set<String>) throws -> PlanRendering {
        calls.append(.render)
        if let renderError { throw renderError }
        return PlanRendering(text: "the plan, as text\n")
    }

    func apply(_ invocation: TerraformRunner.Invocation, planFile: URL, expectedDigest: Digest) throws -> CommandResult {
        // The digest of the bytes actually handed to apply, not the one the gate expects.
        let bytes = (try? Data(contentsOf: planFile)) ?? Data()
        calls.append(.apply(Digest.sha256(of: bytes)))
        return Self.result(applyOutcome)
    }

    func outputs(_ invocation: TerraformRunner.Invocation) throws -> Data {
        calls.append(.outputs)
        if outputsThrows { throw ScriptedRunnerFailure() }
        return Data(#"{"url":{"value":"https://example.test","sensitive":false}}"#.utf8)
    }

    func stateHead(_ invocation: TerraformRunner.Invocation) throws -> StateBinding {
        calls.append(.stateHead)
        return stateNow ?? priorState
    }

    /// A zip archive with one stored entry, as a saved plan is one (CRCs left zero: Lockstep
    /// reads only the central directory and the entry).
    static func storedZip(name: String, contents: Data) -> Data {
        var zip = Data()
        func u16(_ value: Int) { zip.append(contentsOf: [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF)]) }
        func u32(_ value: Int) { u16(value & 0xFFFF); u16(value >> 16 & 0xFFFF) }
        let nameBytes = Data(name.utf8)
        u32(0x0403_4b50); u16(20); u16(0); u16(0); u16(0); u16(0); u32(0)
        u32(contents.count); u32(contents.count); u16(nameBytes.count); u16(0)
        zip.append(nameBytes)
        zip.append(contents)
        let directory = zip.count
        u32(0x0201_4b50); u16(20); u16(20); u16(0); u16(0); u16(0); u16(0); u32(0)
        u32(contents.count); u32(contents.count); u16(nameBytes.count); u16(0); u16(0); u16(0); u16(0); u32(0); u32(0)
        zip.append(nameBytes)
        let directorySize = zip.count - directory
        u32(0x0605_4b50); u16(0); u16(0); u16(1); u16(1); u32(directorySize); u32(directory); u16(0)
        return zip
    }

    func runProgram(_ request: ExternalProgram.Request) throws -> CommandResult {
        calls.append(.program(URL(fileURLWithPath: request.executable).lastPathComponent))
        let outcome = programOutcomes.isEmpty ? .succeeded : programOutcomes.removeFirst()
        return Self.result(outcome)
    }

    /// Waits (polling, with a deadline) until the runner has been asked `call`. The deadline
    /// only bounds a failing test: in the full suite, other tests' real processes can hold the
    /// machine's two pool threads for tens of seconds before the gate's task runs.
    func waitForCall(_ call: RunnerCall, within seconds: Double = 300) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !calls.contains(call) {
            try #require(ContinuousClock.now < deadline, "the runner was never asked \(call)")
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    var applies: [Digest] {
        calls.compactMap { if case .apply(let digest) = $0 { digest } else { nil } }
    }
}
