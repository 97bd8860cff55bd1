import Foundation

/// Runs a program that is not terraform (a verify smoke test, an external policy check)
/// through the same process edge as terraform: an argv array (never a shell string), an
/// environment built from nothing but what the caller passes, its own process group
/// interrupted with SIGINT then SIGKILL on timeout, output redacted line by line and
/// bounded in memory, only stdin (/dev/null or a file the caller names), stdout and stderr inherited, and reading its
/// output bounded once it exited. With a ``Confinement`` nothing it starts outlives it.
///
/// Why it lives here: the rules that keep terraform from being steered by the daemon's
/// environment and from leaking secrets apply to every child Lockstep starts, so there
/// is one implementation of them.
public enum ExternalProgram {
    /// One program to run.
    public struct Request: Sendable {
        /// Absolute path of the program (resolved by the caller; no PATH search here).
        public var executable: String
        public var arguments: [String]
        public var directory: URL
        /// The complete environment of the child: nothing is inherited.
        public var environment: [String: String]
        public var timeout: Duration
        /// Time between SIGINT and SIGKILL of the process group.
        public var gracePeriod: Duration
        /// Bytes of output kept (the last ones).
        public var retainedOutputBytes: Int
        /// Values replaced in every line of output.
        public var redactor: Redactor
        public var output: any TerraformOutputSink
        /// When set, the program runs through the launcher (``Confinement``): it reads
        /// `readable` even inside hidden paths, writes only `writable`, and every process it
        /// starts is killed when it exits.
        public var confinement: Confinement?
        public var readable: [URL]
        public var writable: [URL]
        /// A file given to the program as stdin (`ssh-keygen -Y verify` reads the signed bytes
        /// there); /dev/null when nil.
        public var stdinPath: String?

        public init(executable: String, arguments: [String], directory: URL, environment: [String: String],
                    timeout: Duration, gracePeriod: Duration = .seconds(5), retainedOutputBytes: Int = 64 * 1024,
                    redactor: Redactor = Redactor(), output: any TerraformOutputSink = DiscardingOutputSink(),
                    confinement: Confinement? = nil, readable: [URL] = [], writable: [URL] = [], stdinPath: String? = nil) {
            self.executable = executable
            self.arguments = arguments
            self.directory = directory
            self.environment = environment
            self.timeout = timeout
            self.gracePeriod = gracePeriod
            self.retainedOutputBytes = retainedOutputBytes
            self.redactor = redactor
            self.output = output
            self.confinement = confinement
            self.readable = readable
            self.writable = writable
            self.stdinPath = stdinPath
        }
    }

    /// Runs the program to completion (or until its timeout). A non-zero exit is data:
    /// ``CommandOutcome/failed(exitCode:)``, ``CommandOutcome/timedOut``, never a throw.
    /// Throws only when the program cannot be started.
    public static func run(_ request: Request) async throws -> CommandResult {
        var executable = request.executable
        var arguments = request.arguments
        if let confinement = request.confinement {
            arguments = confinement.arguments(program: executable, readable: request.readable + [URL(fileURLWithPath: executable)],
                                              writable: request.writable) + arguments
            executable = confinement.launcher.path
        }
        let result = try await ProcessExecution.run(ProcessRequest(
            executable: executable,
            arguments: arguments,
            directory: request.directory,
            environment: request.environment,
            timeout: request.timeout,
            gracePeriod: request.gracePeriod,
            captureStdoutLimit: nil,
            retainedBytes: request.retainedOutputBytes,
            maxLineBytes: 16 * 1024,
            redactor: request.redactor,
            sink: request.output,
            stdinPath: request.stdinPath
        ))
        let outcome: CommandOutcome
        switch result.interruption {
        case .timedOut: outcome = .timedOut
        case .cancelled: outcome = .cancelled
        case nil: outcome = result.exitCode == 0 && !result.signalled ? .succeeded : .failed(exitCode: result.exitCode)
        }
        return CommandResult(outcome: outcome, exitCode: result.exitCode, duration: result.duration,
                             output: result.tail, droppedOutputBytes: result.droppedBytes)
    }
}
