#ifndef WANCP_IPERF3_RING_H
#define WANCP_IPERF3_RING_H

#include <signal.h>
#include <stddef.h>

/*
 * iperf3 as the ring's links, the reference the benches hold wancp's numbers against: P
 * streams at once, server k at rank (k+1) % P's address on port + k, client k at rank k
 * sending to it for seconds s, the first omit s left out of the figure (TCP's ramp).
 * Ranks run inside prefix's rank namespaces (NULL: on loopback, 127.0.0.1).
 *
 * Returns the mean received payload rate per stream in bit/s, or a negative value with why
 * filled (iperf3 missing, a stream without a result, *interrupted set: the clients are
 * killed). Every iperf3 it started has exited when it returns.
 */
double iperf3_ring(const char *prefix, int ranks, int port, int seconds, int omit,
                   const volatile sig_atomic_t *interrupted, char *why, size_t why_len);

#endif
