import Crypto
import Foundation

/// A SHA-256 value in the audit chain (32 bytes, shown as lowercase hex).
public struct AuditHash: Sendable, Hashable, Codable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// The `previousHash` of the first entry: 32 zero bytes.
    public static let genesis = AuditHash(unchecked: [UInt8](repeating: 0, count: 32))

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Parses 64 hex characters.
    public init(hex: String) throws(CoreError) {
        let lower = hex.lowercased()
        guard NameRules.isHex(lower, count: 64) else {
            throw CoreError(.identifierInvalid, "audit hash \"\(displaySafe(hex))\" is not 64 hexadecimal characters")
        }
        var out: [UInt8] = []
        var iterator = lower.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            out.append(Self.nibble(high) << 4 | Self.nibble(low))
        }
        bytes = out
    }

    public var hex: String { hexString(bytes) }
    public var description: String { hex }

    private static func nibble(_ byte: UInt8) -> UInt8 { byte <= 0x39 ? byte - 0x30 : byte - 0x61 + 10 }

    public init(from decoder: any Decoder) throws {
        try self.init(hex: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

/// What an audit entry records (a growable set of names).
public struct AuditKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let tagDecision = AuditKind(rawValue: "tag_decision")
    public static let transition = AuditKind(rawValue: "transition")
    public static let approval = AuditKind(rawValue: "approval")
    public static let approvalRefusal = AuditKind(rawValue: "approval_refusal")
    public static let applyPreconditions = AuditKind(rawValue: "apply_preconditions")
    public static let alert = AuditKind(rawValue: "alert")
    public static let refusal = AuditKind(rawValue: "refusal")
    /// A drift check of a target's applied revision.
    public static let drift = AuditKind(rawValue: "drift")
}

/// One entry of the append-only, hash-chained audit log.
///
/// `hash = SHA-256(previousHash bytes || canonicalBytes)`; the first entry's
/// `previousHash` is ``AuditHash/genesis``. Changing, removing, inserting or
/// reordering a stored entry breaks the chain at that point, which
/// ``AuditChain/verify(_:expectedHead:)`` names (docs/THREAT-MODEL.md §5.2: someone edits the store to hide an apply).
///
/// Canonical encoding (version 1), concatenated in this fixed order; every string is
/// its UTF-8 bytes preceded by the byte count as a 4-byte big-endian unsigned integer:
/// 1. the string `lockstep-audit-v1`;
/// 2. `sequence` as 8-byte big-endian unsigned;
/// 3. `epochMilliseconds` as 8-byte big-endian two's complement;
/// 4. `actor`; 5. `kind`;
/// 6. target: one byte `0` when absent, else `1`, then project and environment strings;
/// 7. run id: one byte `0` when absent, else `1`, then the id string;
/// 8. payload: entry count as 4-byte big-endian, then for each entry in ascending
///    order of the key's UTF-8 bytes, the key string and the value string.
/// Length prefixes make the encoding unambiguous: no choice of field text can make
/// two different entries encode to the same bytes.
public struct AuditEntry: Sendable, Hashable, Codable {
    public let sequence: UInt64
    /// Time in whole milliseconds since 1970, so the stored value and the hashed value are identical.
    public let epochMilliseconds: Int64
    public let actor: String
    public let kind: AuditKind
    public let target: TargetID?
    public let runID: RunID?
    /// Flat, string-only details. Never secrets: callers pass redacted values.
    public let payload: [String: String]
    public let previousHash: AuditHash
    public let hash: AuditHash

    /// An entry as read back from a store (nothing is recomputed; verify does that).
    public init(sequence: UInt64, epochMilliseconds: Int64, actor: String, kind: AuditKind, target: TargetID?,
                runID: RunID?, payload: [String: String], previousHash: AuditHash, hash: AuditHash) {
        self.sequence = sequence
        self.epochMilliseconds = epochMilliseconds
        self.actor = actor
        self.kind = kind
        self.target = target
        self.runID = runID
        self.payload = payload
        self.previousHash = previousHash
        self.hash = hash
    }

    /// The entry's time.
    public var time: Date { Date(timeIntervalSince1970: Double(epochMilliseconds) / 1000) }

    /// The canonical bytes described on the type.
    public var canonicalBytes: [UInt8] {
        Self.canonicalBytes(sequence: sequence, epochMilliseconds: epochMilliseconds, actor: actor, kind: kind,
                            target: target, runID: runID, payload: payload)
    }

    /// `SHA-256(previousHash || canonicalBytes)` computed from the fields as they are now.
    public var computedHash: AuditHash {
        Self.chainHash(previous: previousHash, canonical: canonicalBytes)
    }

    static func chainHash(previous: AuditHash, canonical: [UInt8]) -> AuditHash {
        var hasher = SHA256()
        hasher.update(data: previous.bytes)
        hasher.update(data: canonical)
        return AuditHash(unchecked: Array(hasher.finalize()))
    }

    static func canonicalBytes(sequence: UInt64, epochMilliseconds: Int64, actor: String, kind: AuditKind,
                               target: TargetID?, runID: RunID?, payload: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        func string(_ text: String) {
            let bytes = Array(text.utf8)
            out.append(contentsOf: withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init))
            out.append(contentsOf: bytes)
        }
        string("lockstep-audit-v1")
        out.append(contentsOf: withUnsafeBytes(of: sequence.bigEndian, Array.init))
        out.append(contentsOf: withUnsafeBytes(of: epochMilliseconds.bigEndian, Array.init))
        string(actor)
        string(kind.rawValue)
        if let target {
            out.append(1)
            string(target.project.rawValue)
            string(target.environment.rawValue)
        } else {
            out.append(0)
        }
        if let runID {
            out.append(1)
            string(runID.rawValue)
        } else {
            out.append(0)
        }
        let sorted = payload.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        out.append(contentsOf: withUnsafeBytes(of: UInt32(sorted.count).bigEndian, Array.init))
        for (key, value) in sorted {
            string(key)
            string(value)
        }
        return out
    }
}

/// Where and why an audit chain is broken.
public struct AuditBreak: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason (a struct with static members, so it can grow).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The entry's fields no longer produce its stored hash.
        public static let edited = Code(rawValue: "edited")
        /// Sequence numbers jump: entries were deleted.
        public static let deleted = Code(rawValue: "deleted")
        /// An entry that does not belong sits between two linked entries, or repeats a sequence number.
        public static let inserted = Code(rawValue: "inserted")
        /// Entries are out of order.
        public static let reordered = Code(rawValue: "reordered")
        /// The entry links to a hash no earlier entry has: its predecessor was rewritten or removed.
        public static let linkBroken = Code(rawValue: "link_broken")
        /// The chain's last hash differs from an externally kept head: entries were cut off the end
        /// or the whole chain was rewritten.
        public static let headMismatch = Code(rawValue: "head_mismatch")
    }

    public let code: Code
    /// Position in the list given to verify.
    public let index: Int
    /// The sequence number of the first broken entry as stored (nil for an empty chain).
    public let sequence: UInt64?
    public let description: String
}

/// Result of checking an audit chain.
public enum AuditVerification: Sendable, Hashable {
    case intact(entries: Int, head: AuditHash)
    case broken(AuditBreak)

    public var isIntact: Bool {
        if case .intact = self { true } else { false }
    }
}

/// Building and checking the audit chain.
public enum AuditChain {
    /// The next entry after `previous` (nil for the first entry, which gets sequence 1
    /// and the genesis hash). Time is truncated to whole milliseconds.
    public static func append(after previous: AuditEntry?, time: Date, actor: String, kind: AuditKind,
                              target: TargetID? = nil, runID: RunID? = nil,
                              payload: [String: String] = [:]) -> AuditEntry {
        let sequence = (previous?.sequence ?? 0) + 1
        let previousHash = previous?.hash ?? .genesis
        let milliseconds = Int64((time.timeIntervalSince1970 * 1000).rounded(.down))
        let canonical = AuditEntry.canonicalBytes(sequence: sequence, epochMilliseconds: milliseconds, actor: actor,
                                                  kind: kind, target: target, runID: runID, payload: payload)
        return AuditEntry(sequence: sequence, epochMilliseconds: milliseconds, actor: actor, kind: kind,
                          target: target, runID: runID, payload: payload, previousHash: previousHash,
                          hash: AuditEntry.chainHash(previous: previousHash, canonical: canonical))
    }

    /// Checks `entries` in stored order, starting at sequence 1, and names the first broken entry.
    ///
    /// Per entry: a forward jump in sequence numbers means deletion (or reordering when
    /// the skipped number appears later); a `previousHash` matching an older entry means
    /// the entries in between were inserted, one matching a later entry means reordering;
    /// a repeated sequence number means insertion, a step back reordering; a `previousHash`
    /// matching no entry means the predecessor was rewritten or removed; fields that do not
    /// reproduce the stored hash mean the entry was edited.
    ///
    /// A chain alone cannot reveal entries cut off its end, nor a chain rewritten from
    /// the start by someone who recomputed every hash; pass `expectedHead`, a head hash
    /// kept outside the store, to detect those too.
    public static func verify(_ entries: [AuditEntry], expectedHead: AuditHash? = nil) -> AuditVerification {
        var seenSequences: Set<UInt64> = []
        let laterHashes = Dictionary(entries.enumerated().map { ($0.element.hash, $0.offset) },
                                     uniquingKeysWith: { first, _ in first })
        var earlierHashes: [AuditHash: Int] = [:]
        let allSequences = Set(entries.map(\.sequence))
        for (index, entry) in entries.enumerated() {
            let previous = index == 0 ? nil : entries[index - 1]
            let expectedSequence = (previous?.sequence ?? 0) + 1
            func broken(_ code: AuditBreak.Code, _ why: String) -> AuditVerification {
                .broken(AuditBreak(code: code, index: index, sequence: entry.sequence,
                                   description: "audit entry \(entry.sequence) (position \(index + 1)): \(why)"))
            }
            if entry.sequence > expectedSequence {
                if allSequences.contains(expectedSequence) {
                    return broken(.reordered, "stands where entry \(expectedSequence) belongs: entries were reordered")
                }
                let missing = entry.sequence - expectedSequence
                return broken(.deleted, "\(missing) entr\(missing == 1 ? "y is" : "ies are") missing before it (expected sequence \(expectedSequence))")
            }
            let expectedPrevious = previous?.hash ?? .genesis
            if entry.previousHash != expectedPrevious {
                if let older = earlierHashes[entry.previousHash], older < index - 1 {
                    let firstForeign = entries[older + 1]
                    return .broken(AuditBreak(code: .inserted, index: older + 1, sequence: firstForeign.sequence,
                                              description: "audit entry \(firstForeign.sequence) (position \(older + 2)) was inserted: "
                                              + "entry \(entry.sequence) links to the entry before it"))
                }
                if let later = laterHashes[entry.previousHash], later > index {
                    return broken(.reordered, "links to an entry stored after it: entries were reordered")
                }
            }
            if entry.sequence < expectedSequence {
                if seenSequences.contains(entry.sequence) {
                    return broken(.inserted, "repeats sequence number \(entry.sequence): an entry was inserted")
                }
                return broken(.reordered, "comes after entry \(previous?.sequence ?? 0): entries were reordered")
            }
            if entry.previousHash != expectedPrevious {
                return broken(.linkBroken, "does not link to the entry before it: that entry was rewritten or an entry was removed")
            }
            if entry.computedHash != entry.hash {
                return broken(.edited, "its content does not match its hash: the entry was edited")
            }
            seenSequences.insert(entry.sequence)
            earlierHashes[entry.hash] = index
        }
        let head = entries.last?.hash ?? .genesis
        if let expectedHead, expectedHead != head {
            return .broken(AuditBreak(code: .headMismatch, index: entries.count, sequence: entries.last?.sequence,
                                      description: "the chain ends at \(head), not at the expected head \(expectedHead): "
                                      + "entries were removed from the end or the chain was rewritten"))
        }
        return .intact(entries: entries.count, head: head)
    }
}
