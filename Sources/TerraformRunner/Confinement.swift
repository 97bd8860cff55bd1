import Foundation

/// What terraform, and everything it starts, may touch on the agent's file system.
///
/// Why: `terraform plan` runs code from the delivery repository before anyone approved it
/// (`external` data sources, `local-exec` in data, provider code), as the daemon's own OS
/// user. Unconfined, that code could read the *apply* credentials files (SPEC §8: plan
/// never sees apply credentials), edit the store to forge approvals, put a provider of its
/// own into the shared plugin cache for a later apply, or read other runs' plan files.
///
/// With a confinement every command is started through the `lockstep-confine` launcher,
/// which restricts the process with Linux Landlock (inherited by every child, no privilege
/// needed) and then executes terraform in place:
/// - every path in ``hiddenPaths`` (the store's folder, the git mirror, credentials and
///   key files, the agent config) and the runner's tools folder can be neither read nor
///   written; the runner grants back only what one command needs: the CLI config (read),
///   the plugin cache (written by `init` only, read and executed by the others) and the
///   command's own fresh HOME;
/// - the only places written are the invocation's ``TerraformRunner/Invocation/writable``
///   paths (its run's tree and plan file), its HOME and ``writablePaths`` (for example a
///   local backend's state folder); the rest of the system is read-only;
/// - on kernels with Landlock ABI ≥ 6 the process cannot signal anything outside its
///   sandbox (so not the daemon).
///
/// What it does not do: limit the network (terraform must reach the clouds), or hide files
/// that are not listed (a hidden path must be named).
public struct Confinement: Sendable, Hashable {
    /// The `lockstep-confine` executable.
    public var launcher: URL
    /// Never readable or writable by terraform.
    public var hiddenPaths: [URL]
    /// Readable even when inside a hidden path (e.g. a provider mirror).
    public var readablePaths: [URL]
    /// Writable by every command besides its own run paths and HOME.
    public var writablePaths: [URL]

    public init(launcher: URL, hiddenPaths: [URL], readablePaths: [URL] = [], writablePaths: [URL] = []) {
        self.launcher = launcher
        self.hiddenPaths = hiddenPaths
        self.readablePaths = readablePaths
        self.writablePaths = writablePaths
    }

    /// The `lockstep-confine` next to the running executable (how the daemon is installed).
    public static func launcherBesideExecutable() -> URL {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("lockstep-confine")
    }

    /// Asks the launcher whether this kernel can confine (`--check`); returns its answer,
    /// e.g. `landlock abi 7`. Throws ``TerraformRunnerError/Code/confinementUnavailable``
    /// with the launcher's reason when it cannot: the daemon then refuses to start rather
    /// than run repository code unconfined.
    public func check() async throws -> String {
        guard FileManager.default.isExecutableFile(atPath: launcher.path) else {
            throw TerraformRunnerError(.confinementUnavailable, "the confinement launcher \(launcher.path) is missing or not executable")
        }
        let result = try await ProcessExecution.run(ProcessRequest(
            executable: launcher.path, arguments: ["--check"], directory: URL(fileURLWithPath: "/"),
            environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(30), gracePeriod: .seconds(1),
            captureStdoutLimit: 4_096, retainedBytes: 4_096, maxLineBytes: 4_096, redactor: Redactor(secrets: []),
            sink: DiscardingOutputSink()))
        let answer = String(decoding: result.stdout ?? Data(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.exitCode == 0, answer.hasPrefix("landlock abi") else {
            let reason = result.tail.trimmingCharacters(in: .whitespacesAndNewlines)
            throw TerraformRunnerError(.confinementUnavailable,
                                       "terraform cannot be confined on this machine: \(reason.isEmpty ? "exit \(result.exitCode)" : reason)")
        }
        return answer
    }

    /// The launcher's arguments for one program, ending with `--` and the program:
    /// `readable` and `writable` are granted on top of ``readablePaths`` and ``writablePaths``;
    /// `hidden` adds to ``hiddenPaths``.
    func arguments(program: String, hidden: [URL] = [], readable: [URL], writable: [URL]) -> [String] {
        var arguments: [String] = []
        for path in hiddenPaths + hidden { arguments += ["--hide", path.path] }
        for path in readablePaths + readable { arguments += ["--read", path.path] }
        for path in writablePaths + writable { arguments += ["--write", path.path] }
        return arguments + ["--", program]
    }
}
