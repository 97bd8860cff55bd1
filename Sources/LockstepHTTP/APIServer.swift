public import Hummingbird
import HummingbirdCore
import HTTPTypes
import NIOCore
public import LockstepCore
public import Logging

/// The request context of the API: who the bearer token said the caller is.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by the authentication middleware on `/api/v1`; nil on `/healthz` and `/readyz`.
    public internal(set) var identity: IdentityName?
    /// The peer, for refusal reports (nil when not on a socket, as in router tests).
    public let remoteAddress: String?
    /// The peer's IP address alone: what failed authentications are counted by.
    public let remoteHost: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.identity = nil
        self.remoteAddress = source.channel.remoteAddress?.description
        self.remoteHost = source.channel.remoteAddress?.ipAddress
    }
}

/// Limits of the API; the defaults suit a deployment agent.
public struct APILimits: Sendable, Hashable {
    /// Largest request body read; a larger one is refused with 413 before it is parsed,
    /// so a client cannot make the daemon buffer or parse megabytes.
    public var maximumBodyBytes: Int
    /// Longest reject/resolve reason kept (it goes to the audit log).
    public var maximumReasonBytes: Int
    public var defaultRunLimit: Int
    public var maximumRunLimit: Int

    public init(maximumBodyBytes: Int = 64 * 1024, maximumReasonBytes: Int = 1024, defaultRunLimit: Int = 100,
                maximumRunLimit: Int = 1000) {
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumReasonBytes = maximumReasonBytes
        self.defaultRunLimit = defaultRunLimit
        self.maximumRunLimit = maximumRunLimit
    }
}

/// The HTTP face of the daemon: `/api/v1` (authenticated), `/healthz`, `/readyz` and `/metrics`.
///
/// Every response but `/metrics` is JSON; every error is `{"error":{"code","message"}}` with a stable
/// code. Every 401, 403 and 429 is reported to `onRefusal` before the response is sent, so
/// the daemon can account for it in the audit log (aggregated: see ``RefusalLedger``).
/// Failed authentication past ``FailedAuthenticationLimiter``'s limits is answered 429.
public struct APIServer: Sendable {
    let backend: any APIBackend
    let tokens: APITokenTable
    let limits: APILimits
    let readiness: @Sendable () async -> APIReadiness
    let onRefusal: @Sendable (APIAccessRefusal) async -> Void
    let limiter: FailedAuthenticationLimiter
    /// Webhook deliveries (`/webhooks/FORGE`); nil when none are configured.
    let webhooks: WebhookReceiver?
    /// The `/metrics` page; nil when it is served elsewhere or not at all.
    let metrics: (@Sendable () async -> [UInt8])?
    /// Signed-in browsers of the review UI.
    let sessions: UISessions
    /// Whether the UI's cookies are `Secure` (the agent's public URL is https).
    let secureCookies: Bool
    let logger: Logger

    /// - Parameters:
    ///   - tokens: the identities allowed in; replace its contents to revoke.
    ///   - readiness: asked on every `/readyz` (the daemon: store open and first fetch done).
    ///   - onRefusal: called for every 401, 403 and 429; it never receives a token.
    ///   - limiter: counts failed authentications and says when to answer 429.
    ///   - webhooks: checks webhook deliveries; nil answers every `/webhooks/…` with 404.
    ///   - metrics: the `/metrics` page in the Prometheus text format; nil answers 404 (the
    ///     daemon serves it on its own address when `metrics_listen` is set).
    public init(backend: any APIBackend, tokens: APITokenTable, limits: APILimits = APILimits(),
                readiness: @escaping @Sendable () async -> APIReadiness,
                onRefusal: @escaping @Sendable (APIAccessRefusal) async -> Void,
                limiter: FailedAuthenticationLimiter = FailedAuthenticationLimiter(), webhooks: WebhookReceiver? = nil,
                metrics: (@Sendable () async -> [UInt8])? = nil, sessions: UISessions = UISessions(), secureCookies: Bool = false,
                logger: Logger) {
        self.metrics = metrics
        self.sessions = sessions
        self.secureCookies = secureCookies
        self.backend = backend
        self.tokens = tokens
        self.limits = limits
        self.readiness = readiness
        self.onRefusal = onRefusal
        self.limiter = limiter
        self.webhooks = webhooks
        self.logger = logger
    }

    /// Every route ``buildRouter()`` registers. A path that exists with another method is
    /// answered from this table (405 with `Allow`); a test walks the table to keep the two in step.
    static let routes: [RouteSpec] = [
        RouteSpec(.get, "healthz"),
        RouteSpec(.get, "readyz"),
        RouteSpec(.get, "metrics"),
        RouteSpec(.get, "api/v1/environments"),
        RouteSpec(.get, "api/v1/environments/:env/tags"),
        RouteSpec(.get, "api/v1/targets"),
        RouteSpec(.get, "api/v1/runs"),
        RouteSpec(.get, "api/v1/runs/:id"),
        RouteSpec(.post, "api/v1/runs/:id/approve"),
        RouteSpec(.post, "api/v1/runs/:id/reject"),
        RouteSpec(.post, "api/v1/runs/:id/resolve"),
        RouteSpec(.post, "api/v1/rollback"),
    ] + WebhookForge.allCases.map { RouteSpec(.post, "webhooks/\($0.rawValue)") } + ReviewUI.routes

    public func buildRouter() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        // Added first: it wraps every route and the not-found responder.
        router.add(middleware: JSONErrorMiddleware(logger: logger))

        router.get("healthz") { _, _ in JSONResponse.make(["status": "ok"]) }
        router.get("readyz") { _, _ in
            let report = await readiness()
            return JSONResponse.make(report, status: report.ready ? .ok : .serviceUnavailable)
        }

        router.get("metrics") { _, _ in
            guard let metrics else { throw APIFailure.notFound("metrics are served on the address `metrics_listen` names") }
            return Self.metricsResponse(await metrics())
        }

        ReviewUI(backend: backend, tokens: tokens, sessions: sessions, secureCookies: secureCookies, limiter: limiter,
                 onRefusal: onRefusal, logger: logger).register(on: router)

        for forge in WebhookForge.allCases {
            router.post("webhooks/\(forge.rawValue)") { request, context in
                try await receiveWebhook(forge, request: request, context: context)
            }
        }

        let api = router.group("api/v1").add(middleware: BearerAuthentication(tokens: tokens, limiter: limiter, onRefusal: onRefusal))
        api.get("environments") { request, _ in
            try rejectQuery(request, allowing: [])
            return JSONResponse.make(APIEnvironmentList(environments: try await backend.environments(),
                                                        problems: try await backend.problems(),
                                                        validation: await backend.branchValidation()))
        }
        api.get("environments/:env/tags") { request, context in
            try rejectQuery(request, allowing: ["project"])
            let raw = context.parameters.get("env") ?? ""
            let environment = try field("environment") { () throws(CoreError) in try EnvironmentName(raw) }
            let projects = request.uri.queryParameters.getAll("project")
            guard projects.count <= 1 else { throw APIFailure.badRequest("query parameter \"project\" may be given once") }
            let project = try projects.first.map { value in
                try field("query parameter \"project\"") { () throws(CoreError) in try ProjectName(String(value)) }
            }
            guard let list = try await backend.tagDecisions(environment: environment, project: project) else {
                throw APIFailure.notFound(project.map { "this agent serves no project \($0) in environment \(environment)" }
                                          ?? "this agent does not know environment \(environment)")
            }
            return JSONResponse.make(list)
        }
        api.get("targets") { request, _ in
            try rejectQuery(request, allowing: [])
            let targets = try await backend.environments().flatMap(\.targets)
            return JSONResponse.make(APITargetList(targets: targets))
        }
        api.get("runs") { request, _ in
            let filter = try runFilter(request)
            return JSONResponse.make(APIRunList(runs: try await backend.runs(filter)))
        }
        api.get("runs/:id") { request, context in
            try rejectQuery(request, allowing: [])
            let id = try runID(context)
            guard let run = try await backend.run(id) else { throw APIFailure.notFound("there is no run \(id)") }
            return JSONResponse.make(run)
        }
        api.post("runs/:id/approve") { request, context in
            let identity = try authenticated(context)
            let id = try runID(context)
            let body = try BodyDecoder.decode(APIApproveBody.self, from: try await collect(request))
            let digest = try field("digest") { () throws(CoreError) in try Digest(body.digest) }
            let terms = try approvalTerms(body)
            return try await respond(to: request, context: context,
                                     with: backend.approve(id, identity: identity, digest: digest, terms: terms))
        }
        api.post("runs/:id/reject") { request, context in
            let identity = try authenticated(context)
            let id = try runID(context)
            let body = try BodyDecoder.decode(APIRejectBody.self, from: try await collect(request))
            let reason = try ReasonText.validate(body.reason, field: "reason", maximumBytes: limits.maximumReasonBytes)
            return try await respond(to: request, context: context, with: backend.reject(id, identity: identity, reason: reason))
        }
        api.post("runs/:id/resolve") { request, context in
            let identity = try authenticated(context)
            let id = try runID(context)
            let body = try BodyDecoder.decode(APIResolveBody.self, from: try await collect(request))
            guard let resolution = OperatorResolution(rawValue: body.as) else {
                throw APIFailure.badRequest("field \"as\" must be \"applied\" or \"failed\"")
            }
            let reason = try ReasonText.validate(body.reason, field: "reason", maximumBytes: limits.maximumReasonBytes)
            return try await respond(to: request, context: context,
                                     with: backend.resolve(id, as: resolution, reason: reason, identity: identity))
        }
        api.post("rollback") { request, context in
            let identity = try authenticated(context)
            try rejectQuery(request, allowing: [])
            let body = try BodyDecoder.decode(APIRollbackBody.self, from: try await collect(request))
            let environment = try field("environment") { () throws(CoreError) in try EnvironmentName(body.environment) }
            let project = try body.project.map { raw in
                try field("project") { () throws(CoreError) in try ProjectName(raw) }
            }
            let version = try field("version") { () throws(CoreError) in try SemanticVersion(body.version) }
            let rollback = APIRollbackRequest(environment: environment, project: project, version: version)
            return try await respond(to: request, context: context, with: backend.rollback(rollback, identity: identity),
                                     status: .created)
        }
        return router
    }

    /// An application serving the API on `address`, to run in the daemon's ServiceGroup.
    /// - Parameters:
    ///   - connections: the connection cap and timeouts (``HTTPConnectionLimits``).
    ///   - onListening: called once the socket is bound, with its port (nil for a unix
    ///     socket): the daemon sends `READY=1` after it, and tests that bind port 0 learn the port.
    public func makeApplication(address: BindAddress, serverName: String? = nil, connections: ConnectionGuard? = nil,
                                onListening: @escaping @Sendable (_ port: Int?) async -> Void = { _ in })
        -> some ApplicationProtocol {
        let connectionGuard = connections ?? ConnectionGuard(logger: logger)
        let server = HTTPServerBuilder { responder in
            GuardedHTTP1Channel(responder: responder, connectionGuard: connectionGuard)
        }
        return Application(router: buildRouter(), server: server,
                           configuration: ApplicationConfiguration(address: address, serverName: serverName),
                           onServerRunning: { channel in await onListening(channel.localAddress?.port) }, logger: logger)
    }

    // MARK: Helpers

    /// The Prometheus text exposition format, version 0.0.4.
    public static func metricsResponse(_ text: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
    }

    private func authenticated(_ context: APIRequestContext) throws(APIFailure) -> IdentityName {
        // The middleware always sets it on /api/v1; refuse rather than trust a missing one.
        guard let identity = context.identity else { throw .unauthorized("an Authorization: Bearer token is required") }
        return identity
    }

    private func runID(_ context: APIRequestContext) throws(APIFailure) -> RunID {
        let raw = context.parameters.get("id") ?? ""
        return try field("run id") { () throws(CoreError) in try RunID(raw) }
    }

    /// Validates one value, naming the field in the 400 it turns a failure into.
    /// The terms of an approval body: check names are short names, a reason is one line; an
    /// override or a break-glass approval without a reason is refused (and audited) by the gate.
    private func approvalTerms(_ body: APIApproveBody) throws(APIFailure) -> ApprovalTerms {
        let names = body.overrideChecks ?? []
        guard names.count <= 20 else { throw .badRequest("field \"override_checks\" names more than 20 checks") }
        for name in names where name.isEmpty || name.utf8.count > 100
            || !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "-_/".contains($0)) }) {
            throw .badRequest("field \"override_checks\" holds \(displaySafe(name, limit: 40)), not a check name (lowercase letters, digits, `-`, `_`, `/`)")
        }
        var reason: String?
        if let text = body.reason {
            reason = try ReasonText.validate(text, field: "reason", maximumBytes: limits.maximumReasonBytes)
        }
        return ApprovalTerms(overrideChecks: names, breakGlass: body.breakGlass ?? false, reason: reason)
    }

    private func field<T>(_ name: String, _ parse: () throws(CoreError) -> T) throws(APIFailure) -> T {
        do {
            return try parse()
        } catch {
            throw .badRequest("\(name): \(error.description)")
        }
    }

    /// One webhook delivery: 202 once it is authenticated (a fetch is asked for when it is new and
    /// about a push), 401 or 429 when no secret vouches for it, 413 when its body is too large.
    /// No bearer token is needed or looked at: the forge's secret is the credential.
    private func receiveWebhook(_ forge: WebhookForge, request: Request, context: APIRequestContext) async throws -> Response {
        guard let webhooks, webhooks.serves(forge) else {
            throw APIFailure.notFound("this agent takes no \(forge.rawValue) webhooks")
        }
        let body: [UInt8]
        do {
            body = try await collect(request, limit: webhooks.maximumBodyBytes)
        } catch let failure as APIFailure {
            WebhookReceiver.count(forge, "too_large")
            throw failure
        }
        switch webhooks.receive(forge, headers: request.headers, body: body) {
        case .accepted:
            return JSONResponse.make(["status": "accepted"], status: .accepted)
        case .duplicate:
            return JSONResponse.make(["status": "duplicate"], status: .accepted)
        case .ignored(let event):
            return JSONResponse.make(["status": "ignored", "event": event], status: .accepted)
        case .malformed(let reason):
            throw APIFailure.badRequest(reason)
        case .unauthorized(let reason):
            throw await refuseAuthentication(APIAuthenticationFailure(.webhookSignature, reason), request: request,
                                             context: context, limiter: limiter, onRefusal: onRefusal)
        }
    }

    /// Reads the body up to the limit. A declared length over the limit is refused before reading.
    private func collect(_ request: Request, limit: Int? = nil) async throws -> [UInt8] {
        let limit = limit ?? limits.maximumBodyBytes
        if let declared = request.headers[.contentLength], let length = Int(declared), length > limit {
            throw APIFailure.payloadTooLarge(limit: limit)
        }
        var bytes: [UInt8] = []
        for try await chunk in request.body {
            guard bytes.count + chunk.readableBytes <= limit else { throw APIFailure.payloadTooLarge(limit: limit) }
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        return bytes
    }

    private func rejectQuery(_ request: Request, allowing allowed: Set<String>) throws(APIFailure) {
        for (key, _) in request.uri.queryParameters where !allowed.contains(String(key)) {
            let expected = allowed.isEmpty ? "this path takes none" : "expected " + allowed.sorted().joined(separator: ", ")
            throw .badRequest("unknown query parameter \"\(displaySafe(String(key), limit: 64))\"; \(expected)")
        }
    }

    private func runFilter(_ request: Request) throws(APIFailure) -> APIRunFilter {
        try rejectQuery(request, allowing: ["target", "state", "limit"])
        let query = request.uri.queryParameters
        var filter = APIRunFilter(limit: limits.defaultRunLimit)

        let targets = query.getAll("target")
        guard targets.count <= 1 else { throw .badRequest("query parameter \"target\" may be given once") }
        if let raw = targets.first {
            let parts = raw.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw .badRequest("query parameter \"target\" must be PROJECT/ENVIRONMENT")
            }
            let project = try field("query parameter \"target\"") { () throws(CoreError) in try ProjectName(String(parts[0])) }
            let environment = try field("query parameter \"target\"") { () throws(CoreError) in
                try EnvironmentName(String(parts[1]))
            }
            filter.target = TargetID(project: project, environment: environment)
        }

        // `state=a&state=b` and `state=a,b` both work.
        let states = query.getAll("state").flatMap { $0.split(separator: ",") }
        if !states.isEmpty {
            var set: Set<RunState> = []
            for raw in states {
                guard let state = RunState(rawValue: String(raw)) else {
                    throw .badRequest("query parameter \"state\": \"\(displaySafe(String(raw), limit: 32))\" is not a run state; expected one of "
                                      + RunState.allCases.map(\.rawValue).joined(separator: ", "))
                }
                set.insert(state)
            }
            filter.states = set
        }

        let limitsGiven = query.getAll("limit")
        guard limitsGiven.count <= 1 else { throw .badRequest("query parameter \"limit\" may be given once") }
        if let raw = limitsGiven.first {
            guard let value = Int(raw), value >= 1, value <= limits.maximumRunLimit else {
                throw .badRequest("query parameter \"limit\" must be a number from 1 to \(limits.maximumRunLimit)")
            }
            filter.limit = value
        }
        return filter
    }

    /// Maps a backend outcome to a response. A refusal about who is asking is a 403 and is
    /// reported like a failed authentication; other refusals are 409.
    private func respond<Value: Encodable>(to request: Request, context: APIRequestContext, with outcome: APIOutcome<Value>,
                                           status: HTTPResponse.Status = .ok) async throws -> Response {
        switch outcome {
        case .ok(let value):
            return JSONResponse.make(value, status: status)
        case .notFound(let message):
            throw APIFailure.notFound(message)
        case .refused(let refusal):
            let failure = APIFailure.refused(refusal)
            if failure.status == .forbidden {
                await onRefusal(APIAccessRefusal(
                    status: 403, code: failure.code, authenticationFailure: nil, identity: context.identity,
                    method: request.method.rawValue, path: displaySafe(request.uri.path, limit: 200),
                    remoteAddress: context.remoteAddress, remoteHost: context.remoteHost, message: failure.message))
            }
            throw failure
        }
    }
}

/// One route: a method and a path whose `:name` segments match any one segment.
struct RouteSpec: Sendable {
    let method: HTTPRequest.Method
    let path: String
    let segments: [Substring]

    init(_ method: HTTPRequest.Method, _ path: String) {
        self.method = method
        self.path = path
        self.segments = path.split(separator: "/")
    }

    func matches(_ requestSegments: [Substring]) -> Bool {
        guard requestSegments.count == segments.count else { return false }
        return zip(segments, requestSegments).allSatisfy { pattern, segment in
            pattern.hasPrefix(":") || pattern == segment
        }
    }

    /// Methods the table accepts for `path` (empty: no such path).
    static func methods(for path: String, in routes: [RouteSpec]) -> [HTTPRequest.Method] {
        let requestSegments = path.split(separator: "/")
        var methods: [HTTPRequest.Method] = []
        for route in routes where route.matches(requestSegments) && !methods.contains(route.method) {
            methods.append(route.method)
        }
        return methods
    }
}

/// Authenticates every request under `/api/v1` by its bearer token; see ``APITokenTable``.
///
/// A failed authentication is counted by the client's address; past the limiter's limits it
/// is answered 429 with `Retry-After` (still reported to `onRefusal`, to be counted in the
/// audit log's summary), so a flood costs neither a store write nor a log line per request.
/// The token is checked first whatever the count, so a valid token is always served.
struct BearerAuthentication: RouterMiddleware {
    typealias Context = APIRequestContext
    let tokens: APITokenTable
    let limiter: FailedAuthenticationLimiter
    let onRefusal: @Sendable (APIAccessRefusal) async -> Void

    func handle(_ request: Request, context: APIRequestContext,
                next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        let failure: APIAuthenticationFailure
        switch BearerToken.parse(request.headers[values: .authorization]) {
        case .success(let token):
            if let identity = tokens.identity(forToken: token) {
                var context = context
                context.identity = identity
                return try await next(request, context)
            }
            failure = APIAuthenticationFailure(.unknownToken, "the bearer token is not valid")
        case .failure(let reason):
            failure = reason
        }
        throw await refuseAuthentication(failure, request: request, context: context, limiter: limiter, onRefusal: onRefusal)
    }
}

/// Turns whatever a route throws into a JSON error response. Only ``APIFailure`` carries
/// its own message; Hummingbird's own errors keep their status with a fixed message; any
/// other error is logged and answered with `internal`, never with its text.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let logger: Logger

    func handle(_ request: Request, context: APIRequestContext,
                next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let failure as APIFailure {
            return failure.response
        } catch let error as any HTTPResponseError {
            switch error.status {
            case .notFound:
                let allowed = RouteSpec.methods(for: request.uri.path, in: APIServer.routes)
                if !allowed.isEmpty { return APIFailure.methodNotAllowed(allowed).response }
                return APIFailure.notFound("no such path").response
            case .contentTooLarge:
                return APIFailure(status: .contentTooLarge, code: .payloadTooLarge,
                                  message: "the request body is too large").response
            case .badRequest:
                return APIFailure.badRequest("the request is malformed").response
            case .methodNotAllowed:
                let allowed = RouteSpec.methods(for: request.uri.path, in: APIServer.routes)
                return APIFailure.methodNotAllowed(allowed).response
            default:
                logger.error("request failed", metadata: ["http.status": "\(error.status.code)",
                                                          "http.path": "\(displaySafe(request.uri.path, limit: 200))"])
                return APIFailure.internal.response
            }
        } catch {
            logger.error("request failed", metadata: ["http.path": "\(displaySafe(request.uri.path, limit: 200))",
                                                      "error": "\(String(reflecting: error))"])
            return APIFailure.internal.response
        }
    }
}
