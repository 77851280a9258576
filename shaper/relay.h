#ifndef WANCP_SHAPER_RELAY_H
#define WANCP_SHAPER_RELAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The user-space delay emulator, for kernels without netem (this project's CI kernel has
 * none): a relay between two interfaces of the switch namespace on raw packet sockets.
 * Frames arriving on `in` (a rank's switch port) leave on `out` (towards the bridge) after
 * the profile's delay plus a jitter sample, unless lost; frames arriving on `out` go to
 * `in` at once. So each rank's uplink carries the whole one-way delay, jitter and loss of
 * its link, a round trip between two ranks adds twice the delay, and every distribution
 * stays what the profile says (two halves would not add up to a uniform or a pareto).
 * Frames leave in arrival order (a late sample holds back the ones behind it, as one
 * queue does): no reordering. While frames flow the relay wakes every 0.1 ms and moves
 * them in batches, so it keeps up at 1 Gbit/s on two cores; a frame leaves at most about
 * 0.1 ms after its due time (both ways). A queue beyond queue_bytes drops at the tail.
 */
typedef struct relay_options {
    char in[16], out[16]; /* interface names in the current namespace */
    uint64_t delay_ns, jitter_ns;
    int distribution; /* enum jitter_distribution (profile.h) */
    uint32_t loss_ppm;
    uint64_t queue_bytes; /* 0: 4 MB */
    uint64_t seed;
} relay_options;

/* Opens both sockets; then, when ready_fd >= 0, writes one byte to it (the caller knows
 * frames will be relayed from now on) and relays until *stop is set. */
int relay_run(const relay_options *o, int ready_fd, volatile sig_atomic_t *stop, char *err, size_t errlen);

/* One jitter sample in ns (may be negative) of a distribution with standard deviation
 * jitter_ns (uniform: +-jitter_ns); u1, u2, u3 uniform in (0, 1). For tests. */
double relay_jitter_sample(int distribution, double jitter_ns, double u1, double u2, double u3);

#endif
