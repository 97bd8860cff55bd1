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
///
/// At the cap a new connection is not simply turned away, which would let slow clients
/// lock out health checks and operators: the oldest connection that the daemon is not
/// working on (still sending its request, or idle between requests) is closed to make room.
/// A client that sends its request at once is served before it can become the oldest; a
/// slow one loses its place. Only when every connection is a request being handled is the
/// new one limited to health checks, and past that reserve closed at once.
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
    private struct Registry {
        var nextID = 0
        /// Open connections by age (ids grow).
        var open: [Int: TrackedConnection] = [:]
        var accepted = 0
        var evicted = 0
        var healthOnly = 0
        var refused = 0
        var timedOut = 0
        var lastCapWarning: ContinuousClock.Instant?
    }
    private let registry = Mutex(Registry())

    public init(limits: HTTPConnectionLimits = HTTPConnectionLimits(), logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    /// Connections open now.
    public var openConnections: Int { registry.withLock { $0.open.count } }

    /// Since start: connections accepted, those closed to make room at the cap, those
    /// served health checks only, those closed at once (past the reserve), and those closed
    /// by a timeout.
    public var totals: (accepted: Int, evicted: Int, healthOnly: Int, refused: Int, timedOut: Int) {
        registry.withLock { ($0.accepted, $0.evicted, $0.healthOnly, $0.refused, $0.timedOut) }
    }

    enum Admission { case normal, healthOnly, refused }

    func admit(_ channel: any Channel) -> (Admission, TrackedConnection) {
        let maximum = limits.maximumConnections
        let reserve = limits.reservedForHealthChecks
        let (admission, connection, victim, warn): (Admission, TrackedConnection, TrackedConnection?, Bool) =
            registry.withLock { r in
                r.accepted += 1
                let connection = TrackedConnection(id: r.nextID, channel: channel)
                r.nextID += 1
                var victim: TrackedConnection?
                var admission = Admission.normal
                let normal = r.open.values.filter { !$0.healthOnly }.count
                if normal >= maximum {
                    // The oldest connection the daemon is not working on makes room.
                    victim = r.open.values.filter { !$0.healthOnly && !$0.isBusy }.min { $0.id < $1.id }
                    if let victim {
                        r.open.removeValue(forKey: victim.id)
                        r.evicted += 1
                    } else if r.open.count - normal < reserve {
                        admission = .healthOnly
                        r.healthOnly += 1
                    } else {
                        admission = .refused
                        r.refused += 1
                    }
                }
                connection.healthOnly = admission != .normal
                if admission != .refused { r.open[connection.id] = connection }
                var warn = false
                if normal >= maximum {
                    // One line a minute at most: a flood must not turn into a log flood.
                    let now = ContinuousClock.now
                    if r.lastCapWarning.map({ now - $0 >= .seconds(60) }) ?? true {
                        r.lastCapWarning = now
                        warn = true
                    }
                }
                return (admission, connection, victim, warn)
            }
        victim?.channel.close(promise: nil)
        if warn {
            let totals = self.totals
            logger.warning("API connection cap reached: the oldest connections not being served are closed to make room",
                           metadata: ["http.connections.max": "\(maximum)",
                                      "http.connections.evicted_total": "\(totals.evicted)",
                                      "http.connections.refused_total": "\(totals.refused)"])
        }
        return (admission, connection)
    }

    /// Whether a connection accepted past the cap may go on: its request line asks
    /// `GET /healthz` or `GET /readyz` (exactly, with or without a query).
    public static func admitsPastCap(requestLine: String) -> Bool {
        ["GET /healthz ", "GET /healthz?", "GET /readyz ", "GET /readyz?"].contains { requestLine.hasPrefix($0) }
    }

    func closed(_ connection: TrackedConnection) {
        _ = registry.withLock { $0.open.removeValue(forKey: connection.id) }
    }

    func timedOut() { registry.withLock { $0.timedOut += 1 } }
}

/// One open connection as the guard sees it.
final class TrackedConnection: Sendable {
    let id: Int
    let channel: any Channel
    private let state = Mutex<(busy: Bool, healthOnly: Bool)>((false, false))

    init(id: Int, channel: any Channel) {
        self.id = id
        self.channel = channel
    }

    /// A request was read completely and its response is not finished: the daemon is
    /// working on it, so it is never closed to make room.
    var isBusy: Bool {
        get { state.withLock { $0.busy } }
        set { state.withLock { $0.busy = newValue } }
    }

    /// Accepted past the cap, for a health check only.
    var healthOnly: Bool {
        get { state.withLock { $0.healthOnly } }
        set { state.withLock { $0.healthOnly = newValue } }
    }
}

/// HTTP/1.1 as Hummingbird serves it, with the connection cap and the timeouts added.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let connectionGuard: ConnectionGuard

    init(responder: @escaping HTTPChannelHandler.Responder, connectionGuard: ConnectionGuard) {
        let limits = connectionGuard.limits
        _ = limits
        var configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [],
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 * 1024, maxHeaderListSize: 32 * 1024,
                                            maxHeaderFieldCount: 100))
        configuration.idleTimeout = nil
        self.inner = HTTP1Channel(responder: responder, configuration: configuration)
        self.connectionGuard = connectionGuard
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let (admission, connection) = connectionGuard.admit(channel)
        let connectionGuard = self.connectionGuard
        channel.closeFuture.whenComplete { _ in connectionGuard.closed(connection) }
        // A failed setup would be reported on the listening channel and could end the
        // server: a refused connection is set up like any other and closed at once.
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try channel.pipeline.syncOperations.addHandler(
                AdmissionHandler(admission: admission, lifetime: connectionGuard.limits.healthCheckLifetime),
                position: .first)
            // Right after the HTTP codec, where request and response parts pass.
            let state = try channel.pipeline.syncOperations.handler(type: HTTPConnectionStateHandler.self)
            try channel.pipeline.syncOperations.addHandler(
                RequestTimeoutHandler(limits: connectionGuard.limits, connectionGuard: connectionGuard,
                                      connection: connection),
                position: .before(state))
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
        if ConnectionGuard.admitsPastCap(requestLine: line) {
            pending = nil
            context.fireChannelRead(wrapInboundOut(buffer))
        } else {
            refuse(context)
        }
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
    private let connection: TrackedConnection
    private var started = false
    private var readingRequest = false
    private var inFlight = 0
    private var timer: Scheduled<Void>?

    init(limits: HTTPConnectionLimits, connectionGuard: ConnectionGuard, connection: TrackedConnection) {
        self.limits = limits
        self.connectionGuard = connectionGuard
        self.connection = connection
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
            connection.isBusy = true
            cancel()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            inFlight = max(0, inFlight - 1)
            if inFlight == 0 {
                connection.isBusy = false
                if !readingRequest { arm(context, limits.idleTimeout) }
            }
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
