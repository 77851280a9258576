/* Mixtures-of-subspaces compression of K/V (METHOD.md sections 2, 3, 5 and 6): finite
 * differences through every compressed path, full rank equals no compression, CP over
 * P in {1, 2, 4} equals METHOD.md section 2's model on one process (loss and every
 * gradient), byte counters against the section 5 formulas, shared-state hashes equal on
 * every rank, the warm start recovering a planted subspace, and the bf16 wire rounding. */
#include "test_cpu.h"
#include "test_helpers.h"
#include "test_fd.h"
#include "test_ranks.h"

#include "core/comm/comm.h"
#include "core/cp/cp_attention.h"
#include "core/cp/cp_layout.h"
#include "core/model/model.h"
#include "core/base/status.h"
#include "core/subspace/basis_blocks.h"
#include "core/subspace/kv_codec.h"
#include "core/subspace/warm_start.h"
#include "core/util/rng.h"

#include <math.h>
#include <signal.h>

static model_config config_of(int dim, int kv_heads, int chunks, int chunk, int block)
{
    model_config c = model_config_default();
    c.n_layers = 2;
    c.dim = dim;
    c.n_heads = 4;
    c.n_kv_heads = kv_heads;
    c.ffn_dim = 3 * dim / 2;
    c.vocab = 61;
    c.context = chunks * chunk;
    c.attn_block = block;
    c.tied_head = 0;
    c.psi_k = 2;
    c.rank_k = 2;
    c.rank_v = 3;
    return c;
}

/* One basis per KV head (the paper's form): psi_k 1 and ranks 1 (K) and 2 (V) per head. */
static model_config per_head(model_config c)
{
    c.kv_bases = c.n_kv_heads;
    c.psi_k = c.n_kv_heads;
    c.rank_k = c.n_kv_heads;
    c.rank_v = 2 * c.n_kv_heads;
    return c;
}

/* Heads psi away from zero so theta moves the subspaces; with weights, every weight too. */
static void randomize(model *m, bool weights, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    for (int t = 0; t < m->table.count; t++) {
        const tensor_info *info = &m->table.tensors[t];
        const bool psi = strstr(info->name, ".psi_") != NULL;
        if (info->frozen || (!psi && (!weights || !info->decay)))
            continue;
        const float scale = strstr(info->name, ".psi_b") != NULL ? 1.0f : psi ? 1.0f : 0.3f;
        for (size_t i = 0; i < info->count; i++)
            m->params[info->offset + i] = scale * rng_normal(&r);
    }
}

/* METHOD.md section 2's model on one process: chunks of `chunk` tokens, all local. */
static void single_process(model *m, cp_attention *cp, const model_config *cfg, int batch, int chunks, int chunk,
                           const cp_options *opt, bool compress)
{
    char err[WANCP_ERRLEN];
    assert_int_equal(model_init(m, cfg, test_cpu(), batch, chunks * chunk, 5, err, sizeof err), WANCP_OK);
    cp_layout layout = {.kind = CP_CONTIGUOUS, .ranks = 1, .chunk = chunk, .per_rank = chunks};
    assert_int_equal(cp_attention_init(cp, NULL, &layout, opt, m, err, sizeof err), WANCP_OK);
    if (compress && cp_attention_set_compression(cp, m, true, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
}

/* Every trainable tensor against Richardson-extrapolated central differences of the loss
 * (as test_model), with every block compressed: W_psi, b_psi (theta's gradient), W_K, W_V
 * and the owner's sum over several consumer chunks. */
static void check_finite_differences(bool cheap, bool heads)
{
    model_config cfg = config_of(16, 2, 3, 4, 4);
    if (heads)
        cfg = per_head(cfg);
    cp_options opt = {.compress_last = true, .seed = 3, .cheap_rotation = cheap};
    printf("  %s rotation, %s:\n", cheap ? "the cheaper" : "Givens",
           heads ? "a basis per KV head" : "one basis per layer");
    model m;
    cp_attention cp;
    single_process(&m, &cp, &cfg, 2, 3, 4, &opt, true);
    randomize(&m, true, 99);
    uint16_t in[24], tg[24];
    random_tokens(in, 24, cfg.vocab, 1);
    random_tokens(tg, 24, cfg.vocab, 2);
    model_zero_grads(&m);
    assert_false(isnan(model_step(&m, in, tg, true)));
    rng r;
    rng_seed(&r, 5);
    for (int t = 0; t < m.table.count; t++) {
        const tensor_info *info = &m.table.tensors[t];
        if (info->frozen)
            continue;
        fd_result f = fd_check_tensor(&m, t, in, tg, &r, 12);
        if (strstr(info->name, "psi") != NULL || strstr(info->name, ".wk") != NULL || strstr(info->name, ".wv") != NULL)
            printf("  %-16s worst relative error %.2e, absolute %.2e of max (max |g| %.2e)\n", info->name, f.worst,
                   f.worst_abs, f.amax);
        if (f.worst > 2e-2 || f.worst_abs > 2e-3 || f.amax == 0.0)
            fail_msg("%s: gradient differs from finite differences: worst relative %.2e, absolute %.2e of max "
                     "(max |g| %.2e; bars 2e-2, 2e-3)",
                     info->name, f.worst, f.worst_abs, f.amax);
    }
    cp_attention_free(&cp);
    model_free(&m);
}

static void finite_differences(void **state)
{
    (void)state;
    check_finite_differences(false, false);
    check_finite_differences(true, false);
    check_finite_differences(false, true);
    check_finite_differences(true, true);
}

/* dL/dU0 (the Stiefel option's gradient, summed over chunks, taken back through R(theta))
 * against central differences on U0's entries. */
static void check_basis_gradient(bool heads)
{
    model_config cfg = config_of(16, 2, 3, 4, 4);
    if (heads)
        cfg = per_head(cfg);
    cp_options opt = {.compress_last = true, .seed = 3, .stiefel = true};
    model m;
    cp_attention cp;
    single_process(&m, &cp, &cfg, 2, 3, 4, &opt, true);
    randomize(&m, true, 99);
    assert_int_equal(cp_attention_refresh_bases(&cp, &m, NULL, 0), WANCP_OK);
    uint16_t in[24], tg[24];
    random_tokens(in, 24, cfg.vocab, 1);
    random_tokens(tg, 24, cfg.vocab, 2);
    model_zero_grads(&m);
    cp_attention_zero_basis_grads(&cp, &m);
    assert_false(isnan(model_step(&m, in, tg, true)));
    const int kvd = model_kv_dim(&cfg);
    for (int l = 0; l < cfg.n_layers; l++)
        for (int w = 0; w < 2; w++) {
            float *u0 = model_param(&m, w == 0 ? m.layers[l].u0_k : m.layers[l].u0_v);
            const float *g = cp_attention_basis_grads(&cp, &m, l) + (w == 0 ? 0 : (size_t)kvd * cfg.rank_k);
            const int n = kvd * (w == 0 ? cfg.rank_k : cfg.rank_v);
            double amax = 0, worst = 0;
            for (int i = 0; i < n; i++)
                amax = fmax(amax, fabs(g[i]));
            for (int i = 0; i < n; i++) {
                const float saved = u0[i];
                double d[2];
                for (int k = 0; k < 2; k++) {
                    const float h = k == 0 ? 1e-2f : 5e-3f;
                    u0[i] = saved + h;
                    assert_int_equal(cp_attention_refresh_bases(&cp, &m, NULL, 0), WANCP_OK);
                    double lp = model_step(&m, in, tg, false);
                    u0[i] = saved - h;
                    assert_int_equal(cp_attention_refresh_bases(&cp, &m, NULL, 0), WANCP_OK);
                    double lm = model_step(&m, in, tg, false);
                    u0[i] = saved;
                    d[k] = (lp - lm) / (2.0 * h);
                }
                assert_int_equal(cp_attention_refresh_bases(&cp, &m, NULL, 0), WANCP_OK);
                worst = fmax(worst, fabs((4.0 * d[1] - d[0]) / 3.0 - g[i]) / amax);
            }
            printf("  %s layer%d dL/dU0_%c: worst error %.2e of max (max |g| %.2e)\n", heads ? "per head" : "per layer",
                   l, w == 0 ? 'K' : 'V', worst, amax);
            assert_true(amax > 0 && worst < 5e-3);
        }
    cp_attention_free(&cp);
    model_free(&m);
}

static void basis_gradient(void **state)
{
    (void)state;
    check_basis_gradient(false);
    check_basis_gradient(true);
}

/* A basis per KV head is per head: changing one head's rows of Z changes neither the other
 * head's theta nor its columns of C, bit for bit; U_theta is zero off its blocks, orthonormal;
 * and bases = 1 is the per-layer codec. */
static void bases_are_independent(void **state)
{
    (void)state;
    enum { D = 16, R = 4, K = 2, M = 6, B = 2 };
    static float u0[D * R], w[K * (D / B)], bias[K], z[M * D], c1[M * R], c2[M * R], th1[K], th2[K];
    assert_int_equal(subspace_random_blocks(u0, D, R, B, 7), WANCP_OK);
    rng g;
    rng_seed(&g, 3);
    for (int i = 0; i < K * (D / B); i++)
        w[i] = rng_normal(&g);
    for (int i = 0; i < K; i++)
        bias[i] = rng_normal(&g);
    for (int i = 0; i < M * D; i++)
        z[i] = rng_normal(&g);
    kv_codec c;
    char err[WANCP_ERRLEN];
    assert_int_equal(kv_codec_init(&c, D, R, K, B, 0, false, u0, 11, err, sizeof err), WANCP_OK);
    kv_codec_theta(&c, w, bias, z, M, th1);
    kv_codec_basis(&c, th1);
    kv_codec_compress(&c, z, M, c1);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < R; j++)
            if ((i < D / B) != (j < R / B))
                assert_true(c.u[i * R + j] == 0.0f);
    assert_true(subspace_orthonormality_error(c.u, D, R) < 1e-6);
    for (int t = 0; t < M; t++) /* head 1's half of every row */
        for (int i = D / B; i < D; i++)
            z[t * D + i] += 0.5f * rng_normal(&g);
    kv_codec_theta(&c, w, bias, z, M, th2);
    kv_codec_basis(&c, th2);
    kv_codec_compress(&c, z, M, c2);
    assert_true(th1[0] == th2[0] && th1[1] != th2[1]);
    double other = 0;
    for (int t = 0; t < M; t++) {
        for (int j = 0; j < R / B; j++)
            assert_true(c1[t * R + j] == c2[t * R + j]);
        for (int j = R / B; j < R; j++)
            other = fmax(other, fabs(c1[t * R + j] - c2[t * R + j]));
    }
    assert_true(other > 1e-3);
    kv_codec_free(&c);
    /* one basis: the codec is subspace's own operator on the whole width */
    subspace s;
    static float u_one[D * R];
    assert_int_equal(subspace_random_orthonormal(u0, D, R, 7), WANCP_OK);
    assert_int_equal(kv_codec_init(&c, D, R, 1, 1, 0, false, u0, 11, err, sizeof err), WANCP_OK);
    assert_int_equal(subspace_init(&s, D, R, 1, 0, u0, 11, err, sizeof err), WANCP_OK);
    const float theta = 0.7f;
    kv_codec_basis(&c, &theta);
    subspace_rotate(&s, &theta, u_one);
    assert_memory_equal(c.u, u_one, sizeof u_one);
    subspace_free(&s);
    kv_codec_free(&c);
    printf("  per head: the other head's theta and C unchanged bit for bit (this head's moved %.2f)\n", other);
}

/* The warm start and the Stiefel step per basis: each head's planted subspace found in its
 * own block, zero off the blocks; a step keeps every block orthonormal and the rest zero. */
static void bases_warm_start_and_stiefel(void **state)
{
    (void)state;
    enum { D = 24, R = 4, B = 2, N = 300, DB = D / B, RB = R / B };
    static float planted[D * R], z[N * D], cov[D * D], u[D * R], g[D * R], blk[DB * RB], pl[DB * RB];
    assert_int_equal(subspace_random_blocks(planted, D, R, B, 31), WANCP_OK);
    rng r;
    rng_seed(&r, 4);
    for (int t = 0; t < N; t++) {
        double coef[R];
        for (int j = 0; j < R; j++)
            coef[j] = (3.0 - j % RB) * rng_normal(&r);
        for (int i = 0; i < D; i++) {
            double x = 0;
            for (int j = 0; j < R; j++)
                x += planted[i * R + j] * coef[j];
            z[t * D + i] = (float)(x + 1e-3 * rng_normal(&r));
        }
    }
    memset(cov, 0, sizeof cov);
    covariance_accumulate(cov, z, N, D);
    char err[WANCP_ERRLEN];
    assert_int_equal(bases_from_covariance(cov, D, R, B, u, err, sizeof err), WANCP_OK);
    double resid = 0;
    for (int b = 0; b < B; b++) {
        basis_block_get(u, D, R, B, b, blk);
        basis_block_get(planted, D, R, B, b, pl);
        for (int i = 0; i < DB; i++)
            for (int j = 0; j < RB; j++) {
                double proj = 0;
                for (int a = 0; a < RB; a++) {
                    double dot = 0;
                    for (int q = 0; q < DB; q++)
                        dot += blk[q * RB + a] * pl[q * RB + j];
                    proj += blk[i * RB + a] * dot;
                }
                resid = fmax(resid, fabs(pl[i * RB + j] - proj));
            }
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < R; j++)
            if (i / DB != j / RB)
                assert_true(u[i * R + j] == 0.0f);
    for (int i = 0; i < D * R; i++)
        g[i] = rng_normal(&r);
    assert_int_equal(stiefel_step_blocks(u, g, D, R, B, 0.1f, err, sizeof err), WANCP_OK);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < R; j++)
            if (i / DB != j / RB)
                assert_true(u[i * R + j] == 0.0f);
    const double orth = subspace_orthonormality_error(u, D, R);
    printf("  per head: planted subspaces recovered to %.1e; after a Stiefel step orthonormal to %.1e\n", resid, orth);
    assert_true(resid < 1e-3 && orth < 1e-6);
}

/* Stiefel steps on the PCA objective L = -tr(U^T A U)/2 find A's top-r subspace, staying
 * orthonormal; a step of size 0 leaves U0 in place. */
static void stiefel_steps_find_top_subspace(void **state)
{
    (void)state;
    enum { D = 12, R = 2 };
    static float basis[D * D], u[D * R], g[D * R], start[D * R];
    static double a[D * D];
    assert_int_equal(subspace_random_orthonormal(basis, D, D, 5), WANCP_OK);
    for (int i = 0; i < D; i++) /* A = B diag(D, D-1, ..., 1) B^T */
        for (int j = 0; j < D; j++) {
            a[i * D + j] = 0;
            for (int e = 0; e < D; e++)
                a[i * D + j] += (double)basis[i * D + e] * (D - e) * basis[j * D + e];
        }
    assert_int_equal(subspace_random_orthonormal(u, D, R, 9), WANCP_OK);
    memcpy(start, u, sizeof u);
    char err[WANCP_ERRLEN];
    assert_int_equal(stiefel_step(u, g, D, R, 0.0f, err, sizeof err), WANCP_OK);
    for (int i = 0; i < D * R; i++)
        assert_true(fabsf(u[i] - start[i]) < 1e-6f);
    for (int step = 0; step < 300; step++) {
        for (int i = 0; i < D; i++)
            for (int j = 0; j < R; j++) {
                double x = 0;
                for (int q = 0; q < D; q++)
                    x -= a[i * D + q] * u[q * R + j];
                g[i * R + j] = (float)x;
            }
        assert_int_equal(stiefel_step(u, g, D, R, 0.05f, err, sizeof err), WANCP_OK);
    }
    double err_orth = subspace_orthonormality_error(u, D, R), resid = 0;
    for (int e = 0; e < R; e++) /* the top eigenvectors lie in span(U) */
        for (int i = 0; i < D; i++) {
            double proj = 0;
            for (int c = 0; c < R; c++) {
                double dot = 0;
                for (int q = 0; q < D; q++)
                    dot += (double)u[q * R + c] * basis[q * D + e];
                proj += u[i * R + c] * dot;
            }
            resid = fmax(resid, fabs(basis[i * D + e] - proj));
        }
    printf("  300 Stiefel steps: top-%d subspace to %.1e, orthonormal to %.1e\n", R, resid, err_orth);
    assert_true(resid < 1e-3 && err_orth < 1e-6);
}

/* Largest relative difference of loss and gradients (trainable tensors, psi excluded when
 * skip_psi) between two models of the same table. */
static double worst_difference(const model *a, const model *b, double la, double lb, bool skip_psi, char *name,
                               size_t len)
{
    double worst = fabs(la - lb) / fabs(lb);
    snprintf(name, len, "loss");
    for (int t = 0; t < a->table.count; t++) {
        const tensor_info *info = &a->table.tensors[t];
        if (info->frozen || (skip_psi && strstr(info->name, ".psi_") != NULL))
            continue;
        double diff = 0, scale = 0;
        for (size_t i = 0; i < info->count; i++) {
            diff = fmax(diff, fabs(a->grads[info->offset + i] - b->grads[info->offset + i]));
            scale = fmax(scale, fabs(b->grads[info->offset + i]));
        }
        if (scale > 0 && diff / scale > worst) {
            worst = diff / scale;
            snprintf(name, len, "%s", info->name);
        }
    }
    return worst;
}

/* r = d_kv: U_theta is square, so C U^T = Z for any theta; equal to no compression. */
static void full_rank_equals_uncompressed(void **state)
{
    (void)state;
    model_config cfg = config_of(32, 2, 4, 8, 8);
    cfg.rank_k = cfg.rank_v = model_kv_dim(&cfg);
    cp_options opt = {.compress_last = true, .seed = 3};
    model a, b;
    cp_attention ca, cb;
    single_process(&a, &ca, &cfg, 2, 4, 8, &opt, true);
    single_process(&b, &cb, &cfg, 2, 4, 8, &opt, false);
    randomize(&a, false, 4);
    randomize(&b, false, 4);
    uint16_t in[64], tg[64];
    random_tokens(in, 64, cfg.vocab, 1);
    random_tokens(tg, 64, cfg.vocab, 2);
    model_zero_grads(&a);
    model_zero_grads(&b);
    double la = model_step(&a, in, tg, true), lb = model_step(&b, in, tg, true);
    char name[64];
    double worst = worst_difference(&a, &b, la, lb, true, name, sizeof name);
    double psi = 0, wk = 0;
    for (int t = 0; t < a.table.count; t++) {
        const tensor_info *info = &a.table.tensors[t];
        for (size_t i = 0; i < info->count; i++) {
            if (strstr(info->name, ".psi_") != NULL)
                psi = fmax(psi, fabs(a.grads[info->offset + i]));
            if (strstr(info->name, ".wk") != NULL)
                wk = fmax(wk, fabs(a.grads[info->offset + i]));
        }
    }
    printf("  r = d_kv: loss %.6f vs %.6f, worst relative difference %.2e (%s); |dpsi| %.1e vs |dW_K| %.1e\n", la, lb,
           worst, name, psi, wk);
    assert_true(worst < 2e-5);
    assert_true(psi < 1e-4 * wk); /* theta cannot change a full-rank projection */
    cp_attention_free(&ca);
    cp_attention_free(&cb);
    model_free(&a);
    model_free(&b);
}

/* ---- CP over real rank processes ---- */

#define CHUNK 16
#define BATCH 2

typedef struct cp_case {
    int ranks;
    enum cp_layout_kind kind;
    bool compress_last, bf16, regather, cheap;
    bool staged; /* the ranks' backend says its memory is not host memory: K/V staged, the codec's
                  * products through the ops table (the path a GPU takes), with the cpu's maths */
    bool heads;  /* a basis per KV head */
} cp_case;

/* The cpu table under a device backend's contract (host_memory false). */
static ops staged_cpu;

static uint64_t per_rank_bytes(const model_config *cfg, const cp_case *k)
{
    const uint64_t s = k->bf16 ? 2 : 4, kvd = (uint64_t)model_kv_dim(cfg);
    const uint64_t mu = CHUNK * (uint64_t)(cfg->rank_k + cfg->rank_v) * s + 4ull * cfg->psi_k * 2;
    const uint64_t mu0 = 2ull * CHUNK * kvd * s;
    uint64_t per_sequence = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        per_sequence += l + 1 < cfg->n_layers || k->compress_last ? mu : mu0;
    return per_sequence * BATCH;
}

static int rank_body(comm *c, const void *arg, char *err, size_t errlen)
{
    const cp_case *k = arg;
    const int P = k->ranks, rank = comm_rank(c), N = 2 * P * CHUNK;
    model_config cfg = config_of(32, 2, 2 * P, CHUNK, 8);
    if (k->heads)
        cfg = per_head(cfg);
    cp_options opt = {.compress_last = k->compress_last,
                      .wire_bf16 = k->bf16,
                      .seed = 3,
                      .regather = k->regather,
                      .cheap_rotation = k->cheap};
    uint16_t in[BATCH * 8 * CHUNK], tg[BATCH * 8 * CHUNK], lin[BATCH * 2 * CHUNK], ltg[BATCH * 2 * CHUNK];
    random_tokens(in, (size_t)BATCH * N, cfg.vocab, 1);
    random_tokens(tg, (size_t)BATCH * N, cfg.vocab, 2);

    model ref, m;
    cp_attention rcp, cp;
    single_process(&ref, &rcp, &cfg, BATCH, 2 * P, CHUNK, &opt, true);
    int rc = model_init(&m, &cfg, k->staged ? &staged_cpu : test_cpu(), BATCH, 2 * CHUNK, 5, err, errlen);
    cp_layout layout = {.kind = k->kind, .ranks = P, .chunk = CHUNK};
    if (rc == WANCP_OK)
        rc = cp_attention_init(&cp, c, &layout, &opt, &m, err, errlen);
    if (rc == WANCP_OK)
        rc = cp_attention_set_compression(&cp, &m, true, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    randomize(&ref, false, 4);
    randomize(&m, false, 4);
    m.loss_tokens = (long)BATCH * N;
    cp_select_tokens(&layout, rank, in, BATCH, lin);
    cp_select_tokens(&layout, rank, tg, BATCH, ltg);

    model_zero_grads(&ref);
    double want = model_step(&ref, in, tg, true);
    model_zero_grads(&m);
    float loss = (float)model_step(&m, lin, ltg, true);
    if (isnan(loss))
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", cp.error);
    rc = comm_allreduce_sum(c, COMM_CONTROL, &loss, 1, err, errlen);
    if (rc == WANCP_OK)
        rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, m.grads, m.table.trainable, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    char name[64];
    double worst = worst_difference(&m, &ref, loss, want, false, name, sizeof name);
    if (rank == 0)
        printf("  P=%d %s%s%s%s%s%s: loss %.6f vs %.6f; worst relative difference %.2e (%s)\n", P,
               k->heads ? "per head, " : "", k->kind == CP_ZIGZAG ? "zig-zag" : "contiguous",
               k->compress_last ? ", last compressed" : "", k->bf16 ? ", bf16 wire" : "",
               k->regather ? ", gathered again"
               : k->cheap  ? ", cheaper rotation"
                           : "",
               k->staged ? ", staged (device path)" : "", (double)loss, want, worst, name);
    const double tolerance = k->bf16 ? 5e-2 : 1e-5; /* bf16 rounds E per rank, not per chunk */
    if (worst >= tolerance)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "rank %d: %s differs from one process by %.2e", rank, name,
                          worst);

    if (k->kind == CP_ZIGZAG) {
        const uint64_t per = per_rank_bytes(&cfg, k);
        rc = test_kv_bytes(c, (uint64_t)(P - 1 + rank) * per, (uint64_t)(P - 1 + P - 1 - rank) * per,
                           k->regather ? 2 : 1, err, errlen);
    }
    if (rc == WANCP_OK)
        rc = test_same_on_every_rank(c, cp_attention_shared_hash(&cp, &m), "shared state", err, errlen);
    cp_attention_free(&cp);
    cp_attention_free(&rcp);
    model_free(&m);
    model_free(&ref);
    return rc;
}

static void run_case(const cp_case *k)
{
    int port = 12260 + (int)(getpid() % 500) * 40; /* below the ephemeral range */
    assert_int_equal(test_run_ranks(k->ranks, port, 11, rank_body, k), 0);
}

static void cp_equals_single_process(void **state)
{
    (void)state;
    static const cp_case cases[] = {
        /* ranks, layout, last block compressed, bf16 wire, K/V gathered again, cheaper rotation, staged, per head */
        {1, CP_ZIGZAG, false, false, false, false, false, false},
        {2, CP_ZIGZAG, false, false, false, false, false, false},
        {4, CP_ZIGZAG, false, false, false, false, false, false},
        {4, CP_CONTIGUOUS, false, false, false, false, false, false},
        {4, CP_ZIGZAG, true, false, false, false, false, false},
        {4, CP_ZIGZAG, true, true, false, false, false, false},
        {2, CP_ZIGZAG, false, true, false, false, false, false},
        {4, CP_ZIGZAG, false, false, true, false, false, false},
        {4, CP_ZIGZAG, true, false, false, true, false, false},
        {4, CP_ZIGZAG, false, false, false, false, true, false},
        {4, CP_ZIGZAG, true, false, false, false, true, false},
        {2, CP_ZIGZAG, true, true, false, false, true, false},
        {4, CP_ZIGZAG, true, false, true, false, true, false},
        /* a basis per KV head */
        {2, CP_ZIGZAG, false, false, false, false, false, true},
        {4, CP_ZIGZAG, true, false, false, false, false, true},
        {4, CP_CONTIGUOUS, true, false, false, false, false, true},
        {4, CP_ZIGZAG, true, true, false, false, false, true},
        {4, CP_ZIGZAG, true, false, false, true, false, true},
        {4, CP_ZIGZAG, true, false, true, false, true, true},
    };
    staged_cpu = *test_cpu();
    staged_cpu.host_memory = false;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* METHOD.md section 6, test 7: data of rank r plus noise; the warm start finds its span. */
static void warm_start_recovers_planted_subspace(void **state)
{
    (void)state;
    enum { D = 32, R = 3, N = 400 };
    static float basis[D * R], z[N * D], cov[D * D], u[D * R], again[D * R];
    assert_int_equal(subspace_random_orthonormal(basis, D, R, 21), WANCP_OK);
    rng g;
    rng_seed(&g, 8);
    for (int t = 0; t < N; t++) {
        double coef[R];
        for (int j = 0; j < R; j++)
            coef[j] = (3.0 - j) * rng_normal(&g);
        for (int i = 0; i < D; i++) {
            double x = 0;
            for (int j = 0; j < R; j++)
                x += basis[i * R + j] * coef[j];
            z[t * D + i] = (float)(x + 1e-3 * rng_normal(&g));
        }
    }
    memset(cov, 0, sizeof cov);
    covariance_accumulate(cov, z, N / 2, D);
    covariance_accumulate(cov, z + (N / 2) * D, N / 2, D);
    char err[WANCP_ERRLEN];
    assert_int_equal(basis_from_covariance(cov, D, R, u, err, sizeof err), WANCP_OK);
    assert_int_equal(basis_from_covariance(cov, D, R, again, err, sizeof err), WANCP_OK);
    assert_memory_equal(u, again, sizeof u);
    /* the planted basis lies in span(U): || B - U U^T B || small */
    double resid = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < R; j++) {
            double proj = 0;
            for (int a = 0; a < R; a++) {
                double dot = 0;
                for (int q = 0; q < D; q++)
                    dot += u[q * R + a] * basis[q * R + j];
                proj += u[i * R + a] * dot;
            }
            resid = fmax(resid, fabs(basis[i * R + j] - proj));
        }
    printf("  planted rank-%d subspace recovered to %.1e\n", R, resid);
    assert_true(resid < 1e-3);
    for (int j = 0; j < R; j++) { /* signs: largest-magnitude entry positive; columns orthonormal */
        int big = 0;
        double norm = 0;
        for (int i = 0; i < D; i++) {
            if (fabsf(u[i * R + j]) > fabsf(u[big * R + j]))
                big = i;
            norm += (double)u[i * R + j] * u[i * R + j];
        }
        assert_true(u[big * R + j] > 0);
        assert_true(fabs(norm - 1) < 1e-6);
    }
    assert_int_equal(basis_from_covariance(cov, D, D + 1, u, err, sizeof err), WANCP_ERR_INPUT);
}

static void wire_rounding(void **state)
{
    (void)state;
    float x[5] = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, to even (1) */, 1.01171875f /* 1 + 3 2^-8: to 1 + 2^-6 */,
                  -3.14159265f, 65504.0f};
    float want[5] = {1.0f, 1.0f, 1.015625f, -3.140625f, 65536.0f};
    uint8_t wire[10];
    float back[5];
    assert_int_equal(wire_put(wire, x, 5, true), 10);
    assert_int_equal(wire_get(back, wire, 5, true), 10);
    wire_round(x, 5, true);
    for (int i = 0; i < 5; i++) {
        assert_true(x[i] == want[i]);
        assert_true(back[i] == want[i]);
    }
    assert_int_equal(wire_bytes(7, true), 14);
    assert_int_equal(wire_bytes(7, false), 28);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wire_rounding),
        cmocka_unit_test(warm_start_recovers_planted_subspace),
        cmocka_unit_test(finite_differences),
        cmocka_unit_test(basis_gradient),
        cmocka_unit_test(bases_are_independent),
        cmocka_unit_test(bases_warm_start_and_stiefel),
        cmocka_unit_test(stiefel_steps_find_top_subspace),
        cmocka_unit_test(full_rank_equals_uncompressed),
        cmocka_unit_test(cp_equals_single_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
