#ifndef WANCP_CALIBRATE_H
#define WANCP_CALIBRATE_H

#include "../scenario.h"

#include <stddef.h>

/* The scenario's uncompressed compute step on this host, in seconds: its P ranks at once on
 * 127.0.0.1, each with the threads `wancp run` gives a rank, the K/V exchange skipped, steps
 * timed steps after one warm-up; the slowest rank's mean (when the arm's step would end).
 * What `dilation = auto` measures (dilation.h). */
int calibrate_compute_step(const scenario *s, int steps, double *step_s, char *err, size_t errlen);

#endif
