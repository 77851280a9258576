#include "rate_player.h"

#include "shaper_internal.h"

#include "../core/base/status.h"

#include <stdlib.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Appends (at, rate) unless it repeats the last rate. */
static void push(rate_plan *plan, uint64_t at, uint64_t rate)
{
    if (plan->n > 0 && plan->steps[plan->n - 1].rate_bps == rate)
        return;
    plan->steps[plan->n++] = (rate_step){.at_ns = at, .rate_bps = rate};
}

int rate_plan_of(const link_profile *p, rate_plan *out, char *err, size_t errlen)
{
    *out = (rate_plan){0};
    size_t cap = 1;
    uint64_t bins = 0;
    if (p->ntrace > 0) {
        const uint64_t last_ms = p->trace_ms[p->ntrace - 1];
        bins = (last_ms * 1000000ull) / RATE_TRACE_BIN_NS + 1;
        cap = (size_t)bins;
    } else if (p->nschedule > 0) {
        cap = p->nschedule;
    }
    out->steps = calloc(cap, sizeof *out->steps);
    if (out->steps == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "rate plan: out of memory");
    if (p->ntrace > 0) {
        size_t i = 0;
        for (uint64_t b = 0; b < bins; b++) {
            const uint64_t end_ms = (b + 1) * RATE_TRACE_BIN_NS / 1000000ull;
            uint64_t count = 0;
            for (; i < p->ntrace && p->trace_ms[i] < end_ms; i++)
                count++;
            uint64_t rate = count * 1500ull * 8ull * 1000000000ull / RATE_TRACE_BIN_NS;
            push(out, b * RATE_TRACE_BIN_NS, rate < RATE_MIN_BPS ? RATE_MIN_BPS : rate);
        }
        out->period_ns = bins * RATE_TRACE_BIN_NS;
    } else if (p->nschedule > 0) {
        for (size_t i = 0; i < p->nschedule; i++)
            push(out, p->schedule[i].at_ns, p->schedule[i].rate_bps);
    } else {
        push(out, 0, p->rate_bps);
    }
    return WANCP_OK;
}

void rate_plan_free(rate_plan *plan)
{
    free(plan->steps);
    *plan = (rate_plan){0};
}

uint64_t rate_plan_at(const rate_plan *plan, uint64_t t_ns)
{
    if (plan->period_ns > 0)
        t_ns %= plan->period_ns;
    uint64_t rate = plan->steps[0].rate_bps;
    for (size_t i = 1; i < plan->n && plan->steps[i].at_ns <= t_ns; i++)
        rate = plan->steps[i].rate_bps;
    return rate;
}

uint64_t rate_plan_next_change(const rate_plan *plan, uint64_t t_ns)
{
    uint64_t base = 0, t = t_ns;
    if (plan->period_ns > 0) {
        t = t_ns % plan->period_ns;
        base = t_ns - t;
    }
    for (size_t i = 1; i < plan->n; i++)
        if (plan->steps[i].at_ns > t)
            return base + plan->steps[i].at_ns;
    return plan->period_ns > 0 && plan->n > 1 ? base + plan->period_ns : UINT64_MAX;
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Plays the profile's rate over time through one long-lived `tc -batch -` per namespace
 * (a change takes effect within milliseconds; starting tc each time took about a second).
 * Runs in the switch namespace until topology_down kills it. */
static void play_rates(const topology *t, const rate_plan *plan)
{
    signal(SIGPIPE, SIG_IGN);
    FILE *tc[TOPOLOGY_MAX_RANKS + 1];
    for (int i = 0; i <= t->ranks; i++) {
        char ns[64], cmd[128];
        topology_ns_name(t->prefix, i == t->ranks ? -1 : i, ns, sizeof ns);
        snprintf(cmd, sizeof cmd, "exec tc -n %s -batch - >/dev/null 2>&1", ns);
        tc[i] = popen(cmd, "w");
        if (tc[i] == NULL)
            _exit(1);
    }
    static step lines;
    const uint64_t start = clock_ns();
    uint64_t base = 0; /* start of the current period of a repeating trace */
    for (size_t k = 1;; k++) {
        if (k == plan->n) {
            if (plan->period_ns == 0)
                break; /* a schedule holds its last rate */
            base += plan->period_ns;
            k = 0;
        }
        const uint64_t at = start + base + plan->steps[k].at_ns;
        for (uint64_t now = clock_ns(); now < at; now = clock_ns()) {
            struct timespec nap = {.tv_sec = (time_t)((at - now) / 1000000000ull),
                                   .tv_nsec = (long)((at - now) % 1000000000ull)};
            nanosleep(&nap, NULL);
        }
        for (int i = 0; i <= t->ranks; i++) {
            htb_rate_lines(t, i == t->ranks ? -1 : i, plan->steps[k].rate_bps, &lines);
            if (fputs(lines.text, tc[i]) < 0 || fflush(tc[i]) != 0)
                _exit(1);
        }
    }
    for (;;)
        pause();
}

/* Forks the rate player into the switch namespace when the rate changes over time. */
int rate_player_start(const topology *t, char *err, size_t errlen)
{
    rate_plan plan;
    int rc = rate_plan_of(t->profile, &plan, err, errlen);
    if (rc != WANCP_OK || plan.n < 2) {
        rate_plan_free(&plan);
        return rc;
    }
    pid_t pid = netns_fork_into_switch(t);
    if (pid < 0) {
        rate_plan_free(&plan);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        play_rates(t, &plan);
        _exit(0);
    }
    rate_plan_free(&plan);
    return WANCP_OK;
}
