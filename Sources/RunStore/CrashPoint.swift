import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Places inside a store transaction where a crash test kills the process, to show on the
/// real daemon that what the transaction writes is all-or-nothing.
///
/// Only debug builds (which the tests use) contain the check, and it is armed only by
/// `LOCKSTEP_TEST_KILL_AT` in the daemon's own environment, read once at start: nothing a
/// delivery repository or an API request sends can set it (terraform and verify commands
/// get an environment built from nothing, and the daemon's environment is never read from
/// input). A release build compiles it to nothing.
enum CrashPoint: String {
    /// An approval row and its audit entry are written; the transition it completes is not yet.
    case approvalRecordedBeforeTransition = "approval-recorded-before-transition"

    #if DEBUG
    private static let armed: CrashPoint? = ProcessInfo.processInfo.environment["LOCKSTEP_TEST_KILL_AT"]
        .flatMap(CrashPoint.init(rawValue:))
    #endif

    /// Kills the process with SIGKILL (as `kill -9` would) when this point is armed.
    static func reached(_ point: CrashPoint) {
        #if DEBUG
        if armed == point { kill(getpid(), SIGKILL) }
        #endif
    }
}
