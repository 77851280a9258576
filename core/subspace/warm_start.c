#include "warm_start.h"

#include "../status.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>

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
