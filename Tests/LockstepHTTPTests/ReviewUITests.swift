import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LockstepAPI
import LockstepCore
@testable import LockstepHTTP
import Testing

/// A browser as the router sees it: the cookies it holds, sent back on each request.
struct Browser {
    var cookies: [String: String] = [:]

    var cookieHeader: HTTPFields {
        cookies.isEmpty ? [:] : [.cookie: cookies.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")]
    }

    mutating func keep(_ response: TestResponse) {
        for value in response.headers[values: .setCookie] {
            let pair = value.split(separator: ";").first.map(String.init) ?? ""
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 else { continue }
            if value.contains("Max-Age=0") { cookies[parts[0]] = nil } else { cookies[parts[0]] = parts[1] }
        }
    }

    /// The value of the first field `name` in `html`, or in the form posting to `action` when given.
    static func field(_ name: String, in html: String, form action: String? = nil) -> String? {
        var rest = Substring(html)
        if let action {
            guard let start = html.range(of: "action=\"\(action)\"") else { return nil }
            rest = html[start.upperBound...]
            if let end = rest.range(of: "</form>") { rest = rest[..<end.lowerBound] }
        }
        guard let range = rest.range(of: "name=\"\(name)\" value=\"") else { return nil }
        return String(rest[range.upperBound...].prefix { $0 != "\"" })
    }

    static func form(_ fields: [String: String]) -> ByteBuffer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return ByteBuffer(string: fields.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&"))
    }

    static let formType: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    /// Signs in with `token`; returns the sign-in answer.
    mutating func signIn(_ client: some TestClientProtocol, token: String) async throws -> TestResponse {
        let page = try await client.execute(uri: "/ui/signin", method: .get, headers: cookieHeader)
        keep(page)
        let csrf = try #require(Self.field("csrf", in: String(buffer: page.body)))
        var headers = cookieHeader
        headers.append(contentsOf: Self.formType)
        let answer = try await client.execute(uri: "/ui/signin", method: .post, headers: headers,
                                              body: Self.form(["csrf": csrf, "token": token]))
        keep(answer)
        return answer
    }

    func get(_ client: some TestClientProtocol, _ uri: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get, headers: cookieHeader)
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ fields: [String: String], extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = cookieHeader
        headers.append(contentsOf: Self.formType)
        headers.append(contentsOf: extra)
        return try await client.execute(uri: uri, method: .post, headers: headers, body: Self.form(fields))
    }
}

@Suite("Review UI: sign-in, pages, forms, CSRF, escaping and authorisation, through the router")
struct ReviewUITests {
    @Test("sign-in exchanges a valid token for an HttpOnly, SameSite=Strict session cookie; a wrong token is 401 and reported")
    func signIn() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            var stranger = Browser()
            let refused = try await stranger.signIn(client, token: "not-a-token-at-all")
            #expect(refused.status == .unauthorized)
            #expect(String(buffer: refused.body).contains("That token is not valid."))
            #expect(stranger.cookies[ReviewUI.sessionCookie] == nil)

            var alice = Browser()
            let answer = try await alice.signIn(client, token: Fixture.aliceToken)
            #expect(answer.status == .seeOther && answer.headers[.location] == "/ui/board")
            let cookie = try #require(answer.headers[values: .setCookie].first { $0.hasPrefix(ReviewUI.sessionCookie + "=") })
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"))
            #expect(!cookie.contains("Secure"), "no public https URL in this harness")
            #expect(!cookie.contains(Fixture.aliceToken), "the browser never holds the token")
            #expect(harness.sessionsCount() == 1)
        }
        #expect(harness.refusals.all.count == 1 && harness.refusals.all.first?.status == 401)
    }

    @Test("with a public https URL the cookies are Secure")
    func secureCookies() async throws {
        var harness = try Harness()
        harness.secureCookies = true
        try await harness.application().test(.router) { client in
            var alice = Browser()
            let answer = try await alice.signIn(client, token: Fixture.aliceToken)
            #expect(answer.headers[values: .setCookie].allSatisfy { $0.contains("; Secure") })
        }
    }

    @Test("a sign-in posted without the sign-in page's token (from another site) signs no one in")
    func signInCSRF() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let forged = try await Browser().post(client, "/ui/signin", ["csrf": String(repeating: "a", count: 64), "token": Fixture.aliceToken])
            #expect(forged.status == .forbidden)
            #expect(!forged.headers[values: .setCookie].contains { $0.hasPrefix(ReviewUI.sessionCookie + "=") && !$0.contains("Max-Age=0") })
            #expect(harness.sessionsCount() == 0)
        }
    }

    @Test("pages need a session; signed in, the board shows environments, versions, the pending run, with strict headers")
    func boardAndHeaders() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            let anonymous = try await Browser().get(client, "/ui/board")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/ui/signin")
            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            let board = try await alice.get(client, "/ui/board")
            #expect(board.status == .ok)
            #expect(board.headers[.contentSecurityPolicy] == ReviewUI.contentSecurityPolicy)
            #expect(board.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            #expect(board.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(board.headers[.cacheControl] == "no-store")
            let html = String(buffer: board.body)
            #expect(html.contains("<a href=\"/ui/runs/run-dev-1\">1.2.0 · awaiting_approval</a>"))
            #expect(html.contains("applied <b>1.1.0</b>") && html.contains("desired <b>1.2.0</b>"))
            #expect(html.contains("<div class=\"warn\">2 newer tags rejected</div>"), "dev/v9.9.9 and dev/vnext were refused")
            #expect(!html.contains("<script"), "no script on any page")
            let tags = try await alice.get(client, "/ui/environments/dev/tags")
            #expect(String(buffer: tags.body).contains("dev/v9.9.9"))
        }
    }

    @Test("a reviewer who may not approve prod sees no approve button, and a forged approval is refused by the gate's rules")
    func authorisation() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            var carol = Browser()
            _ = try await carol.signIn(client, token: Fixture.carolToken)
            let page = String(buffer: try await carol.get(client, "/ui/runs/run-prod-1").body)
            #expect(page.contains("May still approve: alice, bob"))
            #expect(!page.contains("action=\"/ui/runs/run-prod-1/approve\""), "no approve form for carol on prod")
            let csrf = try #require(Browser.field("csrf", in: page))
            let forged = try await carol.post(client, "/ui/runs/run-prod-1/approve", ["csrf": csrf, "digest": Fixture.planDigest.rawValue])
            #expect(forged.status == .forbidden)
            #expect(String(buffer: forged.body).contains("Refused"))

            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            let alicePage = String(buffer: try await alice.get(client, "/ui/runs/run-prod-1").body)
            #expect(alicePage.contains("action=\"/ui/runs/run-prod-1/approve\""))
            let aliceCSRF = try #require(Browser.field("csrf", in: alicePage, form: "/ui/runs/run-prod-1/approve"))
            #expect(aliceCSRF.count == 64)
            #expect(Browser.field("digest", in: alicePage, form: "/ui/runs/run-prod-1/approve") == Fixture.planDigest.rawValue)
            #expect(Browser.field("csrf", in: alicePage, form: "/ui/runs/run-prod-1/reject") == aliceCSRF)
            let approved = try await alice.post(client, "/ui/runs/run-prod-1/approve", ["csrf": aliceCSRF, "digest": Fixture.planDigest.rawValue])
            #expect(approved.status == .seeOther && approved.headers[.location] == "/ui/runs/run-prod-1")
        }
        #expect(harness.backend.calls.mutations == ["accepted approve run-prod-1 by alice"])
        #expect(harness.backend.calls.all.contains("approve run-prod-1 by carol digest \(Fixture.planDigest)"))
    }

    @Test("a form without the session's CSRF token, with another session's, or from another site changes nothing")
    func csrf() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            var bob = Browser()
            _ = try await bob.signIn(client, token: Fixture.bobToken)
            let bobCSRF = try #require(Browser.field("csrf", in: String(buffer: try await bob.get(client, "/ui/board").body)))
            let aliceCSRF = try #require(Browser.field("csrf", in: String(buffer: try await alice.get(client, "/ui/board").body)))
            let digest = Fixture.planDigest.rawValue
            let missing = try await alice.post(client, "/ui/runs/run-dev-1/approve", ["digest": digest])
            let borrowed = try await alice.post(client, "/ui/runs/run-dev-1/approve", ["csrf": bobCSRF, "digest": digest])
            let crossSite = try await alice.post(client, "/ui/runs/run-dev-1/approve", ["csrf": aliceCSRF, "digest": digest],
                                                 extra: [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"])
            let otherOrigin = try await alice.post(client, "/ui/runs/run-dev-1/reject", ["csrf": aliceCSRF, "reason": "x"],
                                                   extra: [HTTPField.Name("Origin")!: "https://evil.example"])
            for response in [missing, borrowed, crossSite, otherOrigin] {
                #expect(response.status == .forbidden)
            }
            let noSession = try await Browser().post(client, "/ui/runs/run-dev-1/approve", ["csrf": aliceCSRF, "digest": digest])
            #expect(noSession.status == .forbidden)
        }
        #expect(!harness.backend.calls.all.contains { $0.hasPrefix("approve") || $0.hasPrefix("reject") }, "\(harness.backend.calls.all)")
    }

    @Test("everything from the repository or terraform is shown as text: tag names, addresses, plan text, reasons")
    func escaping() async throws {
        var harness = try Harness()
        var hostile = Fixture.devRun
        hostile.tag = "dev/v1.2.0<script>alert(1)</script>"
        hostile.summary?.destroyedAddresses = ["null_resource.x[\"<img src=x onerror=alert(2)>\"]"]
        hostile.planRendering = "  # null_resource.x[\"</pre><script>alert(3)</script>\"] will be destroyed\n  - x = \"' onmouseover='alert(4)\"\n"
        hostile.transitions[0].detail = "<iframe src=//evil.example>"
        hostile.tagMessage = "notes <svg onload=alert(5)>"
        hostile.commitMessage = "Merge pull request #7 from x/<b>y</b>"
        harness.backend.runDetails = [hostile]
        try await harness.application().test(.router) { client in
            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            let html = String(buffer: try await alice.get(client, "/ui/runs/run-dev-1").body)
            for raw in ["<script>", "<img", "</pre><script>", "<iframe", "' onmouseover='"] {
                #expect(!html.contains(raw), "\(raw) reached the page unescaped")
            }
            #expect(html.contains("dev/v1.2.0&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(html.contains("&lt;img src=x onerror=alert(2)&gt;"))
            #expect(html.contains("&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;"))
            #expect(html.contains("&#39; onmouseover=&#39;alert(4)"))
            #expect(html.contains("notes &lt;svg onload=alert(5)&gt;") && !html.contains("<svg"))
            #expect(html.contains("Merge pull request #7 from x/&lt;b&gt;y&lt;/b&gt;"))
        }
    }

    @Test("a failed check that may be overridden: its output is shown as text, and the approve form names it and asks why")
    func overridableCheck() async throws {
        var harness = try Harness()
        var run = Fixture.devRun
        run.checks = [APICheck(name: "scan", passed: false, detail: "failed (exit 1)", mayOverride: true,
                               output: "Check: CKV_X <b>public</b> null_resource.bucket")]
        harness.backend.runDetails = [run]
        try await harness.application().test(.router) { client in
            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            let html = String(buffer: try await alice.get(client, "/ui/runs/run-dev-1").body)
            #expect(html.contains("scan: failed — failed (exit 1)"))
            #expect(html.contains("may be overridden"))
            #expect(html.contains("Check: CKV_X &lt;b&gt;public&lt;/b&gt; null_resource.bucket"))
            let form = "/ui/runs/run-dev-1/approve"
            #expect(Browser.field("override_checks", in: html, form: form) == "scan")
            let csrf = try #require(Browser.field("csrf", in: html, form: form))
            let digest = Fixture.planDigest.rawValue
            let noReason = try await alice.post(client, form, ["csrf": csrf, "digest": digest, "override_checks": "scan", "reason": " "])
            #expect(noReason.status == .badRequest)
            let approved = try await alice.post(client, form, ["csrf": csrf, "digest": digest, "override_checks": "scan",
                                                               "reason": "false positive, SEC-12"])
            #expect(approved.status == .seeOther)
        }
        let approvals = harness.backend.calls.all.filter { $0.hasPrefix("approve run-dev-1") }
        #expect(approvals == ["approve run-dev-1 by alice digest \(Fixture.planDigest) overriding scan: false positive, SEC-12"])
    }

    @Test("the plan text is folded per resource")
    func folds() {
        let text = "Terraform will perform the following actions:\n\n  # null_resource.a will be created\n  + resource {}\n\n  # null_resource.b will be destroyed\n  - resource {}\n\nPlan: 1 to add, 0 to change, 1 to destroy.\n"
        let blocks = ReviewUI.blocks(of: text)
        #expect(blocks.map { $0["title"] ?? "" } == ["Plan", "null_resource.a will be created", "null_resource.b will be destroyed",
                                                       "Plan: 1 to add, 0 to change, 1 to destroy."])
        #expect(blocks[1]["text"] == "  # null_resource.a will be created\n  + resource {}")
    }

    @Test("signing out ends the session: its cookie opens nothing any more")
    func signOut() async throws {
        let harness = try Harness()
        try await harness.application().test(.router) { client in
            var alice = Browser()
            _ = try await alice.signIn(client, token: Fixture.aliceToken)
            let kept = alice
            let csrf = try #require(Browser.field("csrf", in: String(buffer: try await alice.get(client, "/ui/board").body)))
            let out = try await alice.post(client, "/ui/signout", ["csrf": csrf])
            #expect(out.status == .seeOther && out.headers[.location] == "/ui/signin")
            let replayed = try await kept.get(client, "/ui/board")
            #expect(replayed.status == .seeOther, "the old cookie is dead on the server, not only in the browser")
        }
        #expect(harness.sessionsCount() == 0)
    }
}
