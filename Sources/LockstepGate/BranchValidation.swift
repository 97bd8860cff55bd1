import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import LockstepValidate
import Logging
import TerraformRunner

/// `lockstep validate` of one tip of the protected branch, as the daemon ran it
/// (`validate_branch: true`, docs/CONTRACT.md §5): shown on the board.
public struct BranchValidation: Sendable, Hashable {
    public var commit: GitObjectID
    public var time: Date
    /// 0 all good, 1 a validation error or an undeclared parity difference, 2 the checkout could
    /// not be validated (its `lockstep.yaml`, the tool).
    public var exitStatus: Int32
    /// One line per problem: input errors, then errors, undeclared differences and warnings.
    public var problems: [String]
}

extension Gate {
    /// At most this many problem lines are kept for the board.
    static let branchValidationLines = 50

    /// Validates the protected branch's tip when it is not the tip validated last (after a
    /// start, the first call validates). Returns the new result, or nil when there was nothing
    /// new (or validation is off). The commit is exported into a fresh folder next to the runs,
    /// and every terraform command runs confined like a plan, with the agent's provider
    /// installation, hiding every environment's state folders: the branch's code is merged but
    /// still not trusted, and `terraform console` can read data sources.
    public func validateBranchIfNew() async -> BranchValidation? {
        guard agent.validateBranch else { return nil }
        let tip: GitObjectID
        do {
            tip = try await source.branchTip(agent.repository.branch)
        } catch {
            return nil
        }
        guard lastBranchValidation?.commit != tip, branchValidationRunning != tip else { return nil }
        branchValidationRunning = tip
        defer { branchValidationRunning = nil }
        let folder = runsDirectory.appendingPathComponent("validate-\(tip.short)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = await validate(tip, in: folder)
        // A newer result (another caller) is not replaced by an older one.
        if lastBranchValidation == nil || lastBranchValidation?.commit != tip {
            lastBranchValidation = result
        }
        logger.log(level: result.exitStatus == 0 ? .info : .warning, "branch validated",
                   metadata: ["commit": "\(tip.short)", "validate.exit_status": "\(result.exitStatus)",
                              "validate.problems": "\(result.problems.count)"])
        return result
    }

    /// The last result of ``validateBranchIfNew()``.
    public func branchValidation() -> BranchValidation? { lastBranchValidation }

    private func validate(_ commit: GitObjectID, in folder: URL) async -> BranchValidation {
        func failed(_ why: String) -> BranchValidation {
            BranchValidation(commit: commit, time: now(), exitStatus: 2, problems: [why])
        }
        let checkout = folder.appendingPathComponent("checkout", isDirectory: true)
        let scratch = folder.appendingPathComponent("scratch", isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: runsDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            for url in [folder, checkout, scratch] {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false,
                                                        attributes: [.posixPermissions: 0o700])
            }
        } catch {
            return failed("the folder for the validation could not be created")
        }
        let limits = GitSource.ExportLimits(maxBytes: agent.exportLimits.maxBytes, maxFiles: agent.exportLimits.maxFiles,
                                            maxDepth: agent.exportLimits.maxDepth)
        do {
            _ = try await source.export(commit: commit, to: checkout.path, limits: limits, excludingNames: Self.excludedNames)
        } catch {
            return failed("the branch tip could not be exported: \(error.description)")
        }
        // Every environment's writable folders (its state) are hidden: validation needs none of them.
        let stateFolders = agent.environments.values.flatMap(\.writablePaths).map { URL(fileURLWithPath: $0, isDirectory: true) }
        var options = ValidationOptions(terraform: agent.terraform.binary, searchPath: runner.searchPath,
                                        scratchParent: scratch)
        options.providerInstallation = agent.terraform.providerMirrorDir.map { .filesystemMirror(URL(fileURLWithPath: $0)) } ?? .direct
        options.confinement = runner.confinement?.hiding(stateFolders)
        options.commandTimeout = agent.terraform.planTimeout
        let report = await LockstepValidate.validate(checkout: checkout.path, options: options, logger: logger)
        return BranchValidation(commit: commit, time: now(), exitStatus: report.exitStatus,
                                problems: Array(report.problemLines.prefix(Self.branchValidationLines)))
    }
}

extension ValidationReport {
    /// Every problem in one line each, the worst first: input errors, errors, undeclared
    /// differences, warnings. Paths are relative to the checkout.
    var problemLines: [String] {
        var errors: [String] = [], warnings: [String] = [], differences: [String] = []
        for project in projects {
            for environment in project.environments {
                for finding in environment.findings {
                    let place = finding.file.map { " (\($0)\(finding.line.map { ":\($0)" } ?? ""))" } ?? ""
                    let line = "\(project.project)/\(environment.environment): \(finding.message)\(place)"
                    if finding.severity == .error { errors.append(line) } else { warnings.append(line) }
                }
            }
            for difference in project.parity.differences where !difference.intended {
                differences.append("\(project.project): \(difference.message)")
            }
        }
        return inputErrors + errors + differences + warnings
    }
}
