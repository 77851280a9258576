#include "cp_internal.h"
#include "cp_message.h"

#include "../base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- shapes and slots ---- */

static attn_shape shape_of(const model *m)
{
    return (attn_shape){m->cfg.n_heads, m->cfg.n_kv_heads, model_head_dim(&m->cfg), m->cfg.attn_block};
}

bool cp_attention_layer_compressed(const cp_attention *cp, const model *m, int layer)
{
    return cp->compress && (layer + 1 < m->cfg.n_layers || cp->opt.compress_last);
}

/* Floats of one chunk's message, and how many lead in fp32 (theta or tau). */
static size_t message_floats(const cp_attention *cp, const model *m, int layer, size_t *head)
{
    const size_t chunk = (size_t)cp->layout.chunk;
    if (cp_attention_layer_compressed(cp, m, layer)) {
        *head = 2 * (size_t)m->cfg.psi_k;
        return cp->own_floats;
    }
    *head = 0;
    return 2 * chunk * kv_dim(m);
}

size_t cp_attention_message_bytes(const cp_attention *cp, const model *m, int layer)
{
    /* pack() writes exactly this many bytes: message_floats lays out what the formula counts */
    const cp_message_shape s = {.chunk = (uint64_t)cp->layout.chunk,
                                .d_kv = kv_dim(m),
                                .rank_k = m->cfg.rank_k,
                                .rank_v = m->cfg.rank_v,
                                .psi_k = m->cfg.psi_k,
                                .wire_bytes = cp->opt.wire_bf16 ? 2 : 4,
                                .compressed = cp_attention_layer_compressed(cp, m, layer)};
    return (size_t)cp_kv_message_bytes(&s);
}

static size_t pack(const cp_attention *cp, const model *m, int layer, uint8_t *dst, const float *src)
{
    size_t head, n = message_floats(cp, m, layer, &head);
    size_t at = wire_put(dst, src, head, false);
    return at + wire_put(dst + at, src + head, n - head, cp->opt.wire_bf16);
}

static void unpack(const cp_attention *cp, const model *m, int layer, float *dst, const uint8_t *src)
{
    size_t head, n = message_floats(cp, m, layer, &head);
    size_t at = wire_get(dst, src, head, false);
    wire_get(dst + head, src + at, n - head, cp->opt.wire_bf16);
}

static uint8_t *recv_slot(const cp_attention *cp, const model *m, int layer, int b, int chunk)
{
    const size_t chunks = (size_t)cp_total_chunks(&cp->layout);
    if (cp->opt.regather) /* one layer and sequence at a time: gathered again for the backward */
        layer = b = 0;
    return cp->recv_msg + (((size_t)layer * m->batch + b) * chunks + chunk) * cp->slot_bytes;
}

/* Index of chunk j among this rank's chunks, or -1. */
static int local_index(const cp_attention *cp, int j)
{
    for (int c = 0; c < cp->nloc; c++)
        if (cp->mine[c] == j)
            return c;
    return -1;
}

/* Whether some local chunk comes after chunk j (so j's view is needed here). */
static bool seen_here(const cp_attention *cp, int j) { return cp->mine[cp->nloc - 1] > j; }

static int fail(cp_attention *cp, const char *what, const char *why)
{
    snprintf(cp->error, sizeof cp->error, "%s: %.400s", what, why);
    return -1;
}

/* ---- forward ---- */

/* Compresses local chunk c of sequence b. */
static void encode_own(cp_attention *cp, model *m, int layer, int b, int c)
{
    codec_job job = {.cp = cp,
                     .m = m,
                     .stage = ENCODE,
                     .layer = layer,
                     .b = b,
                     .c = c,
                     .j = cp->mine[c],
                     .p = parts_of(m, cp->layout.chunk, own_state(cp, m, layer, b, c))};
    cp_codec_run(&job);
}

/* Fills view_k (after RoPE) and view_v with chunk j as seen from later chunks; when
 * compressed, leaves each codec's U at chunk j's and returns its parts in *out. The
 * forward pass computes a remote chunk's U from its theta; later calls reuse it. */
static void chunk_view(cp_attention *cp, model *m, int layer, int b, int j, bool forward, parts *out)
{
    const int chunk = cp->layout.chunk, kvd = kv_dim(m), c = local_index(cp, j);
    const size_t n = (size_t)chunk * kvd;
    for (int t = 0; t < chunk; t++)
        cp->view_pos[t] = j * chunk + t;
    const ops *o = m->ops;
    if (!cp_attention_layer_compressed(cp, m, layer)) {
        if (c >= 0) { /* as the wire would carry it, without leaving the device */
            const size_t rows = ((size_t)b * m->seq + (size_t)c * chunk) * kvd;
            o->copy(cp->view_k, m->acts[layer].k + rows, n);
            o->copy(cp->view_v, m->acts[layer].v + rows, n);
            if (cp->opt.wire_bf16) {
                o->round_bf16(cp->view_k, n);
                o->round_bf16(cp->view_v, n);
            }
        } else {
            unpack(cp, m, layer, cp->part, recv_slot(cp, m, layer, b, j));
            o->upload(cp->view_k, cp->part, n);
            o->upload(cp->view_v, cp->part + n, n);
        }
        return;
    }
    float *base = cp->part;
    if (c >= 0)
        base = own_state(cp, m, layer, b, c);
    else
        unpack(cp, m, layer, cp->part, recv_slot(cp, m, layer, b, j));
    codec_job job = {.cp = cp,
                     .m = m,
                     .stage = VIEW,
                     .layer = layer,
                     .b = b,
                     .c = c,
                     .j = j,
                     .forward = forward,
                     .p = parts_of(m, chunk, base)};
    cp_codec_run(&job);
    o->rope_fwd(cp->view_k, cp->view_pos, chunk, m->cfg.n_kv_heads, model_head_dim(&m->cfg), m->rope_cos, m->rope_sin);
    *out = job.p;
}

/* The online-softmax state of local query chunk c. */
static attn_state state_of(const cp_attention *cp, model *m, int layer, int b, int c)
{
    const int chunk = cp->layout.chunk, H = m->cfg.n_heads, qd = H * model_head_dim(&m->cfg);
    return (attn_state){.acc = m->acts[layer].o + ((size_t)b * m->seq + (size_t)c * chunk) * qd,
                        .max = m->attn_max + (size_t)c * H * chunk,
                        .sum = m->attn_sum + (size_t)c * H * chunk,
                        .tq = chunk};
}

/* lse of query chunk c in sequence b: (chunks, n_heads, m) within the sequence's block. */
static float *lse_of(const cp_attention *cp, model *m, int layer, int b, int c)
{
    const size_t H = (size_t)m->cfg.n_heads;
    return m->acts[layer].lse + (size_t)b * H * m->seq + (size_t)c * H * cp->layout.chunk;
}

/* Posts one sequence's exchange of K/V (or theta and C): receives of every remote chunk this
 * rank needs, and each of its chunks (encoded first, in the forward pass) to every rank
 * that needs it. The kv-forward class carries both the forward pass and a re-gather. */
static int gather_post(cp_attention *cp, model *m, int layer, int b, bool encode, char *err, size_t errlen)
{
    gather_state *g = &cp->gather;
    const layer_acts *a = &m->acts[layer];
    const int P = cp->layout.ranks, chunk = cp->layout.chunk, nchunks = cp_total_chunks(&cp->layout), kvd = kv_dim(m);
    const bool compressed = cp_attention_layer_compressed(cp, m, layer), talk = cp->exchange && P > 1;
    const size_t bytes = cp_attention_message_bytes(cp, m, layer), row = (size_t)b * m->seq;
    int rc = WANCP_OK;
    g->nsend = 0;
    for (int j = 0; j < nchunks && rc == WANCP_OK; j++) {
        int owner = cp_owner(&cp->layout, j);
        g->recv[j] = NULL;
        if (talk && owner != cp->rank && cp_rank_needs(&cp->layout, cp->rank, j))
            rc = comm_irecv(cp->comm, owner, COMM_KV_FORWARD, recv_slot(cp, m, layer, b, j), bytes, &g->recv[j], err,
                            errlen);
    }
    const size_t n = (size_t)chunk * kvd;
    for (int c = 0; c < cp->nloc && rc == WANCP_OK; c++) {
        if (compressed && encode)
            encode_own(cp, m, layer, b, c);
        if (talk && !compressed) { /* staged: K and V copied out while earlier work finishes */
            m->ops->download(cp->stage + 2 * c * n, a->k + (row + (size_t)c * chunk) * kvd, n);
            m->ops->download(cp->stage + 2 * c * n + n, a->v + (row + (size_t)c * chunk) * kvd, n);
        }
    }
    m->ops->sync(); /* staged K/V, or C and theta, complete in host memory */
    for (int c = 0; c < cp->nloc && rc == WANCP_OK; c++) {
        if (!talk)
            continue;
        uint8_t *msg = cp->send_msg + (size_t)c * cp->slot_bytes;
        pack(cp, m, layer, msg, compressed ? own_state(cp, m, layer, b, c) : cp->stage + 2 * c * n);
        for (int r = 0; r < P && rc == WANCP_OK; r++)
            if (r != cp->rank && cp_rank_needs(&cp->layout, r, cp->mine[c]))
                rc = comm_isend(cp->comm, r, COMM_KV_FORWARD, msg, bytes, &g->send[g->nsend++], err, errlen);
    }
    return rc;
}

/* Waits for remote chunk j's message; after a failure, for everything posted. */
static int gather_wait(cp_attention *cp, int j, char *err, size_t errlen)
{
    gather_state *g = &cp->gather;
    if (g->recv[j] == NULL)
        return WANCP_OK;
    int rc = comm_wait(cp->comm, g->recv[j], err, errlen);
    g->recv[j] = NULL;
    if (rc != WANCP_OK) {
        for (int i = j + 1; i < cp_total_chunks(&cp->layout); i++)
            if (g->recv[i] != NULL)
                comm_wait(cp->comm, g->recv[i], err, errlen);
        comm_wait_all(cp->comm, g->send, g->nsend, err, errlen);
    }
    return rc;
}

static int cp_forward(void *ctx, model *m, int layer)
{
    cp_attention *cp = ctx;
    const ops *o = m->ops;
    layer_acts *a = &m->acts[layer];
    const int chunk = cp->layout.chunk, nchunks = cp_total_chunks(&cp->layout);
    const int qd = m->cfg.n_heads * model_head_dim(&m->cfg), kvd = kv_dim(m);
    const attn_shape shape = shape_of(m);
    char err[WANCP_ERRLEN];
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * m->seq;
        if (gather_post(cp, m, layer, b, true, err, sizeof err) != WANCP_OK)
            return fail(cp, "context-parallel forward", err);
        /* The exact diagonal blocks while remote chunks travel. */
        for (int c = 0; c < cp->nloc; c++) {
            attn_state st = state_of(cp, m, layer, b, c);
            const size_t r0 = row + (size_t)c * chunk;
            o->attn_begin(&st, &shape);
            o->attn_block(&st, a->q + r0 * qd, m->pos + (size_t)c * chunk, a->k + r0 * kvd, a->v + r0 * kvd,
                          m->pos + (size_t)c * chunk, chunk, &shape, m->attn_scratch);
        }
        /* Every earlier chunk, in chunk order, into each later local query chunk. */
        for (int j = 0; j < nchunks; j++) {
            if (!seen_here(cp, j))
                continue;
            if (gather_wait(cp, j, err, sizeof err) != WANCP_OK)
                return fail(cp, "context-parallel forward", err);
            parts p;
            chunk_view(cp, m, layer, b, j, true, &p);
            for (int c = 0; c < cp->nloc; c++)
                if (cp->mine[c] > j) {
                    attn_state st = state_of(cp, m, layer, b, c);
                    const size_t r0 = row + (size_t)c * chunk;
                    o->attn_block(&st, a->q + r0 * qd, m->pos + (size_t)c * chunk, cp->view_k, cp->view_v, cp->view_pos,
                                  chunk, &shape, m->attn_scratch);
                }
        }
        for (int c = 0; c < cp->nloc; c++) {
            attn_state st = state_of(cp, m, layer, b, c);
            o->attn_end(st.acc, lse_of(cp, m, layer, b, c), &st, &shape);
        }
        if (comm_wait_all(cp->comm, cp->gather.send, cp->gather.nsend, err, sizeof err) != WANCP_OK)
            return fail(cp, "context-parallel forward", err);
    }
    return 0;
}

/* ---- backward ---- */

/* This rank's partial gradient of chunk j (from view_k/v's gradients) in host memory, to
 * send or to add: E and tau when compressed (into dst, own_floats), else dK then dV (staged). */
static const float *chunk_grad(cp_attention *cp, model *m, int layer, int b, int j, const parts *p, float *dst)
{
    const int chunk = cp->layout.chunk, kvd = kv_dim(m);
    const size_t n = (size_t)chunk * kvd;
    const ops *o = m->ops;
    if (!cp_attention_layer_compressed(cp, m, layer)) {
        o->download(cp->gstage, cp->gview_k, n);
        o->download(cp->gstage + n, cp->gview_v, n);
        o->sync();
        return cp->gstage;
    }
    /* dL/d(decompressed K) is before RoPE: undo the rotation of the gradient first */
    o->rope_bwd(cp->gview_k, cp->view_pos, chunk, m->cfg.n_kv_heads, model_head_dim(&m->cfg), m->rope_cos, m->rope_sin);
    codec_job job = {.cp = cp,
                     .m = m,
                     .stage = GRAD,
                     .layer = layer,
                     .b = b,
                     .c = -1,
                     .j = j,
                     .p = *p,
                     .g = parts_of(m, chunk, dst)};
    cp_codec_run(&job);
    return dst;
}

/* Adds one partial gradient (host memory) of local chunk c: into dK/dV, or into the
 * owner's sums (host memory, where the codec reads them). */
static void add_partial(cp_attention *cp, model *m, int layer, int b, int c, const float *g)
{
    const int chunk = cp->layout.chunk, kvd = kv_dim(m);
    if (cp_attention_layer_compressed(cp, m, layer)) {
        float *acc = cp->acc + (size_t)c * cp->own_floats;
        for (size_t i = 0; i < cp->own_floats; i++)
            acc[i] += g[i];
        return;
    }
    const size_t rows = ((size_t)b * m->seq + (size_t)c * chunk) * kvd, n = (size_t)chunk * kvd;
    m->ops->upload(cp->gdev, g, 2 * n);
    m->ops->add(m->dk + rows, cp->gdev, n);
    m->ops->add(m->dv + rows, cp->gdev + n, n);
}

/* The owner's part for local chunk c once every partial gradient is summed. */
static void finish_own(cp_attention *cp, model *m, int layer, int b, int c)
{
    codec_job job = {.cp = cp,
                     .m = m,
                     .stage = FINISH,
                     .layer = layer,
                     .b = b,
                     .c = c,
                     .j = cp->mine[c],
                     .p = parts_of(m, cp->layout.chunk, own_state(cp, m, layer, b, c))};
    cp_codec_run(&job);
}

static int cp_backward(void *ctx, model *m, int layer)
{
    cp_attention *cp = ctx;
    const ops *o = m->ops;
    const layer_acts *a = &m->acts[layer];
    const int P = cp->layout.ranks, chunk = cp->layout.chunk, nchunks = cp_total_chunks(&cp->layout);
    const int H = m->cfg.n_heads, qd = H * model_head_dim(&m->cfg), kvd = kv_dim(m);
    const size_t n = (size_t)m->batch * m->seq;
    const attn_shape shape = shape_of(m);
    const bool compressed = cp_attention_layer_compressed(cp, m, layer), talk = cp->exchange && P > 1;
    const size_t bytes = cp_attention_message_bytes(cp, m, layer);
    char err[WANCP_ERRLEN];
    o->zero(m->dq, n * qd);
    o->zero(m->dk, n * kvd);
    o->zero(m->dv, n * kvd);
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * m->seq;
        comm_request *reqs[2 * CP_MAX_LOCAL * COMM_MAX_RANKS];
        int nreq = 0, rc = WANCP_OK;
        for (int c = 0; c < cp->nloc && rc == WANCP_OK && talk; c++)
            for (int r = 0; r < P && rc == WANCP_OK; r++)
                if (r != cp->rank && cp_rank_needs(&cp->layout, r, cp->mine[c]))
                    rc = comm_irecv(cp->comm, r, COMM_KV_BACKWARD, cp->grad_in + ((size_t)c * P + r) * cp->slot_bytes,
                                    bytes, &reqs[nreq++], err, sizeof err);
        if (cp->opt.regather && rc == WANCP_OK)
            rc = gather_post(cp, m, layer, b, false, err, sizeof err);
        if (compressed)
            memset(cp->acc, 0, (size_t)cp->nloc * cp->own_floats * sizeof *cp->acc);
        for (int c = 0; c < cp->nloc; c++)
            o->attn_bwd_delta(m->delta + (size_t)c * H * chunk, a->o + (row + (size_t)c * chunk) * qd,
                              m->dout + (row + (size_t)c * chunk) * qd, chunk, &shape);
        for (int j = 0; j < nchunks && rc == WANCP_OK; j++) {
            if (!seen_here(cp, j))
                continue;
            if (cp->opt.regather && (rc = gather_wait(cp, j, err, sizeof err)) != WANCP_OK)
                break;
            parts p;
            chunk_view(cp, m, layer, b, j, false, &p);
            o->zero(cp->gview_k, (size_t)chunk * kvd);
            o->zero(cp->gview_v, (size_t)chunk * kvd);
            for (int c = 0; c < cp->nloc; c++)
                if (cp->mine[c] > j) {
                    const size_t r0 = row + (size_t)c * chunk;
                    o->attn_block_bwd(m->dq + r0 * qd, cp->gview_k, cp->gview_v, a->q + r0 * qd,
                                      m->pos + (size_t)c * chunk, chunk, cp->view_k, cp->view_v, cp->view_pos, chunk,
                                      m->dout + r0 * qd, lse_of(cp, m, layer, b, c), m->delta + (size_t)c * H * chunk,
                                      &shape, m->attn_scratch);
                }
            const int cj = local_index(cp, j);
            if (cj >= 0 && !compressed) { /* this rank's own partial dK/dV stays on the device */
                const size_t r0 = (row + (size_t)cj * chunk) * kvd;
                o->add(m->dk + r0, cp->gview_k, (size_t)chunk * kvd);
                o->add(m->dv + r0, cp->gview_v, (size_t)chunk * kvd);
                continue;
            }
            const float *g = chunk_grad(cp, m, layer, b, j, &p, cp->gpart); /* p may point into part */
            if (cj >= 0) {
                add_partial(cp, m, layer, b, cj, g);
            } else if (talk) {
                uint8_t *msg = cp->grad_out + (size_t)j * cp->slot_bytes;
                pack(cp, m, layer, msg, g);
                rc = comm_isend(cp->comm, cp_owner(&cp->layout, j), COMM_KV_BACKWARD, msg, bytes, &reqs[nreq++], err,
                                sizeof err);
            }
        }
        /* The exact diagonal blocks while the partial gradients travel. */
        for (int c = 0; c < cp->nloc && rc == WANCP_OK; c++) {
            const size_t r0 = row + (size_t)c * chunk;
            o->attn_block_bwd(m->dq + r0 * qd, m->dk + r0 * kvd, m->dv + r0 * kvd, a->q + r0 * qd,
                              m->pos + (size_t)c * chunk, chunk, a->k + r0 * kvd, a->v + r0 * kvd,
                              m->pos + (size_t)c * chunk, chunk, m->dout + r0 * qd, lse_of(cp, m, layer, b, c),
                              m->delta + (size_t)c * H * chunk, &shape, m->attn_scratch);
        }
        if (rc != WANCP_OK || comm_wait_all(cp->comm, reqs, nreq, err, sizeof err) != WANCP_OK ||
            (cp->opt.regather &&
             comm_wait_all(cp->comm, cp->gather.send, cp->gather.nsend, err, sizeof err) != WANCP_OK))
            return fail(cp, "context-parallel backward", err);
        /* Owners add the partial gradients, in rank order. */
        for (int c = 0; c < cp->nloc && talk; c++)
            for (int r = 0; r < P; r++) {
                if (r == cp->rank || !cp_rank_needs(&cp->layout, r, cp->mine[c]))
                    continue;
                unpack(cp, m, layer, cp->part, cp->grad_in + ((size_t)c * P + r) * cp->slot_bytes);
                add_partial(cp, m, layer, b, c, cp->part);
            }
        for (int c = 0; c < cp->nloc && compressed; c++)
            finish_own(cp, m, layer, b, c);
    }
    return 0;
}

/* ---- setup ---- */

int cp_attention_init(cp_attention *cp, comm *c, const cp_layout *layout, const cp_options *opt, model *m, char *err,
                      size_t errlen)
{
    *cp = (cp_attention){.comm = c,
                         .layout = *layout,
                         .rank = c != NULL ? comm_rank(c) : 0,
                         .nloc = cp_local_count(layout),
                         .layers = m->cfg.n_layers};
    if (opt != NULL)
        cp->opt = *opt;
    const int P = layout->ranks, chunk = layout->chunk;
    if (P != (c != NULL ? comm_size(c) : 1) || (P > 1 && c == NULL))
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "context parallelism: layout of %d ranks on a communicator of %d", P,
                          c != NULL ? comm_size(c) : 1);
    if (cp->nloc < 1 || cp->nloc > CP_MAX_LOCAL || (layout->kind == CP_ZIGZAG && cp->nloc != 2))
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "context parallelism: %d chunks per rank (zig-zag takes 2, contiguous 1..%d)", cp->nloc,
                          CP_MAX_LOCAL);
    if (m->seq != cp->nloc * chunk)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "context parallelism: %d ranks x %d chunks of %d tokens, but the "
                          "model holds %d local tokens",
                          P, cp->nloc, chunk, m->seq);
    if (chunk % m->cfg.attn_block != 0 || chunk > 65536)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "context parallelism: chunk of %d tokens is not a multiple of attn_block %d", chunk,
                          m->cfg.attn_block);
    if (cp_total_chunks(layout) * chunk > m->cfg.context)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "context parallelism: sequence of %d tokens exceeds context %d",
                          cp_total_chunks(layout) * chunk, m->cfg.context);
    cp_chunks_of(layout, cp->rank, cp->mine);
    const size_t kvf = (size_t)chunk * kv_dim(m), chunks = (size_t)cp_total_chunks(layout);
    const size_t k = (size_t)m->cfg.psi_k;
    cp->own_floats = k > 0 ? 2 * k + (size_t)chunk * (m->cfg.rank_k + m->cfg.rank_v) : 0;
    const size_t part_floats = cp->own_floats > 2 * kvf ? cp->own_floats : 2 * kvf;
    cp->slot_bytes = part_floats * sizeof(float);
    const size_t remote_slots = P == 1 ? 0 : cp->opt.regather ? chunks : (size_t)m->cfg.n_layers * m->batch * chunks;
    cp->recv_msg = calloc(remote_slots + 1, cp->slot_bytes);
    cp->send_msg = calloc((size_t)cp->nloc, cp->slot_bytes);
    cp->grad_out = calloc(chunks, cp->slot_bytes);
    cp->grad_in = calloc((size_t)cp->nloc * P, cp->slot_bytes);
    cp->own = calloc((size_t)m->cfg.n_layers * m->batch * cp->nloc * cp->own_floats + 1, sizeof *cp->own);
    cp->acc = calloc((size_t)cp->nloc * cp->own_floats + 1, sizeof *cp->acc);
    cp->part = calloc(part_floats, sizeof *cp->part);
    cp->gpart = calloc(part_floats, sizeof *cp->gpart);
    const ops *o = cp->ops = m->ops;
    cp->view_k = o->alloc(kvf * sizeof(float));
    cp->view_v = o->alloc(kvf * sizeof(float));
    cp->gview_k = o->alloc(kvf * sizeof(float));
    cp->gview_v = o->alloc(kvf * sizeof(float));
    cp->gdev = o->alloc(2 * kvf * sizeof(float));
    cp->stage = o->host_alloc((size_t)cp->nloc * 2 * kvf * sizeof(float));
    cp->gstage = o->host_alloc(2 * kvf * sizeof(float));
    cp->view_pos = calloc((size_t)chunk, sizeof *cp->view_pos);
    cp->codec = k > 0 ? calloc((size_t)m->cfg.n_layers, sizeof *cp->codec) : NULL;
    const size_t lb = (size_t)m->cfg.n_layers * m->batch, kvd = (size_t)kv_dim(m);
    cp->ucache = k > 0 ? calloc(lb * chunks * kvd * (m->cfg.rank_k + m->cfg.rank_v), sizeof *cp->ucache) : NULL;
    cp->zcache = k > 0 ? calloc(lb * cp->nloc * 2 * kvd, sizeof *cp->zcache) : NULL;
    const size_t rmax = m->cfg.rank_k > m->cfg.rank_v ? m->cfg.rank_k : m->cfg.rank_v;
    cp->du0 = k > 0 ? calloc((size_t)m->cfg.n_layers * kvd * (m->cfg.rank_k + m->cfg.rank_v), sizeof *cp->du0) : NULL;
    cp->rot = k > 0 ? calloc(2 * kvd * rmax, sizeof *cp->rot) : NULL; /* one per side: K and V run together */
    bool device_ok = true;
    if (k > 0 && !o->host_memory)
        device_ok = cp_codec_device_alloc(cp, m, rmax);
    int32_t *pos = malloc((size_t)m->seq * sizeof *pos);
    if (!device_ok || cp->recv_msg == NULL || cp->send_msg == NULL || cp->grad_out == NULL || cp->grad_in == NULL ||
        cp->own == NULL || cp->acc == NULL || cp->part == NULL || cp->gpart == NULL || cp->view_k == NULL ||
        cp->view_v == NULL || cp->gview_k == NULL || cp->gview_v == NULL || cp->gdev == NULL || cp->stage == NULL ||
        cp->gstage == NULL || cp->view_pos == NULL ||
        (k > 0 &&
         (cp->codec == NULL || cp->ucache == NULL || cp->zcache == NULL || cp->du0 == NULL || cp->rot == NULL)) ||
        pos == NULL) {
        free(pos);
        cp_attention_free(cp);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "context parallelism: out of memory for K/V buffers");
    }
    cp->layout.per_rank = cp->nloc;
    cp_positions(layout, cp->rank, pos);
    model_set_positions(m, pos);
    free(pos);
    m->attn = (attn_impl){.forward = cp_forward, .backward = cp_backward, .ctx = cp};
    cp->exchange = true;
    return WANCP_OK;
}

static void free_codecs(cp_attention *cp, int layers)
{
    for (int l = 0; cp->codec != NULL && l < layers; l++)
        for (int w = 0; w < 2; w++)
            kv_codec_free(&cp->codec[l][w]);
}

int cp_attention_set_compression(cp_attention *cp, const model *m, bool on, char *err, size_t errlen)
{
    if (!on) {
        cp->compress = false;
        return WANCP_OK;
    }
    if (m->cfg.psi_k < 1 || cp->codec == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "compression needs a model with heads psi (psi_k >= 1)");
    free_codecs(cp, m->cfg.n_layers);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < 2; w++) {
            const layer_params *lp = &m->layers[l];
            const uint64_t seed = cp->opt.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(2 * l + w + 1));
            int rc = kv_codec_init(&cp->codec[l][w], kv_dim(m), w == 0 ? m->cfg.rank_k : m->cfg.rank_v, m->cfg.psi_k,
                                   model_kv_bases(&m->cfg), cp->opt.planes, cp->opt.cheap_rotation,
                                   model_param(m, w == 0 ? lp->u0_k : lp->u0_v), seed, err, errlen);
            if (rc != WANCP_OK) {
                free_codecs(cp, m->cfg.n_layers);
                return rc;
            }
        }
    cp->compress = true;
    return WANCP_OK;
}

int cp_attention_refresh_bases(cp_attention *cp, const model *m, char *err, size_t errlen)
{
    for (int l = 0; cp->compress && l < m->cfg.n_layers; l++)
        for (int w = 0; w < 2; w++)
            if (kv_codec_set_u0(&cp->codec[l][w], model_param(m, w == 0 ? m->layers[l].u0_k : m->layers[l].u0_v)) !=
                WANCP_OK)
                return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "compression: out of memory for the bases");
    return WANCP_OK;
}

float *cp_attention_basis_grads(const cp_attention *cp, const model *m, int layer)
{
    return cp->du0 + (size_t)layer * kv_dim(m) * (m->cfg.rank_k + m->cfg.rank_v);
}

void cp_attention_zero_basis_grads(cp_attention *cp, const model *m)
{
    if (cp->du0 != NULL)
        memset(cp->du0, 0, (size_t)m->cfg.n_layers * kv_dim(m) * (m->cfg.rank_k + m->cfg.rank_v) * sizeof *cp->du0);
}

double cp_attention_orthonormality_error(const cp_attention *cp, const model *m)
{
    double worst = 0;
    const int kvd = kv_dim(m), chunks = cp_total_chunks(&cp->layout);
    for (int l = 0; m->cfg.psi_k > 0 && l < m->cfg.n_layers; l++) {
        worst = fmax(worst, subspace_orthonormality_error(model_param(m, m->layers[l].u0_k), kvd, m->cfg.rank_k));
        worst = fmax(worst, subspace_orthonormality_error(model_param(m, m->layers[l].u0_v), kvd, m->cfg.rank_v));
        for (int b = 0; cp_attention_layer_compressed(cp, m, l) && b < m->batch; b++)
            for (int j = 0; j < chunks; j++) {
                const float *u = u_cache(cp, m, l, b, j);
                if (cp_owner(&cp->layout, j) != cp->rank && !cp_rank_needs(&cp->layout, cp->rank, j))
                    continue; /* never seen here */
                worst = fmax(worst, subspace_orthonormality_error(u, kvd, m->cfg.rank_k));
                worst = fmax(worst, subspace_orthonormality_error(u + (size_t)kvd * m->cfg.rank_k, kvd, m->cfg.rank_v));
            }
    }
    return worst;
}

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t cp_attention_shared_hash(const cp_attention *cp, const model *m)
{
    uint64_t h = 1469598103934665603ull;
    const int half = model_head_dim(&m->cfg) / 2;
    h = fnv(h, &cp->layout.chunk, sizeof cp->layout.chunk);
    h = fnv(h, m->rope_cos, (size_t)m->cfg.context * half * sizeof(float));
    h = fnv(h, m->rope_sin, (size_t)m->cfg.context * half * sizeof(float));
    h = fnv(h, m->params + m->table.trainable, (m->table.total - m->table.trainable) * sizeof(float));
    for (int l = 0; cp->compress && l < m->cfg.n_layers; l++)
        for (int w = 0; w < 2; w++)
            for (int b = 0; b < cp->codec[l][w].bases; b++) {
                const subspace *s = &cp->codec[l][w].s[b];
                const int shape[4] = {s->d, s->r, s->h, s->k};
                h = fnv(h, shape, sizeof shape);
                h = fnv(h, s->u0, (size_t)s->d * s->r * sizeof(float));
                h = fnv(h, s->qa, (size_t)s->d * s->h * sizeof(float));
                h = fnv(h, s->qb, (size_t)s->d * s->h * sizeof(float));
                h = fnv(h, s->omega, (size_t)s->h * s->k * sizeof(float));
            }
    return h;
}

/* The same messages as one step's cp_forward and cp_backward, from the same buffers. */
int cp_attention_exchange_only(cp_attention *cp, model *m, char *err, size_t errlen)
{
    const int P = cp->layout.ranks, nchunks = cp_total_chunks(&cp->layout);
    if (P == 1)
        return WANCP_OK;
    for (int pass = 0; pass < 2; pass++) /* 0: forward, every layer; 1: backward, every layer */
        for (int layer = 0; layer < m->cfg.n_layers; layer++)
            for (int b = 0; b < m->batch; b++) {
                const size_t bytes = cp_attention_message_bytes(cp, m, layer);
                comm_request *reqs[2 * CP_MAX_LOCAL * COMM_MAX_RANKS];
                int nreq = 0, rc = WANCP_OK;
                const int cls = pass == 0 ? COMM_KV_FORWARD : COMM_KV_BACKWARD;
                for (int j = 0; j < nchunks && rc == WANCP_OK; j++) {
                    int owner = cp_owner(&cp->layout, j);
                    if (owner == cp->rank || !cp_rank_needs(&cp->layout, cp->rank, j))
                        continue;
                    rc = pass == 0 ? comm_irecv(cp->comm, owner, cls, recv_slot(cp, m, layer, b, j), bytes,
                                                &reqs[nreq++], err, errlen)
                                   : comm_isend(cp->comm, owner, cls, cp->grad_out + (size_t)j * cp->slot_bytes, bytes,
                                                &reqs[nreq++], err, errlen);
                }
                for (int c = 0; c < cp->nloc && rc == WANCP_OK; c++)
                    for (int r = 0; r < P && rc == WANCP_OK; r++) {
                        if (r == cp->rank || !cp_rank_needs(&cp->layout, r, cp->mine[c]))
                            continue;
                        rc = pass == 0
                                 ? comm_isend(cp->comm, r, cls, cp->send_msg + (size_t)c * cp->slot_bytes, bytes,
                                              &reqs[nreq++], err, errlen)
                                 : comm_irecv(cp->comm, r, cls, cp->grad_in + ((size_t)c * P + r) * cp->slot_bytes,
                                              bytes, &reqs[nreq++], err, errlen);
                    }
                if (rc == WANCP_OK)
                    rc = comm_wait_all(cp->comm, reqs, nreq, err, errlen);
                if (rc != WANCP_OK)
                    return rc;
            }
    return WANCP_OK;
}

void cp_attention_free(cp_attention *cp)
{
    free_codecs(cp, cp->layers);
    free(cp->recv_msg);
    free(cp->send_msg);
    free(cp->grad_out);
    free(cp->grad_in);
    free(cp->own);
    free(cp->acc);
    free(cp->part);
    free(cp->gpart);
    if (cp->ops != NULL) {
        cp->ops->release(cp->view_k);
        cp->ops->release(cp->view_v);
        cp->ops->release(cp->gview_k);
        cp->ops->release(cp->gview_v);
        cp->ops->release(cp->gdev);
        cp->ops->host_release(cp->stage);
        cp->ops->host_release(cp->gstage);
        cp_codec_device_free(cp);
    }
    free(cp->view_pos);
    free(cp->codec);
    free(cp->ucache);
    free(cp->zcache);
    free(cp->du0);
    free(cp->rot);
    *cp = (cp_attention){0};
}
