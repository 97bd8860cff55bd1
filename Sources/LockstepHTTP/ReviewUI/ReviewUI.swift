import Foundation
import Hummingbird
import HTTPTypes
import LockstepAPI
import LockstepCore
import Logging
import Mustache
import NIOCore

/// The review UI under `/ui/` (docs/CONTRACT.md §5, "Review UI"; docs/THREAT-MODEL.md §7.4):
/// server-rendered HTML with no script, over the same ``APIBackend`` and the same rules as the
/// JSON API. Whether an approval counts is decided by the gate exactly as for `POST
/// /api/v1/runs/ID/approve`; the UI only hides a button from someone the gate would refuse.
///
/// Everything shown from the repository or terraform (tag names, resource addresses, plan text,
/// reasons) is HTML-escaped by the templates. Every page is sent with a Content-Security-Policy
/// that allows no script, no frame and forms only to this origin. Every form carries the
/// session's CSRF token; a POST without it, or from another site, changes nothing.
struct ReviewUI: Sendable {
    let backend: any APIBackend
    let tokens: APITokenTable
    let sessions: UISessions
    let secureCookies: Bool
    let limiter: FailedAuthenticationLimiter
    let onRefusal: @Sendable (APIAccessRefusal) async -> Void
    let logger: Logger

    static let sessionCookie = "lockstep_session"
    static let signinCookie = "lockstep_signin"
    static let maximumFormBytes = 16 * 1024
    /// Characters of a run's output shown on its page (the end of it).
    static let shownOutput = 64 * 1024
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    /// States in which the page reloads itself to follow the run (no script: a refresh header).
    static let moving: Set<RunState> = [.queued, .planning, .checking, .approved, .applying, .applied, .verifying]

    /// The paths this UI answers, for the router's 405 table.
    static let routes: [RouteSpec] = [
        RouteSpec(.get, "ui"), RouteSpec(.get, "ui/style.css"), RouteSpec(.get, "ui/signin"), RouteSpec(.post, "ui/signin"),
        RouteSpec(.post, "ui/signout"), RouteSpec(.get, "ui/board"), RouteSpec(.get, "ui/runs/:id"),
        RouteSpec(.post, "ui/runs/:id/approve"), RouteSpec(.post, "ui/runs/:id/reject"),
        RouteSpec(.get, "ui/environments/:env/tags"),
    ]

    func register(on router: Router<APIRequestContext>) {
        router.get("ui") { _, _ in Self.redirect("/ui/board") }
        router.get("ui/style.css") { _, _ in
            var headers = Self.securityHeaders
            headers[.contentType] = "text/css; charset=utf-8"
            headers[.cacheControl] = "max-age=3600"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: UITemplates.css)))
        }
        router.get("ui/signin") { request, _ in signinPage(request, error: nil, status: .ok) }
        router.post("ui/signin") { request, context in try await signIn(request, context) }
        router.post("ui/signout") { request, _ in try await signOut(request) }
        router.get("ui/board") { request, _ in try await page(request) { session in try await board(session) } }
        router.get("ui/runs/:id") { request, context in
            try await page(request) { session in try await run(context.parameters.get("id") ?? "", session, request) }
        }
        router.post("ui/runs/:id/approve") { request, context in
            try await form(request) { session, fields in try await approve(context.parameters.get("id") ?? "", fields, session) }
        }
        router.post("ui/runs/:id/reject") { request, context in
            try await form(request) { session, fields in try await reject(context.parameters.get("id") ?? "", fields, session) }
        }
        router.get("ui/environments/:env/tags") { request, context in
            try await page(request) { session in try await tags(context.parameters.get("env") ?? "", session) }
        }
    }

    // MARK: Sessions

    /// The value of cookie `name` in the request, if sent once.
    static func cookie(_ name: String, in request: Request) -> String? {
        let pairs = request.headers[values: .cookie].flatMap { $0.split(separator: ";") }
        let values = pairs.compactMap { pair -> Substring? in
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name else { return nil }
            return parts[1]
        }
        guard values.count == 1, let value = values.first else { return nil }
        let text = value.trimmingCharacters(in: .whitespaces)
        return text.count == 64 && text.allSatisfy(\.isHexDigit) ? text : nil
    }

    func session(of request: Request) -> (id: String, session: UISessions.Session)? {
        guard let id = Self.cookie(Self.sessionCookie, in: request), let session = sessions.session(id) else { return nil }
        return (id, session)
    }

    func cookieHeader(_ name: String, _ value: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(maxAge)" + (secureCookies ? "; Secure" : "")
    }

    /// A page for a signed-in person; anyone else is sent to sign in.
    func page(_ request: Request, _ render: (UISessions.Session) async throws -> Response) async throws -> Response {
        guard let (_, session) = session(of: request) else { return Self.redirect("/ui/signin") }
        return try await render(session)
    }

    /// A form post: only from this site, with a live session and its CSRF token; otherwise 403
    /// and nothing is done.
    func form(_ request: Request,
              _ act: (UISessions.Session, [String: String]) async throws -> Response) async throws -> Response {
        guard let (_, session) = session(of: request) else {
            return Self.message(status: .forbidden, heading: "Not signed in", text: "Sign in, then try again.", back: "/ui/signin")
        }
        guard Self.sameSite(request), let fields = try await Self.fields(request),
              let presented = fields["csrf"], UISessions.same(presented, session.csrf) else {
            return Self.message(status: .forbidden, heading: "Refused",
                                text: "This form did not come from this site's page (its CSRF token is missing or wrong). Nothing was done.",
                                back: "/ui/board", session: session)
        }
        return try await act(session, fields)
    }

    /// False when the browser says the request came from another site.
    static func sameSite(_ request: Request) -> Bool {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], site == "cross-site" { return false }
        if let origin = request.headers[HTTPField.Name("Origin")!], origin != "null",
           let host = request.head.authority {
            return URLComponents(string: origin).map { parts in
                let port = parts.port.map { ":\($0)" } ?? ""
                return "\(parts.host ?? "")\(port)" == host
            } ?? false
        }
        return true
    }

    /// The fields of an `application/x-www-form-urlencoded` body, nil when it is not one or too long.
    static func fields(_ request: Request) async throws -> [String: String]? {
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true else { return nil }
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > maximumFormBytes { return nil }
        var bytes: [UInt8] = []
        for try await chunk in request.body {
            guard bytes.count + chunk.readableBytes <= maximumFormBytes else { return nil }
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        var parts = URLComponents()
        parts.percentEncodedQuery = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "+", with: "%20")
        var fields: [String: String] = [:]
        for item in parts.queryItems ?? [] {
            guard fields[item.name] == nil else { return nil }
            fields[item.name] = item.value ?? ""
        }
        return fields
    }

    // MARK: Sign-in

    func signinPage(_ request: Request, error: String?, status: HTTPResponse.Status) -> Response {
        // A fresh sign-in token each time, in a cookie and in the form: a page of another site
        // cannot post a sign-in (it would sign the victim in as the attacker).
        let csrf = UISessions.randomToken()
        var context: [String: Any] = ["csrf": csrf]
        if let error { context["error"] = error }
        var response = render("signin", context, title: "Sign in", session: nil, status: status)
        response.headers.append(HTTPField(name: .setCookie, value: cookieHeader(Self.signinCookie, csrf, maxAge: 900)))
        return response
    }

    func signIn(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        guard Self.sameSite(request), let fields = try await Self.fields(request), let presented = fields["csrf"],
              let expected = Self.cookie(Self.signinCookie, in: request), UISessions.same(presented, expected) else {
            return signinPage(request, error: "The sign-in form expired or did not come from this site; try again.", status: .forbidden)
        }
        let token = fields["token"] ?? ""
        guard !token.isEmpty, token.utf8.count <= 4_096, let identity = tokens.identity(forToken: token) else {
            let failure = await refuseAuthentication(APIAuthenticationFailure(.unknownToken, "the token is not valid"),
                                                     request: request, context: context, limiter: limiter, onRefusal: onRefusal)
            return signinPage(request, error: failure.status == .tooManyRequests ? failure.message : "That token is not valid.",
                              status: failure.status)
        }
        let (id, _) = sessions.create(for: identity)
        logger.info("review UI sign-in", metadata: ["identity": "\(identity)"])
        var response = Self.redirect("/ui/board")
        response.headers.append(HTTPField(name: .setCookie, value: cookieHeader(Self.sessionCookie, id, maxAge: Int(UISessions.lifetime))))
        response.headers.append(HTTPField(name: .setCookie, value: cookieHeader(Self.signinCookie, "", maxAge: 0)))
        return response
    }

    func signOut(_ request: Request) async throws -> Response {
        try await form(request) { _, _ in
            if let (id, _) = session(of: request) { sessions.end(id) }
            var response = Self.redirect("/ui/signin")
            response.headers.append(HTTPField(name: .setCookie, value: cookieHeader(Self.sessionCookie, "", maxAge: 0)))
            return response
        }
    }

    // MARK: Pages

    func board(_ session: UISessions.Session) async throws -> Response {
        let environments = try await backend.environments()
        var problems = try await backend.problems()
        // The branch tip's validation is shown with the problems when it found any.
        if let validation = await backend.branchValidation(), validation.exitStatus != 0 {
            problems.append(APIProblem(code: APIProblem.Code(rawValue: "branch_validation"),
                                       message: "lockstep validate of \(validation.commit.short): "
                                       + (validation.problems.prefix(5).joined(separator: "; "))))
        }
        let projects = Set(environments.flatMap { $0.targets.map(\.project) }).sorted { $0.rawValue < $1.rawValue }
        var decisions: [EnvironmentName: [APITagDecision]] = [:]
        for environment in environments where environment.served {
            decisions[environment.name] = try await backend.tagDecisions(environment: environment.name, project: nil)?.decisions ?? []
        }
        let rows: [[String: Any]] = projects.map { project in
            ["project": project.rawValue, "cells": environments.map { environment -> [String: Any] in
                guard environment.served, let target = environment.targets.first(where: { $0.project == project }) else {
                    return ["served": false]
                }
                var cell: [String: Any] = ["served": true, "applied": target.applied?.version.description ?? "none",
                                           "desired": target.desired?.version.description ?? "none"]
                if let pending = target.pending {
                    cell["pending"] = ["id": pending.runID.rawValue, "version": pending.version.description, "state": pending.state.rawValue]
                }
                var warnings: [String] = []
                if let drift = target.drift, drift.outcome == "drift" {
                    warnings.append("drift: \(drift.addresses.count) resource(s) differ from \(drift.version) as applied")
                } else if let drift = target.drift, drift.outcome == "failed" {
                    warnings.append("drift check failed")
                }
                if let pending = target.pending, let held = pending.heldBecause {
                    warnings.append("approved, held: \(held); applies at "
                                    + (pending.appliesAt.map { ISO8601DateFormatter().string(from: $0) } ?? "no opening within a year"))
                }
                if let pending = target.pending, [.interrupted, .failed].contains(pending.state) {
                    warnings.append(pending.state == .interrupted ? "apply interrupted: an operator must resolve it" : "last run failed")
                }
                // Tags refused above what the target wants: a release someone tried to ship and the gate stopped.
                let floor = target.desired?.version
                let refused = (decisions[environment.name] ?? []).filter { decision in
                    guard decision.project == project, !decision.accepted else { return false }
                    guard let version = decision.version, let floor else { return true }
                    return version > floor
                }
                if !refused.isEmpty { warnings.append("\(refused.count) newer tag\(refused.count == 1 ? "" : "s") rejected") }
                if target.alerts > 0 { warnings.append("\(target.alerts) alert\(target.alerts == 1 ? "" : "s")") }
                if let pin = target.pin { warnings.append("pinned to \(pin.version) by a rollback (until a version above \(pin.ceiling))") }
                cell["warnings"] = warnings
                return cell
            }]
        }
        let runs = try await backend.runs(APIRunFilter(limit: 20)).map { run -> [String: Any] in
            ["id": run.id.rawValue, "project": run.project.rawValue, "environment": run.environment.rawValue,
             "version": run.version.description, "state": run.state.rawValue, "updated": Self.time(run.updatedAt)]
        }
        let context: [String: Any] = [
            "hasProblems": !problems.isEmpty,
            "problems": problems.map { ["code": $0.code.rawValue, "message": $0.message] },
            "environments": environments.map { environment -> [String: Any] in
                var item: [String: Any] = ["name": environment.name.rawValue, "required": environment.requiredApprovals]
                if let from = environment.promoteFrom { item["from"] = from.rawValue }
                return item
            },
            "rows": rows, "runs": runs,
        ]
        return render("board", context, title: "Board", session: session, refresh: 15)
    }

    func run(_ raw: String, _ session: UISessions.Session, _ request: Request, flash: String? = nil) async throws -> Response {
        guard let id = try? RunID(raw), let detail = try await backend.run(id) else {
            return Self.message(status: .notFound, heading: "No such run", text: "There is no run with that id.", back: "/ui/board",
                                session: session)
        }
        let environment = try await backend.environments().first { $0.name == detail.environment }
        let awaiting = detail.state == .awaitingApproval
        var context: [String: Any] = [
            "id": detail.id.rawValue, "project": detail.project.rawValue, "environment": detail.environment.rawValue,
            "version": detail.version.description, "state": detail.state.rawValue, "tag": detail.tag,
            "commit": detail.commit.rawValue, "tree": detail.tree.rawValue, "rollback": detail.rollback,
            "approvalCount": detail.approvals.count, "required": detail.requiredApprovals, "csrf": session.csrf,
            "approvals": detail.approvals.map { approval -> [String: Any] in
                var item: [String: Any] = ["identity": approval.identity.rawValue, "time": Self.time(approval.time),
                                           "digest": approval.digest.rawValue]
                if approval.breakGlass == true { item["breakGlass"] = true }
                if let names = approval.overrideChecks, !names.isEmpty { item["overrides"] = names.joined(separator: ", ") }
                if let reason = approval.reason { item["reason"] = reason }
                return item
            },
            "canApprove": awaiting && detail.digest != nil && detail.mayApprove.contains(session.identity),
            "canReject": awaiting && (environment?.approvers.contains(session.identity) ?? false),
            "hasChecks": !detail.checks.isEmpty,
            "checks": detail.checks.map { check -> [String: Any] in
                var item: [String: Any] = ["name": check.name, "result": check.passed ? "passed" : "failed"]
                if let detail = check.detail { item["detail"] = detail }
                if let output = check.output, !output.isEmpty { item["output"] = output }
                if !check.passed, check.mayOverride == true { item["overridable"] = true }
                return item
            },
            "hasAlerts": !detail.alerts.isEmpty,
            "alerts": detail.alerts.map { ["code": $0.code.rawValue, "message": $0.message] },
            "hasRefusals": !detail.refusals.isEmpty,
            "refusals": detail.refusals.map { ["identity": $0.identity.rawValue, "message": $0.message] },
            "transitions": detail.transitions.map { transition -> [String: Any] in
                var item: [String: Any] = ["time": Self.time(transition.time), "from": transition.from.rawValue, "to": transition.to.rawValue,
                                           "reason": transition.reason.rawValue, "actor": transition.actor]
                if let detail = transition.detail { item["detail"] = detail }
                return item
            },
        ]
        let overridable = detail.checks.filter { !$0.passed && $0.mayOverride == true }.map(\.name)
        if !overridable.isEmpty { context["overrideChecks"] = overridable.joined(separator: ",") }
        if let held = detail.heldBecause {
            context["held"] = "Held: \(held). Applies at " + (detail.appliesAt.map { Self.time($0) } ?? "no opening within a year")
                + (detail.approvalsExpireAt.map { "; the approvals hold until \(Self.time($0))" } ?? "") + "."
        }
        if let digest = detail.digest { context["digest"] = digest.rawValue }
        if let tagger = detail.tagger { context["tagger"] = tagger }
        if let signer = detail.signer { context["signer"] = signer.description }
        if let prior = detail.priorState { context["prior_state"] = prior.description }
        if let message = detail.tagMessage, !message.isEmpty { context["tagMessage"] = message }
        if let message = detail.commitMessage, !message.isEmpty { context["commitMessage"] = message }
        if !detail.mayApprove.isEmpty { context["mayApprove"] = detail.mayApprove.map(\.rawValue).joined(separator: ", ") }
        if let summary = detail.summary {
            context["summary"] = ["create": summary.create, "update": summary.update, "replace": summary.replace, "delete": summary.delete,
                                  "hasDestroyed": !summary.destroyedAddresses.isEmpty, "destroyed": summary.destroyedAddresses] as [String: Any]
        }
        if let rendering = detail.planRendering {
            switch detail.planRenderingState {
            case .pending?: context["renderingNote"] = "The plan's text is being rendered; this page reloads."
            case .failed?: context["renderingNote"] = rendering
            default:
                let blocks = Self.blocks(of: rendering)
                context["hasBlocks"] = !blocks.isEmpty
                context["blocks"] = blocks
                context["truncated"] = detail.planRenderingTruncated
            }
        }
        let reload = Self.moving.contains(detail.state) || detail.planRenderingState == .pending
        context["moving"] = Self.moving.contains(detail.state)
        if let output = try await backend.runLog(detail.id), !output.isEmpty {
            // The end is what a reviewer following a run wants; the whole log stays in the store.
            context["output"] = output.count > Self.shownOutput ? "… (the start is cut)\n" + String(output.suffix(Self.shownOutput)) : output
        }
        return render("run", context, title: "\(detail.project.rawValue) → \(detail.environment.rawValue) \(detail.version)",
                      session: session, refresh: reload ? 3 : nil, flash: flash)
    }

    /// Terraform's plan text cut into one fold per resource (each starts at a `  # address` line),
    /// with the text before the first and after the last as folds of their own.
    static func blocks(of rendering: String) -> [[String: String]] {
        var blocks: [[String: String]] = []
        var title = "Plan"
        var lines: [Substring] = []
        func flush() {
            let text = lines.joined(separator: "\n").trimmingCharacters(in: .newlines)
            if !text.isEmpty { blocks.append(["title": title, "text": text]) }
            lines = []
        }
        for line in rendering.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " }
            if line.hasPrefix("  #"), trimmed.hasPrefix("# "), line.count - trimmed.count == 2 {
                flush()
                title = String(trimmed.dropFirst(2).prefix(300))
            } else if line.hasPrefix("Plan:") || line.hasPrefix("Changes to Outputs:") {
                flush()
                title = String(line.prefix(300))
            }
            lines.append(line)
        }
        flush()
        return blocks
    }

    func tags(_ raw: String, _ session: UISessions.Session) async throws -> Response {
        guard let environment = try? EnvironmentName(raw), let list = try await backend.tagDecisions(environment: environment, project: nil) else {
            return Self.message(status: .notFound, heading: "No such environment", text: "This agent has no environment of that name.",
                                back: "/ui/board", session: session)
        }
        let decisions = list.decisions.map { decision -> [String: Any] in
            ["tag": decision.tag, "project": decision.project.rawValue, "version": decision.version?.description ?? "–",
             "commit": decision.commit.map { String($0.rawValue.prefix(12)) } ?? "–", "decision": decision.accepted ? "accepted" : "rejected",
             "reasons": decision.rejections.map { ["code": $0.code.rawValue, "message": $0.message] }]
        }
        return render("tags", ["environment": environment.rawValue, "decisions": decisions], title: "Tags of \(environment.rawValue)",
                      session: session)
    }

    // MARK: Decisions

    func approve(_ raw: String, _ fields: [String: String], _ session: UISessions.Session) async throws -> Response {
        guard let id = try? RunID(raw), let digest = fields["digest"].flatMap({ try? Digest($0) }) else {
            return Self.message(status: .badRequest, heading: "Not approved", text: "The form named no run or no plan digest.",
                                back: "/ui/board", session: session)
        }
        // A run whose failed checks may be overridden is approved only by naming them and saying
        // why: the form carries the names it showed, and the gate refuses any other set.
        let names = (fields["override_checks"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        var terms = ApprovalTerms.none
        if !names.isEmpty {
            let reason = (fields["reason"] ?? "").trimmingCharacters(in: .whitespaces)
            guard !reason.isEmpty, reason.utf8.count <= 1_000,
                  !reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                return Self.message(status: .badRequest, heading: "Not approved",
                                    text: "Overriding a failed check needs a reason: one line of at most 1000 bytes.",
                                    back: "/ui/runs/\(id.rawValue)", session: session)
            }
            terms = ApprovalTerms(overrideChecks: names, reason: reason)
        }
        return try await decided(id, try await backend.approve(id, identity: session.identity, digest: digest, terms: terms), "approved", session)
    }

    func reject(_ raw: String, _ fields: [String: String], _ session: UISessions.Session) async throws -> Response {
        let reason = (fields["reason"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let id = try? RunID(raw), !reason.isEmpty, reason.utf8.count <= 1_000 else {
            return Self.message(status: .badRequest, heading: "Not rejected", text: "A rejection needs a reason of at most 1,000 bytes.",
                                back: "/ui/runs/\(raw.filter { $0.isLetter || $0.isNumber || $0 == "-" })", session: session)
        }
        return try await decided(id, try await backend.reject(id, identity: session.identity, reason: reason), "rejected", session)
    }

    func decided(_ id: RunID, _ outcome: APIOutcome<APIRunDetail>, _ what: String, _ session: UISessions.Session) async throws -> Response {
        switch outcome {
        case .ok:
            logger.info("review UI decision", metadata: ["run.id": "\(id)", "identity": "\(session.identity)", "decision": "\(what)"])
            return Self.redirect("/ui/runs/\(id.rawValue)")
        case .refused(let refusal):
            return Self.message(status: refusal.code.isForbidden ? .forbidden : .conflict, heading: "Refused",
                                text: "\(refusal.message) (\(refusal.code))", back: "/ui/runs/\(id.rawValue)", session: session)
        case .notFound(let message):
            return Self.message(status: .notFound, heading: "Not found", text: message, back: "/ui/board", session: session)
        }
    }

    // MARK: Rendering

    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        HTTPField.Name("X-Frame-Options")!: "DENY",
    ]

    func render(_ template: String, _ context: [String: Any], title: String, session: UISessions.Session?,
                status: HTTPResponse.Status = .ok, refresh: Int? = nil, flash: String? = nil) -> Response {
        let body = UITemplates.library.render(context, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "body": body]
        if let session { layout["identity"] = session.identity.rawValue; layout["csrf"] = session.csrf }
        if let refresh { layout["refresh"] = "\(refresh)" }
        if let flash { layout["flash"] = flash }
        let page = UITemplates.library.render(layout, withTemplate: "layout") ?? ""
        var headers = Self.securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    static func message(status: HTTPResponse.Status, heading: String, text: String, back: String,
                        session: UISessions.Session? = nil) -> Response {
        let body = UITemplates.library.render(["heading": heading, "text": text, "back": back], withTemplate: "message") ?? ""
        var layout: [String: Any] = ["title": heading, "body": body]
        if let session { layout["identity"] = session.identity.rawValue; layout["csrf"] = session.csrf }
        let page = UITemplates.library.render(layout, withTemplate: "layout") ?? ""
        var headers = securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    static func redirect(_ location: String) -> Response {
        var headers = securityHeaders
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers)
    }

    static func time(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false)
            .timeSeparator(.colon).timeZone(separator: .omitted))
    }
}
