import Foundation
import LockstepCore
import TerraformRunner

/// How the gate reaches terraform and verify programs: exactly the operations it uses, so the
/// gate's branches can be tested with a double and no terraform on the machine.
///
/// ``TerraformRunner`` is the real one. A double returns the runner's own value types
/// (``CommandResult``, ``PlanResult``, ``SavedPlan``, ``ShownPlan``), which all have public
/// memberwise initialisers. Whatever implements this keeps the runner's rules
/// (docs/THREAT-MODEL.md): an environment built from nothing, output redacted with the
/// invocation's secrets, a saved plan applied only when its bytes still have the approved
/// digest and deleted afterwards.
public protocol PlanRunner: Sendable {
    /// The parent of the per-environment provider caches.
    var pluginCacheDirectory: URL { get }
    /// PATH given to terraform and to verify programs.
    var searchPath: String { get }
    /// How commands are confined; nil runs them directly (tests only).
    var confinement: Confinement? { get }
    /// What identifies the tool to an ``InitSnapshot`` (nil: init is never skipped).
    var initToolIdentity: Data? { get }

    /// `terraform init` in the invocation's directory.
    func initialize(_ invocation: TerraformRunner.Invocation, backend: Bool, backendConfigFiles: [URL]) async throws -> CommandResult
    /// `terraform plan -out planFile`: the plan's bytes and their digest when it succeeded.
    func plan(_ invocation: TerraformRunner.Invocation, planFile: URL, varFiles: [URL], destroy: Bool) async throws -> PlanResult
    /// The saved plan's summary and redacted JSON, with the sensitive values it revealed.
    func showJSON(_ invocation: TerraformRunner.Invocation, planFile: URL) async throws -> ShownPlanJSON
    /// The saved plan's text, redacted with the invocation's secrets and `sensitiveValues`.
    func renderText(_ invocation: TerraformRunner.Invocation, planFile: URL, sensitiveValues: Set<String>) async throws -> PlanRendering
    /// Applies `planFile` only if its bytes have `expectedDigest`; the file is gone afterwards.
    func apply(_ invocation: TerraformRunner.Invocation, planFile: URL, expectedDigest: Digest) async throws -> CommandResult
    /// `terraform output -json` with sensitive values and secrets redacted.
    func outputs(_ invocation: TerraformRunner.Invocation) async throws -> Data
    /// The lineage and serial of the state as the backend has it now (`terraform state pull`).
    func stateHead(_ invocation: TerraformRunner.Invocation) async throws -> StateBinding
    /// Runs a verify program; a non-zero exit or a timeout is an outcome, not a throw.
    func runProgram(_ request: ExternalProgram.Request) async throws -> CommandResult
}

extension PlanRunner {
    /// A runner that says nothing about its tool runs init every time.
    var initToolIdentity: Data? { nil }

    /// `init` with the backend configured.
    func initialize(_ invocation: TerraformRunner.Invocation, backendConfigFiles: [URL]) async throws -> CommandResult {
        try await initialize(invocation, backend: true, backendConfigFiles: backendConfigFiles)
    }

    /// A plan that is not a destroy plan.
    func plan(_ invocation: TerraformRunner.Invocation, planFile: URL, varFiles: [URL]) async throws -> PlanResult {
        try await plan(invocation, planFile: planFile, varFiles: varFiles, destroy: false)
    }
}

extension TerraformRunner: PlanRunner {}
