#ifndef WANCP_OPS_TIMED_H
#define WANCP_OPS_TIMED_H

#include "ops.h"

/*
 * A table that forwards every op to another backend and adds the seconds of each call to
 * its class: what `wancp bench calibrate` needs to split a real step's compute by class.
 * Function pointers carry no context, so the wrapped backend and the sums are one per
 * process; sums are atomic (ops may be called from several threads). Accurate for
 * synchronous backends (cpu); an asynchronous one would need a sync per call.
 */
enum ops_time_class {
    OPS_TIME_MATMUL,
    OPS_TIME_ATTENTION,
    OPS_TIME_ELEMENTWISE,
    OPS_TIME_OPTIMIZER,
    OPS_TIME_NCLASSES
};

/* The timing table around inner (set once per process; a second call replaces inner). */
const ops *ops_timed(const ops *inner);

/* Seconds per class since the last reset. */
void ops_timed_read(double seconds[OPS_TIME_NCLASSES]);
void ops_timed_reset(void);

#endif
