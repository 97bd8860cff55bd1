import Crypto
import Foundation
import LockstepConfig
import LockstepCore
import LockstepGate
import NIOHTTP1
import Logging
import RunStore
import TerraformRunner

/// One destination of the outbox with its own place in the event list (``OutboxStore``).
public protocol OutboxSink: Sendable {
    /// Stable across restarts: the key of the sink's position in the store.
    var name: String { get }
    /// Delivers one event, or does nothing when the event is not for this sink: whether
    /// anything was sent. Throws a ``SendFailure`` saying whether to try again.
    func deliver(_ event: OutboxEvent) async throws(SendFailure) -> Bool
}

/// Reads what a sink needs from the store and the agent config, for every sink alike.
struct ReportSource: Sendable {
    let store: any RunStore
    let agent: AgentConfig

    /// The report of `event`'s run; nil when the event names no run.
    func report(_ event: OutboxEvent) async throws(SendFailure) -> RunReport? {
        guard let runID = event.runID else { return nil }
        let run: StoredRun?
        do {
            run = try await store.run(runID)
        } catch {
            throw .transient(after: nil, reason: "the store could not be read: \(error)")
        }
        guard let run else { throw .permanent(reason: "run \(runID) is not in the store") }
        return RunReport(run: run, event: event, policy: agent.environments[event.target.environment],
                         publicURL: agent.publicURL)
    }

    /// The environment's credential values, read now and dropped after: text leaving the process
    /// is redacted of them once more, whatever the store holds. A file that cannot be read stops
    /// the delivery (tried again later) rather than send text that was not checked.
    func redactor(for environment: EnvironmentName, extra: [String]) throws(SendFailure) -> Redactor {
        var secrets = extra
        if let policy = agent.environments[environment] {
            for file in [policy.planCredentialsFile, policy.applyCredentialsFile].compactMap(\.self) {
                do {
                    secrets += try CredentialValues.read(file)
                } catch {
                    throw .transient(after: nil, reason: "the credentials file of \(environment) cannot be read to redact the text")
                }
            }
        }
        return Redactor(secrets: secrets)
    }
}

/// Comments and commit statuses on the forge (``ForgeSettings``): one comment per run, edited in
/// place; one commit status per target on the tagged commit.
public struct ForgeSink: OutboxSink {
    public let name: String
    let api: ForgeAPI
    let source: ReportSource
    let http: OutboundHTTP
    let logger: Logger

    public init(settings: ForgeSettings, token: String, store: any RunStore, agent: AgentConfig, http: OutboundHTTP,
                logger: Logger) {
        self.name = "forge/\(settings.kind.rawValue)/\(settings.repository)"
        self.api = ForgeAPI(settings: settings, token: token)
        self.source = ReportSource(store: store, agent: agent)
        self.http = http
        self.logger = logger
    }

    /// States a comment is written or edited for: the plan is ready, or the run moved on from it
    /// or ended. Planning is shown by the commit status alone.
    static let commentStates: Set<RunState> = [.awaitingApproval, .approved, .applying, .applied, .verified, .noChanges,
                                               .failed, .interrupted, .rejected, .superseded, .expired]

    public func deliver(_ event: OutboxEvent) async throws(SendFailure) -> Bool {
        guard event.kind != .tagRejected, event.kind != .drift, let report = try await source.report(event) else { return false }
        // `checking` and `applied → verifying` add nothing a reader needs: the next event says more.
        if event.kind == .transition, [.checking, .verifying, .queued].contains(report.state) { return false }
        let redactor = try source.redactor(for: event.target.environment, extra: [api.token])
        let commit = report.run.summary.run.commit.rawValue
        try await postStatus(report, commit: commit, redactor: redactor)
        if Self.commentStates.contains(report.state) {
            try await postComment(report, commit: commit, redactor: redactor)
        }
        return true
    }

    private func postStatus(_ report: RunReport, commit: String, redactor: Redactor) async throws(SendFailure) {
        let target = report.run.target
        let context = "\(api.settings.statusContext)/\(target.project.rawValue)/\(target.environment.rawValue)"
        let body = api.statusBody(outcome: report.statusOutcome, description: redactor.redact(report.statusDescription),
                                  context: context, targetURL: report.runURL)
        let answer = try await http.send(.POST, api.statusURL(commit: commit), headers: api.headers, body: body)
        guard !(200..<300).contains(answer.status) else { return }
        if api.settings.kind == .gitlab, answer.status == 400 {
            // GitLab refuses a status equal to the one it has ("Cannot transition status"): nothing to do.
            return
        }
        // A refused status does not stop the comment; it is said once, here.
        logger.error("the forge refused a commit status", metadata: [
            "forge": "\(api.settings.kind.rawValue)", "http.status": "\(answer.status)", "run.id": "\(report.run.id)"])
    }

    private func postComment(_ report: RunReport, commit: String, redactor: Redactor) async throws(SendFailure) {
        let runID = report.run.id
        var thread = try await storedThread(runID)
        if thread == nil {
            let answer = try await http.send(.GET, api.pullLookup(commit: commit), headers: api.headers, body: nil)
            let found = ForgeThread(pull: try api.pull(from: answer, commit: commit), comment: nil)
            try await remember(found, runID)
            thread = found
        }
        guard let thread, let pull = thread.pull else {
            logger.info("no pull request found for the run's commit: only its commit status is set",
                        metadata: ["run.id": "\(runID)", "commit": "\(commit)"])
            return
        }
        let body = Self.commentBody(redactor.redact(report.comment()))
        if let comment = thread.comment {
            let (method, url) = api.editComment(pull: pull, comment: comment)
            let answer = try await http.send(method, url, headers: api.headers, body: body)
            if (200..<300).contains(answer.status) { return }
            guard answer.status == 404 else {
                throw .permanent(reason: "the forge refused to edit the run's comment: HTTP \(answer.status)")
            }
            // Someone deleted it: a new one is written below.
        } else {
            let listing = try await http.send(.GET, api.listComments(pull: pull), headers: api.headers, body: nil)
            if (200..<300).contains(listing.status),
               let existing = try api.comment(in: listing, marker: RunReport.marker(runID)) {
                try await remember(ForgeThread(pull: pull, comment: existing), runID)
                let (method, url) = api.editComment(pull: pull, comment: existing)
                let answer = try await http.send(method, url, headers: api.headers, body: body)
                if (200..<300).contains(answer.status) { return }
                throw .permanent(reason: "the forge refused to edit the run's comment: HTTP \(answer.status)")
            }
        }
        let answer = try await http.send(.POST, api.commentsURL(pull: pull), headers: api.headers, body: body)
        guard (200..<300).contains(answer.status) else {
            throw .permanent(reason: "the forge refused the run's comment: HTTP \(answer.status)")
        }
        try await remember(ForgeThread(pull: pull, comment: try api.commentID(from: answer)), runID)
    }

    static func commentBody(_ text: String) -> Data {
        ForgeAPI.json(["body": text])
    }

    private func storedThread(_ runID: RunID) async throws(SendFailure) -> ForgeThread? {
        do {
            return try await source.store.forgeThread(sink: name, runID: runID)
        } catch {
            throw .transient(after: nil, reason: "the store could not be read: \(error)")
        }
    }

    private func remember(_ thread: ForgeThread, _ runID: RunID) async throws(SendFailure) {
        do {
            try await source.store.recordForgeThread(thread, sink: name, runID: runID, at: Date())
        } catch {
            throw .transient(after: nil, reason: "the store could not be written: \(error)")
        }
    }
}

/// An environment's notification (``NotificationSettings``): Lockstep's signed JSON, or a
/// Slack-compatible message.
public struct NotificationSink: OutboxSink {
    public let name: String
    let environment: EnvironmentName
    let settings: NotificationSettings
    let url: String
    let secret: [UInt8]?
    let source: ReportSource
    let http: OutboundHTTP

    public init(environment: EnvironmentName, settings: NotificationSettings, url: String, secret: [UInt8]?,
                store: any RunStore, agent: AgentConfig, http: OutboundHTTP) {
        // Named by what it sends where, never by the URL itself (it may be a credential).
        let key = SHA256.hash(data: Data("\(settings.format.rawValue) \(url)".utf8)).prefix(8)
            .map { String(format: "%02x", $0) }.joined()
        self.name = "notification/\(environment.rawValue)/\(key)"
        self.environment = environment
        self.settings = settings
        self.url = url
        self.secret = secret
        self.source = ReportSource(store: store, agent: agent)
        self.http = http
    }

    /// The notification an event is, if any.
    static func notificationEvent(_ event: OutboxEvent) -> NotificationEvent? {
        switch event.kind {
        case .approval: return .approvalRecorded
        case .tagRejected: return .tagRejected
        case .drift: return .drift
        case .transition:
            switch event.facts.to {
            case .awaitingApproval: return .awaitingApproval
            case .applying where event.facts.reason == TransitionReason.Code.breakGlass.rawValue: return .breakGlassApply
            case .applied: return .applied
            case .verified: return .verified
            case .failed: return .failed
            case .interrupted: return .interrupted
            default: return nil
            }
        }
    }

    public func deliver(_ event: OutboxEvent) async throws(SendFailure) -> Bool {
        guard event.target.environment == environment, let kind = Self.notificationEvent(event),
              settings.events.contains(kind) else { return false }
        let report = try await source.report(event)
        let redactor = try source.redactor(for: environment, extra: [url] + (secret.map { [String(decoding: $0, as: UTF8.self)] } ?? []))
        let delivery = "\(name.split(separator: "/").last ?? "")-\(event.id)"
        var headers = [("User-Agent", "lockstep"), ("Content-Type", "application/json")]
        let body: Data
        switch settings.format {
        case .json:
            body = NotificationBody.json(event, kind, report, redactor: redactor, delivery: delivery,
                                         auditHead: try? await source.store.auditHead())
            headers += [("X-Lockstep-Event", kind.rawValue), ("X-Lockstep-Delivery", delivery)]
            if let secret {
                let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
                headers.append(("X-Lockstep-Signature-256", "sha256=" + mac.map { String(format: "%02x", $0) }.joined()))
            }
        case .slack:
            body = NotificationBody.slack(event, kind, report, redactor: redactor)
        }
        let answer = try await http.send(.POST, url, headers: headers, body: body)
        guard (200..<300).contains(answer.status) else {
            throw .permanent(reason: "the notification endpoint refused it: HTTP \(answer.status)")
        }
        return true
    }
}
