import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// What a request to a forge or a notification endpoint came to, when it did not succeed.
public enum SendFailure: Error, Sendable, Equatable {
    /// Worth trying again: the endpoint was unreachable, slow, overloaded or rate-limiting.
    /// `after` is what it asked for (`Retry-After`, or the time its rate limit resets).
    case transient(after: Duration?, reason: String)
    /// Trying again would get the same answer (a 4xx other than a rate limit, an answer that
    /// cannot be read after several tries): the event is given up, and said so in the log.
    case permanent(reason: String)
    /// The answer could not be read (not the JSON expected): tried a few times, then given up.
    case unreadable(reason: String)

    public var reason: String {
        switch self {
        case .transient(_, let reason), .permanent(let reason), .unreadable(let reason): reason
        }
    }
}

/// An answer with a 2xx or a non-retryable 4xx status (a caller decides what a 404 means).
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Data

    /// The body as `T`, or a permanent failure naming `what` could not be read.
    public func decoded<T: Decodable>(_ type: T.Type, _ what: String) throws(SendFailure) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch {
            throw SendFailure.unreadable(reason: "\(what): the answer (HTTP \(status), \(body.count) bytes) is not the JSON expected")
        }
    }
}

/// Outgoing HTTP for the outbox: no redirects (a token goes only to the URL configured), short
/// timeouts, answers read up to a cap, and every failure sorted into "try again" or "give up"
/// with the wait the other side asked for (`Retry-After`, `X-RateLimit-Reset`, `RateLimit-Reset`).
public final class OutboundHTTP: Sendable {
    /// Largest answer read: a forge's JSON for one comment or pull request is a few KiB.
    public static let maximumAnswerBytes = 2 << 20
    /// The longest wait honoured; a forge asking for more gets asked again after an hour.
    public static let longestWait: Duration = .seconds(3_600)

    /// Made on the first request: a daemon that stops before sending anything (a token file
    /// that cannot be read, a port that is taken) has no client to shut down.
    private let client = Mutex<HTTPClient?>(nil)
    private let configuration: HTTPClient.Configuration
    private let timeout: TimeAmount

    public init(timeout: Duration = .seconds(30)) {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(5), read: .seconds(20)))
        configuration.httpVersion = .http1Only
        self.configuration = configuration
        self.timeout = .seconds(timeout.components.seconds)
    }

    /// Set by ``shutdown()``: no client is made after it (one made then would never be shut down).
    private let closed = Mutex(false)

    private var shared: HTTPClient? {
        client.withLock { client in
            if let client { return client }
            guard !closed.withLock({ $0 }) else { return nil }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            client = made
            return made
        }
    }

    public func shutdown() async {
        closed.withLock { $0 = true }
        let made = client.withLock { client in defer { client = nil }; return client }
        try? await made?.shutdown()
    }

    /// Sends one request; returns a 2xx or non-retryable 4xx answer, throws otherwise.
    public func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)], body: Data?,
                     now: Date = Date()) async throws(SendFailure) -> HTTPAnswer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.body = .bytes(ByteBuffer(data: body))
            request.headers.replaceOrAdd(name: "Content-Length", value: "\(body.count)")
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        guard let shared else { throw .transient(after: nil, reason: "the daemon is stopping") }
        do {
            response = try await shared.execute(request, timeout: timeout)
            bytes = try await response.body.collect(upTo: Self.maximumAnswerBytes)
        } catch is NIOTooManyBytesError {
            throw .transient(after: nil, reason: "the answer was over \(Self.maximumAnswerBytes) bytes")
        } catch {
            throw .transient(after: nil, reason: "no answer: \(Self.describe(error))")
        }
        let status = Int(response.status.code)
        let answer = HTTPAnswer(status: status, headers: response.headers, body: Data(buffer: bytes))
        let wait = Self.rateLimitWait(status: status, headers: response.headers, now: now)
        if status == 429 || (status == 403 && wait != nil) {
            throw .transient(after: wait, reason: "HTTP \(status): rate limited")
        }
        switch status {
        case 200..<300:
            return answer
        case 408, 409, 425, 500..<600:
            throw .transient(after: Self.retryAfter(response.headers, now: now), reason: "HTTP \(status)")
        case 400..<500:
            return answer
        default:
            throw .transient(after: nil, reason: "HTTP \(status)")
        }
    }

    /// How long a rate-limited answer asks to wait (`Retry-After`, or the reset time of a quota
    /// that is used up): a 429 is a rate limit with or without it, a 403 only with it (GitHub's
    /// limits answer either).
    static func rateLimitWait(status: Int, headers: HTTPHeaders, now: Date) -> Duration? {
        guard status == 429 || status == 403 else { return nil }
        if let after = retryAfter(headers, now: now) { return after }
        let remaining = headers.first(name: "x-ratelimit-remaining") ?? headers.first(name: "ratelimit-remaining")
        if remaining?.trimmingCharacters(in: .whitespaces) == "0",
           let reset = (headers.first(name: "x-ratelimit-reset") ?? headers.first(name: "ratelimit-reset"))
            .flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) {
            let seconds = max(1, reset - now.timeIntervalSince1970 + 1)
            return min(.seconds(seconds), longestWait)
        }
        return nil
    }

    /// `Retry-After` as seconds or an HTTP date, capped at ``longestWait``.
    static func retryAfter(_ headers: HTTPHeaders, now: Date) -> Duration? {
        guard let raw = headers.first(name: "retry-after")?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
        if let seconds = Int(raw), seconds >= 0 { return min(.seconds(seconds), longestWait) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: raw) else { return nil }
        return min(.seconds(max(0, date.timeIntervalSince(now))), longestWait)
    }

    /// A connection error in one line, without the URL (it may hold a notification's secret path).
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as HTTPClientError: "\(error)"
        default: String(describing: type(of: error))
        }
    }
}
