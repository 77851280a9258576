#include "subspace.h"

#include "basis_blocks.h"

#include "../base/status.h"
#include "../util/rng.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n seeded orthonormal columns (d x n, row-major into out), each also orthogonal to the
 * `fixed` columns of basis (d x fixed, row-major; may be NULL when fixed is 0). */
static int orthonormal_after(float *out, int d, int n, const float *basis, int fixed, uint64_t seed)
{
    if (n + fixed > d)
        return WANCP_ERR_INPUT;
    const int total = fixed + n;
    double *q = malloc((size_t)d * total * sizeof *q); /* column j at q[j * d .. ] */
    if (q == NULL)
        return WANCP_ERR_NOMEM;
    for (int j = 0; j < fixed; j++)
        for (int i = 0; i < d; i++)
            q[(size_t)j * d + i] = basis[(size_t)i * fixed + j];
    rng r;
    rng_seed(&r, seed);
    for (int j = fixed; j < total; j++) {
        double *v = q + (size_t)j * d;
        for (;;) {
            for (int i = 0; i < d; i++)
                v[i] = rng_normal(&r);
            /* Gram-Schmidt twice against earlier columns: orthogonal to rounding. */
            for (int pass = 0; pass < 2; pass++)
                for (int p = 0; p < j; p++) {
                    const double *w = q + (size_t)p * d;
                    double dot = 0;
                    for (int i = 0; i < d; i++)
                        dot += v[i] * w[i];
                    for (int i = 0; i < d; i++)
                        v[i] -= dot * w[i];
                }
            double norm = 0;
            for (int i = 0; i < d; i++)
                norm += v[i] * v[i];
            norm = sqrt(norm);
            if (norm > 1e-6) { /* a draw inside the span: draw again */
                for (int i = 0; i < d; i++)
                    v[i] /= norm;
                break;
            }
        }
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < n; j++)
            out[(size_t)i * n + j] = (float)q[(size_t)(fixed + j) * d + i];
    free(q);
    return WANCP_OK;
}

int subspace_random_orthonormal(float *out, int d, int n, uint64_t seed)
{
    return orthonormal_after(out, d, n, NULL, 0, seed);
}

int subspace_random_blocks(float *out, int d, int n, int bases, uint64_t seed)
{
    if (bases == 1)
        return subspace_random_orthonormal(out, d, n, seed);
    float *blk = malloc((size_t)(d / bases) * (n / bases) * sizeof *blk);
    int rc = blk != NULL ? WANCP_OK : WANCP_ERR_NOMEM;
    memset(out, 0, (size_t)d * n * sizeof *out);
    for (int b = 0; b < bases && rc == WANCP_OK; b++) {
        rc = subspace_random_orthonormal(blk, d / bases, n / bases, basis_seed(seed, b));
        if (rc == WANCP_OK)
            basis_block_put(out, d, n, bases, b, blk);
    }
    free(blk);
    return rc;
}

/* Allocates every part for s's d, r, h and k. */
static int allocate(subspace *s, char *err, size_t errlen)
{
    const int d = s->d, r = s->r, h = s->h, k = s->k;
    s->u0 = malloc((size_t)d * r * sizeof *s->u0);
    s->qa = malloc((size_t)d * h * sizeof *s->qa);
    s->qb = malloc((size_t)d * h * sizeof *s->qb);
    s->omega = malloc((size_t)h * k * sizeof *s->omega);
    s->ma = malloc((size_t)h * r * sizeof *s->ma);
    s->mb = malloc((size_t)h * r * sizeof *s->mb);
    s->phi = malloc((size_t)h * sizeof *s->phi);
    s->wa = malloc((size_t)h * r * sizeof *s->wa);
    s->wb = malloc((size_t)h * r * sizeof *s->wb);
    if (s->u0 == NULL || s->qa == NULL || s->qb == NULL || s->omega == NULL || s->ma == NULL || s->mb == NULL ||
        s->phi == NULL || s->wa == NULL || s->wb == NULL) {
        subspace_free(s);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "subspace: out of memory");
    }
    return WANCP_OK;
}

/* Omega from the seed (N(0, 1) entries). */
static void fill_omega(subspace *s)
{
    rng g;
    rng_seed(&g, s->seed ^ 0x5DEECE66Dull);
    for (int i = 0; i < s->h * s->k; i++)
        s->omega[i] = rng_normal(&g);
}

/* The cheaper variant's planes: Qa = U0, Qb orthonormal and orthogonal to U0. */
static int cheap_planes(subspace *s)
{
    memcpy(s->qa, s->u0, (size_t)s->d * s->r * sizeof *s->qa);
    return orthonormal_after(s->qb, s->d, s->r, s->u0, s->r, s->seed);
}

int subspace_init(subspace *s, int d, int r, int k, int planes, const float *u0, uint64_t seed, char *err,
                  size_t errlen)
{
    *s = (subspace){.d = d, .r = r, .k = k, .h = planes > 0 ? planes : d / 2, .seed = seed};
    if (d < 2 || r < 1 || r > d || k < 1 || 2 * s->h > d)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "subspace: d = %d, r = %d, k = %d, h = %d (need 1 <= r <= d, "
                          "k >= 1, 2h <= d)",
                          d, r, k, s->h);
    int rc = allocate(s, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    const int h = s->h;
    float *q = malloc((size_t)d * 2 * h * sizeof *q);
    if (q == NULL || subspace_random_orthonormal(q, d, 2 * h, seed) != WANCP_OK) {
        free(q);
        subspace_free(s);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "subspace: out of memory");
    }
    for (int i = 0; i < d; i++) {
        memcpy(s->qa + (size_t)i * h, q + (size_t)i * 2 * h, (size_t)h * sizeof *q);
        memcpy(s->qb + (size_t)i * h, q + (size_t)i * 2 * h + h, (size_t)h * sizeof *q);
    }
    free(q);
    fill_omega(s);
    if (subspace_set_u0(s, u0) != WANCP_OK) {
        subspace_free(s);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "subspace: out of memory");
    }
    return WANCP_OK;
}

int subspace_init_cheap(subspace *s, int d, int r, int k, const float *u0, uint64_t seed, char *err, size_t errlen)
{
    *s = (subspace){.d = d, .r = r, .k = k, .h = r, .seed = seed, .cheap = true};
    if (d < 2 || r < 1 || 2 * r > d || k < 1)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "subspace: d = %d, r = %d, k = %d (the cheaper rotation needs 2r <= d, k >= 1)", d, r, k);
    int rc = allocate(s, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    fill_omega(s);
    if (subspace_set_u0(s, u0) != WANCP_OK) {
        subspace_free(s);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "subspace: out of memory");
    }
    return WANCP_OK;
}

void subspace_free(subspace *s)
{
    free(s->u0);
    free(s->qa);
    free(s->qb);
    free(s->omega);
    free(s->ma);
    free(s->mb);
    free(s->phi);
    free(s->wa);
    free(s->wb);
    *s = (subspace){0};
}

/* phi = Omega theta, in double for the sin and cos. */
static void angles(const subspace *s, const float *theta, double *phi)
{
    for (int i = 0; i < s->h; i++) {
        double a = 0;
        for (int j = 0; j < s->k; j++)
            a += (double)s->omega[(size_t)i * s->k + j] * theta[j];
        phi[i] = a;
    }
}

void subspace_rotate(const subspace *s, const float *theta, float *u)
{
    const int d = s->d, r = s->r, h = s->h;
    double *phi = s->phi;
    float *a = s->wa, *b = s->wb;
    angles(s, theta, phi);
    int moved = 0;
    for (int i = 0; i < h; i++)
        moved |= phi[i] != 0.0;
    memcpy(u, s->u0, (size_t)d * r * sizeof *u);
    if (!moved)
        return; /* U_0 = U0, bit for bit */
    /* a = S Mb - D Ma, b = S Ma + D Mb (row i scaled by the plane's sin and 1 - cos) */
    for (int i = 0; i < h; i++) {
        float sn = (float)sin(phi[i]), dn = (float)(1.0 - cos(phi[i]));
        for (int j = 0; j < r; j++) {
            float ma = s->ma[(size_t)i * r + j], mb = s->mb[(size_t)i * r + j];
            a[(size_t)i * r + j] = sn * mb - dn * ma;
            b[(size_t)i * r + j] = sn * ma + dn * mb;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, r, h, 1.0f, s->qa, h, a, r, 1.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, r, h, -1.0f, s->qb, h, b, r, 1.0f, u, r);
}

void subspace_rotate_grad(const subspace *s, const float *theta, const float *g, float *dtheta)
{
    const int d = s->d, r = s->r, h = s->h;
    double *phi = s->phi;
    float *ha = s->wa, *hb = s->wb;
    angles(s, theta, phi);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qa, h, g, r, 0.0f, ha, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qb, h, g, r, 0.0f, hb, r);
    for (int j = 0; j < s->k; j++)
        dtheta[j] = 0.0f;
    for (int i = 0; i < h; i++) {
        double ab = 0, ba = 0, aa = 0, bb = 0;
        for (int j = 0; j < r; j++) {
            size_t x = (size_t)i * r + j;
            ab += (double)ha[x] * s->mb[x];
            ba += (double)hb[x] * s->ma[x];
            aa += (double)ha[x] * s->ma[x];
            bb += (double)hb[x] * s->mb[x];
        }
        double dphi = cos(phi[i]) * (ab - ba) - sin(phi[i]) * (aa + bb);
        for (int j = 0; j < s->k; j++)
            dtheta[j] += (float)(dphi * s->omega[(size_t)i * s->k + j]);
    }
}

void subspace_apply_rotation(const subspace *s, const float *theta, int sign, const float *in, float *out)
{
    const int d = s->d, r = s->r, h = s->h;
    double *phi = s->phi;
    float *ha = s->wa, *hb = s->wb;
    angles(s, theta, phi);
    memcpy(out, in, (size_t)d * r * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qa, h, in, r, 0.0f, ha, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qb, h, in, r, 0.0f, hb, r);
    /* a = S Hb - D Ha, b = S Ha + D Hb (in place, row by row), with S's sign flipped for R^T */
    for (int i = 0; i < h; i++) {
        float sn = (float)(sign * sin(phi[i])), dn = (float)(1.0 - cos(phi[i]));
        for (int j = 0; j < r; j++) {
            float a = ha[(size_t)i * r + j], b = hb[(size_t)i * r + j];
            ha[(size_t)i * r + j] = sn * b - dn * a;
            hb[(size_t)i * r + j] = sn * a + dn * b;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, r, h, 1.0f, s->qa, h, ha, r, 1.0f, out, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, r, h, -1.0f, s->qb, h, hb, r, 1.0f, out, r);
}

int subspace_set_u0(subspace *s, const float *u0)
{
    const int d = s->d, r = s->r, h = s->h;
    memcpy(s->u0, u0, (size_t)d * r * sizeof *s->u0);
    if (s->cheap && cheap_planes(s) != WANCP_OK)
        return WANCP_ERR_NOMEM;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qa, h, s->u0, r, 0.0f, s->ma, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, r, d, 1.0f, s->qb, h, s->u0, r, 0.0f, s->mb, r);
    return WANCP_OK;
}

double subspace_orthonormality_error(const float *u, int d, int r)
{
    double worst = 0;
    for (int a = 0; a < r; a++)
        for (int b = a; b < r; b++) {
            double dot = 0;
            for (int i = 0; i < d; i++)
                dot += (double)u[(size_t)i * r + a] * u[(size_t)i * r + b];
            worst = fmax(worst, fabs(dot - (a == b ? 1.0 : 0.0)));
        }
    return worst;
}

void subspace_compress(const float *z, const float *u, int m, int d, int r, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, r, d, 1.0f, z, d, u, r, 0.0f, c, r);
}

void subspace_decompress(const float *c, const float *u, int m, int d, int r, float *z_out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, d, r, 1.0f, c, r, u, r, 0.0f, z_out, d);
}
