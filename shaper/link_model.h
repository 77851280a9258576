#ifndef WANCP_SHAPER_LINK_MODEL_H
#define WANCP_SHAPER_LINK_MODEL_H

#include "profile.h"
#include "link_layout.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The link model: what the shaped links do to messages, as plain math (no sockets, no
 * transformer). The step simulator drives it; it reads the same link profiles the shaper
 * applies (profile.h) and plays rates over time from the same rate plans (rate_player.h).
 *
 * Nodes 0 .. P-1 send messages over connections (src, dst, class), each a FIFO, as comm's
 * connections are. Topology (enum topology_model of link_layout.h):
 *   uplink  every node has one access link up and one down at its rate; a message uses its
 *           source's uplink and its destination's downlink; the connections crossing a link
 *           share it max-min fairly (as TCP flows through one htb class roughly do)
 *   mesh    every ordered pair has its own link (at the slower node's rate); the classes
 *           of a pair share it max-min fairly
 * Under TCP's framing (eta left 0) a connection's payload costs 1514 / 1448 wire bytes per
 * byte on the links it crosses, and its delayed ACKs (66 bytes per two segments) load the
 * links of the way back: a lone message gets 0.956 of the rate, a ring where every node
 * sends and receives 0.936; and each shaped link has htb's bucket of LINK_BURST_BYTES: while
 * it holds tokens the link passes bytes at the unshaped rate, draining it by what exceeds the
 * link's rate, and refills at that rate while idle (so a small message on an idle link
 * arrives sooner than its bytes / rate). An explicit eta is the payload share alone: no
 * ACKs, no bucket.
 * A message occupies its connection for bytes / its share seconds and arrives the
 * profile's delay (+ one jitter sample, netem's distributions, order kept per connection)
 * after its last byte left: latency pipelines over back-to-back messages. With loss p every
 * connection is capped by Mathis et al., MSS / RTT x 1.22 / sqrt(p) with RTT = 2 x delay.
 * A schedule or trace changes every link's rate at the plan's steps; node_scale makes nodes
 * heterogeneous (0.25 for one straggler at B/4). A dilated run's links are a dilated profile
(link_profile_dilate).
 *
 * Times are seconds from the model's start; bytes are payload bytes.
 */
#define LINK_MAX_NODES 64
#define LINK_MAX_CLASSES 8
/* TCP/IPv4 with timestamps: 1448 payload bytes per 1514-byte frame one way, a 66-byte
 * delayed ACK per two frames the other way. */
#define LINK_MSS_BYTES 1448.0
#define LINK_ETA_TCP (LINK_MSS_BYTES / 1514.0)
#define LINK_ACK_WIRE_PER_BYTE (66.0 / (2 * LINK_MSS_BYTES))
/* The burst of every htb class the shaper builds. */
#define LINK_BURST_BYTES (TOPOLOGY_HTB_BURST_KIB * 1024.0)
/* The unshaped veth between namespaces on this kind of host (loopback-class memory copies). */
#define LINK_UNSHAPED_BPS 10e9

typedef struct link_model_config {
    int nodes;
    int topology;                /* TOPOLOGY_UPLINK or TOPOLOGY_MESH */
    const link_profile *profile; /* NULL: unshaped, at unshaped_bps and no delay */
    double unshaped_bps;         /* 0: LINK_UNSHAPED_BPS */
    double eta;                  /* 0: TCP's framing, ACKs on the way back included */
    bool no_burst;               /* TCP's framing without htb's bucket (the closed form's links) */
    const double *node_scale;    /* (nodes) rate factor per node; NULL: all 1 */
    uint64_t seed;               /* jitter samples */
} link_model_config;

typedef struct link_net link_net;

/* A model of cfg's network, empty at time 0. The profile must outlive it. */
int link_net_init(link_net **out, const link_model_config *cfg, char *err, size_t errlen);
void link_net_free(link_net *n);

/* Posts a message of bytes from src to dst on class cls at time at (>= the model's time;
 * later posts wait in the model). Returns its id (>= 0), or a negative status: out of
 * memory, or nodes or class out of range. */
int link_net_send(link_net *n, int src, int dst, int cls, double bytes, double at);

/* Gives message id's slot back for reuse (its times are then gone). */
void link_net_release(link_net *n, int id);

/* The time of the next thing the network does by itself (a message's last byte leaving, a
 * delayed post starting, a rate change), INFINITY when idle. */
double link_net_next_event(const link_net *n);

/* Moves the model to time t (no later than link_net_next_event). Messages whose last byte
 * left by t get their arrival time; their ids are written to done (room for max) and
 * counted in the return value. */
int link_net_advance(link_net *n, double t, int *done, int max);

/* When message id's last byte left (INFINITY while it is still queued or in flight), and
 * when it arrives at its destination. */
double link_net_sent_at(const link_net *n, int id);
double link_net_arrival(const link_net *n, int id);

/* The payload bytes per second every connection moves now, summed over the network (the
 * shaped links' load on the host's cores, for the step simulator). */
double link_net_throughput(const link_net *n);

/* Payload bytes posted so far by src on class cls. */
double link_net_bytes(const link_net *n, int src, int cls);

/* The capacity one link offers a lone connection now: eta x rate x node scale, in bit/s of
 * payload (0.956 x rate under TCP's framing); and the one-way delay in seconds (without
 * jitter). */
double link_net_payload_bps(const link_net *n, int node);
double link_net_delay_s(const link_net *n);

/* The payload rate of each connection when every node sends one stream and receives one
 * (rings, all-gathers): a link then carries its own payload and the ACKs of the stream the
 * other way; rate x 1448 / (1514 + 33) under TCP's framing, eta x rate otherwise. */
double link_net_duplex_payload_bps(const link_net *n, int node);

/* Collective times by the alpha-beta formulas (alpha: seconds per message, beta: seconds
 * per byte on one link), for cross-checks:
 *   ring all-gather      (p-1) alpha + (p-1)/p n beta   (n: the gathered bytes)
 *   ring reduce-scatter  (p-1) alpha + (p-1)/p n beta   (n: the input bytes)
 *   ring all-reduce      2(p-1) alpha + 2(p-1)/p n beta
 * and nccl-tests' bus bandwidth factor of each: (p-1)/p, (p-1)/p, 2(p-1)/p. */
double link_ring_allgather_s(int p, double n_bytes, double alpha_s, double beta_s);
double link_ring_reduce_scatter_s(int p, double n_bytes, double alpha_s, double beta_s);
double link_ring_allreduce_s(int p, double n_bytes, double alpha_s, double beta_s);
double link_busbw_factor(const char *collective, int p);

/* Mathis et al.'s cap of one TCP stream in bit/s: (MSS / RTT) x 1.22 / sqrt(p); INFINITY
 * for p = 0 or RTT = 0. */
double link_mathis_bps(double mss_bytes, double rtt_s, double loss);

#endif
