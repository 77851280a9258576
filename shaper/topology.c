/* A topology: the checked plan of namespaces, links, htb classes and the delay mechanism,
 * run (up) or printed (--dry-run), and the helpers started beside it. Each mechanism has its
 * own file: netns.c, htb.c, delay.c, rate_player.c; batch.c runs their scripts. */
#include "shaper_internal.h"

#include "../core/base/status.h"
#include "rate_player.h"
#include "units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(const topology *t, char *err, size_t errlen)
{
    if (topology_prefix_check(t->prefix, err, errlen) != WANCP_OK)
        return WANCP_ERR_INPUT;
    if (t->ranks < 1 || t->ranks > TOPOLOGY_MAX_RANKS)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "ranks %d: 1 to 250 fit 198.18.0.0/24", t->ranks);
    const link_profile *p = t->profile;
    if (p != NULL && p->rate_bps == 0 && p->ntrace == 0 && p->nschedule == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "profile %s has no rate, schedule or trace", p->name);
    if (t->straggler_k > 1 && (t->straggler < 0 || t->straggler >= t->ranks))
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "straggler rank %d: the topology has ranks 0 to %d",
                          t->straggler, t->ranks - 1);
    if (t->straggler_k > 1 && p == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "a straggler needs shaped links (a profile)");
    return WANCP_OK;
}

/* The steps of topology_up, in order: host, switch, ranks, then tc per namespace. */
static int build_steps(const topology *t, step **out, int *count)
{
    const int P = t->ranks, shaped = t->profile != NULL, emulate = topology_emulates(t);
    int n = 2 + 2 * P + 2 * P + (emulate ? 2 * P : 0) + (shaped ? P + 1 : 0);
    step *s = calloc((size_t)n, sizeof *s);
    if (s == NULL)
        return WANCP_ERR_NOMEM;
    char sw[64], rk[64], addr[32];
    topology_ns_name(t->prefix, -1, sw, sizeof sw);
    int k = 0;
    for (int r = -1; r < P; r++) {
        topology_ns_name(t->prefix, r, rk, sizeof rk);
        add_line(&s[k], "netns add %s", rk);
    }
    k++;
    snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
    add_line(&s[k], "link set lo up");
    add_line(&s[k], "link add br0 type bridge");
    add_line(&s[k], "link set br0 up");
    for (int r = 0; r < P; r++) {
        topology_ns_name(t->prefix, r, rk, sizeof rk);
        add_line(&s[k], "link add p%d type veth peer name eth0 netns %s", r, rk);
        if (emulate) { /* p -> relay -> d, whose peer q is the bridge port */
            add_line(&s[k], "link add d%d type veth peer name q%d", r, r);
            add_line(&s[k], "link set q%d master br0", r);
            add_line(&s[k], "link set d%d up", r);
            add_line(&s[k], "link set q%d up", r);
        } else {
            add_line(&s[k], "link set p%d master br0", r);
        }
        add_line(&s[k], "link set p%d up", r);
    }
    k++;
    for (int r = 0; r < P; r++, k++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        topology_rank_addr(r, addr, sizeof addr);
        add_line(&s[k], "link set lo up");
        add_line(&s[k], "addr add %s/24 dev eth0", addr);
        add_line(&s[k], "link set eth0 up");
    }
    for (int r = 0; r < P; r++, k++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        s[k].tcp_tuning = 1;
    }
    for (int r = 0; r < P; r++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        s[k].tx_off = emulate;
        snprintf(s[k++].dev, sizeof s[k].dev, "eth0");
        snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
        s[k].tx_off = emulate;
        snprintf(s[k++].dev, sizeof s[k].dev, "p%d", r);
        for (int side = 0; side < 2 && emulate; side++) {
            snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
            s[k].tx_off = 1;
            snprintf(s[k++].dev, sizeof s[k].dev, "%c%d", side == 0 ? 'd' : 'q', r);
        }
    }
    if (shaped) {
        const int mesh = t->model == TOPOLOGY_MESH;
        const delay_mechanism *m = delay_of(t);
        egress_child_fn *child = m != NULL ? m->egress_child : NULL;
        for (int r = 0; r < P; r++, k++) { /* uplinks */
            topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
            s[k].is_tc = 1;
            if (mesh)
                htb_shape_dev_mesh(&s[k], "eth0", t->profile, topology_rank_scale(t, r), r, P, "dst", child);
            else
                htb_shape_dev(&s[k], "eth0", t->profile, topology_rank_scale(t, r), child);
        }
        snprintf(s[k].ns, sizeof s[k].ns, "%s", sw); /* downlinks */
        s[k].is_tc = 1;
        for (int r = 0; r < P; r++) {
            char dev[16];
            snprintf(dev, sizeof dev, "p%d", r);
            if (mesh)
                htb_shape_dev_mesh(&s[k], dev, t->profile, topology_rank_scale(t, r), r, P, "src", NULL);
            else
                htb_shape_dev(&s[k], dev, t->profile, topology_rank_scale(t, r), NULL);
        }
        k++;
    }
    *out = s;
    *count = k;
    return WANCP_OK;
}

/* The checked plan: the steps topology_up runs and topology_script prints. */
static int plan(const topology *t, step **s, int *n, char *err, size_t errlen)
{
    int rc = check(t, err, errlen);
    if (rc == WANCP_OK && build_steps(t, s, n) != WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
    return rc;
}

int topology_script(const topology *t, char *buf, size_t len, char *err, size_t errlen)
{
    step *s;
    int n, rc = plan(t, &s, &n, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    size_t used = 0;
    buf[0] = 0;
    const delay_mechanism *m = delay_of(t);
    if (m != NULL)
        used += (size_t)snprintf(buf + used, len - used, "# delay, jitter and loss: %s\n", m->says);
    for (int i = 0; i < n && used < len; i++)
        used += step_print(&s[i], buf + used, len - used);
    free(s);
    rate_plan plan = {0};
    if (t->profile != NULL && rate_plan_of(t->profile, &plan, err, errlen) == WANCP_OK && plan.n > 1) {
        used +=
            (size_t)snprintf(buf + used, len - used,
                             "# the rate changes over time%s: wancp shape up plays it through one `tc -n NS -batch -`"
                             " per namespace, changing every class above to\n",
                             plan.period_ns ? " (a trace, repeating)" : "");
        for (size_t i = 0; i < plan.n && used < len; i++) {
            char rate[32], at[32];
            shaper_format_rate(plan.steps[i].rate_bps, rate, sizeof rate);
            if (plan.steps[i].at_ns == 0)
                snprintf(at, sizeof at, "0s");
            else
                shaper_format_time(plan.steps[i].at_ns, at, sizeof at);
            used += (size_t)snprintf(buf + used, len - used, "#   %s at %s\n", rate, at);
        }
    }
    rate_plan_free(&plan);
    if (m != NULL && m->script != NULL && used < len)
        used += m->script(t, buf + used, len - used);
    if (used >= len)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "script longer than %zu bytes", len);
    return WANCP_OK;
}

int topology_up(const topology *t, char *err, size_t errlen)
{
    step *s;
    int n, rc = plan(t, &s, &n, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    for (int i = 0; i < n && rc == WANCP_OK; i++)
        rc = run_batch(&s[i], err, errlen);
    free(s);
    const delay_mechanism *m = delay_of(t);
    if (rc == WANCP_OK && m != NULL && m->start != NULL)
        rc = m->start(t, err, errlen);
    if (rc == WANCP_OK && t->profile != NULL)
        rc = rate_player_start(t, err, errlen);
    if (rc != WANCP_OK) {
        int removed;
        char ignore[WANCP_ERRLEN];
        topology_down(t->prefix, &removed, ignore, sizeof ignore);
    }
    return rc;
}
