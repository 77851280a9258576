#ifndef WANCP_SUBSPACE_H
#define WANCP_SUBSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The compression operator of METHOD.md section 2, on its own: a basis U0 (d x r,
 * orthonormal columns) turned by a data-dependent rotation R(theta), theta in R^k, built
 * from h Givens rotations in orthogonal planes:
 *
 *   Q = [Qa | Qb] (d x 2h, orthonormal, seeded), Omega (h x k, seeded), phi = Omega theta,
 *   S = diag(sin phi), D = diag(1 - cos phi), Ma = Qa^T U0, Mb = Qb^T U0 (h x r):
 *   U_theta = U0 + Qa (S Mb - D Ma) - Qb (S Ma + D Mb)
 *
 * exactly orthonormal, and U_{theta=0} = U0 bit for bit. Its gradient, with G = dL/dU_theta,
 * Ha = Qa^T G, Hb = Qb^T G:
 *   dL/dphi_i = cos phi_i (<Ha,Mb>_i - <Hb,Ma>_i) - sin phi_i (<Ha,Ma>_i + <Hb,Mb>_i)
 *   dL/dtheta = Omega^T dL/dphi
 * Compression is C = Z U (m x r); decompression Z~ = C U^T, whose adjoint is compression
 * with the same U. Row-major fp32 throughout; the seeded parts are built in double and
 * rounded once, so every rank holds the same bits.
 */
typedef struct subspace {
    int d, r, h, k;
    bool cheap; /* the cheaper variant: h = r planes, Qa = U0, Qb an orthonormal complement */
    uint64_t seed;
    float *u0;      /* (d, r) */
    float *qa;      /* (d, h) */
    float *qb;      /* (d, h) */
    float *omega;   /* (h, k) */
    float *ma;      /* (h, r) = qa^T u0 */
    float *mb;      /* (h, r) = qb^T u0 */
    double *phi;    /* (h,) scratch of rotate and rotate_grad: one caller at a time */
    float *wa, *wb; /* (h, r) scratch */
} subspace;

/* Builds Q and Omega from seed (Omega entries N(0, 1)), takes U0 (d x r, orthonormal
 * columns, copied) and precomputes Ma, Mb. h = floor(d / 2) planes unless planes > 0. */
int subspace_init(subspace *s, int d, int r, int k, int planes, const float *u0, uint64_t seed, char *err,
                  size_t errlen);
void subspace_free(subspace *s);

/* The cheaper variant (METHOD.md section 2): h = r planes pairing each column of U0 with a
 * seeded orthonormal complement Qb (orthogonal to U0), so U_theta = U0 cos Phi - Qb sin Phi
 * with Phi = diag(Omega theta), at O(d r^2) instead of O(d^2 r). Needs 2r <= d. */
int subspace_init_cheap(subspace *s, int d, int r, int k, const float *u0, uint64_t seed, char *err, size_t errlen);

/* U (d x r) = U_theta. Not thread-safe on one subspace (shared scratch). */
void subspace_rotate(const subspace *s, const float *theta, float *u);

/* dtheta (k) = dL/dtheta given g = dL/dU_theta (d x r). */
void subspace_rotate_grad(const subspace *s, const float *theta, const float *g, float *dtheta);

/* out (d x r) = R(sign phi) in, the rotation that takes U0 to U_theta applied to any d x r
 * matrix; sign -1 applies its transpose (R(-phi) = R(phi)^T), which maps dL/dU_theta to
 * dL/dU0. Not thread-safe on one subspace (shared scratch). */
void subspace_apply_rotation(const subspace *s, const float *theta, int sign, const float *in, float *out);

/* Replaces U0 (d x r, orthonormal columns) and recomputes Ma, Mb (and, in the cheaper
 * variant, Qa = U0 and its complement Qb). */
int subspace_set_u0(subspace *s, const float *u0);

/* Largest |(U^T U - I)_ij| of a d x r matrix, in double. */
double subspace_orthonormality_error(const float *u, int d, int r);

/* c (m x r) = z (m x d) u; z_out (m x d) = c u^T. */
void subspace_compress(const float *z, const float *u, int m, int d, int r, float *c);
void subspace_decompress(const float *c, const float *u, int m, int d, int r, float *z_out);

/* An orthonormal basis of d x n columns from seed (Gram-Schmidt twice, in double). */
int subspace_random_orthonormal(float *out, int d, int n, uint64_t seed);

/* The same for a layer's `bases` bases (basis_blocks.h): zero off the blocks, block b from
 * seed and b (block 0, and bases = 1, from seed itself). */
int subspace_random_blocks(float *out, int d, int n, int bases, uint64_t seed);

#endif
