#ifndef WANCP_ARM_LAUNCH_H
#define WANCP_ARM_LAUNCH_H

#include <signal.h>
#include <stddef.h>

/*
 * One arm's training ranks, each started inside its rank namespace of a topology
 * (wancp-PREFIX-rK, entered with setns before exec) and watched to the end:
 *
 *   - every rank runs `wancp ARGV...` with RANK, WORLD_SIZE, MASTER_ADDR (rank 0's address,
 *     198.18.0.1), MASTER_PORT and one WANCP_JOB_ID; its stdout and stderr go to
 *     log_dir/rankK.log;
 *   - a live progress line (the last row of rank 0's metrics file) on stderr;
 *   - started, watched and stopped by the one launcher (ranks.h): a rank that fails, the
 *     arm's timeout or *interrupted (set by the caller's SIGINT/SIGTERM handler) stops the
 *     others by its one sequence (SIGINT: they stop between steps and close their metrics;
 *     then SIGTERM, then SIGKILL); they die with wancp run.
 * The ranks run in their own process group: a terminal's Ctrl-C reaches the caller alone.
 */
typedef struct arm_launch {
    const char *label;  /* for the progress line: "arm 2/3 compressed@300M" */
    const char *prefix; /* the topology's */
    int ranks;
    char **argv; /* NULL-terminated; argv[0] is "wancp" */
    const char *log_dir;
    const char *metrics_path; /* rank 0's --metrics (progress is read from it or FILE.partial) */
    int total_steps;
    double dilation; /* progress shows times divided by it */
    int timeout_s;
    int master_port;
} arm_launch;

typedef struct arm_outcome {
    int ok; /* every rank exited 0 */
    int interrupted;
    int timed_out;
    char reason[512]; /* why not ok, naming the rank */
    double seconds;   /* from the first fork to the last exit */
} arm_outcome;

/* 0 when the ranks could be started (whatever their outcome), -1 with reason filled. */
int arm_launch_run(const arm_launch *l, volatile sig_atomic_t *interrupted, arm_outcome *out);

/* The last complete row of a metrics CSV (or of PATH.partial): step, train and last
 * validation loss. 0 when a row was found. */
int arm_progress(const char *metrics_path, int *step, double *train_loss, double *val_loss, double *step_ms);

#endif
