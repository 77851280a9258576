/* wancp train --ranks P: P rank processes of the same command on loopback, watched. */
#include "launch_local.h"

#include "../core/comm/comm.h"
#include "ranks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

/* A base port whose rendezvous and class ports for P ranks are all free on 127.0.0.1. */
static int free_port_base(int ranks)
{
    srand((unsigned)(getpid() ^ time(NULL)));
    for (int attempt = 0; attempt < 50; attempt++) {
        int base = 10240 + rand() % 20000; /* below the ephemeral range (32768+) */
        int ok = 1;
        for (int p = base; p <= base + 1 + COMM_NCLASSES * ranks && ok; p++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
            inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
            if (fd >= 0)
                close(fd);
        }
        if (ok)
            return base;
    }
    return -1;
}

typedef struct local_child {
    char **argv;
    char world[16], port[16], job[32];
} local_child;

static int local_rank(int r, void *ctx)
{
    const local_child *c = ctx;
    char rank[16];
    snprintf(rank, sizeof rank, "%d", r);
    setenv("RANK", rank, 1);
    setenv("WORLD_SIZE", c->world, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", c->port, 1);
    setenv("WANCP_JOB_ID", c->job, 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv("/proc/self/exe", c->argv);
    fprintf(stderr, "wancp: cannot start rank %d: %s\n", r, strerror(errno));
    return 127;
}

int launch_local_ranks(const char *cmd, int ranks, char **child_argv)
{
    int base = free_port_base(ranks);
    if (base < 0) {
        fprintf(stderr, "wancp %s: no free range of %d ports on 127.0.0.1\n", cmd, 2 + COMM_NCLASSES * ranks);
        return 1;
    }
    local_child c = {.argv = child_argv};
    snprintf(c.world, sizeof c.world, "%d", ranks);
    snprintf(c.port, sizeof c.port, "%d", base);
    snprintf(c.job, sizeof c.job, "%lld", (long long)getpid() * 1000003LL + (long long)time(NULL));
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* each rank stops between steps and checkpoints on the SIGINT passed on; it dies (SIGTERM,
     * the same stop) with this process */
    ranks_spec spec = {.ranks = ranks, .child = local_rank, .ctx = &c, .die_signal = SIGTERM};
    ranks_outcome out;
    int rc = ranks_run(&spec, &interrupted, &out);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc != 0) {
        fprintf(stderr, "wancp %s: fork: %s\n", cmd, strerror(errno));
        return 1;
    }
    /* One line per rank that ended badly, the killed ones first: they are the cause. */
    for (int pass = 0; pass < 2 && !interrupted; pass++)
        for (int r = 0; r < ranks; r++) {
            int st = out.status[r];
            if (pass == 0 && st >= 0 && WIFSIGNALED(st) && !out.signalled[r])
                fprintf(stderr, "wancp %s: rank %d was killed by signal %d\n", cmd, r, WTERMSIG(st));
            if (pass == 1 && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0 && !out.signalled[r])
                fprintf(stderr, "wancp %s: rank %d failed (exit %d)\n", cmd, r, WEXITSTATUS(st));
        }
    return out.failed == 0 ? 0 : 1;
}
