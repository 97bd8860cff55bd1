// Landlock for lockstep-confine: the constants and the three system calls, as plain functions.
//
// Why this shim exists: syscall() and prctl() are variadic, which Swift does not import, and
// Debian 12's kernel headers (6.1) stop at Landlock ABI 3. The values below are the kernel's
// stable user-space ABI (include/uapi/linux/landlock.h); they are defined here under our own
// prefix so the build does not depend on how new the installed headers are.
#ifndef LOCKSTEP_LANDLOCK_SHIM_H
#define LOCKSTEP_LANDLOCK_SHIM_H

#include <stdint.h>

// File-system access rights (ruleset handled_access_fs and rule allowed_access).
#define LS_ACCESS_FS_EXECUTE     0x1ULL     // ABI 1
#define LS_ACCESS_FS_WRITE_FILE  0x2ULL     // ABI 1
#define LS_ACCESS_FS_READ_FILE   0x4ULL     // ABI 1
#define LS_ACCESS_FS_READ_DIR    0x8ULL     // ABI 1
#define LS_ACCESS_FS_REMOVE_DIR  0x10ULL    // ABI 1
#define LS_ACCESS_FS_REMOVE_FILE 0x20ULL    // ABI 1
#define LS_ACCESS_FS_MAKE_CHAR   0x40ULL    // ABI 1
#define LS_ACCESS_FS_MAKE_DIR    0x80ULL    // ABI 1
#define LS_ACCESS_FS_MAKE_REG    0x100ULL   // ABI 1
#define LS_ACCESS_FS_MAKE_SOCK   0x200ULL   // ABI 1
#define LS_ACCESS_FS_MAKE_FIFO   0x400ULL   // ABI 1
#define LS_ACCESS_FS_MAKE_BLOCK  0x800ULL   // ABI 1
#define LS_ACCESS_FS_MAKE_SYM    0x1000ULL  // ABI 1
#define LS_ACCESS_FS_REFER       0x2000ULL  // ABI 2: link/rename across directories
#define LS_ACCESS_FS_TRUNCATE    0x4000ULL  // ABI 3
#define LS_ACCESS_FS_IOCTL_DEV   0x8000ULL  // ABI 5

// Scopes (ruleset scoped): ABI 6. Only the signal scope is used: the abstract unix socket
// scope is left alone on purpose (see lockstep-confine's doc comment).
#define LS_SCOPE_SIGNAL          0x2ULL

/// O_PATH, which Swift does not see because glibc only declares it under _GNU_SOURCE.
int ls_o_path(void);

/// The Landlock ABI version of the running kernel (>= 1), or -1 with errno set
/// (ENOSYS: not built in, EOPNOTSUPP: disabled at boot).
int ls_landlock_abi_version(void);

/// A new ruleset handling `handled_fs` and `scoped` (no network rights): its fd, or -1 with errno.
int ls_landlock_create_ruleset(uint64_t handled_fs, uint64_t scoped);

/// Allows `allowed` beneath the file or directory `parent_fd` (best opened O_PATH|O_CLOEXEC).
/// 0, or -1 with errno.
int ls_landlock_add_path_rule(int ruleset_fd, int parent_fd, uint64_t allowed);

/// Sets no_new_privs (required for an unprivileged restrict, and stops a set-uid binary from
/// shedding the sandbox), then enforces the ruleset on this thread and everything it execs.
/// 0, or -1 with errno.
int ls_landlock_restrict_self(int ruleset_fd);


// --- Process containment (used by lockstep-confine; unshare and prctl are not visible to Swift)

/// Moves this process into a new user namespace that maps only its own uid and gid (to
/// themselves, so files keep their owners and no privilege is gained outside) and makes the
/// next child it forks PID 1 of a new PID namespace. When that child exits, the kernel kills
/// every process left in the namespace. Needs unprivileged user namespaces. The process must be
/// single-threaded. 0, or -1 with errno.
int ls_enter_pid_namespace(void);

/// PR_SET_PDEATHSIG: `signal` is sent to this process when its parent dies. 0, or -1 with errno.
int ls_set_parent_death_signal(int signal);

/// A status to exit with for a waitpid() status: the exit code, or 128 + the signal number.
int ls_exit_status(int wait_status);

#endif
