#include "warm_start.h"

#include "basis_blocks.h"

#include "../base/status.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void covariance_accumulate(float *cov, const float *z, int n, int d)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0f, z, d, z, d, 1.0f, cov, d);
}

int basis_from_covariance(const float *cov, int d, int r, float *u0, char *err, size_t errlen)
{
    if (r < 1 || r > d)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "warm start: rank %d outside 1..%d", r, d);
    double *a = malloc((size_t)d * d * sizeof *a), *w = malloc((size_t)d * sizeof *w);
    if (a == NULL || w == NULL) {
        free(a);
        free(w);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "warm start: out of memory");
    }
    for (size_t i = 0; i < (size_t)d * d; i++)
        a[i] = cov[i];
    /* eigenvalues ascending in w, eigenvectors in a's columns */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, a, d, w);
    int rc = WANCP_OK;
    if (info != 0) {
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "warm start: LAPACK dsyevd failed (info %d)", (int)info);
    } else {
        for (int j = 0; j < r; j++) {
            const int col = d - 1 - j;
            int big = 0;
            for (int i = 1; i < d; i++)
                if (fabs(a[(size_t)i * d + col]) > fabs(a[(size_t)big * d + col]))
                    big = i;
            const double sign = a[(size_t)big * d + col] < 0 ? -1.0 : 1.0;
            for (int i = 0; i < d; i++)
                u0[(size_t)i * r + j] = (float)(sign * a[(size_t)i * d + col]);
        }
    }
    free(a);
    free(w);
    return rc;
}

int stiefel_step(float *u0, const float *g, int d, int r, float lr, char *err, size_t errlen)
{
    double *y = malloc((size_t)d * r * sizeof *y), *sym = malloc((size_t)r * r * sizeof *sym);
    double *tau = malloc((size_t)r * sizeof *tau);
    if (y == NULL || sym == NULL || tau == NULL) {
        free(y), free(sym), free(tau);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "Stiefel step: out of memory");
    }
    /* sym = (U0^T g + g^T U0) / 2 */
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) {
            double ab = 0, ba = 0;
            for (int i = 0; i < d; i++) {
                ab += (double)u0[(size_t)i * r + a] * g[(size_t)i * r + b];
                ba += (double)g[(size_t)i * r + a] * u0[(size_t)i * r + b];
            }
            sym[(size_t)a * r + b] = 0.5 * (ab + ba);
        }
    /* y = U0 - lr (g - U0 sym) */
    for (int i = 0; i < d; i++)
        for (int b = 0; b < r; b++) {
            double u_sym = 0;
            for (int a = 0; a < r; a++)
                u_sym += (double)u0[(size_t)i * r + a] * sym[(size_t)a * r + b];
            y[(size_t)i * r + b] = u0[(size_t)i * r + b] - lr * (g[(size_t)i * r + b] - u_sym);
        }
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, d, r, y, r, tau);
    int rc = WANCP_OK;
    double *signs = sym; /* r entries of scratch */
    if (info == 0) {
        for (int j = 0; j < r; j++)
            signs[j] = y[(size_t)j * r + j] < 0 ? -1.0 : 1.0;
        info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, d, r, r, y, r, tau);
    }
    if (info != 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "Stiefel step: LAPACK QR failed (info %d)", (int)info);
    else
        for (int i = 0; i < d; i++)
            for (int j = 0; j < r; j++)
                u0[(size_t)i * r + j] = (float)(signs[j] * y[(size_t)i * r + j]);
    free(y), free(sym), free(tau);
    return rc;
}

int bases_from_covariance(const float *cov, int d, int r, int bases, float *u0, char *err, size_t errlen)
{
    if (bases == 1)
        return basis_from_covariance(cov, d, r, u0, err, errlen);
    const int db = d / bases, rb = r / bases;
    float *block_cov = malloc((size_t)db * db * sizeof *block_cov), *blk = malloc((size_t)db * rb * sizeof *blk);
    int rc = block_cov != NULL && blk != NULL ? WANCP_OK
                                              : wancp_fail(err, errlen, WANCP_ERR_NOMEM, "warm start: out of memory");
    memset(u0, 0, (size_t)d * r * sizeof *u0);
    for (int b = 0; b < bases && rc == WANCP_OK; b++) {
        for (int i = 0; i < db; i++)
            memcpy(block_cov + (size_t)i * db, cov + ((size_t)b * db + i) * d + (size_t)b * db,
                   (size_t)db * sizeof *cov);
        rc = basis_from_covariance(block_cov, db, rb, blk, err, errlen);
        if (rc == WANCP_OK)
            basis_block_put(u0, d, r, bases, b, blk);
    }
    free(block_cov);
    free(blk);
    return rc;
}

int stiefel_step_blocks(float *u0, const float *g, int d, int r, int bases, float lr, char *err, size_t errlen)
{
    if (bases == 1)
        return stiefel_step(u0, g, d, r, lr, err, errlen);
    const size_t n = (size_t)(d / bases) * (r / bases);
    float *ub = malloc(n * sizeof *ub), *gb = malloc(n * sizeof *gb);
    int rc =
        ub != NULL && gb != NULL ? WANCP_OK : wancp_fail(err, errlen, WANCP_ERR_NOMEM, "Stiefel step: out of memory");
    for (int b = 0; b < bases && rc == WANCP_OK; b++) {
        basis_block_get(u0, d, r, bases, b, ub);
        basis_block_get(g, d, r, bases, b, gb);
        rc = stiefel_step(ub, gb, d / bases, r / bases, lr, err, errlen);
        if (rc == WANCP_OK)
            basis_block_put(u0, d, r, bases, b, ub);
    }
    free(ub);
    free(gb);
    return rc;
}
