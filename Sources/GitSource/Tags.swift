import Foundation
import LockstepCore

/// One tag of the mirror, peeled to the commit it names.
public struct TagInfo: Sendable, Hashable {
    /// The short name, without `refs/tags/`.
    public let name: String
    /// The object the tag ref points at: the tag object of an annotated tag, else the commit.
    public let target: GitObjectID
    /// The commit the tag names after peeling.
    public let commit: GitObjectID
    /// The tree of that commit (promotion compares trees, not commits).
    public let tree: GitObjectID
    /// Who cut the tag and why; `nil` for a lightweight tag.
    public let annotation: TagAnnotation?

    public init(name: String, target: GitObjectID, commit: GitObjectID, tree: GitObjectID, annotation: TagAnnotation?) {
        self.name = name
        self.target = target
        self.commit = commit
        self.tree = tree
        self.annotation = annotation
    }

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

    public init(taggerName: String, taggerEmail: String, taggedAt: Date, message: String, signatureFormat: SignatureFormat?) {
        self.taggerName = taggerName
        self.taggerEmail = taggerEmail
        self.taggedAt = taggedAt
        self.message = message
        self.signatureFormat = signatureFormat
    }
}

/// A tag that exists in the mirror but that Lockstep will not use, with the reason.
public struct RefusedTag: Sendable, Hashable {
    /// The tag's name, quoted and escaped so that it is safe to print.
    public let displayName: String
    public let reason: String

    public init(displayName: String, reason: String) {
        self.displayName = displayName
        self.reason = reason
    }
}

/// The result of listing tags: the usable ones and the refused ones (never silently dropped,
/// so that a hostile or broken tag is visible in status and audit).
public struct TagListing: Sendable {
    public var tags: [TagInfo]
    public var refused: [RefusedTag]

    public init(tags: [TagInfo] = [], refused: [RefusedTag] = []) {
        self.tags = tags
        self.refused = refused
    }
}

/// What a fetch changed in the mirror.
public struct FetchReport: Sendable, Equatable {
    /// A ref that was created, moved or deleted. `old` is `nil` for a new ref, `new` for a deleted one.
    public struct Change: Sendable, Hashable {
        public let name: String
        public let old: GitObjectID?
        public let new: GitObjectID?

        public init(name: String, old: GitObjectID?, new: GitObjectID?) {
            self.name = name
            self.old = old
            self.new = new
        }
    }

    /// `true` when the mirror was created by this call.
    public var initialClone: Bool
    public var createdTags: [Change] = []
    /// Tags whose name now points at another object. docs/CONTRACT.md §3: never followed silently.
    public var movedTags: [Change] = []
    public var deletedTags: [Change] = []
    /// Branches created, moved or deleted.
    public var branches: [Change] = []
    /// Refs the remote offers that this sync skipped for the first time (or whose target or
    /// reason changed since they were last skipped), each with its reason. A ref that stays
    /// skipped is not listed again by later syncs: `GitMirror.skippedRefs()` lists every ref
    /// skipped now. Every other ref was still fetched.
    public var skippedRefs: [SkippedRef] = []
    /// Refs skipped before that are no longer skipped: deleted upstream, or fixed (a fixed
    /// one also appears in `createdTags` or `branches`).
    public var clearedSkippedRefs: [SkippedRef] = []

    public init(initialClone: Bool, createdTags: [Change] = [], movedTags: [Change] = [], deletedTags: [Change] = [],
                branches: [Change] = [], skippedRefs: [SkippedRef] = [], clearedSkippedRefs: [SkippedRef] = []) {
        self.initialClone = initialClone
        self.createdTags = createdTags
        self.movedTags = movedTags
        self.deletedTags = deletedTags
        self.branches = branches
        self.skippedRefs = skippedRefs
        self.clearedSkippedRefs = clearedSkippedRefs
    }

    public var changed: Bool {
        !(createdTags.isEmpty && movedTags.isEmpty && deletedTags.isEmpty && branches.isEmpty)
    }
}

/// A ref the remote offers that the mirror does not take, with the reason.
///
/// One unusable ref must never stop the others from being fetched (a tag on a tree or a blob,
/// a name libgit2 cannot store, a name Lockstep refuses, a tag whose object is missing): it is
/// skipped, the mirror keeps no copy of it, and removing it upstream needs no manual step.
/// See docs/THREAT-MODEL.md, "one unusable ref".
public struct SkippedRef: Sendable, Hashable, CustomStringConvertible {
    /// Why a ref was skipped. A struct rather than an enum so that new reasons never break callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The name is longer than Lockstep (and libgit2) can store.
        public static let nameTooLong = Code("name_too_long")
        /// The name is one Lockstep refuses (control or non-ASCII bytes, shell characters, `..`, …)
        /// or one libgit2 refuses.
        public static let invalidName = Code("invalid_name")
        /// The ref points (directly or through tag objects) at a tree or a blob, not a commit.
        public static let notACommit = Code("not_a_commit")
        /// The object the ref or one of its tag objects points at does not exist.
        public static let missingObject = Code("missing_object")
        /// The name collides with another ref (`a` and `a/b` cannot both exist), or the chain of
        /// tag objects is too deep, or libgit2 refused to store the ref for another ref-specific
        /// reason.
        public static let unstorable = Code("unstorable")
    }

    /// The full ref name (`refs/tags/…`), quoted, control and non-ASCII characters escaped,
    /// cut after 80 characters: safe to print on one line.
    public let displayName: String
    /// `true` for a ref under `refs/tags/`, `false` for a branch.
    public let isTag: Bool
    /// The object the remote says the ref points at.
    public let target: GitObjectID?
    public let code: Code
    /// Why, in words safe for a client.
    public let reason: String

    public init(displayName: String, isTag: Bool, target: GitObjectID?, code: Code, reason: String) {
        self.displayName = displayName
        self.isTag = isTag
        self.target = target
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(displayName) skipped (\(code)): \(reason)" }
}

/// The facts GitSource can establish about a release tag; the core turns them into a decision.
public struct ReleaseFacts: Sendable {
    public let tag: TagInfo
    /// The protected branch's tip when the facts were read.
    public let branchTip: GitObjectID
    /// The tagged commit is the branch tip or one of its ancestors.
    public let reachableFromBranch: Bool
    /// The tagged commit is on the branch's first-parent chain and has two or more parents:
    /// it is the merge commit of a pull request, not a commit pushed next to the review.
    public let isMergeOnFirstParentChain: Bool

    public init(tag: TagInfo, branchTip: GitObjectID, reachableFromBranch: Bool, isMergeOnFirstParentChain: Bool) {
        self.tag = tag
        self.branchTip = branchTip
        self.reachableFromBranch = reachableFromBranch
        self.isMergeOnFirstParentChain = isMergeOnFirstParentChain
    }
}

/// One target's question about tags: the names its pattern can match, as a glob, and how
/// many slash-separated parts they have (``GitMirror/tags(matching:components:)``).
public struct TagQuery: Sendable, Hashable {
    public var glob: String
    public var components: Int?

    public init(glob: String, components: Int?) {
        self.glob = glob
        self.components = components
    }
}

/// Everything a target's tag decisions read from the mirror: the tags its query lists (and
/// the ones refused) and the release facts of each listed tag, by name.
public struct ReleaseInputs: Sendable {
    public var listing: TagListing
    public var facts: [String: Result<ReleaseFacts, GitError>]

    public init(listing: TagListing, facts: [String: Result<ReleaseFacts, GitError>]) {
        self.listing = listing
        self.facts = facts
    }
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
    public let id: GitObjectID
    /// The signed bytes: the object up to the start of the signature block.
    public let payload: [UInt8]
    /// The signature block (armoured), or `nil` for an unsigned tag.
    public let signature: [UInt8]?
    public let signatureFormat: SignatureFormat?

    public init(name: String, id: GitObjectID, payload: [UInt8], signature: [UInt8]?, signatureFormat: SignatureFormat?) {
        self.name = name
        self.id = id
        self.payload = payload
        self.signature = signature
        self.signatureFormat = signatureFormat
    }

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
