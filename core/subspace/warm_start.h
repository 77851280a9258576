#ifndef WANCP_WARM_START_H
#define WANCP_WARM_START_H

#include <stddef.h>

/*
 * The warm start's maths (METHOD.md section 3): the uncentred covariance of Z over the
 * last warm-up steps, and the basis U0 = its top-r eigenvectors. The all-reduce of the
 * covariance and the broadcast of U0 are the trainer's.
 */

/* cov (d x d) += z^T z for z (n x d). */
void covariance_accumulate(float *cov, const float *z, int n, int d);

/* u0 (d x r, row-major) = the eigenvectors of the r largest eigenvalues of the symmetric
 * cov (d x d), largest first, each with its largest-magnitude entry positive (so the same
 * covariance always gives the same basis). LAPACK dsyevd in double. */
int basis_from_covariance(const float *cov, int d, int r, float *u0, char *err, size_t errlen);

#endif
