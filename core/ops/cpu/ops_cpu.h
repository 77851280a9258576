#ifndef WANCP_OPS_CPU_H
#define WANCP_OPS_CPU_H

#include "../ops.h"

/* The cpu backend's side of ops_make (ops_select.c); nothing else makes a backend. */

/* Its table of functions. */
const ops *ops_cpu_table(void);

/* Sets the host threads of OpenBLAS (and LAPACK under it) and of the loops' pool, for the
 * whole process (0: one per CPU); returns the count set. */
int ops_cpu_configure_threads(int threads);

#endif
