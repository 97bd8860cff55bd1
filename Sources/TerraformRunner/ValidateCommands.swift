import Foundation

/// The commands `lockstep validate` (the CI step, docs/CONTRACT.md §5) runs besides `init`:
/// `validate -json` with an environment's var files where the tool takes them, and `console`
/// to evaluate expressions against the configuration without configuring any provider.
extension TerraformRunner {
    /// Whether this tool's `validate` takes `-var-file`. Terraform's does not (measured with 1.0.3
    /// and 1.11.4: its validate checks the configuration without variable values); recent
    /// OpenTofu's does. Read from the command's own usage text, so any tool that offers the
    /// option is used with it.
    public func validateTakesVarFiles() async throws -> Bool {
        _ = try prepareTools()
        let invocation = Invocation(directory: URL(fileURLWithPath: "/"), writable: [], timeout: .seconds(60))
        let result = try await execute(["validate", "-help"], invocation, command: "validate -help", capture: true,
                                       captureLimit: 256 * 1024, keepPrefix: true)
        let usage = String(decoding: result.stdout ?? Data(), as: UTF8.self) + "\n" + result.command.output
        return usage.contains("-var-file")
    }

    /// `validate -json` in a directory where `init` already ran: terraform's diagnostics as
    /// data, redacted. `varFiles` are passed only when the caller knows the tool takes them
    /// (``validateTakesVarFiles()``). When terraform was stopped (timeout, cancellation) before
    /// it printed its report, `valid` is false, there are no diagnostics and the command's
    /// outcome says why.
    public func validateJSON(_ invocation: Invocation, varFiles: [URL] = []) async throws -> (command: CommandResult, valid: Bool, diagnostics: [Diagnostic]) {
        _ = try prepareTools()
        let arguments = ["validate", "-json", "-no-color"] + varFiles.map { "-var-file=\($0.path)" }
        let result = try await execute(arguments, invocation, command: "validate", capture: true, captureLimit: 16 << 20)
        struct Raw: Decodable {
            struct Position: Decodable { var line: Int? }
            struct Range: Decodable {
                var filename: String?
                var start: Position?
            }
            struct RawDiagnostic: Decodable {
                var severity: String
                var summary: String
                var detail: String?
                var range: Range?
            }
            var valid: Bool
            var diagnostics: [RawDiagnostic]
        }
        guard let data = result.stdout, let raw = try? JSONDecoder().decode(Raw.self, from: data) else {
            if result.command.outcome == .timedOut || result.command.outcome == .cancelled { return (result.command, false, []) }
            throw TerraformRunnerError(.malformedOutput, "terraform validate -json could not be decoded",
                                       context: ["output": String(result.command.output.suffix(2000))])
        }
        let redactor = invocation.redactor
        let diagnostics = raw.diagnostics.map {
            Diagnostic(severity: $0.severity, summary: redactor.redact($0.summary), detail: $0.detail.map(redactor.redact),
                       filename: $0.range?.filename, line: $0.range?.start?.line)
        }
        return (result.command, raw.valid, diagnostics)
    }

    /// `terraform console` evaluating one expression (one line) with `varFiles`, against
    /// whatever state the directory's backend holds. The caller gives it a `local` backend
    /// with an empty state: console then configures no provider (terraform builds its "eval"
    /// graph, whose provider nodes only load schemas), so it needs no credentials. Resources
    /// that are not in the state evaluate as unknown.
    ///
    /// In a pipe, console prints only the value of the last line it read (measured with 1.0.3
    /// and 1.11.4), so the caller asks one expression (an object of everything it wants). Returns the value as console
    /// printed it (stdout), or nil with the command's (redacted) result when it failed.
    public func console(_ invocation: Invocation, expression: String, varFiles: [URL] = []) async throws -> (command: CommandResult, value: String?) {
        _ = try prepareTools()
        guard !expression.contains("\n") else {
            throw TerraformRunnerError(.invalidConfiguration, "a console expression must be one line")
        }
        let input = try makeTemporaryDirectory()
        defer { removeHome(input) }
        let file = input.appendingPathComponent("expression")
        do {
            try Data((expression + "\n").utf8).write(to: file)
        } catch {
            throw TerraformRunnerError(.fileSystem, "cannot write the console expression")
        }
        let arguments = ["console", "-no-color"] + varFiles.map { "-var-file=\($0.path)" }
        let result = try await execute(arguments, invocation, command: "console", capture: true, captureLimit: 16 << 20, stdin: file)
        guard result.command.outcome == .succeeded, let data = result.stdout else { return (result.command, nil) }
        return (result.command, invocation.redactor.redact(String(decoding: data, as: UTF8.self)))
    }
}
