import Foundation
import GitSource
import Hummingbird
import LockstepConfig
import LockstepCore
import LockstepGate
import LockstepHTTP
import Logging
import RunStore
import ServiceLifecycle
import UnixSignals
import TerraformRunner

/// `lockstep serve`: everything the daemon holds for its lifetime, and the order it starts in.
///
/// 1. The agent config is read and checked (every problem printed, exit non-zero).
/// 2. The store lock is taken (a second daemon on the same store refuses to start).
/// 3. The store is opened and ``Gate/recover()`` settles what a crash left: a run found
///    `planning` is re-queued, one found `applying` becomes `interrupted` and is never
///    applied again without an operator.
/// 4. The API listens and the poll loop runs its first pass; `READY=1` follows both.
public enum Daemon {
    /// Runs until SIGTERM or SIGINT, then drains (see ``DaemonService``).
    public static func serve(configPath: String, environment: [String: String], logger: Logger) async throws {
        let agent: AgentConfig
        do {
            agent = try AgentConfig.load(path: configPath)
        } catch {
            throw DaemonError(.config, "the agent config is invalid:\n" + error.errors.map { "  \($0.description)" }.joined(separator: "\n"))
        }
        guard case .sqlite(let storePath) = agent.store else {
            throw DaemonError(.config, "only a SQLite store is supported")
        }
        let storeFolder = URL(fileURLWithPath: storePath).deletingLastPathComponent()
        try makeFolder(storeFolder)
        let lock = try StoreLock(storePath: storePath)
        let store: SQLiteRunStore
        do {
            store = try SQLiteRunStore(path: storePath)
        } catch {
            throw DaemonError(.store, "the store \(storePath) cannot be opened: \(error)")
        }
        let tokens: APITokenTable
        do {
            tokens = try APITokenTable(credentials(agent))
        } catch {
            throw DaemonError(.tokens, "the API tokens of the agent config cannot be used: \(error)")
        }

        let notifier = SystemdNotifier(environment: environment)
        let status = DaemonStatus(notifier: notifier, logger: logger)
        let runs = storeFolder.appendingPathComponent("runs", isDirectory: true)
        let tools = storeFolder.appendingPathComponent("tools", isDirectory: true)
        try makeFolder(runs)
        try makeFolder(tools)
        let mirror = GitMirror(remote: remote(agent), path: agent.mirrorDir, logger: logger)
        let terraform = TerraformRunner.Configuration(
            executable: URL(fileURLWithPath: agent.terraform.binary), toolsDirectory: tools,
            providerInstallation: agent.terraform.providerMirrorDir.map { .filesystemMirror(URL(fileURLWithPath: $0)) } ?? .direct)
        let gate = Gate(agent: agent, store: store, mirror: mirror, terraform: terraform, runsDirectory: runs, logger: logger)

        let recovered = try await gate.recover()
        for (id, state) in recovered where state == .interrupted {
            logger.critical("run was applying when the daemon stopped; it is interrupted and needs an operator",
                            metadata: ["run.id": "\(id)"])
        }
        logger.info("store open", metadata: ["store": "\(storePath)", "runs.open": "\(recovered.count)"])

        let service = DaemonService(gate: gate, store: store, pollInterval: agent.pollInterval, status: status,
                                    logger: logger)
        let backend = GateBackend(gate: gate, store: store, service: service)
        let api = APIServer(
            backend: backend, tokens: tokens, readiness: { status.readiness() },
            onRefusal: { refusal in
                var payload = ["event": "api_access", "status": "\(refusal.status)", "code": refusal.code.rawValue,
                               "method": refusal.method, "path": refusal.path]
                if let identity = refusal.identity { payload["identity"] = identity.rawValue }
                do {
                    try await store.appendAudit(kind: .refusal, target: nil, runID: nil, payload: payload, at: Date(),
                                                actor: refusal.identity?.rawValue ?? "anonymous")
                } catch {
                    logger.error("could not audit a refused request", metadata: ["error": "\(error)"])
                }
            },
            logger: logger)
        let address = agent.listen
        let application = api.makeApplication(address: .hostname(address.host, port: address.port),
                                              serverName: "lockstep") { port in
            logger.info("API listening", metadata: ["listen": "\(address.host):\(port ?? address.port)"])
            status.listening()
        }
        // Shut down in reverse order: the daemon drains first while the API still answers
        // (mutations with `shutting_down`), then the API stops.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: application), .init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        withExtendedLifetime(lock) {}
        try? store.close()
    }

    static func credentials(_ agent: AgentConfig) throws -> [APICredential] {
        try agent.identities.values.sorted { $0.name < $1.name }.map { identity in
            APICredential(identity: try IdentityName(identity.name), tokenSHA256: try Digest(identity.tokenSHA256))
        }
    }

    static func remote(_ agent: AgentConfig) -> Remote {
        switch agent.repository.credentials {
        case .none:
            return Remote(url: agent.repository.url)
        case .https(let username, let tokenFile):
            return Remote(url: agent.repository.url, credentials: .httpToken(username: username, tokenFile: tokenFile))
        case .ssh(let keyFile, let knownHosts):
            return Remote(url: agent.repository.url,
                          credentials: .sshKey(username: nil, privateKeyFile: keyFile, publicKeyFile: nil, passphraseFile: nil),
                          knownHostsFile: knownHosts)
        }
    }

    static func makeFolder(_ url: URL) throws(DaemonError) {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw DaemonError(.fileSystem, "cannot create \(url.path)")
        }
    }
}
