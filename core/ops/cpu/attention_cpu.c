/*
 * Blockwise causal attention with an online softmax (the FlashAttention recurrence), on
 * the CPU: each (query block, key block) pair is two sgemm calls and a row loop, so the
 * work stays in BLAS and memory stays O(block^2) whatever the sequence length. The same
 * block routine serves one process (all keys local) and context parallelism (key blocks
 * from other ranks merged as they arrive).
 */
#include "ops_cpu_internal.h"

#include "fast_exp.h"
#include "../../util/thread_pool.h"

#include <cblas.h>

/* Runs fn over count tasks on the pool with OpenBLAS single-threaded meanwhile: the tasks
 * already occupy every core, and OpenBLAS threading its own part of each small product
 * from several callers at once only makes them queue for its threads. */
static void run_heads(int count, pool_task *fn, void *ctx)
{
    int blas_threads = openblas_get_num_threads();
    if (pool_threads() > 1 && blas_threads > 1)
        openblas_set_num_threads(1);
    pool_run(count, fn, ctx);
    if (pool_threads() > 1 && blas_threads > 1)
        openblas_set_num_threads(blas_threads);
}
#include <math.h>
#include <string.h>

/* Two (block, block) tiles per head, so heads can run on different threads. */
size_t attn_scratch_floats(const attn_shape *shape) { return 2 * (size_t)shape->n_heads * shape->block * shape->block; }

void cpu_attn_begin(attn_state *st, const attn_shape *shape)
{
    size_t rows = (size_t)shape->n_heads * st->tq;
    memset(st->acc, 0, (size_t)st->tq * shape->n_heads * shape->head_dim * sizeof *st->acc);
    for (size_t i = 0; i < rows; i++) {
        st->max[i] = -INFINITY;
        st->sum[i] = 0.0f;
    }
}

/* Sets p[0..bj) to -inf where key j is in the future of query position qp. */
static void mask_row(float *p, const int32_t *k_pos, int bj, int32_t qp)
{
    for (int j = 0; j < bj; j++)
        if (k_pos[j] > qp)
            p[j] = -INFINITY;
}

/* p[j] = exp(p[j] - shift), returning the sum. */
WANCP_HOT static float exp_shift_sum(float *p, int n, float shift)
{
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        p[j] = fast_exp(p[j] - shift);
        sum += p[j];
    }
    return sum;
}

WANCP_HOT static float row_max(const float *p, int n)
{
    float m = -INFINITY;
    for (int j = 0; j < n; j++)
        m = p[j] > m ? p[j] : m;
    return m;
}

/* The arguments of one attn_block call, shared by its per-head tasks. */
typedef struct attn_fwd_job {
    attn_state *st;
    const float *q, *k, *v;
    const int32_t *q_pos, *k_pos;
    int tk;
    const attn_shape *shape;
    float *scratch;
} attn_fwd_job;

static void attn_fwd_head(void *ctx, int h)
{
    const attn_fwd_job *job = ctx;
    const attn_shape *shape = job->shape;
    attn_state *st = job->st;
    const float *q = job->q, *k = job->k, *v = job->v;
    const int32_t *q_pos = job->q_pos, *k_pos = job->k_pos;
    const int H = shape->n_heads, hd = shape->head_dim, B = shape->block, tq = st->tq, tk = job->tk;
    const int qs = H * hd, ks = shape->n_kv_heads * hd, kh = h / (H / shape->n_kv_heads);
    const float scale = 1.0f / sqrtf((float)hd);
    float *s = job->scratch + (size_t)h * 2 * B * B; /* (B, B) scores, then probabilities */
    for (int i0 = 0; i0 < tq; i0 += B) {
        const int bi = tq - i0 < B ? tq - i0 : B;
        for (int j0 = 0; j0 < tk; j0 += B) {
            const int bj = tk - j0 < B ? tk - j0 : B;
            if (k_pos[j0] > q_pos[i0 + bi - 1])
                break; /* this and every later key block is in the future of every query */
            const int fully_visible = k_pos[j0 + bj - 1] <= q_pos[i0];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, scale, q + (size_t)i0 * qs + h * hd, qs,
                        k + (size_t)j0 * ks + kh * hd, ks, 0.0f, s, bj);
            for (int r = 0; r < bi; r++) {
                float *p = s + (size_t)r * bj;
                if (!fully_visible)
                    mask_row(p, k_pos + j0, bj, q_pos[i0 + r]);
                float *m = st->max + (size_t)h * tq + i0 + r, *l = st->sum + (size_t)h * tq + i0 + r;
                float m_new = row_max(p, bj);
                m_new = *m > m_new ? *m : m_new;
                if (m_new == -INFINITY) { /* no visible key yet: contributes nothing */
                    memset(p, 0, (size_t)bj * sizeof *p);
                    continue;
                }
                float alpha = fast_exp(*m - m_new);
                *l = *l * alpha + exp_shift_sum(p, bj, m_new);
                *m = m_new;
                if (alpha != 1.0f) {
                    float *acc = st->acc + (size_t)(i0 + r) * qs + h * hd;
                    for (int d = 0; d < hd; d++)
                        acc[d] *= alpha;
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, hd, bj, 1.0f, s, bj,
                        v + (size_t)j0 * ks + kh * hd, ks, 1.0f, st->acc + (size_t)i0 * qs + h * hd, qs);
        }
    }
}

/* Heads are independent (each owns its columns of acc and its rows of max and sum). */
void cpu_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                    const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch)
{
    attn_fwd_job job = {st, q, k, v, q_pos, k_pos, tk, shape, scratch};
    run_heads(shape->n_heads, attn_fwd_head, &job);
}

void cpu_attn_end(float *o, float *lse, const attn_state *st, const attn_shape *shape)
{
    const int H = shape->n_heads, hd = shape->head_dim, tq = st->tq, qs = H * hd;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < tq; i++) {
            float l = st->sum[(size_t)h * tq + i];
            float inv = l > 0.0f ? 1.0f / l : 0.0f;
            const float *acc = st->acc + (size_t)i * qs + h * hd;
            float *out = o + (size_t)i * qs + h * hd;
            for (int d = 0; d < hd; d++)
                out[d] = acc[d] * inv;
            lse[(size_t)h * tq + i] = l > 0.0f ? st->max[(size_t)h * tq + i] + logf(l) : -INFINITY;
        }
}

void cpu_attn_bwd_delta(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape)
{
    const int H = shape->n_heads, hd = shape->head_dim, qs = H * hd;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < tq; i++) {
            const float *oi = o + (size_t)i * qs + h * hd, *gi = dout + (size_t)i * qs + h * hd;
            float dot = 0.0f;
            for (int d = 0; d < hd; d++)
                dot += oi[d] * gi[d];
            delta[(size_t)h * tq + i] = dot;
        }
}

typedef struct attn_bwd_job {
    float *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *lse, *delta;
    const int32_t *q_pos, *k_pos;
    int tq, tk;
    const attn_shape *shape;
    float *scratch;
} attn_bwd_job;

/* With P = softmax(S) recomputed from the saved lse:
 *   dV += P^T dO;  dP = dO V^T;  dS = P (dP - delta);  dQ += scale dS K;  dK += scale dS^T Q
 * One task per kv head: the query heads of its group all add into its dK and dV. */
static void attn_bwd_kv_head(void *ctx, int kh)
{
    const attn_bwd_job *job = ctx;
    const attn_shape *shape = job->shape;
    const int H = shape->n_heads, hd = shape->head_dim, B = shape->block, tq = job->tq, tk = job->tk;
    const int group = H / shape->n_kv_heads, qs = H * hd, ks = shape->n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *p = job->scratch + (size_t)kh * 2 * B * B, *dp = p + (size_t)B * B; /* (B, B) each */
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        for (int i0 = 0; i0 < tq; i0 += B) {
            const int bi = tq - i0 < B ? tq - i0 : B;
            const float *qi = job->q + (size_t)i0 * qs + h * hd, *gi = job->dout + (size_t)i0 * qs + h * hd;
            for (int j0 = 0; j0 < tk; j0 += B) {
                const int bj = tk - j0 < B ? tk - j0 : B;
                if (job->k_pos[j0] > job->q_pos[i0 + bi - 1])
                    break;
                const int fully_visible = job->k_pos[j0 + bj - 1] <= job->q_pos[i0];
                const float *kj = job->k + (size_t)j0 * ks + kh * hd, *vj = job->v + (size_t)j0 * ks + kh * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, scale, qi, qs, kj, ks, 0.0f, p, bj);
                for (int r = 0; r < bi; r++) {
                    float *pr = p + (size_t)r * bj;
                    const float lse = job->lse[(size_t)h * tq + i0 + r];
                    if (lse == -INFINITY) { /* the row saw no key at all: P = 0 (exp(s + inf) is not) */
                        memset(pr, 0, (size_t)bj * sizeof *pr);
                        continue;
                    }
                    if (!fully_visible)
                        mask_row(pr, job->k_pos + j0, bj, job->q_pos[i0 + r]);
                    exp_shift_sum(pr, bj, lse);
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bj, hd, bi, 1.0f, p, bj, gi, qs, 1.0f,
                            job->dv + (size_t)j0 * ks + kh * hd, ks);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, 1.0f, gi, qs, vj, ks, 0.0f, dp, bj);
                for (int r = 0; r < bi; r++) {
                    const float dr = job->delta[(size_t)h * tq + i0 + r];
                    float *pr = p + (size_t)r * bj, *dpr = dp + (size_t)r * bj;
                    for (int j = 0; j < bj; j++)
                        dpr[j] = pr[j] * (dpr[j] - dr);
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, hd, bj, scale, dp, bj, kj, ks, 1.0f,
                            job->dq + (size_t)i0 * qs + h * hd, qs);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bj, hd, bi, scale, dp, bj, qi, qs, 1.0f,
                            job->dk + (size_t)j0 * ks + kh * hd, ks);
            }
        }
    }
}

void cpu_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq, const float *k,
                        const float *v, const int32_t *k_pos, int tk, const float *dout, const float *lse,
                        const float *delta, const attn_shape *shape, float *scratch)
{
    attn_bwd_job job = {dq, dk, dv, q, k, v, dout, lse, delta, q_pos, k_pos, tq, tk, shape, scratch};
    run_heads(shape->n_kv_heads, attn_bwd_kv_head, &job);
}
