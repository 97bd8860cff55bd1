import HummingbirdCore
public import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Limits on the API's connections; the defaults suit a deployment agent.
///
/// Why: every open connection holds a descriptor, and the daemon shares its descriptor
/// limit with git fetches, the store and terraform's pipes. Thousands of connections that
/// send their headers a byte at a time (slowloris) once starved health checks and fetches.
/// So a connection must finish its request head within ``headerTimeout``, a keep-alive
/// connection may sit idle for ``idleTimeout``, a request body must arrive within
/// ``requestReadTimeout``, and at most ``maximumConnections`` are open at once.
public struct HTTPConnectionLimits: Sendable, Hashable {
    /// Connections served normally at once.
    public var maximumConnections: Int
    /// Connections past the cap that are still accepted, for `GET /healthz` and `GET /readyz`
    /// only, each for at most ``healthCheckLifetime``: a monitor can tell a busy agent from a
    /// dead one while the cap is reached. Past these, a new connection is closed at once.
    public var reservedForHealthChecks: Int
    /// From accepting a connection to its request head being complete.
    public var headerTimeout: Duration
    /// From the end of a response to the next request head being complete (keep-alive).
    public var idleTimeout: Duration
    /// From a request head to the end of its body.
    public var requestReadTimeout: Duration
    /// How long a connection accepted past the cap may stay open.
    public var healthCheckLifetime: Duration

    public init(maximumConnections: Int = 512, reservedForHealthChecks: Int = 16, headerTimeout: Duration = .seconds(10),
                idleTimeout: Duration = .seconds(60), requestReadTimeout: Duration = .seconds(30),
                healthCheckLifetime: Duration = .seconds(2)) {
        self.maximumConnections = maximumConnections
        self.reservedForHealthChecks = reservedForHealthChecks
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.requestReadTimeout = requestReadTimeout
        self.healthCheckLifetime = healthCheckLifetime
    }
}

/// Counts the API's open connections and applies ``HTTPConnectionLimits`` to each.
public final class ConnectionGuard: Sendable {
    public let limits: HTTPConnectionLimits
    let logger: Logger
    private let open = Atomic<Int>(0)
    private struct Counters {
        var accepted = 0
        var healthOnly = 0
        var refused = 0
        var timedOut = 0
        var lastCapWarning: ContinuousClock.Instant?
    }
    private let counters = Mutex(Counters())

    public init(limits: HTTPConnectionLimits = HTTPConnectionLimits(), logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    /// Connections open now.
    public var openConnections: Int { open.load(ordering: .relaxed) }

    /// Since start: connections accepted, those served health checks only (past the cap),
    /// those closed at once (past the reserve), and those closed by a timeout.
    public var totals: (accepted: Int, healthOnly: Int, refused: Int, timedOut: Int) {
        counters.withLock { ($0.accepted, $0.healthOnly, $0.refused, $0.timedOut) }
    }

    enum Admission { case normal, healthOnly, refused }

    func admit() -> Admission {
        let count = open.add(1, ordering: .relaxed).newValue
        let admission: Admission
        if count <= limits.maximumConnections {
            admission = .normal
        } else if count <= limits.maximumConnections + limits.reservedForHealthChecks {
            admission = .healthOnly
        } else {
            admission = .refused
        }
        let warn: Bool = counters.withLock { c in
            c.accepted += 1
            switch admission {
            case .normal: return false
            case .healthOnly: c.healthOnly += 1
            case .refused: c.refused += 1
            }
            // One line a minute at most: a flood must not turn into a log flood.
            let now = ContinuousClock.now
            guard c.lastCapWarning.map({ now - $0 >= .seconds(60) }) ?? true else { return false }
            c.lastCapWarning = now
            return true
        }
        if warn {
            logger.warning("API connection cap reached: new connections get health checks only, then are closed at once",
                           metadata: ["http.connections.max": "\(limits.maximumConnections)",
                                      "http.connections.refused_total": "\(totals.refused)"])
        }
        return admission
    }

    func closed() { open.subtract(1, ordering: .relaxed) }

    func timedOut() { counters.withLock { $0.timedOut += 1 } }
}

/// HTTP/1.1 as Hummingbird serves it, with the connection cap and the timeouts added.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let connectionGuard: ConnectionGuard

    init(responder: @escaping HTTPChannelHandler.Responder, connectionGuard: ConnectionGuard) {
        let limits = connectionGuard.limits
        var configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestTimeoutHandler(limits: limits, connectionGuard: connectionGuard)],
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 * 1024, maxHeaderListSize: 32 * 1024,
                                            maxHeaderFieldCount: 100))
        configuration.idleTimeout = nil
        self.inner = HTTP1Channel(responder: responder, configuration: configuration)
        self.connectionGuard = connectionGuard
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admission = connectionGuard.admit()
        let connectionGuard = self.connectionGuard
        channel.closeFuture.whenComplete { _ in connectionGuard.closed() }
        // A failed setup would be reported on the listening channel and could end the
        // server: a refused connection is set up like any other and closed at once.
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try channel.pipeline.syncOperations.addHandler(
                AdmissionHandler(admission: admission, lifetime: connectionGuard.limits.healthCheckLifetime),
                position: .first)
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// First in the pipeline, on raw bytes: closes a refused connection at once, and lets a
/// connection accepted past the cap send only `GET /healthz` or `GET /readyz` (anything
/// else gets a fixed 503), for a short lifetime.
final class AdmissionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let admission: ConnectionGuard.Admission
    private let lifetime: Duration
    private var started = false
    private var decided = false
    private var pending: ByteBuffer?
    private var timer: Scheduled<Void>?

    /// Longest request line looked at; a health check's is far shorter.
    static let maximumRequestLine = 512

    init(admission: ConnectionGuard.Admission, lifetime: Duration) {
        self.admission = admission
        self.lifetime = lifetime
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        switch admission {
        case .normal:
            decided = true
        case .refused:
            decided = true
            context.close(promise: nil)
        case .healthOnly:
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(lifetime)) {
                context.close(promise: nil)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        var incoming = unwrapInboundIn(data)
        if pending == nil {
            pending = incoming
        } else {
            pending!.writeBuffer(&incoming)
        }
        guard let buffer = pending else { return }
        let bytes = buffer.readableBytesView
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            if bytes.count > Self.maximumRequestLine { refuse(context) }
            return
        }
        let line = String(decoding: bytes[bytes.startIndex..<newline], as: UTF8.self)
        decided = true
        if Self.isHealthCheck(line) {
            pending = nil
            context.fireChannelRead(wrapInboundOut(buffer))
        } else {
            refuse(context)
        }
    }

    static func isHealthCheck(_ requestLine: String) -> Bool {
        ["GET /healthz ", "GET /healthz?", "GET /readyz ", "GET /readyz?"].contains { requestLine.hasPrefix($0) }
    }

    private func refuse(_ context: ChannelHandlerContext) {
        decided = true
        pending = nil
        let body = #"{"error":{"code":"busy","message":"the server is at its connection limit; only GET /healthz and GET /readyz are answered now"}}"#
        let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nretry-after: 5\r\nconnection: close\r\n\r\n"
        var out = context.channel.allocator.buffer(capacity: head.utf8.count + body.utf8.count)
        out.writeString(head)
        out.writeString(body)
        context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// After the HTTP codec: enforces the header, idle and request-read timeouts. A request
/// that was read completely is never cut while the daemon works on it.
final class RequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: HTTPConnectionLimits
    private let connectionGuard: ConnectionGuard
    private var started = false
    private var readingRequest = false
    private var inFlight = 0
    private var timer: Scheduled<Void>?

    init(limits: HTTPConnectionLimits, connectionGuard: ConnectionGuard) {
        self.limits = limits
        self.connectionGuard = connectionGuard
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancel() }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        arm(context, limits.headerTimeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            inFlight += 1
            arm(context, limits.requestReadTimeout)
        case .body:
            break
        case .end:
            readingRequest = false
            cancel()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            inFlight = max(0, inFlight - 1)
            if inFlight == 0 && !readingRequest { arm(context, limits.idleTimeout) }
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, _ timeout: Duration) {
        cancel()
        let connectionGuard = self.connectionGuard
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
            connectionGuard.timedOut()
            context.close(promise: nil)
        }
    }

    private func cancel() {
        timer?.cancel()
        timer = nil
    }
}
