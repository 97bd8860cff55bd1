import Foundation
public import GitSource
import LockstepConfig
import LockstepCore
import RunStore

/// What a target's last visit left settled, so that a pass can tell the target would do nothing
/// new and skip it (docs/ARCHITECTURE.md, "Targets a pass skips").
///
/// A visit reads four things: the target's tags and their release facts from the mirror, the
/// store, the clock, and (for a `promote_from` environment) the runs of its source target. The
/// memo keeps a digest of the first; the store's audit log names the targets written since the
/// last pass (``RunStore/auditTargets(after:)``), and a written target loses its memo; the clock
/// acts only through the approval lifetime and apply windows, kept as a deadline and a flag;
/// and a target whose promotion source was visited in the same pass is visited too. A memo is
/// made only after a visit that queued nothing, met no problem and has nothing to retry.
struct TargetMemo: Sendable, Equatable {
    /// ``TargetMemo/digest(of:query:)`` of what the visit read from the mirror.
    let inputs: Digest
    /// When the approvals of the target's waiting run expire.
    let approvalsExpireAt: Date?
    /// The target has an approved run held back by a closed apply window.
    let heldByWindow: Bool

    /// Whether the clock alone makes the target's next visit do something.
    func fallsDue(at moment: Date, policy: EnvironmentPolicy) -> Bool {
        if let expiry = approvalsExpireAt, moment >= expiry { return true }
        return heldByWindow && policy.applyAllowed(at: moment)
    }

    /// A digest of everything a target's tag decisions read from the mirror: the query, each
    /// listed tag's name and object (the object id covers the annotation, the commit and the
    /// tree), its release facts, and every refused name with its reason. Equal digests mean the
    /// same decisions from the same store. The branch tip itself is left out on purpose: a merge
    /// moves it for every target, and only the facts it decides (reachable, merge commit on the
    /// first-parent chain) matter to a target.
    /// `trust` is the digest of the environment's signer files when it requires signed tags (a
    /// changed file, a revoked key, changes the decisions).
    static func digest(of inputs: ReleaseInputs, query: TagQuery, trust: String? = nil) -> Digest {
        var bytes: [UInt8] = []
        func field(_ text: String) {
            let utf8 = Array(text.utf8)
            withUnsafeBytes(of: UInt32(clamping: utf8.count).bigEndian) { bytes += $0 }
            bytes += utf8
        }
        field(query.glob)
        field(query.components.map(String.init) ?? "-")
        field(trust ?? "-")
        for tag in inputs.listing.tags {
            field(tag.name)
            field(tag.target.rawValue)
            switch inputs.facts[tag.name] {
            case .success(let facts)?:
                field(facts.tag.target.rawValue)
                field("\(facts.reachableFromBranch ? 1 : 0)\(facts.isMergeOnFirstParentChain ? 1 : 0)")
            case .failure(let error)?:
                field("failed: \(error.description)")
            case nil:
                field("absent")
            }
        }
        field("refused")
        for refused in inputs.listing.refused {
            field(refused.displayName)
            field(refused.reason)
        }
        return Digest.sha256(of: bytes)
    }
}

extension Gate {
    /// Forgets the memo of every target the store's audit log names since the last pass (all of
    /// them when an entry names no target), and moves the log position on.
    func forgetWrittenTargets() async throws {
        let changes: AuditTargets
        do {
            changes = try await store.auditTargets(after: auditPosition)
        } catch {
            throw GateError(.store, "the store could not be read: \(safeDescription(error))")
        }
        if changes.untargeted {
            targetMemos.removeAll()
        } else {
            for target in changes.targets { targetMemos[target] = nil }
        }
        auditPosition = changes.lastSequence
    }
}

extension ServedTarget {
    /// The target's question to the mirror.
    var query: TagQuery {
        TagQuery(glob: pattern.glob(project: target.project, environment: target.environment), components: pattern.componentCount)
    }
}
