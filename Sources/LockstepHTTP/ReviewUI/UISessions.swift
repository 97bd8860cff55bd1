import Foundation
public import LockstepCore
import Synchronization

/// Signed-in browsers of the review UI (docs/THREAT-MODEL.md §7.4).
///
/// A person signs in with their API token once; the browser then holds only a random session
/// id in an `HttpOnly`, `SameSite=Strict` cookie, never the token. Each session has its own
/// CSRF token that every form must return. Sessions live in memory: a restart signs everyone
/// out, which is the safe direction. They expire after ``lifetime``, and at most ``capacity``
/// exist (the oldest goes first), so a flood of sign-ins cannot grow memory without bound.
public final class UISessions: Sendable {
    public struct Session: Sendable, Hashable {
        public var identity: IdentityName
        public var csrf: String
        public var expires: Date
    }

    public static let lifetime: TimeInterval = 8 * 3_600
    public static let capacity = 10_000

    private let sessions = Mutex<[String: Session]>([:])
    private let now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date = { Date() }) {
        self.now = now
    }

    /// A new session for `identity`: its id (the cookie's value) and the session.
    public func create(for identity: IdentityName) -> (id: String, session: Session) {
        let id = Self.randomToken()
        let session = Session(identity: identity, csrf: Self.randomToken(), expires: now().addingTimeInterval(Self.lifetime))
        let time = now()
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > time }
            if sessions.count >= Self.capacity, let oldest = sessions.min(by: { $0.value.expires < $1.value.expires })?.key {
                sessions[oldest] = nil
            }
            sessions[id] = session
        }
        return (id, session)
    }

    /// The live session with this id, if any.
    public func session(_ id: String) -> Session? {
        let time = now()
        return sessions.withLock { sessions in
            guard let session = sessions[id] else { return nil }
            guard session.expires > time else {
                sessions[id] = nil
                return nil
            }
            return session
        }
    }

    public func end(_ id: String) {
        _ = sessions.withLock { $0.removeValue(forKey: id) }
    }

    public var count: Int { sessions.withLock { $0.count } }

    /// 32 random bytes from the system's CSPRNG, hex.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// Compares two tokens without stopping at the first difference.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
