/* The subspace operator of METHOD.md section 2 on its own (section 6, tests 3-5):
 * U_theta orthonormal for |theta| <= 10 and U_0 == U0 exactly; the adjoint identity
 * <C U^T, G> = <C, G U>; dL/dtheta against central differences; r = d recovers Z exactly. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "core/subspace/subspace.h"
#include "core/util/rng.h"

#include <math.h>

/* planes < 0: the cheaper variant (h = r, Qa = U0). */
static void make(subspace *s, int d, int r, int k, int planes)
{
    float *u0 = malloc((size_t)d * r * sizeof *u0);
    assert_int_equal(subspace_random_orthonormal(u0, d, r, 7), WANCP_OK);
    char err[WANCP_ERRLEN];
    if (planes < 0)
        assert_int_equal(subspace_init_cheap(s, d, r, k, u0, 11, err, sizeof err), WANCP_OK);
    else
        assert_int_equal(subspace_init(s, d, r, k, planes, u0, 11, err, sizeof err), WANCP_OK);
    free(u0);
}

static double orthonormality_error(const float *u, int d, int r)
{
    double worst = 0;
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) {
            double dot = 0;
            for (int i = 0; i < d; i++)
                dot += (double)u[(size_t)i * r + a] * u[(size_t)i * r + b];
            worst = fmax(worst, fabs(dot - (a == b)));
        }
    return worst;
}

static void orthonormal_and_identity_at_zero(void **state)
{
    (void)state;
    static const int dims[][4] = {{64, 2, 1, 0},    {256, 13, 1, 0}, {256, 6, 3, 0}, {33, 5, 2, 0},
                                  {256, 13, 1, -1}, {33, 5, 2, -1}}; /* d, r, k, planes (-1: cheaper variant) */
    rng r;
    rng_seed(&r, 3);
    double worst = 0;
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
        int d = dims[c][0], rank = dims[c][1], k = dims[c][2];
        subspace s;
        make(&s, d, rank, k, dims[c][3]);
        float *u = malloc((size_t)d * rank * sizeof *u), theta[3] = {0, 0, 0};
        subspace_rotate(&s, theta, u);
        assert_memory_equal(u, s.u0, (size_t)d * rank * sizeof *u);
        for (int trial = 0; trial < 20; trial++) {
            for (int j = 0; j < k; j++)
                theta[j] = (float)(20.0 * rng_uniform(&r) - 10.0);
            subspace_rotate(&s, theta, u);
            worst = fmax(worst, orthonormality_error(u, d, rank));
        }
        free(u);
        subspace_free(&s);
    }
    printf("  max |U^T U - I| over |theta| <= 10: %.2e\n", worst);
    assert_true(worst < 2e-6);
}

static void adjoint_identity(void **state)
{
    (void)state;
    const int m = 40, d = 64, r = 5;
    subspace s;
    make(&s, d, r, 1, 0);
    float theta = 0.7f, u[64 * 5], c[40 * 5], g[40 * 64], zc[40 * 64], gu[40 * 5];
    subspace_rotate(&s, &theta, u);
    rng q;
    rng_seed(&q, 5);
    for (int i = 0; i < m * r; i++)
        c[i] = rng_normal(&q);
    for (int i = 0; i < m * d; i++)
        g[i] = rng_normal(&q);
    subspace_decompress(c, u, m, d, r, zc); /* C U^T */
    subspace_compress(g, u, m, d, r, gu);   /* G U */
    double lhs = 0, rhs = 0;
    for (int i = 0; i < m * d; i++)
        lhs += (double)zc[i] * g[i];
    for (int i = 0; i < m * r; i++)
        rhs += (double)c[i] * gu[i];
    printf("  <C U^T, G> = %.6f, <C, G U> = %.6f\n", lhs, rhs);
    assert_true(fabs(lhs - rhs) < 1e-4 * fabs(lhs));
    subspace_free(&s);
}

static void full_rank_is_exact(void **state)
{
    (void)state;
    const int m = 10, d = 16;
    subspace s;
    make(&s, d, d, 1, 0);
    float theta = -2.3f, u[16 * 16], z[10 * 16], c[10 * 16], back[10 * 16];
    subspace_rotate(&s, &theta, u);
    rng q;
    rng_seed(&q, 9);
    for (int i = 0; i < m * d; i++)
        z[i] = rng_normal(&q);
    subspace_compress(z, u, m, d, d, c);
    subspace_decompress(c, u, m, d, d, back);
    for (int i = 0; i < m * d; i++)
        assert_true(fabs(back[i] - z[i]) < 1e-5);
    subspace_free(&s);
}

/* L(theta) = <U_theta, R>: dL/dtheta from rotate_grad with G = R against central
 * differences (Richardson), for k = 1 and 3 and both plane counts. */
static void theta_gradient(void **state)
{
    (void)state;
    static const int cases[][4] = {{64, 3, 1, 0}, {48, 4, 3, 0}, {40, 2, 2, 2}, {40, 3, 2, -1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int d = cases[c][0], r = cases[c][1], k = cases[c][2];
        subspace s;
        make(&s, d, r, k, cases[c][3]);
        float *u = malloc((size_t)d * r * sizeof *u), *R = malloc((size_t)d * r * sizeof *R);
        rng q;
        rng_seed(&q, 21);
        for (int i = 0; i < d * r; i++)
            R[i] = rng_normal(&q);
        float theta[3] = {0.3f, -1.1f, 2.0f}, dtheta[3];
        subspace_rotate_grad(&s, theta, R, dtheta);
        for (int j = 0; j < k; j++) {
            double est[2];
            for (int t = 0; t < 2; t++) {
                float h = t == 0 ? 1e-2f : 5e-3f, saved = theta[j];
                double lp = 0, lm = 0;
                theta[j] = saved + h;
                subspace_rotate(&s, theta, u);
                for (int i = 0; i < d * r; i++)
                    lp += (double)u[i] * R[i];
                theta[j] = saved - h;
                subspace_rotate(&s, theta, u);
                for (int i = 0; i < d * r; i++)
                    lm += (double)u[i] * R[i];
                theta[j] = saved;
                est[t] = (lp - lm) / (2.0 * h);
            }
            double fd = (4 * est[1] - est[0]) / 3;
            double rel = fabs(fd - dtheta[j]) / fmax(fabs(fd), 1e-3);
            printf("  d=%d r=%d k=%d: dL/dtheta_%d analytic %.6f, finite differences %.6f (relative %.1e)\n", d, r, k,
                   j, (double)dtheta[j], fd, rel);
            assert_true(rel < 1e-2);
        }
        free(u);
        free(R);
        subspace_free(&s);
    }
}

static void bad_shapes(void **state)
{
    (void)state;
    subspace s;
    char err[WANCP_ERRLEN];
    float u0[4] = {1, 0, 0, 1};
    assert_int_equal(subspace_init(&s, 2, 3, 1, 0, u0, 1, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "r = 3");
    assert_int_equal(subspace_init(&s, 4, 1, 1, 3, u0, 1, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "2h <= d");
}

/* The cheaper variant is U0 cos Phi - Qb sin Phi with Qb orthonormal and orthogonal to U0. */
static void cheap_variant_formula(void **state)
{
    (void)state;
    enum { D = 40, R = 3, K = 2 };
    subspace s;
    make(&s, D, R, K, -1);
    assert_int_equal(s.h, R);
    static float u[D * R];
    const float theta[K] = {0.7f, -1.3f};
    subspace_rotate(&s, theta, u);
    double worst = 0, cross = 0;
    for (int j = 0; j < R; j++) {
        double phi = 0;
        for (int i = 0; i < K; i++)
            phi += (double)s.omega[j * K + i] * theta[i];
        for (int i = 0; i < D; i++)
            worst = fmax(worst, fabs(u[i * R + j] - (s.u0[i * R + j] * cos(phi) - s.qb[i * R + j] * sin(phi))));
        for (int a = 0; a < R; a++) {
            double dot = 0;
            for (int i = 0; i < D; i++)
                dot += (double)s.qb[i * R + j] * s.u0[i * R + a];
            cross = fmax(cross, fabs(dot));
        }
    }
    printf("  cheaper variant: |U_theta - (U0 cos Phi - Qb sin Phi)| %.1e, |Qb^T U0| %.1e, |Qb^T Qb - I| %.1e\n", worst,
           cross, orthonormality_error(s.qb, D, R));
    assert_true(worst < 1e-6 && cross < 1e-6 && orthonormality_error(s.qb, D, R) < 1e-6);
    char err[WANCP_ERRLEN];
    subspace t;
    assert_int_equal(subspace_init_cheap(&t, 4, 3, 1, s.u0, 1, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "2r <= d");
    subspace_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orthonormal_and_identity_at_zero),
        cmocka_unit_test(adjoint_identity),
        cmocka_unit_test(full_rank_is_exact),
        cmocka_unit_test(theta_gradient),
        cmocka_unit_test(bad_shapes),
        cmocka_unit_test(cheap_variant_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
