/* The CPU reference backend: OpenBLAS sgemm for matmuls, plain C loops for the rest. */
#include "ops_cpu_internal.h"

#include "../../util/bf16.h"
#include "fast_exp.h"
#include "../../util/thread_pool.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Host memory: op memory and host memory are the same thing here. */
static void *cpu_alloc(size_t bytes) { return calloc(bytes > 0 ? bytes : 1, 1); }

static void cpu_release(void *p) { free(p); }

static void cpu_zero(float *x, size_t count) { memset(x, 0, count * sizeof *x); }

static void cpu_copy(float *dst, const float *src, size_t count) { memmove(dst, src, count * sizeof *dst); }

static void cpu_sync(void) {}

/* Host staging is plain copying here: op memory is host memory. */
static void cpu_download(float *host, const float *src, size_t count) { memcpy(host, src, count * sizeof *host); }

static void cpu_upload(float *dst, const float *host, size_t count) { memcpy(dst, host, count * sizeof *dst); }

static void cpu_round_bf16(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] = bf16_to_float(bf16_from_float(x[i]));
}

static void cpu_matmul(float *c, const float *a, const float *b, int m, int n, int k, bool trans_a, bool trans_b,
                       float alpha, float beta)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

static void cpu_embedding_fwd(float *out, const uint16_t *tokens, const float *wte, int n, int d)
{
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * d, wte + (size_t)tokens[i] * d, (size_t)d * sizeof *out);
}

static void cpu_embedding_bwd(float *dwte, const uint16_t *tokens, const float *dout, int n, int d)
{
    for (int i = 0; i < n; i++) {
        float *row = dwte + (size_t)tokens[i] * d;
        const float *g = dout + (size_t)i * d;
        for (int j = 0; j < d; j++)
            row[j] += g[j];
    }
}

WANCP_HOT static void cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float ss = 0.0f;
        for (int j = 0; j < d; j++)
            ss += xi[j] * xi[j];
        float r = 1.0f / sqrtf(ss / (float)d + eps);
        rstd[i] = r;
        float *oi = out + (size_t)i * d;
        for (int j = 0; j < d; j++)
            oi[j] = xi[j] * r * w[j];
    }
}

/* With xhat = x * rstd and y = xhat * w:
 *   dw += sum_i dy_i * xhat_i;  dx_i += rstd_i * (dy_i*w - xhat_i * mean_j(dy_ij w_j xhat_ij)) */
WANCP_HOT static void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                      const float *rstd, int n, int d)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d, *gi = dout + (size_t)i * d;
        float r = rstd[i], dot = 0.0f;
        for (int j = 0; j < d; j++)
            dot += gi[j] * w[j] * xi[j] * r;
        dot /= (float)d;
        float *dxi = dx + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            float xhat = xi[j] * r;
            dw[j] += gi[j] * xhat;
            dxi[j] += r * (gi[j] * w[j] - xhat * dot);
        }
    }
}

/* sign = +1 rotates forward; -1 applies the inverse (transpose) rotation. */
static void rope_apply(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_table,
                       const float *sin_table, float sign)
{
    int half = head_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = cos_table + (size_t)pos[i] * half, *s = sin_table + (size_t)pos[i] * half;
        for (int h = 0; h < heads; h++) {
            float *a = x + ((size_t)i * heads + h) * head_dim, *b = a + half;
            for (int j = 0; j < half; j++) {
                float a0 = a[j], b0 = b[j], sj = sign * s[j];
                a[j] = a0 * c[j] - b0 * sj;
                b[j] = a0 * sj + b0 * c[j];
            }
        }
    }
}

static void cpu_rope_fwd(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_table,
                         const float *sin_table)
{
    rope_apply(x, pos, n, heads, head_dim, cos_table, sin_table, 1.0f);
}

static void cpu_rope_bwd(float *dx, const int32_t *pos, int n, int heads, int head_dim, const float *cos_table,
                         const float *sin_table)
{
    rope_apply(dx, pos, n, heads, head_dim, cos_table, sin_table, -1.0f);
}

WANCP_HOT static void cpu_swiglu_fwd(float *h, const float *g, const float *u, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float sig = 1.0f / (1.0f + fast_exp(-g[i]));
        h[i] = g[i] * sig * u[i];
    }
}

WANCP_HOT static void cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                                     size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float sig = 1.0f / (1.0f + fast_exp(-g[i]));
        float silu = g[i] * sig;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

/* Rows of cross-entropy: max, then exp and sum in one vectorisable pass. */
WANCP_HOT static double cross_entropy_rows(float *logits, const uint16_t *targets, int n, int vocab, float dscale)
{
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        float *row = logits + (size_t)i * vocab;
        float mx = row[0];
        for (int j = 1; j < vocab; j++)
            mx = row[j] > mx ? row[j] : mx;
        float target_logit = row[targets[i]];
        float sum = 0.0f;
        if (dscale != 0.0f) {
            for (int j = 0; j < vocab; j++) {
                row[j] = fast_exp(row[j] - mx);
                sum += row[j];
            }
        } else {
            for (int j = 0; j < vocab; j++)
                sum += fast_exp(row[j] - mx);
        }
        total += (double)logf(sum) + (double)mx - (double)target_logit;
        if (dscale != 0.0f) {
            float inv = dscale / sum;
            for (int j = 0; j < vocab; j++)
                row[j] *= inv;
            row[targets[i]] -= dscale;
        }
    }
    return total;
}

/* Work is cut into a fixed number of pieces whatever the thread count, and partial sums
 * are added in piece order: results do not depend on how many threads ran. */
#define PIECES 32

typedef struct xent_job {
    float *logits;
    const uint16_t *targets;
    int n, vocab;
    float dscale;
    double partial[PIECES];
} xent_job;

static void xent_piece(void *ctx, int piece)
{
    xent_job *j = ctx;
    int r0 = (int)((long)j->n * piece / PIECES), r1 = (int)((long)j->n * (piece + 1) / PIECES);
    j->partial[piece] =
        cross_entropy_rows(j->logits + (size_t)r0 * j->vocab, j->targets + r0, r1 - r0, j->vocab, j->dscale);
}

static double cpu_cross_entropy(float *logits, const uint16_t *targets, int n, int vocab, float dscale)
{
    xent_job job = {.logits = logits, .targets = targets, .n = n, .vocab = vocab, .dscale = dscale};
    pool_run(PIECES, xent_piece, &job);
    double total = 0.0;
    for (int p = 0; p < PIECES; p++)
        total += job.partial[p];
    return total;
}

WANCP_HOT static void cpu_add(float *y, const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        y[i] += x[i];
}

WANCP_HOT static void cpu_scale(float *x, size_t count, float s)
{
    for (size_t i = 0; i < count; i++)
        x[i] *= s;
}

typedef struct sumsq_job {
    const float *x;
    size_t count;
    double partial[PIECES];
} sumsq_job;

static void sumsq_piece(void *ctx, int piece)
{
    sumsq_job *j = ctx;
    size_t i0 = j->count * (size_t)piece / PIECES, i1 = j->count * (size_t)(piece + 1) / PIECES;
    double total = 0.0;
    for (size_t i = i0; i < i1; i++)
        total += (double)j->x[i] * j->x[i];
    j->partial[piece] = total;
}

static double cpu_sumsq(const float *x, size_t count)
{
    sumsq_job job = {.x = x, .count = count};
    pool_run(PIECES, sumsq_piece, &job);
    double total = 0.0;
    for (int p = 0; p < PIECES; p++)
        total += job.partial[p];
    return total;
}

WANCP_HOT static void adamw_range(float *p, const float *g, float *m, float *v, size_t count, float lr, float beta1,
                                  float beta2, float eps, float weight_decay, float grad_scale, int t)
{
    float c1 = 1.0f / (1.0f - powf(beta1, (float)t)), c2 = 1.0f / (1.0f - powf(beta2, (float)t));
    for (size_t i = 0; i < count; i++) {
        float gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        float mhat = m[i] * c1, vhat = v[i] * c2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p[i]);
    }
}

typedef struct adamw_job {
    float *p, *m, *v;
    const float *g;
    size_t count;
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    int t;
    int pieces;
} adamw_job;

static void adamw_piece(void *ctx, int piece)
{
    const adamw_job *j = ctx;
    size_t i0 = j->count * (size_t)piece / (size_t)j->pieces, i1 = j->count * (size_t)(piece + 1) / (size_t)j->pieces;
    adamw_range(j->p + i0, j->g + i0, j->m + i0, j->v + i0, i1 - i0, j->lr, j->beta1, j->beta2, j->eps, j->weight_decay,
                j->grad_scale, j->t);
}

static void cpu_adamw(float *p, const float *g, float *m, float *v, size_t count, float lr, float beta1, float beta2,
                      float eps, float weight_decay, float grad_scale, int t)
{
    /* Small tensors in one piece: waking the workers would cost more than the update. */
    adamw_job job = {
        p, m, v, g, count, lr, beta1, beta2, eps, weight_decay, grad_scale, t, count >= 65536 ? PIECES : 1};
    pool_run(job.pieces, adamw_piece, &job);
}

static const ops CPU_OPS = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .host_memory = true,
    .host_alloc = cpu_alloc,
    .host_release = cpu_release,
    .download = cpu_download,
    .upload = cpu_upload,
    .round_bf16 = cpu_round_bf16,
    .matmul = cpu_matmul,
    .embedding_fwd = cpu_embedding_fwd,
    .embedding_bwd = cpu_embedding_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .attn_begin = cpu_attn_begin,
    .attn_block = cpu_attn_block,
    .attn_end = cpu_attn_end,
    .attn_bwd_delta = cpu_attn_bwd_delta,
    .attn_block_bwd = cpu_attn_block_bwd,
    .cross_entropy = cpu_cross_entropy,
    .add = cpu_add,
    .scale = cpu_scale,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
};

const ops *ops_cpu_table(void) { return &CPU_OPS; }

int ops_cpu_configure_threads(int threads)
{
    if (threads <= 0)
        threads = openblas_get_num_procs();
    openblas_set_num_threads(threads);
    pool_set_threads(threads);
    return openblas_get_num_threads();
}

const char *ops_cpu_blas_name(void) { return openblas_get_config(); }

const char *ops_cpu_blas_core(void) { return openblas_get_corename(); }
