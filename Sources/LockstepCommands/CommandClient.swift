import Foundation
import LockstepClient

/// The API client as the client commands use it: LockstepClient's ``LockstepClient/APIClient``
/// with its errors turned into ``ClientError`` (exit statuses, terminal-safe text).
struct CommandClient: Sendable {
    /// The body of a successful response and its HTTP status.
    struct Reply: Sendable {
        let status: Int
        let body: Data
    }

    let client: APIClient

    /// Runs `body` with a client for `settings` and shuts the client down afterwards.
    static func with<Result: Sendable>(_ settings: ClientSettings,
                                       _ body: (CommandClient) async throws(ClientError) -> Result) async throws(ClientError) -> Result {
        let connection = APIClient.Connection(server: settings.server, token: settings.token,
                                              timeout: .seconds(settings.timeout))
        return try await APIClient.withClient(connection) { client throws(ClientError) in
            try await body(CommandClient(client: client))
        }
    }

    func get(_ path: String, query: [URLQueryItem] = []) async throws(ClientError) -> Reply {
        do {
            let reply = try await client.get(path, query: query)
            return Reply(status: reply.status, body: reply.body)
        } catch {
            throw ClientError(error)
        }
    }

    func post(_ path: String, body: some Encodable) async throws(ClientError) -> Reply {
        do {
            let reply = try await client.post(path, body: body)
            return Reply(status: reply.status, body: reply.body)
        } catch {
            throw ClientError(error)
        }
    }

    /// Decodes a reply as the API's `T`; anything else is a bad response, never shown raw.
    func decode<T: Decodable>(_ type: T.Type, from reply: Reply) throws(ClientError) -> T {
        do {
            return try client.decode(type, from: APIClient.Reply(status: reply.status, body: reply.body))
        } catch {
            throw ClientError(error)
        }
    }
}

extension ClientError {
    /// The client library's error with this command line's codes; the daemon's own text
    /// (an error body's code and message) is made terminal-safe here, before anything prints it.
    init(_ error: APIClientError) {
        let code: Code = switch error.code {
        case .invalidRequest: .usage
        case .unreachable: .unreachable
        case .tls: .tls
        case .redirected: .redirected
        case .api: .api
        default: .badResponse
        }
        let fromServer = error.code == .api && error.apiBody != nil
        self.init(code, fromServer ? terminalSafe(error.message, limit: 2000) : error.message, status: error.status,
                  apiCode: error.apiCode.map { terminalSafe($0, limit: 100) }, apiBody: error.apiBody)
    }
}
