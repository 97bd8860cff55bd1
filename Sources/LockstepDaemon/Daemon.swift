import Foundation
import GitSource
import Hummingbird
import LockstepConfig
import LockstepCore
import LockstepGate
import LockstepHTTP
import LockstepOutbox
import Logging
import RunStore
import ServiceLifecycle
import Synchronization
import TerraformRunner
import UnixSignals
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One secret from a file, read once at start: a file that cannot be read or holds no secret
/// stops the start with the file named (a receiver with no secret would refuse every delivery,
/// a sender with none would be refused, without anyone noticing). A final line break is not
/// part of the secret.
func secretFile(_ file: String, _ what: String, bytes range: ClosedRange<Int> = 16...4_096) throws -> [UInt8] {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: file))
    } catch {
        throw DaemonError(.config, "the \(what) file \(file) cannot be read: \(error.localizedDescription)")
    }
    var bytes = Array(data)
    while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
    guard range.contains(bytes.count), !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
        throw DaemonError(.config, "the \(what) file \(file) must hold one line of \(range.lowerBound) to \(range.upperBound) bytes")
    }
    return bytes
}

/// Each forge's webhook secrets (several per forge, for a rotation).
func webhookSecrets(_ settings: WebhookSettings) throws -> [WebhookForge: [[UInt8]]] {
    var secrets: [WebhookForge: [[UInt8]]] = [:]
    for (forge, files) in settings.secretFiles {
        for file in files {
            secrets[forge, default: []].append(try secretFile(file, "\(forge.rawValue) webhook secret"))
        }
    }
    return secrets
}

/// The outbox's sinks (docs/ARCHITECTURE.md, "The outbox"): the forge, then every environment's
/// notifications, with their token, URLs and keys read now.
func outboxSinks(_ agent: AgentConfig, store: any RunStore, http: OutboundHTTP, logger: Logger) throws -> [any OutboxSink] {
    var sinks: [any OutboxSink] = []
    if let forge = agent.forge {
        let token = String(decoding: try secretFile(forge.tokenFile, "\(forge.kind.rawValue) token", bytes: 8...4_096), as: UTF8.self)
        sinks.append(ForgeSink(settings: forge, token: token, store: store, agent: agent, http: http, logger: logger))
    }
    for name in agent.environments.keys.sorted() {
        for (index, notification) in (agent.environments[name]?.notifications ?? []).enumerated() {
            let what = "environments.\(name.rawValue).notifications[\(index)]"
            let url: String
            switch notification.destination {
            case .url(let text): url = text
            case .urlFile(let file):
                let text = String(decoding: try secretFile(file, "\(what) URL", bytes: 10...2_048), as: UTF8.self)
                guard let checked = outboundURL(text, allowQuery: true) else {
                    throw DaemonError(.config, "the \(what) URL file \(file) must hold an http or https URL without user or fragment")
                }
                url = checked
            }
            let secret = try notification.secretFile.map { try secretFile($0, "\(what) secret") }
            sinks.append(NotificationSink(environment: name, settings: notification, url: url, secret: secret, store: store,
                                          agent: agent, http: http))
        }
    }
    return sinks
}

/// The outbox as a service of the daemon: delivers until the daemon stops (an event being sent
/// then is sent again after the restart).
final class OutboxService: Service, Sendable {
    let worker: OutboxWorker
    let http: OutboundHTTP

    init(worker: OutboxWorker, http: OutboundHTTP) {
        self.worker = worker
        self.http = http
    }

    func run() async throws {
        if worker.isIdle {
            // Nothing to deliver to: still a service until the daemon stops, since a service that
            // returns early makes the group stop the daemon.
            try? await gracefulShutdown()
        } else {
            await cancelWhenGracefulShutdown { await self.worker.run() }
        }
        await http.shutdown()
    }
}

/// `lockstep serve`: everything the daemon holds for its lifetime, and the order it starts in.
///
/// 1. The agent config is read and checked (every problem printed, exit non-zero).
/// 2. The store lock is taken (a second daemon on the same store refuses to start).
/// 3. The store is opened and ``Gate/recover()`` settles what a crash left: a run found
///    `planning` is re-queued, one found `applying` becomes `interrupted` and is never
///    applied again without an operator.
/// 4. The API listens and the poll loop runs its first pass; `READY=1` follows both.
///
/// A service that fails (the API cannot listen, above all) stops the whole daemon: the
/// group drains gracefully and `serve` throws the failure, so the process exits non-zero
/// with one line saying why instead of living on half-started.
public enum Daemon {
    /// Environments that require signed tags need their signer files and the programs that
    /// check them (docs/CONTRACT.md §3): a daemon that could verify nothing would reject every
    /// release, so it says which file or program is missing at start instead.
    static func checkSigners(_ agent: AgentConfig, programs: TagSignatureVerifier.Programs = .init()) throws {
        for policy in agent.environments.values.sorted(by: { $0.name < $1.name }) where policy.requireSignedTags {
            do {
                _ = try SignerTrust.load(policy)
            } catch {
                throw DaemonError(.config, "\(error.description); \(policy.name) requires signed tags")
            }
            if policy.allowedSignersFile != nil, !FileManager.default.isExecutableFile(atPath: programs.sshKeygen) {
                throw DaemonError(.config, "\(policy.name) checks SSH tag signatures with \(programs.sshKeygen), which is not installed (Debian: openssh-client)")
            }
            if policy.openPGPKeyringFile != nil, !FileManager.default.isExecutableFile(atPath: programs.gpg) {
                throw DaemonError(.config, "\(policy.name) checks OpenPGP tag signatures with \(programs.gpg), which is not installed (Debian: gnupg)")
            }
        }
    }

    /// Runs until SIGTERM or SIGINT, then drains (see ``DaemonService``).
    public static func serve(configPath: String, environment: [String: String], logger: Logger) async throws {
        ResidentMemory.limitArenas()
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
        // Before anything measures: swift-metrics drops what is recorded before its bootstrap.
        let registry = DaemonMetrics.registry
        let descriptors = DescriptorLimit.raise(logger: logger)
        try makeFolder(storeFolder)
        let lock = try StoreLock(storePath: storePath)
        let store: SQLiteRunStore
        do {
            // A run's log holds several commands' kept output (`limits.command_output_bytes` each).
            store = try SQLiteRunStore(path: storePath, maxLogBytesPerRun: max(1 << 20, 4 * agent.limits.commandOutputBytes))
        } catch {
            throw DaemonError(.store, "the store \(storePath) cannot be opened: \(error)")
        }
        let tokens: APITokenTable
        do {
            tokens = try APITokenTable(credentials(agent))
        } catch {
            throw DaemonError(.tokens, "the API tokens of the agent config cannot be used: \(error)")
        }

        try checkSigners(agent)

        let notifier = SystemdNotifier(environment: environment)
        let status = DaemonStatus(notifier: notifier, logger: logger)
        let runs = storeFolder.appendingPathComponent("runs", isDirectory: true)
        let tools = storeFolder.appendingPathComponent("tools", isDirectory: true)
        try makeFolder(runs)
        try makeFolder(tools)
        let mirror = GitMirror(remote: remote(agent), path: agent.mirrorDir, logger: logger)
        // One provider cache per environment (the gate points each command at its own): what a
        // dev init cached is never run by a prod plan or apply. Made before confinement grants them.
        for name in agent.environments.keys.sorted() {
            if let cache = agent.pluginCacheDirectory(environment: name) { try makeFolder(URL(fileURLWithPath: cache, isDirectory: true)) }
        }
        let confinement = try await confinement(agent, configPath: configPath, storeFolder: storeFolder,
                                                environment: environment, logger: logger)
        let terraform = TerraformRunner.Configuration(
            executable: URL(fileURLWithPath: agent.terraform.binary), toolsDirectory: tools,
            providerInstallation: agent.terraform.providerMirrorDir.map { .filesystemMirror(URL(fileURLWithPath: $0)) } ?? .direct,
            pluginCache: agent.terraform.pluginCacheDir.map { URL(fileURLWithPath: $0, isDirectory: true) },
            confinement: confinement)
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
        let disk = DiskWatch(folders: [("store", storeFolder), ("runs", runs)], store: store, status: status,
                             notifier: notifier, logger: logger)
        await disk.checkStore()
        let http = HTTPSettings.limits(agent.http, descriptorLimit: descriptors)
        let refusals = RefusalAudit(policy: http.refusals, store: store, logger: logger)
        let webhooks = try agent.webhooks.map { settings in
            WebhookReceiver(secrets: try webhookSecrets(settings), maximumBodyBytes: settings.maxBodyBytes,
                            trigger: { service.requestPass() })
        }
        if let settings = agent.webhooks {
            logger.info("webhooks", metadata: ["webhooks.forges": "\(settings.secretFiles.keys.sorted().map(\.rawValue).joined(separator: ","))",
                                               "poll_interval_s": "\(agent.pollInterval.components.seconds)"])
        }
        let outboxHTTP = OutboundHTTP()
        let sinks = try outboxSinks(agent, store: store, http: outboxHTTP, logger: logger)
        if !sinks.isEmpty {
            logger.info("outbox", metadata: ["outbox.sinks": "\(sinks.map(\.name).joined(separator: ","))"])
        }
        let outbox = OutboxService(worker: OutboxWorker(store: store, sinks: sinks, logger: logger), http: outboxHTTP)
        let metrics: @Sendable () async -> [UInt8] = { await DaemonMetrics.render(store: store, agent: agent) }
        let api = APIServer(
            backend: backend, tokens: tokens, readiness: { disk.readiness() },
            onRefusal: { refusal in await refusals.record(refusal) }, limiter: refusals.limiter, webhooks: webhooks,
            metrics: agent.metricsListen == nil ? metrics : nil,
            secureCookies: agent.publicURL?.lowercased().hasPrefix("https://") ?? false, logger: logger)
        _ = registry
        let address = agent.listen
        let connections = ConnectionGuard(limits: http.connections, logger: logger)
        logger.info("API limits", metadata: [
            "http.connections.max": "\(http.connections.maximumConnections)",
            "http.connections.reserved_for_health": "\(http.connections.reservedForHealthChecks)",
            "http.header_timeout_s": "\(http.connections.headerTimeout.components.seconds)",
            "http.idle_timeout_s": "\(http.connections.idleTimeout.components.seconds)",
            "http.failed_auth_per_source": "\(http.refusals.perSourceLimit)/\(http.refusals.window.components.seconds)s"])
        let application = api.makeApplication(address: .hostname(address.host, port: address.port),
                                              serverName: "lockstep", connections: connections) { port in
            logger.info("API listening", metadata: ["listen": "\(address.host):\(port ?? address.port)"])
            status.listening()
        }
        let listener = APIListener(application: application, address: "\(address.host):\(address.port)")
        var metricsServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metricsAddress = agent.metricsListen {
            let router = Router()
            router.get("metrics") { _, _ in APIServer.metricsResponse(await metrics()) }
            let application = Application(router: router, configuration: .init(address: .hostname(metricsAddress.host, port: metricsAddress.port),
                                                                                serverName: "lockstep"),
                                          onServerRunning: { channel in
                                              logger.info("metrics listening", metadata: ["listen": "\(metricsAddress.host):\(channel.localAddress?.port ?? metricsAddress.port)"])
                                          }, logger: logger)
            metricsServices.append(.init(service: APIListener(application: application, address: "\(metricsAddress.host):\(metricsAddress.port)",
                                                              key: "metrics_listen"),
                                         failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        // Shut down in reverse order: the disk watch stops, the daemon drains while the API
        // still answers (mutations with `shutting_down`), then the API stops, then the
        // refusals counted last are written. Any service that fails shuts the group down the
        // same graceful way (a running apply still finishes) and its error ends `serve`.
        let onFailure = ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior.gracefullyShutdownGroup
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: refusals, failureTerminationBehavior: onFailure),
                       .init(service: listener, failureTerminationBehavior: onFailure),
                       .init(service: service, failureTerminationBehavior: onFailure),
                       .init(service: disk, failureTerminationBehavior: onFailure),
                       .init(service: outbox, failureTerminationBehavior: onFailure)] + metricsServices,
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer {
            withExtendedLifetime(lock) {}
            try? store.close()
        }
        try await group.run()
    }

    /// What terraform and verify commands are kept from (see ``Confinement`` and
    /// `AgentConfig.confinementHiddenPaths`), plus systemd's credentials folder. Checked
    /// before anything runs: with `confine: true` (the default) a kernel without Landlock,
    /// or a grant that would expose a hidden path, stops the daemon here rather than let
    /// plan-time code read apply credentials.
    static func confinement(_ agent: AgentConfig, configPath: String, storeFolder: URL, environment: [String: String],
                            logger: Logger) async throws -> Confinement? {
        guard agent.terraform.confine else {
            // Without the file-system sandbox every command still runs in a PID namespace of
            // its own, so nothing it starts outlives it; no namespace, no start.
            let processesOnly = Confinement.processesOnly(launcher: Confinement.launcherBesideExecutable())
            let answer: String
            do {
                answer = try await processesOnly.check()
            } catch {
                throw DaemonError(.config, "\(error); even with terraform.confine: false every terraform and verify command runs in a PID namespace of its own so that nothing it starts outlives it: allow user and PID namespaces for this service (systemd: RestrictNamespaces=user pid)")
            }
            logger.warning("terraform runs without the file-system sandbox (terraform.confine: false): plan-time code from the delivery repository can read every file this daemon can, apply credentials and every environment's state included (environments are not hidden from each other); every process a command starts is still killed when the command ends",
                           metadata: ["confinement": "\(answer)"])
            return processesOnly
        }
        let problems = agent.confinementProblems(configPath: configPath, onThisMachine: true)
        guard problems.isEmpty else {
            throw DaemonError(.config, "the agent config's confinement is unsafe or unusable:\n"
                              + problems.map { "  \($0.description)" }.joined(separator: "\n"))
        }
        var hidden = agent.confinementHiddenPaths(configPath: configPath)
        if let systemd = environment["CREDENTIALS_DIRECTORY"], systemd.hasPrefix("/") { hidden.append(systemd) }
        let confinement = Confinement(
            launcher: Confinement.launcherBesideExecutable(),
            hiddenPaths: hidden.map { URL(fileURLWithPath: $0) },
            readablePaths: agent.terraform.providerMirrorDir.map { [URL(fileURLWithPath: $0)] } ?? [])
        do {
            let answer = try await confinement.check()
            logger.info("terraform runs confined", metadata: ["confinement": "\(answer)"])
        } catch {
            throw DaemonError(.config, "\(error); when Landlock is what is missing, terraform.confine: false in the agent config turns off the file-system sandbox (plan-time code could then read apply credentials and every environment's state); user and PID namespaces are needed either way (systemd: RestrictNamespaces=user pid)")
        }
        return confinement
    }

    static func credentials(_ agent: AgentConfig) throws -> [APICredential] {
        try agent.identities.values.sorted { $0.name < $1.name }.map { identity in
            APICredential(identity: identity.name, tokenSHA256: try Digest(identity.tokenSHA256))
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

/// Watches the free space of the folders the daemon writes (the store's and the runs').
///
/// Why: a full disk fails every plan (the run directory, the export, terraform's files)
/// and, on the store's disk, every transition; without a word this looks like a broken
/// repository or a broken terraform to whoever reads the failed runs. So the daemon says
/// it: an error in the log when space runs out (and a notice when it is back), the reason
/// first in `STATUS=`, and `/readyz` answers 503 with it while it lasts, so a load
/// balancer or a monitor sees the agent cannot take work. The daemon itself keeps running:
/// freeing space is enough, no restart is needed.
///
/// The store is watched the same way: at start and every ``storeCheckInterval`` it must
/// pass `PRAGMA quick_check` and take a write (``SQLiteRunStore/healthProblem()``); while it
/// does not, the reason leads `STATUS=` and `/readyz` is 503 with it.
final class DiskWatch: Service, Sendable {
    /// Below this, a plan is likely to fail half-way: an exported tree, terraform's
    /// `.terraform` folder and a plan file take a few MiB each.
    static let minimumFreeBytes: UInt64 = 16 << 20

    /// How often the store's health is checked after the check at start.
    static let storeCheckInterval: Duration = .seconds(30)

    private let folders: [(role: String, url: URL)]
    private let store: SQLiteRunStore
    /// The store's problem found by the last check, if any.
    private let storeProblem = Mutex<String?>(nil)
    private let status: DaemonStatus
    private let notifier: SystemdNotifier
    private let logger: Logger
    /// The last problem logged and the last status line sent, to say each change once.
    private let last = Mutex<(problem: String?, sent: String?)>((nil, nil))

    init(folders: [(String, URL)], store: SQLiteRunStore, status: DaemonStatus, notifier: SystemdNotifier,
         logger: Logger) {
        self.folders = folders.map { (role: $0.0, url: $0.1) }
        self.store = store
        self.status = status
        self.notifier = notifier
        self.logger = logger
    }

    /// The problem now, if any: which folder (by role, not path: `/readyz` answers anyone)
    /// has less than ``minimumFreeBytes`` free. A folder whose file system cannot be read
    /// counts as a problem too.
    func problem() -> String? {
        var problems: [String] = []
        for folder in folders {
            var info = statvfs()
            guard statvfs(folder.url.path, &info) == 0 else {
                problems.append("the \(folder.role) folder's disk cannot be read (\(String(cString: strerror(errno))))")
                continue
            }
            let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
            if free < Self.minimumFreeBytes {
                problems.append("the \(folder.role) folder has \(free >> 20) MiB free (at least \(Self.minimumFreeBytes >> 20) MiB needed)")
            }
        }
        let disk = problems.isEmpty ? nil : "DISK FULL: " + problems.joined(separator: ", ") + "; runs cannot be planned or stored"
        let store = storeProblem.withLock { $0 }
        let both = [store, disk].compactMap { $0 }
        return both.isEmpty ? nil : both.joined(separator: "; ")
    }

    /// Checks the store now; the outcome is part of ``problem()`` until the next check.
    func checkStore() async {
        let found = await store.healthProblem()
        let changed = storeProblem.withLock { old in
            defer { old = found }
            return old != found
        }
        guard changed else { return }
        if let found {
            logger.critical("the store is not usable: the daemon is not ready", metadata: ["problem": "\(found)"])
        } else {
            logger.notice("the store passes its checks again")
        }
    }

    /// `/readyz`: the daemon's own readiness, not ready while the disk is full.
    func readiness() -> APIReadiness {
        let own = status.readiness()
        guard let problem = problem() else { return own }
        return APIReadiness(ready: false, status: problem + "; " + own.status)
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            let clock = ContinuousClock()
            var lastStoreCheck = clock.now
            while !Task.isCancelled {
                if clock.now - lastStoreCheck >= Self.storeCheckInterval {
                    lastStoreCheck = clock.now
                    await self.checkStore()
                }
                self.check()
                do {
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    return
                }
            }
        }
    }

    /// Logs a change of the disk problem and keeps `STATUS=` leading with it while it lasts
    /// (the poll loop writes its own line; this puts the disk first again within a second).
    func check() {
        guard !status.isDraining else { return }
        let problem = problem()
        let line = status.readiness().status
        let wanted = problem.map { $0 + "; " + line }
        let (logChange, send): (String??, String?) = last.withLock { last in
            let logChange: String?? = last.problem == problem ? .none : .some(problem)
            last.problem = problem
            var send: String?
            if let wanted, wanted != last.sent {
                send = wanted
            } else if wanted == nil, last.sent != nil {
                send = line
            }
            last.sent = wanted
            return (logChange, send)
        }
        if let logChange {
            if let problem = logChange {
                logger.error("disk full or store unusable: the daemon keeps running; it is not ready until this is fixed",
                             metadata: ["problem": "\(problem)",
                                        "folders": "\(folders.map(\.url.path).joined(separator: ", "))"])
            } else {
                logger.notice("disk space is back; the store passes its checks")
            }
        }
        if let send {
            do {
                _ = try notifier.status(send)
            } catch {
                logger.warning("systemd notification failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
