internal import CLibgit2
import Foundation
import LockstepCore

/// libgit2 is initialised once per process; a global `let` is initialised lazily and exactly once.
private let libgit2Initialisation: Int32 = lockstep_git_init()

/// Makes sure libgit2 is initialised before any call into it.
func ensureLibgit2() throws(GitError) {
    if libgit2Initialisation < 0 {
        throw GitError(.libgit2, "libgit2 could not be initialised (code \(libgit2Initialisation))")
    }
}

/// Turns a libgit2 return code into a thrown `GitError`.
///
/// `git_error_last()` is thread-local and is overwritten by the next failing call, so it is read
/// here, synchronously, right after the failing call: never put an `await` between a libgit2 call
/// and its `check`.
@discardableResult
func check(_ rc: Int32, _ what: @autoclosure () -> String, ref: String? = nil) throws(GitError) -> Int32 {
    guard rc < 0 else { return rc }
    throw lastError(rc, what(), ref: ref)
}

/// The error libgit2 recorded for the call that just returned `rc`.
///
/// The code says whose problem it is, because the operator's next step differs: the network
/// or the remote (`network`, `authentication`, `untrustedRemote`), this machine's storage
/// (`diskFull`, `filesystem`), the process (`descriptorsExhausted`), or damaged data
/// (`corruptRepository`). libgit2's class and message travel in `underlying`.
func lastError(_ rc: Int32, _ what: String, ref: String? = nil) -> GitError {
    let savedErrno = errno
    var klass: Int32 = -1
    var message = ""
    if let last = git_error_last() {
        klass = last.pointee.klass
        message = last.pointee.message.map { String(cString: $0) } ?? ""
    }
    let detail = "libgit2 \(libgit2ClassName(klass)) error \(rc): " + escapedMessage(message)
    return GitError(classify(rc: rc, klass: klass, message: message, errno: savedErrno), what, ref: ref, underlying: detail)
}

/// The code for a libgit2 failure; see `lastError`.
func classify(rc: Int32, klass: Int32, message: String, errno savedErrno: Int32) -> GitError.Code {
    switch rc {
    case GIT_ENOTFOUND.rawValue: return .notFound
    case GIT_EAUTH.rawValue: return .authentication
    case GIT_ECERTIFICATE.rawValue: return .untrustedRemote
    case GIT_EINVALIDSPEC.rawValue: return .invalidRefName
    default: break
    }
    // libgit2 ends the message of a failed system call with strerror(errno); errno itself may
    // have been overwritten by the cleanup that followed, so the message is read first.
    if let failure = systemFailure(message: message) ?? (klass == GIT_ERROR_OS.rawValue ? systemFailure(errno: savedErrno) : nil) {
        return failure
    }
    switch UInt32(bitPattern: klass) {
    case GIT_ERROR_NET.rawValue, GIT_ERROR_SSH.rawValue, GIT_ERROR_HTTP.rawValue, GIT_ERROR_SSL.rawValue:
        return .network
    case GIT_ERROR_OS.rawValue, GIT_ERROR_FILESYSTEM.rawValue:
        return .filesystem
    case GIT_ERROR_ODB.rawValue, GIT_ERROR_ZLIB.rawValue, GIT_ERROR_OBJECT.rawValue, GIT_ERROR_REPOSITORY.rawValue,
         GIT_ERROR_INDEXER.rawValue, GIT_ERROR_SHA.rawValue:
        return .corruptRepository
    default:
        return .libgit2
    }
}

private let systemErrnoCodes: [(Int32, GitError.Code)] = [
    (ENOSPC, .diskFull), (EDQUOT, .diskFull), (EMFILE, .descriptorsExhausted), (ENFILE, .descriptorsExhausted),
    (EROFS, .filesystem), (EACCES, .filesystem), (EPERM, .filesystem), (ENOTDIR, .filesystem), (EIO, .filesystem),
    (ECONNREFUSED, .network), (ECONNRESET, .network), (ECONNABORTED, .network), (EHOSTUNREACH, .network),
    (ENETUNREACH, .network), (ENETDOWN, .network), (ETIMEDOUT, .network), (EPIPE, .network), (EADDRNOTAVAIL, .network),
]

private func systemFailure(message: String) -> GitError.Code? {
    for (number, code) in systemErrnoCodes where message.hasSuffix(String(cString: strerror(number))) {
        return code
    }
    return nil
}

private func systemFailure(errno number: Int32) -> GitError.Code? {
    systemErrnoCodes.first { $0.0 == number }?.1
}

/// libgit2's error class as a word, for messages.
func libgit2ClassName(_ klass: Int32) -> String {
    let names: [UInt32: String] = [
        GIT_ERROR_NOMEMORY.rawValue: "memory", GIT_ERROR_OS.rawValue: "os", GIT_ERROR_INVALID.rawValue: "invalid",
        GIT_ERROR_REFERENCE.rawValue: "reference", GIT_ERROR_ZLIB.rawValue: "zlib", GIT_ERROR_REPOSITORY.rawValue: "repository",
        GIT_ERROR_CONFIG.rawValue: "config", GIT_ERROR_REGEX.rawValue: "regex", GIT_ERROR_ODB.rawValue: "odb",
        GIT_ERROR_INDEX.rawValue: "index", GIT_ERROR_OBJECT.rawValue: "object", GIT_ERROR_NET.rawValue: "net",
        GIT_ERROR_TAG.rawValue: "tag", GIT_ERROR_TREE.rawValue: "tree", GIT_ERROR_INDEXER.rawValue: "indexer",
        GIT_ERROR_SSL.rawValue: "ssl", GIT_ERROR_SUBMODULE.rawValue: "submodule", GIT_ERROR_THREAD.rawValue: "thread",
        GIT_ERROR_STASH.rawValue: "stash", GIT_ERROR_CHECKOUT.rawValue: "checkout", GIT_ERROR_FETCHHEAD.rawValue: "fetchhead",
        GIT_ERROR_MERGE.rawValue: "merge", GIT_ERROR_SSH.rawValue: "ssh", GIT_ERROR_FILTER.rawValue: "filter",
        GIT_ERROR_REVERT.rawValue: "revert", GIT_ERROR_CALLBACK.rawValue: "callback", GIT_ERROR_CHERRYPICK.rawValue: "cherrypick",
        GIT_ERROR_DESCRIBE.rawValue: "describe", GIT_ERROR_REBASE.rawValue: "rebase", GIT_ERROR_FILESYSTEM.rawValue: "filesystem",
        GIT_ERROR_PATCH.rawValue: "patch", GIT_ERROR_WORKTREE.rawValue: "worktree", GIT_ERROR_SHA.rawValue: "sha",
        GIT_ERROR_HTTP.rawValue: "http", GIT_ERROR_INTERNAL.rawValue: "internal",
    ]
    return klass < 0 ? "unknown" : names[UInt32(klass)] ?? "class \(klass)"
}

/// libgit2's message made safe for one line of a log or an API answer: it can quote a ref
/// name or a server's words, so control characters are escaped and the length is capped.
func escapedMessage(_ message: String, limit: Int = 300) -> String {
    var out = ""
    var count = 0
    for scalar in message.unicodeScalars {
        if count >= limit { out += "…"; break }
        if scalar.value >= 0x20 && scalar.value != 0x7F { out.unicodeScalars.append(scalar) } else { out += scalar.escaped(asASCII: true) }
        count += 1
    }
    return out
}

/// Owns one libgit2 object and frees it exactly once, when the last Swift reference goes.
///
/// Handles never leave the `GitMirror` actor that created them: libgit2 objects are not safe
/// to use from two threads at once.
final class Managed {
    let pointer: OpaquePointer
    private let free: (OpaquePointer) -> Void

    init(_ pointer: OpaquePointer, free: @escaping (OpaquePointer) -> Void) {
        self.pointer = pointer
        self.free = free
    }

    deinit { free(pointer) }
}

/// Runs a libgit2 constructor of the form `int f(T **out, …)` and wraps the result.
func make(_ what: @autoclosure () -> String, ref: String? = nil,
          free: @escaping (OpaquePointer) -> Void,
          _ body: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws(GitError) -> Managed {
    var out: OpaquePointer?
    let rc = body(&out)
    try check(rc, what(), ref: ref)
    guard let pointer = out else {
        throw GitError(.libgit2, what(), ref: ref, underlying: "libgit2 returned no object")
    }
    return Managed(pointer, free: free)
}

extension GitObjectID {
    /// The id libgit2 holds. `git_oid_fmt` writes exactly 40 lowercase hex digits, which
    /// always parse, so this cannot fail.
    init(_ oid: UnsafePointer<git_oid>) {
        var buffer = [CChar](repeating: 0, count: 40)
        git_oid_fmt(&buffer, oid)
        self = try! GitObjectID(String(decoding: buffer.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// The libgit2 form of this id. A SHA-256 id (64 digits) is refused by name: the
    /// libgit2 this agent links (1.5) addresses SHA-1 objects only, and reading only the
    /// first 40 digits would name another object.
    func gitOID() throws(GitError) -> git_oid {
        guard rawValue.utf8.count == 40 else {
            throw GitError(.unsupportedObjectFormat,
                           "object \(short)… is a SHA-256 id; this agent's libgit2 reads SHA-1 repositories only",
                           ref: rawValue)
        }
        var oid = git_oid()
        let rc = rawValue.withCString { git_oid_fromstrn(&oid, $0, 40) }
        try check(rc, "cannot read object id", ref: rawValue)
        return oid
    }
}
