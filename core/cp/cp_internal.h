#ifndef WANCP_CP_INTERNAL_H
#define WANCP_CP_INTERNAL_H

/* Shared by cp_attention.c (the exchange around attention) and cp_codec.c (the codec's
 * stages, on the host or through the ops table); nothing outside core/cp includes it. */
#include "cp_attention.h"

#include <stdbool.h>
#include <stddef.h>

static inline int kv_dim(const model *m) { return model_kv_dim(&m->cfg); }

static inline float *own_state(const cp_attention *cp, const model *m, int layer, int b, int c)
{
    return cp->own + (((size_t)layer * m->batch + b) * cp->nloc + c) * cp->own_floats;
}

/* U_theta of K then V for chunk j of sequence b: computed once in the forward pass. */
static inline float *u_cache(const cp_attention *cp, const model *m, int layer, int b, int j)
{
    const size_t chunks = (size_t)cp_total_chunks(&cp->layout);
    const size_t per = (size_t)kv_dim(m) * (m->cfg.rank_k + m->cfg.rank_v);
    return cp->ucache + (((size_t)layer * m->batch + b) * chunks + j) * per;
}

/* zbar of K then V for local chunk c of sequence b. */
static inline float *zbar_cache(const cp_attention *cp, const model *m, int layer, int b, int c)
{
    return cp->zcache + (((size_t)layer * m->batch + b) * cp->nloc + c) * 2 * kv_dim(m);
}

/* Parts of a compressed chunk's floats: theta_K, theta_V, C_K, C_V. */
typedef struct parts {
    float *th_k, *th_v, *c_k, *c_v;
} parts;

static inline parts parts_of(const model *m, int chunk, float *base)
{
    const int k = m->cfg.psi_k;
    return (parts){base, base + k, base + 2 * k, base + 2 * k + (size_t)chunk * m->cfg.rank_k};
}

/* One stage of the codec for one chunk, K and V side by side (cp_codec.c). */
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

/* Runs one stage for K and V, timed into cp->codec_s: side by side on two threads on the
 * cpu; on a device backend both sides' device work first, one wait, then both sides' host
 * maths. */
void cp_codec_run(codec_job *job);

/* The codec's buffers for a device backend (cp_codec_device), and the ones vector; freed
 * by cp_codec_device_free. */
bool cp_codec_device_alloc(cp_attention *cp, const model *m, size_t rmax);
void cp_codec_device_free(cp_attention *cp);

#endif
