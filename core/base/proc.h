#ifndef WANCP_UTIL_PROC_H
#define WANCP_UTIL_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <unistd.h>

/*
 * For a child right after fork(): the kernel sends it sig when the process that forked it
 * dies (even by SIGKILL), so nothing a run started outlives the run. parent is the forking
 * process's pid, read before fork(): if it has already died, the child learns it here
 * (false) and should _exit. sig survives exec (PR_SET_PDEATHSIG).
 */
static inline bool proc_die_with_parent(pid_t parent, int sig)
{
    if (prctl(PR_SET_PDEATHSIG, sig) != 0)
        return false;
    return getppid() == parent;
}

#endif
