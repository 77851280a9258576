/* The one launcher of rank processes (ranks.h): start, watch, stop. */
#include "ranks.h"

#include "../core/base/proc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* sig (and SIGCONT, so that a stopped rank acts on it) to every rank still running. */
static void tell_all(const pid_t *pids, int n, int sig, ranks_outcome *out)
{
    for (int r = 0; r < n; r++)
        if (pids[r] > 0) {
            kill(pids[r], sig);
            if (sig != SIGKILL)
                kill(pids[r], SIGCONT);
            out->signalled[r] = true;
        }
}

int ranks_run(const ranks_spec *s, const volatile sig_atomic_t *interrupted, ranks_outcome *out)
{
    memset(out, 0, sizeof *out);
    const int n = s->ranks < RANKS_MAX ? s->ranks : RANKS_MAX;
    pid_t pids[RANKS_MAX];
    for (int r = 0; r < n; r++)
        out->status[r] = -1, pids[r] = -1;
    fflush(NULL);
    const pid_t self = getpid();
    const double t0 = now_s();
    int live = 0;
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            if (!proc_die_with_parent(self, s->die_signal))
                _exit(126);
            if (s->own_group)
                setpgid(0, 0);
            _exit(s->child(r, s->ctx));
        }
        if (s->own_group)
            setpgid(pid, pid);
        pids[r] = pid;
        live++;
    }
    out->started = live;
    double stop_at = live < n ? t0 : 0; /* a rank that could not start stops the rest */
    bool sent_int = false, sent_term = false, sent_kill = false;
    double last_tick = t0;
    while (live > 0) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            for (int r = 0; r < n; r++)
                if (pids[r] == pid) {
                    pids[r] = -1;
                    out->status[r] = st;
                    live--;
                    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && stop_at == 0)
                        stop_at = now_s();
                }
            continue;
        }
        if (pid < 0 && errno == ECHILD)
            break;
        const double now = now_s();
        if (stop_at == 0 && interrupted != NULL && *interrupted) {
            out->interrupted = true;
            stop_at = now;
        }
        if (stop_at == 0 && s->timeout_s > 0 && now - t0 > s->timeout_s) {
            out->timed_out = true;
            stop_at = now - RANKS_GRACE_S; /* straight to SIGTERM */
            sent_int = true;
        }
        if (stop_at > 0 && !sent_int) {
            tell_all(pids, n, SIGINT, out);
            sent_int = true;
        }
        if (stop_at > 0 && !sent_term && now - stop_at >= RANKS_GRACE_S) {
            tell_all(pids, n, SIGTERM, out);
            sent_term = true;
        }
        if (stop_at > 0 && !sent_kill && now - stop_at >= 2 * RANKS_GRACE_S) {
            tell_all(pids, n, SIGKILL, out);
            sent_kill = true;
        }
        if (s->tick != NULL && now - last_tick >= s->tick_s) {
            s->tick(s->ctx, now - t0, false);
            last_tick = now;
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    out->seconds = now_s() - t0;
    if (s->tick != NULL)
        s->tick(s->ctx, out->seconds, true);
    for (int r = 0; r < n; r++)
        out->failed += !(out->status[r] >= 0 && WIFEXITED(out->status[r]) && WEXITSTATUS(out->status[r]) == 0);
    out->failed += s->ranks - n;
    return live == 0 && out->started == 0 ? -1 : 0;
}

typedef struct fork_ctx {
    int (*fn)(int rank, void *ctx);
    void *ctx;
} fork_ctx;

static int run_function(int rank, void *ctx)
{
    const fork_ctx *f = ctx;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return f->fn(rank, f->ctx) == 0 ? 0 : 1;
}

int ranks_fork(int n, int (*fn)(int rank, void *ctx), void *ctx, const volatile sig_atomic_t *interrupted)
{
    fork_ctx f = {fn, ctx};
    ranks_spec s = {.ranks = n, .child = run_function, .ctx = &f, .die_signal = SIGKILL};
    ranks_outcome out;
    ranks_run(&s, interrupted, &out);
    return out.failed;
}
