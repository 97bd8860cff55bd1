import Foundation
import LockstepConfig
public import LockstepCore
public import Logging
public import TerraformRunner

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How `lockstep validate` runs terraform.
public struct ValidationOptions: Sendable {
    /// The terraform or tofu binary: a path, or a name looked up in ``searchPath`` (`--terraform`).
    public var terraform: String
    /// Where a bare ``terraform`` name is looked up (the caller's `PATH`).
    public var searchPath: String?
    /// The operator's CLI config (`--cli-config`), passed as `TF_CLI_CONFIG_FILE`; nil: providers
    /// come from their registries (a rendered config with `direct {}`), cached once per validation.
    public var cliConfig: URL?
    /// Only this project (`--project`); nil: every project.
    public var project: ProjectName?
    /// Longest one terraform command may run before it is interrupted.
    public var commandTimeout: Duration
    /// Where the scratch folder is made; nil: the system's temporary folder.
    public var scratchParent: URL?
    /// Where providers come from when no ``cliConfig`` is given (the daemon: its mirror).
    public var providerInstallation: CLIConfiguration.ProviderInstallation = .direct
    /// Runs every command through the launcher (the daemon: the code of the branch is not
    /// trusted, and it runs next to the store and the credentials). Nil in CI.
    public var confinement: Confinement?

    public init(terraform: String = "terraform", searchPath: String? = nil, cliConfig: URL? = nil, project: ProjectName? = nil,
                commandTimeout: Duration = .seconds(600), scratchParent: URL? = nil) {
        self.terraform = terraform
        self.searchPath = searchPath
        self.cliConfig = cliConfig
        self.project = project
        self.commandTimeout = commandTimeout
        self.scratchParent = scratchParent
    }

    /// `name` as an absolute executable path: a name with a `/` as it is (made absolute), a
    /// bare name looked up in `searchPath` as a shell would, without running one. Nil when
    /// nothing executable is found.
    public static func resolveExecutable(_ name: String, searchPath: String?) -> URL? {
        guard !name.isEmpty else { return nil }
        if name.contains("/") {
            let url = URL(fileURLWithPath: name)
            return FileManager.default.isExecutableFile(atPath: url.path) ? url.standardizedFileURL : nil
        }
        for folder in (searchPath ?? "").split(separator: ":") where !folder.isEmpty {
            let candidate = URL(fileURLWithPath: String(folder)).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        return nil
    }
}

/// Validates every (project, environment) of a checkout and compares the environments of each
/// project (docs/CONTRACT.md §5, "CI step"). The daemon can call it too: it only reads the
/// checkout, writes only below its own scratch folder (removed before it returns) and runs
/// terraform through ``TerraformRunner`` (an environment built from nothing, a fresh HOME per
/// command, a timeout, redaction).
///
/// Each environment gets its own copy of the checkout, so no two runs share a `.terraform`
/// folder, a lock file or a module cache.
public func validate(checkout: String, options: ValidationOptions, logger: Logger) async -> ValidationReport {
    await Validation(checkout: checkout, options: options, logger: logger).run()
}

struct Validation {
    let checkout: String
    let options: ValidationOptions
    let logger: Logger

    func run() async -> ValidationReport {
        var report = ValidationReport(checkout: checkout)
        // The tool first: its problems are reported together with the checkout's.
        let executable = ValidationOptions.resolveExecutable(options.terraform, searchPath: options.searchPath)
        if executable == nil {
            report.inputErrors.append("--terraform \(Finding.oneLine(options.terraform)): no executable terraform or tofu binary "
                                      + (options.terraform.contains("/") ? "at that path" : "on PATH"))
        }
        if let cli = options.cliConfig, !FileManager.default.isReadableFile(atPath: cli.path) {
            report.inputErrors.append("--cli-config \(cli.path): no such readable file")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkout, isDirectory: &isDirectory), isDirectory.boolValue,
              let root = realPath(checkout) else {
            report.inputErrors.append("\(checkout): no such directory (give the root of a delivery repository checkout)")
            return report
        }
        guard FileManager.default.fileExists(atPath: root + "/" + RepoConfig.fileName) else {
            report.inputErrors.append("\(checkout): no \(RepoConfig.fileName) at its root (is this a delivery repository?)")
            return report
        }
        let config: RepoConfig
        do {
            config = try RepoConfig.load(root: root)
        } catch {
            report.inputErrors += error.errors.map(\.description)
            return report
        }
        if let project = options.project, config.projects[project] == nil {
            let known = config.projects.keys.map(\.rawValue).sorted().joined(separator: ", ")
            report.inputErrors.append("--project \(project.rawValue): no such project in \(RepoConfig.fileName) (\(known))")
        }
        report.inputErrors += config.checkPaths(root: root, project: options.project).map(\.description)
        guard report.inputErrors.isEmpty, let executable else { return report }

        let scratch: URL
        do {
            scratch = try makeScratch()
        } catch {
            report.inputErrors.append("cannot create a scratch folder: \(error)")
            return report
        }
        defer { removeScratch(scratch) }
        let runner = TerraformRunner(configuration: TerraformRunner.Configuration(
            executable: executable,
            toolsDirectory: scratch.appendingPathComponent("tools", isDirectory: true),
            providerInstallation: options.providerInstallation,
            usesPluginCache: true,
            gracePeriod: .seconds(10),
            confinement: options.confinement,
            operatorCLIConfig: options.cliConfig
        ), logger: logger)
        do {
            let version = try await runner.version()
            report.tool = "\(version.tool) \(version.version)"
            report.validatePerEnvironment = try await runner.validateTakesVarFiles()
        } catch {
            report.inputErrors.append("--terraform \(executable.path): did not run as terraform or tofu (\(error))")
            return report
        }
        for name in config.projects.keys.sorted() where options.project == nil || options.project == name {
            guard let layout = config.projects[name] else { continue }
            report.projects.append(await project(layout, config: config, root: root, scratch: scratch, runner: runner,
                                                 perEnvironment: report.validatePerEnvironment))
        }
        return report
    }

    // MARK: one project

    private func project(_ layout: ProjectLayout, config: RepoConfig, root: String, scratch: URL, runner: TerraformRunner,
                         perEnvironment: Bool) async -> ProjectReport {
        let dir = layout.dir.value
        let projectDirectory = URL(fileURLWithPath: root).appendingPathComponent(dir == "." ? "" : dir, isDirectory: true)
        let rootModule = InstanceProbe.rootModule(directory: projectDirectory)
        let expansions = rootModule.expansions
        var environments: [EnvironmentReport] = []
        var variables: [EnvironmentName: [String: VarFileNames.Name]] = [:]
        var variableFiles: [EnvironmentName: [String: String]] = [:]
        var instances: [EnvironmentName: [Int: InstanceProbe.Value]] = [:]
        var shared: [Finding]?
        var unevaluated: [Unevaluated] = []
        for (index, env) in layout.environments.keys.sorted().enumerated() {
            guard let environment = layout.environments[env] else { continue }
            var result = EnvironmentReport(environment: env.rawValue, varFiles: environment.varFiles.map(\.value))
            let varFiles = environment.varFiles.map { URL(fileURLWithPath: root).appendingPathComponent($0.value) }

            // (a) The names each var file sets.
            var names: [String: VarFileNames.Name] = [:]
            var files: [String: String] = [:]
            var namesComplete = true
            for (file, url) in zip(environment.varFiles, varFiles) {
                do throws(HCLScanner.Failure) {
                    guard let data = FileManager.default.contents(atPath: url.path), data.count <= VarFileNames.maxBytes else {
                        throw HCLScanner.Failure(line: 1, message: "cannot be read, or is larger than \(VarFileNames.maxBytes) bytes")
                    }
                    for name in try VarFileNames.names(in: String(decoding: data, as: UTF8.self), file: file.value) {
                        names[name.name] = name
                        files[name.name] = file.value
                        // A misspelt name (`enable_wfa`) sets nothing: terraform only warns at plan
                        // time and the default silently applies.
                        if let declared = rootModule.variables, !declared.contains(name.name) {
                            result.findings.append(Finding(severity: .warning, check: .varFile, file: file.value, line: name.line,
                                                           message: "variable \(name.name) is set here but the project declares no such variable (terraform ignores the value)"))
                        }
                    }
                } catch {
                    namesComplete = false
                    result.findings.append(Finding(severity: .error, check: .varFile, file: file.value, line: error.line, message: error.message))
                }
            }
            if namesComplete {
                variables[env] = names
                variableFiles[env] = files
            }

            // (b) A copy of its own, validated. Without per-environment validation and with no
            // count or for_each to probe, an environment after the first has nothing to run: it
            // gets the first one's findings, copy problems included.
            let needsCopy = perEnvironment || shared == nil || !expansions.isEmpty
            let target = scratch.appendingPathComponent("targets/\(index)-\(layout.name.rawValue)-\(env.rawValue)", isDirectory: true)
            let workDirectory = target.appendingPathComponent(dir == "." ? "" : dir, isDirectory: true)
            let invocation = TerraformRunner.Invocation(directory: workDirectory, writable: [target], timeout: options.commandTimeout)
            var copyProblems: [Finding] = []
            if needsCopy {
                copyProblems = copyTree(from: URL(fileURLWithPath: root), to: target)
                result.findings += copyProblems
            }
            if perEnvironment || shared == nil {
                let findings = await validateOne(invocation, varFiles: perEnvironment ? varFiles : [], dir: dir, runner: runner)
                if !perEnvironment { shared = copyProblems + findings }
                result.findings += findings
            } else if let shared {
                result.findings += needsCopy ? shared.filter { $0.check != .copy } : shared
            }
            let validated = !result.findings.contains { $0.severity == .error && $0.check != .varFile }

            // (c) Which instances its count and for_each expressions make.
            if !expansions.isEmpty {
                if !validated || !namesComplete {
                    for expansion in expansions {
                        unevaluated.append(Unevaluated(address: expansion.address, environment: env.rawValue,
                                                       reason: "the environment did not validate",
                                                       file: joined(dir, expansion.file), line: expansion.line))
                    }
                } else {
                    let probed = await probe(invocation, expansions: expansions, varFiles: varFiles, target: target, runner: runner)
                    switch probed {
                    case .values(let values):
                        instances[env] = Dictionary(uniqueKeysWithValues: values.enumerated().map { ($0.offset, $0.element) })
                    case .failed(let finding):
                        result.findings.append(finding)
                    }
                }
            }
            if needsCopy { removeScratch(target) }
            environments.append(result)
        }
        for (file, failure) in rootModule.problems {
            // Terraform's validate reports the same file as an error; the probe only says what it skipped.
            unevaluated.append(Unevaluated(address: Unevaluated.everything, environment: Unevaluated.everything,
                                           reason: "\(failure.message) (the probe could not read this file)",
                                           file: joined(dir, file), line: failure.line))
        }
        let parity = Parity.compare(project: layout.name, policy: config.parity, dir: dir, environments: layout,
                                    variables: variables, variableFiles: variableFiles,
                                    expansions: expansions, instances: instances, unevaluated: unevaluated)
        return ProjectReport(project: layout.name.rawValue, dir: dir, environments: environments, parity: parity)
    }

    /// `init -backend=false` and `validate -json` in one copy; diagnostics as findings.
    private func validateOne(_ invocation: TerraformRunner.Invocation, varFiles: [URL], dir: String, runner: TerraformRunner) async -> [Finding] {
        do {
            let initialization = try await runner.initialize(invocation, backend: false)
            guard initialization.outcome == .succeeded else {
                let failed = Finding(severity: .error, check: .initialize,
                                     message: "terraform init -backend=false did not succeed (\(initialization.outcome)): " + Validation.lastLines(initialization.output))
                guard initialization.outcome != .timedOut, initialization.outcome != .cancelled else { return [failed] }
                // Init stops at a syntax error or a missing module without saying where in a form
                // that can be read; validate (which needs no init to load the configuration) does,
                // with file and line. Its diagnostics are used when it has any errors.
                let diagnostics = (try? await runner.validateJSON(invocation, varFiles: varFiles))?.diagnostics ?? []
                let findings = Validation.findings(diagnostics, dir: dir)
                return findings.contains { $0.severity == .error } ? findings : findings + [failed]
            }
            let validation = try await runner.validateJSON(invocation, varFiles: varFiles)
            if validation.command.outcome == .timedOut || validation.command.outcome == .cancelled {
                return [Finding(severity: .error, check: .validate, message: "terraform validate was stopped before it reported (\(validation.command.outcome))")]
            }
            var findings = Validation.findings(validation.diagnostics, dir: dir)
            if !validation.valid, !findings.contains(where: { $0.severity == .error }) {
                findings.append(Finding(severity: .error, check: .validate, message: "terraform validate reported the configuration invalid"))
            }
            return findings
        } catch {
            return [Finding(severity: .error, check: .validate, message: "terraform validate could not run: \(error)")]
        }
    }

    /// Terraform's diagnostics as findings, their files made relative to the checkout.
    static func findings(_ diagnostics: [Diagnostic], dir: String) -> [Finding] {
        diagnostics.map { diagnostic in
            Finding(severity: diagnostic.severity == "error" ? .error : .warning, check: .validate,
                    file: diagnostic.filename.map { joined(dir, $0) }, line: diagnostic.line,
                    message: diagnostic.summary + (diagnostic.detail.map { $0.isEmpty ? "" : ": \($0)" } ?? ""))
        }
    }

    /// Writes the probe and a local backend into the copy, runs `init` and `console`.
    private func probe(_ invocation: TerraformRunner.Invocation, expansions: [InstanceProbe.Expansion], varFiles: [URL],
                       target: URL, runner: TerraformRunner) async -> ProbeOutcome {
        let directory = invocation.directory
        for name in [InstanceProbe.probeFile, InstanceProbe.backendOverrideFile]
        where FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) {
            return .failed(Finding(severity: .error, check: .parityProbe, message: "the project has a file named \(name), which the probe needs for itself; rename it"))
        }
        do {
            let state = target.appendingPathComponent("probe-state/terraform.tfstate")
            try Data(InstanceProbe.backendOverride(statePath: state.path).utf8)
                .write(to: directory.appendingPathComponent(InstanceProbe.backendOverrideFile))
            try Data(InstanceProbe.probeSource(expansions).utf8).write(to: directory.appendingPathComponent(InstanceProbe.probeFile))
            let initialization = try await runner.initialize(invocation, backend: true)
            guard initialization.outcome == .succeeded else {
                return .failed(Finding(severity: .error, check: .parityProbe,
                                        message: "terraform init with a local backend (for the parity probe) did not succeed: "
                                            + Validation.lastLines(initialization.output)))
            }
            let all = try await ask(expansions, invocation: invocation, varFiles: varFiles, runner: runner)
            guard all.ran else {
                return .failed(Finding(severity: .error, check: .parityProbe, message: "terraform console could not evaluate the count and for_each "
                                       + "expressions: " + (all.errors.isEmpty ? "it did not run" : all.errors)))
            }
            guard !all.errors.isEmpty, expansions.count > 1 else { return .values(all.values) }
            // An expression terraform cannot evaluate in this environment (a null where a list
            // was meant) makes terraform 1.0 print the whole object as unknown, later versions
            // that entry, with the error on stderr and no way to tell which entry it was: ask
            // again one at a time, so the error is attributed and the rest still compared.
            var values: [InstanceProbe.Value] = []
            for expansion in expansions {
                try Data(InstanceProbe.probeSource([expansion]).utf8).write(to: directory.appendingPathComponent(InstanceProbe.probeFile))
                values += try await ask([expansion], invocation: invocation, varFiles: varFiles, runner: runner).values
            }
            return .values(values)
        } catch {
            return .failed(Finding(severity: .error, check: .parityProbe, message: "the parity probe could not run: \(error)"))
        }
    }

    /// Console's value of the probe for `batch`. `ran` is false when console failed outright
    /// (then every value is unknown); `errors` holds the errors terraform printed, and when
    /// there are any, each unknown entry carries them as its reason.
    private func ask(_ batch: [InstanceProbe.Expansion], invocation: TerraformRunner.Invocation, varFiles: [URL],
                     runner: TerraformRunner) async throws -> (values: [InstanceProbe.Value], ran: Bool, errors: String) {
        let console = try await runner.console(invocation, expression: InstanceProbe.expression, varFiles: varFiles)
        let errors = Validation.errorSummary(console.command.output)
        let failed = InstanceProbe.Value.unknown("terraform console could not evaluate it: " + (errors.isEmpty ? "\(console.command.outcome)" : errors))
        guard let value = console.value else { return (batch.map { _ in failed }, false, errors) }
        let values = InstanceProbe.hasEntries(value)
            ? InstanceProbe.parse(value, expansions: batch)
            : batch.map { _ in InstanceProbe.Value.unknown("its value is known only after apply") }
        guard !errors.isEmpty else { return (values, true, errors) }
        return (values.map { if case .unknown = $0 { failed } else { $0 } }, true, errors)
    }

    /// Terraform's error diagnostics in `output` (redacted, `-no-color`): each as its summary
    /// and the last line of its detail.
    static func errorSummary(_ output: String) -> String {
        var errors: [String] = []
        var summary: String?
        var last = ""
        func close() {
            if let summary { errors.append(last.isEmpty || last == summary ? summary : "\(summary): \(last)") }
            summary = nil
            last = ""
        }
        for raw in output.split(separator: "\n", omittingEmptySubsequences: false) {
            // With colour off, terraform 1.0 still frames a diagnostic in │ ╷ ╵; later versions do not.
            let line = raw.trimmingCharacters(in: CharacterSet(charactersIn: " │╷"))
            if line.hasPrefix("╵") || line.hasPrefix("Warning: ") {
                close()
            } else if line.hasPrefix("Error: ") {
                close()
                summary = String(line.dropFirst("Error: ".count))
            } else if summary != nil, !line.isEmpty, !line.hasPrefix("on "), !line.hasPrefix("├"), !line.hasPrefix("│") {
                last = line
            }
        }
        close()
        return errors.joined(separator: "; ")
    }

    /// The last lines of a command's (redacted) output, for a finding.
    static func lastLines(_ output: String) -> String {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " │╷╵")) }
            .filter { !$0.isEmpty }
        return lines.suffix(8).joined(separator: " ")
    }

    // MARK: files

    /// A private scratch folder (0700) for this validation.
    private func makeScratch() throws -> URL {
        let parent = options.scratchParent ?? URL(fileURLWithPath: NSTemporaryDirectory(), isDirectory: true)
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        return try TerraformRunner.makeRunDirectory(under: parent, name: "lockstep-validate-\(UUID().uuidString.prefix(13))")
    }

    private func removeScratch(_ url: URL) {
        do { try FileManager.default.removeItem(at: url) } catch {
            logger.warning("could not remove a scratch folder", metadata: ["validate.scratch": "\(url.path)"])
        }
    }

    /// Copies the checkout into `target`, leaving out `.git` and every `.terraform` folder
    /// (another run's providers and modules). A symbolic link is copied as a link only when it
    /// stays inside the checkout; one that leaves it is reported and not copied, so terraform
    /// reads nothing outside the repository under review.
    func copyTree(from source: URL, to target: URL) -> [Finding] {
        var findings: [Finding] = []
        let fileManager = FileManager.default
        let rootPath = source.path
        func walk(_ relative: String) {
            let from = relative.isEmpty ? source : source.appendingPathComponent(relative)
            let to = relative.isEmpty ? target : target.appendingPathComponent(relative)
            guard let entries = try? fileManager.contentsOfDirectory(atPath: from.path) else {
                findings.append(Finding(severity: .error, check: .copy, file: relative, message: "the folder cannot be read"))
                return
            }
            for name in entries.sorted() where name != ".git" && name != ".terraform" {
                let path = relative.isEmpty ? name : relative + "/" + name
                let source = from.appendingPathComponent(name)
                let destination = to.appendingPathComponent(name)
                var info = stat()
                guard lstat(source.path, &info) == 0 else { continue }
                do {
                    switch info.st_mode & S_IFMT {
                    case S_IFDIR:
                        try fileManager.createDirectory(at: destination, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                        walk(path)
                    case S_IFREG:
                        try fileManager.copyItem(at: source, to: destination)
                    case S_IFLNK:
                        guard let resolved = realPath(source.path), resolved == rootPath || resolved.hasPrefix(rootPath + "/") else {
                            findings.append(Finding(severity: .error, check: .copy, file: path,
                                                    message: "a symbolic link that leads outside the checkout (or nowhere) is not followed"))
                            continue
                        }
                        let destinationTarget = try fileManager.destinationOfSymbolicLink(atPath: source.path)
                        try fileManager.createSymbolicLink(atPath: destination.path, withDestinationPath: destinationTarget)
                    default:
                        continue
                    }
                } catch {
                    findings.append(Finding(severity: .error, check: .copy, file: path, message: "could not be copied for validation"))
                }
            }
        }
        do {
            try fileManager.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            return [Finding(severity: .error, check: .copy, message: "cannot create a scratch copy of the checkout")]
        }
        walk("")
        return findings
    }
}

/// What the instance probe of one environment gave.
enum ProbeOutcome {
    case values([InstanceProbe.Value])
    case failed(Finding)
}

/// `dir/file`, normalised (`app/../modules/x/main.tf` → `modules/x/main.tf`): the paths
/// terraform reports are relative to the project folder; the report's are relative to the checkout.
func joined(_ dir: String, _ file: String) -> String {
    if file.hasPrefix("/") { return file }
    var parts: [Substring] = []
    for part in ((dir == "." ? "" : dir + "/") + file).split(separator: "/") {
        if part == "." { continue }
        if part == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
        parts.append(part)
    }
    return parts.joined(separator: "/")
}

private func realPath(_ path: String) -> String? {
    guard let raw = realpath(path, nil) else { return nil }
    defer { free(raw) }
    return String(cString: raw)
}
