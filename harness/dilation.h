#ifndef WANCP_DILATION_H
#define WANCP_DILATION_H

#include "scenario.h"

#include <stddef.h>

/*
 * dilation = auto (SIMULATION.md, "Time dilation"): D measured on this host, not guessed.
 * A fixed D makes a scenario's verdict depend on the host: the same links cost a slow host's
 * compute less than a fast one's. The rule holds what the verdict rests on, the ratio of the
 * slow link's exchange to compute, fixed across hosts:
 *
 *   D = exchange_ratio x compute_s x rate / (8 x exchange_bytes), at least 1 (at most 1000)
 *
 * compute_s: the scenario's uncompressed step with its exchange skipped, timed just before
 * the arms as its P ranks run it at once (as `wancp bench calibrate` times it);
 * exchange_bytes: the uncompressed K/V payload one rank sends per step (METHOD.md section 5);
 * rate: the slowest rate-shaped arm's rate; exchange_ratio: the scenario's (default 1.5),
 * so the uncompressed exchange through one link at rate / D takes exchange_ratio x the step's
 * compute on any host.
 */
typedef struct dilation_choice {
    double compute_s, exchange_bytes, rate_bps, ratio;
    double dilation;
    char why[400]; /* the rule with its numbers, for run.json, the summary and the figures */
} dilation_choice;

/* The rule itself; NAN inputs or no bytes give 1. */
double dilation_rule(double compute_s, double exchange_bytes, double rate_bps, double ratio);

/* The uncompressed K/V payload one rank of s sends per step (the same for every rank). */
double dilation_exchange_bytes(const scenario *s);

/* The slowest rate of s's rate-shaped arms (0: none). */
double dilation_slow_rate(const scenario *s);

/* Fills c from a measured compute step (rule, numbers and words) and sets s->dilation. */
void dilation_choose(scenario *s, double compute_s, dilation_choice *c);

#endif
