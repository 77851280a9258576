#ifndef WANCP_SHAPER_RATE_PLAYER_H
#define WANCP_SHAPER_RATE_PLAYER_H

#include "profile.h"

#include <stddef.h>
#include <stdint.h>

/*
 * A link's rate over time. A profile's schedule ("seconds rate" pairs) is played once and
 * its last rate held; a mahimahi trace (one millisecond timestamp per 1500-byte delivery
 * opportunity) becomes the rate of each bin (opportunities x 1500 x 8 bits / bin) and
 * repeats from its start after its last timestamp, as mahimahi replays it.
 */
#define RATE_TRACE_BIN_NS 100000000ull /* 100 ms */
#define RATE_MIN_BPS 8000ull           /* htb takes no zero rate: an empty bin is 8 kbit/s */

typedef struct rate_plan {
    rate_step *steps; /* ascending in time, the first at 0, no two neighbours equal */
    size_t n;
    uint64_t period_ns; /* a trace's length (it repeats); 0: hold the last rate */
} rate_plan;

/* The plan of p: its schedule, its trace, or its one fixed rate. */
int rate_plan_of(const link_profile *p, rate_plan *out, char *err, size_t errlen);
void rate_plan_free(rate_plan *plan);

/* The rate at time t from the start. */
uint64_t rate_plan_at(const rate_plan *plan, uint64_t t_ns);

/* The first time after t at which the rate may change (a step, or a trace's wrap), or
 * UINT64_MAX when it never does again. */
uint64_t rate_plan_next_change(const rate_plan *plan, uint64_t t_ns);

#endif
