import ArgumentParser
import Foundation
import LockstepCore
import LockstepValidate
import Logging

/// `lockstep validate [DIR]`: the CI step a delivery repository runs on every pull request
/// (docs/CONTRACT.md §5). It needs no daemon, no agent config and no cloud credentials.
public struct ValidateCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate every project in every environment of a delivery repo checkout, and compare the environments.",
        discussion: """
            For each project of lockstep.yaml and each of its environments, in a copy of its own: \
            terraform init -backend=false and terraform validate (with the environment's var files \
            where the tool takes them; terraform's validate does not, so it runs once per project).
            Parity: the variables one environment's var files set and another's do not, and the \
            resources and module calls of the root module that one environment would have and another \
            not (count and for_each evaluated with terraform console over an empty local state: no \
            provider is configured, no credentials are needed). lockstep.yaml may declare differences \
            intended under parity.ignore.
            Exit status: 0 all good; 1 a validation error or an undeclared parity difference; 2 bad \
            input (no such folder, no or an invalid lockstep.yaml, an unknown project, no terraform).
            """
    )

    @Argument(help: "The root of a delivery repository checkout.")
    var dir: String = "."

    @Option(help: "The terraform or tofu binary: a path, or a name looked up on PATH.")
    var terraform: String = "terraform"

    @Option(name: .customLong("cli-config"), help: "A terraform CLI config file, passed as TF_CLI_CONFIG_FILE (provider mirrors, credentials helpers).")
    var cliConfig: String?

    @Option(help: "Validate only this project.")
    var project: String?

    @Option(help: "Output: human, json, github (workflow commands) or gitlab (Code Quality report).")
    var format: String = "human"

    @Flag(help: "Print the report as JSON (the same as --format json).")
    var json = false

    public init() {}

    public func run() async throws {
        let format = json ? "json" : format
        guard ["human", "json", "github", "gitlab"].contains(format) else {
            FileHandle.standardError.write(Data("error: --format \(Finding.oneLine(format)): expected human, json, github or gitlab\n".utf8))
            throw ExitCode(2)
        }
        var projectName: ProjectName?
        if let project {
            do { projectName = try ProjectName(project) } catch {
                let report = ValidationReport(checkout: dir, inputErrors: ["--project \(Finding.oneLine(project)): not a project name (\(error.description))"])
                FileHandle.standardOutput.write(Data(Self.render(report, format).utf8))
                throw ExitCode(2)
            }
        }
        var logger = Logger(label: "lockstep.validate")
        logger.logLevel = .warning
        let options = ValidationOptions(terraform: terraform, searchPath: ProcessInfo.processInfo.environment["PATH"],
                                        cliConfig: cliConfig.map { URL(fileURLWithPath: $0).standardizedFileURL }, project: projectName)
        let report = await LockstepValidate.validate(checkout: dir, options: options, logger: logger)
        FileHandle.standardOutput.write(Data(Self.render(report, format).utf8))
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
    }

    private static func render(_ report: ValidationReport, _ format: String) -> String {
        switch format {
        case "json": report.json()
        case "github": report.github()
        case "gitlab": report.gitlab()
        default: report.human()
        }
    }
}
