import Foundation

/// What terraform, and everything it starts, may touch on the agent's file system.
///
/// Why: `terraform plan` runs code from the delivery repository before anyone approved it
/// (`external` data sources, `local-exec` in data, provider code), as the daemon's own OS
/// user. Unconfined, that code could read the *apply* credentials files (docs/THREAT-MODEL.md §1.2: plan
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
///   paths (its run's tree and plan file, its environment's folders such as a local
///   backend's state folder), its HOME and ``writablePaths``; the rest of the system is
///   read-only; the invocation's ``TerraformRunner/Invocation/hidden`` paths (every other
///   environment's folders and provider cache) are hidden as well;
/// - on kernels with Landlock ABI ≥ 6 the process cannot signal anything outside its
///   sandbox (so not the daemon);
/// - no process the command starts outlives it: the launcher runs it in a PID namespace of
///   its own, which the kernel empties (SIGKILL) when the command exits, whatever the
///   leftovers did (`setsid`, double forks, ignoring SIGTERM). Without that, plan-time code
///   could leave a process that rewrites the plan file after it was hashed, or holds the
///   daemon's output pipes open and stalls the run.
///
/// ``processesOnly(launcher:)`` keeps the last guarantee without the file-system sandbox:
/// what an operator who turned Landlock off (`terraform.confine: false`) still gets.
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
    /// Writable by every command besides its own run paths and HOME. The daemon grants none
    /// here: every folder it grants belongs to one environment and goes with that
    /// environment's commands only.
    public var writablePaths: [URL]
    /// False for ``processesOnly(launcher:)``: no Landlock, so no path is hidden or
    /// read-only; descendants are still contained.
    public private(set) var confinesFiles: Bool

    public init(launcher: URL, hiddenPaths: [URL], readablePaths: [URL] = [], writablePaths: [URL] = []) {
        self.launcher = launcher
        self.hiddenPaths = hiddenPaths
        self.readablePaths = readablePaths
        self.writablePaths = writablePaths
        self.confinesFiles = true
    }

    /// Every command still runs through the launcher in its own PID namespace, so nothing it
    /// starts outlives it, but without the Landlock file-system sandbox (`--no-landlock`):
    /// the command reads and writes whatever the daemon's user may. For an agent configured
    /// with `terraform.confine: false`; never silently chosen when Landlock fails.
    public static func processesOnly(launcher: URL) -> Confinement {
        var confinement = Confinement(launcher: launcher, hiddenPaths: [])
        confinement.confinesFiles = false
        return confinement
    }

    /// This confinement with `paths` hidden as well (e.g. the folders of every other
    /// environment, for one environment's commands). Without ``confinesFiles`` nothing can be
    /// hidden and it is returned unchanged.
    public func hiding(_ paths: [URL]) -> Confinement {
        guard confinesFiles else { return self }
        var copy = self
        copy.hiddenPaths += paths
        return copy
    }

    /// The `lockstep-confine` next to the running executable (how the daemon is installed).
    public static func launcherBesideExecutable() -> URL {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("lockstep-confine")
    }

    /// Asks the launcher whether this kernel can confine (`--check`, with `--no-landlock` for
    /// ``processesOnly(launcher:)``); returns its answer, e.g. `landlock abi 7, pid namespace`.
    /// Throws ``TerraformRunnerError/Code/confinementUnavailable`` with the launcher's reason
    /// when it cannot (no Landlock, or user and PID namespaces not allowed): the daemon then
    /// refuses to start rather than run repository code unconfined.
    public func check() async throws -> String {
        guard FileManager.default.isExecutableFile(atPath: launcher.path) else {
            throw TerraformRunnerError(.confinementUnavailable, "the confinement launcher \(launcher.path) is missing or not executable")
        }
        let result = try await ProcessExecution.run(ProcessRequest(
            executable: launcher.path, arguments: (confinesFiles ? [] : ["--no-landlock"]) + ["--check"], directory: URL(fileURLWithPath: "/"),
            environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(30), gracePeriod: .seconds(1),
            captureStdoutLimit: 4_096, retainedBytes: 4_096, maxLineBytes: 4_096, redactor: Redactor(secrets: []),
            sink: DiscardingOutputSink()))
        let answer = String(decoding: result.stdout ?? Data(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let expected = confinesFiles ? "landlock abi" : "no landlock"
        guard result.exitCode == 0, answer.hasPrefix(expected), answer.hasSuffix("pid namespace") else {
            let reason = result.tail.trimmingCharacters(in: .whitespacesAndNewlines)
            throw TerraformRunnerError(.confinementUnavailable,
                                       "terraform cannot be confined on this machine: \(reason.isEmpty ? "exit \(result.exitCode)" : reason)")
        }
        return answer
    }

    /// The launcher's arguments for one program, ending with `--` and the program:
    /// `readable` and `writable` are granted on top of ``readablePaths`` and ``writablePaths``;
    /// `hidden` adds to ``hiddenPaths``. Without ``confinesFiles`` the paths are meaningless
    /// and left out.
    func arguments(program: String, hidden: [URL] = [], readable: [URL], writable: [URL]) -> [String] {
        guard confinesFiles else { return ["--no-landlock", "--", program] }
        var arguments: [String] = []
        for path in hiddenPaths + hidden { arguments += ["--hide", path.path] }
        for path in readablePaths + readable { arguments += ["--read", path.path] }
        for path in writablePaths + writable { arguments += ["--write", path.path] }
        return arguments + ["--", program]
    }
}
