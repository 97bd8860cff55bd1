import ArgumentParser
import Foundation
import LockstepConfig
import LockstepDaemon
import Logging

/// `lockstep serve --config FILE`: the daemon (docs/CONTRACT.md §5). Logs go to stderr (journald under
/// systemd); they never carry a secret or a plan body.
public struct ServeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the release gate: poll the delivery repo, plan, and apply approved runs; serve the API."
    )

    @Option(help: "The agent config file.")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    public init() {}

    public func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        // The format is read from the config before anything logs; a config that cannot be
        // read is reported by `Daemon.serve` below, in the default format.
        let format = (try? AgentConfig.load(path: config))?.logFormat ?? .logfmt
        let environment = ProcessInfo.processInfo.environment
        let journald = LineLogHandler.stderrIsJournal(environment)
        LoggingSystem.bootstrap { _ in LineLogHandler(format: format, level: level, journald: journald) }
        let logger = Logger(label: "lockstep")
        do {
            try await Daemon.serve(configPath: config, environment: environment, logger: logger)
        } catch let error as DaemonError {
            FileHandle.standardError.write(Data("lockstep serve: \(error.description)\n".utf8))
            throw ExitCode(error.code == .storeLocked ? 3 : 2)
        } catch {
            // Whatever else ends the daemon ends it loudly too: one line, a non-zero exit,
            // so systemd's restart policy sees the failure.
            FileHandle.standardError.write(Data("lockstep serve: stopped on an error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
