/* htb: each rank's link shaped at the profile's rate, both ways (the rank's egress on its
 * eth0, its ingress on its switch port); one class per link (uplink) or per peer (mesh). */
#include "shaper_internal.h"

#include "../core/base/status.h"
#include "rate_player.h"
#include "units.h"

#include <math.h>
#include <stdio.h>

/* The rate a link starts at: its schedule's or trace's first, or its fixed one. */
static uint64_t htb_start_rate(const link_profile *p)
{
    rate_plan plan;
    char ignore[WANCP_ERRLEN];
    if (rate_plan_of(p, &plan, ignore, sizeof ignore) != WANCP_OK)
        return p->rate_bps;
    uint64_t rate = plan.steps[0].rate_bps;
    rate_plan_free(&plan);
    return rate;
}

double topology_rank_scale(const topology *t, int rank)
{
    return t->straggler_k > 1 && rank == t->straggler ? 1.0 / t->straggler_k : 1.0;
}

int topology_parse_straggler(const char *text, int *rank, double *k)
{
    int used = 0;
    if (sscanf(text, "%d:%lf%n", rank, k, &used) != 2 || text[used] != '\0' || *rank < 0 ||
        *rank >= TOPOLOGY_MAX_RANKS || !(*k >= 1 && *k <= 1e6))
        return -1;
    return 0;
}

static uint64_t htb_scaled(uint64_t rate_bps, double scale)
{
    return scale == 1.0 ? rate_bps : (uint64_t)llround((double)rate_bps * scale);
}

/* One htb class line: add (at setup) or change (the rate player). */
static void htb_class_line(step *s, const char *verb, const char *dev, int minor, uint64_t rate_bps)
{
    char rate[32];
    shaper_format_rate(rate_bps, rate, sizeof rate);
    add_line(s, "class %s dev %s parent 1: classid 1:%d htb rate %s ceil %s burst %dk cburst %dk quantum 60000", verb,
             dev, minor, rate, rate, TOPOLOGY_HTB_BURST_KIB, TOPOLOGY_HTB_BURST_KIB);
}

/* A shaped class, with the delay mechanism's child under it (egress_child, may be NULL) or
 * a byte queue of the profile's length. */
static void shaped_class(step *s, const char *dev, int minor, const link_profile *p, double scale,
                         egress_child_fn *egress_child)
{
    htb_class_line(s, "add", dev, minor, htb_scaled(htb_start_rate(p), scale));
    if (egress_child != NULL)
        egress_child(s, dev, minor, p);
    else if (p->queue_bytes > 0)
        add_line(s, "qdisc add dev %s parent 1:%d handle %d: bfifo limit %llu", dev, minor, 100 + minor,
                 (unsigned long long)p->queue_bytes);
}

/* Uplink: everything through dev in one class (with netem under it on a rank's egress). */
void htb_shape_dev(step *s, const char *dev, const link_profile *p, double scale, egress_child_fn *egress_child)
{
    add_line(s, "qdisc add dev %s root handle 1: htb default 1", dev);
    shaped_class(s, dev, 1, p, scale, egress_child);
}

/* Mesh: one class per peer of rank self, chosen by the peer's address (dst on a rank's
 * eth0, src on the switch port towards self); other packets (ARP) pass unshaped. */
void htb_shape_dev_mesh(step *s, const char *dev, const link_profile *p, double scale, int self, int ranks,
                        const char *match, egress_child_fn *egress_child)
{
    add_line(s, "qdisc add dev %s root handle 1: htb default 0", dev);
    for (int q = 0; q < ranks; q++) {
        if (q == self)
            continue;
        char addr[32];
        topology_rank_addr(q, addr, sizeof addr);
        shaped_class(s, dev, q + 1, p, scale, egress_child);
        add_line(s, "filter add dev %s parent 1: protocol ip prio 1 u32 match ip %s %s/32 flowid 1:%d", dev, match,
                 addr, q + 1);
    }
}

/* The class changes that set every link of namespace `rank` (-1: the switch) to rate. */
void htb_rate_lines(const topology *t, int rank, uint64_t rate, step *s)
{
    s->text[0] = 0;
    for (int r = rank < 0 ? 0 : rank; r < (rank < 0 ? t->ranks : rank + 1); r++) {
        char dev[16] = "eth0";
        if (rank < 0)
            snprintf(dev, sizeof dev, "p%d", r);
        for (int q = 0; q < t->ranks; q++) {
            if (t->model == TOPOLOGY_MESH && q != r)
                htb_class_line(s, "change", dev, q + 1, htb_scaled(rate, topology_rank_scale(t, r)));
            else if (t->model != TOPOLOGY_MESH && q == 0)
                htb_class_line(s, "change", dev, 1, htb_scaled(rate, topology_rank_scale(t, r)));
        }
    }
}
