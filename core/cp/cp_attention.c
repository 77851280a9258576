#include "cp_attention.h"
#include "cp_message.h"

#include "../util/thread_pool.h"
#include "../status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- shapes and slots ---- */

static int kv_dim(const model *m) { return model_kv_dim(&m->cfg); }

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

static float *own_state(const cp_attention *cp, const model *m, int layer, int b, int c)
{
    return cp->own + (((size_t)layer * m->batch + b) * cp->nloc + c) * cp->own_floats;
}

/* U_theta of K then V for chunk j of sequence b: computed once in the forward pass. */
static float *u_cache(const cp_attention *cp, const model *m, int layer, int b, int j)
{
    const size_t chunks = (size_t)cp_total_chunks(&cp->layout);
    const size_t per = (size_t)kv_dim(m) * (m->cfg.rank_k + m->cfg.rank_v);
    return cp->ucache + (((size_t)layer * m->batch + b) * chunks + j) * per;
}

/* zbar of K then V for local chunk c of sequence b. */
static float *zbar_cache(const cp_attention *cp, const model *m, int layer, int b, int c)
{
    return cp->zcache + (((size_t)layer * m->batch + b) * cp->nloc + c) * 2 * kv_dim(m);
}

/* Floats of one side's scratch rotation: d_kv x the larger rank. */
static size_t n_rot(const cp_attention *cp, const model *m)
{
    (void)cp;
    return (size_t)kv_dim(m) * (m->cfg.rank_k > m->cfg.rank_v ? m->cfg.rank_k : m->cfg.rank_v);
}

/* du0 (K or V part of layer l) += R(-phi) codec->gu: dL/dU_theta taken back to U0. */
static void accumulate_basis_grad(cp_attention *cp, const model *m, int layer, int w, const float *theta)
{
    if (!cp->opt.stiefel)
        return;
    kv_codec *k = &cp->codec[layer][w];
    const size_t n = (size_t)kv_dim(m) * k->s.r;
    float *dst = cp_attention_basis_grads(cp, m, layer) + (w == 0 ? 0 : (size_t)kv_dim(m) * m->cfg.rank_k);
    float *rot = cp->rot + (size_t)w * n_rot(cp, m);
    subspace_apply_rotation(&k->s, theta, -1, k->gu, rot);
    for (size_t i = 0; i < n; i++)
        dst[i] += rot[i];
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

/* Parts of a compressed chunk's floats: theta_K, theta_V, C_K, C_V. */
typedef struct parts {
    float *th_k, *th_v, *c_k, *c_v;
} parts;

static parts parts_of(const model *m, int chunk, float *base)
{
    const int k = m->cfg.psi_k;
    return (parts){base, base + k, base + 2 * k, base + 2 * k + (size_t)chunk * m->cfg.rank_k};
}

/* ---- forward ---- */

/* ---- the codec's work, K and V side by side ----
 * K's and V's codecs share nothing (their own scratch, their own rows of dZ, their own heads
 * psi), so each stretch below runs K on one thread and V on another, each product on one
 * BLAS thread (kv_codec_serial_begin); the calling thread waits for both. */

enum codec_stage { ENCODE, VIEW, GRAD, FINISH };

typedef struct codec_job {
    cp_attention *cp;
    model *m;
    enum codec_stage stage;
    int layer, b, c, j; /* c: a local chunk (ENCODE, FINISH, or VIEW's chunk when local, else -1); j: global */
    bool forward;       /* VIEW: the forward pass, which computes a remote chunk's U */
    parts p;            /* VIEW, GRAD: the chunk's theta and C */
    parts g;            /* GRAD: where E and tau go */
} codec_job;

static const float *psi_w(const model *m, int layer, int w)
{
    return model_param(m, w == 0 ? m->layers[layer].psi_wk : m->layers[layer].psi_wv);
}

static const float *psi_b(const model *m, int layer, int w)
{
    return model_param(m, w == 0 ? m->layers[layer].psi_bk : m->layers[layer].psi_bv);
}

/* Z of local chunk c (K before RoPE, or V). */
static float *z_of(const cp_attention *cp, const model *m, int layer, int b, int c, int w)
{
    const size_t rows = ((size_t)b * m->seq + (size_t)c * cp->layout.chunk) * kv_dim(m);
    return (w == 0 ? m->acts[layer].k_pre : m->acts[layer].v) + rows;
}

static void swap_u_one(cp_attention *cp, const model *m, int layer, int b, int j, int w, bool save)
{
    float *at = u_cache(cp, m, layer, b, j) + (w == 0 ? 0 : (size_t)kv_dim(m) * m->cfg.rank_k);
    kv_codec *k = &cp->codec[layer][w];
    const size_t n = (size_t)kv_dim(m) * k->s.r;
    memcpy(save ? at : k->u, save ? k->u : at, n * sizeof *at);
}

static void codec_task(void *ctx, int w)
{
    codec_job *job = ctx;
    cp_attention *cp = job->cp;
    model *m = job->m;
    const int chunk = cp->layout.chunk, kvd = kv_dim(m), l = job->layer, b = job->b;
    kv_codec *k = &cp->codec[l][w];
    const size_t cn = (size_t)chunk * k->s.r;
    float *th = w == 0 ? job->p.th_k : job->p.th_v, *comp = w == 0 ? job->p.c_k : job->p.c_v;
    switch (job->stage) {
    case ENCODE: { /* theta, U, C (rounded as the wire will carry it) of local chunk c */
        const float *z = z_of(cp, m, l, b, job->c, w);
        kv_codec_theta(k, psi_w(m, l, w), psi_b(m, l, w), z, chunk, th);
        memcpy(zbar_cache(cp, m, l, b, job->c) + (size_t)w * kvd, k->zbar, (size_t)kvd * sizeof(float));
        kv_codec_basis(k, th);
        kv_codec_compress(k, z, chunk, comp);
        wire_round(comp, cn, cp->opt.wire_bf16);
        swap_u_one(cp, m, l, b, job->j, w, true);
        break;
    }
    case VIEW: { /* decompress (and RoPE for K) chunk j */
        float *view = w == 0 ? cp->view_k : cp->view_v;
        if (job->forward && job->c < 0) {
            kv_codec_basis(k, th);
            swap_u_one(cp, m, l, b, job->j, w, true);
        } else {
            swap_u_one(cp, m, l, b, job->j, w, false);
        }
        kv_codec_decompress(k, comp, chunk, view);
        break;
    }
    case GRAD: { /* this rank's E and tau of chunk j (U at chunk j's, left by VIEW; gview_k before RoPE) */
        const float *g = w == 0 ? cp->gview_k : cp->gview_v;
        float *e = w == 0 ? job->g.c_k : job->g.c_v, *tau = w == 0 ? job->g.th_k : job->g.th_v;
        kv_codec_consumer_grad(k, th, comp, g, chunk, e, tau);
        accumulate_basis_grad(cp, m, l, w, th);
        wire_round(e, cn, cp->opt.wire_bf16);
        break;
    }
    case FINISH: { /* the owner's sums of local chunk c into dZ, dW_psi, db_psi */
        const parts d = parts_of(m, chunk, cp->acc + (size_t)job->c * cp->own_floats);
        const layer_params *lp = &m->layers[l];
        swap_u_one(cp, m, l, b, job->j, w, false);
        memcpy(k->zbar, zbar_cache(cp, m, l, b, job->c) + (size_t)w * kvd, (size_t)kvd * sizeof(float));
        const size_t rows = ((size_t)b * m->seq + (size_t)job->c * chunk) * kvd;
        kv_codec_owner_grad(k, psi_w(m, l, w), th, z_of(cp, m, l, b, job->c, w), w == 0 ? d.c_k : d.c_v,
                            w == 0 ? d.th_k : d.th_v, chunk, (w == 0 ? m->dk_pre : m->dv) + rows,
                            model_grad(m, w == 0 ? lp->psi_wk : lp->psi_wv),
                            model_grad(m, w == 0 ? lp->psi_bk : lp->psi_bv));
        accumulate_basis_grad(cp, m, l, w, th);
        break;
    }
    }
}

/* The same stages on a device backend: every product over the chunk's rows is an op on op
 * memory, in stream order; the host computes theta, U_theta and the rotation's gradient from
 * what it downloads (d, r and k numbers). Each side runs in two halves: before (`after`
 * false) issues the device work and the downloads the host needs; after, once the caller
 * has waited for both sides at once, the host maths and the device work that follows it. */
static void codec_task_device(codec_job *job, int w, bool after)
{
    cp_attention *cp = job->cp;
    model *m = job->m;
    const ops *o = m->ops;
    const int chunk = cp->layout.chunk, kvd = kv_dim(m), l = job->layer, b = job->b;
    kv_codec *k = &cp->codec[l][w];
    cp_codec_device *dv = &cp->dev[w];
    const int r = k->s.r, nk = k->s.k;
    const size_t cn = (size_t)chunk * r, ur = (size_t)kvd * r;
    float *th = w == 0 ? job->p.th_k : job->p.th_v, *comp = w == 0 ? job->p.c_k : job->p.c_v;
    switch (job->stage) {
    case ENCODE: { /* zbar as a product with ones; theta and U on the host; C = Z U on the device */
        const float *z = z_of(cp, m, l, b, job->c, w);
        if (!after) {
            o->matmul(dv->vec, cp->ones, z, 1, kvd, chunk, false, false, 1.0f / (float)chunk, 0.0f);
            o->download(dv->zbar, dv->vec, (size_t)kvd);
            o->download(dv->w, psi_w(m, l, w), (size_t)nk * kvd);
            o->download(dv->b, psi_b(m, l, w), (size_t)nk);
            break;
        }
        memcpy(k->zbar, dv->zbar, (size_t)kvd * sizeof(float));
        kv_codec_head(k, dv->w, dv->b, th);
        memcpy(zbar_cache(cp, m, l, b, job->c) + (size_t)w * kvd, k->zbar, (size_t)kvd * sizeof(float));
        kv_codec_basis(k, th);
        o->upload(dv->u, k->u, ur);
        o->matmul(dv->comp, z, dv->u, chunk, r, kvd, false, false, 1.0f, 0.0f);
        if (cp->opt.wire_bf16)
            o->round_bf16(dv->comp, cn);
        o->download(comp, dv->comp, cn); /* read after the sync before sending */
        swap_u_one(cp, m, l, b, job->j, w, true);
        break;
    }
    case VIEW: { /* view = C U^T; leaves U and C on the device for the backward's GRAD */
        if (after)
            break;
        if (job->forward && job->c < 0) {
            kv_codec_basis(k, th);
            swap_u_one(cp, m, l, b, job->j, w, true);
        } else {
            swap_u_one(cp, m, l, b, job->j, w, false);
        }
        o->upload(dv->u, k->u, ur);
        o->upload(dv->comp, comp, cn);
        o->matmul(w == 0 ? cp->view_k : cp->view_v, dv->comp, dv->u, chunk, kvd, r, false, true, 1.0f, 0.0f);
        break;
    }
    case GRAD: { /* E = G U and dL/dU = G^T C on the device; tau from it on the host */
        const float *g = w == 0 ? cp->gview_k : cp->gview_v;
        float *e = w == 0 ? job->g.c_k : job->g.c_v, *tau = w == 0 ? job->g.th_k : job->g.th_v;
        if (!after) {
            o->matmul(dv->e, g, dv->u, chunk, r, kvd, false, false, 1.0f, 0.0f);
            o->matmul(dv->gu, g, dv->comp, kvd, r, chunk, true, false, 1.0f, 0.0f);
            o->download(dv->he, dv->e, cn);
            o->download(dv->hgu, dv->gu, ur);
            break;
        }
        memcpy(e, dv->he, cn * sizeof *e);
        memcpy(k->gu, dv->hgu, ur * sizeof *k->gu);
        subspace_rotate_grad(&k->s, th, k->gu, tau);
        accumulate_basis_grad(cp, m, l, w, th);
        wire_round(e, cn, cp->opt.wire_bf16);
        break;
    }
    case FINISH: { /* the owner's sums into dZ (device), dW_psi and db_psi */
        const parts d = parts_of(m, chunk, cp->acc + (size_t)job->c * cp->own_floats);
        const layer_params *lp = &m->layers[l];
        float *dtheta = w == 0 ? d.th_k : d.th_v;
        const float *z = z_of(cp, m, l, b, job->c, w);
        float *dz = (w == 0 ? m->dk_pre : m->dv) + ((size_t)b * m->seq + (size_t)job->c * chunk) * kvd;
        if (!after) {
            swap_u_one(cp, m, l, b, job->j, w, false);
            memcpy(k->zbar, zbar_cache(cp, m, l, b, job->c) + (size_t)w * kvd, (size_t)kvd * sizeof(float));
            o->upload(dv->u, k->u, ur);
            o->upload(dv->comp, w == 0 ? d.c_k : d.c_v, cn);
            o->matmul(dv->gu, z, dv->comp, kvd, r, chunk, true, false, 1.0f, 0.0f); /* Z^T dC */
            o->download(dv->hgu, dv->gu, ur);
            o->download(dv->w, psi_w(m, l, w), (size_t)nk * kvd);
            break;
        }
        memcpy(k->gu, dv->hgu, ur * sizeof *k->gu);
        float own[64];
        subspace_rotate_grad(&k->s, th, k->gu, own);
        for (int i = 0; i < nk; i++)
            dtheta[i] += own[i];
        o->matmul(dz, dv->comp, dv->u, chunk, kvd, r, false, true, 1.0f, 1.0f); /* dZ += dC U^T */
        kv_codec_owner_row(k, dv->w, dtheta, chunk, k->zrow);
        o->upload(dv->vec, k->zrow, (size_t)kvd);
        o->matmul(dz, cp->ones, dv->vec, chunk, kvd, 1, false, false, 1.0f, 1.0f); /* every row += row */
        memset(dv->dw, 0, (size_t)nk * kvd * sizeof *dv->dw);
        memset(dv->db, 0, (size_t)nk * sizeof *dv->db);
        kv_codec_head_grad(k, dtheta, dv->dw, dv->db);
        o->upload(dv->tmp, dv->dw, (size_t)nk * kvd);
        o->add(model_grad(m, w == 0 ? lp->psi_wk : lp->psi_wv), dv->tmp, (size_t)nk * kvd);
        o->upload(dv->vec, dv->db, (size_t)nk);
        o->add(model_grad(m, w == 0 ? lp->psi_bk : lp->psi_bv), dv->vec, (size_t)nk);
        accumulate_basis_grad(cp, m, l, w, th);
        break;
    }
    }
}

/* Runs one stage for K and V, timed into codec_s: side by side on two threads on the cpu;
 * on a device backend both sides' device work first, one wait, then both sides' host maths. */
static void run_codec(codec_job *job)
{
    const double t0 = now_s();
    if (job->m->ops->host_memory) {
        const int threads = kv_codec_serial_begin();
        pool_run(2, codec_task, job);
        kv_codec_serial_end(threads);
    } else {
        codec_task_device(job, 0, false);
        codec_task_device(job, 1, false);
        if (job->stage != VIEW)
            job->m->ops->sync();
        codec_task_device(job, 0, true);
        codec_task_device(job, 1, true);
    }
    job->cp->codec_s += now_s() - t0;
}

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
    run_codec(&job);
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
    run_codec(&job);
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
    run_codec(&job);
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
    run_codec(&job);
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

/* The codec's buffers for a device backend (cp_codec_device), and the ones vector. */
static bool alloc_codec_device(cp_attention *cp, const model *m, size_t rmax)
{
    const ops *o = m->ops;
    const size_t chunk = (size_t)cp->layout.chunk, kvd = (size_t)kv_dim(m), k = (size_t)m->cfg.psi_k;
    const size_t vec = kvd > k ? kvd : k;
    bool ok = (cp->ones = o->alloc(chunk * sizeof(float))) != NULL;
    for (int w = 0; w < 2 && ok; w++) {
        cp_codec_device *dv = &cp->dev[w];
        dv->u = o->alloc(kvd * rmax * sizeof(float));
        dv->comp = o->alloc(chunk * rmax * sizeof(float));
        dv->e = o->alloc(chunk * rmax * sizeof(float));
        dv->gu = o->alloc(kvd * rmax * sizeof(float));
        dv->vec = o->alloc(vec * sizeof(float));
        dv->tmp = o->alloc(k * kvd * sizeof(float));
        dv->w = o->host_alloc(k * kvd * sizeof(float));
        dv->b = o->host_alloc(k * sizeof(float));
        dv->zbar = o->host_alloc(kvd * sizeof(float));
        dv->he = o->host_alloc(chunk * rmax * sizeof(float));
        dv->hgu = o->host_alloc(kvd * rmax * sizeof(float));
        dv->dw = calloc(k * kvd, sizeof(float)); /* plain memory: upload's sources are */
        dv->db = calloc(k, sizeof(float));
        ok = dv->u != NULL && dv->comp != NULL && dv->e != NULL && dv->gu != NULL && dv->vec != NULL &&
             dv->tmp != NULL && dv->w != NULL && dv->b != NULL && dv->zbar != NULL && dv->he != NULL &&
             dv->hgu != NULL && dv->dw != NULL && dv->db != NULL;
    }
    float *ones = ok ? malloc(chunk * sizeof *ones) : NULL;
    for (size_t i = 0; ones != NULL && i < chunk; i++)
        ones[i] = 1.0f;
    if (ones != NULL)
        o->upload(cp->ones, ones, chunk);
    free(ones);
    return ones != NULL;
}

static void free_codec_device(cp_attention *cp)
{
    const ops *o = cp->ops;
    o->release(cp->ones);
    for (int w = 0; w < 2; w++) {
        cp_codec_device *dv = &cp->dev[w];
        o->release(dv->u);
        o->release(dv->comp);
        o->release(dv->e);
        o->release(dv->gu);
        o->release(dv->vec);
        o->release(dv->tmp);
        o->host_release(dv->w);
        o->host_release(dv->b);
        o->host_release(dv->zbar);
        o->host_release(dv->he);
        o->host_release(dv->hgu);
        free(dv->dw);
        free(dv->db);
    }
}

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
        device_ok = alloc_codec_device(cp, m, rmax);
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
                                   cp->opt.planes, cp->opt.cheap_rotation, model_param(m, w == 0 ? lp->u0_k : lp->u0_v),
                                   seed, err, errlen);
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
            if (subspace_set_u0(&cp->codec[l][w].s, model_param(m, w == 0 ? m->layers[l].u0_k : m->layers[l].u0_v)) !=
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
        for (int w = 0; w < 2; w++) {
            const subspace *s = &cp->codec[l][w].s;
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
        free_codec_device(cp);
    }
    free(cp->view_pos);
    free(cp->codec);
    free(cp->ucache);
    free(cp->zcache);
    free(cp->du0);
    free(cp->rot);
    *cp = (cp_attention){0};
}
