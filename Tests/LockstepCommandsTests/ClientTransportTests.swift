import APITestSupport
import Foundation
import Hummingbird
import Synchronization
import Testing

/// What the CLI's HTTP client (LockstepClient) does with hostile or odd answers, through the
/// built binary against real loopback listeners.
@Suite("lockstep client transport")
struct ClientTransportTests {
    @Test("a redirected POST (307, which keeps method and body) is not followed: neither the token nor the body reaches the target")
    func postRedirectNotFollowed() async throws {
        let home = try Scratch()
        let seen = Mutex<[String]>([])
        // The address a hostile redirect points at: it records every request it gets.
        let collector = Router()
        collector.post("**") { request, _ -> String in
            seen.withLock { $0.append("POST \(request.uri.path) \(request.headers[.authorization] ?? "none")") }
            return "{}"
        }
        collector.get("**") { request, _ -> String in
            seen.withLock { $0.append("GET \(request.uri.path) \(request.headers[.authorization] ?? "none")") }
            return "{}"
        }
        try await withRouter(collector) { collectorPort in
            let redirector = Router()
            redirector.post("**") { request, _ -> Response in
                Response(status: .temporaryRedirect,
                         headers: [.location: "http://localhost:\(collectorPort)\(request.uri.path)"])
            }
            try await withRouter(redirector) { redirectorPort in
                let token = try home.tokenFile(Fixture.aliceToken)
                let result = try await CLI.run(["reject", "run-dev-1", "--reason", "not this one",
                                                "--server", "http://127.0.0.1:\(redirectorPort)", "--token-file", token],
                                               home: home)
                #expect(result.status == 1)
                #expect(result.stderr.hasPrefix("error: redirected: "), "\(result.stderr)")
                #expect(result.stderr.contains("(HTTP 307)"))
                #expect(!result.stderr.contains(Fixture.aliceToken))
            }
        }
        #expect(seen.withLock { $0 }.isEmpty, "the redirect target received a request: \(seen.withLock { $0 })")
    }

    @Test("an error body's code and message from the server are shown with terminal escapes neutralised")
    func hostileErrorBody() async throws {
        let home = try Scratch()
        let hostile = Router()
        hostile.get("**") { _, _ -> Response in
            let body = #"{"error":{"code":"refused_x\u001b]0;owned\u0007","message":"no\u001b[2J\rAPPROVED"}}"#
            return Response(status: .conflict, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        try await withRouter(hostile) { port in
            let token = try home.tokenFile(Fixture.aliceToken)
            let result = try await CLI.run(["show", "run-dev-1", "--server", "http://127.0.0.1:\(port)", "--token-file", token],
                                           home: home)
            #expect(result.status == 3, "a 409 is a refusal")
            #expect(!result.stderr.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x0D },
                    "a raw escape, bell or carriage return reached the terminal: \(result.stderr.debugDescription)")
            #expect(result.stderr.contains("refused_x\\u{1b}]0;owned\\u{7}"), "shown escaped: \(result.stderr)")
            #expect(result.stderr.contains("no\\u{1b}[2J\\u{d}APPROVED"), "shown escaped: \(result.stderr)")
        }
    }
}
