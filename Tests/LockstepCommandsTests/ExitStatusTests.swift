import APITestSupport
import Foundation
import Hummingbird
import LockstepCore
import LockstepHTTP
import Logging
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses a script can branch on, with the server's error code and message shown
/// and nothing changed when the gate refuses.
@Suite("lockstep client exit statuses")
struct ExitStatusTests {
    @Test("refused (403 and 409) exits 3 with the server's code and message, and changes nothing")
    func refused() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            // carol may not approve prod: 403.
            let forbidden = try await VerbTests.run(["approve", "run-prod-1", "--digest", Fixture.planDigest.rawValue],
                                                    url: url, home: home, token: Fixture.carolToken)
            #expect(forbidden.status == 3)
            #expect(forbidden.stderr.hasPrefix("error: refused_identity_not_allowed: "))
            #expect(forbidden.stderr.contains("(HTTP 403)"))
            #expect(forbidden.stdout.isEmpty)

            // A digest of another plan: 409.
            let wrongDigest = try await VerbTests.run(["approve", "run-prod-1", "--digest", Fixture.otherDigest.rawValue],
                                                      url: url, home: home, token: Fixture.bobToken)
            #expect(wrongDigest.status == 3)
            #expect(wrongDigest.stderr.hasPrefix("error: refused_wrong_digest: "))
            #expect(wrongDigest.stderr.contains("(HTTP 409)"))

            // --json: the API's error body on stdout for scripts, the message on stderr for people.
            let json = try await VerbTests.run(["reject", "run-dev-0", "--reason", "too late", "--json"], url: url, home: home)
            #expect(json.status == 3)
            let body = try APIJSON.makeDecoder().decode(APIErrorBody.self, from: Data(json.stdout.utf8))
            #expect(body.error.code == .refused(.runStateInvalid))
            #expect(json.stderr.contains("refused_run_state_invalid: run run-dev-0 is verified, too late to reject"))

            let resolve = try await VerbTests.run(["resolve", "run-dev-1", "--as", "failed", "--reason", "x"], url: url, home: home)
            #expect(resolve.status == 3)
            let rollback = try await VerbTests.run(["rollback", "dev", "--to", "0.9.0"], url: url, home: home)
            #expect(rollback.status == 3)
            #expect(rollback.stderr.contains("refused_rollback_version_not_accepted"))
        }
        #expect(backend.calls.mutations.isEmpty, "a refused request changed something: \(backend.calls.mutations)")
    }

    @Test("not found exits 4")
    func notFound() async throws {
        let home = try Scratch()
        try await withServer { url in
            let show = try await VerbTests.run(["show", "run-nope"], url: url, home: home)
            #expect(show.status == 4)
            #expect(show.stderr == "error: not_found: there is no run run-nope (HTTP 404)\n")
            let approve = try await VerbTests.run(["approve", "run-nope", "--digest", Fixture.planDigest.rawValue], url: url, home: home)
            #expect(approve.status == 4)
            let rollback = try await VerbTests.run(["rollback", "qa", "--to", "1.1.0", "--json"], url: url, home: home)
            #expect(rollback.status == 4)
            #expect(try APIJSON.makeDecoder().decode(APIErrorBody.self, from: Data(rollback.stdout.utf8)).error.code == .notFound)
        }
    }

    @Test("a wrong token exits 6 and is never echoed")
    func unauthorized() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            for arguments in [["status"], ["approve", "run-dev-1", "--digest", Fixture.planDigest.rawValue], ["runs", "--json"]] {
                let result = try await VerbTests.run(arguments, url: url, home: home, token: Fixture.strangerToken)
                #expect(result.status == 6, "\(arguments)")
                #expect(result.stderr.hasPrefix("error: unauthorized: "), "\(result.stderr)")
                #expect(result.stderr.contains("(HTTP 401)"))
            }
            // The same through the environment variable holding the value.
            let env = try await CLI.run(["status", "--server", url], home: home, environment: ["LOCKSTEP_TOKEN": Fixture.strangerToken])
            #expect(env.status == 6)
        }
        #expect(backend.calls.all.isEmpty, "an unauthenticated request reached the backend")
    }

    @Test("an unreachable daemon exits 5: connection refused, unknown host, no answer in time")
    func unreachable() async throws {
        let home = try Scratch()
        let token = try home.tokenFile(Fixture.aliceToken)

        // A port that is bound but not listening refuses connections, and nobody else can take it meanwhile.
        let closed = try BoundSocket(listening: false)
        let refused = try await CLI.run(["status", "--server", "http://127.0.0.1:\(closed.port)", "--token-file", token], home: home)
        #expect(refused.status == 5)
        #expect(refused.stderr == "error: unreachable: cannot connect to http://127.0.0.1:\(closed.port) (is lockstep serve running there?)\n")
        let refusedJSON = try await CLI.run(["runs", "--json", "--server", "http://127.0.0.1:\(closed.port)", "--token-file", token],
                                            home: home)
        #expect(refusedJSON.status == 5)
        #expect(try APIJSON.makeDecoder().decode(APIErrorBody.self, from: Data(refusedJSON.stdout.utf8)).error.code.rawValue
                == "unreachable")

        // .invalid never resolves (RFC 2606).
        let dns = try await CLI.run(["status", "--server", "http://lockstep.invalid:8420", "--token-file", token], home: home)
        #expect(dns.status == 5)
        #expect(dns.stderr.contains("unreachable: "), "\(dns.stderr)")

        // Listening, but never answering: the client gives up after --timeout.
        let silent = try BoundSocket(listening: true)
        let timeout = try await CLI.run(["show", "run-dev-1", "--timeout", "1", "--server", "http://127.0.0.1:\(silent.port)",
                                         "--token-file", token], home: home)
        #expect(timeout.status == 5)
        #expect(timeout.stderr.contains("did not answer in time"), "\(timeout.stderr)")
    }

    @Test("usage errors exit 1 before anything is sent")
    func usage() async throws {
        let home = try Scratch()
        let backend = CannedBackend()
        try await withServer(backend) { url in
            let cases: [([String], String)] = [
                (["show", "../etc"], "RUN: run id"),
                (["approve", "run-dev-1", "--digest", "abc"], "--digest: digest"),
                (["runs", "--target", "app"], "--target must be PROJECT/ENVIRONMENT"),
                (["runs", "--state", "nonsense"], "is not a run state"),
                (["rollback", "dev", "--to", "latest"], "--to: "),
                (["resolve", "run-stg-0", "--as", "maybe", "--reason", "x"], "--as must be applied or failed"),
                (["reject", "run-dev-1", "--reason", "  "], "--reason is empty"),
                (["reject", "run-dev-1", "--reason", "line\nforged audit line"], "one line of text"),
                (["status", "--timeout", "0"], "--timeout"),
            ]
            for (arguments, expected) in cases {
                let result = try await VerbTests.run(arguments, url: url, home: home)
                #expect(result.status == 1, "\(arguments): \(result.stderr)")
                #expect(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            }
            let badURL = try await CLI.run(["status", "--server", "ftp://example.com"], home: home,
                                           environment: ["LOCKSTEP_TOKEN": Fixture.aliceToken])
            #expect(badURL.status == 1)
            let userinfo = try await CLI.run(["status", "--server", "http://alice:secret@127.0.0.1:1"], home: home,
                                             environment: ["LOCKSTEP_TOKEN": Fixture.aliceToken])
            #expect(userinfo.status == 1)
            #expect(userinfo.stderr.contains("must not carry a user or password") && !userinfo.stderr.contains("secret"))
            // The argument parser's own errors keep its usage status.
            let missing = try await CLI.run(["approve", "run-dev-1"], home: home)
            #expect(missing.status == 64)
        }
        #expect(backend.calls.all.isEmpty, "an invalid command line reached the daemon: \(backend.calls.all)")
    }

    @Test("a redirect is never followed, so the token is not sent to another address")
    func redirectNotFollowed() async throws {
        let home = try Scratch()
        let seen = Mutex<[String]>([])
        // The address a hostile redirect points at: it records every Authorization header it gets.
        let collector = Router()
        collector.get("**") { request, _ -> String in
            seen.withLock { $0.append(request.headers[.authorization] ?? "none") }
            return #"{"environments":[]}"#
        }
        try await withRouter(collector) { collectorPort in
            let redirector = Router()
            redirector.get("**") { _, _ -> Response in
                Response(status: .found, headers: [.location: "http://localhost:\(collectorPort)/api/v1/environments"])
            }
            try await withRouter(redirector) { redirectorPort in
                let token = try home.tokenFile(Fixture.aliceToken)
                let result = try await CLI.run(["status", "--server", "http://127.0.0.1:\(redirectorPort)", "--token-file", token],
                                               home: home)
                #expect(result.status == 1)
                #expect(result.stderr.hasPrefix("error: redirected: "), "\(result.stderr)")
                #expect(result.stderr.contains("(HTTP 302)"))
            }
        }
        #expect(seen.withLock { $0 }.isEmpty, "the redirect target received a request: \(seen.withLock { $0 })")
    }

    @Test("an answer that is not the API's (a proxy page) is an error that does not print the page")
    func foreignAnswer() async throws {
        let home = try Scratch()
        let proxy = Router()
        proxy.get("**") { _, _ -> Response in
            Response(status: .badGateway, headers: [.contentType: "text/html"],
                     body: .init(byteBuffer: ByteBuffer(string: "<html>upstream secret-internal-host down</html>")))
        }
        proxy.post("**") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html"],
                     body: .init(byteBuffer: ByteBuffer(string: "<html>welcome secret-internal-host</html>")))
        }
        try await withRouter(proxy) { port in
            let token = try home.tokenFile(Fixture.aliceToken)
            let down = try await CLI.run(["status", "--server", "http://127.0.0.1:\(port)", "--token-file", token], home: home)
            #expect(down.status == 5, "a proxy that cannot reach the daemon is the daemon being unreachable")
            #expect(down.stderr.contains("a proxy in front of") && !down.stderr.contains("secret-internal-host"))
            let garbage = try await CLI.run(["reject", "run-dev-1", "--reason", "x", "--server", "http://127.0.0.1:\(port)",
                                             "--token-file", token], home: home)
            #expect(garbage.status == 1)
            #expect(garbage.stderr.hasPrefix("error: bad_response: ") && !garbage.stderr.contains("secret-internal-host"))
        }
    }
}

/// A TCP socket on 127.0.0.1 that holds a port: without `listen` a connection is refused,
/// with it the kernel accepts connections that nobody ever answers.
final class BoundSocket: Sendable {
    let descriptor: Int32
    let port: Int

    init(listening: Bool) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw TestFailure("bind() failed")
        }
        if listening {
            guard listen(fd, 16) == 0 else {
                close(fd)
                throw TestFailure("listen() failed")
            }
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: actual.sin_port))
    }

    deinit { close(descriptor) }
}

/// Serves `router` on 127.0.0.1 (a port the kernel picks) for the duration of `body`.
func withRouter(_ router: Router<BasicRequestContext>, _ body: (Int) async throws -> Void) async throws {
    var logger = Logger(label: "lockstep.cli.test.router")
    // Cancelling the server at the end of a test logs an error; nothing here asserts on logs.
    logger.logLevel = .critical
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let application = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                  onServerRunning: { channel in
                                      if let port = channel.localAddress?.port { continuation.yield(port) }
                                  }, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { continuation.finish() }
            try await application.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            group.cancelAll()
            throw TestFailure("the router did not start listening")
        }
        do {
            try await body(port)
        } catch {
            group.cancelAll()
            throw error
        }
        group.cancelAll()
    }
}
