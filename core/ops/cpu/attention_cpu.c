/*
 * Blockwise causal attention with an online softmax (the FlashAttention recurrence), on
 * the CPU: each (query block, key block) pair is two sgemm calls and a row loop, so the
 * work stays in BLAS and memory stays O(block^2) whatever the sequence length. The same
 * block routine serves one process (all keys local) and context parallelism (key blocks
 * from other ranks merged as they arrive).
 */
#include "ops_cpu_internal.h"

#include "fast_exp.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t attn_scratch_floats(const attn_shape *shape)
{
    return 2 * (size_t)shape->block * shape->block;
}

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

void cpu_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                    const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch)
{
    const int H = shape->n_heads, hd = shape->head_dim, B = shape->block, tq = st->tq;
    const int group = H / shape->n_kv_heads, qs = H * hd, ks = shape->n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *s = scratch; /* (B, B) scores, then probabilities */
    for (int h = 0; h < H; h++) {
        const int kh = h / group;
        for (int i0 = 0; i0 < tq; i0 += B) {
            const int bi = tq - i0 < B ? tq - i0 : B;
            for (int j0 = 0; j0 < tk; j0 += B) {
                const int bj = tk - j0 < B ? tk - j0 : B;
                if (k_pos[j0] > q_pos[i0 + bi - 1])
                    break; /* this and every later key block is in the future of every query */
                const int fully_visible = k_pos[j0 + bj - 1] <= q_pos[i0];
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, scale, q + (size_t)i0 * qs + h * hd,
                            qs, k + (size_t)j0 * ks + kh * hd, ks, 0.0f, s, bj);
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

/* With P = softmax(S) recomputed from the saved lse:
 *   dV += P^T dO;  dP = dO V^T;  dS = P (dP - delta);  dQ += scale dS K;  dK += scale dS^T Q */
void cpu_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq,
                        const float *k, const float *v, const int32_t *k_pos, int tk, const float *dout,
                        const float *lse, const float *delta, const attn_shape *shape, float *scratch)
{
    const int H = shape->n_heads, hd = shape->head_dim, B = shape->block;
    const int group = H / shape->n_kv_heads, qs = H * hd, ks = shape->n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *p = scratch, *dp = scratch + (size_t)B * B; /* (B, B) each */
    for (int h = 0; h < H; h++) {
        const int kh = h / group;
        for (int i0 = 0; i0 < tq; i0 += B) {
            const int bi = tq - i0 < B ? tq - i0 : B;
            const float *qi = q + (size_t)i0 * qs + h * hd, *gi = dout + (size_t)i0 * qs + h * hd;
            for (int j0 = 0; j0 < tk; j0 += B) {
                const int bj = tk - j0 < B ? tk - j0 : B;
                if (k_pos[j0] > q_pos[i0 + bi - 1])
                    break;
                const int fully_visible = k_pos[j0 + bj - 1] <= q_pos[i0];
                const float *kj = k + (size_t)j0 * ks + kh * hd, *vj = v + (size_t)j0 * ks + kh * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, scale, qi, qs, kj, ks, 0.0f, p, bj);
                for (int r = 0; r < bi; r++) {
                    float *pr = p + (size_t)r * bj;
                    if (!fully_visible)
                        mask_row(pr, k_pos + j0, bj, q_pos[i0 + r]);
                    exp_shift_sum(pr, bj, lse[(size_t)h * tq + i0 + r]);
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bj, hd, bi, 1.0f, p, bj, gi, qs, 1.0f,
                            dv + (size_t)j0 * ks + kh * hd, ks);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bj, hd, 1.0f, gi, qs, vj, ks, 0.0f, dp, bj);
                for (int r = 0; r < bi; r++) {
                    const float dr = delta[(size_t)h * tq + i0 + r];
                    float *pr = p + (size_t)r * bj, *dpr = dp + (size_t)r * bj;
                    for (int j = 0; j < bj; j++)
                        dpr[j] = pr[j] * (dpr[j] - dr);
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, hd, bj, scale, dp, bj, kj, ks, 1.0f,
                            dq + (size_t)i0 * qs + h * hd, qs);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bj, hd, bi, scale, dp, bj, qi, qs, 1.0f,
                            dk + (size_t)j0 * ks + kh * hd, ks);
            }
        }
    }
}
