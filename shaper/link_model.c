#include "link_model.h"

#include "../core/base/status.h"
#include "rate_player.h"
#include "relay.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct message {
    int src, dst, cls;
    double bytes, left; /* left: bytes still to leave the source */
    double post_at;
    double sent, arrival; /* INFINITY until known */
    int next;             /* the next message queued on the same connection, -1 */
    bool queued;          /* on its connection's queue (posted) */
} message;

/* One connection (src, dst, class): a FIFO whose head message is being sent. */
typedef struct connection {
    int head, tail;      /* -1 when empty */
    double last_arrival; /* arrivals keep the connection's order */
    double rate;         /* bytes/s the head message gets now */
    int frozen_round;    /* water-filling scratch: 0 while rising, else the round it stopped */
} connection;

struct link_net {
    link_model_config cfg;
    rate_plan plan;
    double now;
    double base_bps; /* the plan's rate now (or the unshaped rate) */
    double delay_s, jitter_s, mathis_bytes_s;
    int distribution;
    message *msgs;
    int nmsgs, cap;
    connection *conns;
    int *active; /* connections with a queued message */
    int nactive;
    int *free_ids; /* released message slots */
    int nfree, cap_free;
    int *future; /* messages posted for a later time */
    int nfuture, cap_future;
    int nres;
    double ack_wire;            /* wire bytes the way back per payload byte (0: no ACKs modelled) */
    double *res_cap, *res_load; /* water-filling scratch per link, in wire bytes/s */
    double *res_weight;         /* wire bytes per payload byte of the rising connections */
    double burst;               /* htb's bucket per link in wire bytes (0: none modelled) */
    double *tokens;             /* per link */
    bool *bucket_open;          /* per link: passing bytes at the unshaped rate on its tokens */
    bool dirty;                 /* rates need recomputing */
    double bytes[LINK_MAX_NODES][LINK_MAX_CLASSES];
    uint64_t rng;
};

static int conn_index(const link_net *n, int src, int dst, int cls)
{
    return (src * n->cfg.nodes + dst) * LINK_MAX_CLASSES + cls;
}

static double uniform01(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull; /* splitmix64 */
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
}

static double node_bytes_s(const link_net *n, int node)
{
    const double scale = n->cfg.node_scale != NULL ? n->cfg.node_scale[node] : 1.0;
    return n->base_bps * scale * n->cfg.eta / 8.0;
}

double link_net_payload_bps(const link_net *n, int node) { return node_bytes_s(n, node) * 8.0; }

double link_net_delay_s(const link_net *n) { return n->delay_s; }

double link_net_duplex_payload_bps(const link_net *n, int node)
{
    return node_bytes_s(n, node) * 8.0 / (1.0 + n->cfg.eta * n->ack_wire);
}

static double rate_at(const link_net *n, double t)
{
    if (n->cfg.profile == NULL)
        return n->cfg.unshaped_bps;
    return (double)rate_plan_at(&n->plan, (uint64_t)llround(fmax(t, 0.0) * 1e9));
}

int link_net_init(link_net **out, const link_model_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->nodes < 1 || cfg->nodes > LINK_MAX_NODES)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "link model: %d nodes (1 to %d)", cfg->nodes, LINK_MAX_NODES);
    if (cfg->topology != TOPOLOGY_UPLINK && cfg->topology != TOPOLOGY_MESH)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "link model: unknown topology %d", cfg->topology);
    for (int i = 0; cfg->node_scale != NULL && i < cfg->nodes; i++)
        if (!(cfg->node_scale[i] > 0) || !isfinite(cfg->node_scale[i]))
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "link model: node %d's rate factor %g is not positive", i,
                              cfg->node_scale[i]);
    link_net *n = calloc(1, sizeof *n);
    if (n == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "link model: out of memory");
    n->cfg = *cfg;
    if (n->cfg.unshaped_bps <= 0)
        n->cfg.unshaped_bps = LINK_UNSHAPED_BPS;
    if (n->cfg.eta <= 0) {
        n->cfg.eta = LINK_ETA_TCP;
        n->ack_wire = LINK_ACK_WIRE_PER_BYTE;
    }
    n->rng = cfg->seed;
    n->mathis_bytes_s = INFINITY;
    if (cfg->profile != NULL) {
        int rc = rate_plan_of(cfg->profile, &n->plan, err, errlen);
        if (rc != WANCP_OK) {
            free(n);
            return rc;
        }
        n->delay_s = (double)cfg->profile->delay_ns * 1e-9;
        n->jitter_s = (double)cfg->profile->jitter_ns * 1e-9;
        n->distribution = cfg->profile->distribution;
        n->mathis_bytes_s = link_mathis_bps(LINK_MSS_BYTES, 2 * n->delay_s, cfg->profile->loss_ppm * 1e-6) / 8.0;
    }
    const int P = cfg->nodes, nconns = P * P * LINK_MAX_CLASSES;
    n->nres = cfg->topology == TOPOLOGY_UPLINK ? 2 * P : P * P;
    n->conns = calloc((size_t)nconns, sizeof *n->conns);
    n->active = calloc((size_t)nconns, sizeof *n->active);
    n->res_cap = calloc((size_t)n->nres, sizeof *n->res_cap);
    n->res_load = calloc((size_t)n->nres, sizeof *n->res_load);
    n->res_weight = calloc((size_t)n->nres, sizeof *n->res_weight);
    n->tokens = calloc((size_t)n->nres, sizeof *n->tokens);
    n->bucket_open = calloc((size_t)n->nres, sizeof *n->bucket_open);
    if (n->conns == NULL || n->active == NULL || n->res_cap == NULL || n->res_load == NULL || n->res_weight == NULL ||
        n->tokens == NULL || n->bucket_open == NULL) {
        link_net_free(n);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "link model: out of memory");
    }
    for (int c = 0; c < nconns; c++)
        n->conns[c] = (connection){.head = -1, .tail = -1, .last_arrival = -INFINITY};
    if (n->ack_wire > 0 && cfg->profile != NULL && !cfg->no_burst) /* links start idle: buckets full */
        n->burst = LINK_BURST_BYTES;
    for (int r = 0; r < n->nres; r++)
        n->tokens[r] = n->burst;
    n->base_bps = rate_at(n, 0);
    *out = n;
    return WANCP_OK;
}

void link_net_free(link_net *n)
{
    if (n == NULL)
        return;
    if (n->cfg.profile != NULL)
        rate_plan_free(&n->plan);
    free(n->msgs);
    free(n->free_ids);
    free(n->conns);
    free(n->active);
    free(n->future);
    free(n->res_cap);
    free(n->res_load);
    free(n->res_weight);
    free(n->tokens);
    free(n->bucket_open);
    free(n);
}

/* The links connection c loads and by how much: its source's uplink and destination's
 * downlink (mesh: its pair's link) by 1 / eta wire bytes per payload byte, and under TCP's
 * framing the links of the way back by its ACKs. Returns how many (1 to 4). */
static int links_of(const link_net *n, int c, int res[4], double wire[4])
{
    const int P = n->cfg.nodes, pair = c / LINK_MAX_CLASSES, src = pair / P, dst = pair % P;
    int k = 0;
    if (n->cfg.topology == TOPOLOGY_MESH) {
        res[k] = src * P + dst, wire[k++] = 1.0 / n->cfg.eta;
        if (n->ack_wire > 0)
            res[k] = dst * P + src, wire[k++] = n->ack_wire;
        return k;
    }
    res[k] = src, wire[k++] = 1.0 / n->cfg.eta;
    res[k] = P + dst, wire[k++] = 1.0 / n->cfg.eta;
    if (n->ack_wire > 0) {
        res[k] = dst, wire[k++] = n->ack_wire;
        res[k] = P + src, wire[k++] = n->ack_wire;
    }
    return k;
}

/* A link's rate in wire bytes/s: its node's (mesh: the slower node's) rate x node scale. */
static double link_capacity(const link_net *n, int r)
{
    const int P = n->cfg.nodes;
    if (n->cfg.topology == TOPOLOGY_MESH)
        return fmin(node_bytes_s(n, r / P), node_bytes_s(n, r % P)) / n->cfg.eta;
    return node_bytes_s(n, r < P ? r : r - P) / n->cfg.eta;
}

/* Max-min fair shares by water-filling: every unfrozen connection's payload rate rises at
 * the same pace until a link it loads is full (or the Mathis cap binds); those freeze;
 * repeat. */
static void share_links(link_net *n)
{
    for (int r = 0; r < n->nres; r++) {
        /* a bucket opens once it holds a frame and stays open until it is empty */
        n->bucket_open[r] = n->burst > 0 && (n->bucket_open[r] ? n->tokens[r] > 0 : n->tokens[r] >= 1514.0);
        n->res_cap[r] = n->bucket_open[r] ? fmax(link_capacity(n, r), n->cfg.unshaped_bps / 8.0) : link_capacity(n, r);
        n->res_load[r] = 0;
        n->res_weight[r] = 0;
    }
    for (int i = 0; i < n->nactive; i++) {
        int res[4];
        double wire[4];
        const int k = links_of(n, n->active[i], res, wire);
        n->conns[n->active[i]].frozen_round = 0;
        for (int j = 0; j < k; j++)
            n->res_weight[res[j]] += wire[j];
    }
    int unfrozen = n->nactive;
    for (int round = 1; unfrozen > 0; round++) {
        double level = n->mathis_bytes_s;
        for (int r = 0; r < n->nres; r++)
            if (n->res_weight[r] > 1e-9) /* rounding leaves crumbs on links no rising connection loads */
                level = fmin(level, (n->res_cap[r] - n->res_load[r]) / n->res_weight[r]);
        level = fmax(level, 0.0);
        int froze = 0;
        for (int i = 0; i < n->nactive; i++) {
            connection *cn = &n->conns[n->active[i]];
            if (cn->frozen_round != 0)
                continue;
            int res[4];
            double wire[4];
            const int k = links_of(n, n->active[i], res, wire);
            bool bound = n->mathis_bytes_s <= level * (1 + 1e-12);
            for (int j = 0; j < k && !bound; j++)
                bound = (n->res_cap[res[j]] - n->res_load[res[j]]) / n->res_weight[res[j]] <= level * (1 + 1e-12);
            if (!bound)
                continue;
            cn->frozen_round = round;
            cn->rate = level;
            froze++;
        }
        /* Loads change only after every connection at this level is found. */
        for (int i = 0; i < n->nactive; i++) {
            connection *cn = &n->conns[n->active[i]];
            if (cn->frozen_round != round)
                continue;
            int res[4];
            double wire[4];
            const int k = links_of(n, n->active[i], res, wire);
            for (int j = 0; j < k; j++) {
                n->res_load[res[j]] += level * wire[j];
                n->res_weight[res[j]] = fmax(n->res_weight[res[j]] - wire[j], 0.0);
            }
        }
        if (froze == 0) /* cannot happen with a finite level; stops a loop on NaN */
            break;
        unfrozen -= froze;
    }
    n->dirty = false;
}

/* Puts message id on its connection's queue (at the model's current time). */
static void enqueue(link_net *n, int id)
{
    message *m = &n->msgs[id];
    connection *cn = &n->conns[conn_index(n, m->src, m->dst, m->cls)];
    m->queued = true;
    if (cn->tail >= 0) {
        n->msgs[cn->tail].next = id;
    } else {
        cn->head = id;
        n->active[n->nactive++] = conn_index(n, m->src, m->dst, m->cls);
    }
    cn->tail = id;
    n->dirty = true;
}

int link_net_send(link_net *n, int src, int dst, int cls, double bytes, double at)
{
    if (src < 0 || src >= n->cfg.nodes || dst < 0 || dst >= n->cfg.nodes || src == dst || cls < 0 ||
        cls >= LINK_MAX_CLASSES || !(bytes >= 0))
        return WANCP_ERR_INPUT;
    if (n->nfree == 0 && n->nmsgs == n->cap) {
        int cap = n->cap > 0 ? 2 * n->cap : 256;
        message *m = realloc(n->msgs, (size_t)cap * sizeof *m);
        if (m == NULL)
            return WANCP_ERR_NOMEM;
        n->msgs = m;
        n->cap = cap;
    }
    const int id = n->nfree > 0 ? n->free_ids[--n->nfree] : n->nmsgs++;
    n->msgs[id] = (message){.src = src,
                            .dst = dst,
                            .cls = cls,
                            .bytes = bytes,
                            .left = bytes,
                            .post_at = at,
                            .sent = INFINITY,
                            .arrival = INFINITY,
                            .next = -1};
    n->bytes[src][cls] += bytes;
    if (at <= n->now) {
        enqueue(n, id);
        return id;
    }
    if (n->nfuture == n->cap_future) {
        int cap = n->cap_future > 0 ? 2 * n->cap_future : 64;
        int *f = realloc(n->future, (size_t)cap * sizeof *f);
        if (f == NULL)
            return WANCP_ERR_NOMEM;
        n->future = f;
        n->cap_future = cap;
    }
    n->future[n->nfuture++] = id;
    return id;
}

double link_net_next_event(const link_net *n)
{
    link_net *mut = (link_net *)n; /* rates are a cache of the state: recompute lazily */
    if (mut->dirty)
        share_links(mut);
    double t = INFINITY;
    for (int i = 0; i < n->nactive; i++) {
        const connection *cn = &n->conns[n->active[i]];
        if (cn->rate > 0)
            t = fmin(t, n->now + n->msgs[cn->head].left / cn->rate);
    }
    for (int i = 0; i < n->nfuture; i++)
        t = fmin(t, n->msgs[n->future[i]].post_at);
    for (int r = 0; r < n->nres && n->burst > 0; r++) /* an open bucket running dry */
        if (n->bucket_open[r] && n->res_load[r] > link_capacity(n, r))
            t = fmin(t, n->now + n->tokens[r] / (n->res_load[r] - link_capacity(n, r)));
    if (n->cfg.profile != NULL && (n->nactive > 0 || n->nfuture > 0)) {
        uint64_t next = rate_plan_next_change(&n->plan, (uint64_t)llround(n->now * 1e9));
        if (next != UINT64_MAX)
            t = fmin(t, (double)next * 1e-9);
    }
    return t;
}

/* The jitter a message of bytes gets: the relay delays every frame by its own sample but
 * keeps their order, so the last frame leaves at the latest of (its frame's send + its
 * sample) over the frames before it. Frames sent more than a few standard deviations
 * before the last rarely set that maximum; the window counts those within 4 jitters (at
 * most 4096 frames), each frame earlier by one frame time (the connection's rate). */
static double message_jitter(link_net *n, double bytes, double rate_bytes_s)
{
    const double frames = fmax(1.0, ceil(bytes / LINK_MSS_BYTES));
    const double frame_s = rate_bytes_s > 0 ? LINK_MSS_BYTES / rate_bytes_s : 0;
    const double reach = frame_s > 0 ? ceil(4.0 * n->jitter_s / frame_s) + 1 : frames;
    const int window = (int)fmin(fmin(frames, reach), 4096.0);
    double latest = -INFINITY;
    for (int j = 0; j < window; j++) {
        double u1 = uniform01(&n->rng), u2 = uniform01(&n->rng), u3 = uniform01(&n->rng);
        latest = fmax(latest, relay_jitter_sample(n->distribution, n->jitter_s, u1, u2, u3) - j * frame_s);
    }
    return latest;
}

/* When the message whose last byte left at t arrives: delay plus its jitter, never before
 * the previous message of its connection. */
static double arrival_of(link_net *n, connection *cn, const message *m, double t)
{
    double delay = n->delay_s;
    if (n->jitter_s > 0)
        delay += message_jitter(n, m->bytes, cn->rate);
    double at = fmax(t + fmax(delay, 0.0), cn->last_arrival);
    cn->last_arrival = at;
    return at;
}

int link_net_advance(link_net *n, double t, int *done, int max)
{
    if (n->dirty)
        share_links(n);
    const double dt = t - n->now;
    int ndone = 0;
    for (int r = 0; r < n->nres && n->burst > 0; r++) {
        /* the bucket gains what the link's rate exceeds its load by, loses the excess */
        const double rate = link_capacity(n, r), net = rate - n->res_load[r];
        const bool dry = net < 0 && n->now + n->tokens[r] / -net <= t + 1e-12 * fmax(1.0, t);
        n->tokens[r] = dry ? 0 : fmin(n->burst, fmax(0.0, n->tokens[r] + net * dt));
        if (dry && n->bucket_open[r])
            n->dirty = true;
    }
    for (int i = 0; i < n->nactive; i++) {
        const int c = n->active[i];
        connection *cn = &n->conns[c];
        message *m = &n->msgs[cn->head];
        /* Done when its last byte was due by t: judged by time as well as by bytes, since
         * t - now loses digits late in a long run and a few bytes could be left forever. */
        const double due = cn->rate > 0 ? n->now + m->left / cn->rate : INFINITY;
        m->left -= cn->rate * dt;
        if (due > t + 1e-12 * fmax(1.0, t) && m->left > 1e-9 * m->bytes + 1e-6)
            continue;
        const int id = cn->head;
        m->left = 0;
        m->sent = t;
        m->arrival = arrival_of(n, cn, m, t);
        if (ndone < max)
            done[ndone] = id;
        ndone++;
        cn->head = m->next;
        if (cn->head < 0) {
            cn->tail = -1;
            n->active[i--] = n->active[--n->nactive];
        }
        n->dirty = true;
    }
    n->now = t;
    for (int i = 0; i < n->nfuture; i++)
        if (n->msgs[n->future[i]].post_at <= t) {
            enqueue(n, n->future[i]);
            n->future[i--] = n->future[--n->nfuture];
        }
    const double rate = rate_at(n, t);
    if (rate != n->base_bps) {
        n->base_bps = rate;
        n->dirty = true;
    }
    return ndone;
}

void link_net_release(link_net *n, int id)
{
    if (n->nfree == n->cap_free) {
        int cap = n->cap_free > 0 ? 2 * n->cap_free : 256;
        int *f = realloc(n->free_ids, (size_t)cap * sizeof *f);
        if (f == NULL)
            return; /* the slot stays used: only memory is lost */
        n->free_ids = f;
        n->cap_free = cap;
    }
    n->free_ids[n->nfree++] = id;
}

double link_net_sent_at(const link_net *n, int id) { return n->msgs[id].sent; }

double link_net_arrival(const link_net *n, int id) { return n->msgs[id].arrival; }

double link_net_bytes(const link_net *n, int src, int cls) { return n->bytes[src][cls]; }

double link_net_throughput(const link_net *n)
{
    link_net *mut = (link_net *)n; /* rates are a cache of the state: recompute lazily */
    if (mut->dirty)
        share_links(mut);
    double sum = 0;
    for (int i = 0; i < n->nactive; i++)
        sum += n->conns[n->active[i]].rate;
    return sum;
}

/* ---- closed forms ---- */

double link_ring_allgather_s(int p, double n_bytes, double alpha_s, double beta_s)
{
    return (p - 1) * alpha_s + (double)(p - 1) / p * n_bytes * beta_s;
}

double link_ring_reduce_scatter_s(int p, double n_bytes, double alpha_s, double beta_s)
{
    return link_ring_allgather_s(p, n_bytes, alpha_s, beta_s);
}

double link_ring_allreduce_s(int p, double n_bytes, double alpha_s, double beta_s)
{
    return 2 * (p - 1) * alpha_s + 2.0 * (p - 1) / p * n_bytes * beta_s;
}

double link_busbw_factor(const char *collective, int p)
{
    const double f = (double)(p - 1) / p;
    return strcmp(collective, "all_reduce") == 0 ? 2 * f : f;
}

double link_mathis_bps(double mss_bytes, double rtt_s, double loss)
{
    if (!(loss > 0) || !(rtt_s > 0))
        return INFINITY;
    return mss_bytes * 8.0 / rtt_s * 1.22 / sqrt(loss);
}
