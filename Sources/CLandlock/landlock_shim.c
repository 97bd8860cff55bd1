#define _GNU_SOURCE
#include "landlock_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The generic syscall table gives these numbers on every architecture (kernel 5.13+).
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

#define LS_CREATE_RULESET_VERSION 1U
#define LS_RULE_PATH_BENEATH 1

// Kernel layouts. Older kernels accept the larger attribute as long as the fields they do not
// know are zero, so the full struct is always passed.
struct ls_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct ls_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

int ls_o_path(void) {
    return O_PATH;
}

int ls_landlock_abi_version(void) {
    long abi = syscall(SYS_landlock_create_ruleset, (void *)0, (size_t)0, LS_CREATE_RULESET_VERSION);
    return abi < 0 ? -1 : (int)abi;
}

int ls_landlock_create_ruleset(uint64_t handled_fs, uint64_t scoped) {
    struct ls_ruleset_attr attr = {
        .handled_access_fs = handled_fs,
        .handled_access_net = 0,
        .scoped = scoped,
    };
    long fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0U);
    return fd < 0 ? -1 : (int)fd;
}

int ls_landlock_add_path_rule(int ruleset_fd, int parent_fd, uint64_t allowed) {
    struct ls_path_beneath_attr attr = {
        .allowed_access = allowed,
        .parent_fd = parent_fd,
    };
    long rc = syscall(SYS_landlock_add_rule, ruleset_fd, LS_RULE_PATH_BENEATH, &attr, 0U);
    return rc < 0 ? -1 : 0;
}

int ls_landlock_restrict_self(int ruleset_fd) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return -1;
    }
    long rc = syscall(SYS_landlock_restrict_self, ruleset_fd, 0U);
    return rc < 0 ? -1 : 0;
}

// --- Process containment --------------------------------------------------------------------

// Writes `text` to the file at `path` in one write(); a short or failed write is a failure
// (the kernel applies an id map only when it arrives in a single write).
static int write_whole(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t length = strlen(text);
    ssize_t written = write(fd, text, length);
    int saved = errno;
    close(fd);
    if (written != (ssize_t)length) {
        errno = written < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

int ls_enter_pid_namespace(void) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) {
        return -1;
    }
    char map[64];
    // setgroups must be denied before an unprivileged process may write its gid_map.
    if (write_whole("/proc/self/setgroups", "deny") != 0) {
        return -1;
    }
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (write_whole("/proc/self/uid_map", map) != 0) {
        return -1;
    }
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    if (write_whole("/proc/self/gid_map", map) != 0) {
        return -1;
    }
    return 0;
}

int ls_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0) == 0 ? 0 : -1;
}

int ls_exit_status(int wait_status) {
    if (WIFEXITED(wait_status)) {
        return WEXITSTATUS(wait_status);
    }
    if (WIFSIGNALED(wait_status)) {
        return 128 + WTERMSIG(wait_status);
    }
    return 1;
}
