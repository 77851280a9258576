#include "sim_step.h"

#include "../../core/base/status.h"
#include "../../shaper/topology.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- programs: one per rank and kind of step, over the step's messages ---- */

enum op { OP_COMPUTE, OP_POST, OP_WAIT_ARRIVAL, OP_WAIT_SENT, OP_START, OP_END };

typedef struct instr {
    int op;
    int msg;        /* index into the step's messages */
    double seconds; /* OP_COMPUTE */
} instr;

/* A message of a step; deps gate its sending (ring collectives: the round before). */
typedef struct tmsg {
    int src, dst, cls;
    double bytes;
    int dep_arrival; /* a message that must have arrived at src first, or -1 */
    int dep_sent;    /* a message src must have sent first, or -1 */
} tmsg;

typedef struct program {
    instr *code;
    int len, cap;
} program;

typedef struct step_kind {
    bool built;
    program prog[LINK_MAX_NODES];
    sim_work work[LINK_MAX_NODES]; /* what each rank computes in the step */
    double moved[LINK_MAX_NODES];  /* payload bytes each rank sends and receives in the step */
    tmsg *msgs;
    int nmsgs, cap;
} step_kind;

enum { KIND_WARM = 0, KIND_COMPRESSED = 1, KIND_SYNC = 2, NKINDS = 4 };

typedef struct builder {
    const sim_setup *s;
    step_kind *k;
    bool compressed, sync_step;
    int failed;
} builder;

static void emit(builder *b, int rank, int op, int msg, double seconds)
{
    program *p = &b->k->prog[rank];
    if (op == OP_COMPUTE && p->len > 0 && p->code[p->len - 1].op == OP_COMPUTE) {
        p->code[p->len - 1].seconds += seconds; /* one stretch of compute */
        return;
    }
    if (p->len == p->cap) {
        int cap = p->cap > 0 ? 2 * p->cap : 256;
        instr *c = realloc(p->code, (size_t)cap * sizeof *c);
        if (c == NULL) {
            b->failed = 1;
            return;
        }
        p->code = c;
        p->cap = cap;
    }
    p->code[p->len++] = (instr){.op = op, .msg = msg, .seconds = seconds};
}

static void compute(builder *b, int rank, sim_work w, double times)
{
    if (times <= 0)
        return;
    emit(b, rank, OP_COMPUTE, -1, sim_work_seconds(&w, &b->s->hw) * times);
    sim_work_add(&b->k->work[rank], &w, times);
}

/* The rank's own time to pack or unpack, copy and hand over bytes (the hardware's byte cost). */
static void move_bytes(builder *b, int rank, double bytes)
{
    b->k->moved[rank] += bytes;
    if (b->s->hw.byte_cost_s > 0)
        emit(b, rank, OP_COMPUTE, -1, bytes * b->s->hw.byte_cost_s);
}

static int add_msg(builder *b, int src, int dst, int cls, double bytes, int dep_arrival, int dep_sent)
{
    step_kind *k = b->k;
    if (k->nmsgs == k->cap) {
        int cap = k->cap > 0 ? 2 * k->cap : 256;
        tmsg *m = realloc(k->msgs, (size_t)cap * sizeof *m);
        if (m == NULL) {
            b->failed = 1;
            return 0;
        }
        k->msgs = m;
        k->cap = cap;
    }
    k->msgs[k->nmsgs] = (tmsg){src, dst, cls, bytes, dep_arrival, dep_sent};
    return k->nmsgs++;
}

/* Zig-zag: rank r owns chunks r and 2P-1-r; chunk j is owned by j or 2P-1-j. */
static int owner(int P, int j) { return j < P ? j : 2 * P - 1 - j; }

static int late_chunk(int P, int r) { return 2 * P - 1 - r; }

/* Rank r needs chunk j's K/V when one of its chunks comes after j. */
static bool needs(int P, int r, int j) { return j < late_chunk(P, r); }

/* Whether chunk j travels from its owner to rank r (forward) and r's gradient of it back. */
static bool exchanged(const sim_setup *s, int r, int j)
{
    const int P = s->shape.ranks;
    return owner(P, j) != r && (s->allgather || needs(P, r, j));
}

/* How many of rank r's chunks come after chunk j. */
static int later_own(int P, int r, int j) { return (r > j) + (late_chunk(P, r) > j); }

static bool layer_compressed(const builder *b, int l)
{
    return b->compressed && (l + 1 < b->s->shape.layers || b->s->compress_last);
}

/* A ring all-reduce of bytes on every rank, progressed by the communication thread: round
 * k's send follows round k-1's receive and send. Posts everything now; last[r] is what
 * rank r waits for (its last receive), last_sent[r] its last send. Each rank also pays the
 * hardware's byte cost for what it sends and receives (2(P-1) rounds of bytes/P each way),
 * alongside the rounds: on a host the ring's copies and TCP work take the rank's cores as
 * K/V's do (a Mode S step all-reduces every gradient: 20 MB a rank for the quickstart's
 * model, 46 ms of its 343 ms step measured), while on slow links the wire dominates. */
static void ring_allreduce(builder *b, int cls, double bytes, int *last, int *last_sent)
{
    const int P = b->s->shape.ranks, rounds = 2 * (P - 1);
    int prev[LINK_MAX_NODES], cur[LINK_MAX_NODES];
    for (int k = 0; k < rounds; k++) {
        for (int r = 0; r < P; r++)
            cur[r] =
                add_msg(b, r, (r + 1) % P, cls, bytes / P, k > 0 ? prev[(r + P - 1) % P] : -1, k > 0 ? prev[r] : -1);
        for (int r = 0; r < P; r++) {
            emit(b, r, OP_POST, cur[r], 0);
            prev[r] = cur[r];
        }
    }
    for (int r = 0; r < P; r++) {
        last[r] = rounds > 0 ? prev[(r + P - 1) % P] : -1;
        last_sent[r] = rounds > 0 ? prev[r] : -1;
        move_bytes(b, r, 2.0 * rounds * bytes / P);
    }
}

static void wait_ring(builder *b, const int *last, const int *last_sent)
{
    for (int r = 0; r < b->s->shape.ranks; r++)
        if (last[r] >= 0) {
            emit(b, r, OP_WAIT_ARRIVAL, last[r], 0);
            emit(b, r, OP_WAIT_SENT, last_sent[r], 0);
        }
}

static void forward_layer(builder *b, int l)
{
    const sim_setup *s = b->s;
    const sim_shape *sh = &s->shape;
    const int P = sh->ranks, nchunks = 2 * P;
    const bool comp = layer_compressed(b, l);
    const double bytes = sim_message_bytes(sh, comp, s->wire_bytes);
    int fwd[2 * LINK_MAX_NODES][LINK_MAX_NODES];
    for (int r = 0; r < P; r++)
        compute(b, r, sim_cost_pre_attention(sh, &s->hw, false), 1);
    for (int seq = 0; seq < sh->batch; seq++) {
        for (int j = 0; j < nchunks; j++)
            for (int r = 0; r < P; r++)
                fwd[j][r] = exchanged(s, r, j) ? add_msg(b, owner(P, j), r, COMM_KV_FORWARD, bytes, -1, -1) : -1;
        for (int r = 0; r < P; r++) {
            const int own[2] = {r, late_chunk(P, r)};
            for (int c = 0; c < 2; c++) {
                if (comp)
                    compute(b, r, sim_cost_encode(sh), 1);
                for (int d = 0; d < P; d++)
                    if (fwd[own[c]][d] >= 0) {
                        move_bytes(b, r, bytes);
                        emit(b, r, OP_POST, fwd[own[c]][d], 0);
                    }
            }
            for (int j = 0; s->no_overlap && j < nchunks; j++)
                if (fwd[j][r] >= 0)
                    emit(b, r, OP_WAIT_ARRIVAL, fwd[j][r], 0);
            compute(b, r, sim_cost_block(sh, true, false), 2);
            for (int j = 0; j < nchunks; j++) {
                if (!needs(P, r, j))
                    continue;
                if (fwd[j][r] >= 0) {
                    emit(b, r, OP_WAIT_ARRIVAL, fwd[j][r], 0);
                    move_bytes(b, r, bytes);
                }
                compute(b, r, sim_cost_view(sh, &s->hw, comp, owner(P, j) != r), 1);
                compute(b, r, sim_cost_block(sh, false, false), later_own(P, r, j));
            }
            for (int c = 0; c < 2; c++)
                for (int d = 0; d < P; d++)
                    if (fwd[own[c]][d] >= 0)
                        emit(b, r, OP_WAIT_SENT, fwd[own[c]][d], 0);
        }
    }
    for (int r = 0; r < P; r++)
        compute(b, r, sim_cost_post_attention(sh, &s->hw, false), 1);
}

static void backward_layer(builder *b, int l)
{
    const sim_setup *s = b->s;
    const sim_shape *sh = &s->shape;
    const int P = sh->ranks, nchunks = 2 * P;
    const bool comp = layer_compressed(b, l);
    const double bytes = sim_message_bytes(sh, comp, s->wire_bytes);
    int bwd[2 * LINK_MAX_NODES][LINK_MAX_NODES];
    for (int r = 0; r < P; r++)
        compute(b, r, sim_cost_post_attention(sh, &s->hw, true), 1);
    for (int seq = 0; seq < sh->batch; seq++) {
        for (int j = 0; j < nchunks; j++)
            for (int r = 0; r < P; r++)
                bwd[j][r] = exchanged(s, r, j) ? add_msg(b, r, owner(P, j), COMM_KV_BACKWARD, bytes, -1, -1) : -1;
        for (int r = 0; r < P; r++) {
            const int own[2] = {r, late_chunk(P, r)};
            for (int j = 0; j < nchunks; j++) {
                if (needs(P, r, j)) {
                    compute(b, r, sim_cost_view(sh, &s->hw, comp, false), 1);
                    compute(b, r, sim_cost_block(sh, false, true), later_own(P, r, j));
                    if (comp)
                        compute(b, r, sim_cost_consumer_grad(sh), 1);
                }
                if (bwd[j][r] >= 0 && !s->no_overlap) {
                    move_bytes(b, r, bytes);
                    emit(b, r, OP_POST, bwd[j][r], 0);
                }
            }
            compute(b, r, sim_cost_block(sh, true, true), 2);
            for (int j = 0; j < nchunks && s->no_overlap; j++) /* every partial gradient at once, after the blocks */
                if (bwd[j][r] >= 0) {
                    move_bytes(b, r, bytes);
                    emit(b, r, OP_POST, bwd[j][r], 0);
                }
            for (int c = 0; c < 2; c++)
                for (int src = 0; src < P; src++)
                    if (bwd[own[c]][src] >= 0) {
                        emit(b, r, OP_WAIT_ARRIVAL, bwd[own[c]][src], 0);
                        move_bytes(b, r, bytes);
                    }
            for (int j = 0; j < nchunks; j++)
                if (bwd[j][r] >= 0)
                    emit(b, r, OP_WAIT_SENT, bwd[j][r], 0);
            if (comp)
                compute(b, r, sim_cost_owner_finish(sh), 2);
        }
    }
    for (int r = 0; r < P; r++)
        compute(b, r, sim_cost_pre_attention(sh, &s->hw, true), 1);
}

static int build_kind(const sim_setup *s, step_kind *k, int kind, char *err, size_t errlen)
{
    builder b = {.s = s, .k = k, .compressed = (kind & KIND_COMPRESSED) != 0, .sync_step = (kind & KIND_SYNC) != 0};
    const sim_shape *sh = &s->shape;
    const int P = sh->ranks;
    const double params = sim_trainable_params(sh), sync_bytes = params * s->hw.param_bytes;
    sim_work embed = {.amount[SIM_MEMORY] = 2.0 * sh->batch * 2 * sh->chunk * sh->dim * s->hw.act_bytes, .ops = 1};
    for (int r = 1; r < P; r++) {
        int go = add_msg(&b, 0, r, COMM_CONTROL, 1, -1, -1);
        emit(&b, 0, OP_POST, go, 0);
        emit(&b, r, OP_WAIT_ARRIVAL, go, 0);
    }
    emit(&b, 0, OP_START, -1, 0);
    for (int r = 0; r < P; r++)
        compute(&b, r, embed, 1);
    for (int l = 0; l < sh->layers; l++)
        forward_layer(&b, l);
    for (int r = 0; r < P; r++) {
        compute(&b, r, sim_cost_head(sh, &s->hw, false), 1);
        compute(&b, r, sim_cost_head(sh, &s->hw, true), 1);
    }
    int last[LINK_MAX_NODES], last_sent[LINK_MAX_NODES];
    int blast[64][LINK_MAX_NODES], bsent[64][LINK_MAX_NODES]; /* buckets: one per layer (at most 64) */
    const bool buckets = s->sync == 'S' && s->sync_overlap && P > 1 && sh->layers <= 64;
    const double layer_params = (params - (double)sh->vocab * sh->dim * (sh->tied ? 1 : 2) - sh->dim) / sh->layers;
    for (int l = sh->layers - 1; l >= 0; l--) {
        backward_layer(&b, l);
        if (buckets)
            ring_allreduce(&b, COMM_WEIGHT_SYNC, layer_params * s->hw.param_bytes, blast[l], bsent[l]);
    }
    for (int r = 0; r < P; r++)
        compute(&b, r, embed, 1);
    if (P > 1) { /* the step's loss: one float, ring all-reduced (2(P-1) hops, each a delay) */
        ring_allreduce(&b, COMM_CONTROL, 4.0 * P, last, last_sent);
        wait_ring(&b, last, last_sent);
    }
    if (s->sync == 'S' && P > 1) {
        if (buckets) {
            ring_allreduce(&b, COMM_WEIGHT_SYNC, (params - layer_params * sh->layers) * s->hw.param_bytes, last,
                           last_sent);
            for (int l = 0; l < sh->layers; l++)
                wait_ring(&b, blast[l], bsent[l]);
        } else {
            ring_allreduce(&b, COMM_WEIGHT_SYNC, sync_bytes, last, last_sent);
        }
        wait_ring(&b, last, last_sent);
    }
    for (int r = 0; r < P; r++)
        compute(&b, r, sim_cost_optimizer(sh), 1);
    if (b.sync_step && P > 1) {
        ring_allreduce(&b, COMM_WEIGHT_SYNC, sync_bytes, last, last_sent);
        wait_ring(&b, last, last_sent);
        sim_work scale = {.amount[SIM_MEMORY] = 8 * params, .ops = 1};
        for (int r = 0; r < P; r++)
            compute(&b, r, scale, 1);
    }
    for (int r = 0; r < P; r++)
        emit(&b, r, OP_END, -1, 0);
    if (b.failed)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "simulator: out of memory for the step's program");
    k->built = true;
    return WANCP_OK;
}

static void free_kind(step_kind *k)
{
    for (int r = 0; r < LINK_MAX_NODES; r++)
        free(k->prog[r].code);
    free(k->msgs);
    memset(k, 0, sizeof *k);
}

/* ---- the engine ---- */

#define RING 4 /* step instances alive at once: ranks are at most one step apart */

typedef struct instance {
    int step, kind;  /* step -1: free */
    int *net;        /* (n) the link model's id, -1 before it is posted */
    double *release; /* (n) when its sender reached OP_POST, INFINITY before */
    int *pending;    /* released, not yet posted (dependencies unknown) */
    int n, npending, cap;
} instance;

typedef struct rank_state {
    int step, pc;
    double busy_until;     /* computing or waiting for a known time until then */
    bool computing;        /* under processor sharing: in a stretch of compute */
    double work_left;      /* its seconds left at the calibration's pace */
    int compute_step;      /* the step the stretch belongs to */
    int wait_msg, wait_op; /* waiting for a time not yet known: the message, or -1 */
    int wait_cls;
    double wait_since;
    bool finished;
} rank_state;

typedef struct engine {
    const sim_setup *s;
    step_kind *kinds;
    link_net *net;
    instance inst[RING];
    rank_state rk[LINK_MAX_NODES];
    int steps;             /* steps to run */
    int fixed_kind;        /* >= 0: every step of this kind; -1: the run's kinds in order */
    sim_step_stats *stats; /* (steps) rank 0's */
    double start0;         /* rank 0's current step start */
    double t;
    /* Processor sharing of the host's cores (hw.cores > 0): computing ranks and the shaped
     * links' packet work share them; a rank's compute seconds are at the calibration's pace,
     * P ranks computing at once with nothing on the links. */
    bool sharing;
    double rank_cores;  /* the most a rank uses: its BLAS threads */
    double calib_cores; /* what a rank had in the calibration */
    double speed;       /* now: compute seconds done per second */
    double link_cost_s; /* the shaped links' price at this arm's rate */
    int *done_buf;
    int done_cap;
    char *err;
    size_t errlen;
} engine;

static int kind_of_run(const sim_setup *s, int step)
{
    int kind = s->compress && step >= s->warm_steps ? KIND_COMPRESSED : KIND_WARM;
    if (s->sync == 'A' && s->sync_every > 0 && (step + 1) % s->sync_every == 0)
        kind |= KIND_SYNC;
    return kind;
}

static instance *instance_of(engine *e, int step)
{
    instance *in = &e->inst[step % RING];
    if (in->step == step)
        return in;
    /* A new step: the slot's old step is over on every rank; its messages' slots go back. */
    for (int i = 0; in->step >= 0 && i < in->n; i++)
        if (in->net[i] >= 0)
            link_net_release(e->net, in->net[i]);
    const int kind = e->fixed_kind >= 0 ? e->fixed_kind : kind_of_run(e->s, step);
    step_kind *k = &e->kinds[kind];
    if (in->cap < k->nmsgs) {
        int *net = realloc(in->net, (size_t)k->nmsgs * sizeof *net);
        if (net != NULL)
            in->net = net;
        double *rel = net != NULL ? realloc(in->release, (size_t)k->nmsgs * sizeof *rel) : NULL;
        if (rel != NULL)
            in->release = rel;
        int *pend = rel != NULL ? realloc(in->pending, (size_t)k->nmsgs * sizeof *pend) : NULL;
        if (pend == NULL)
            return NULL;
        in->pending = pend;
        in->cap = k->nmsgs;
    }
    in->step = step;
    in->kind = kind;
    in->n = k->nmsgs;
    in->npending = 0;
    for (int i = 0; i < k->nmsgs; i++) {
        in->net[i] = -1;
        in->release[i] = INFINITY;
    }
    return in;
}

/* The time message i of in is known to have arrived (or left, for sent), INFINITY while unknown. */
static double known_time(const engine *e, const instance *in, int i, bool sent)
{
    if (i < 0)
        return -INFINITY;
    if (in->net[i] < 0)
        return INFINITY;
    return sent ? link_net_sent_at(e->net, in->net[i]) : link_net_arrival(e->net, in->net[i]);
}

/* Posts every released message of in whose dependencies are known. */
static int post_ready(engine *e, instance *in)
{
    const step_kind *k = &e->kinds[in->kind];
    for (int p = 0; p < in->npending; p++) {
        const int i = in->pending[p];
        const tmsg *m = &k->msgs[i];
        double at =
            fmax(in->release[i], fmax(known_time(e, in, m->dep_arrival, false), known_time(e, in, m->dep_sent, true)));
        if (!isfinite(at))
            continue;
        int id = link_net_send(e->net, m->src, m->dst, m->cls, m->bytes, fmax(at, e->t));
        if (id < 0)
            return wancp_fail(e->err, e->errlen, WANCP_ERR_NOMEM, "simulator: out of memory for messages");
        in->net[i] = id;
        in->pending[p--] = in->pending[--in->npending];
    }
    return WANCP_OK;
}

/* Runs rank r's program at time e->t as far as it goes. Returns 1 if it moved. */
static int run_rank(engine *e, int r)
{
    rank_state *rs = &e->rk[r];
    int moved = 0;
    while (!rs->finished && rs->busy_until <= e->t && rs->wait_msg < 0) {
        instance *in = instance_of(e, rs->step);
        if (in == NULL)
            return -1;
        const program *p = &e->kinds[in->kind].prog[r];
        const instr *ins = &p->code[rs->pc];
        sim_step_stats *st = r == 0 ? &e->stats[rs->step] : NULL;
        moved = 1;
        switch (ins->op) {
        case OP_COMPUTE:
            if (e->sharing && ins->seconds > 0) { /* timed by share_cores and progress */
                rs->computing = true;
                rs->work_left = ins->seconds;
                rs->compute_step = rs->step;
                rs->busy_until = INFINITY;
                break;
            }
            rs->busy_until = e->t + ins->seconds;
            if (st != NULL)
                st->compute_s += ins->seconds;
            break;
        case OP_POST:
            in->release[ins->msg] = e->t;
            in->pending[in->npending++] = ins->msg;
            if (st != NULL)
                st->bytes[e->kinds[in->kind].msgs[ins->msg].cls] += e->kinds[in->kind].msgs[ins->msg].bytes;
            break;
        case OP_WAIT_ARRIVAL:
        case OP_WAIT_SENT: {
            double at = known_time(e, in, ins->msg, ins->op == OP_WAIT_SENT);
            if (at <= e->t)
                break;
            rs->wait_since = e->t;
            rs->wait_cls = e->kinds[in->kind].msgs[ins->msg].cls;
            if (isfinite(at)) {
                rs->busy_until = at;
                if (st != NULL)
                    st->exposed_s[rs->wait_cls] += at - e->t;
            } else {
                rs->wait_msg = ins->msg;
                rs->wait_op = ins->op;
            }
            break;
        }
        case OP_START: e->start0 = e->t; break;
        case OP_END:
            if (st != NULL)
                st->step_s = e->t - e->start0;
            break;
        }
        if (++rs->pc == p->len) {
            rs->pc = 0;
            if (++rs->step == e->steps)
                rs->finished = true;
        }
        if (ins->op == OP_POST && post_ready(e, in) != WANCP_OK)
            return -1;
    }
    return moved;
}

/* A rank waiting for a time not known before: known now? */
static void wake(engine *e, int r)
{
    rank_state *rs = &e->rk[r];
    if (rs->wait_msg < 0)
        return;
    instance *in = &e->inst[rs->step % RING];
    /* the pc moved past the wait already */
    double at = known_time(e, in, rs->wait_msg, rs->wait_op == OP_WAIT_SENT);
    if (!isfinite(at))
        return;
    rs->busy_until = fmax(at, e->t);
    if (r == 0)
        e->stats[rs->step].exposed_s[rs->wait_cls] += rs->busy_until - rs->wait_since;
    rs->wait_msg = -1;
}

/* The cores' split now: the shaped links' packet work takes link_cost_s per payload byte
 * they move (never all of the cores: at 4 x 1 Gbit/s, CPU-bound, it left 12% of them), the
 * computing ranks share the rest evenly, each up to its threads. Re-times every computing
 * rank from its work left. */
#define MIN_COMPUTE_SHARE 0.1

static void share_cores(engine *e)
{
    const int P = e->s->shape.ranks;
    int n = 0;
    for (int r = 0; r < P; r++)
        n += e->rk[r].computing;
    if (n == 0)
        return;
    const double cores = e->s->hw.cores;
    const double links = e->link_cost_s * link_net_throughput(e->net); /* 0 on unshaped links */
    const double free_cores = fmax(cores - links, MIN_COMPUTE_SHARE * cores);
    e->speed = fmin(e->rank_cores, free_cores / n) / e->calib_cores;
    for (int r = 0; r < P; r++)
        if (e->rk[r].computing)
            e->rk[r].busy_until = e->t + e->rk[r].work_left / e->speed;
}

/* The computing ranks' work done from e->t to t; those done by t stop computing. */
static void progress(engine *e, double t)
{
    const double dt = t - e->t;
    for (int r = 0; r < e->s->shape.ranks; r++) {
        rank_state *rs = &e->rk[r];
        if (!rs->computing)
            continue;
        if (r == 0)
            e->stats[rs->compute_step].compute_s += dt;
        if (rs->busy_until <= t) {
            rs->computing = false;
            rs->work_left = 0;
            rs->busy_until = t;
        } else {
            rs->work_left = fmax(0.0, rs->work_left - dt * e->speed);
        }
    }
}

static int engine_run(engine *e)
{
    const int P = e->s->shape.ranks;
    for (int r = 0; r < P; r++)
        e->rk[r] = (rank_state){.wait_msg = -1};
    for (int i = 0; i < RING; i++)
        e->inst[i].step = -1;
    for (;;) {
        int moved;
        do {
            moved = 0;
            for (int r = 0; r < P; r++) {
                int m = run_rank(e, r);
                if (m < 0)
                    return wancp_fail(e->err, e->errlen, WANCP_ERR_NOMEM, "simulator: out of memory");
                moved |= m;
            }
        } while (moved);
        if (e->sharing)
            share_cores(e);
        bool all = true;
        double next = link_net_next_event(e->net);
        for (int r = 0; r < P; r++) {
            all = all && e->rk[r].finished;
            if (!e->rk[r].finished && e->rk[r].wait_msg < 0 && e->rk[r].busy_until > e->t)
                next = fmin(next, e->rk[r].busy_until);
        }
        if (all)
            return WANCP_OK;
        if (!isfinite(next))
            return wancp_fail(e->err, e->errlen, WANCP_ERR_SYSTEM,
                              "simulator: every rank waits and nothing is in flight (step %d): a bug in the step model",
                              e->rk[0].step);
        int ndone = link_net_advance(e->net, next, e->done_buf, e->done_cap);
        if (e->sharing)
            progress(e, next);
        e->t = next;
        if (ndone > 0)
            for (int i = 0; i < RING; i++)
                if (e->inst[i].step >= 0 && post_ready(e, &e->inst[i]) != WANCP_OK)
                    return WANCP_ERR_NOMEM;
        for (int r = 0; r < P; r++)
            wake(e, r);
    }
}

/* Simulates `steps` steps on fresh links, all of fixed_kind (>= 0) or the run's kinds in
 * order; stats (steps) filled. */
static int simulate(const sim_setup *s, step_kind *kinds, int fixed_kind, int steps, sim_step_stats *stats, char *err,
                    size_t errlen)
{
    engine e = {
        .s = s, .kinds = kinds, .steps = steps, .fixed_kind = fixed_kind, .stats = stats, .err = err, .errlen = errlen};
    if (s->hw.host && s->hw.cores > 0) {
        e.sharing = true;
        e.rank_cores = sim_rank_threads(s->hw.cores, s->shape.ranks);
        e.calib_cores = sim_calibration_cores(s->hw.cores, s->shape.ranks);
        const link_profile *p = s->link.profile;
        e.link_cost_s = p != NULL ? sim_link_cost_of(&s->hw, (double)p->rate_bps, link_profile_delays(p)) : 0;
        e.speed = 1;
    }
    int rc = link_net_init(&e.net, &s->link, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    e.done_cap = 4096;
    e.done_buf = malloc((size_t)e.done_cap * sizeof *e.done_buf);
    if (e.done_buf == NULL)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "simulator: out of memory");
    memset(stats, 0, (size_t)steps * sizeof *stats);
    if (rc == WANCP_OK)
        rc = engine_run(&e);
    for (int i = 0; i < RING; i++) {
        free(e.inst[i].net);
        free(e.inst[i].release);
        free(e.inst[i].pending);
    }
    free(e.done_buf);
    link_net_free(e.net);
    return rc;
}

static void scale_stats(sim_step_stats *st, double f)
{
    st->step_s *= f;
    st->compute_s *= f;
    for (int c = 0; c < COMM_NCLASSES; c++)
        st->exposed_s[c] *= f;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static bool deterministic(const sim_setup *s)
{
    const link_profile *p = s->link.profile;
    return p == NULL || (p->jitter_ns == 0 && p->nschedule <= 1 && p->ntrace == 0);
}

int sim_run(const sim_setup *s, int steps, sim_result *out, char *err, size_t errlen)
{
    *out = (sim_result){.steps = steps};
    const sim_shape *sh = &s->shape;
    if (sh->ranks < 1 || sh->ranks > LINK_MAX_NODES || steps < 1 || sh->layers < 1 || sh->chunk < 1 || sh->batch < 1)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "simulator: %d ranks, %d layers, chunk %d, batch %d, %d steps",
                          sh->ranks, sh->layers, sh->chunk, sh->batch, steps);
    step_kind kinds[NKINDS];
    memset(kinds, 0, sizeof kinds);
    int rc = WANCP_OK;
    for (int k = 0; k < NKINDS && rc == WANCP_OK; k++)
        if ((!(k & KIND_COMPRESSED) || s->compress) && (!(k & KIND_SYNC) || s->sync == 'A'))
            rc = build_kind(s, &kinds[k], k, err, errlen);
    out->step_s = rc == WANCP_OK ? calloc((size_t)steps, sizeof *out->step_s) : NULL;
    if (rc == WANCP_OK && out->step_s == NULL)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "simulator: out of memory");
    sim_step_stats per_kind[NKINDS];
    memset(per_kind, 0, sizeof per_kind);
    /* Each kind in steady state: three steps of it in a row, the third counts. */
    for (int k = 0; k < NKINDS && rc == WANCP_OK; k++) {
        if (!kinds[k].built)
            continue;
        sim_step_stats three[3];
        rc = simulate(s, kinds, k, 3, three, err, errlen);
        per_kind[k] = three[2];
        scale_stats(&per_kind[k], s->time_scale);
        out->simulated_steps += 3;
    }
    if (rc == WANCP_OK) {
        const int main_kind = s->compress ? KIND_COMPRESSED : KIND_WARM;
        out->steady = per_kind[main_kind];
        out->warm = per_kind[KIND_WARM].step_s > 0 ? per_kind[KIND_WARM] : per_kind[main_kind];
        out->sync_step = s->sync == 'A' ? per_kind[main_kind | KIND_SYNC] : out->steady;
        out->stepwise = !deterministic(s);
        if (out->stepwise) {
            sim_step_stats *all = calloc((size_t)steps, sizeof *all);
            if (all == NULL)
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "simulator: out of memory");
            if (rc == WANCP_OK)
                rc = simulate(s, kinds, -1, steps, all, err, errlen);
            for (int k = 0; k < steps && rc == WANCP_OK; k++)
                out->step_s[k] = all[k].step_s * s->time_scale;
            out->simulated_steps += steps;
            free(all);
        } else {
            for (int k = 0; k < steps; k++)
                out->step_s[k] = per_kind[kind_of_run(s, k)].step_s;
        }
    }
    if (rc == WANCP_OK) {
        double *sorted = malloc((size_t)steps * sizeof *sorted);
        if (sorted == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "simulator: out of memory");
        /* the percentiles over the steps a run's summary calls steady: from the second step
         * after compression goes on (after the warm-up), else from the second step */
        const int first = s->compress && s->warm_steps > 0 ? s->warm_steps + 2 : 1;
        const int from = first < steps ? first : steps - 1;
        int n = 0;
        for (int k = 0; k < steps && rc == WANCP_OK; k++) {
            out->total_s += out->step_s[k];
            if (k >= from)
                sorted[n++] = out->step_s[k];
        }
        if (rc == WANCP_OK) {
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
            out->mean_s = out->total_s / steps;
            out->p50_s = sorted[n / 2];
            out->p95_s = sorted[(int)floor(0.95 * (n - 1))];
        }
        free(sorted);
    }
    for (int k = 0; k < NKINDS; k++)
        free_kind(&kinds[k]);
    if (rc != WANCP_OK)
        sim_result_free(out);
    return rc;
}

int sim_step_work(const sim_setup *s, bool compressed, int rank, sim_work *out, double *moved, char *err, size_t errlen)
{
    step_kind k;
    memset(&k, 0, sizeof k);
    if (rank < 0 || rank >= s->shape.ranks || s->shape.ranks > LINK_MAX_NODES)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "simulator: no rank %d of %d", rank, s->shape.ranks);
    int rc = build_kind(s, &k, compressed ? KIND_COMPRESSED : KIND_WARM, err, errlen);
    if (rc == WANCP_OK) {
        *out = k.work[rank];
        *moved = k.moved[rank];
    }
    free_kind(&k);
    return rc;
}

void sim_result_free(sim_result *r)
{
    free(r->step_s);
    r->step_s = NULL;
}

/* ---- the closed form ---- */

/* The busiest link's payload bytes of one exchange (forward: owners to consumers). */
static double busiest_link_bytes(const sim_setup *s, double bytes, bool *mesh)
{
    const int P = s->shape.ranks;
    double load[2 * LINK_MAX_NODES] = {0}, pair[LINK_MAX_NODES][LINK_MAX_NODES] = {{0}}, worst = 0;
    *mesh = s->link.topology == TOPOLOGY_MESH;
    for (int j = 0; j < 2 * P; j++)
        for (int r = 0; r < P; r++)
            if (exchanged(s, r, j)) {
                load[owner(P, j)] += bytes;
                load[P + r] += bytes;
                pair[owner(P, j)][r] += bytes;
            }
    for (int i = 0; i < P; i++)
        for (int j = 0; j < P; j++)
            worst = fmax(worst, *mesh ? pair[i][j] : fmax(load[i], load[P + j]));
    return worst;
}

double sim_closed_form(const sim_setup *s, bool compressed, char *err, size_t errlen)
{
    const sim_shape *sh = &s->shape;
    const int P = sh->ranks;
    link_net *net;
    if (link_net_init(&net, &s->link, err, errlen) != WANCP_OK)
        return NAN;
    const double B = link_net_duplex_payload_bps(net, 0) / 8.0, alpha = link_net_delay_s(net);
    /* a ring's ACKs go back over the link of the next node's own stream on an uplink, over an
     * otherwise idle pair link on a mesh */
    const double B_ring = s->link.topology == TOPOLOGY_MESH ? link_net_payload_bps(net, 0) / 8.0 : B;
    link_net_free(net);
    const sim_hardware *hw = &s->hw;
    double t = 0;
    bool mesh;
    for (int l = 0; l < sh->layers; l++) {
        const bool comp = compressed && s->compress && (l + 1 < sh->layers || s->compress_last);
        const double comm =
            P > 1 ? alpha + busiest_link_bytes(s, sim_message_bytes(sh, comp, s->wire_bytes), &mesh) / B : 0;
        sim_work w = {0}, view = sim_cost_view(sh, hw, comp, true), bview = sim_cost_view(sh, hw, comp, false);
        sim_work pre = sim_cost_pre_attention(sh, hw, false), post = sim_cost_post_attention(sh, hw, false);
        sim_work bpre = sim_cost_pre_attention(sh, hw, true), bpost = sim_cost_post_attention(sh, hw, true);
        sim_work diag = sim_cost_block(sh, true, false), full = sim_cost_block(sh, false, false);
        sim_work bdiag = sim_cost_block(sh, true, true), bfull = sim_cost_block(sh, false, true);
        sim_work_add(&w, &pre, 1);
        sim_work_add(&w, &post, 1);
        sim_work_add(&w, &bpre, 1);
        sim_work_add(&w, &bpost, 1);
        /* rank 0 sees every earlier chunk: 2P - 1 views and full blocks, 2 diagonal ones */
        sim_work_add(&w, &diag, 2.0 * sh->batch);
        sim_work_add(&w, &full, (2.0 * P - 1) * sh->batch);
        sim_work_add(&w, &bdiag, 2.0 * sh->batch);
        sim_work_add(&w, &bfull, (2.0 * P - 1) * sh->batch);
        sim_work_add(&w, &view, (2.0 * P - 1) * sh->batch);
        sim_work_add(&w, &bview, (2.0 * P - 1) * sh->batch);
        if (comp) {
            sim_work enc = sim_cost_encode(sh), grad = sim_cost_consumer_grad(sh), fin = sim_cost_owner_finish(sh);
            sim_work_add(&w, &enc, 2.0 * sh->batch);
            sim_work_add(&w, &grad, (2.0 * P - 1) * sh->batch);
            sim_work_add(&w, &fin, 2.0 * sh->batch);
        }
        t += sim_work_seconds(&w, hw) + 2 * comm * sh->batch;
    }
    sim_work rest = {0}, hf = sim_cost_head(sh, hw, false), hb = sim_cost_head(sh, hw, true),
             opt = sim_cost_optimizer(sh);
    sim_work embed = {.amount[SIM_MEMORY] = 2.0 * sh->batch * 2 * sh->chunk * sh->dim * hw->act_bytes, .ops = 1};
    sim_work_add(&rest, &hf, 1);
    sim_work_add(&rest, &hb, 1);
    sim_work_add(&rest, &opt, 1);
    sim_work_add(&rest, &embed, 2);
    t += sim_work_seconds(&rest, hw);
    if (P > 1) /* rank 0's "go on" broadcast (the others start one delay later); the loss's
                * ring all-reduce of one float, 2(P-1) hops */
        t += alpha + 2 * (P - 1) * alpha;
    const double sync_bytes = sim_trainable_params(sh) * hw->param_bytes;
    const double ring = P > 1 ? link_ring_allreduce_s(P, sync_bytes, alpha, 1.0 / B_ring) : 0;
    if (s->sync == 'S')
        t += ring;
    else if (s->sync == 'A' && s->sync_every > 0)
        t += ring / s->sync_every;
    return t * s->time_scale;
}
