/* An arm's ranks entered into their namespaces, watched, stopped when one fails. */
#include "arm_launch.h"
#include "ranks.h"

#include "../core/base/status.h"
#include "../shaper/topology.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RANKS 64

/* Field i (0-based) of a CSV line, as a number; NAN when empty or missing. */
static double csv_field(const char *line, int i)
{
    const char *p = line;
    for (int k = 0; k < i; k++) {
        p = strchr(p, ',');
        if (p == NULL)
            return NAN;
        p++;
    }
    if (*p == ',' || *p == '\n' || *p == 0)
        return NAN;
    return strtod(p, NULL);
}

int arm_progress(const char *metrics_path, int *step, double *train_loss, double *val_loss, double *step_ms)
{
    char path[1100];
    snprintf(path, sizeof path, "%s.partial", metrics_path);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        f = fopen(metrics_path, "r");
    if (f == NULL)
        return -1;
    static char buf[1 << 16];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int found = -1;
    *val_loss = NAN;
    for (char *line = buf, *end; (end = strchr(line, '\n')) != NULL; line = end + 1) {
        if (line[0] < '0' || line[0] > '9')
            continue; /* a header, or the cut start of the window */
        *end = 0;
        double v = csv_field(line, 4);
        if (isfinite(v))
            *val_loss = v;
        *step = (int)csv_field(line, 0);
        *train_loss = csv_field(line, 3);
        *step_ms = csv_field(line, 7);
        found = 0;
    }
    return found;
}

static void format_duration(double s, char *buf, size_t len)
{
    if (s < 90)
        snprintf(buf, len, "%.0fs", s);
    else if (s < 5400)
        snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else
        snprintf(buf, len, "%.1fh", s / 3600);
}

static void print_progress(const arm_launch *l, double elapsed, int tty, int final)
{
    int step = 0;
    double loss = NAN, val = NAN, step_ms = NAN;
    char line[256], took[32];
    format_duration(elapsed, took, sizeof took);
    if (arm_progress(l->metrics_path, &step, &loss, &val, &step_ms) != 0)
        snprintf(line, sizeof line, "%s: starting %d ranks | %s", l->label, l->ranks, took);
    else
        snprintf(line, sizeof line, "%s: step %d/%d | loss %.3f | val %.3f | %.2f s/step%s | %s", l->label, step,
                 l->total_steps, loss, val, step_ms / 1e3 / l->dilation, l->dilation > 1 ? " (dilated)" : "", took);
    if (tty)
        fprintf(stderr, "\r%-100s%s", line, final ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
}

/* The child: enter rank r's namespace, point stdout and stderr at its log, exec. */
static void start_rank(const arm_launch *l, int r, const char *job)
{
    char path[1200], value[32], err[WANCP_ERRLEN];
    if (topology_enter(l->prefix, r, err, sizeof err) != WANCP_OK) {
        fprintf(stderr, "wancp run: rank %d: %s\n", r, err);
        _exit(126);
    }
    snprintf(path, sizeof path, "%s/rank%d.log", l->log_dir, r);
    int log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log < 0) {
        fprintf(stderr, "wancp run: %s: cannot create\n", path);
        _exit(126);
    }
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    snprintf(value, sizeof value, "%d", r);
    setenv("RANK", value, 1);
    snprintf(value, sizeof value, "%d", l->ranks);
    setenv("WORLD_SIZE", value, 1);
    char addr[32];
    topology_rank_addr(0, addr, sizeof addr);
    setenv("MASTER_ADDR", addr, 1);
    snprintf(value, sizeof value, "%d", l->master_port);
    setenv("MASTER_PORT", value, 1);
    setenv("WANCP_JOB_ID", job, 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv("/proc/self/exe", l->argv);
    fprintf(stderr, "wancp run: rank %d: cannot start: %s\n", r, strerror(errno));
    _exit(127);
}

/* The last non-empty line of a rank's log, for the reason it failed. */
static void last_log_line(const arm_launch *l, int r, char *buf, size_t len)
{
    char path[1200], line[384];
    snprintf(path, sizeof path, "%s/rank%d.log", l->log_dir, r);
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] != 0)
            snprintf(buf, len, "%s", line);
    }
    fclose(f);
}

/* The cause, once every rank has ended: a rank killed by a signal we did not send comes
 * first (the others then fail because it went away), then the first failed exit of a rank
 * that was not told to stop, then any failed exit. */
static void name_cause(const arm_launch *l, const int *status, const int *signalled, arm_outcome *out)
{
    char last[400];
    for (int r = 0; r < l->ranks; r++)
        if (WIFSIGNALED(status[r]) && !signalled[r]) {
            snprintf(out->reason, sizeof out->reason, "rank %d was killed by signal %d (%s)", r, WTERMSIG(status[r]),
                     strsignal(WTERMSIG(status[r])));
            return;
        }
    for (int pass = 0; pass < 2; pass++) /* a rank that failed before any was told to stop first */
        for (int r = 0; r < l->ranks; r++)
            if (WIFEXITED(status[r]) && WEXITSTATUS(status[r]) != 0 && (pass == 1 || !signalled[r])) {
                last_log_line(l, r, last, sizeof last);
                snprintf(out->reason, sizeof out->reason, "rank %d failed (exit %d): %.380s", r, WEXITSTATUS(status[r]),
                         last);
                return;
            }
    for (int r = 0; r < l->ranks; r++)
        if (WIFSIGNALED(status[r])) {
            snprintf(out->reason, sizeof out->reason, "rank %d was killed by signal %d", r, WTERMSIG(status[r]));
            return;
        }
}

typedef struct arm_child {
    const arm_launch *l;
    char job[32];
} arm_child;

static int arm_rank(int r, void *ctx)
{
    const arm_child *a = ctx;
    start_rank(a->l, r, a->job);
    return 127;
}

static void arm_tick(void *ctx, double elapsed_s, bool last)
{
    const arm_child *a = ctx;
    print_progress(a->l, elapsed_s, isatty(STDERR_FILENO), last);
}

int arm_launch_run(const arm_launch *l, volatile sig_atomic_t *interrupted, arm_outcome *out)
{
    *out = (arm_outcome){0};
    if (l->ranks < 1 || l->ranks > MAX_RANKS) {
        snprintf(out->reason, sizeof out->reason, "%d ranks: 1 to %d can be launched", l->ranks, MAX_RANKS);
        return -1;
    }
    arm_child a = {.l = l};
    snprintf(a.job, sizeof a.job, "%lld", (long long)getpid() * 1000003LL + (long long)time(NULL));
    /* SIGTERM when wancp run dies: a rank stops between steps, metrics closed */
    ranks_spec spec = {.ranks = l->ranks,
                       .child = arm_rank,
                       .ctx = &a,
                       .die_signal = SIGTERM,
                       .own_group = true,
                       .timeout_s = l->timeout_s,
                       .tick = arm_tick,
                       .tick_s = isatty(STDERR_FILENO) ? 1.0 : 15.0};
    ranks_outcome r;
    if (ranks_run(&spec, interrupted, &r) != 0) {
        snprintf(out->reason, sizeof out->reason, "fork: %s", strerror(errno));
        return -1;
    }
    out->seconds = r.seconds;
    out->interrupted = r.interrupted;
    out->timed_out = r.timed_out;
    out->ok = r.failed == 0;
    int signalled[MAX_RANKS];
    for (int k = 0; k < l->ranks; k++)
        signalled[k] = r.signalled[k];
    if (out->timed_out) {
        out->ok = 0;
        snprintf(out->reason, sizeof out->reason, "timed out after %d s (the scenario's timeout)", l->timeout_s);
    } else if (out->interrupted) {
        out->ok = 0;
        snprintf(out->reason, sizeof out->reason, "interrupted");
    } else if (!out->ok) {
        name_cause(l, r.status, signalled, out);
    }
    return 0;
}
