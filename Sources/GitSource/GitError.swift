import Foundation

/// An error from the git layer.
///
/// `description` is safe to show a client: it names the repository (with any password in its
/// URL replaced by `***`), the ref or path involved, and what went wrong. libgit2's own message
/// goes to `debugDescription`, also redacted.
public struct GitError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is. A struct rather than an enum so that new codes never break
    /// callers that switch over the ones they know.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A ref or tag name that Lockstep refuses to use (control characters, `..`, too long, …).
        public static let invalidRefName = Code("invalid_ref_name")
        /// A tag pattern or glob that cannot be used.
        public static let invalidPattern = Code("invalid_pattern")
        /// The remote URL is malformed or uses an unsupported scheme.
        public static let invalidRemote = Code("invalid_remote")
        /// A ref, object or tag does not exist.
        public static let notFound = Code("not_found")
        /// A tag is lightweight where an annotated tag is needed.
        public static let notAnnotated = Code("not_annotated")
        /// A tag does not point (after peeling) at a commit.
        public static let notACommit = Code("not_a_commit")
        /// The remote could not be reached or the transfer broke off.
        public static let network = Code("network")
        /// The remote refused the credentials, or no usable credentials were configured.
        public static let authentication = Code("authentication")
        /// The remote's SSH host key or TLS certificate is not the trusted one.
        public static let untrustedRemote = Code("untrusted_remote")
        /// A credential or known_hosts file could not be read.
        public static let credentials = Code("credentials")
        /// A symlink in the tree points outside the exported directory.
        public static let unsafeSymlink = Code("unsafe_symlink")
        /// A path in the tree could escape or corrupt the export directory.
        public static let unsafePath = Code("unsafe_path")
        /// The tree exceeds a configured export limit.
        public static let exportLimit = Code("export_limit")
        /// The export directory is missing or not empty.
        public static let exportTarget = Code("export_target")
        /// A filesystem operation failed.
        public static let io = Code("io")
        /// A write failed because the disk (or the quota) is full: free space, then sync again.
        public static let diskFull = Code("disk_full")
        /// The process ran out of file descriptors: a leak or a limit too low, not the remote.
        public static let descriptorsExhausted = Code("descriptors_exhausted")
        /// A local file or folder could not be read or written (permissions, a read-only
        /// filesystem, a path that is not a folder): the mirror's storage, not the remote.
        public static let filesystem = Code("filesystem")
        /// An object, pack or ref of a repository is damaged or unreadable.
        public static let corruptRepository = Code("corrupt_repository")
        /// An object id in a format this build cannot address (a SHA-256 id; libgit2 1.5 reads SHA-1 only).
        public static let unsupportedObjectFormat = Code("unsupported_object_format")
        /// A file asked of a commit is not a regular file (a folder, a symlink, a submodule).
        public static let notAFile = Code("not_a_file")
        /// A file asked of a commit is larger than the caller allows.
        public static let fileTooLarge = Code("file_too_large")
        /// Any other libgit2 failure.
        public static let libgit2 = Code("libgit2")
    }

    public let code: Code
    /// What went wrong, in words safe for a client.
    public let message: String
    /// The repository involved, with credentials removed.
    public var repository: String?
    /// The ref, tag or commit involved.
    public var ref: String?
    /// The path (inside an exported tree) involved.
    public var path: String?
    /// libgit2's own error class and message (redacted of credentials like every text here):
    /// part of `description`, so that a full disk, a broken mirror and an unreachable remote
    /// never read the same.
    public var underlying: String?

    public init(_ code: Code, _ message: String, repository: String? = nil, ref: String? = nil,
                path: String? = nil, underlying: String? = nil) {
        self.code = code
        self.message = message
        self.repository = repository
        self.ref = ref
        self.path = path
        self.underlying = underlying
    }

    public var description: String {
        var parts = [message]
        if let ref { parts.append("ref \(ref)") }
        if let path { parts.append("path \(path)") }
        if let repository { parts.append("repository \(repository)") }
        if let underlying { parts.append(underlying) }
        return parts.joined(separator: "; ")
    }

    public var debugDescription: String {
        "GitError(\(code)): \(description)"
    }

    /// A copy of this error with `repository` filled in (when not already set) and every known
    /// secret removed from the texts.
    func located(repository: String, redactor: SecretRedactor) -> GitError {
        var copy = GitError(code, redactor.redact(message),
                            repository: self.repository ?? repository,
                            ref: ref.map(redactor.redact), path: path.map(redactor.redact),
                            underlying: underlying.map(redactor.redact))
        copy.repository = copy.repository.map(redactor.redact)
        return copy
    }
}

/// Replaces every occurrence of known secret strings with `***`.
///
/// libgit2 sometimes echoes a URL (with its embedded password) or a server response in its
/// error messages; every text that leaves GitSource goes through this first.
struct SecretRedactor: Sendable {
    private var secrets: [String] = []

    init(secrets: [String] = []) {
        for secret in secrets { add(secret) }
    }

    mutating func add(_ secret: String) {
        // Very short strings would redact innocent text and add no protection.
        guard secret.utf8.count >= 3, !secrets.contains(secret) else { return }
        secrets.append(secret)
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort { $0.utf8.count > $1.utf8.count }
    }

    func redact(_ text: String) -> String {
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        return result
    }
}
