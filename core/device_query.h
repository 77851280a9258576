#ifndef WANCP_DEVICE_QUERY_H
#define WANCP_DEVICE_QUERY_H

#include <stddef.h>

/*
 * What accelerators this build can use. Writes one line per CUDA device (name, compute
 * capability, memory, SMs, and whether a test kernel ran correctly on it) or one line that
 * says why there is none, into buf. Returns the number of usable CUDA devices: 0 when there
 * is none or the build has no CUDA.
 */
int device_query(char *buf, size_t len);

#endif
