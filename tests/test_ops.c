/* The CPU ops against central finite differences and against naive references.
 *
 * Each op's gradient is checked through the scalar L = sum(out * R) for a fixed random R:
 * the backward with dout = R must match (L(x + h) - L(x - h)) / 2h for every input
 * element. fp32 tolerance: the worst relative error, |a - fd| / max(|a|, |fd|, 1e-3 rms(a)),
 * must stay below 2e-2 (fp32 rounding in L is ~1e-7 relative; with h = 1e-2 this leaves
 * ~1e-4 absolute noise in fd, far below the tolerance; a wrong formula gives errors ~1). */
#include "test_cpu.h"
#include "test_helpers.h"

#include "core/ops/ops.h"
#include "core/base/status.h"
#include "core/util/rng.h"

#include <math.h>

#define FD_H 1e-2f
#define FD_TOL 1e-2

static const ops *o;
static rng r;

static float *randn(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_normal(&r);
    return x;
}

static float *zeros(size_t n)
{
    float *x = calloc(n, sizeof *x);
    assert_non_null(x);
    return x;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss over every element of x, against analytic; prints both
 * errors and returns the worst relative one. */
static double fd_check(const char *name, float *x, size_t n, const float *analytic, loss_fn loss, void *ctx)
{
    double amax = 0.0, worst = 0.0, worst_abs = 0.0;
    for (size_t i = 0; i < n; i++)
        amax = fmax(amax, fabs(analytic[i]));
    for (size_t i = 0; i < n; i++) {
        float saved = x[i];
        double d[2];
        for (int k = 0; k < 2; k++) {
            float h = k == 0 ? FD_H : FD_H / 2;
            x[i] = saved + h;
            double lp = loss(ctx);
            x[i] = saved - h;
            double lm = loss(ctx);
            /* the perturbation actually applied, after fp32 rounding */
            x[i] = saved + h;
            double step = (double)x[i] - saved;
            x[i] = saved;
            d[k] = (lp - lm) / (2.0 * step);
        }
        double fd = (4.0 * d[1] - d[0]) / 3.0, a = analytic[i];
        worst_abs = fmax(worst_abs, fabs(a - fd) / (amax + 1e-30));
        if (fabs(a) >= 1e-2 * amax)
            worst = fmax(worst, fabs(a - fd) / fabs(a));
    }
    printf("  %-32s worst relative error %.2e, worst absolute %.2e of max, %zu elements\n", name, worst, worst_abs, n);
    if (worst > FD_TOL || worst_abs > 1e-3 || amax == 0.0)
        fail_msg("%s: gradient differs from finite differences", name);
    return worst;
}

/* ---- rmsnorm ---- */
typedef struct norm_case {
    int n, d;
    float *x, *w, *out, *rstd, *R;
} norm_case;

static double norm_loss(void *ctx)
{
    norm_case *c = ctx;
    o->rmsnorm_fwd(c->out, c->rstd, c->x, c->w, c->n, c->d, 1e-5f);
    return dot(c->out, c->R, (size_t)c->n * c->d);
}

static void rmsnorm_grad(void **state)
{
    (void)state;
    norm_case c = {.n = 5, .d = 24};
    size_t nd = (size_t)c.n * c.d;
    c.x = randn(nd, 1.0f);
    c.w = randn((size_t)c.d, 1.0f);
    c.out = zeros(nd);
    c.rstd = zeros((size_t)c.n);
    c.R = randn(nd, 1.0f);
    float *dx = zeros(nd), *dw = zeros((size_t)c.d);
    norm_loss(&c);
    o->rmsnorm_bwd(dx, dw, c.R, c.x, c.w, c.rstd, c.n, c.d);
    fd_check("rmsnorm dx", c.x, nd, dx, norm_loss, &c);
    fd_check("rmsnorm dw", c.w, (size_t)c.d, dw, norm_loss, &c);
    free(c.x), free(c.w), free(c.out), free(c.rstd), free(c.R), free(dx), free(dw);
}

/* ---- rope ---- */
typedef struct rope_case {
    int n, heads, hd;
    int32_t pos[8];
    float *x, *y, *cos, *sin, *R;
} rope_case;

static double rope_loss(void *ctx)
{
    rope_case *c = ctx;
    size_t len = (size_t)c->n * c->heads * c->hd;
    memcpy(c->y, c->x, len * sizeof *c->y);
    o->rope_fwd(c->y, c->pos, c->n, c->heads, c->hd, c->cos, c->sin);
    return dot(c->y, c->R, len);
}

static void rope_grad(void **state)
{
    (void)state;
    rope_case c = {.n = 6, .heads = 3, .hd = 8, .pos = {0, 5, 9, 17, 30, 63}};
    size_t len = (size_t)c.n * c.heads * c.hd, half = (size_t)c.hd / 2;
    c.cos = zeros(64 * half);
    c.sin = zeros(64 * half);
    for (int p = 0; p < 64; p++)
        for (size_t j = 0; j < half; j++) {
            double f = pow(10000.0, -(double)j / (double)half);
            c.cos[p * half + j] = (float)cos(p * f);
            c.sin[p * half + j] = (float)sin(p * f);
        }
    c.x = randn(len, 1.0f);
    c.y = zeros(len);
    c.R = randn(len, 1.0f);
    float *dx = zeros(len);
    memcpy(dx, c.R, len * sizeof *dx);
    o->rope_bwd(dx, c.pos, c.n, c.heads, c.hd, c.cos, c.sin);
    fd_check("rope dx", c.x, len, dx, rope_loss, &c);
    /* A rotation keeps norms: |rope(x)| == |x| per head. */
    rope_loss(&c);
    assert_true(fabs(dot(c.x, c.x, len) - dot(c.y, c.y, len)) < 1e-4 * dot(c.x, c.x, len));
    free(c.cos), free(c.sin), free(c.x), free(c.y), free(c.R), free(dx);
}

/* ---- swiglu ---- */
typedef struct swiglu_case {
    size_t n;
    float *g, *u, *h, *R;
} swiglu_case;

static double swiglu_loss(void *ctx)
{
    swiglu_case *c = ctx;
    o->swiglu_fwd(c->h, c->g, c->u, c->n);
    return dot(c->h, c->R, c->n);
}

static void swiglu_grad(void **state)
{
    (void)state;
    swiglu_case c = {.n = 200};
    c.g = randn(c.n, 2.0f);
    c.u = randn(c.n, 1.0f);
    c.h = zeros(c.n);
    c.R = randn(c.n, 1.0f);
    float *dg = zeros(c.n), *du = zeros(c.n);
    o->swiglu_bwd(dg, du, c.R, c.g, c.u, c.n);
    fd_check("swiglu dg", c.g, c.n, dg, swiglu_loss, &c);
    fd_check("swiglu du", c.u, c.n, du, swiglu_loss, &c);
    free(c.g), free(c.u), free(c.h), free(c.R), free(dg), free(du);
}

/* ---- cross-entropy ---- */
typedef struct xent_case {
    int n, vocab;
    float *logits, *work;
    uint16_t targets[6];
} xent_case;

static double xent_loss(void *ctx)
{
    xent_case *c = ctx;
    memcpy(c->work, c->logits, (size_t)c->n * c->vocab * sizeof *c->work);
    return o->cross_entropy(c->work, c->targets, c->n, c->vocab, 0.0f);
}

static void cross_entropy_grad(void **state)
{
    (void)state;
    xent_case c = {.n = 6, .vocab = 37, .targets = {0, 36, 5, 5, 17, 2}};
    size_t len = (size_t)c.n * c.vocab;
    c.logits = randn(len, 3.0f);
    c.work = zeros(len);
    float *grad = zeros(len);
    memcpy(grad, c.logits, len * sizeof *grad);
    double loss = o->cross_entropy(grad, c.targets, c.n, c.vocab, 1.0f);
    /* The loss itself, against log-sum-exp in double. */
    double want = 0.0;
    for (int i = 0; i < c.n; i++) {
        double mx = -1e300, s = 0.0;
        for (int j = 0; j < c.vocab; j++)
            mx = fmax(mx, c.logits[i * c.vocab + j]);
        for (int j = 0; j < c.vocab; j++)
            s += exp(c.logits[i * c.vocab + j] - mx);
        want += log(s) + mx - c.logits[i * c.vocab + c.targets[i]];
    }
    assert_true(fabs(loss - want) < 1e-5 * fabs(want));
    fd_check("cross_entropy dlogits", c.logits, len, grad, xent_loss, &c);
    free(c.logits), free(c.work), free(grad);
}

/* ---- embedding ---- */
static void embedding_grad(void **state)
{
    (void)state;
    uint16_t tokens[5] = {3, 1, 3, 0, 2};
    float *wte = randn(4 * 6, 1.0f), *out = zeros(5 * 6), *dout = randn(5 * 6, 1.0f), *dwte = zeros(4 * 6);
    o->embedding_fwd(out, tokens, wte, 5, 6);
    o->embedding_bwd(dwte, tokens, dout, 5, 6);
    for (int i = 0; i < 5; i++)
        assert_memory_equal(out + i * 6, wte + tokens[i] * 6, 6 * sizeof(float));
    for (int j = 0; j < 6; j++) {
        assert_float_equal(dwte[3 * 6 + j], dout[0 * 6 + j] + dout[2 * 6 + j], 1e-6);
        assert_float_equal(dwte[1 * 6 + j], dout[1 * 6 + j], 1e-6);
    }
    free(wte), free(out), free(dout), free(dwte);
}

/* ---- attention ---- */

/* Naive causal softmax attention in double: the reference. o (tq, H*hd), lse (H, tq). */
static void naive_attention(double *out, double *lse, const float *q, const int32_t *q_pos, int tq, const float *k,
                            const float *v, const int32_t *k_pos, int tk, const attn_shape *s)
{
    const int H = s->n_heads, hd = s->head_dim, group = H / s->n_kv_heads, qs = H * hd, ks = s->n_kv_heads * hd;
    double *w = malloc((size_t)tk * sizeof *w);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < tq; i++) {
            double mx = -INFINITY;
            for (int j = 0; j < tk; j++) {
                double sc = -INFINITY;
                if (k_pos[j] <= q_pos[i]) {
                    sc = 0.0;
                    for (int d = 0; d < hd; d++)
                        sc += (double)q[i * qs + h * hd + d] * k[j * ks + (h / group) * hd + d];
                    sc /= sqrt((double)hd);
                }
                w[j] = sc;
                mx = fmax(mx, sc);
            }
            double sum = 0.0;
            for (int j = 0; j < tk; j++)
                sum += (w[j] = w[j] == -INFINITY ? 0.0 : exp(w[j] - mx));
            for (int d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int j = 0; j < tk; j++)
                    acc += w[j] * v[j * ks + (h / group) * hd + d];
                out[i * qs + h * hd + d] = acc / sum;
            }
            lse[h * tq + i] = mx + log(sum);
        }
    free(w);
}

typedef struct attn_case {
    attn_shape shape;
    int t, split; /* keys given in two calls: [0, split) and [split, t) */
    int32_t *pos;
    float *q, *k, *v, *o, *lse, *acc, *mx, *sum, *scratch, *R;
} attn_case;

static void attn_run(attn_case *c)
{
    const size_t ks = (size_t)c->shape.n_kv_heads * c->shape.head_dim;
    attn_state st = {.acc = c->acc, .max = c->mx, .sum = c->sum, .tq = c->t};
    o->attn_begin(&st, &c->shape);
    /* Later keys first: the online softmax must not depend on arrival order. */
    if (c->split < c->t)
        o->attn_block(&st, c->q, c->pos, c->k + c->split * ks, c->v + c->split * ks, c->pos + c->split, c->t - c->split,
                      &c->shape, c->scratch);
    o->attn_block(&st, c->q, c->pos, c->k, c->v, c->pos, c->split, &c->shape, c->scratch);
    o->attn_end(c->o, c->lse, &st, &c->shape);
}

static double attn_loss(void *ctx)
{
    attn_case *c = ctx;
    attn_run(c);
    return dot(c->o, c->R, (size_t)c->t * c->shape.n_heads * c->shape.head_dim);
}

static attn_case attn_make(int heads, int kv_heads, int hd, int block, int t, int split)
{
    attn_case c = {.shape = {heads, kv_heads, hd, block}, .t = t, .split = split};
    size_t qn = (size_t)t * heads * hd, kn = (size_t)t * kv_heads * hd;
    c.pos = malloc((size_t)t * sizeof *c.pos);
    for (int i = 0; i < t; i++)
        c.pos[i] = 3 + 2 * i; /* global positions with gaps, as a rank's chunk may have */
    c.q = randn(qn, 1.0f);
    c.k = randn(kn, 1.0f);
    c.v = randn(kn, 1.0f);
    c.o = zeros(qn);
    c.acc = zeros(qn);
    c.lse = zeros((size_t)heads * t);
    c.mx = zeros((size_t)heads * t);
    c.sum = zeros((size_t)heads * t);
    c.scratch = zeros(attn_scratch_floats(&c.shape));
    c.R = randn(qn, 1.0f);
    return c;
}

static void attn_free(attn_case *c)
{
    free(c->pos), free(c->q), free(c->k), free(c->v), free(c->o), free(c->acc), free(c->lse), free(c->mx);
    free(c->sum), free(c->scratch), free(c->R);
}

/* Blockwise equals naive: max |a - b| / max |b| < 1e-5 for outputs and lse, over block sizes
 * that divide the length and ones that do not, with grouped-query heads. */
static void attention_matches_naive(void **state)
{
    (void)state;
    static const int lengths[] = {1, 7, 16, 37, 64, 100};
    static const int blocks[] = {4, 16, 32, 64};
    double worst = 0.0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            int t = lengths[li];
            attn_case c = attn_make(4, 2, 16, blocks[bi], t, t / 3);
            attn_run(&c);
            size_t qn = (size_t)t * 4 * 16;
            double *ref = malloc(qn * sizeof *ref), *ref_lse = malloc((size_t)4 * t * sizeof *ref_lse);
            naive_attention(ref, ref_lse, c.q, c.pos, t, c.k, c.v, c.pos, t, &c.shape);
            double diff = 0.0, scale = 0.0;
            for (size_t i = 0; i < qn; i++) {
                diff = fmax(diff, fabs(c.o[i] - ref[i]));
                scale = fmax(scale, fabs(ref[i]));
            }
            double lse_diff = 0.0, lse_scale = 0.0;
            for (int i = 0; i < 4 * t; i++) {
                lse_diff = fmax(lse_diff, fabs(c.lse[i] - ref_lse[i]));
                lse_scale = fmax(lse_scale, fabs(ref_lse[i]));
            }
            worst = fmax(worst, fmax(diff / scale, lse_diff / lse_scale));
            if (diff / scale >= 1e-5 || lse_diff / lse_scale >= 1e-5)
                fail_msg("t=%d block=%d: relative difference %.2e (o), %.2e (lse)", t, blocks[bi], diff / scale,
                         lse_diff / lse_scale);
            free(ref), free(ref_lse);
            attn_free(&c);
        }
    printf("  blockwise vs naive attention: worst relative difference %.2e\n", worst);
}

static void attention_grad(void **state)
{
    (void)state;
    static const struct {
        int t, block, split;
    } cases[] = {{13, 4, 5}, {32, 8, 16}, {9, 16, 9}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        attn_case c = attn_make(4, 2, 8, cases[ci].block, cases[ci].t, cases[ci].split);
        const int t = c.t;
        size_t qn = (size_t)t * 4 * 8, kn = (size_t)t * 2 * 8, ks = 2 * 8;
        float *dq = zeros(qn), *dk = zeros(kn), *dv = zeros(kn), *delta = zeros((size_t)4 * t);
        attn_run(&c);
        o->attn_bwd_delta(delta, c.o, c.R, t, &c.shape);
        /* Backward per key set, as context parallelism will call it. */
        o->attn_block_bwd(dq, dk, dv, c.q, c.pos, t, c.k, c.v, c.pos, c.split, c.R, c.lse, delta, &c.shape, c.scratch);
        if (c.split < t)
            o->attn_block_bwd(dq, dk + c.split * ks, dv + c.split * ks, c.q, c.pos, t, c.k + c.split * ks,
                              c.v + c.split * ks, c.pos + c.split, t - c.split, c.R, c.lse, delta, &c.shape, c.scratch);
        char name[64];
        snprintf(name, sizeof name, "attention dq (t=%d, b=%d)", t, c.shape.block);
        fd_check(name, c.q, qn, dq, attn_loss, &c);
        snprintf(name, sizeof name, "attention dk (t=%d, b=%d)", t, c.shape.block);
        fd_check(name, c.k, kn, dk, attn_loss, &c);
        snprintf(name, sizeof name, "attention dv (t=%d, b=%d)", t, c.shape.block);
        fd_check(name, c.v, kn, dv, attn_loss, &c);
        free(dq), free(dk), free(dv), free(delta);
        attn_free(&c);
    }
}

/* A query row that sees no key at all (o = 0, lse = -inf) has no gradient: its dq row is
 * exactly 0 and it adds nothing to dk and dv, in a block it shares with rows that do see
 * keys (exp(s - lse) must not be taken with lse = -inf). */
static void attention_rows_that_see_nothing(void **state)
{
    (void)state;
    const attn_shape shape = {.n_heads = 2, .n_kv_heads = 1, .head_dim = 8, .block = 8};
    enum { TQ = 8, TK = 6, QD = 2 * 8, KD = 8 };
    int32_t q_pos[TQ], k_pos[TK];
    for (int i = 0; i < TQ; i++)
        q_pos[i] = i; /* queries 0..7 */
    for (int j = 0; j < TK; j++)
        k_pos[j] = 3 + j; /* keys 3..8: queries 0..2 see none */
    float *q = randn(TQ * QD, 1.0f), *k = randn(TK * KD, 1.0f), *v = randn(TK * KD, 1.0f), *g = randn(TQ * QD, 1.0f);
    float *acc = zeros(TQ * QD), *mx = zeros(2 * TQ), *sm = zeros(2 * TQ), *out = zeros(TQ * QD), *lse = zeros(2 * TQ);
    float *delta = zeros(2 * TQ), *dq = zeros(TQ * QD), *dk = zeros(TK * KD), *dv = zeros(TK * KD);
    float *scratch = zeros(attn_scratch_floats(&shape));
    attn_state st = {.acc = acc, .max = mx, .sum = sm, .tq = TQ};
    o->attn_begin(&st, &shape);
    o->attn_block(&st, q, q_pos, k, v, k_pos, TK, &shape, scratch);
    o->attn_end(out, lse, &st, &shape);
    o->attn_bwd_delta(delta, out, g, TQ, &shape);
    o->attn_block_bwd(dq, dk, dv, q, q_pos, TQ, k, v, k_pos, TK, g, lse, delta, &shape, scratch);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < TQ; i++)
            assert_true(i < 3 ? lse[h * TQ + i] == -INFINITY : isfinite(lse[h * TQ + i]));
    for (int i = 0; i < TQ * QD; i++)
        assert_true(i / QD < 3 ? dq[i] == 0.0f : isfinite(dq[i]));
    for (int j = 0; j < TK * KD; j++)
        assert_true(isfinite(dk[j]) && isfinite(dv[j]));
    printf("  rows that see no key: lse -inf, dq exactly 0, dk and dv finite\n");
    free(q), free(k), free(v), free(g), free(acc), free(mx), free(sm), free(out), free(lse), free(delta), free(dq);
    free(dk), free(dv), free(scratch);
}

/* ---- matmul and adamw against plain loops ---- */
static void matmul_and_adamw(void **state)
{
    (void)state;
    const int m = 5, n = 7, k = 3;
    float *a = randn((size_t)k * m, 1.0f), *b = randn((size_t)n * k, 1.0f), *c = randn((size_t)m * n, 1.0f);
    float *c0 = malloc((size_t)m * n * sizeof *c0);
    memcpy(c0, c, (size_t)m * n * sizeof *c);
    o->matmul(c, a, b, m, n, k, true, true, 2.0f, 0.5f); /* c = 2 a^T b^T + 0.5 c */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++)
                s += (double)a[p * m + i] * b[j * k + p];
            assert_float_equal(c[i * n + j], 2.0 * s + 0.5 * c0[i * n + j], 1e-5);
        }
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, -0.3f, 2.0f}, mm[3] = {0}, vv[3] = {0};
    o->adamw(p, g, mm, vv, 3, 0.1f, 0.9f, 0.95f, 1e-8f, 0.01f, 0.5f, 1);
    for (int i = 0; i < 3; i++) {
        /* Step 1 with bias correction: update = sign(g) (|g|/(|g|+eps)); plus decay. */
        double p0 = (double[]){1.0, -2.0, 0.5}[i], gi = 0.5 * (double[]){0.1, -0.3, 2.0}[i];
        double want = p0 - 0.1 * (gi / (fabs(gi) + 1e-8) + 0.01 * p0);
        assert_float_equal(p[i], want, 1e-6);
    }
    free(a), free(b), free(c), free(c0);
}

/* The names the command line and scenarios use: backends, and cuda's product precisions
 * (spelled exactly; the zeroed value is the default, tf32). */
static void names(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN] = "";
    const ops *cpu = ops_make("cpu", &(ops_options){.cpu_threads = 1}, err, sizeof err);
    assert_string_equal(cpu->name, "cpu");
    assert_int_equal(cpu->options.cpu_threads, 1); /* the instance says what it was made with */
    assert_int_equal(cpu->options.precision, CUDA_TF32);
    assert_ptr_equal(ops_make("cpu", NULL, err, sizeof err), cpu); /* one per process, remade */
    assert_true(cpu->options.cpu_threads >= 1);
    assert_null(ops_make("tpu", NULL, err, sizeof err));
    assert_non_null(strstr(err, "'tpu'"));
    const cuda_precision all[] = {CUDA_TF32, CUDA_FP32, CUDA_BF16};
    const char *spelled[] = {"tf32", "fp32", "bf16"};
    for (int i = 0; i < 3; i++) {
        cuda_precision p = (cuda_precision)-1;
        assert_string_equal(cuda_precision_name(all[i]), spelled[i]);
        assert_true(cuda_precision_parse(spelled[i], &p));
        assert_int_equal(p, all[i]);
    }
    assert_int_equal(CUDA_TF32, 0);
    const char *bad[] = {"fp16", "BF16", "", "tf32 ", "bf"};
    for (int i = 0; i < 5; i++) {
        cuda_precision p = CUDA_BF16;
        assert_false(cuda_precision_parse(bad[i], &p));
        assert_int_equal(p, CUDA_BF16); /* left as it was */
    }
}

int main(void)
{
    o = test_cpu();
    rng_seed(&r, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rmsnorm_grad),     cmocka_unit_test(rope_grad),
        cmocka_unit_test(swiglu_grad),      cmocka_unit_test(cross_entropy_grad),
        cmocka_unit_test(embedding_grad),   cmocka_unit_test(attention_matches_naive),
        cmocka_unit_test(attention_grad),   cmocka_unit_test(attention_rows_that_see_nothing),
        cmocka_unit_test(matmul_and_adamw), cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
