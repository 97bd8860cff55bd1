#ifndef LOCKSTEP_CLIBGIT2_SHIM_H
#define LOCKSTEP_CLIBGIT2_SHIM_H
#include <git2.h>

/* git_libgit2_opts is variadic, which Swift cannot call: these wrappers do it here.
 * Initialise libgit2 and cut it off from the machine's git configuration: a daemon's
 * behaviour must come from its agent config, never from ~/.gitconfig or /etc/gitconfig. */
static inline int lockstep_git_init(void) {
    int rc = git_libgit2_init();
    if (rc < 0) return rc;
    git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_SYSTEM, "");
    git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_XDG, "");
    git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_GLOBAL, "");
    git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_PROGRAMDATA, "");
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 1);
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1);
    return rc;
}

static inline int lockstep_cert_is_ssh_hostkey(const git_cert *cert) {
    return cert != NULL && cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2;
}

static inline const git_cert_hostkey *lockstep_cert_as_hostkey(const git_cert *cert) {
    return (const git_cert_hostkey *)cert;
}
#endif
