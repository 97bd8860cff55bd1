#define _GNU_SOURCE
#include "landlock_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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
