/* Network namespaces: a switch namespace with a bridge and P rank namespaces joined to it by
 * veths, their names and addresses, entering one, and removing them (also those a killed
 * run left behind). */
#include "shaper_internal.h"

#include "../core/base/status.h"
#include "../core/base/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void topology_ns_name(const char *prefix, int rank, char *buf, size_t len)
{
    if (rank < 0)
        snprintf(buf, len, TOPOLOGY_NS_PREFIX "%s-sw", prefix);
    else
        snprintf(buf, len, TOPOLOGY_NS_PREFIX "%s-r%d", prefix, rank);
}

void topology_rank_addr(int rank, char *buf, size_t len) { snprintf(buf, len, "198.18.0.%d", rank + 1); }

int topology_prefix_check(const char *prefix, char *err, size_t errlen)
{
    size_t n = strlen(prefix);
    int ok = n > 0 && n <= 16;
    for (size_t i = 0; i < n && ok; i++)
        ok = (prefix[i] >= 'a' && prefix[i] <= 'z') || (prefix[i] >= '0' && prefix[i] <= '9');
    if (!ok)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "prefix '%.40s': use 1 to 16 of a-z and 0-9", prefix);
    return WANCP_OK;
}

int topology_enter(const char *prefix, int rank, char *err, size_t errlen)
{
    char ns[64], path[128];
    topology_ns_name(prefix, rank, ns, sizeof ns);
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        int rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot enter %s: %s", ns, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return WANCP_OK;
}

/* Forks a helper that lives in t's switch namespace, in its own session (the caller's
 * Ctrl-C is the caller's to handle) with no terminal; returns its pid, 0 in the helper, or
 * -1. topology_down kills it with everything else inside the namespace. */
pid_t netns_fork_into_switch(const topology *t)
{
    const pid_t self = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (t->owned && !proc_die_with_parent(self, SIGKILL))
        _exit(3);
    setsid();
    char ignore[WANCP_ERRLEN];
    if (topology_enter(t->prefix, -1, ignore, sizeof ignore) != WANCP_OK)
        _exit(3);
    int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO), dup2(null, STDOUT_FILENO), dup2(null, STDERR_FILENO);
    return 0;
}

/* Kills every process inside namespace name (ranks, helpers), so deleting it frees it. */
static void kill_inside(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ip netns pids %s 2>/dev/null", name);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return;
    int pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 1 && pid != getpid())
            kill(pid, SIGKILL);
    pclose(f);
}

/* The namespaces whose names start with want, into s as `netns del` lines, each one's
 * processes killed first. Returns how many, or a WANCP_ERR_* code. */
static int del_lines(const char *want, step *s, char *err, size_t errlen)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return errno == ENOENT ? 0 : wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "/run/netns: %s", strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, want, strlen(want)) != 0)
            continue;
        kill_inside(e->d_name);
        add_line(s, "netns del %s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* `ip netns del` fails now and then with "Device or resource busy" while the kernel still
 * tears down the namespace's devices; a namespace left behind would outlive the run, so
 * removal goes on past a failure and tries again for up to two seconds. */
int topology_down(const char *prefix, int *removed, char *err, size_t errlen)
{
    *removed = 0;
    if (prefix != NULL && topology_prefix_check(prefix, err, errlen) != WANCP_OK)
        return WANCP_ERR_INPUT;
    char want[64];
    if (prefix != NULL)
        snprintf(want, sizeof want, TOPOLOGY_NS_PREFIX "%s-", prefix);
    else
        snprintf(want, sizeof want, TOPOLOGY_NS_PREFIX);
    int rc = WANCP_OK;
    for (int attempt = 0; attempt < 20; attempt++) {
        step s = {.force = 1};
        int n = del_lines(want, &s, err, errlen);
        if (n < 0)
            return n;
        if (n == 0)
            return WANCP_OK;
        if (attempt == 0)
            *removed = n;
        if ((rc = run_batch(&s, err, errlen)) == WANCP_OK)
            return WANCP_OK;
        usleep(100000);
    }
    return rc;
}

/* The owner's process id in an owned prefix ("run4242" -> 4242), or 0. */
static long owner_of(const char *prefix)
{
    static const char *const OWNED[] = {TOPOLOGY_RUN_PREFIX, TOPOLOGY_CALIBRATE_PREFIX, TOPOLOGY_BENCH_PREFIX};
    for (size_t i = 0; i < sizeof OWNED / sizeof OWNED[0]; i++) {
        size_t n = strlen(OWNED[i]);
        if (strncmp(prefix, OWNED[i], n) != 0 || prefix[n] < '1' || prefix[n] > '9')
            continue;
        char *end;
        long pid = strtol(prefix + n, &end, 10);
        return *end == '\0' ? pid : 0;
    }
    return 0;
}

/* Whether pid runs wancp now: its executable is called wancp (ranks are started through
 * /proc/self/exe, so their comm says "exe"). */
static bool runs_wancp(long pid)
{
    char path[64], exe[4096];
    snprintf(path, sizeof path, "/proc/%ld/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    base = base != NULL ? base + 1 : exe;
    return strncmp(base, "wancp", 5) == 0;
}

int topology_down_orphans(int *removed, char *names, size_t len, char *err, size_t errlen)
{
    *removed = 0;
    if (len > 0)
        names[0] = '\0';
    char orphans[32][24];
    int norphans = 0;
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return errno == ENOENT ? WANCP_OK
                               : wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "/run/netns: %s", strerror(errno));
    const size_t skip = strlen(TOPOLOGY_NS_PREFIX);
    for (struct dirent *e; (e = readdir(d)) != NULL && norphans < 32;) {
        if (strncmp(e->d_name, TOPOLOGY_NS_PREFIX, skip) != 0)
            continue;
        char prefix[24];
        snprintf(prefix, sizeof prefix, "%.*s", (int)strcspn(e->d_name + skip, "-"), e->d_name + skip);
        long pid = owner_of(prefix);
        if (pid <= 0 || pid == (long)getpid() || runs_wancp(pid))
            continue;
        bool known = false;
        for (int i = 0; i < norphans && !known; i++)
            known = strcmp(orphans[i], prefix) == 0;
        if (!known)
            snprintf(orphans[norphans++], sizeof orphans[0], "%s", prefix);
    }
    closedir(d);
    int rc = WANCP_OK;
    for (int i = 0; i < norphans; i++) {
        int n = 0;
        int r = topology_down(orphans[i], &n, err, errlen);
        if (r != WANCP_OK)
            rc = r;
        *removed += n;
        size_t used = strlen(names);
        if (used < len)
            snprintf(names + used, len - used, "%s%s", used ? ", " : "", orphans[i]);
    }
    return rc;
}
