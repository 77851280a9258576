#ifndef WANCP_RANKS_H
#define WANCP_RANKS_H

#include <signal.h>
#include <stdbool.h>

/*
 * The one launcher of rank processes: every command that starts ranks (wancp run's arms,
 * train --ranks, bench comm, bench calibrate, sim validate) starts, watches and stops them
 * here, with one stop sequence:
 *
 *   a rank fails, *interrupted is set, or the timeout passes
 *     -> SIGINT and SIGCONT to every rank left (a trainer stops between steps with its
 *        metrics closed, or at once before its first step; a stopped rank runs again);
 *   RANKS_GRACE_S later -> SIGTERM (and SIGCONT); another RANKS_GRACE_S -> SIGKILL.
 *   (A timeout starts at SIGTERM.)
 *
 * Every rank dies with the launcher (PR_SET_PDEATHSIG, die_signal), so nothing outlives a
 * launcher killed with SIGKILL.
 */
#define RANKS_MAX 256
#define RANKS_GRACE_S 10.0

typedef struct ranks_spec {
    int ranks;
    /* In the child, after fork: becomes rank r (execs, or returns its exit status). */
    int (*child)(int rank, void *ctx);
    void *ctx;
    int die_signal;   /* sent to a rank when its launcher dies: SIGTERM or SIGKILL */
    bool own_group;   /* each rank in its own process group: a terminal's Ctrl-C reaches
                           * the launcher alone, which passes it on */
    double timeout_s; /* 0: none */
    /* Called about every tick_s while ranks run (NULL: never), with the seconds so far. */
    void (*tick)(void *ctx, double elapsed_s, bool last);
    double tick_s;
} ranks_spec;

typedef struct ranks_outcome {
    int started;               /* ranks that could be forked */
    int status[RANKS_MAX];     /* waitpid statuses; -1 for a rank never started */
    bool signalled[RANKS_MAX]; /* the launcher sent it a stopping signal */
    bool interrupted, timed_out;
    int failed;     /* ranks that did not exit 0, never-started ones included */
    double seconds; /* from the first fork to the last exit */
} ranks_outcome;

/* Starts s->ranks ranks and returns when all have ended, *out filled. interrupted may be
 * NULL. Returns 0, or -1 when not one rank could be started (out->started == 0). */
int ranks_run(const ranks_spec *s, const volatile sig_atomic_t *interrupted, ranks_outcome *out);

/* ranks_run for ranks that are functions of this process: fn(rank, ctx) in n children
 * (SIGINT and SIGTERM at their default: a stop ends them at once; they die with the caller).
 * Returns how many did not succeed. */
int ranks_fork(int n, int (*fn)(int rank, void *ctx), void *ctx, const volatile sig_atomic_t *interrupted);

#endif
