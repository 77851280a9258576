/* The codec's stages around attention (METHOD.md sections 3-4): encode a local chunk, view a
 * chunk (decompress), this rank's gradient of a chunk it viewed, and the owner's sums; on the
 * host with K and V on two threads, or through the ops table on a device backend. */
#include "cp_internal.h"

#include "../base/status.h"
#include "../util/thread_pool.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    const size_t n = (size_t)kv_dim(m) * k->r;
    float *dst = cp_attention_basis_grads(cp, m, layer) + (w == 0 ? 0 : (size_t)kv_dim(m) * m->cfg.rank_k);
    float *rot = cp->rot + (size_t)w * n_rot(cp, m);
    kv_codec_unrotate(k, theta, k->gu, rot);
    for (size_t i = 0; i < n; i++)
        dst[i] += rot[i];
}

/* ---- the codec's work, K and V side by side ----
 * K's and V's codecs share nothing (their own scratch, their own rows of dZ, their own heads
 * psi), so each stretch below runs K on one thread and V on another, each product on one
 * BLAS thread (kv_codec_serial_begin); the calling thread waits for both. */

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
    const size_t n = (size_t)kv_dim(m) * k->r;
    memcpy(save ? at : k->u, save ? k->u : at, n * sizeof *at);
}

static void codec_task(void *ctx, int w)
{
    codec_job *job = ctx;
    cp_attention *cp = job->cp;
    model *m = job->m;
    const int chunk = cp->layout.chunk, kvd = kv_dim(m), l = job->layer, b = job->b;
    kv_codec *k = &cp->codec[l][w];
    const size_t cn = (size_t)chunk * k->r;
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
    const int r = k->r, nk = k->k;
    const size_t wn = kv_codec_w_floats(k);
    const size_t cn = (size_t)chunk * r, ur = (size_t)kvd * r;
    float *th = w == 0 ? job->p.th_k : job->p.th_v, *comp = w == 0 ? job->p.c_k : job->p.c_v;
    switch (job->stage) {
    case ENCODE: { /* zbar as a product with ones; theta and U on the host; C = Z U on the device */
        const float *z = z_of(cp, m, l, b, job->c, w);
        if (!after) {
            o->matmul(dv->vec, cp->ones, z, 1, kvd, chunk, false, false, 1.0f / (float)chunk, 0.0f);
            o->download(dv->zbar, dv->vec, (size_t)kvd);
            o->download(dv->w, psi_w(m, l, w), wn);
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
        kv_codec_rotate_grad(k, th, k->gu, tau);
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
            o->download(dv->w, psi_w(m, l, w), wn);
            break;
        }
        memcpy(k->gu, dv->hgu, ur * sizeof *k->gu);
        float own[64];
        kv_codec_rotate_grad(k, th, k->gu, own);
        for (int i = 0; i < nk; i++)
            dtheta[i] += own[i];
        o->matmul(dz, dv->comp, dv->u, chunk, kvd, r, false, true, 1.0f, 1.0f); /* dZ += dC U^T */
        kv_codec_owner_row(k, dv->w, dtheta, chunk, k->zrow);
        o->upload(dv->vec, k->zrow, (size_t)kvd);
        o->matmul(dz, cp->ones, dv->vec, chunk, kvd, 1, false, false, 1.0f, 1.0f); /* every row += row */
        memset(dv->dw, 0, wn * sizeof *dv->dw);
        memset(dv->db, 0, (size_t)nk * sizeof *dv->db);
        kv_codec_head_grad(k, dtheta, dv->dw, dv->db);
        o->upload(dv->tmp, dv->dw, wn);
        o->add(model_grad(m, w == 0 ? lp->psi_wk : lp->psi_wv), dv->tmp, wn);
        o->upload(dv->vec, dv->db, (size_t)nk);
        o->add(model_grad(m, w == 0 ? lp->psi_bk : lp->psi_bv), dv->vec, (size_t)nk);
        accumulate_basis_grad(cp, m, l, w, th);
        break;
    }
    }
}

void cp_codec_run(codec_job *job)
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

/* The codec's buffers for a device backend (cp_codec_device), and the ones vector. */
bool cp_codec_device_alloc(cp_attention *cp, const model *m, size_t rmax)
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

void cp_codec_device_free(cp_attention *cp)
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
