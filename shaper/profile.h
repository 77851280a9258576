#ifndef WANCP_SHAPER_PROFILE_H
#define WANCP_SHAPER_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A link profile: what one link does to the bytes crossing it. Read from an INI file with
 * one [link] section, in the unit grammar of units.h:
 *
 *   [link]
 *   name = wan-300m             ; optional, defaults to the file name
 *   rate = 300mbit              ; required unless trace is given
 *   delay = 20ms                ; one way
 *   jitter = 2ms                ; needs delay; spread of the delay
 *   distribution = normal       ; uniform | normal | pareto | paretonormal (netem's names)
 *   loss = 0.1%                 ; per packet, 0% .. 100%
 *   queue = 1mb                 ; bytes the link may queue
 *   schedule = 0s 300mbit, 30s 100mbit   ; rate over time: "seconds rate" pairs
 *   trace = traces/cell.trace   ; mahimahi: one ms timestamp per 1500-byte delivery
 *                               ; opportunity, non-decreasing (relative to the profile)
 *
 * Loading reports every problem of the file at once, each with file:line.
 */
enum jitter_distribution { JITTER_UNIFORM, JITTER_NORMAL, JITTER_PARETO, JITTER_PARETONORMAL };

typedef struct rate_step {
    uint64_t at_ns;
    uint64_t rate_bps;
} rate_step;

typedef struct link_profile {
    char name[64];
    uint64_t rate_bps; /* 0 when the trace alone sets the rate */
    uint64_t delay_ns;
    uint64_t jitter_ns;
    int distribution;     /* enum jitter_distribution */
    uint32_t loss_ppm;    /* packets lost per million */
    uint64_t queue_bytes; /* 0: the mechanism's default */
    rate_step *schedule;  /* (nschedule,) ascending in time; first at 0 */
    size_t nschedule;
    uint32_t *trace_ms; /* (ntrace,) delivery opportunities */
    size_t ntrace;
} link_profile;

int link_profile_load(link_profile *p, const char *path, char *err, size_t errlen);
void link_profile_free(link_profile *p);

/* Whether the links delay, jitter or lose (beyond shaping the rate): what takes the
 * delay emulator, or netem. */
bool link_profile_delays(const link_profile *p);

/* One line describing the profile, e.g. "wan-300m: 300mbit, delay 20ms, jitter 2ms normal". */
void link_profile_describe(const link_profile *p, char *buf, size_t len);

/* The profile as a dilated run plays it (SIMULATION.md, time dilation): rates / D, delays,
 * jitter, schedule times and trace timestamps x D, queue bytes / D so the queue holds the
 * same time. out owns copies of the schedule and trace (link_profile_free); -1 when out
 * of memory. */
int link_profile_dilate(const link_profile *in, double D, link_profile *out);

#endif
