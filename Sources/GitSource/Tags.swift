import Foundation

/// One tag of the mirror, peeled to the commit it names.
public struct TagInfo: Sendable, Hashable {
    /// The short name, without `refs/tags/`.
    public let name: String
    /// The object the tag ref points at: the tag object of an annotated tag, else the commit.
    public let target: ObjectID
    /// The commit the tag names after peeling.
    public let commit: ObjectID
    /// The tree of that commit (promotion compares trees, not commits).
    public let tree: ObjectID
    /// Who cut the tag and why; `nil` for a lightweight tag.
    public let annotation: TagAnnotation?

    public var isAnnotated: Bool { annotation != nil }
}

/// The metadata of an annotated tag.
public struct TagAnnotation: Sendable, Hashable {
    public let taggerName: String
    public let taggerEmail: String
    public let taggedAt: Date
    /// The tag message without its signature block.
    public let message: String
    /// The format of the signature block, if the tag is signed (not verified here).
    public let signatureFormat: SignatureFormat?
}

/// A tag that exists in the mirror but that Lockstep will not use, with the reason.
public struct RefusedTag: Sendable, Hashable {
    /// The tag's name, quoted and escaped so that it is safe to print.
    public let displayName: String
    public let reason: String
}

/// The result of listing tags: the usable ones and the refused ones (never silently dropped,
/// so that a hostile or broken tag is visible in status and audit).
public struct TagListing: Sendable {
    public var tags: [TagInfo]
    public var refused: [RefusedTag]
}

/// What a fetch changed in the mirror.
public struct FetchReport: Sendable, Equatable {
    /// A ref that was created, moved or deleted. `old` is `nil` for a new ref, `new` for a deleted one.
    public struct Change: Sendable, Hashable {
        public let name: String
        public let old: ObjectID?
        public let new: ObjectID?
    }

    /// `true` when the mirror was created by this call.
    public var initialClone: Bool
    public var createdTags: [Change] = []
    /// Tags whose name now points at another object. SPEC §3: never followed silently.
    public var movedTags: [Change] = []
    public var deletedTags: [Change] = []
    /// Branches created, moved or deleted.
    public var branches: [Change] = []
    /// Refs whose names Lockstep refuses to use (escaped for display), with the reason.
    public var refusedRefs: [RefusedTag] = []

    public var changed: Bool {
        !(createdTags.isEmpty && movedTags.isEmpty && deletedTags.isEmpty && branches.isEmpty)
    }
}

/// The facts GitSource can establish about a release tag; the core turns them into a decision.
public struct ReleaseFacts: Sendable {
    public let tag: TagInfo
    /// The protected branch's tip when the facts were read.
    public let branchTip: ObjectID
    /// The tagged commit is the branch tip or one of its ancestors.
    public let reachableFromBranch: Bool
    /// The tagged commit is on the branch's first-parent chain and has two or more parents:
    /// it is the merge commit of a pull request, not a commit pushed next to the review.
    public let isMergeOnFirstParentChain: Bool
}

/// The kind of signature block found at the end of a tag object.
public struct SignatureFormat: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public static let openPGP = SignatureFormat(rawValue: "openpgp")
    public static let ssh = SignatureFormat(rawValue: "ssh")
    public static let x509 = SignatureFormat(rawValue: "x509")
    public var description: String { rawValue }
}

/// The raw bytes of an annotated tag object, split as git splits them for `verify-tag`.
public struct RawTagObject: Sendable {
    public let name: String
    public let id: ObjectID
    /// The signed bytes: the object up to the start of the signature block.
    public let payload: [UInt8]
    /// The signature block (armoured), or `nil` for an unsigned tag.
    public let signature: [UInt8]?
    public let signatureFormat: SignatureFormat?

    /// Splits a tag object at the last line that starts a signature block, as git does.
    public static func split(_ bytes: [UInt8]) -> (payload: [UInt8], signature: [UInt8]?, format: SignatureFormat?) {
        let markers: [(String, SignatureFormat)] = [
            ("-----BEGIN PGP SIGNATURE-----", SignatureFormat.openPGP),
            ("-----BEGIN PGP MESSAGE-----", SignatureFormat.openPGP),
            ("-----BEGIN SIGNED MESSAGE-----", SignatureFormat.x509),
            ("-----BEGIN SSH SIGNATURE-----", SignatureFormat.ssh),
        ]
        var found: (Int, SignatureFormat)?
        var lineStart = 0
        while lineStart < bytes.count {
            for (marker, format) in markers where bytes[lineStart...].starts(with: marker.utf8) {
                found = (lineStart, format)
            }
            guard let newline = bytes[lineStart...].firstIndex(of: 0x0A) else { break }
            lineStart = newline + 1
        }
        guard let (start, format) = found else { return (bytes, nil, nil) }
        return (Array(bytes[..<start]), Array(bytes[start...]), format)
    }
}
