#ifndef WANCP_SHAPER_INTERNAL_H
#define WANCP_SHAPER_INTERNAL_H

/* Shared by the files that build a topology (topology.c and one file per mechanism:
 * netns.c, htb.c, delay.c, rate_player.c, batch.c); nothing outside shaper/ includes it. */
#include "topology.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One step of the script: a command line and what it reads on stdin. */
typedef struct step {
    char ns[64]; /* "" for the host namespace */
    int is_tc;
    char text[8192];
    char dev[16];   /* set: not a batch but `ethtool -K dev ...` inside ns */
    int tx_off;     /* with dev: transmit checksums off too (the relay re-sends frames as they are) */
    int tcp_tuning; /* set: not a batch but `sysctl` of TCP_TUNING inside ns */
    int force;      /* the batch goes on past a failing line (removal: take what can go) */
} step;

void add_line(step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs one step: `ip|tc [-n ns] -batch -` with its text on stdin, or its ethtool or sysctl
 * (batch.c); the first line of the tool's complaints goes into err. */
int run_batch(const step *s, char *err, size_t errlen);

/* The step as the shell line --dry-run prints (batch.c); bytes written. */
size_t step_print(const step *s, char *buf, size_t len);

/* htb (htb.c): a rank's link in one class (uplink) or one class per peer (mesh), each with
 * the delay mechanism's child under it (egress_child, may be NULL) or the profile's queue. */
typedef void egress_child_fn(step *s, const char *dev, int minor, const link_profile *p);
void htb_shape_dev(step *s, const char *dev, const link_profile *p, double scale, egress_child_fn *egress_child);
void htb_shape_dev_mesh(step *s, const char *dev, const link_profile *p, double scale, int self, int ranks,
                        const char *match, egress_child_fn *egress_child);
/* The class changes that set every link of namespace `rank` (-1: the switch) to rate. */
void htb_rate_lines(const topology *t, int rank, uint64_t rate, step *s);

/*
 * Where delay, jitter and loss come from, behind one table (delay.c): whether this kernel
 * has it; whether it needs the rank ports out of the bridge (a relay between pK and dK, qK
 * the bridge port); what goes under a rank's egress class; what --dry-run prints after the
 * commands; and what must run beside the links once they are up.
 */
typedef struct delay_mechanism {
    const char *name, *says;
    bool (*available)(void);
    bool own_ports;
    egress_child_fn *egress_child;
    size_t (*script)(const topology *t, char *buf, size_t len);
    int (*start)(const topology *t, char *err, size_t errlen);
} delay_mechanism;

/* The mechanism t uses, or NULL when its links carry no delay, jitter or loss. */
const delay_mechanism *delay_of(const topology *t);

/* Forks a helper into t's switch namespace (netns.c): its pid, 0 in the helper, or -1. */
pid_t netns_fork_into_switch(const topology *t);

/* Forks the rate player when the rate changes over time (rate_player.c). */
int rate_player_start(const topology *t, char *err, size_t errlen);

#endif
