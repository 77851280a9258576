/* dilation = auto: D from this host's measured compute step, by one stated rule. */
#include "dilation.h"

#include "report/results.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double dilation_rule(double compute_s, double exchange_bytes, double rate_bps, double ratio)
{
    if (!(compute_s > 0) || !(exchange_bytes > 0) || !(rate_bps > 0) || !(ratio > 0))
        return 1;
    const double d = ratio * compute_s * rate_bps / (8 * exchange_bytes);
    return d < 1 ? 1 : d > 1000 ? 1000 : round(d * 100) / 100; /* two decimals: what the run prints */
}

double dilation_exchange_bytes(const scenario *s)
{
    const run_method m = scenario_run_method(s, NULL);
    metrics_file f = {.layers = s->layers,
                      .dim = s->dim,
                      .heads = s->heads,
                      .kv_heads = s->kv_heads,
                      .batch = s->batch,
                      .seq = s->context,
                      .ranks = s->ranks};
    snprintf(f.wire, sizeof f.wire, "%s", m.wire == 0 ? "bf16" : "fp32");
    snprintf(f.layout, sizeof f.layout, "%s", scenario_switch(s, NULL, "cp_layout"));
    snprintf(f.kv, sizeof f.kv, "%s",
             strcmp(scenario_switch(s, NULL, "kv_regather"), "true") == 0 ? "regathered" : "cached");
    uint64_t fwd, bwd;
    metrics_kv_formula(&f, 0, false, &fwd, &bwd);
    return (double)(fwd + bwd);
}

double dilation_slow_rate(const scenario *s)
{
    double slow = 0;
    for (int i = 0; i < s->narms; i++) {
        const scenario_arm *a = &s->arms[i];
        if (a->shaped && a->profile.rate_bps > 0 && (slow == 0 || (double)a->profile.rate_bps < slow))
            slow = (double)a->profile.rate_bps;
    }
    return slow;
}

void dilation_choose(scenario *s, double compute_s, dilation_choice *c)
{
    *c = (dilation_choice){.compute_s = compute_s,
                           .exchange_bytes = dilation_exchange_bytes(s),
                           .rate_bps = dilation_slow_rate(s),
                           .ratio = s->exchange_ratio};
    c->dilation = dilation_rule(c->compute_s, c->exchange_bytes, c->rate_bps, c->ratio);
    snprintf(c->why, sizeof c->why,
             "auto: the uncompressed exchange (%.2f MB a rank sends per step) through one link at %g Mbit/s / D "
             "takes %g x this host's compute step (%.3f s, measured before the arms)",
             c->exchange_bytes / 1e6, c->rate_bps / 1e6, c->ratio, c->compute_s);
    s->dilation = c->dilation;
}
