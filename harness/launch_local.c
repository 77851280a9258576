/* wancp train --ranks P: P rank processes of the same command on loopback, watched. */
#include "launch_local.h"

#include "../core/comm/comm.h"
#include "../core/util/proc.h"

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

static void on_signal(int sig)
{
    interrupted = sig;
}

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

int launch_local_ranks(const char *cmd, int ranks, char **child_argv)
{
    int base = free_port_base(ranks);
    if (base < 0) {
        fprintf(stderr, "wancp %s: no free range of %d ports on 127.0.0.1\n", cmd, 2 + COMM_NCLASSES * ranks);
        return 1;
    }
    char world[16], port[16], job[32];
    snprintf(world, sizeof world, "%d", ranks);
    snprintf(port, sizeof port, "%d", base);
    snprintf(job, sizeof job, "%lld", (long long)getpid() * 1000003LL + (long long)time(NULL));
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pid_t pids[COMM_MAX_RANKS];
    int exit_status[COMM_MAX_RANKS];
    int live = 0;
    for (int r = 0; r < ranks; r++)
        exit_status[r] = -1;
    const pid_t self = getpid();
    for (int r = 0; r < ranks; r++) {
        pids[r] = fork();
        if (pids[r] < 0) {
            fprintf(stderr, "wancp %s: fork: %s\n", cmd, strerror(errno));
            break;
        }
        if (pids[r] == 0) {
            if (!proc_die_with_parent(self, SIGTERM))
                _exit(126);
            char rank[16];
            snprintf(rank, sizeof rank, "%d", r);
            setenv("RANK", rank, 1);
            setenv("WORLD_SIZE", world, 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port, 1);
            setenv("WANCP_JOB_ID", job, 1);
            execv("/proc/self/exe", child_argv);
            fprintf(stderr, "wancp %s: cannot start rank %d: %s\n", cmd, r, strerror(errno));
            _exit(127);
        }
        live++;
    }
    int status_all = live == ranks ? 0 : 1, stopping = live < ranks, forwarded = 0;
    double kill_at = 0;
    int terminated = 0;
    while (live > 0) {
        if (interrupted && !forwarded) {
            for (int r = 0; r < ranks; r++)
                if (pids[r] > 0)
                    kill(pids[r], SIGINT); /* each rank stops between steps and checkpoints */
            forwarded = 1;
        }
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            int r = 0;
            while (r < ranks && pids[r] != pid)
                r++;
            live--;
            if (r < ranks)
                pids[r] = -1;
            int failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            if (r < ranks)
                exit_status[r] = st;
            if (failed) {
                status_all = 1;
                if (!stopping) {
                    stopping = 1;
                    /* Let the others notice and report on their own first, then make sure. */
                    kill_at = (double)time(NULL) + 10;
                }
            }
            continue;
        }
        if (stopping && kill_at > 0 && !terminated && (double)time(NULL) > kill_at - 9) {
            for (int k = 0; k < ranks; k++)
                if (pids[k] > 0)
                    kill(pids[k], SIGTERM); /* ranks that did not notice within a second */
            terminated = 1;
        }
        if (stopping && kill_at > 0 && (double)time(NULL) > kill_at) {
            for (int k = 0; k < ranks; k++)
                if (pids[k] > 0)
                    kill(pids[k], SIGKILL); /* a rank that ignores the stop */
            kill_at = 0;
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    /* One line per rank that ended badly, the killed ones first: they are the cause. */
    for (int pass = 0; pass < 2 && !interrupted; pass++)
        for (int r = 0; r < ranks; r++) {
            int st = exit_status[r];
            if (pass == 0 && st >= 0 && WIFSIGNALED(st))
                fprintf(stderr, "wancp %s: rank %d was killed by signal %d\n", cmd, r, WTERMSIG(st));
            if (pass == 1 && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0)
                fprintf(stderr, "wancp %s: rank %d failed (exit %d)\n", cmd, r, WEXITSTATUS(st));
        }
    return status_all;
}
