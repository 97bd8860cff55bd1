import ArgumentParser
import Foundation
import LockstepAPI
import LockstepCore

// `lockstep status|runs|show|approve|reject|rollback|resolve`: clients of the daemon's
// JSON API (docs/CONTRACT.md §5). They decide nothing themselves: every rule (who may approve, which
// digest, which state) is the daemon's, and its refusal comes back with a stable code and
// a distinct exit status.

/// Help text shared by the client commands and the root command.
enum ClientHelp {
    /// The exit statuses, after "Exit status:" (the root prefixes which commands it means).
    static let exitStatuses = """
        0 done; 1 usage or other error (64 when the command line itself cannot be parsed); \
        3 refused by the gate (HTTP 403 or 409: identity not allowed, wrong digest, wrong state); \
        4 not found (404: no such run, environment or project); \
        5 the daemon is unreachable (connection refused, timeout, unknown host); \
        6 unauthorized (401: missing, wrong or revoked token).
        """

    static let connection = """
        The server comes from --server, else $LOCKSTEP_SERVER, else server: in the client config. \
        The token comes from --token-file, else $LOCKSTEP_TOKEN_FILE or $LOCKSTEP_TOKEN (the token itself), \
        else token_file: in the client config. The client config is --client-config FILE or \
        ~/.config/lockstep/client.yaml. No option takes the token itself: command lines are visible to every \
        user in /proc and ps, and land in shell history.
        """

    /// For the root command's help.
    static let root = """
        status, runs, show, approve, reject, rollback, resolve and tags (unless --offline) operate a running \
        daemon through its JSON API; each takes --json to print the API's JSON (keys sorted). \(connection)

        Exit status of those commands: \(exitStatuses)
        """

    static func discussion(_ text: String) -> String {
        text + "\n\n" + connection + "\n\nExit status: " + exitStatuses
    }
}

/// Runs one client command: resolves the connection, calls the API, prints the JSON or the
/// human form, and turns every failure into its message and exit status.
enum ClientCommandRunner {
    /// What a command produced: the API's JSON and the human rendering of it.
    struct Output: Sendable {
        var json: Data
        var human: String
    }

    static func run(_ options: ClientOptions,
                    validate: () throws(ClientError) -> Void = {},
                    _ body: (CommandClient) async throws(ClientError) -> Output) async throws {
        do {
            try validate()
            let settings = try ClientSettings.resolve(options, environment: ProcessInfo.processInfo.environment,
                                                      warn: { printError($0) })
            warnAboutPlainHTTP(settings.server)
            let output = try await CommandClient.with(settings, body)
            if options.json {
                var data = output.json
                if data.last != 0x0A { data.append(0x0A) }
                FileHandle.standardOutput.write(data)
            } else {
                print(output.human)
            }
        } catch {
            if options.json {
                var data = error.apiBody ?? syntheticErrorJSON(error)
                if data.last != 0x0A { data.append(0x0A) }
                FileHandle.standardOutput.write(data)
            }
            printError("error: \(error.description)")
            throw ExitCode(error.exitCode)
        }
    }

    /// The API's error shape for errors that happened on this side (`unreachable`, `configuration`, …),
    /// so a script reads one shape whatever went wrong.
    private static func syntheticErrorJSON(_ error: ClientError) -> Data {
        let body = APIErrorBody(code: APIErrorCode(rawValue: error.shownCode), message: error.message)
        return (try? APIJSON.makeEncoder().encode(body)) ?? Data()
    }

    /// A token sent over plain HTTP to another machine can be read on the way.
    private static func warnAboutPlainHTTP(_ server: URL) {
        guard server.scheme?.lowercased() == "http", let host = server.host?.lowercased() else { return }
        let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
        if !loopback {
            printError("warning: the token is sent to \(host) over plain http; use https unless this network is trusted")
        }
    }

    /// Parses an argument into a core type; a bad value is a usage error naming the argument.
    static func parse<T>(_ what: String, _ raw: String, _ make: (String) throws(CoreError) -> T) throws(ClientError) -> T {
        do {
            return try make(raw)
        } catch {
            throw ClientError(.usage, "\(what): \(error.description)")
        }
    }

    /// A reason sent to the audit log: one line of text.
    static func reason(_ raw: String) throws(ClientError) -> String {
        let trimmed = raw.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw ClientError(.usage, "--reason is empty; say why") }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ClientError(.usage, "--reason must be one line of text without control characters")
        }
        return trimmed
    }
}

// MARK: - Commands

/// `lockstep status`: the promotion board.
public struct StatusCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the board: every project (rows) in every environment (columns), applied, desired and pending.",
        discussion: ClientHelp.discussion("""
            Environments are columns in promotion order. Each cell shows the applied version (what the last \
            successful apply put in place), the desired version (the highest accepted tag, or a rollback pin) \
            and the pending run. Interrupted runs and unacknowledged alerts are marked !! and listed under \
            ATTENTION with the command that settles them. What keeps the daemon from following the \
            repository (a failing fetch, an invalid lockstep.yaml on the protected branch) is listed first \
            under PROBLEMS. --json prints GET /api/v1/environments.
            """)
    )

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        try await ClientCommandRunner.run(client) { api throws(ClientError) in
            let reply = try await api.get("environments")
            let environments = try api.decode(APIEnvironmentList.self, from: reply).environments
            guard !client.json else { return .init(json: reply.body, human: "") }
            // Interrupted runs are asked for separately so they are loud even when another run is pending.
            let interrupted = try api.decode(APIRunList.self,
                                             from: try await api.get("runs", query: [URLQueryItem(name: "state", value: RunState.interrupted.rawValue)])).runs
            let list = try api.decode(APIEnvironmentList.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.board(environments, interrupted: interrupted,
                                                                        problems: list.problems, validation: list.validation))
        }
    }
}

/// `lockstep runs [--target P/E] [--state S]…`.
public struct RunsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List runs, newest first.",
        discussion: ClientHelp.discussion("--json prints GET /api/v1/runs.")
    )

    @Option(help: ArgumentHelp("Only runs of this target.", valueName: "PROJECT/ENVIRONMENT"),
            completion: .custom(ClientCompletion.targets))
    var target: String?

    @Option(help: ArgumentHelp("Only runs in this state (repeat for several).", valueName: "STATE"),
            completion: .list(RunState.allCases.map(\.rawValue)))
    var state: [String] = []

    @Option(help: ArgumentHelp("At most this many runs (the daemon caps it).", valueName: "N"))
    var limit: Int?

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var query: [URLQueryItem] = []
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            if let target {
                let parts = target.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw ClientError(.usage, "--target must be PROJECT/ENVIRONMENT") }
                let project = try ClientCommandRunner.parse("--target", String(parts[0])) { raw throws(CoreError) in try ProjectName(raw) }
                let environment = try ClientCommandRunner.parse("--target", String(parts[1])) { raw throws(CoreError) in try EnvironmentName(raw) }
                query.append(URLQueryItem(name: "target", value: "\(project)/\(environment)"))
            }
            for raw in state {
                guard let parsed = RunState(rawValue: raw) else {
                    throw ClientError(.usage, "--state \(terminalSafe(raw, limit: 40)) is not a run state; expected one of "
                                      + RunState.allCases.map(\.rawValue).joined(separator: ", "))
                }
                query.append(URLQueryItem(name: "state", value: parsed.rawValue))
            }
            if let limit {
                guard limit >= 1 else { throw ClientError(.usage, "--limit must be at least 1") }
                query.append(URLQueryItem(name: "limit", value: String(limit)))
            }
        }) { api throws(ClientError) in
            let reply = try await api.get("runs", query: query)
            let runs = try api.decode(APIRunList.self, from: reply).runs
            return .init(json: reply.body, human: ClientRendering.runTable(runs))
        }
    }
}

/// `lockstep show RUN`.
public struct ShowCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a run: plan summary, redacted plan, checks, approvals, and the digest to quote.",
        discussion: ClientHelp.discussion("""
            Ends with the plan digest on a line of its own and, while the run awaits approval, the exact \
            lockstep approve command that quotes it. --json prints GET /api/v1/runs/RUN.
            """)
    )

    @Argument(help: ArgumentHelp("The run id (see lockstep runs).", valueName: "RUN"),
              completion: .custom(ClientCompletion.openRuns))
    var run: String

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var id: RunID?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            id = try ClientCommandRunner.parse("RUN", run) { raw throws(CoreError) in try RunID(raw) }
        }) { api throws(ClientError) in
            guard let id else { throw ClientError(.usage, "RUN is missing") }
            let reply = try await api.get("runs/\(id.rawValue)")
            let detail = try api.decode(APIRunDetail.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.detail(detail))
        }
    }
}

/// `lockstep approve RUN --digest D`.
public struct ApproveCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a run's plan, quoting its digest.",
        discussion: ClientHelp.discussion("""
            The approval counts only for the plan whose digest you quote: copy it from lockstep show RUN, \
            which prints it with this exact command. Your identity is the one your token belongs to; the \
            daemon refuses (exit 3) an identity not allowed for the environment, the release's own tagger \
            (unless the agent config allows it), a second approval by the same identity, a digest of another \
            plan, and a run that is not awaiting approval. When an external check failed and the agent config \
            lets it be overridden, every approval must name it with --override-check NAME and say why with \
            --reason; the run then needs one approval more. --break-glass (members of the environment's \
            break-glass group, with --reason) lets the run apply inside a freeze or outside the apply windows \
            once two members approved; that apply raises an alert. --json prints the run as POST \
            /api/v1/runs/RUN/approve returns it.
            """)
    )

    @Argument(help: ArgumentHelp("The run id.", valueName: "RUN"), completion: .custom(ClientCompletion.awaitingApproval))
    var run: String

    @Option(help: ArgumentHelp("The plan digest you reviewed (64 hex characters, from lockstep show).", valueName: "DIGEST"),
            completion: .none)
    var digest: String

    @Option(name: .customLong("override-check"),
            help: ArgumentHelp("A failed external check this approval overrides (repeat for several).", valueName: "NAME"),
            completion: .none)
    var overrideChecks: [String] = []

    @Flag(name: .customLong("break-glass"), help: "An emergency approval by a member of the environment's break-glass group.")
    var breakGlass = false

    @Option(help: ArgumentHelp("Why (required with --override-check and --break-glass; audited).", valueName: "TEXT"),
            completion: .none)
    var reason: String?

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var request: (RunID, Digest)?
        let (overrideChecks, breakGlass, reason) = (overrideChecks, breakGlass, reason)
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            request = (try ClientCommandRunner.parse("RUN", run) { raw throws(CoreError) in try RunID(raw) },
                       try ClientCommandRunner.parse("--digest", digest) { raw throws(CoreError) in try Digest(raw) })
            if (!overrideChecks.isEmpty || breakGlass), (reason ?? "").allSatisfy(\.isWhitespace) {
                throw ClientError(.usage, "--reason is required with \(breakGlass ? "--break-glass" : "--override-check")")
            }
        }) { api throws(ClientError) in
            guard let (id, digest) = request else { throw ClientError(.usage, "RUN is missing") }
            let body = APIApproveBody(digest: digest, overrideChecks: overrideChecks.isEmpty ? nil : overrideChecks,
                                      breakGlass: breakGlass ? true : nil, reason: reason)
            let reply = try await api.post("runs/\(id.rawValue)/approve", body: body)
            let detail = try api.decode(APIRunDetail.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.afterApproval(detail))
        }
    }
}

/// `lockstep reject RUN --reason R`.
public struct RejectCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Reject a run before it applies; it ends in rejected.",
        discussion: ClientHelp.discussion("""
            The reason goes to the audit log with your identity. A run that already started applying cannot \
            be rejected (exit 3). --json prints the run as POST /api/v1/runs/RUN/reject returns it.
            """)
    )

    @Argument(help: ArgumentHelp("The run id.", valueName: "RUN"), completion: .custom(ClientCompletion.openRuns))
    var run: String

    @Option(help: ArgumentHelp("Why (one line; it is audited).", valueName: "TEXT"), completion: .none)
    var reason: String

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var request: (RunID, String)?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            request = (try ClientCommandRunner.parse("RUN", run) { raw throws(CoreError) in try RunID(raw) },
                       try ClientCommandRunner.reason(reason))
        }) { api throws(ClientError) in
            guard let (id, reason) = request else { throw ClientError(.usage, "RUN is missing") }
            let reply = try await api.post("runs/\(id.rawValue)/reject", body: APIRejectBody(reason: reason))
            let detail = try api.decode(APIRunDetail.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.afterRejection(detail))
        }
    }
}

/// `lockstep rollback ENV --to VERSION [--project P]`.
public struct RollbackCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Start a gated rollback of an environment to a version it accepted before.",
        discussion: ClientHelp.discussion("""
            Creates one rollback run per project (or only --project's). Each is planned, checked and \
            approved like any other run; the target stays pinned at VERSION until a tag above the \
            current one is accepted. --json prints POST /api/v1/rollback's answer.
            """)
    )

    @Argument(help: ArgumentHelp("The environment.", valueName: "ENV"), completion: .custom(ClientCompletion.environments))
    var environment: String

    @Option(help: ArgumentHelp("The version to go back to (e.g. 1.4.2).", valueName: "VERSION"), completion: .none)
    var to: String

    @Option(help: ArgumentHelp("Only this project (default: every project of the environment).", valueName: "PROJECT"),
            completion: .none)
    var project: String?

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var request: APIRollbackBody?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            let environment = try ClientCommandRunner.parse("ENV", environment) { raw throws(CoreError) in try EnvironmentName(raw) }
            // A leading "v" is how tags spell versions; the API wants the version itself.
            let versionText = to.hasPrefix("v") ? String(to.dropFirst()) : to
            let version = try ClientCommandRunner.parse("--to", versionText) { raw throws(CoreError) in try SemanticVersion(raw) }
            let project = try project.map { value throws(ClientError) in
                try ClientCommandRunner.parse("--project", value) { raw throws(CoreError) in try ProjectName(raw) }
            }
            request = APIRollbackBody(environment: environment, project: project, version: version)
        }) { api throws(ClientError) in
            guard let request else { throw ClientError(.usage, "ENV is missing") }
            let reply = try await api.post("rollback", body: request)
            let result = try api.decode(APIRollbackResult.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.afterRollback(result))
        }
    }
}

/// `lockstep resolve RUN --as applied|failed --reason R`.
public struct ResolveCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Settle an interrupted run after checking the infrastructure.",
        discussion: ClientHelp.discussion("""
            A run whose apply was cut off (the daemon died while applying) is interrupted: it is never \
            re-applied by itself and blocks its target. Look at the infrastructure, then say what you \
            found: --as applied (the apply completed; the run goes on to verify) or --as failed (it did \
            not; the run ends failed). Your identity and reason are audited. A run that is not \
            interrupted is refused (exit 3). --json prints the run as POST /api/v1/runs/RUN/resolve returns it.
            """)
    )

    @Argument(help: ArgumentHelp("The interrupted run's id.", valueName: "RUN"), completion: .custom(ClientCompletion.interruptedRuns))
    var run: String

    @Option(name: .customLong("as"), help: ArgumentHelp("What you found: applied or failed.", valueName: "applied|failed"),
            completion: .list(["applied", "failed"]))
    var resolution: String

    @Option(help: ArgumentHelp("What you checked and found (one line; it is audited).", valueName: "TEXT"), completion: .none)
    var reason: String

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var request: (RunID, OperatorResolution, String)?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            let id = try ClientCommandRunner.parse("RUN", run) { raw throws(CoreError) in try RunID(raw) }
            guard let parsed = OperatorResolution(rawValue: resolution) else {
                throw ClientError(.usage, "--as must be applied or failed")
            }
            request = (id, parsed, try ClientCommandRunner.reason(reason))
        }) { api throws(ClientError) in
            guard let (id, resolution, reason) = request else { throw ClientError(.usage, "RUN is missing") }
            let reply = try await api.post("runs/\(id.rawValue)/resolve",
                                           body: APIResolveBody(as: resolution, reason: reason))
            let detail = try api.decode(APIRunDetail.self, from: reply)
            return .init(json: reply.body, human: ClientRendering.afterResolution(detail, as: resolution.rawValue))
        }
    }
}

/// `lockstep drift fix ENV [--project P]`: drift turned into a normal gated run.
public struct DriftCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Act on drift the daemon found (lockstep status shows it).",
        subcommands: [DriftFixCommand.self]
    )

    public init() {}
}

/// `lockstep drift fix ENV [--project P]`.
public struct DriftFixCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fix",
        abstract: "Start a gated run that applies the applied revision again, undoing drift.",
        discussion: ClientHelp.discussion("""
            For each target of ENV (or only --project's) whose last drift check found drift, starts a \
            run of the revision that is applied now: it is planned (the plan shows what drifted), \
            checked, approved and applied like any other run (POST /api/v1/rollback to the applied \
            version; the target stays at it until a newer tag is accepted). Refused when nothing drifted, \
            or when a newer release is already waiting (approving it corrects the drift too). --json \
            prints POST /api/v1/rollback's answer for each target.
            """)
    )

    @Argument(help: ArgumentHelp("The environment.", valueName: "ENV"), completion: .custom(ClientCompletion.environments))
    var environment: String

    @Option(help: ArgumentHelp("Only this project (default: every drifted project of the environment).", valueName: "PROJECT"),
            completion: .none)
    var project: String?

    @OptionGroup(title: "Connection and output") var client: ClientOptions

    public init() {}

    public func run() async throws {
        var wanted: (EnvironmentName, ProjectName?)?
        try await ClientCommandRunner.run(client, validate: { () throws(ClientError) in
            let environment = try ClientCommandRunner.parse("ENV", environment) { raw throws(CoreError) in try EnvironmentName(raw) }
            let project = try project.map { value throws(ClientError) in
                try ClientCommandRunner.parse("--project", value) { raw throws(CoreError) in try ProjectName(raw) }
            }
            wanted = (environment, project)
        }) { api throws(ClientError) in
            guard let (environment, project) = wanted else { throw ClientError(.usage, "ENV is missing") }
            let board = try api.decode(APIEnvironmentList.self, from: try await api.get("environments"))
            guard let env = board.environments.first(where: { $0.name == environment }) else {
                throw ClientError(.api, "the daemon knows no environment \(environment)", status: 404, apiCode: "environment_unknown")
            }
            let drifted = env.targets.filter { ($0.drift?.outcome == "drift") && (project == nil || $0.project == project) }
            guard !drifted.isEmpty else {
                throw ClientError(.api, "no target of \(environment)\(project.map { " (project \($0))" } ?? "") has drift "
                                  + "in its last check; nothing to fix", status: 409, apiCode: "no_drift")
            }
            var bodies: [Data] = []
            var lines: [String] = []
            for target in drifted {
                guard let applied = target.applied else { continue }
                if let desired = target.desired, desired.version != applied.version {
                    throw ClientError(.api, "\(target.target): \(desired.version) is waiting to replace the applied "
                                      + "\(applied.version); approving it corrects the drift too", status: 409,
                                      apiCode: "newer_release_waiting")
                }
                let reply = try await api.post("rollback", body: APIRollbackBody(environment: environment, project: target.project,
                                                                                 version: applied.version))
                let result = try api.decode(APIRollbackResult.self, from: reply)
                bodies.append(reply.body)
                lines.append(ClientRendering.afterRollback(result))
            }
            let json = "[" + bodies.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",") + "]"
            return .init(json: Data(json.utf8), human: lines.joined(separator: "\n"))
        }
    }
}
