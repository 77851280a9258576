/* The cuda backend against the cpu reference: every op, forward and backward, on the same
 * inputs, then the whole model's loss and every parameter gradient, then 50 training steps.
 *
 * Error measure: max |cuda - cpu| / max |cpu| over each output (normwise relative; an
 * elementwise ratio would blow up on outputs near zero). Full fp32 (TF32 off) must agree
 * to 1e-5. TF32 matmuls keep 10 mantissa bits of each operand (relative rounding 2^-11 ~
 * 5e-4 per operand), so products and what follows them get 5e-3; the TF32 training curve
 * must stay within 2% of the cpu's loss at every one of 50 steps. bf16 operands keep 7
 * (2^-9 ~ 2e-3 per operand): products get 2e-2, attention 3e-2, the training curve 5%; and
 * a bf16 matmul must equal the cpu's product of the same operands rounded to bf16 to 1e-4
 * (only the order of fp32 sums differs), which pins the rounding itself (ties to even).
 * The whole model's gradients with TF32 and bf16 products: 1e-2 and 5e-2 per tensor.
 *
 * Without a usable CUDA device (or without CUDA in the build) the test exits 77: ctest
 * reports it skipped. */
#include "test_helpers.h"

#include "core/model/model.h"
#include "core/ops/ops.h"
#include "core/base/status.h"
#include "core/train/optimizer.h"
#include "core/util/rng.h"

#include <math.h>

#define FP32_TOL 1e-5
#define TF32_TOL 5e-3
#define BF16_TOL 2e-2
#define BF16_ROUNDED_TOL 1e-4
#define BF16_ATTN_TOL 3e-2

static const ops *cpu, *gpu;

/* The cuda instance made again with these options (ops_make remakes the process's one). */
static void remake(cuda_precision p, bool fused_attention)
{
    gpu = ops_make("cuda", &(ops_options){.precision = p, .fused_attention = fused_attention}, NULL, 0);
}
static rng r;

static float *host_randn(size_t n, float scale)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_normal(&r);
    return x;
}

/* A copy of host data in each backend's memory. */
static float *on(const ops *o, const float *h, size_t n)
{
    float *x = o->alloc(n * sizeof *x);
    assert_non_null(x);
    memcpy(x, h, n * sizeof *x);
    return x;
}

static double compare(const char *what, const float *got, const float *want, size_t n, double tol)
{
    gpu->sync();
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i])) /* fmax below would skip it: a NaN reference hides any answer */
            fail_msg("%s: element %zu is NaN on cpu", what, i);
        if (!isfinite(got[i]) && !(isinf(got[i]) && got[i] == want[i]))
            fail_msg("%s: element %zu is %g on cuda, %g on cpu", what, i, (double)got[i], (double)want[i]);
        if (isinf(want[i]))
            continue;
        diff = fmax(diff, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    double rel = scale > 0.0 ? diff / scale : diff;
    printf("  %-36s max |cuda - cpu| / max |cpu| = %.2e (tolerance %.0e)\n", what, rel, tol);
    if (rel > tol)
        fail_msg("%s: cuda differs from cpu by %.2e (tolerance %.0e)", what, rel, tol);
    return rel;
}

/* Odd sizes and multiples of 4 (cuBLAS picks other kernels for each). With bf16 also against
 * the cpu's product of the operands rounded to bf16 first. */
static void matmuls_of(cuda_precision p, int m, int n, int k)
{
    float *a = host_randn((size_t)m * k, 1.0f), *b = host_randn((size_t)k * n, 1.0f),
          *c = host_randn((size_t)m * n, 1.0f);
    float *a16 = on(cpu, a, (size_t)m * k), *b16 = on(cpu, b, (size_t)k * n);
    cpu->round_bf16(a16, (size_t)m * k), cpu->round_bf16(b16, (size_t)k * n);
    const double tol = p == CUDA_FP32 ? FP32_TOL : p == CUDA_TF32 ? TF32_TOL : BF16_TOL;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *ga = on(gpu, a, (size_t)m * k), *gb = on(gpu, b, (size_t)k * n), *gc = on(gpu, c, (size_t)m * n);
            float *cc = on(cpu, c, (size_t)m * n);
            cpu->matmul(cc, a, b, m, n, k, ta, tb, 1.5f, 0.5f);
            gpu->matmul(gc, ga, gb, m, n, k, ta, tb, 1.5f, 0.5f);
            char what[80];
            snprintf(what, sizeof what, "matmul %s%s %dx%dx%d (%s)", ta ? "T" : "N", tb ? "T" : "N", m, n, k,
                     cuda_precision_name(p));
            compare(what, gc, cc, (size_t)m * n, tol);
            if (p == CUDA_BF16) {
                memcpy(cc, c, (size_t)m * n * sizeof *cc);
                cpu->matmul(cc, a16, b16, m, n, k, ta, tb, 1.5f, 0.5f);
                snprintf(what, sizeof what, "matmul %s%s %dx%dx%d (bf16 vs rounded)", ta ? "T" : "N", tb ? "T" : "N", m,
                         n, k);
                compare(what, gc, cc, (size_t)m * n, BF16_ROUNDED_TOL);
            }
            gpu->release(ga), gpu->release(gb), gpu->release(gc), cpu->release(cc);
        }
    cpu->release(a16), cpu->release(b16);
    free(a), free(b), free(c);
}

static void matmuls(cuda_precision p)
{
    remake(p, false);
    matmuls_of(p, 67, 45, 129);
    matmuls_of(p, 64, 32, 128);
    matmuls_of(p, 64, 45, 128);     /* only C's rows are odd */
    matmuls_of(p, 517, 1029, 4101); /* large enough that odd rows are padded first */
    matmuls_of(p, 516, 1029, 4100); /* only C padded */
    remake(CUDA_FP32, false);
}

static void matmul_fp32(void **state)
{
    (void)state;
    matmuls(CUDA_FP32);
}

static void matmul_tf32(void **state)
{
    (void)state;
    matmuls(CUDA_TF32);
}

static void matmul_bf16(void **state)
{
    (void)state;
    matmuls(CUDA_BF16);
}

static void elementwise(void **state)
{
    (void)state;
    /* embedding: tokens repeat, so the backward's adds collide */
    const int n = 50, d = 33, vocab = 20;
    uint16_t tokens[50];
    for (int i = 0; i < n; i++)
        tokens[i] = (uint16_t)(rng_next(&r) % vocab);
    float *wte = host_randn((size_t)vocab * d, 1.0f), *dout = host_randn((size_t)n * d, 1.0f);
    float *c_out = on(cpu, dout, (size_t)n * d), *g_out = on(gpu, dout, (size_t)n * d),
          *g_wte = on(gpu, wte, (size_t)vocab * d);
    cpu->embedding_fwd(c_out, tokens, wte, n, d);
    gpu->embedding_fwd(g_out, tokens, g_wte, n, d);
    compare("embedding forward", g_out, c_out, (size_t)n * d, FP32_TOL);
    float *c_dw = on(cpu, wte, (size_t)vocab * d), *g_dw = on(gpu, wte, (size_t)vocab * d),
          *g_dout = on(gpu, dout, (size_t)n * d);
    cpu->embedding_bwd(c_dw, tokens, dout, n, d);
    gpu->embedding_bwd(g_dw, tokens, g_dout, n, d);
    compare("embedding backward (accumulating)", g_dw, c_dw, (size_t)vocab * d, FP32_TOL);

    /* rmsnorm: a width that is not a multiple of the block; gradients added onto values */
    const int rows = 37, width = 300;
    float *x = host_randn((size_t)rows * width, 2.0f), *w = host_randn(width, 1.0f),
          *g = host_randn((size_t)rows * width, 1.0f);
    float *c_y = on(cpu, x, (size_t)rows * width), *c_rstd = on(cpu, w, rows);
    float *g_x = on(gpu, x, (size_t)rows * width), *g_w = on(gpu, w, width), *g_y = on(gpu, x, (size_t)rows * width);
    float *g_rstd = on(gpu, w, rows);
    cpu->rmsnorm_fwd(c_y, c_rstd, x, w, rows, width, 1e-5f);
    gpu->rmsnorm_fwd(g_y, g_rstd, g_x, g_w, rows, width, 1e-5f);
    compare("rmsnorm forward", g_y, c_y, (size_t)rows * width, FP32_TOL);
    compare("rmsnorm forward rstd", g_rstd, c_rstd, rows, FP32_TOL);
    float *c_dx = on(cpu, g, (size_t)rows * width), *c_dwn = on(cpu, w, width);
    float *g_dx = on(gpu, g, (size_t)rows * width), *g_dwn = on(gpu, w, width), *g_g = on(gpu, g, (size_t)rows * width);
    cpu->rmsnorm_bwd(c_dx, c_dwn, g, x, w, c_rstd, rows, width);
    gpu->rmsnorm_bwd(g_dx, g_dwn, g_g, g_x, g_w, g_rstd, rows, width);
    compare("rmsnorm backward dx", g_dx, c_dx, (size_t)rows * width, FP32_TOL);
    compare("rmsnorm backward dw", g_dwn, c_dwn, width, FP32_TOL);

    /* rope at scattered positions, forward then the inverse */
    const int heads = 3, hd = 16, ctx = 64, tok = 20;
    float *cos_t = malloc((size_t)ctx * hd / 2 * sizeof *cos_t), *sin_t = malloc((size_t)ctx * hd / 2 * sizeof *sin_t);
    assert_non_null(cos_t);
    assert_non_null(sin_t);
    for (int p = 0; p < ctx; p++)
        for (int j = 0; j < hd / 2; j++) {
            double f = pow(10000.0, -(double)j / (hd / 2));
            cos_t[p * hd / 2 + j] = (float)cos(p * f);
            sin_t[p * hd / 2 + j] = (float)sin(p * f);
        }
    int32_t pos[20];
    for (int i = 0; i < tok; i++)
        pos[i] = (int32_t)(rng_next(&r) % ctx);
    float *q = host_randn((size_t)tok * heads * hd, 1.0f);
    float *c_q = on(cpu, q, (size_t)tok * heads * hd), *g_q = on(gpu, q, (size_t)tok * heads * hd);
    float *g_cos = on(gpu, cos_t, (size_t)ctx * hd / 2), *g_sin = on(gpu, sin_t, (size_t)ctx * hd / 2);
    cpu->rope_fwd(c_q, pos, tok, heads, hd, cos_t, sin_t);
    gpu->rope_fwd(g_q, pos, tok, heads, hd, g_cos, g_sin);
    compare("rope forward", g_q, c_q, (size_t)tok * heads * hd, FP32_TOL);
    cpu->rope_bwd(c_q, pos, tok, heads, hd, cos_t, sin_t);
    gpu->rope_bwd(g_q, pos, tok, heads, hd, g_cos, g_sin);
    compare("rope backward", g_q, c_q, (size_t)tok * heads * hd, FP32_TOL);

    /* swiglu */
    const size_t count = 1000;
    float *gate = host_randn(count, 3.0f), *up = host_randn(count, 1.0f), *dh = host_randn(count, 1.0f);
    float *c_h = on(cpu, gate, count), *c_dg = on(cpu, gate, count), *c_du = on(cpu, gate, count);
    float *g_gate = on(gpu, gate, count), *g_up = on(gpu, up, count), *g_dh = on(gpu, dh, count);
    float *g_h = on(gpu, gate, count), *g_dg = on(gpu, gate, count), *g_du = on(gpu, gate, count);
    cpu->swiglu_fwd(c_h, gate, up, count);
    gpu->swiglu_fwd(g_h, g_gate, g_up, count);
    compare("swiglu forward", g_h, c_h, count, FP32_TOL);
    cpu->swiglu_bwd(c_dg, c_du, dh, gate, up, count);
    gpu->swiglu_bwd(g_dg, g_du, g_dh, g_gate, g_up, count);
    compare("swiglu backward dg", g_dg, c_dg, count, FP32_TOL);
    compare("swiglu backward du", g_du, c_du, count, FP32_TOL);

    /* add, scale, sumsq, adamw */
    const size_t big = 100003;
    float *y = host_randn(big, 1.0f), *z = host_randn(big, 1.0f);
    float *c_y2 = on(cpu, y, big), *g_y2 = on(gpu, y, big), *g_z = on(gpu, z, big);
    cpu->add(c_y2, z, big);
    gpu->add(g_y2, g_z, big);
    cpu->scale(c_y2, big, -0.37f);
    gpu->scale(g_y2, big, -0.37f);
    compare("add then scale", g_y2, c_y2, big, FP32_TOL);
    double s_cpu = cpu->sumsq(c_y2, big), s_gpu = gpu->sumsq(g_y2, big);
    printf("  %-36s cpu %.9g, cuda %.9g\n", "sumsq", s_cpu, s_gpu);
    assert_true(fabs(s_cpu - s_gpu) <= 1e-9 * s_cpu);
    float *c_p = on(cpu, y, big), *c_m = on(cpu, z, big), *c_v = on(cpu, z, big);
    float *g_p = on(gpu, y, big), *g_m = on(gpu, z, big), *g_v = on(gpu, z, big);
    for (size_t i = 0; i < big; i++)
        c_v[i] = g_v[i] = c_v[i] * c_v[i];
    for (int t = 1; t <= 3; t++) {
        cpu->adamw(c_p, z, c_m, c_v, big, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, t);
        gpu->adamw(g_p, g_z, g_m, g_v, big, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, t);
    }
    compare("adamw parameters", g_p, c_p, big, FP32_TOL);
    compare("adamw first moments", g_m, c_m, big, FP32_TOL);
    compare("adamw second moments", g_v, c_v, big, FP32_TOL);

    /* cross-entropy: loss, then loss and gradient */
    const int ce_rows = 33, ce_vocab = 300;
    float *logits = host_randn((size_t)ce_rows * ce_vocab, 3.0f);
    uint16_t targets[33];
    for (int i = 0; i < ce_rows; i++)
        targets[i] = (uint16_t)(rng_next(&r) % ce_vocab);
    float *c_l = on(cpu, logits, (size_t)ce_rows * ce_vocab), *g_l = on(gpu, logits, (size_t)ce_rows * ce_vocab);
    double l_cpu = cpu->cross_entropy(c_l, targets, ce_rows, ce_vocab, 0.0f);
    double l_gpu = gpu->cross_entropy(g_l, targets, ce_rows, ce_vocab, 0.0f);
    printf("  %-36s cpu %.9g, cuda %.9g\n", "cross-entropy loss", l_cpu, l_gpu);
    assert_true(fabs(l_cpu - l_gpu) <= FP32_TOL * fabs(l_cpu));
    l_cpu = cpu->cross_entropy(c_l, targets, ce_rows, ce_vocab, 0.03f);
    l_gpu = gpu->cross_entropy(g_l, targets, ce_rows, ce_vocab, 0.03f);
    assert_true(fabs(l_cpu - l_gpu) <= FP32_TOL * fabs(l_cpu));
    compare("cross-entropy gradient", g_l, c_l, (size_t)ce_rows * ce_vocab, FP32_TOL);

    float *gpu_bufs[] = {g_out, g_wte,  g_dw, g_dout, g_x, g_w,  g_y,  g_rstd, g_dx, g_dwn, g_g, g_q, g_cos,
                         g_sin, g_gate, g_up, g_dh,   g_h, g_dg, g_du, g_y2,   g_z,  g_p,   g_m, g_v, g_l};
    for (size_t i = 0; i < sizeof gpu_bufs / sizeof gpu_bufs[0]; i++)
        gpu->release(gpu_bufs[i]);
    float *cpu_bufs[] = {c_out, c_dw, c_y, c_rstd, c_dx, c_dwn, c_q, c_h, c_dg, c_du, c_y2, c_p, c_m, c_v, c_l};
    for (size_t i = 0; i < sizeof cpu_bufs / sizeof cpu_bufs[0]; i++)
        cpu->release(cpu_bufs[i]);
    float *host[] = {wte, dout, x, w, g, cos_t, sin_t, q, gate, up, dh, y, z, logits};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

/* Attention as context parallelism uses it: one set of query rows merged with several key
 * sets in turn (an earlier chunk, the diagonal, a chunk wholly in the future), grouped-query
 * heads, and a second case whose first rows see no key at all. The cuda results are left in
 * got (o, lse, dq, then dk and dv of each set, in that order) when it is not NULL. */
typedef struct attn_results {
    float *out[2 + 3 * 4];
    size_t len[2 + 3 * 4];
    int count;
} attn_results;

static void attention_case(const char *name, const attn_shape *shape_in, double tol, const int32_t *q_pos, int tq,
                           const int32_t *const *k_pos, const int *tk, int sets, attn_results *got)
{
    const attn_shape shape = *shape_in;
    const size_t qd = (size_t)shape.n_heads * shape.head_dim, kvd = (size_t)shape.n_kv_heads * shape.head_dim;
    const size_t hq = (size_t)shape.n_heads * tq;
    float *q = host_randn(tq * qd, 1.0f), *dout = host_randn(tq * qd, 1.0f);
    float *k[4], *v[4];
    for (int s = 0; s < sets; s++) {
        k[s] = host_randn((size_t)tk[s] * kvd, 1.0f);
        v[s] = host_randn((size_t)tk[s] * kvd, 1.0f);
    }
    const ops *both[2] = {cpu, gpu};
    float *o_[2], *lse_[2], *dq_[2], *dk_[2][4], *dv_[2][4];
    for (int b = 0; b < 2; b++) {
        const ops *x = both[b];
        float *qq = on(x, q, tq * qd), *gg = on(x, dout, tq * qd);
        float *acc = x->alloc(tq * qd * sizeof(float)), *mx = x->alloc(hq * sizeof(float));
        float *sm = x->alloc(hq * sizeof(float)), *delta = x->alloc(hq * sizeof(float));
        float *scratch = x->alloc(attn_scratch_floats(&shape) * sizeof(float));
        o_[b] = x->alloc(tq * qd * sizeof(float));
        lse_[b] = x->alloc(hq * sizeof(float));
        dq_[b] = x->alloc(tq * qd * sizeof(float));
        attn_state st = {.acc = acc, .max = mx, .sum = sm, .tq = tq};
        x->attn_begin(&st, &shape);
        float *kk[4], *vv[4];
        for (int s = 0; s < sets; s++) {
            kk[s] = on(x, k[s], (size_t)tk[s] * kvd);
            vv[s] = on(x, v[s], (size_t)tk[s] * kvd);
            x->attn_block(&st, qq, q_pos, kk[s], vv[s], k_pos[s], tk[s], &shape, scratch);
        }
        x->attn_end(o_[b], lse_[b], &st, &shape);
        x->attn_bwd_delta(delta, o_[b], gg, tq, &shape);
        for (int s = 0; s < sets; s++) {
            dk_[b][s] = x->alloc((size_t)tk[s] * kvd * sizeof(float));
            dv_[b][s] = x->alloc((size_t)tk[s] * kvd * sizeof(float));
            x->attn_block_bwd(dq_[b], dk_[b][s], dv_[b][s], qq, q_pos, tq, kk[s], vv[s], k_pos[s], tk[s], gg, lse_[b],
                              delta, &shape, scratch);
            x->release(kk[s]), x->release(vv[s]);
        }
        x->sync();
        x->release(qq), x->release(gg), x->release(acc), x->release(mx), x->release(sm), x->release(delta);
        x->release(scratch);
    }
    char what[96];
    snprintf(what, sizeof what, "attention %s: output", name);
    compare(what, o_[1], o_[0], tq * qd, tol);
    snprintf(what, sizeof what, "attention %s: log-sum-exp", name);
    compare(what, lse_[1], lse_[0], hq, tol);
    snprintf(what, sizeof what, "attention %s: dq", name);
    compare(what, dq_[1], dq_[0], tq * qd, tol);
    for (int s = 0; s < sets; s++) {
        snprintf(what, sizeof what, "attention %s: dk of key set %d", name, s);
        compare(what, dk_[1][s], dk_[0][s], (size_t)tk[s] * kvd, tol);
        snprintf(what, sizeof what, "attention %s: dv of key set %d", name, s);
        compare(what, dv_[1][s], dv_[0][s], (size_t)tk[s] * kvd, tol);
    }
    if (got != NULL) { /* host copies of the cuda results */
        got->count = 0;
        float *keep[] = {o_[1], lse_[1], dq_[1]};
        size_t lens[] = {tq * qd, hq, tq * qd};
        for (int i = 0; i < 3; i++) {
            got->len[got->count] = lens[i];
            got->out[got->count] = malloc(lens[i] * sizeof(float));
            memcpy(got->out[got->count++], keep[i], lens[i] * sizeof(float));
        }
        for (int s = 0; s < sets; s++) {
            const size_t n = (size_t)tk[s] * kvd;
            for (int w = 0; w < 2; w++) {
                got->len[got->count] = n;
                got->out[got->count] = malloc(n * sizeof(float));
                memcpy(got->out[got->count++], w == 0 ? dk_[1][s] : dv_[1][s], n * sizeof(float));
            }
        }
    }
    for (int b = 0; b < 2; b++) {
        both[b]->release(o_[b]), both[b]->release(lse_[b]), both[b]->release(dq_[b]);
        for (int s = 0; s < sets; s++)
            both[b]->release(dk_[b][s]), both[b]->release(dv_[b][s]);
    }
    for (int s = 0; s < sets; s++)
        free(k[s]), free(v[s]);
    free(q), free(dout);
}

static void attn_results_free(attn_results *x)
{
    for (int i = 0; i < x->count; i++)
        free(x->out[i]);
    x->count = 0;
}

/* The two cases every attention path must pass: chunks merged in turn, and rows that see
 * nothing. Inputs come from the shared generator, so a caller that reseeds it gets the
 * same inputs again. */
static void attention_cases(const char *label, const attn_shape *shape, double tol, attn_results *merged)
{
    int32_t q_pos[48], earlier[40], future[21], late_keys[31], first[16];
    for (int i = 0; i < 48; i++)
        q_pos[i] = 40 + i;
    for (int i = 0; i < 40; i++)
        earlier[i] = i;
    for (int i = 0; i < 21; i++)
        future[i] = 100 + i;
    const int32_t *sets[3] = {earlier, q_pos, future};
    const int tk[3] = {40, 48, 21};
    char name[96];
    snprintf(name, sizeof name, "%schunks merged", label);
    attention_case(name, shape, tol, q_pos, 48, sets, tk, 3, merged);
    /* queries 0..15 against keys 10..40: rows 0..9 see nothing (o = 0, lse = -inf) */
    for (int i = 0; i < 16; i++)
        first[i] = i;
    for (int i = 0; i < 31; i++)
        late_keys[i] = 10 + i;
    const int32_t *late[1] = {late_keys};
    const int tk_late[1] = {31};
    snprintf(name, sizeof name, "%srows that see nothing", label);
    attention_case(name, shape, tol, first, 16, late, tk_late, 1, NULL);
}

static void attention(void **state)
{
    (void)state;
    const attn_shape shape = {.n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .block = 16};
    attention_cases("", &shape, FP32_TOL, NULL);
    remake(CUDA_BF16, false); /* the products path's products on bf16 operands */
    attention_cases("bf16 products, ", &shape, BF16_ATTN_TOL, NULL);
    remake(CUDA_FP32, false);
}

/* The fused tensor-core kernels (TF32 or bf16 operands, fp32 accumulation) against the cpu at every
 * head dimension they take, with more rows than one block of each kernel (and partial last
 * tiles): zig-zag-like chunks as a rank holds them (two runs of positions with a gap),
 * earlier and later key sets, grouped-query heads. The launch counter proves the fused
 * kernels ran (a silent fall back to the products path would pass the comparison too), and
 * a second run with the same inputs must repeat bit for bit (no atomics). TF32's operand
 * rounding (2^-11 relative) through scores, exp and two products: 1e-2, normwise; bf16's
 * (2^-9): 3e-2. */
#define FUSED_TOL 1e-2

static void fused_at(cuda_precision p, double tol)
{
    remake(p, true);
    const int dims[] = {16, 32, 64, 128, 256};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        const attn_shape shape = {.n_heads = 4, .n_kv_heads = 2, .head_dim = dims[d], .block = 16};
        char label[48];
        snprintf(label, sizeof label, "fused %s hd %d, ", cuda_precision_name(p), dims[d]);
        const unsigned long long before = ops_cuda_fused_attention_launches();
        attention_cases(label, &shape, tol, NULL);
        assert_true(ops_cuda_fused_attention_launches() > before);
    }
    /* 150 query rows in two runs (positions 0..74 and 225..299), against the rank's own
     * keys and 100 keys of a chunk between (positions 100..199): three blocks of 64 query
     * rows, 32-key tiles cut short, dK/dV blocks of 32 and 64 keys with their first queries
     * found by position. */
    const attn_shape shape = {.n_heads = 8, .n_kv_heads = 2, .head_dim = 64, .block = 16};
    int32_t q_pos[150], middle[100];
    for (int i = 0; i < 75; i++)
        q_pos[i] = i, q_pos[75 + i] = 225 + i;
    for (int i = 0; i < 100; i++)
        middle[i] = 100 + i;
    const int32_t *sets[2] = {q_pos, middle};
    const int tk[2] = {150, 100};
    attn_results first = {0}, again = {0};
    rng saved = r;
    attention_case("fused zig-zag rank, 8 heads over 2", &shape, tol, q_pos, 150, sets, tk, 2, &first);
    r = saved;
    attention_case("fused zig-zag rank, again", &shape, tol, q_pos, 150, sets, tk, 2, &again);
    assert_int_equal(first.count, again.count);
    for (int i = 0; i < first.count; i++)
        assert_memory_equal(first.out[i], again.out[i], first.len[i] * sizeof(float));
    printf("  fused zig-zag rank (%s): a second run repeats every output bit for bit\n", cuda_precision_name(p));
    attn_results_free(&first), attn_results_free(&again);
    remake(CUDA_FP32, false);
}

static void attention_fused(void **state)
{
    (void)state;
    fused_at(CUDA_TF32, FUSED_TOL);
}

static void attention_fused_bf16(void **state)
{
    (void)state;
    fused_at(CUDA_BF16, BF16_ATTN_TOL);
}

static model_config small_model(void)
{
    model_config c = model_config_default();
    c.n_layers = 2;
    c.dim = 64;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 96;
    c.vocab = 300;
    c.context = 64;
    c.attn_block = 16;
    return c;
}

static void random_batch(uint16_t *x, int n, int vocab, rng *g)
{
    for (int i = 0; i < n; i++)
        x[i] = (uint16_t)(rng_next(g) % (uint64_t)vocab);
}

/* The whole model in full fp32: the loss and every parameter's gradient. */
static void model_gradients_at(cuda_precision p, double tol)
{
    remake(p, false);
    model_config cfg = small_model();
    model mc, mg;
    char err[WANCP_ERRLEN];
    assert_int_equal(model_init(&mc, &cfg, cpu, 2, 64, 11, err, sizeof err), WANCP_OK);
    assert_int_equal(model_init(&mg, &cfg, gpu, 2, 64, 11, err, sizeof err), WANCP_OK);
    uint16_t in[128], tg[128];
    rng g;
    rng_seed(&g, 5);
    random_batch(in, 128, cfg.vocab, &g);
    random_batch(tg, 128, cfg.vocab, &g);
    model_zero_grads(&mc);
    model_zero_grads(&mg);
    double lc = model_step(&mc, in, tg, true), lg = model_step(&mg, in, tg, true);
    gpu->sync();
    printf("  model loss: cpu %.9f, cuda (%s) %.9f\n", lc, cuda_precision_name(p), lg);
    assert_true(fabs(lc - lg) <= tol * fabs(lc));
    double worst = 0.0;
    for (int t = 0; t < mc.table.count; t++) {
        const tensor_info *info = &mc.table.tensors[t];
        if (info->frozen)
            continue;
        char what[80];
        snprintf(what, sizeof what, "gradient of %s (%s)", info->name, cuda_precision_name(p));
        worst = fmax(worst, compare(what, model_grad(&mg, t), model_grad(&mc, t), info->count, tol));
    }
    printf("  worst gradient difference over %d tensors (%s): %.2e\n", mc.table.count, cuda_precision_name(p), worst);
    model_free(&mc);
    model_free(&mg);
    remake(CUDA_FP32, false);
}

static void model_gradients(void **state)
{
    (void)state;
    model_gradients_at(CUDA_FP32, FP32_TOL);
}

/* The same gradients with rounded operands: every gradient goes through about ten products
 * in sequence (two layers forward and back), each adding its operands' rounding, so 1e-2 for
 * TF32 and 5e-2 for bf16, normwise per tensor. */
static void model_gradients_reduced(void **state)
{
    (void)state;
    model_gradients_at(CUDA_TF32, 1e-2);
    model_gradients_at(CUDA_BF16, 5e-2);
}

/* 50 AdamW steps on fresh random batches: TF32 (bf16) products on the GPU follow the cpu's
 * loss curve within tol at every step. */
static void training_curve_at(cuda_precision p, double tol)
{
    remake(p, false);
    model_config cfg = small_model();
    model mc, mg;
    char err[WANCP_ERRLEN];
    assert_int_equal(model_init(&mc, &cfg, cpu, 2, 64, 3, err, sizeof err), WANCP_OK);
    assert_int_equal(model_init(&mg, &cfg, gpu, 2, 64, 3, err, sizeof err), WANCP_OK);
    optim_config oc = optim_config_default();
    oc.lr = 3e-3f;
    oc.total_steps = 50;
    rng g;
    rng_seed(&g, 8);
    /* A small corpus of 4 batches, visited in turn, so the loss falls visibly. */
    uint16_t in[4][128], tg[4][128];
    for (int b = 0; b < 4; b++) {
        random_batch(in[b], 128, 40, &g);
        for (int i = 0; i < 128; i++)
            tg[b][i] = (uint16_t)((in[b][i] * 7 + 3) % 40);
    }
    double worst = 0.0, first = 0.0, last = 0.0;
    for (int s = 0; s < 50; s++) {
        model_zero_grads(&mc);
        model_zero_grads(&mg);
        double lc = model_step(&mc, in[s % 4], tg[s % 4], true), lg = model_step(&mg, in[s % 4], tg[s % 4], true);
        optim_step(&mc, &oc, s);
        optim_step(&mg, &oc, s);
        double rel = fabs(lc - lg) / fabs(lc);
        worst = fmax(worst, rel);
        if (s == 0)
            first = lc;
        last = lc;
        if (s % 10 == 9)
            printf("  step %2d: loss cpu %.5f, cuda (%s) %.5f\n", s + 1, lc, cuda_precision_name(p), lg);
    }
    printf("  50 steps: loss %.3f -> %.3f; worst relative difference cpu vs cuda (%s) %.2e (tolerance %.0e)\n", first,
           last, cuda_precision_name(p), worst, tol);
    assert_true(last < 0.8 * first); /* it learned */
    assert_true(worst < tol);
    model_free(&mc);
    model_free(&mg);
    remake(CUDA_FP32, false);
}

static void training_curve(void **state)
{
    (void)state;
    training_curve_at(CUDA_TF32, 2e-2);
}

static void training_curve_bf16(void **state)
{
    (void)state;
    training_curve_at(CUDA_BF16, 5e-2);
}

/* Host staging and the wire's rounding: download into pinned memory, upload from plain
 * memory that is overwritten at once, and bf16 rounding equal to the cpu's bit for bit
 * (ties, tiny values, infinities and NaN included). */
static void staging(void **state)
{
    (void)state;
    const size_t n = 100003;
    float *h = host_randn(n, 3.0f);
    h[0] = 1.00390625f; /* exactly between two bf16 values: ties to even */
    h[1] = 1.01171875f;
    h[2] = INFINITY;
    h[3] = -INFINITY;
    h[4] = NAN;
    h[5] = 1e-40f;
    float *d = gpu->alloc(n * sizeof *d), *pinned = gpu->host_alloc(n * sizeof *pinned);
    float *plain = malloc(n * sizeof *plain), *want = malloc(n * sizeof *want);
    assert_non_null(d), assert_non_null(pinned), assert_non_null(plain), assert_non_null(want);
    assert_false(gpu->host_memory);
    assert_true(cpu->host_memory);
    memcpy(plain, h, n * sizeof *h);
    gpu->upload(d, plain, n);
    for (size_t i = 0; i < n; i++) /* upload's source may change as soon as it returns */
        plain[i] = -1.0f;
    gpu->download(pinned, d, n);
    gpu->sync();
    assert_memory_equal(pinned, h, n * sizeof *h);
    memcpy(want, h, n * sizeof *h);
    cpu->round_bf16(want, n);
    gpu->round_bf16(d, n);
    gpu->download(pinned, d, n);
    gpu->sync();
    assert_memory_equal(pinned, want, n * sizeof *want);
    assert_true(pinned[0] == 1.0f && pinned[1] == 1.015625f && isnan(pinned[4]));
    printf("  staging: %zu floats up and down bit for bit; bf16 rounding equals the cpu's bit for bit\n", n);
    gpu->release(d);
    gpu->host_release(pinned);
    free(plain), free(want), free(h);
}

int main(void)
{
    char err[WANCP_ERRLEN];
    cpu = ops_make("cpu", NULL, NULL, 0);
    gpu = ops_make("cuda", &(ops_options){.precision = CUDA_FP32}, err, sizeof err);
    if (gpu == NULL) {
        printf("skipped: %s\n", err);
        return 77;
    }
    printf("cuda: %s\n", ops_cuda_device_name());
    remake(CUDA_FP32, false);
    rng_seed(&r, 77);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matmul_fp32),
        cmocka_unit_test(matmul_tf32),
        cmocka_unit_test(matmul_bf16),
        cmocka_unit_test(elementwise),
        cmocka_unit_test(attention),
        cmocka_unit_test(attention_fused),
        cmocka_unit_test(attention_fused_bf16),
        cmocka_unit_test(model_gradients),
        cmocka_unit_test(model_gradients_reduced),
        cmocka_unit_test(training_curve),
        cmocka_unit_test(training_curve_bf16),
        cmocka_unit_test(staging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
