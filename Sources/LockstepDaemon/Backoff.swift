import Foundation

/// Bounded exponential backoff with jitter, for every loop that tries again after a failure.
///
/// Why: a loop that retries at once turns one persistent fault (a port already taken, an
/// unreachable remote, a store that refuses writes) into a busy spin that burns a core,
/// floods the journal and starves the rest of the daemon. Each consecutive failure doubles
/// the wait up to `maximum`; a random part (up to `jitter` of the wait) keeps several agents
/// that failed together from retrying in step. A success resets it.
struct Backoff: Sendable {
    let initial: Duration
    let maximum: Duration
    /// Fraction of the wait added at random, 0...1.
    let jitter: Double
    private(set) var failures = 0

    init(initial: Duration, maximum: Duration, jitter: Double = 0.2) {
        precondition(initial > .zero && maximum >= initial && (0...1).contains(jitter))
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// Records a failure and returns how long to wait before the next attempt.
    mutating func failed<R: RandomNumberGenerator>(using random: inout R) -> Duration {
        failures += 1
        let exponent = min(failures - 1, 30)
        let base = min(Self.seconds(initial) * pow(2, Double(exponent)), Self.seconds(maximum))
        let extra = jitter == 0 ? 0 : Double.random(in: 0...(base * jitter), using: &random)
        return .milliseconds(Int64(((base + extra) * 1_000).rounded()))
    }

    mutating func failed() -> Duration {
        var random = SystemRandomNumberGenerator()
        return failed(using: &random)
    }

    mutating func succeeded() { failures = 0 }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
