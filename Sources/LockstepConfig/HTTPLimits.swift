import Yams

/// The `http:` section of the agent config: limits that keep the API's clients from
/// exhausting the agent (descriptors, disk, the store). Every key is optional; the
/// defaults suit a deployment agent.
public struct HTTPLimits: Sendable, Hashable {
    /// Connections served at once (`max_connections`). Default 512; the daemon also keeps
    /// it under half its open-file limit.
    public var maxConnections: Int = 512
    /// Extra connections past the cap that may still ask `/healthz` or `/readyz`
    /// (`reserved_for_health_checks`). Default 16.
    public var reservedForHealthChecks: Int = 16
    /// Time allowed from connecting to a complete request head (`header_timeout`). Default 10s.
    public var headerTimeout: Duration = .seconds(10)
    /// Time a keep-alive connection may wait for its next request (`idle_timeout`). Default 60s.
    public var idleTimeout: Duration = .seconds(60)
    /// Time allowed from a request head to the end of its body (`request_read_timeout`). Default 30s.
    public var requestReadTimeout: Duration = .seconds(30)
    /// Failed authentications answered 401 per client address and window
    /// (`failed_auth_per_address`); beyond, 429. Default 20.
    public var failedAuthPerAddress: Int = 20
    /// Failed authentications answered 401 per window from all addresses together
    /// (`failed_auth_total`). Default 200.
    public var failedAuthTotal: Int = 200
    /// The window those counts and the audit log's refusal summaries use
    /// (`failed_auth_window`). Default 60s.
    public var failedAuthWindow: Duration = .seconds(60)

    public init() {}
}

extension AgentParser {
    static let httpKeys = "max_connections, reserved_for_health_checks, header_timeout, idle_timeout, request_read_timeout, failed_auth_per_address, failed_auth_total, failed_auth_window"

    func httpLimits(_ node: Node, _ at: KeyPath) -> HTTPLimits? {
        guard let f = reader.mapping(node, at, "a mapping with any of \(Self.httpKeys)") else { return nil }
        var limits = HTTPLimits()
        var valid = true
        func int(_ key: String, _ range: ClosedRange<Int>, _ set: (Int) -> Void) {
            guard let node = f.take(key) else { return }
            if let value = reader.int(node, at.key(key), range, "an integer between \(range.lowerBound) and \(range.upperBound)") {
                set(value)
            } else {
                valid = false
            }
        }
        func seconds(_ key: String, _ range: ClosedRange<Int>, _ bounds: String, _ set: (Duration) -> Void) {
            guard let node = f.take(key) else { return }
            if let value = duration(node, at.key(key), range, bounds) {
                set(value)
            } else {
                valid = false
            }
        }
        int("max_connections", 16...65_536) { limits.maxConnections = $0 }
        int("reserved_for_health_checks", 0...1_024) { limits.reservedForHealthChecks = $0 }
        seconds("header_timeout", 1...3_600, "between 1s and 1h") { limits.headerTimeout = $0 }
        seconds("idle_timeout", 1...3_600, "between 1s and 1h") { limits.idleTimeout = $0 }
        seconds("request_read_timeout", 1...3_600, "between 1s and 1h") { limits.requestReadTimeout = $0 }
        int("failed_auth_per_address", 1...1_000_000) { limits.failedAuthPerAddress = $0 }
        int("failed_auth_total", 1...10_000_000) { limits.failedAuthTotal = $0 }
        seconds("failed_auth_window", 1...86_400, "between 1s and 1d") { limits.failedAuthWindow = $0 }
        f.finish(known: Self.httpKeys)
        return valid ? limits : nil
    }
}
