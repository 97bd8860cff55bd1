import Crypto
import HTTPTypes
import Metrics
public import LockstepCore
import Synchronization

/// What a webhook delivery gets (docs/THREAT-MODEL.md §4.6): it is authenticated over the exact
/// bytes received, a redelivery is recognised by its delivery id, and an accepted one only asks
/// for a fetch. Nothing in the body is read, let alone trusted: the fetch finds what changed.
public enum WebhookDecision: Sendable, Hashable {
    /// Authenticated, new, and an event that can change refs: a fetch was asked for.
    case accepted
    /// Authenticated, but this delivery id was seen before: nothing asked.
    case duplicate
    /// Authenticated, but an event that changes no ref (or the forge's ping): nothing asked.
    case ignored(event: String)
    /// Not authenticated: no configured secret of this forge matches.
    case unauthorized(reason: String)
    /// Authenticated, but without a usable delivery id.
    case malformed(reason: String)
}

/// Checks webhook deliveries and asks for a fetch for each new, authenticated one.
///
/// Secrets are held as bytes, several per forge (a rotation keeps the old and the new one for
/// a while); every one is tried, whatever the first answered, so the time taken says nothing
/// about which matched. GitHub, Gitea and the generic sender sign the body with HMAC-SHA256;
/// GitLab sends the secret itself, compared through SHA-256 so both sides have one length.
/// Delivery ids are remembered per forge, the newest few thousand, and only once the delivery
/// is authenticated: an unsigned request cannot fill the list to push real ids out.
public final class WebhookReceiver: Sendable {
    /// What the daemon counts of deliveries (all since start).
    public struct Counts: Sendable, Hashable {
        public var accepted = 0
        public var duplicate = 0
        public var ignored = 0
        public var unauthorized = 0
        public var malformed = 0

        public init(accepted: Int = 0, duplicate: Int = 0, ignored: Int = 0, unauthorized: Int = 0, malformed: Int = 0) {
            self.accepted = accepted
            self.duplicate = duplicate
            self.ignored = ignored
            self.unauthorized = unauthorized
            self.malformed = malformed
        }
    }

    let secrets: [WebhookForge: [[UInt8]]]
    /// A larger body is refused with 413 before it is read.
    public let maximumBodyBytes: Int
    private let remembered: Int
    private let trigger: @Sendable () -> Void
    private let state: Mutex<(seen: [WebhookForge: DeliveryLog], counts: Counts)>

    /// - Parameters:
    ///   - secrets: per forge, its secrets; a forge without any is not served (404).
    ///   - rememberedDeliveries: how many delivery ids are kept per forge.
    ///   - trigger: asks for a fetch; called once per accepted delivery, never blocks.
    public init(secrets: [WebhookForge: [[UInt8]]], maximumBodyBytes: Int, rememberedDeliveries: Int = 4_096,
                trigger: @escaping @Sendable () -> Void) {
        self.secrets = secrets.filter { !$0.value.isEmpty }
        self.maximumBodyBytes = maximumBodyBytes
        self.remembered = max(1, rememberedDeliveries)
        self.trigger = trigger
        self.state = Mutex(([:], Counts()))
    }

    /// Whether deliveries of `forge` are accepted at all.
    public func serves(_ forge: WebhookForge) -> Bool { secrets[forge] != nil }

    /// The counts so far.
    public var counts: Counts { state.withLock { $0.counts } }

    /// Decides one delivery of `forge` with these headers and exactly these body bytes.
    public func receive(_ forge: WebhookForge, headers: HTTPFields, body: [UInt8]) -> WebhookDecision {
        let decision = decide(forge, headers: headers, body: body)
        state.withLock { state in
            switch decision {
            case .accepted: state.counts.accepted += 1
            case .duplicate: state.counts.duplicate += 1
            case .ignored: state.counts.ignored += 1
            case .unauthorized: state.counts.unauthorized += 1
            case .malformed: state.counts.malformed += 1
            }
        }
        let result = switch decision {
        case .accepted: "accepted"
        case .duplicate: "duplicate"
        case .ignored: "ignored"
        case .unauthorized: "unauthorized"
        case .malformed: "malformed"
        }
        Self.count(forge, result)
        if decision == .accepted { trigger() }
        return decision
    }

    /// `lockstep_webhook_deliveries_total{forge, result}` (docs/CONTRACT.md §5, "Metrics").
    static func count(_ forge: WebhookForge, _ result: String) {
        Counter(label: "lockstep_webhook_deliveries_total", dimensions: [("forge", forge.rawValue), ("result", result)]).increment()
    }

    private func decide(_ forge: WebhookForge, headers: HTTPFields, body: [UInt8]) -> WebhookDecision {
        if let refusal = authenticate(forge, headers: headers, body: body) { return .unauthorized(reason: refusal) }
        let delivery: String?
        switch Self.deliveryID(forge, headers: headers) {
        case .success(let id): delivery = id
        case .failure(let problem): return .malformed(reason: problem.description)
        }
        if let delivery {
            let isNew = state.withLock { state in
                state.seen[forge, default: DeliveryLog(capacity: remembered)].insert(delivery)
            }
            guard isNew else { return .duplicate }
        }
        let event = Self.event(forge, headers: headers)
        guard Self.changesRefs(forge, event: event) else { return .ignored(event: event ?? "none") }
        return .accepted
    }

    // MARK: Authentication

    /// Nil when one of the forge's secrets vouches for the delivery, else why not (client-safe).
    func authenticate(_ forge: WebhookForge, headers: HTTPFields, body: [UInt8]) -> String? {
        guard let keys = secrets[forge] else { return "this agent takes no \(forge.rawValue) webhooks" }
        switch forge {
        case .gitlab:
            guard let token = Self.single(headers, "X-Gitlab-Token") else {
                return "send exactly one X-Gitlab-Token header"
            }
            let presented = Array(SHA256.hash(data: Array(token.utf8)))
            var matched = false
            for key in keys where ConstantTime.equal(presented, Array(SHA256.hash(data: key))) { matched = true }
            return matched ? nil : "the X-Gitlab-Token does not match"
        case .github, .gitea, .generic:
            let (name, prefix) = Self.signatureHeader(forge, headers: headers)
            guard let value = Self.single(headers, name) else { return "send exactly one \(name) header" }
            let lowered = Array(value.lowercased().utf8)
            guard lowered.count == prefix.utf8.count + 64, lowered.starts(with: prefix.utf8) else {
                return "the \(name) header is not \(prefix)<64 hex digits>"
            }
            let presented = Array(lowered.dropFirst(prefix.utf8.count))
            var matched = false
            for key in keys {
                let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: key))
                if ConstantTime.equal(presented, Array(Self.hex(Array(mac)).utf8)) { matched = true }
            }
            return matched ? nil : "the \(name) signature does not match the body"
        }
    }

    /// The header that carries the signature and what comes before its hex digits.
    static func signatureHeader(_ forge: WebhookForge, headers: HTTPFields) -> (name: String, prefix: String) {
        switch forge {
        case .github: ("X-Hub-Signature-256", "sha256=")
        // Forgejo sends both; when its own is there, it is the one checked.
        case .gitea: (Self.has(headers, "X-Forgejo-Signature") ? "X-Forgejo-Signature" : "X-Gitea-Signature", "")
        case .generic: ("X-Lockstep-Signature-256", "sha256=")
        case .gitlab: ("X-Gitlab-Token", "")
        }
    }

    // MARK: Delivery ids and events

    /// The delivery id (nil for GitLab before 17.4, which sends none that is kept on a retry), or why it is unusable.
    static func deliveryID(_ forge: WebhookForge, headers: HTTPFields) -> Result<String?, WebhookProblem> {
        let names: [String] = switch forge {
        case .github: ["X-GitHub-Delivery"]
        case .gitea: ["X-Forgejo-Delivery", "X-Gitea-Delivery"]
        case .generic: ["X-Lockstep-Delivery"]
        case .gitlab: ["Idempotency-Key"]
        }
        guard let name = names.first(where: { has(headers, $0) }) else {
            return forge == .gitlab ? .success(nil) : .failure(WebhookProblem("send a \(names[0]) header"))
        }
        guard let value = single(headers, name), (1...200).contains(value.utf8.count),
              value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(WebhookProblem("the \(name) header must be one printable value of 1 to 200 bytes"))
        }
        return .success(value)
    }

    /// The event the forge says this is, when it says.
    static func event(_ forge: WebhookForge, headers: HTTPFields) -> String? {
        let names: [String] = switch forge {
        case .github: ["X-GitHub-Event"]
        case .gitea: ["X-Forgejo-Event", "X-Gitea-Event"]
        case .generic: ["X-Lockstep-Event"]
        case .gitlab: ["X-Gitlab-Event"]
        }
        guard let name = names.first(where: { has(headers, $0) }), let value = single(headers, name) else { return nil }
        return displaySafe(value, limit: 64)
    }

    /// Whether the event can have moved a branch or a tag (a push, a tag or branch created or
    /// deleted). The generic sender may leave the event out.
    static func changesRefs(_ forge: WebhookForge, event: String?) -> Bool {
        switch forge {
        case .github, .gitea: ["push", "create", "delete"].contains(event ?? "")
        case .gitlab: ["Push Hook", "Tag Push Hook"].contains(event ?? "")
        case .generic: event == nil || event == "push"
        }
    }

    // MARK: Helpers

    static func has(_ headers: HTTPFields, _ name: String) -> Bool {
        guard let field = HTTPField.Name(name) else { return false }
        return headers[field] != nil
    }

    /// The header's value when it is sent exactly once.
    static func single(_ headers: HTTPFields, _ name: String) -> String? {
        guard let field = HTTPField.Name(name) else { return nil }
        let values = headers[values: field]
        return values.count == 1 ? values[0] : nil
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Why a delivery's headers are not usable (client-safe).
struct WebhookProblem: Error, Sendable, Hashable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The newest delivery ids of one forge, oldest dropped first.
struct DeliveryLog: Sendable {
    private var order: [String] = []
    private var members: Set<String> = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Adds `id`; false when it was already there.
    mutating func insert(_ id: String) -> Bool {
        guard !members.contains(id) else { return false }
        if order.count < capacity {
            order.append(id)
        } else {
            members.remove(order[next])
            order[next] = id
            next = (next + 1) % capacity
        }
        members.insert(id)
        return true
    }
}
