import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LockstepHTTP

/// A client of the daemon's `/api/v1`, over Foundation's URLSession (libcurl on Linux).
///
/// Requests carry the token in `Authorization: Bearer`, are never cached, and never follow a
/// redirect: measured on this platform, URLSession re-sends the Authorization header to
/// whatever host a `302 Location:` names, so a misconfigured or hostile server could
/// collect a token simply by redirecting. A redirect is reported as an error instead.
struct APIClient: Sendable {
    let settings: ClientSettings

    /// The body of a successful response and its HTTP status.
    struct Reply: Sendable {
        let status: Int
        let body: Data
    }

    func get(_ path: String, query: [URLQueryItem] = []) async throws(ClientError) -> Reply {
        try await send(method: "GET", path: path, query: query, body: nil)
    }

    func post(_ path: String, body: some Encodable) async throws(ClientError) -> Reply {
        let data: Data
        do {
            data = try APIJSON.makeEncoder().encode(body)
        } catch {
            throw ClientError(.usage, "the request could not be encoded")
        }
        return try await send(method: "POST", path: path, query: [], body: data)
    }

    /// Decodes a reply as the API's `T`; anything else is a bad response, never shown raw.
    func decode<T: Decodable>(_ type: T.Type, from reply: Reply) throws(ClientError) -> T {
        do {
            return try APIJSON.makeDecoder().decode(T.self, from: reply.body)
        } catch {
            throw ClientError(.badResponse, "the server's answer is not the Lockstep API's JSON; is \(settings.server.absoluteString) a Lockstep daemon?",
                              status: reply.status)
        }
    }

    /// `path` is relative to `/api/v1/`; its segments are validated identifiers, never raw input.
    private func send(method: String, path: String, query: [URLQueryItem], body: Data?) async throws(ClientError) -> Reply {
        guard var components = URLComponents(url: settings.server.appendingPathComponent("api/v1/" + path),
                                             resolvingAgainstBaseURL: false)
        else {
            throw ClientError(.usage, "cannot build a URL from \(settings.server.absoluteString)")
        }
        if !query.isEmpty { components.queryItems = query }
        guard let url = components.url else {
            throw ClientError(.usage, "cannot build a URL from \(settings.server.absoluteString)")
        }
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData,
                                 timeoutInterval: TimeInterval(settings.timeout))
        request.httpMethod = method
        request.setValue("Bearer \(settings.token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }

        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.timeoutIntervalForRequest = TimeInterval(settings.timeout)
        configuration.timeoutIntervalForResource = TimeInterval(settings.timeout)
        let session = URLSession(configuration: configuration, delegate: RefuseRedirects(), delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }

        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch let error as URLError {
            throw Self.classify(error, server: settings.server)
        } catch {
            throw ClientError(.unreachable, "the request to \(settings.server.absoluteString) failed")
        }
        guard let http = response as? HTTPURLResponse else {
            throw ClientError(.badResponse, "\(settings.server.absoluteString) did not answer with HTTP")
        }
        let status = http.statusCode
        switch status {
        case 200..<300:
            return Reply(status: status, body: data)
        case 300..<400:
            throw ClientError(.redirected,
                              "\(settings.server.absoluteString) answered with a redirect; lockstep never follows one, so the token is not sent to another address. Point --server at the daemon itself",
                              status: status)
        default:
            throw Self.apiError(status: status, body: data, server: settings.server)
        }
    }

    /// An error response: the API's code and message when the body is the API's error JSON.
    static func apiError(status: Int, body: Data, server: URL) -> ClientError {
        if let parsed = try? APIJSON.makeDecoder().decode(APIErrorBody.self, from: body) {
            return ClientError(.api, terminalSafe(parsed.error.message, limit: 2000), status: status,
                               apiCode: terminalSafe(parsed.error.code.rawValue, limit: 100), apiBody: body)
        }
        // Not the API's shape: a proxy between us and the daemon answered. Its body is not shown.
        if status == 502 || status == 503 || status == 504 {
            return ClientError(.unreachable, "a proxy in front of \(server.absoluteString) could not reach the daemon", status: status)
        }
        let fallback = status == 401 ? "unauthorized" : status == 403 ? "forbidden" : status == 404 ? "not_found"
            : status == 409 ? "conflict" : "http_\(status)"
        return ClientError(.api, "the server answered without a Lockstep error body", status: status, apiCode: fallback)
    }

    static func classify(_ error: URLError, server: URL) -> ClientError {
        let address = server.absoluteString
        switch error.code {
        case .cannotConnectToHost, .networkConnectionLost, .notConnectedToInternet, .cannotLoadFromNetwork,
             .resourceUnavailable, .internationalRoamingOff, .dataNotAllowed, .callIsActive:
            return ClientError(.unreachable, "cannot connect to \(address) (is lockstep serve running there?)")
        case .cannotFindHost, .dnsLookupFailed:
            return ClientError(.unreachable, "cannot resolve the host of \(address)")
        case .timedOut:
            return ClientError(.unreachable, "\(address) did not answer in time (see --timeout)")
        case .secureConnectionFailed, .serverCertificateHasBadDate, .serverCertificateUntrusted,
             .serverCertificateHasUnknownRoot, .serverCertificateNotYetValid, .clientCertificateRejected,
             .clientCertificateRequired:
            return ClientError(.tls, "the TLS connection to \(address) failed: its certificate is not trusted or the handshake broke")
        case .badServerResponse, .cannotParseResponse, .zeroByteResource, .cannotDecodeRawData,
             .cannotDecodeContentData:
            return ClientError(.badResponse, "\(address) sent an answer that is not HTTP the client understands")
        case .cancelled:
            return ClientError(.unreachable, "the request to \(address) was cancelled")
        default:
            return ClientError(.unreachable, "the request to \(address) failed (URL error \(error.code.rawValue))")
        }
    }
}

/// Refuses every redirect so the Authorization header is never re-sent elsewhere.
private final class RefuseRedirects: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}
