// The forges Lockstep takes webhooks from (docs/CONTRACT.md, webhooks).

/// A forge whose webhook deliveries the daemon accepts at `/webhooks/NAME`.
public enum WebhookForge: String, Sendable, Hashable, CaseIterable, Comparable {
    /// `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body.
    case github
    /// `X-Gitlab-Token`, the secret itself.
    case gitlab
    /// `X-Gitea-Signature` (or Forgejo's `X-Forgejo-Signature`): the hex HMAC-SHA256 of the body.
    case gitea
    /// `X-Lockstep-Signature-256: sha256=HEX`, as GitHub's, for any other sender.
    case generic

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}
