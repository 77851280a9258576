/* An arm's ranks entered into their namespaces, watched, stopped when one fails. */
#include "arm_launch.h"

#include "../core/util/proc.h"

#include "../core/status.h"
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

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

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
    setpgid(0, 0);
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
 * first (the others then fail because it went away), then the first failed exit. */
static void name_cause(const arm_launch *l, const int *status, const int *signalled, arm_outcome *out)
{
    char last[400];
    for (int r = 0; r < l->ranks; r++)
        if (WIFSIGNALED(status[r]) && !signalled[r]) {
            snprintf(out->reason, sizeof out->reason, "rank %d was killed by signal %d (%s)", r, WTERMSIG(status[r]),
                     strsignal(WTERMSIG(status[r])));
            return;
        }
    for (int r = 0; r < l->ranks; r++)
        if (WIFEXITED(status[r]) && WEXITSTATUS(status[r]) != 0) {
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

int arm_launch_run(const arm_launch *l, volatile sig_atomic_t *interrupted, arm_outcome *out)
{
    *out = (arm_outcome){0};
    if (l->ranks < 1 || l->ranks > MAX_RANKS) {
        snprintf(out->reason, sizeof out->reason, "%d ranks: 1 to %d can be launched", l->ranks, MAX_RANKS);
        return -1;
    }
    char job[32];
    snprintf(job, sizeof job, "%lld", (long long)getpid() * 1000003LL + (long long)time(NULL));
    pid_t pids[MAX_RANKS];
    int status[MAX_RANKS], signalled[MAX_RANKS] = {0}, live = 0;
    const double t0 = now_s();
    fflush(NULL);
    const pid_t self = getpid();
    for (int r = 0; r < l->ranks; r++) {
        status[r] = 0;
        pids[r] = fork();
        if (pids[r] == 0) {
            /* SIGTERM when wancp run dies: a rank stops between steps, metrics closed */
            if (!proc_die_with_parent(self, SIGTERM))
                _exit(126);
            start_rank(l, r, job);
        }
        if (pids[r] < 0) {
            snprintf(out->reason, sizeof out->reason, "fork: %s", strerror(errno));
            for (int k = 0; k < r; k++)
                kill(pids[k], SIGKILL);
            for (int k = 0; k < r; k++)
                waitpid(pids[k], NULL, 0);
            return -1;
        }
        setpgid(pids[r], pids[r]);
        live++;
    }
    const int tty = isatty(STDERR_FILENO);
    double stop_at = 0;      /* when the ranks were told to stop (0: not yet) */
    int failed = 0, sent_term = 0, sent_kill = 0;
    double last_print = t0;
    while (live > 0) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            for (int r = 0; r < l->ranks; r++)
                if (pids[r] == pid) {
                    pids[r] = -1;
                    status[r] = st;
                    live--;
                    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !failed) {
                        failed = 1; /* the others see the closed connections and exit on their own */
                        if (stop_at == 0)
                            stop_at = now_s();
                        for (int k = 0; k < l->ranks; k++) /* a stopped rank (SIGSTOP) must see them too */
                            if (pids[k] > 0)
                                kill(pids[k], SIGCONT);
                    }
                }
            continue;
        }
        const double now = now_s();
        if (stop_at == 0 && *interrupted) {
            out->interrupted = 1;
            stop_at = now;
            for (int r = 0; r < l->ranks; r++)
                if (pids[r] > 0)
                    signalled[r] = 1, kill(pids[r], SIGINT), kill(pids[r], SIGCONT); /* stop between steps */
        }
        if (stop_at == 0 && now - t0 > l->timeout_s) {
            out->timed_out = 1;
            stop_at = now - 10; /* straight to SIGTERM */
        }
        if (stop_at > 0 && !sent_term && now - stop_at > 10) {
            for (int r = 0; r < l->ranks; r++)
                if (pids[r] > 0)
                    signalled[r] = 1, kill(pids[r], SIGTERM), kill(pids[r], SIGCONT);
            sent_term = 1;
        }
        if (stop_at > 0 && !sent_kill && now - stop_at > 15) {
            for (int r = 0; r < l->ranks; r++)
                if (pids[r] > 0)
                    signalled[r] = 1, kill(pids[r], SIGKILL);
            sent_kill = 1;
        }
        if (now - last_print >= (tty ? 1.0 : 15.0)) {
            print_progress(l, now - t0, tty, 0);
            last_print = now;
        }
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    out->seconds = now_s() - t0;
    print_progress(l, out->seconds, tty, 1);
    out->ok = 1;
    for (int r = 0; r < l->ranks; r++)
        if (!(WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0))
            out->ok = 0;
    if (out->timed_out) {
        out->ok = 0;
        snprintf(out->reason, sizeof out->reason, "timed out after %d s (the scenario's timeout)", l->timeout_s);
    } else if (out->interrupted) {
        out->ok = 0;
        snprintf(out->reason, sizeof out->reason, "interrupted");
    } else if (!out->ok) {
        name_cause(l, status, signalled, out);
    }
    return 0;
}
