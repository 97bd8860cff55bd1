public import LockstepCore
import Synchronization

/// How failed authentication is throttled and how refusals are aggregated for the audit log.
///
/// Why: one synchronous audit row per refused request let an unauthenticated client write
/// to the store as fast as it could send requests (disk, store lock, journal). Every
/// refusal still counts and stays visible, but the store receives a bounded number of rows
/// per window: the first refusal of each kind from each source at once, then one summary
/// row per kind and source at the end of the window saying how many it stands for, with a
/// few samples.
public struct RefusalPolicy: Sendable, Hashable {
    /// The length of one counting window.
    public var window: Duration
    /// Failed authentications from one address per window answered 401; beyond, 429.
    public var perSourceLimit: Int
    /// Failed authentications from all addresses per window before every further one is a 429.
    public var globalLimit: Int
    /// Distinct sources (and refusal kinds) tracked per window; the rest share one bucket,
    /// so a flood from many addresses cannot grow memory or the number of audit rows.
    public var maximumKeys: Int
    /// Requests kept as samples in a summary row.
    public var samplesPerKey: Int

    public init(window: Duration = .seconds(60), perSourceLimit: Int = 20, globalLimit: Int = 200,
                maximumKeys: Int = 64, samplesPerKey: Int = 3) {
        self.window = window
        self.perSourceLimit = perSourceLimit
        self.globalLimit = globalLimit
        self.maximumKeys = maximumKeys
        self.samplesPerKey = samplesPerKey
    }
}

extension APIErrorCode {
    /// Too many failed authentications from this address (or from everyone) in the current window (429).
    public static let rateLimited = APIErrorCode(rawValue: "rate_limited")
}

/// Counts failed authentications per source address and in total, per window, and says
/// when a further failure is to be answered 429 instead of 401.
///
/// A valid token is always served, even from an address that is being throttled: the token
/// is checked first (a SHA-256 and a constant-time compare, cheaper than any store write),
/// so a flood from a shared address (a NAT, a proxy, localhost) cannot lock an operator out
/// of approving. Guessing stays hopeless because tokens are long random secrets; what this
/// protects is the disk, the store and the log, which a 429 never touches.
public final class FailedAuthenticationLimiter: Sendable {
    public let policy: RefusalPolicy
    private struct State {
        var windowStart: ContinuousClock.Instant
        var perSource: [String: Int] = [:]
        var total = 0
    }
    private let state: Mutex<State>
    /// Every failed authentication and every one answered 429 since start.
    private let counters = Mutex<(failed: Int, throttled: Int)>((0, 0))

    public init(policy: RefusalPolicy = RefusalPolicy(), now: ContinuousClock.Instant = .now) {
        self.policy = policy
        self.state = Mutex(State(windowStart: now))
    }

    /// The bucket of addresses beyond ``RefusalPolicy/maximumKeys``.
    public static let otherSources = "other"

    /// Records one failed authentication from `source`; returns the seconds until the window
    /// ends when it is to be answered 429, nil for a plain 401.
    public func recordFailure(source: String, now: ContinuousClock.Instant = .now) -> Int? {
        let policy = self.policy
        let retryAfter: Int? = state.withLock { s in
            if now - s.windowStart >= policy.window {
                s = State(windowStart: now)
            }
            let key = s.perSource[source] != nil || s.perSource.count < policy.maximumKeys ? source : Self.otherSources
            let count = (s.perSource[key] ?? 0) + 1
            s.perSource[key] = count
            s.total += 1
            guard count > policy.perSourceLimit || s.total > policy.globalLimit else { return nil }
            let left = policy.window - (now - s.windowStart)
            return max(1, Int(left.components.seconds) + (left.components.attoseconds > 0 ? 1 : 0))
        }
        counters.withLock { c in
            c.failed += 1
            if retryAfter != nil { c.throttled += 1 }
        }
        return retryAfter
    }

    /// Failed authentications since start, and how many of them were answered 429.
    public var totals: (failed: Int, throttled: Int) { counters.withLock { $0 } }
}

/// One summary row's worth of refusals: same source and same kind within one window.
public struct RefusalSummary: Sendable, Hashable {
    public var key: RefusalKey
    /// Every refusal of this kind from this source in the window, the first (audited on its
    /// own when it happened) included.
    public var count: Int
    /// How many of them were answered 429.
    public var throttled: Int
    public var windowSeconds: Int
    /// A few of the requests, oldest first: `METHOD PATH STATUS`.
    public var samples: [String]

    /// The audit payload of the summary row.
    public var payload: [String: String] {
        var payload = key.payload
        payload["event"] = "api_access_aggregated"
        payload["count"] = "\(count)"
        payload["throttled"] = "\(throttled)"
        payload["window_seconds"] = "\(windowSeconds)"
        payload["samples"] = samples.joined(separator: "; ")
        payload["note"] = "the first of these was audited on its own"
        return payload
    }
}

/// What makes two refusals the same kind for aggregation.
public struct RefusalKey: Sendable, Hashable {
    /// The client address without its port (`other` past the key limit, `local` off a socket).
    public var source: String
    public var code: APIErrorCode
    public var authenticationFailure: APIAuthenticationFailure.Code?
    public var identity: IdentityName?

    var payload: [String: String] {
        var payload = ["source": source, "code": code.rawValue]
        if let authenticationFailure { payload["auth_failure"] = authenticationFailure.rawValue }
        if let identity { payload["identity"] = identity.rawValue }
        return payload
    }
}

/// Aggregates refusals for the audit log (see ``RefusalPolicy``). Pure bookkeeping: the
/// daemon writes the rows it is told to.
public final class RefusalLedger: Sendable {
    public enum Verdict: Sendable, Hashable {
        /// The first refusal of its kind from its source in this window: audit it now.
        case auditNow
        /// Counted; it will be in the window's summary row.
        case counted
    }

    private struct Bucket {
        var count = 0
        var throttled = 0
        var samples: [String] = []
    }
    private struct State {
        var windowStart: ContinuousClock.Instant
        var buckets: [RefusalKey: Bucket] = [:]
        var order: [RefusalKey] = []
        var closed: [RefusalSummary] = []
        var total = 0
        var summariesMade = 0
    }

    public let policy: RefusalPolicy
    private let state: Mutex<State>

    public init(policy: RefusalPolicy = RefusalPolicy(), now: ContinuousClock.Instant = .now) {
        self.policy = policy
        self.state = Mutex(State(windowStart: now))
    }

    /// The source of a refusal for counting: its address without the port.
    public static func source(of refusal: APIAccessRefusal) -> String {
        refusal.remoteHost ?? "local"
    }

    public func record(_ refusal: APIAccessRefusal, now: ContinuousClock.Instant = .now) -> Verdict {
        let policy = self.policy
        return state.withLock { s in
            Self.rotateIfDue(&s, now: now, policy: policy)
            s.total += 1
            var key = RefusalKey(source: Self.source(of: refusal), code: refusal.status == 429 ? .unauthorized : refusal.code,
                                 authenticationFailure: refusal.authenticationFailure, identity: refusal.identity)
            if s.buckets[key] == nil && s.buckets.count >= policy.maximumKeys {
                key.source = FailedAuthenticationLimiter.otherSources
            }
            var bucket = s.buckets[key] ?? { s.order.append(key); return Bucket() }()
            bucket.count += 1
            if refusal.status == 429 { bucket.throttled += 1 }
            if bucket.samples.count < policy.samplesPerKey {
                bucket.samples.append("\(refusal.method) \(refusal.path) \(refusal.status)")
            }
            s.buckets[key] = bucket
            return bucket.count == 1 ? .auditNow : .counted
        }
    }

    /// Summary rows to write now: those of windows that ended (all open ones when `closing`,
    /// at shutdown). A key seen only once gets none: its one refusal was audited already.
    public func takeSummaries(now: ContinuousClock.Instant = .now, closing: Bool = false) -> [RefusalSummary] {
        let policy = self.policy
        return state.withLock { s in
            Self.rotateIfDue(&s, now: now, policy: policy)
            if closing { Self.close(&s, now: now, policy: policy) }
            defer { s.closed = [] }
            return s.closed
        }
    }

    /// Refusals recorded since start, and the summary rows made.
    public var totals: (refusals: Int, summaries: Int) { state.withLock { ($0.total, $0.summariesMade) } }

    private static func rotateIfDue(_ s: inout State, now: ContinuousClock.Instant, policy: RefusalPolicy) {
        guard now - s.windowStart >= policy.window else { return }
        close(&s, now: now, policy: policy)
    }

    private static func close(_ s: inout State, now: ContinuousClock.Instant, policy: RefusalPolicy) {
        let seconds = Int((now - s.windowStart).components.seconds)
        for key in s.order {
            guard let bucket = s.buckets[key], bucket.count > 1 else { continue }
            s.closed.append(RefusalSummary(key: key, count: bucket.count, throttled: bucket.throttled,
                                           windowSeconds: max(seconds, 1), samples: bucket.samples))
            s.summariesMade += 1
        }
        s.buckets = [:]
        s.order = []
        s.windowStart = now
    }
}
