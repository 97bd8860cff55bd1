import Foundation
public import LockstepCore
import Yams

/// `webhooks:` of the agent config: which forges may wake the daemon, with the files holding
/// their secrets (several per forge, so a secret can be rotated without a gap), and the
/// largest body read. A delivery only asks for a fetch: nothing in it is trusted.
public struct WebhookSettings: Sendable, Hashable {
    /// Forge → the files holding its secrets, each tried.
    public var secretFiles: [WebhookForge: [String]]
    /// A larger body is refused with 413 before it is read.
    public var maxBodyBytes: Int

    public static let defaultMaxBodyBytes = 1 << 20
    /// How often the remote is fetched anyway when webhooks are configured and
    /// `poll_interval` is not set: the poll is then only the safety net.
    public static let defaultPollInterval: Duration = .seconds(300)

    public init(secretFiles: [WebhookForge: [String]], maxBodyBytes: Int = defaultMaxBodyBytes) {
        self.secretFiles = secretFiles
        self.maxBodyBytes = maxBodyBytes
    }

    /// Every secret file, in a fixed order.
    public var allSecretFiles: [String] {
        secretFiles.keys.sorted().flatMap { secretFiles[$0] ?? [] }
    }
}

extension AgentParser {
    static let webhookKeys = "github, gitlab, gitea, generic, max_body_bytes"

    func webhookSettings(_ node: Node, _ at: KeyPath) -> WebhookSettings? {
        guard let f = reader.mapping(node, at, "a mapping with any of \(Self.webhookKeys)") else { return nil }
        var files: [WebhookForge: [String]] = [:]
        var valid = true
        for forge in WebhookForge.allCases {
            guard let forgeNode = f.take(forge.rawValue) else { continue }
            let forgeAt = at.key(forge.rawValue)
            guard let g = reader.mapping(forgeNode, forgeAt, "a mapping with `secret_files`") else { valid = false; continue }
            let what = "a list of 1 to 8 files, each holding one secret of this forge's webhook (several allow a rotation)"
            let listNode = g.take("secret_files")
            if listNode == nil { reader.fail(forgeAt.key("secret_files"), .missingKey, what, forgeNode) }
            let paths = listNode.flatMap { listNode in
                reader.list(listNode, forgeAt.key("secret_files"), what) { item, itemAt in
                    path(item, itemAt, "a path to a file holding a webhook secret")
                }
            }
            g.finish(known: "secret_files", classify: classifyLiteralSecret(reader))
            guard let paths else {
                valid = false
                continue
            }
            guard (1...8).contains(paths.count) else {
                reader.fail(forgeAt.key("secret_files"), .invalidValue, what, forgeNode)
                valid = false
                continue
            }
            files[forge] = paths
        }
        let bodyBytes = f.take("max_body_bytes").map {
            reader.int($0, at.key("max_body_bytes"), 1_024...(25 << 20), "an integer between 1024 and 26214400 (25 MiB)")
        } ?? WebhookSettings.defaultMaxBodyBytes
        f.finish(known: Self.webhookKeys, classify: classifyLiteralSecret(reader))
        guard valid, let bodyBytes else { return nil }
        if files.isEmpty {
            reader.fail(at, .missingKey, "at least one of github, gitlab, gitea, generic with its `secret_files`", node)
            return nil
        }
        return WebhookSettings(secretFiles: files, maxBodyBytes: bodyBytes)
    }
}
