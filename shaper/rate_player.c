#include "rate_player.h"

#include "../core/status.h"

#include <stdlib.h>

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
