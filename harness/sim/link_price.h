#ifndef WANCP_LINK_PRICE_H
#define WANCP_LINK_PRICE_H

#include <signal.h>
#include <stddef.h>

/*
 * What the shaped links cost this host's cores: the simulator's link_cost_s. One spinner
 * per core counts loop turns, first with the host quiet and then while P iperf3 streams
 * run through prefix's rank namespaces as the ring's links (iperf3_ring.h); the turns the
 * spinners lost are the cores the streams took: the kernel's TCP, htb, veth and bridge
 * work, the capture if one runs, and iperf3's own system calls.
 *
 *   cores_taken = cores x (1 - turns while streaming / turns while quiet)
 *
 * *payload_bytes_s is what the P streams moved per second together (iperf3's figure).
 * Fails (why filled) when iperf3 does or when *interrupted is set.
 */
typedef struct link_price {
    double cores_taken;     /* by the streams, in cores */
    double payload_bytes_s; /* the P streams together */
    double stream_bps;      /* iperf3's mean per stream, bit/s */
} link_price;

int link_price_measure(const char *prefix, int ranks, int port, link_price *out,
                       const volatile sig_atomic_t *interrupted, char *why, size_t why_len);

#endif
