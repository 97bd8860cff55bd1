public import Foundation
import AsyncHTTPClient
import NIOCore
import NIOPosix
import NIOSSL

/// Why a request to the daemon failed.
///
/// `message` is client-safe: a fixed text of ours naming the server, never the token and never
/// a raw response body. The one exception is ``Code-swift.struct/api``: its `message` and
/// `apiCode` are the daemon's error body as sent, so a caller that prints them to a terminal
/// escapes control characters first.
public struct APIClientError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The request could not be built (an unusable server URL, a body that does not encode).
        public static let invalidRequest = Code(rawValue: "invalid_request")
        /// The daemon could not be reached: connection refused, timeout, DNS, a proxy that could not reach it.
        public static let unreachable = Code(rawValue: "unreachable")
        /// TLS failed: the certificate is not trusted or the handshake broke.
        public static let tls = Code(rawValue: "tls_failed")
        /// The server answered with a redirect, which is never followed.
        public static let redirected = Code(rawValue: "redirected")
        /// The server's answer is not what the API sends (a proxy's page, a truncated body).
        public static let badResponse = Code(rawValue: "bad_response")
        /// The server answered with an error status; `apiCode` holds the API's code.
        public static let api = Code(rawValue: "api")
    }

    public let code: Code
    public let message: String
    /// The HTTP status, when the server answered.
    public var status: Int?
    /// The API's stable error code (`refused_wrong_digest`, `not_found`, …), when it sent one.
    public var apiCode: String?
    /// The API's error body as it was sent.
    public var apiBody: Data?

    public init(_ code: Code, _ message: String, status: Int? = nil, apiCode: String? = nil, apiBody: Data? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.apiCode = apiCode
        self.apiBody = apiBody
    }

    public var description: String {
        "\(apiCode ?? code.rawValue): \(message)" + (status.map { " (HTTP \($0))" } ?? "")
    }
}

/// Turns a transport error of AsyncHTTPClient, NIO or NIOSSL into a client-safe error. Their
/// own descriptions name internal types and addresses, so none of their text is passed on.
enum TransportFailure {
    static func classify(_ error: any Error, server: String) -> APIClientError {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout, .readTimeout, .writeTimeout, .deadlineExceeded, .getConnectionFromPoolTimeout:
                return APIClientError(.unreachable, "\(server) did not answer in time (see --timeout)")
            case .tlsHandshakeTimeout:
                return APIClientError(.tls, "the TLS handshake with \(server) did not finish in time")
            case .cancelled, .requestStreamCancelled:
                return APIClientError(.unreachable, "the request to \(server) was cancelled")
            case .remoteConnectionClosed:
                return APIClientError(.unreachable, "\(server) closed the connection before answering")
            default:
                return APIClientError(.badResponse, "\(server) sent an answer that is not HTTP the client understands")
            }
        }
        if let error = error as? NIOConnectionError {
            if error.connectionErrors.isEmpty && (error.dnsAError != nil || error.dnsAAAAError != nil) {
                return APIClientError(.unreachable, "cannot resolve the host of \(server)")
            }
            return APIClientError(.unreachable, "cannot connect to \(server) (is lockstep serve running there?)")
        }
        if error is ChannelError || error is IOError {
            return APIClientError(.unreachable, "cannot connect to \(server) (is lockstep serve running there?)")
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return APIClientError(.tls, "the TLS connection to \(server) failed: its certificate is not trusted or the handshake broke")
        }
        if error is CancellationError {
            return APIClientError(.unreachable, "the request to \(server) was cancelled")
        }
        return APIClientError(.unreachable, "the request to \(server) failed")
    }
}
