internal import CLibgit2

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
func lastError(_ rc: Int32, _ what: String, ref: String? = nil) -> GitError {
    var detail = "libgit2 error \(rc)"
    if let last = git_error_last(), let message = last.pointee.message {
        detail += " (class \(last.pointee.klass)): " + String(cString: message)
    }
    let code: GitError.Code
    switch rc {
    case GIT_ENOTFOUND.rawValue: code = .notFound
    case GIT_EAUTH.rawValue: code = .authentication
    case GIT_ECERTIFICATE.rawValue: code = .untrustedRemote
    case GIT_EINVALIDSPEC.rawValue: code = .invalidRefName
    default:
        if let last = git_error_last(), last.pointee.klass == GIT_ERROR_NET.rawValue
            || last.pointee.klass == GIT_ERROR_SSH.rawValue || last.pointee.klass == GIT_ERROR_HTTP.rawValue
            || last.pointee.klass == GIT_ERROR_SSL.rawValue {
            code = .network
        } else {
            code = .libgit2
        }
    }
    return GitError(code, what, ref: ref, underlying: detail)
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

extension ObjectID {
    init(_ oid: UnsafePointer<git_oid>) {
        var buffer = [CChar](repeating: 0, count: 40)
        git_oid_fmt(&buffer, oid)
        self.init(uncheckedHex: String(decoding: buffer.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// The libgit2 form of this id.
    var gitOID: git_oid {
        var oid = git_oid()
        _ = hex.withCString { git_oid_fromstrn(&oid, $0, 40) }
        return oid
    }
}
