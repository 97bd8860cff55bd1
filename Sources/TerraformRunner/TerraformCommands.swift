import Foundation
import Logging
import LockstepCore

/// The terraform commands: each prepares the tools folder, runs one command through
/// ``execute(_:_:command:capture:captureLimit:keepPrefix:tooLarge:)`` and reads its result as data.
extension TerraformRunner {
    /// `terraform version -json`: which tool and version this agent runs.
    public func version() async throws -> TerraformVersion {
        _ = try prepareTools()
        // In `/`, writing nothing: it needs no project, and the tools folder is hidden from a
        // confined terraform.
        let invocation = Invocation(directory: URL(fileURLWithPath: "/"), writable: [], timeout: .seconds(60))
        let result = try await execute(["version", "-json"], invocation, command: "version", capture: true)
        guard result.command.outcome == .succeeded, let data = result.stdout else {
            throw failure("terraform version", result.command)
        }
        struct Raw: Decodable {
            var terraform_version: String
            var platform: String?
        }
        guard let raw = try? JSONDecoder().decode(Raw.self, from: data) else {
            throw TerraformRunnerError(.malformedOutput, "terraform version -json could not be decoded")
        }
        let version: SemanticVersion
        do {
            version = try SemanticVersion(raw.terraform_version)
        } catch {
            throw TerraformRunnerError(.malformedOutput, "terraform version -json reported a version that is not a semantic version",
                                       context: ["reason": error.description])
        }
        return TerraformVersion(tool: configuration.executable.lastPathComponent, version: version, platform: raw.platform)
    }

    /// `terraform init -input=false` in the invocation's directory.
    ///
    /// Committed `.terraform/` and `terraform.d/` folders are removed first: a
    /// provider binary in either would otherwise be a way for the delivery repo
    /// to run code on the agent. Inits sharing the plugin cache are serialised,
    /// in this process and against other processes (``PluginCacheLock``),
    /// because terraform's cache is not safe for concurrent writers. Waiting
    /// for the lock counts against the invocation's timeout and ends on
    /// cancellation (outcome `timedOut` / `cancelled`, terraform not started).
    public func initialize(
        _ invocation: Invocation, backend: Bool = true, backendConfigFiles: [URL] = []
    ) async throws -> CommandResult {
        _ = try prepareTools()
        for name in [".terraform", "terraform.d"] {
            let url = invocation.directory.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) {
                logger.info("removing committed folder before init", metadata: ["terraform.folder": "\(name)"])
                do { try FileManager.default.removeItem(at: url) } catch {
                    throw TerraformRunnerError(.fileSystem, "cannot remove a committed \(name) folder")
                }
            }
        }
        var arguments = ["init", "-input=false", "-no-color", "-backend=\(backend)"]
        arguments += backendConfigFiles.map { "-backend-config=\($0.path)" }
        guard configuration.usesPluginCache else {
            return try await execute(arguments, invocation, command: "init").command
        }
        let clock = ContinuousClock()
        let started = clock.now
        var logger = self.logger
        logger[metadataKey: "terraform.command"] = "init"
        do {
            let cache = pluginCacheDirectory(for: invocation)
            do {
                try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw TerraformRunnerError(.fileSystem, "cannot create the provider cache folder")
            }
            return try await PluginCacheLock.withLock(
                cache: cache, deadline: invocation.timeout.map { started + $0 }, logger: logger
            ) {
                // The timeout bounds the whole init, waiting for the lock included.
                var remaining = invocation
                if let timeout = invocation.timeout {
                    remaining.timeout = max(timeout - (clock.now - started), .milliseconds(1))
                }
                return try await execute(arguments, remaining, command: "init").command
            }
        } catch let abandoned as PluginCacheLock.Abandoned {
            return CommandResult(outcome: abandoned == .cancelled ? .cancelled : .timedOut, exitCode: -1,
                                 duration: clock.now - started, output: "", droppedOutputBytes: 0)
        }
    }

    /// `terraform plan -out PLANFILE -detailed-exitcode`; returns the plan file and its digest.
    ///
    /// The plan file is created 0600 before terraform writes into it (terraform
    /// keeps an existing file's mode) and its directory must not be readable by
    /// others: a plan holds state and variable values.
    public func plan(
        _ invocation: Invocation, planFile: URL, varFiles: [URL] = [], destroy: Bool = false
    ) async throws -> PlanResult {
        _ = try prepareTools()
        try ensurePrivate(directory: planFile.deletingLastPathComponent())
        try? FileManager.default.removeItem(at: planFile)
        guard FileManager.default.createFile(atPath: planFile.path, contents: nil, attributes: [.posixPermissions: 0o600])
        else { throw TerraformRunnerError(.fileSystem, "cannot create the plan file") }
        var arguments = ["plan", "-input=false", "-no-color", "-detailed-exitcode"]
        arguments.append(invocation.stateLock ? "-lock-timeout=\(seconds(configuration.lockTimeout))s" : "-lock=false")
        arguments += varFiles.map { "-var-file=\($0.path)" }
        if destroy { arguments.append("-destroy") }
        arguments.append("-out=\(planFile.path)")
        var command = try await execute(arguments, invocation, command: "plan").command
        var changes: PlanChanges?
        if command.outcome == .failed(exitCode: 2) {
            command.outcome = .succeeded
            changes = .changesPresent
        } else if command.outcome == .succeeded {
            changes = .noChanges
        }
        guard let changes else {
            try? FileManager.default.removeItem(at: planFile)
            return PlanResult(command: command, plan: nil)
        }
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: planFile.path)
        // Read once; the digest is of these bytes, and callers keep using these bytes.
        let contents = try Self.readPlan(planFile, limit: configuration.maxCapturedBytes)
        let digest = Self.digest(of: contents)
        logger.info("plan saved", metadata: ["plan.digest": "\(digest)", "plan.changes": "\(changes.rawValue)"])
        return PlanResult(command: command, plan: SavedPlan(file: planFile, digest: digest, changes: changes, contents: contents))
    }

    /// The bytes of a plan file, refusing one over `limit` (a plan is a zip of the
    /// configuration and changes; anything larger is not something to keep in memory).
    static func readPlan(_ file: URL, limit: Int) throws -> Data {
        guard let handle = try? FileHandle(forReadingFrom: file) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist or cannot be read")
        }
        defer { try? handle.close() }
        let contents: Data
        do {
            contents = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            throw TerraformRunnerError(.fileSystem, "the plan file could not be read")
        }
        guard contents.count <= limit else {
            throw TerraformRunnerError(.outputTooLarge, "the plan file is larger than the configured limit",
                                       context: ["limit": "\(limit)"])
        }
        return contents
    }

    /// `show -json` parsed into a summary and redacted, plus terraform's
    /// human rendering of the saved plan, redacted: ``showJSON(_:planFile:)`` and
    /// ``renderText(_:planFile:sensitiveValues:)`` with the two processes started together.
    public func show(_ invocation: Invocation, planFile: URL) async throws -> ShownPlan {
        // Neither process needs the other; the text is redacted once the JSON has said which
        // values are sensitive.
        async let text = captureText(invocation, planFile: planFile, sensitiveValues: [])
        let json = try await showJSON(invocation, planFile: planFile)
        let rendering = try await text.redacting(json.sensitiveValues, invocation: invocation)
        return ShownPlan(plan: json.plan, redactedJSON: json.redactedJSON, rendering: rendering.text,
                         renderingBytes: rendering.bytes, renderingTruncated: rendering.truncated)
    }

    /// `show -json` parsed into a summary and redacted, with the sensitive values it revealed
    /// (to redact the text rendering with).
    ///
    /// Memory stays bounded whatever the plan prints. The JSON is read up to
    /// `planJSONBytes`; past that the rest is drained unkept and ``TerraformRunnerError/Code/planJSONTooLarge``
    /// is thrown, because the summary and every check are computed from the JSON and a plan
    /// whose JSON was not read whole must never look reviewable.
    public func showJSON(_ invocation: Invocation, planFile: URL) async throws -> ShownPlanJSON {
        _ = try prepareTools()
        guard FileManager.default.fileExists(atPath: planFile.path) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist")
        }
        let jsonLimit = configuration.planJSONBytes
        let json = try await execute(["show", "-json", "-no-color", planFile.path], invocation, command: "show", capture: true,
                                     captureLimit: jsonLimit) { bytes in
            TerraformRunnerError(.planJSONTooLarge,
                                 "the plan's JSON (\(ByteSize(bytes))) is larger than the limit of \(ByteSize(jsonLimit))",
                                 context: ["limit_bytes": "\(jsonLimit)", "bytes": "\(bytes)"])
        }
        guard json.command.outcome == .succeeded, let raw = json.stdout else { throw failure("terraform show -json", json.command) }
        let plan: PlanModel
        do {
            plan = try PlanModel(planJSON: raw)
        } catch {
            throw TerraformRunnerError(.malformedOutput, "terraform plan JSON could not be decoded: \(error.description)")
        }
        let (redactedJSON, learned) = try PlanJSONRedaction.redact(raw, redactor: invocation.redactor)
        return ShownPlanJSON(plan: plan, redactedJSON: redactedJSON, sensitiveValues: learned)
    }

    /// Terraform's human rendering of the saved plan (`show`), redacted with the invocation's
    /// secrets and `sensitiveValues` (what ``showJSON(_:planFile:)`` revealed).
    ///
    /// The text is read up to `planTextBytes` and the rest only counted: the rendering is then
    /// the start of the text, cut at a line end, and ``PlanRendering/truncated`` says so.
    public func renderText(_ invocation: Invocation, planFile: URL, sensitiveValues: Set<String>) async throws -> PlanRendering {
        try await captureText(invocation, planFile: planFile, sensitiveValues: sensitiveValues)
            .redacting(sensitiveValues, invocation: invocation)
    }

    /// `show`'s text as printed, to be redacted with ``CapturedRendering/redacting(_:invocation:)``
    /// once every sensitive value is known.
    func captureText(_ invocation: Invocation, planFile: URL, sensitiveValues: Set<String>) async throws -> CapturedRendering {
        _ = try prepareTools()
        guard FileManager.default.fileExists(atPath: planFile.path) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist")
        }
        // A few bytes past the limit are read so that a secret crossing the cut is seen whole
        // (and the cut moved before it): a truncated rendering never ends in half a secret; and
        // at least the next character's first byte, so a cut never splits a character.
        let textLimit = configuration.planTextBytes
        var textInvocation = invocation
        textInvocation.secrets.formUnion(sensitiveValues)
        let longestSecret = textInvocation.redactor.longestPatternBytes
        let text = try await execute(["show", "-no-color", planFile.path], textInvocation, command: "show", capture: true,
                                     captureLimit: textLimit + max(longestSecret, 4) + Self.learnedSecretAllowance,
                                     keepPrefix: true)
        return CapturedRendering(command: text.command, stdout: text.stdout, stdoutBytes: text.stdoutBytes, limit: textLimit,
                                 logger: logger)
    }

    /// Bytes read past the text limit so that a sensitive value the JSON reveals (not known when
    /// the text's capture starts) is still seen whole where it crosses the cut.
    static let learnedSecretAllowance = 4096

    /// `bytes` redacted; with `limit`, only their start: cut at the last line end before the
    /// limit (or, with no line end, at a UTF-8 character boundary), and before any secret that
    /// crosses the limit, so the cut never leaves part of a secret in clear. `bytes` may hold
    /// a few bytes past `limit` so such a secret is recognised.
    static func rendering(of bytes: UnsafeRawBufferPointer, cutAt limit: Int?, redactor: Redactor) -> String {
        let covered = redactor.coveredRanges(in: bytes)
        var cut = min(limit ?? bytes.count, bytes.count)
        if limit != nil {
            if let crossing = covered.first(where: { $0.lowerBound < cut && cut < $0.upperBound }) { cut = crossing.lowerBound }
            if let newline = bytes[0..<cut].lastIndex(of: UInt8(ascii: "\n")) {
                cut = newline + 1
            } else {
                while cut > 0, cut < bytes.count, bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
            }
        }
        let kept = UnsafeRawBufferPointer(rebasing: bytes[0..<cut])
        let inside = covered.filter { $0.upperBound <= cut }
        if inside.isEmpty { return String(decoding: kept, as: UTF8.self) }
        return String(decoding: Redactor.replacing(inside, in: kept), as: UTF8.self)
    }

    /// Applies a saved plan, only if its bytes still have `expectedDigest`.
    ///
    /// The plan file is deleted when this returns or throws, whatever the
    /// outcome: a plan can be applied at most once (docs/THREAT-MODEL.md §4.3, replay).
    public func apply(_ invocation: Invocation, planFile: URL, expectedDigest: Digest) async throws -> CommandResult {
        defer { try? FileManager.default.removeItem(at: planFile) }
        _ = try prepareTools()
        let actual = try Self.digest(ofFileAt: planFile)
        guard actual == expectedDigest else {
            logger.error("plan digest mismatch: refusing to apply",
                         metadata: ["plan.digest.expected": "\(expectedDigest)", "plan.digest.actual": "\(actual)"])
            throw TerraformRunnerError(.planDigestMismatch, "the plan file does not match the approved digest",
                                       context: ["expected": expectedDigest.rawValue, "actual": actual.rawValue])
        }
        let arguments = ["apply", "-input=false", "-no-color", "-lock-timeout=\(seconds(configuration.lockTimeout))s", planFile.path]
        return try await execute(arguments, invocation, command: "apply").command
    }

    /// `terraform output -json` after an apply, with the value of every output terraform
    /// marks `sensitive` replaced by ``Redactor/placeholder`` and every credential value
    /// of the invocation redacted: the only form of the outputs Lockstep stores or hands
    /// to verify commands (docs/THREAT-MODEL.md §6.4: outputs leaking secrets).
    ///
    /// Reading outputs only needs read access to the state, so callers pass plan
    /// credentials here, never apply credentials.
    public func outputs(_ invocation: Invocation) async throws -> Data {
        _ = try prepareTools()
        let result = try await execute(["output", "-json", "-no-color"], invocation, command: "output", capture: true)
        guard result.command.outcome == .succeeded, let raw = result.stdout else { throw failure("terraform output -json", result.command) }
        guard var outputs = (try? JSONSerialization.jsonObject(with: raw)) as? [String: Any] else {
            throw TerraformRunnerError(.malformedOutput, "terraform output -json could not be decoded")
        }
        for (name, value) in outputs {
            guard var entry = value as? [String: Any] else { continue }
            if (entry["sensitive"] as? Bool) != false {
                // Unknown shape or sensitive: never keep the value.
                entry["value"] = Redactor.placeholder
            }
            outputs[name] = entry
        }
        guard let encoded = try? JSONSerialization.data(withJSONObject: outputs, options: [.sortedKeys]) else {
            throw TerraformRunnerError(.malformedOutput, "terraform outputs could not be re-encoded")
        }
        return Data(invocation.redactor.redact(String(decoding: encoded, as: UTF8.self)).utf8)
    }

    /// `terraform state pull`, kept only as far as the lineage and serial at its start
    /// (docs/CONTRACT.md §4, "Apply"): the rest of the state, secrets and all, is read, counted
    /// and dropped, never logged. No state at all is ``StateBinding/none``.
    public func stateHead(_ invocation: Invocation) async throws -> StateBinding {
        _ = try prepareTools()
        let result = try await execute(["state", "pull"], invocation, command: "state pull", capture: true,
                                       captureLimit: 64 * 1024, keepPrefix: true)
        guard result.command.outcome == .succeeded, let raw = result.stdout else { throw failure("terraform state pull", result.command) }
        return try PlanArchive.stateHead(raw, what: "the state terraform pulled")
    }

    /// `init -backend=false` then `validate -json`: terraform's diagnostics as data.
    public func validate(_ invocation: Invocation) async throws -> ValidationResult {
        let initialization = try await initialize(invocation, backend: false)
        guard initialization.outcome == .succeeded else {
            return ValidationResult(initialization: initialization, validation: nil, valid: false, diagnostics: [])
        }
        let result = try await validateJSON(invocation)
        return ValidationResult(initialization: initialization, validation: result.command, valid: result.valid, diagnostics: result.diagnostics)
    }
}
