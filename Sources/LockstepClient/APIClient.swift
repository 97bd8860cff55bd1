import AsyncHTTPClient
public import Foundation
import LockstepAPI
import NIOCore
import NIOHTTP1

/// A client of the daemon's `/api/v1` (docs/CONTRACT.md §5), over AsyncHTTPClient.
///
/// Requests carry the token in `Authorization: Bearer` and never follow a redirect: a client
/// that follows one re-sends the Authorization header to whatever host `Location:` names, so
/// a misconfigured or hostile server could collect a token simply by redirecting. A redirect
/// is reported as ``APIClientError/Code-swift.struct/redirected`` instead. Nothing is cached
/// and no cookie is kept.
///
/// Use it inside ``withClient(_:_:)``, which owns the HTTP connection pool and shuts it down
/// when the body returns or throws.
public struct APIClient: Sendable {
    /// Where the daemon is and who we are to it.
    public struct Connection: Sendable {
        /// The daemon's base URL (`http` or `https`, no user, query or fragment); API paths are appended.
        public var server: URL
        /// The bearer token. Never part of a message or an error.
        public var token: String
        /// How long one request may take, from connecting to the last byte of the answer.
        public var timeout: Duration

        public init(server: URL, token: String, timeout: Duration) {
            self.server = server
            self.token = token
            self.timeout = timeout
        }
    }

    /// The body of a successful (2xx) response and its HTTP status.
    public struct Reply: Sendable {
        public let status: Int
        public let body: Data

        public init(status: Int, body: Data) {
            self.status = status
            self.body = body
        }
    }

    /// The largest answer read. Plan renderings are bounded by the daemon; anything bigger is
    /// not the API talking, and reading it would only cost memory.
    public static let maximumReplyBytes = 64 * 1024 * 1024

    public let connection: Connection
    private let http: HTTPClient

    private init(connection: Connection, http: HTTPClient) {
        self.connection = connection
        self.http = http
    }

    /// Runs `body` with a client for `connection`, then shuts the client's connection pool down.
    public static func withClient<Result: Sendable, Failure: Error>(
        _ connection: Connection,
        _ body: (APIClient) async throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration(for: connection))
        let outcome: Swift.Result<Result, Failure>
        do {
            outcome = .success(try await body(APIClient(connection: connection, http: http)))
        } catch {
            outcome = .failure(error)
        }
        // Shutting down a pool whose requests all finished only closes idle sockets; should it
        // fail, the process is about to report the request's own outcome, which is what matters.
        try? await http.shutdown()
        return try outcome.get()
    }

    /// Redirects refused, a connect and a read timeout, and a failed connection reported at once
    /// (the pool's default retries it until the deadline, turning "connection refused" into a timeout).
    static func configuration(for connection: Connection) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let timeout = TimeAmount(connection.timeout)
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: timeout, read: timeout)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        // TLS: the platform's trust roots and host name verification (the default).
        configuration.tlsConfiguration = nil
        return configuration
    }

    public func get(_ path: String, query: [URLQueryItem] = []) async throws(APIClientError) -> Reply {
        try await send(method: .GET, path: path, query: query, body: nil)
    }

    public func post(_ path: String, body: some Encodable) async throws(APIClientError) -> Reply {
        let data: Data
        do {
            data = try APIJSON.makeEncoder().encode(body)
        } catch {
            throw APIClientError(.invalidRequest, "the request could not be encoded")
        }
        return try await send(method: .POST, path: path, query: [], body: data)
    }

    /// Decodes a reply as the API's `T`; anything else is a bad response, never shown raw.
    public func decode<T: Decodable>(_ type: T.Type, from reply: Reply) throws(APIClientError) -> T {
        do {
            return try APIJSON.makeDecoder().decode(T.self, from: reply.body)
        } catch {
            throw APIClientError(.badResponse,
                                 "the server's answer is not the Lockstep API's JSON; is \(server) a Lockstep daemon?",
                                 status: reply.status)
        }
    }

    private var server: String { connection.server.absoluteString }

    /// `path` is relative to `/api/v1/`; its segments are validated identifiers, never raw input.
    private func send(method: HTTPMethod, path: String, query: [URLQueryItem], body: Data?) async throws(APIClientError) -> Reply {
        guard var components = URLComponents(url: connection.server.appendingPathComponent("api/v1/" + path),
                                             resolvingAgainstBaseURL: false)
        else {
            throw APIClientError(.invalidRequest, "cannot build a URL from \(server)")
        }
        if !query.isEmpty { components.queryItems = query }
        guard let url = components.url else {
            throw APIClientError(.invalidRequest, "cannot build a URL from \(server)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(connection.token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }

        let status: Int
        let data: Data
        do {
            let response = try await http.execute(request, timeout: TimeAmount(connection.timeout))
            status = Int(response.status.code)
            if (300..<400).contains(status) {
                throw APIClientError(.redirected,
                                     "\(server) answered with a redirect; lockstep never follows one, so the token is not sent to another address. Point --server at the daemon itself",
                                     status: status)
            }
            let buffer = try await response.body.collect(upTo: Self.maximumReplyBytes)
            data = Data(buffer.readableBytesView)
        } catch let error as APIClientError {
            throw error
        } catch is NIOTooManyBytesError {
            throw APIClientError(.badResponse, "\(server) sent an answer larger than \(Self.maximumReplyBytes) bytes")
        } catch {
            throw TransportFailure.classify(error, server: server)
        }
        guard (200..<300).contains(status) else {
            throw Self.apiError(status: status, body: data, server: server)
        }
        return Reply(status: status, body: data)
    }

    /// An error response: the API's code and message when the body is the API's error JSON.
    static func apiError(status: Int, body: Data, server: String) -> APIClientError {
        if let parsed = try? APIJSON.makeDecoder().decode(APIErrorBody.self, from: body) {
            return APIClientError(.api, parsed.error.message, status: status, apiCode: parsed.error.code.rawValue,
                                  apiBody: body)
        }
        // Not the API's shape: a proxy between us and the daemon answered. Its body is not shown.
        if status == 502 || status == 503 || status == 504 {
            return APIClientError(.unreachable, "a proxy in front of \(server) could not reach the daemon", status: status)
        }
        let fallback = status == 401 ? "unauthorized" : status == 403 ? "forbidden" : status == 404 ? "not_found"
            : status == 409 ? "conflict" : "http_\(status)"
        return APIClientError(.api, "the server answered without a Lockstep error body", status: status, apiCode: fallback)
    }
}

extension TimeAmount {
    /// Whole nanoseconds of a duration (the client's timeouts are seconds, far from overflowing).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
