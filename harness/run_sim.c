/* The simulator beside a run (run_sim.h): two child commands of this binary. */
#include "run_sim.h"

#include "../core/base/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 160

typedef struct child_args {
    char *argv[MAX_ARGS];
    int n;
    char dilation[64];
} child_args;

static void add(child_args *a, const char *arg)
{
    if (a->n < MAX_ARGS - 1)
        a->argv[a->n++] = (char *)arg;
    a->argv[a->n] = NULL;
}

/* wancp SUB... SCENARIO --set ... --set scenario.dilation=D */
static void common(child_args *a, const char *sub1, const char *sub2, const char *scenario_path, char *const *sets,
                   int nsets, double dilation)
{
    a->n = 0;
    add(a, "wancp");
    add(a, sub1);
    if (sub2 != NULL)
        add(a, sub2);
    add(a, scenario_path);
    for (int i = 0; i < nsets && a->n < MAX_ARGS - 12; i++) {
        add(a, "--set");
        add(a, sets[i]);
    }
    snprintf(a->dilation, sizeof a->dilation, "scenario.dilation=%.17g", dilation);
    add(a, "--set");
    add(a, a->dilation);
}

/* Runs a with stdout into out_path; its exit status, or -1 with why filled. */
static int run_child(const child_args *a, const char *out_path, char *why, size_t len)
{
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, len, "%s: %s", out_path, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, len, "fork: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        if (dup2(fd, STDOUT_FILENO) < 0)
            _exit(127);
        execv("/proc/self/exe", a->argv);
        _exit(127);
    }
    close(fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(why, len, "waitpid: %s", strerror(errno));
            return -1;
        }
    if (WIFSIGNALED(status)) {
        snprintf(why, len, "`wancp %s %s` was killed by signal %d", a->argv[1], a->argv[2], WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

int run_sim_calibrate(const char *scenario_path, char *const *sets, int nsets, double dilation, const char *dir,
                      char *why, size_t len)
{
    child_args a;
    char out[1200], report[1200];
    snprintf(out, sizeof out, "%s/hardware.ini", dir);
    snprintf(report, sizeof report, "%s/calibrate.txt", dir);
    common(&a, "bench", "calibrate", scenario_path, sets, nsets, dilation);
    add(&a, "-o");
    add(&a, out);
    const int st = run_child(&a, report, why, len);
    if (st == 0)
        return WANCP_OK;
    if (st > 0)
        snprintf(why, len, "`wancp bench calibrate` failed (exit %d; its report: %s)", st, report);
    unlink(out);
    return WANCP_ERR_SYSTEM;
}

int run_sim_predict(const char *scenario_path, char *const *sets, int nsets, double dilation, const char *dir,
                    char *why, size_t len)
{
    child_args a;
    char hardware[1200], out[1200], tmp[1200];
    snprintf(hardware, sizeof hardware, "%s/hardware.ini", dir);
    snprintf(out, sizeof out, "%s/sim.json", dir);
    snprintf(tmp, sizeof tmp, "%s/sim.json.part", dir);
    common(&a, "sim", NULL, scenario_path, sets, nsets, dilation);
    add(&a, "--hardware");
    add(&a, hardware);
    add(&a, "--against");
    add(&a, dir);
    add(&a, "--json");
    const int st = run_child(&a, tmp, why, len);
    /* exit 1: an arm off the simulator's tolerance, which the summary reports */
    if ((st == 0 || st == 1) && rename(tmp, out) == 0)
        return WANCP_OK;
    if (st == 0 || st == 1)
        snprintf(why, len, "%s: %s", out, strerror(errno));
    else if (st > 1)
        snprintf(why, len, "`wancp sim` failed (exit %d)", st);
    unlink(tmp);
    return WANCP_ERR_SYSTEM;
}
