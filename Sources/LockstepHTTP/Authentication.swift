public import LockstepCore
import Hummingbird
import Synchronization

/// One API identity as the agent config names it: who, and the SHA-256 of their token.
/// The token itself is never configured, stored or logged (docs/THREAT-MODEL.md §4.1, stolen or guessed API tokens).
public struct APICredential: Sendable, Hashable {
    public var identity: IdentityName
    public var tokenSHA256: Digest

    public init(identity: IdentityName, tokenSHA256: Digest) {
        self.identity = identity
        self.tokenSHA256 = tokenSHA256
    }
}

/// A credential list the server refuses to use.
public struct APICredentialError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Two identities share one token hash.
        public static let duplicateToken = Code(rawValue: "duplicate_token")
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// The identities that may call the API, looked up by the SHA-256 of a presented token.
///
/// Replaceable while the server runs (a config reload): an identity removed from the
/// config is revoked for the next request, its token matches nothing and is refused.
public final class APITokenTable: Sendable {
    private struct Entry: Sendable {
        let identity: IdentityName
        let hashHex: [UInt8]
    }

    private let entries: Mutex<[Entry]>

    /// Refuses two identities with one token hash: one token would then count as two
    /// distinct approvers and a two-person rule could be met by one person.
    public init(_ credentials: [APICredential]) throws(APICredentialError) {
        self.entries = Mutex(try Self.validated(credentials))
    }

    /// Swaps in a new credential list; nothing changes when it is invalid.
    public func replace(with credentials: [APICredential]) throws(APICredentialError) {
        let new = try Self.validated(credentials)
        entries.withLock { $0 = new }
    }

    /// The identity whose configured hash equals SHA-256(`token`), or nil.
    ///
    /// The hash of the token is compared with *every* configured hash in constant time,
    /// with no early exit, so the response time tells an attacker neither how many
    /// leading characters of a hash they guessed nor where in the list a match sits.
    public func identity(forToken token: some StringProtocol) -> IdentityName? {
        let presented = Array(Digest.sha256(of: token.utf8).rawValue.utf8)
        let snapshot = entries.withLock { $0 }
        var found: IdentityName?
        for entry in snapshot {
            let equal = ConstantTime.equal(entry.hashHex, presented)
            if equal { found = entry.identity }
        }
        return found
    }

    private static func validated(_ credentials: [APICredential]) throws(APICredentialError) -> [Entry] {
        var owner: [Digest: IdentityName] = [:]
        for credential in credentials {
            if let other = owner[credential.tokenSHA256], other != credential.identity {
                throw APICredentialError(.duplicateToken,
                                         "identities \(other) and \(credential.identity) have the same token hash; each identity needs its own token")
            }
            owner[credential.tokenSHA256] = credential.identity
        }
        return credentials.map { Entry(identity: $0.identity, hashHex: Array($0.tokenSHA256.rawValue.utf8)) }
    }
}

/// Comparisons whose running time does not depend on where two values differ.
public enum ConstantTime {
    /// Whether `lhs` and `rhs` hold the same bytes. Every byte of the longer input is
    /// visited whatever the contents; only the lengths (public: hashes are 64 hex digits)
    /// can make the work differ.
    public static func equal(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference: UInt = lhs.count == rhs.count ? 0 : 1
        let count = max(lhs.count, rhs.count)
        var index = 0
        while index < count {
            let left: UInt8 = index < lhs.count ? lhs[index] : 0
            let right: UInt8 = index < rhs.count ? rhs[index] : 0
            difference |= UInt(left ^ right)
            index += 1
        }
        return difference == 0
    }
}

/// Why a request was not authenticated (reported, never shown with the token).
public struct APIAuthenticationFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let missingToken = Code(rawValue: "missing_token")
        /// Not `Bearer <token>`, several Authorization headers, or a token with characters a token cannot have.
        public static let malformedAuthorization = Code(rawValue: "malformed_authorization")
        /// No configured identity has this token (never issued, mistyped, or revoked).
        public static let unknownToken = Code(rawValue: "unknown_token")
        /// A webhook delivery that none of its forge's secrets vouches for.
        public static let webhookSignature = Code(rawValue: "webhook_signature")
    }

    public let code: Code
    /// Client-safe: says what was wrong, never echoes the header.
    public let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// The answer to a failed authentication, bearer token or webhook signature alike: counted by
/// the client's address, 401 until the limiter's limits and 429 with `Retry-After` past them,
/// and reported to `onRefusal` (never with what was presented).
func refuseAuthentication(_ failure: APIAuthenticationFailure, request: Request, context: APIRequestContext,
                          limiter: FailedAuthenticationLimiter,
                          onRefusal: @Sendable (APIAccessRefusal) async -> Void) async -> APIFailure {
    let retryAfter = limiter.recordFailure(source: context.remoteHost ?? "local")
    let answer: APIFailure
    if let retryAfter {
        answer = APIFailure(status: .tooManyRequests, code: .rateLimited,
                            message: "too many failed authentications from this address; retry after \(retryAfter) s",
                            headers: [.retryAfter: "\(retryAfter)"])
    } else {
        answer = APIFailure.unauthorized(failure.description)
    }
    await onRefusal(APIAccessRefusal(
        status: Int(answer.status.code), code: answer.code, authenticationFailure: failure.code, identity: nil,
        method: request.method.rawValue, path: displaySafe(request.uri.path, limit: 200),
        remoteAddress: context.remoteAddress, remoteHost: context.remoteHost, message: answer.message))
    return answer
}

/// Reads the bearer token out of the `Authorization` header values.
enum BearerToken {
    /// Longest token accepted; longer ones are refused before hashing.
    static let maximumLength = 4096

    static func parse(_ values: [String]) -> Result<Substring, APIAuthenticationFailure> {
        guard let value = values.first else {
            return .failure(.init(.missingToken, "an Authorization: Bearer token is required"))
        }
        guard values.count == 1 else {
            return .failure(.init(.malformedAuthorization, "send exactly one Authorization header"))
        }
        // RFC 6750: the scheme is case-insensitive, then one or more spaces, then the token.
        let scheme = value.prefix { $0 != " " }
        guard scheme.lowercased() == "bearer" else {
            return .failure(.init(.malformedAuthorization, "the Authorization header must use the Bearer scheme"))
        }
        let token = value.dropFirst(scheme.count).drop { $0 == " " }
        guard !token.isEmpty else {
            return .failure(.init(.missingToken, "the Authorization header carries no token"))
        }
        guard token.utf8.count <= maximumLength, token.utf8.allSatisfy(isToken68) else {
            return .failure(.init(.malformedAuthorization, "the bearer token is not well-formed"))
        }
        return .success(token)
    }

    /// `token68` characters (RFC 7235): letters, digits, `-._~+/`, and trailing `=`.
    private static func isToken68(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"),
             UInt8(ascii: "/"), UInt8(ascii: "="):
            true
        default:
            false
        }
    }
}

/// A refused request, handed to the server's `onRefusal` closure so the daemon can audit it
/// (docs/THREAT-MODEL.md §4.1: every refusal audited). It never carries the token.
public struct APIAccessRefusal: Sendable, Hashable {
    /// 401, 403 or 429.
    public var status: Int
    /// The error code the client received (`unauthorized`, `refused_identity_not_allowed`, …).
    public var code: APIErrorCode
    /// Why authentication failed (401 only).
    public var authenticationFailure: APIAuthenticationFailure.Code?
    /// The authenticated identity (403 only; a 401 has none).
    public var identity: IdentityName?
    public var method: String
    /// The request path without its query, escaped and cut (it is client input).
    public var path: String
    /// The peer's address, when the request came over a socket.
    public var remoteAddress: String?
    /// The peer's IP address alone (no port): what refusals are counted by.
    public var remoteHost: String?
    /// Client-safe message, as sent in the response.
    public var message: String

    /// - Parameter status: 401 or 403, or 429 for a failed authentication past the limit
    ///   (``FailedAuthenticationLimiter``).
    public init(status: Int, code: APIErrorCode, authenticationFailure: APIAuthenticationFailure.Code?,
                identity: IdentityName?, method: String, path: String, remoteAddress: String?,
                remoteHost: String? = nil, message: String) {
        self.status = status
        self.code = code
        self.authenticationFailure = authenticationFailure
        self.identity = identity
        self.method = method
        self.path = path
        self.remoteAddress = remoteAddress
        self.remoteHost = remoteHost
        self.message = message
    }
}
