import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization

/// A local stand-in for the parts of GitHub, GitLab and Gitea that Lockstep calls, speaking
/// their request and response JSON (from each forge's API documentation), plus a notification
/// receiver. It records every request, and can be told to fail the next ones (a 502, a 429 with
/// `Retry-After`, an answer that is not JSON) or to stop answering at all.
///
/// Base URLs: `http://127.0.0.1:PORT/github`, `…/gitlab/api/v4`, `…/gitea/api/v1`;
/// notifications go to `…/notify/NAME`. The repository is `acme/delivery` (GitLab: the
/// project `acme/delivery`, sent URL-encoded as `acme%2Fdelivery`).
public final class ForgeMock: Sendable {
    public enum Forge: String, Sendable, CaseIterable {
        case github, gitlab, gitea

        public var apiPath: String {
            switch self {
            case .github: "/github"
            case .gitlab: "/gitlab/api/v4"
            case .gitea: "/gitea/api/v1"
            }
        }
    }

    public struct Recorded: Sendable {
        public var method: String
        /// The path as sent (percent-encoding kept).
        public var path: String
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: Data
        public var status: Int
        public var time: Date

        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    public struct Comment: Sendable, Equatable {
        public var id: Int
        public var pull: Int
        public var body: String
        /// Every body it had, first to last.
        public var history: [String]
    }

    public struct Status: Sendable, Equatable {
        public var commit: String
        public var state: String
        public var context: String
        public var description: String
        public var targetURL: String?
    }

    /// A failure to answer the next request with.
    public enum Fault: Sendable {
        case status(Int)
        case rateLimited(retryAfterSeconds: Int)
        /// GitHub's primary limit: 403, remaining 0, reset at an epoch second.
        case quotaUsed(resetInSeconds: Int)
        case garbage
    }

    struct State {
        var requests: [Recorded] = []
        var pulls: [String: Int] = [:]
        var comments: [Comment] = []
        var statuses: [Status] = []
        var faults: [Fault] = []
        var nextID = 1000
    }

    public static let owner = "acme"
    public static let name = "delivery"
    public let token: String
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, any Error>?>(nil)
    private let boundPort = Mutex(0)
    public var port: Int { boundPort.withLock { $0 } }

    public init(token: String) {
        self.token = token
    }

    public func baseURL(_ forge: Forge) -> String { "http://127.0.0.1:\(port)\(forge.apiPath)" }
    public func notifyURL(_ name: String) -> String { "http://127.0.0.1:\(port)/notify/\(name)" }

    /// The pull request `number` merged as `commit`.
    public func addPull(_ number: Int, mergeCommit commit: String) {
        state.withLock { $0.pulls[commit] = number }
    }

    public func fail(next faults: [Fault]) {
        state.withLock { $0.faults += faults }
    }

    /// Forgets the failures not yet answered: the forge is back.
    public func clearFaults() {
        state.withLock { $0.faults.removeAll() }
    }

    public var requests: [Recorded] { state.withLock { $0.requests } }
    public var comments: [Comment] { state.withLock { $0.comments } }
    public var statuses: [Status] { state.withLock { $0.statuses } }
    public func notifications(_ name: String) -> [Recorded] {
        requests.filter { $0.path == "/notify/\(name)" && $0.status == 200 }
    }

    /// Listens on `port` (0: one the kernel picks) until ``stop()``.
    public func start(port wanted: Int = 0) async throws {
        let router = Router()
        router.add(middleware: Responder(mock: self))
        var logger = Logger(label: "forge-mock")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let application = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: wanted)),
                                      onServerRunning: { channel in
                                          if let port = channel.localAddress?.port { continuation.yield(port) }
                                      }, logger: logger)
        let running = Task { try await application.run() }
        task.withLock { $0 = running }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        continuation.finish()
        boundPort.withLock { $0 = port }
    }

    public func stop() async {
        let running = task.withLock { task in defer { task = nil }; return task }
        running?.cancel()
        _ = await running?.result
    }

    // MARK: Answering

    struct Responder: RouterMiddleware {
        typealias Context = BasicRequestContext
        let mock: ForgeMock

        func handle(_ request: Request, context: Context,
                    next: (Request, Context) async throws -> Response) async throws -> Response {
            let body = Data(buffer: try await request.body.collect(upTo: 4 << 20))
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let (status, answer, extra) = mock.answer(method: request.method.rawValue, path: request.uri.path,
                                                      query: request.uri.query ?? "", headers: headers, body: body)
            mock.state.withLock {
                $0.requests.append(Recorded(method: request.method.rawValue, path: request.uri.path, headers: headers,
                                            body: body, status: status, time: Date()))
            }
            var fields = HTTPFields()
            fields[.contentType] = "application/json; charset=utf-8"
            for (name, value) in extra { if let field = HTTPField.Name(name) { fields[field] = value } }
            return Response(status: .init(code: status), headers: fields,
                            body: .init(byteBuffer: ByteBuffer(bytes: Array(answer))))
        }
    }

    func answer(method: String, path: String, query: String, headers: [String: String],
                body: Data) -> (Int, Data, [String: String]) {
        if path.hasPrefix("/notify/") { return (200, Data("ok".utf8), [:]) }
        if let fault = state.withLock({ $0.faults.isEmpty ? nil : $0.faults.removeFirst() }) {
            switch fault {
            case .status(let code): return (code, Data(#"{"message":"Server Error"}"#.utf8), [:])
            case .rateLimited(let seconds):
                return (429, Data(#"{"message":"Retry later"}"#.utf8), ["Retry-After": "\(seconds)"])
            case .quotaUsed(let seconds):
                return (403, Data(#"{"message":"API rate limit exceeded"}"#.utf8),
                        ["x-ratelimit-remaining": "0", "x-ratelimit-reset": "\(Int(Date().timeIntervalSince1970) + seconds)"])
            case .garbage: return (200, Data("<html>upstream says hello</html>".utf8), [:])
            }
        }
        guard let forge = Forge.allCases.first(where: { path.hasPrefix($0.apiPath + "/") }) else { return Self.notFound }
        guard authorised(forge, headers) else { return (401, Data(#"{"message":"Bad credentials"}"#.utf8), [:]) }
        let rest = String(path.dropFirst(forge.apiPath.count))
        let repo: String
        switch forge {
        case .github, .gitea: repo = "/repos/\(Self.owner)/\(Self.name)/"
        case .gitlab: repo = "/projects/\(Self.owner)%2F\(Self.name)/"
        }
        guard rest.hasPrefix(repo) else { return Self.notFound }
        let parts = rest.dropFirst(repo.count).split(separator: "/").map(String.init)
        let input = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        switch (forge, method, parts.count) {
        // The pull request of a commit.
        case (.github, "GET", 3) where parts[0] == "commits" && parts[2] == "pulls":
            let pulls = state.withLock { $0.pulls[parts[1]] }.map { [githubPull($0, commit: parts[1])] } ?? []
            return Self.json(200, pulls)
        case (.gitlab, "GET", 4) where parts[0] == "repository" && parts[1] == "commits" && parts[3] == "merge_requests":
            let requests = state.withLock { $0.pulls[parts[2]] }.map { number -> [[String: Any]] in
                [["id": number + 90_000, "iid": number, "project_id": 7, "title": "Release", "state": "merged",
                  "merge_commit_sha": parts[2], "squash_commit_sha": NSNull(),
                  "web_url": "https://gitlab.example.com/acme/delivery/-/merge_requests/\(number)"]]
            } ?? []
            return Self.json(200, requests)
        case (.gitea, "GET", 3) where parts[0] == "commits" && parts[2] == "pull":
            guard let number = state.withLock({ $0.pulls[parts[1]] }) else { return Self.notFound }
            return Self.json(200, ["id": number + 90_000, "number": number, "state": "closed", "merged": true,
                                   "merge_commit_sha": parts[1],
                                   "html_url": "https://gitea.example.com/acme/delivery/pulls/\(number)"])
        // Comments.
        case (.github, "GET", 3) where parts[0] == "issues" && parts[2] == "comments",
             (.gitea, "GET", 3) where parts[0] == "issues" && parts[2] == "comments",
             (.gitlab, "GET", 3) where parts[0] == "merge_requests" && parts[2] == "notes":
            let pull = Int(parts[1]) ?? -1
            return Self.json(200, state.withLock { $0.comments }.filter { $0.pull == pull }.map { commentJSON($0, forge) })
        case (.github, "POST", 3) where parts[0] == "issues" && parts[2] == "comments",
             (.gitea, "POST", 3) where parts[0] == "issues" && parts[2] == "comments",
             (.gitlab, "POST", 3) where parts[0] == "merge_requests" && parts[2] == "notes":
            guard let text = input["body"] as? String, let pull = Int(parts[1]) else { return Self.unprocessable("body is missing") }
            if forge == .github, text.count > 65_536 {
                return Self.unprocessable("Body is too long (maximum is 65536 characters)")
            }
            let comment = state.withLock { state -> Comment in
                state.nextID += 1
                let comment = Comment(id: state.nextID, pull: pull, body: text, history: [text])
                state.comments.append(comment)
                return comment
            }
            return Self.json(201, commentJSON(comment, forge))
        case (.github, "PATCH", 3) where parts[0] == "issues" && parts[1] == "comments",
             (.gitea, "PATCH", 3) where parts[0] == "issues" && parts[1] == "comments",
             (.gitlab, "PUT", 4) where parts[0] == "merge_requests" && parts[2] == "notes":
            let id = Int(parts.last ?? "") ?? -1
            guard let text = input["body"] as? String else { return Self.unprocessable("body is missing") }
            if forge == .github, text.count > 65_536 {
                return Self.unprocessable("Body is too long (maximum is 65536 characters)")
            }
            let edited = state.withLock { state -> Comment? in
                guard let index = state.comments.firstIndex(where: { $0.id == id }) else { return nil }
                state.comments[index].body = text
                state.comments[index].history.append(text)
                return state.comments[index]
            }
            guard let edited else { return Self.notFound }
            return Self.json(200, commentJSON(edited, forge))
        // Commit statuses.
        case (_, "POST", 2) where parts[0] == "statuses":
            let context = (input[forge == .gitlab ? "name" : "context"] as? String) ?? "default"
            let status = Status(commit: parts[1], state: input["state"] as? String ?? "", context: context,
                                description: input["description"] as? String ?? "", targetURL: input["target_url"] as? String)
            let allowed: [String] = switch forge {
            case .github: ["error", "failure", "pending", "success"]
            case .gitlab: ["pending", "running", "success", "failed", "canceled", "skipped"]
            case .gitea: ["pending", "success", "error", "failure", "warning"]
            }
            guard allowed.contains(status.state) else { return Self.unprocessable("state is invalid") }
            if forge == .github, status.description.count > 140 {
                return Self.unprocessable("description is too long (maximum is 140 characters)")
            }
            let refused = state.withLock { state -> Bool in
                // GitLab refuses to "transition" a status to the state it is in.
                if forge == .gitlab, let last = state.statuses.last(where: { $0.commit == status.commit && $0.context == status.context }),
                   last.state == status.state { return true }
                state.statuses.append(status)
                return false
            }
            if refused {
                return (400, Data(#"{"message":"Cannot transition status via :enqueue from :pending"}"#.utf8), [:])
            }
            return Self.json(201, ["id": 1, "state": status.state, "context": status.context, "description": status.description,
                                   "target_url": status.targetURL.map { $0 as Any } ?? NSNull()])
        default:
            return Self.notFound
        }
    }

    func authorised(_ forge: Forge, _ headers: [String: String]) -> Bool {
        switch forge {
        case .github:
            headers["authorization"] == "Bearer \(token)" && headers["user-agent"]?.isEmpty == false
                && headers["accept"] == "application/vnd.github+json"
        case .gitlab: headers["private-token"] == token
        case .gitea: headers["authorization"] == "token \(token)"
        }
    }

    func githubPull(_ number: Int, commit: String) -> [String: Any] {
        ["id": number + 90_000, "number": number, "state": "closed", "merged_at": "2026-12-01T10:00:00Z",
         "merge_commit_sha": commit, "html_url": "https://github.com/acme/delivery/pull/\(number)"]
    }

    func commentJSON(_ comment: Comment, _ forge: Forge) -> [String: Any] {
        switch forge {
        case .github, .gitea:
            ["id": comment.id, "body": comment.body, "user": ["login": "lockstep-bot"],
             "html_url": "https://\(forge.rawValue).example.com/acme/delivery/pull/\(comment.pull)#issuecomment-\(comment.id)"]
        case .gitlab:
            ["id": comment.id, "body": comment.body, "author": ["username": "lockstep-bot"], "system": false,
             "noteable_type": "MergeRequest", "noteable_iid": comment.pull]
        }
    }

    static let notFound = (404, Data(#"{"message":"Not Found"}"#.utf8), [String: String]())

    static func unprocessable(_ message: String) -> (Int, Data, [String: String]) {
        json(422, ["message": message])
    }

    static func json(_ status: Int, _ object: Any) -> (Int, Data, [String: String]) {
        (status, (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), [:])
    }
}
