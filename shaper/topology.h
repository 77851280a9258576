#ifndef WANCP_SHAPER_TOPOLOGY_H
#define WANCP_SHAPER_TOPOLOGY_H

#include "link_layout.h"
#include "profile.h"
#include "relay.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * The emulated network of one run: P rank namespaces and a switch namespace holding a
 * bridge, joined by veth pairs created inside the namespaces (nothing is left in the host's
 * namespace, so deleting the namespaces removes every link and qdisc with them).
 *
 *   wancp-PREFIX-sw   bridge br0; ports p0 .. p(P-1)
 *   wancp-PREFIX-rK   eth0 = 198.18.0.(K+1)/24, lo; no default route: nothing leaves
 *
 * Uplink model: each rank's access link is shaped both ways with htb at the profile's
 * rate: its uplink on eth0 in the rank's namespace, its downlink on pK in the switch; all
 * of a rank's flows share it. Mesh model: every ordered pair (i, j) has its own link at
 * the rate: an htb class per destination on i's eth0 (u32 filter on the destination
 * address) and per source on j's switch port (filter on the source address).
 * Delay, jitter and loss come from the project's user-space emulator (this kernel has no
 * netem): rank K's switch port pK is then not a bridge port; a relay in the switch
 * namespace (relay.h) moves frames between pK and dK, whose veth peer qK is the bridge
 * port, and applies the profile on the way from the rank. Checksum offload is off on that
 * path, since the relay re-sends frames as they are. ignore_delay shapes the rate alone.
 * A straggler rank's links run at the rate / straggler_k (the link model's node_scale).
 * A rate that changes over time (a schedule or a trace, rate_player.h) is played by a
 * helper in the switch namespace that changes every htb class through long-lived tc
 * processes; topology_down removes it with the rest.
 */
#define TOPOLOGY_NS_PREFIX "wancp-"

/* Prefixes that a process makes from its own process id, for a network it owns: wancp run
 * (run<pid>), bench calibrate (cal<pid>), bench comm (bc<pid>). A network whose process
 * no longer runs as wancp is an orphan (its owner was killed with SIGKILL). */
#define TOPOLOGY_RUN_PREFIX "run"
#define TOPOLOGY_CALIBRATE_PREFIX "cal"
#define TOPOLOGY_BENCH_PREFIX "bc"
#define TOPOLOGY_MAX_RANKS 250 /* 198.18.0.1 .. .250 */

/* Where delay, jitter and loss come from: auto takes netem where the kernel has it (its
 * configuration says CONFIG_NET_SCH_NETEM), else the relay. */
enum topology_delay { DELAY_AUTO, DELAY_RELAY, DELAY_NETEM };

typedef struct topology {
    char prefix[24]; /* [a-z0-9] only, at most 16: names stay short and safe in commands */
    int ranks;
    int model;                   /* enum topology_model */
    const link_profile *profile; /* NULL: unshaped */
    int ignore_delay;
    int delay_mechanism; /* enum topology_delay */
    int straggler;       /* with straggler_k > 1: this rank's links (up and down, every */
    double straggler_k;  /* class of them in the mesh) run at the rate / straggler_k */
    bool owned;          /* by a run: the helpers (relays, rate player) die with the process that
                          * made them; false for `shape up`, whose network outlives it */
} topology;

/* The factor rank r's links run at: 1 / straggler_k for the straggler, else 1. */
double topology_rank_scale(const topology *t, int rank);

/* "RANK:K" (K >= 1, up to 1e6) into rank and k; 0, or -1 when it is not that. */
int topology_parse_straggler(const char *text, int *rank, double *k);

/* The exact commands, as `ip -batch` lines and, per namespace, `tc -batch` lines, in the
 * order topology_up runs them; for --dry-run and for shaping a real NIC by hand. */
int topology_script(const topology *t, char *buf, size_t len, char *err, size_t errlen);

/* Whether t needs the delay emulator (a profile with delay, jitter or loss, not ignored,
 * and the relay chosen). */
bool topology_emulates(const topology *t);

/* What gives t its delay, jitter and loss: "netem", "relay" or "none" (for printing and
 * recording). */
const char *topology_delay_mechanism(const topology *t);

/* The relay of rank's link: from pK to dK with the profile's delay, jitter and loss. */
relay_options relay_options_of(const topology *t, int rank);

/* Builds everything; on any failure removes what it made. */
int topology_up(const topology *t, char *err, size_t errlen);

/* Removes the networks whose owner died (see TOPOLOGY_RUN_PREFIX): their prefixes, joined
 * by ", ", go into names; *removed counts the namespaces. WANCP_OK or an error. */
int topology_down_orphans(int *removed, char *names, size_t len, char *err, size_t errlen);

/* A run's prefix: 1 to 16 of a-z and 0-9. WANCP_OK, or WANCP_ERR_INPUT naming it. */
int topology_prefix_check(const char *prefix, char *err, size_t errlen);

/* Removes the namespaces of prefix (all of them when prefix is NULL: every wancp-*
 * namespace, for cleaning up after a crash). Reports how many went. */
int topology_down(const char *prefix, int *removed, char *err, size_t errlen);

/* Moves the calling process (or thread) into the network namespace of rank (or -1: the
 * switch) of prefix; WANCP_OK, or an error naming the namespace. */
int topology_enter(const char *prefix, int rank, char *err, size_t errlen);

/* Namespace name for rank (or -1: the switch), into buf. */
void topology_ns_name(const char *prefix, int rank, char *buf, size_t len);

/* 198.18.0.(rank + 1) */
void topology_rank_addr(int rank, char *buf, size_t len);

#endif
