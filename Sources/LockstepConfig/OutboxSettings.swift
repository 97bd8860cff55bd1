import Foundation
import LockstepCore
import Yams

/// `forge:` of the agent config: where run comments and commit statuses go (docs/CONTRACT.md,
/// "Forge and notifications"). The token is read from a file at start and sent only to `api_url`.
public struct ForgeSettings: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case github, gitlab, gitea
    }

    public var kind: Kind
    /// The API's base URL without a final `/`: `https://api.github.com`, `https://gitlab.com/api/v4`,
    /// or a self-hosted instance's (`https://git.example.com/api/v1` for Gitea and Forgejo).
    public var apiURL: String
    /// `owner/name` on GitHub and Gitea; the project's path (`group/sub/name`) or numeric id on GitLab.
    public var repository: String
    public var tokenFile: String
    /// The commit status's context; each target adds `/PROJECT/ENV`. Default `lockstep`.
    public var statusContext: String

    public static func defaultAPIURL(_ kind: Kind) -> String? {
        switch kind {
        case .github: "https://api.github.com"
        case .gitlab: "https://gitlab.com/api/v4"
        case .gitea: nil
        }
    }
}

/// What a notification reports (`environments.NAME.notifications[].events`).
public enum NotificationEvent: String, Sendable, Hashable, CaseIterable, Codable {
    case awaitingApproval = "awaiting_approval"
    case approvalRecorded = "approval_recorded"
    case applied
    case verified
    case failed
    case interrupted
    case tagRejected = "tag_rejected"
    /// An apply started on break-glass approvals, inside a freeze or outside the apply windows.
    case breakGlassApply = "break_glass_apply"
    /// A drift check found the infrastructure changed from what was applied, or could not run.
    case drift
}

/// One outgoing notification of an environment.
public struct NotificationSettings: Sendable, Hashable {
    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// Lockstep's JSON, signed with HMAC-SHA256 in `X-Lockstep-Signature-256`.
        case json
        /// Slack's incoming-webhook body (`text` and `blocks`); also read by Mattermost and others.
        case slack
    }

    public enum Destination: Sendable, Hashable {
        case url(String)
        /// A file holding the URL, read at start: a Slack incoming-webhook URL is itself a credential.
        case urlFile(String)
    }

    public var destination: Destination
    public var format: Format
    /// The HMAC key's file (`json`: required).
    public var secretFile: String?
    public var events: Set<NotificationEvent>
}

/// An `http` or `https` URL without user info, fragment or control characters: nil when `text`
/// is not one. `allowQuery` is false for API base URLs.
public func outboundURL(_ text: String, allowQuery: Bool) -> String? {
    guard text.utf8.count <= 2_048, !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }),
          let parts = URLComponents(string: text), let scheme = parts.scheme?.lowercased(), scheme == "http" || scheme == "https",
          let host = parts.host, !host.isEmpty, parts.user == nil, parts.password == nil, parts.fragment == nil,
          allowQuery || parts.query == nil else { return nil }
    var trimmed = text
    while trimmed.hasSuffix("/") { trimmed.removeLast() }
    return trimmed
}

extension AgentParser {
    static let forgeKeys = "kind, api_url, repository, token_file, status_context"

    func forgeSettings(_ node: Node, _ at: KeyPath) -> ForgeSettings? {
        guard let f = reader.mapping(node, at, "a mapping with \(Self.forgeKeys)") else { return nil }
        let before = reader.errors.count
        let kinds = ForgeSettings.Kind.allCases.map(\.rawValue).joined(separator: ", ")
        let kind = require(f, "kind", at, "the forge: one of \(kinds)").flatMap { kindNode -> ForgeSettings.Kind? in
            guard let text = reader.string(kindNode, at.key("kind"), "one of \(kinds)") else { return nil }
            guard let kind = ForgeSettings.Kind(rawValue: text) else {
                reader.fail(at.key("kind"), .invalidValue, "one of \(kinds)", kindNode)
                return nil
            }
            return kind
        }
        let urlWhat = "the forge API's base URL (`http` or `https`, no user, query or fragment), e.g. https://git.example.com/api/v1"
        var apiURL = f.take("api_url").flatMap { urlNode -> String? in
            guard let text = reader.string(urlNode, at.key("api_url"), urlWhat) else { return nil }
            guard let url = outboundURL(text, allowQuery: false) else {
                reader.fail(at.key("api_url"), .invalidValue, urlWhat, urlNode)
                return nil
            }
            return url
        }
        if apiURL == nil, let kind, reader.errors.count == before {
            apiURL = ForgeSettings.defaultAPIURL(kind)
            if apiURL == nil { reader.fail(at.key("api_url"), .missingKey, "the \(kind.rawValue) API's base URL (there is no public default)", node) }
        }
        let repository = require(f, "repository", at, "the repository on the forge").flatMap { repoNode -> String? in
            let what = kind == .gitlab
                ? "the project's path (`group/subgroup/name`) or numeric id"
                : "`owner/name`"
            guard let text = reader.string(repoNode, at.key("repository"), what) else { return nil }
            let segments = text.split(separator: "/", omittingEmptySubsequences: false)
            let segmentOK = { (s: Substring) in
                !s.isEmpty && s.count <= 100 && s != "." && s != ".."
                    && s.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || "._-".contains($0) }
            }
            let valid = kind == .gitlab
                ? (segments.count >= 1 && segments.count <= 20 && segments.allSatisfy(segmentOK))
                : (segments.count == 2 && segments.allSatisfy(segmentOK))
            guard valid else {
                reader.fail(at.key("repository"), .invalidValue, what + " (letters, digits, `.`, `_`, `-`)", repoNode)
                return nil
            }
            return text
        }
        let token = require(f, "token_file", at, "a path to a file holding the forge's API token").flatMap {
            path($0, at.key("token_file"), "a path to a file holding the forge's API token")
        }
        let context = f.take("status_context").flatMap { contextNode -> String? in
            let what = "a commit status context of 1 to 60 letters, digits, `.`, `_`, `-`, `/`"
            guard let text = reader.string(contextNode, at.key("status_context"), what) else { return nil }
            guard (1...60).contains(text.count), text.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || "._-/".contains($0) }) else {
                reader.fail(at.key("status_context"), .invalidValue, what, contextNode)
                return nil
            }
            return text
        } ?? "lockstep"
        f.finish(known: Self.forgeKeys, classify: classifyLiteralSecret(reader))
        guard reader.errors.count == before, let kind, let apiURL, let repository, let token else { return nil }
        return ForgeSettings(kind: kind, apiURL: apiURL, repository: repository, tokenFile: token, statusContext: context)
    }

    func publicURL(_ node: Node, _ at: KeyPath) -> String? {
        let what = "the URL people reach this agent at (`http` or `https`, no user, query or fragment), used in links"
        guard let text = reader.string(node, at, what) else { return nil }
        guard let url = outboundURL(text, allowQuery: false) else {
            reader.fail(at, .invalidValue, what, node)
            return nil
        }
        return url
    }

    static let notificationKeys = "url, url_file, format, secret_file, events"

    func notifications(_ node: Node, _ at: KeyPath) -> [NotificationSettings]? {
        let list = reader.list(node, at, "a list of notifications (each with `url` or `url_file`, and `format`)") { item, itemAt in
            notification(item, itemAt)
        }
        if let list, list.count > 16 {
            reader.fail(at, .invalidValue, "at most 16 notifications per environment", node)
            return nil
        }
        return list
    }

    private func notification(_ node: Node, _ at: KeyPath) -> NotificationSettings? {
        guard let f = reader.mapping(node, at, "a mapping with \(Self.notificationKeys)") else { return nil }
        let before = reader.errors.count
        let formats = NotificationSettings.Format.allCases.map(\.rawValue).joined(separator: ", ")
        let format = require(f, "format", at, "one of \(formats)").flatMap { formatNode -> NotificationSettings.Format? in
            guard let text = reader.string(formatNode, at.key("format"), "one of \(formats)") else { return nil }
            guard let format = NotificationSettings.Format(rawValue: text) else {
                reader.fail(at.key("format"), .invalidValue, "one of \(formats)", formatNode)
                return nil
            }
            return format
        }
        let urlNode = f.take("url")
        let urlFileNode = f.take("url_file")
        var destination: NotificationSettings.Destination?
        let urlWhat = "an `http` or `https` URL without user or fragment"
        switch (urlNode, urlFileNode) {
        case (let urlNode?, nil):
            if format == .slack {
                // The URL of a Slack incoming webhook is what lets anyone post: a credential.
                reader.fail(at.key("url"), .literalSecret, "`url_file` (a Slack incoming-webhook URL is a credential; keep it in a file)", urlNode)
            } else if let text = reader.string(urlNode, at.key("url"), urlWhat) {
                if let url = outboundURL(text, allowQuery: true) {
                    destination = .url(url)
                } else {
                    reader.fail(at.key("url"), .invalidValue, urlWhat, urlNode)
                }
            }
        case (nil, let fileNode?):
            destination = path(fileNode, at.key("url_file"), "a path to a file holding the notification URL").map { .urlFile($0) }
        case (.some, .some):
            reader.fail(at.key("url_file"), .conflict, "either `url` or `url_file`, not both", urlFileNode)
        case (nil, nil):
            reader.fail(at.key("url"), .missingKey, "`url` or `url_file`", node)
        }
        let secretNode = f.take("secret_file")
        let secret = secretNode.flatMap { path($0, at.key("secret_file"), "a path to a file holding the HMAC key") }
        if format == .json, secretNode == nil {
            reader.fail(at.key("secret_file"), .missingKey, "a file holding the HMAC key the JSON notification is signed with", node)
        }
        if format == .slack, let secretNode {
            reader.fail(at.key("secret_file"), .conflict, "no `secret_file` for `format: slack` (Slack bodies are not signed)", secretNode)
        }
        let names = NotificationEvent.allCases.map(\.rawValue).joined(separator: ", ")
        let events = f.take("events").flatMap { eventsNode -> Set<NotificationEvent>? in
            guard let list = reader.list(eventsNode, at.key("events"), "a list of events: \(names)", { item, itemAt -> NotificationEvent? in
                reader.string(item, itemAt, "one of \(names)").flatMap { text -> NotificationEvent? in
                    guard let event = NotificationEvent(rawValue: text) else {
                        reader.fail(itemAt, .invalidValue, "one of \(names)", item)
                        return nil
                    }
                    return event
                }
            }) else { return nil }
            if list.isEmpty {
                reader.fail(at.key("events"), .invalidValue, "at least one event (leave `events` out for all)", eventsNode)
                return nil
            }
            return Set(list)
        } ?? Set(NotificationEvent.allCases)
        f.finish(known: Self.notificationKeys, classify: classifyLiteralSecret(reader))
        guard reader.errors.count == before, let format, let destination else { return nil }
        return NotificationSettings(destination: destination, format: format, secretFile: secret, events: events)
    }
}
