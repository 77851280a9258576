#include "ops_timed.h"

#include <stdatomic.h>
#include <time.h>

static const ops *inner_ops;
static _Atomic unsigned long long spent_ns[OPS_TIME_NCLASSES];

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void charge(int cls, unsigned long long t0) { atomic_fetch_add(&spent_ns[cls], now_ns() - t0); }

/* Each wrapper: the inner op, timed into its class. */
#define TIMED(cls, call)                                                                                               \
    do {                                                                                                               \
        const unsigned long long t0 = now_ns();                                                                        \
        call;                                                                                                          \
        charge(cls, t0);                                                                                               \
    } while (0)

static void *t_alloc(size_t bytes) { return inner_ops->alloc(bytes); }
static void t_release(void *p) { inner_ops->release(p); }
static void t_zero(float *x, size_t n) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->zero(x, n)); }
static void t_copy(float *d, const float *s, size_t n) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->copy(d, s, n)); }
static void t_sync(void) { inner_ops->sync(); }
static void *t_host_alloc(size_t bytes) { return inner_ops->host_alloc(bytes); }
static void t_host_release(void *p) { inner_ops->host_release(p); }
static void t_download(float *h, const float *s, size_t n)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->download(h, s, n));
}
static void t_upload(float *d, const float *h, size_t n) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->upload(d, h, n)); }
static void t_round_bf16(float *x, size_t n) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->round_bf16(x, n)); }

static void t_matmul(float *c, const float *a, const float *b, int m, int n, int k, bool ta, bool tb, float alpha,
                     float beta)
{
    TIMED(OPS_TIME_MATMUL, inner_ops->matmul(c, a, b, m, n, k, ta, tb, alpha, beta));
}

static void t_embedding_fwd(float *out, const uint16_t *tokens, const float *wte, int n, int d)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->embedding_fwd(out, tokens, wte, n, d));
}

static void t_embedding_bwd(float *dwte, const uint16_t *tokens, const float *dout, int n, int d)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->embedding_bwd(dwte, tokens, dout, n, d));
}

static void t_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->rmsnorm_fwd(out, rstd, x, w, n, d, eps));
}

static void t_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                          int n, int d)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, d));
}

static void t_rope_fwd(float *x, const int32_t *pos, int n, int heads, int hd, const float *c, const float *s)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->rope_fwd(x, pos, n, heads, hd, c, s));
}

static void t_rope_bwd(float *dx, const int32_t *pos, int n, int heads, int hd, const float *c, const float *s)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->rope_bwd(dx, pos, n, heads, hd, c, s));
}

static void t_swiglu_fwd(float *h, const float *g, const float *u, size_t n)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->swiglu_fwd(h, g, u, n));
}

static void t_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n)
{
    TIMED(OPS_TIME_ELEMENTWISE, inner_ops->swiglu_bwd(dg, du, dh, g, u, n));
}

static void t_attn_begin(attn_state *st, const attn_shape *shape)
{
    TIMED(OPS_TIME_ATTENTION, inner_ops->attn_begin(st, shape));
}

static void t_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                         const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch)
{
    TIMED(OPS_TIME_ATTENTION, inner_ops->attn_block(st, q, q_pos, k, v, k_pos, tk, shape, scratch));
}

static void t_attn_end(float *o, float *lse, const attn_state *st, const attn_shape *shape)
{
    TIMED(OPS_TIME_ATTENTION, inner_ops->attn_end(o, lse, st, shape));
}

static void t_attn_bwd_delta(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape)
{
    TIMED(OPS_TIME_ATTENTION, inner_ops->attn_bwd_delta(delta, o, dout, tq, shape));
}

static void t_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq,
                             const float *k, const float *v, const int32_t *k_pos, int tk, const float *dout,
                             const float *lse, const float *delta, const attn_shape *shape, float *scratch)
{
    TIMED(OPS_TIME_ATTENTION,
          inner_ops->attn_block_bwd(dq, dk, dv, q, q_pos, tq, k, v, k_pos, tk, dout, lse, delta, shape, scratch));
}

static double t_cross_entropy(float *logits, const uint16_t *targets, int n, int vocab, float dscale)
{
    double r;
    TIMED(OPS_TIME_ELEMENTWISE, r = inner_ops->cross_entropy(logits, targets, n, vocab, dscale));
    return r;
}

static void t_add(float *y, const float *x, size_t n) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->add(y, x, n)); }
static void t_scale(float *x, size_t n, float s) { TIMED(OPS_TIME_ELEMENTWISE, inner_ops->scale(x, n, s)); }

static double t_sumsq(const float *x, size_t n)
{
    double r;
    TIMED(OPS_TIME_OPTIMIZER, r = inner_ops->sumsq(x, n));
    return r;
}

static void t_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                    float wd, float gs, int t)
{
    TIMED(OPS_TIME_OPTIMIZER, inner_ops->adamw(p, g, m, v, n, lr, b1, b2, eps, wd, gs, t));
}

static ops timed_table = {
    .name = "timed",
    .alloc = t_alloc,
    .release = t_release,
    .zero = t_zero,
    .copy = t_copy,
    .sync = t_sync,
    .host_alloc = t_host_alloc,
    .host_release = t_host_release,
    .download = t_download,
    .upload = t_upload,
    .round_bf16 = t_round_bf16,
    .matmul = t_matmul,
    .embedding_fwd = t_embedding_fwd,
    .embedding_bwd = t_embedding_bwd,
    .rmsnorm_fwd = t_rmsnorm_fwd,
    .rmsnorm_bwd = t_rmsnorm_bwd,
    .rope_fwd = t_rope_fwd,
    .rope_bwd = t_rope_bwd,
    .swiglu_fwd = t_swiglu_fwd,
    .swiglu_bwd = t_swiglu_bwd,
    .attn_begin = t_attn_begin,
    .attn_block = t_attn_block,
    .attn_end = t_attn_end,
    .attn_bwd_delta = t_attn_bwd_delta,
    .attn_block_bwd = t_attn_block_bwd,
    .cross_entropy = t_cross_entropy,
    .add = t_add,
    .scale = t_scale,
    .sumsq = t_sumsq,
    .adamw = t_adamw,
};

const ops *ops_timed(const ops *inner)
{
    inner_ops = inner;
    timed_table.host_memory = inner->host_memory;
    timed_table.options = inner->options;
    ops_timed_reset();
    return &timed_table;
}

void ops_timed_read(double seconds[OPS_TIME_NCLASSES])
{
    for (int c = 0; c < OPS_TIME_NCLASSES; c++)
        seconds[c] = (double)atomic_load(&spent_ns[c]) * 1e-9;
}

void ops_timed_reset(void)
{
    for (int c = 0; c < OPS_TIME_NCLASSES; c++)
        atomic_store(&spent_ns[c], 0);
}
