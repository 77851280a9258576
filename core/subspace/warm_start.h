#ifndef WANCP_WARM_START_H
#define WANCP_WARM_START_H

#include <stddef.h>

/*
 * The bases' maths over time (METHOD.md section 3): the warm start (the uncentred
 * covariance of Z over the last warm-up steps, and U0 = its top-r eigenvectors) and the
 * optional Stiefel step. The all-reduces and broadcasts around them are the trainer's.
 */

/* cov (d x d) += z^T z for z (n x d). */
void covariance_accumulate(float *cov, const float *z, int n, int d);

/* u0 (d x r, row-major) = the eigenvectors of the r largest eigenvalues of the symmetric
 * cov (d x d), largest first, each with its largest-magnitude entry positive (so the same
 * covariance always gives the same basis). LAPACK dsyevd in double. */
int basis_from_covariance(const float *cov, int d, int r, float *u0, char *err, size_t errlen);

/* The same for a layer's `bases` bases (basis_blocks.h): basis b from cov's diagonal block
 * b (the covariance of its own columns of Z), r / bases vectors each; zero off the blocks.
 * bases = 1 is basis_from_covariance. */
int bases_from_covariance(const float *cov, int d, int r, int bases, float *u0, char *err, size_t errlen);

/* One Riemannian gradient step on the Stiefel manifold (METHOD.md section 3, option): with
 * g = dL/dU0 (d x r), xi = g - U0 sym(U0^T g), U0 <- qf(U0 - lr xi), the QR retraction
 * with R's diagonal made positive (so lr = 0 leaves U0 where it is). In double. */
int stiefel_step(float *u0, const float *g, int d, int r, float lr, char *err, size_t errlen);

/* stiefel_step on each of a layer's `bases` bases: block b of u0 steps with block b of g
 * (what lies off the blocks of g is not a direction of any basis and is dropped). */
int stiefel_step_blocks(float *u0, const float *g, int d, int r, int bases, float lr, char *err, size_t errlen);

#endif
