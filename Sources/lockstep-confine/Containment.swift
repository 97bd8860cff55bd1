import CLandlock
import Glibc

/// The PID namespace side of the launcher: signals, the init that reaps and exits with the
/// program, the parent-death lifeline (docs/THREAT-MODEL.md §2.1).
// MARK: - Containment

/// The signals a caller or a service manager sends to a whole process group to stop it. The
/// launcher and the init ignore them: they are delivered to the program through the group
/// already, and forwarding one would deliver it twice.
let groupSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

func blockGroupSignals() -> sigset_t {
    var blocked = sigset_t()
    var original = sigset_t()
    sigemptyset(&blocked)
    for signal in groupSignals { sigaddset(&blocked, signal) }
    sigprocmask(SIG_BLOCK, &blocked, &original)
    return original
}

/// Ignores the group signals, then restores `mask`. Blocked first, so one that arrived in
/// between is discarded, never acted upon.
func ignoreGroupSignals(restoring mask: sigset_t) {
    for signal in groupSignals { _ = Glibc.signal(signal, SIG_IGN) }
    var mask = mask
    sigprocmask(SIG_SETMASK, &mask, nil)
}

/// Waits for `pid` and returns its waitpid() status.
func waitFor(_ pid: pid_t) -> Int32? {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return nil }
    }
    return status
}

/// Moves into a new user and PID namespace; the next fork is its PID 1.
func enterNamespace() throws(ConfineError) {
    guard ls_enter_pid_namespace() == 0 else {
        throw ConfineError(.sandbox, "cannot create a PID namespace (user namespaces disabled, or not allowed by the service's RestrictNamespaces=): \(errorText(errno))")
    }
}

/// Starts the init of the namespace and waits for it; exits with the program's status.
///
/// Processes: this launcher (outside the namespace, waits) → the init (PID 1, reaps) → the
/// program. When the program exits the init exits with its status, and the kernel kills
/// whatever is left in the namespace before this launcher's wait returns.
func supervise(_ request: Request) throws(ConfineError) -> Never {
    let originalMask = blockGroupSignals()
    // The init learns that the launcher died before it could arm its parent-death signal
    // from this pipe: the launcher never writes to it, so it reads as closed only then.
    var lifeline: [Int32] = [-1, -1]
    guard pipe(&lifeline) == 0 else { throw ConfineError(.sandbox, "cannot create a pipe: \(errorText(errno))") }
    let initPID = fork()
    guard initPID >= 0 else { throw ConfineError(.sandbox, "cannot start the namespace's init: \(errorText(errno))") }
    if initPID == 0 {
        close(lifeline[1])
        runInit(request, lifeline: lifeline[0], originalMask: originalMask)
    }
    close(lifeline[0])
    ignoreGroupSignals(restoring: originalMask)
    guard let status = waitFor(initPID) else {
        // Not expected; exiting kills the init (parent-death signal) and so the namespace.
        report(ConfineError(.sandbox, "cannot wait for the namespace's init: \(errorText(errno))"))
        _exit(1)
    }
    _exit(ls_exit_status(status))
}

/// PID 1 of the namespace: starts the program, reaps every process that ends up here and exits
/// with the program's status once the program has exited.
func runInit(_ request: Request, lifeline: Int32, originalMask: sigset_t) -> Never {
    // Killing the launcher (SIGKILL to the caller's group, or to it alone) takes the init and
    // with it the whole namespace down.
    guard ls_set_parent_death_signal(SIGKILL) == 0 else {
        report(ConfineError(.sandbox, "cannot set the parent-death signal: \(errorText(errno))"))
        _exit(ConfineError.Code.sandbox.rawValue)
    }
    var probe = pollfd(fd: lifeline, events: Int16(POLLIN), revents: 0)
    if poll(&probe, 1, 0) != 0 { _exit(ConfineError.Code.sandbox.rawValue) }  // the launcher is gone
    close(lifeline)
    let programPID = fork()
    guard programPID >= 0 else {
        report(ConfineError(.sandbox, "cannot start the program: \(errorText(errno))"))
        _exit(ConfineError.Code.sandbox.rawValue)
    }
    if programPID == 0 {
        var mask = originalMask
        sigprocmask(SIG_SETMASK, &mask, nil)
        // execv passes our environment on unchanged (the caller decides what terraform sees).
        execv(request.program, request.programArguments)
        report(ConfineError(.exec, "cannot execute \(String(decoding: bytes(request.program), as: UTF8.self)): \(errorText(errno))"))
        _exit(ConfineError.Code.exec.rawValue)
    }
    ignoreGroupSignals(restoring: originalMask)
    while true {
        var status: Int32 = 0
        let reaped = waitpid(-1, &status, 0)
        if reaped == programPID { _exit(ls_exit_status(status)) }
        if reaped < 0 && errno != EINTR { _exit(1) }  // ECHILD: cannot happen while the program is unreaped
    }
}

/// `--check`: the namespace can be created and its first process is PID 1.
func checkNamespace() throws(ConfineError) {
    try enterNamespace()
    let child = fork()
    guard child >= 0 else { throw ConfineError(.sandbox, "cannot fork: \(errorText(errno))") }
    if child == 0 { _exit(getpid() == 1 ? 0 : 1) }
    guard let status = waitFor(child), ls_exit_status(status) == 0 else {
        throw ConfineError(.sandbox, "the PID namespace did not start its first process as PID 1")
    }
}
