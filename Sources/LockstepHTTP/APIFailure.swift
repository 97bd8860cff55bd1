import Foundation
import LockstepAPI
import HTTPTypes
import Hummingbird

/// An error response the HTTP layer sends: a status, a stable code and a client-safe
/// message. Nothing else becomes a response body: any other error turns into `internal`
/// with a fixed message, so a Swift error's text (paths, SQL, library detail) never
/// reaches a client.
struct APIFailure: Error, Sendable {
    let status: HTTPResponse.Status
    let code: APIErrorCode
    let message: String
    var headers: HTTPFields = [:]

    static func badRequest(_ message: String) -> APIFailure {
        APIFailure(status: .badRequest, code: .badRequest, message: message)
    }

    static func notFound(_ message: String) -> APIFailure {
        APIFailure(status: .notFound, code: .notFound, message: message)
    }

    static func unauthorized(_ message: String) -> APIFailure {
        // RFC 6750 §3: a 401 names the scheme the client should use.
        APIFailure(status: .unauthorized, code: .unauthorized, message: message,
                   headers: [.wwwAuthenticate: "Bearer realm=\"lockstep\""])
    }

    static func payloadTooLarge(limit: Int) -> APIFailure {
        APIFailure(status: .contentTooLarge, code: .payloadTooLarge,
                   message: "the request body is larger than \(limit) bytes")
    }

    static func methodNotAllowed(_ allowed: [HTTPRequest.Method]) -> APIFailure {
        let list = allowed.map(\.rawValue).joined(separator: ", ")
        return APIFailure(status: .methodNotAllowed, code: .methodNotAllowed,
                          message: "this path accepts \(list)", headers: [.allow: list])
    }

    static let `internal` = APIFailure(status: .internalServerError, code: .internal,
                                       message: "the daemon failed to handle the request; its log has the detail")

    static func refused(_ refusal: APIRefusal) -> APIFailure {
        APIFailure(status: refusal.code.isForbidden ? .forbidden : .conflict, code: .refused(refusal.code),
                   message: refusal.message)
    }

    var response: Response {
        var response = JSONResponse.make(APIErrorBody(code: code, message: message), status: status)
        response.headers.append(contentsOf: headers)
        return response
    }
}

enum JSONResponse {
    /// A JSON response. Bodies can hold plan renderings, so nothing is cached on the way.
    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let bytes: Data
        do {
            bytes = try APIJSON.makeEncoder().encode(value)
        } catch {
            // Our DTOs always encode; if one ever does not, say so without detail.
            bytes = Data(#"{"error":{"code":"internal","message":"the response could not be encoded"}}"#.utf8)
            return Response(status: .internalServerError, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    private static let headers: HTTPFields = {
        var fields: HTTPFields = [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"]
        if let noSniff = HTTPField.Name("X-Content-Type-Options") { fields[noSniff] = "nosniff" }
        return fields
    }()
}
