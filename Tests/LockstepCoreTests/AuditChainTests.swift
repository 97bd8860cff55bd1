import Foundation
import Testing
@testable import LockstepCore

/// The hash-chained audit log: canonical encoding, and verify naming the first broken entry for each kind of tampering.
@Suite struct AuditChainTests {
    static let target = TargetID(project: project("net"), environment: env("prod"))

    /// A chain of `count` entries built with ``AuditChain/append``.
    static func chain(_ count: Int) -> [AuditEntry] {
        var entries: [AuditEntry] = []
        for index in 0..<count {
            entries.append(AuditChain.append(after: entries.last, time: t0.addingTimeInterval(Double(index)), actor: "lockstep",
                                             kind: .transition, target: target, runID: runID("run-\(index)"),
                                             payload: ["from": "approved", "to": "applying", "n": String(index)]))
        }
        return entries
    }

    /// Rebuilds an entry with changed fields and, when `rehash`, a recomputed own hash (a careful attacker).
    static func forge(_ entry: AuditEntry, sequence: UInt64? = nil, actor: String? = nil, payload: [String: String]? = nil,
                      previousHash: AuditHash? = nil, rehash: Bool) -> AuditEntry {
        let draft = AuditEntry(sequence: sequence ?? entry.sequence, epochMilliseconds: entry.epochMilliseconds,
                               actor: actor ?? entry.actor, kind: entry.kind, target: entry.target, runID: entry.runID,
                               payload: payload ?? entry.payload, previousHash: previousHash ?? entry.previousHash, hash: entry.hash)
        guard rehash else { return draft }
        return AuditEntry(sequence: draft.sequence, epochMilliseconds: draft.epochMilliseconds, actor: draft.actor, kind: draft.kind,
                          target: draft.target, runID: draft.runID, payload: draft.payload, previousHash: draft.previousHash,
                          hash: draft.computedHash)
    }

    /// An untouched chain verifies, starts from the genesis hash and links every entry.
    @Test func intactChainVerifies() {
        let entries = Self.chain(5)
        #expect(entries.first?.previousHash == .genesis)
        #expect(AuditHash.genesis.hex == String(repeating: "0", count: 64))
        #expect(entries.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(AuditChain.verify(entries) == .intact(entries: 5, head: entries[4].hash))
        #expect(AuditChain.verify(entries, expectedHead: entries[4].hash).isIntact)
        #expect(AuditChain.verify([]) == .intact(entries: 0, head: .genesis))
    }

    /// The canonical encoding is fixed: this golden hash changes only if the documented format changes.
    @Test func canonicalEncodingIsStable() throws {
        let entry = AuditChain.append(after: nil, time: Date(timeIntervalSince1970: 1.5), actor: "alice", kind: .approval,
                                      target: Self.target, runID: runID("r1"), payload: ["b": "2", "a": "1"])
        #expect(entry.epochMilliseconds == 1500)
        var expected: [UInt8] = []
        func string(_ text: String) {
            let bytes = Array(text.utf8)
            expected += [0, 0, 0, UInt8(bytes.count)] + bytes
        }
        string("lockstep-audit-v1")
        expected += [0, 0, 0, 0, 0, 0, 0, 1]
        expected += [0, 0, 0, 0, 0, 0, 0x05, 0xDC]
        string("alice"); string("approval")
        expected.append(1); string("net"); string("prod")
        expected.append(1); string("r1")
        expected += [0, 0, 0, 2]
        string("a"); string("1"); string("b"); string("2")
        #expect(entry.canonicalBytes == expected)
        #expect(entry.hash == entry.computedHash)
        #expect(entry.hash.hex == Digest.sha256(of: AuditHash.genesis.bytes + expected).rawValue)
    }

    /// Length prefixes keep field boundaries: moving text between fields changes the bytes.
    @Test func fieldBoundariesAreUnambiguous() {
        let a = AuditChain.append(after: nil, time: t0, actor: "ab", kind: AuditKind(rawValue: "c"))
        let b = AuditChain.append(after: nil, time: t0, actor: "a", kind: AuditKind(rawValue: "bc"))
        #expect(a.canonicalBytes != b.canonicalBytes)
        let c = AuditChain.append(after: nil, time: t0, actor: "x", kind: .alert, payload: ["k": "v=1"])
        let d = AuditChain.append(after: nil, time: t0, actor: "x", kind: .alert, payload: ["k=v": "1"])
        #expect(c.hash != d.hash)
    }

    enum Tamper: String, CaseIterable, Sendable {
        case editPayload, editActorAndRehash, deleteMiddle, deleteFirst, insertDuplicateSequence, insertAndRenumber,
             swapAdjacent, truncateTail
    }

    /// Each tampering is detected and the first broken entry is named.
    @Test(arguments: Tamper.allCases)
    func tamperingIsNamed(tamper: Tamper) throws {
        var entries = Self.chain(6)
        var head: AuditHash? = nil
        let code: AuditBreak.Code
        let brokenSequence: UInt64?
        switch tamper {
        case .editPayload:
            // Someone rewrites "applying" to hide an apply, without touching hashes.
            entries[2] = Self.forge(entries[2], payload: ["from": "approved", "to": "rejected", "n": "2"], rehash: false)
            (code, brokenSequence) = (.edited, 3)
        case .editActorAndRehash:
            // The attacker recomputes the edited entry's hash; its successor still links to the original.
            entries[2] = Self.forge(entries[2], actor: "someone-else", rehash: true)
            (code, brokenSequence) = (.linkBroken, 4)
        case .deleteMiddle:
            entries.remove(at: 3)
            (code, brokenSequence) = (.deleted, 5)
        case .deleteFirst:
            entries.remove(at: 0)
            (code, brokenSequence) = (.deleted, 2)
        case .insertDuplicateSequence:
            // A forged entry 3, linked correctly to entry 2, placed before the real entry 3.
            let forged = AuditChain.append(after: entries[1], time: t0, actor: "attacker", kind: .approval)
            entries.insert(forged, at: 2)
            (code, brokenSequence) = (.inserted, 3)
            let result = AuditChain.verify(entries)
            guard case .broken(let broken) = result else { Issue.record("not detected"); return }
            #expect(broken.index == 2, "the forged entry is named, not the genuine one")
        case .insertAndRenumber:
            // A forged entry 3 and every later genuine entry renumbered (and rehashed) behind it.
            let forged = AuditChain.append(after: entries[1], time: t0, actor: "attacker", kind: .approval)
            let renumbered = entries[2...].map { Self.forge($0, sequence: $0.sequence + 1, rehash: true) }
            entries = Array(entries[..<2]) + [forged] + renumbered
            (code, brokenSequence) = (.inserted, 3)
        case .swapAdjacent:
            entries.swapAt(2, 3)
            (code, brokenSequence) = (.reordered, 4)
        case .truncateTail:
            head = entries.last?.hash
            entries.removeLast(2)
            (code, brokenSequence) = (.headMismatch, 4)
        }
        let result = AuditChain.verify(entries, expectedHead: head)
        guard case .broken(let broken) = result else {
            Issue.record("\(tamper) was not detected")
            return
        }
        #expect(broken.code == code, "\(tamper): \(broken.description)")
        #expect(broken.sequence == brokenSequence, "\(tamper): \(broken.description)")
        #expect(broken.description.contains("entry") || broken.code == .headMismatch)
    }

    /// Entries survive a JSON round trip (the `audit export` form) and still verify.
    @Test func jsonRoundTripKeepsTheChain() throws {
        let entries = Self.chain(3)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let decoded = try JSONDecoder().decode([AuditEntry].self, from: encoder.encode(entries))
        #expect(decoded == entries)
        #expect(AuditChain.verify(decoded).isIntact)
    }
}
