#ifndef WANCP_KV_CODEC_H
#define WANCP_KV_CODEC_H

#include "subspace.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * One chunk's compression for one of K or V in one layer (METHOD.md section 2), on top of
 * the subspace operator: the head psi, compress, decompress, and both halves of the
 * backward (the consumer's E and tau, the owner's sum). Z is the chunk's pre-RoPE
 * projection (m x d). Also the wire: fp32 or bf16 elements, rounded the same way wherever
 * a value travels or stands in for one that would.
 */
typedef struct kv_codec {
    int bases;         /* independent bases side by side: 1 over the layer, n_kv_heads for one per head */
    int d, r, k;       /* totals over the bases: Z's columns, C's columns, theta's length */
    subspace *s;       /* (bases) basis b: d / bases rows of Z, r / bases columns of C, k / bases angles */
    float *u;          /* (d, r) U_theta of the chunk at hand, block-diagonal (zero off its bases' blocks) */
    float *gu;         /* (d, r) dL/dU of the last consumer or owner gradient (kept for the Stiefel step) */
    float *zbar;       /* (d) mean row of Z */
    double *sum;       /* (d) scratch of the mean */
    float *zrow;       /* (d) scratch of the owner's gradient */
    float *blk, *blk2; /* (d / bases, r / bases) scratch: one basis's block */
} kv_codec;

/* The shape of U0 (d x r, block-diagonal over bases: basis b owns rows b d/bases.. and
 * columns b r/bases..; off-block entries are ignored), k angles in all, and the seed of Q and
 * Omega as in subspace_init (basis b > 0 seeded from seed and b; one basis uses seed itself,
 * so bases = 1 is the per-layer codec bit for bit). planes: per basis (0: its width / 2);
 * cheap: the cheaper rotation (subspace_init_cheap; planes is then its rank). d, r and k
 * divide by bases. */
int kv_codec_init(kv_codec *c, int d, int r, int k, int bases, int planes, bool cheap, const float *u0, uint64_t seed,
                  char *err, size_t errlen);
void kv_codec_free(kv_codec *c);

/* Replaces U0 (d x r, block-diagonal as in kv_codec_init). */
int kv_codec_set_u0(kv_codec *c, const float *u0);

/* tau (k) = dL/dtheta given gu = dL/dU_theta (d x r; only the blocks are read). */
void kv_codec_rotate_grad(const kv_codec *c, const float *theta, const float *gu, float *tau);

/* out (d x r) = R(-phi) in per block: dL/dU_theta taken back to dL/dU0; zero off the blocks. */
void kv_codec_unrotate(const kv_codec *c, const float *theta, const float *in, float *out);

/* Floats of psi's W for this codec: k rows of d / bases. */
static inline size_t kv_codec_w_floats(const kv_codec *c) { return (size_t)c->k * (c->d / c->bases); }

/* theta (k) = W zbar + b with zbar = mean of z's m rows; keeps zbar in c. W is (k, d / bases):
 * row i reads the columns of basis i / (k / bases). */
void kv_codec_theta(kv_codec *c, const float *w, const float *b, const float *z, int m, float *theta);

/* theta (k) = W c->zbar + b: the head alone, once zbar is known (a device computes the mean). */
void kv_codec_head(const kv_codec *c, const float *w, const float *b, float *theta);

/* c->u = U_theta. */
void kv_codec_basis(kv_codec *c, const float *theta);

/* comp (m x r) = z c->u. */
void kv_codec_compress(const kv_codec *c, const float *z, int m, float *comp);

/* z_out (m x d) = comp c->u^T. */
void kv_codec_decompress(const kv_codec *c, const float *comp, int m, float *z_out);

/* Consumer backward with c->u = U_theta: e (m x r) = g c->u; tau (k) = dL/dtheta through
 * U at g^T comp, which stays in c->gu. g is dL/d(decompressed) before RoPE. */
void kv_codec_consumer_grad(kv_codec *c, const float *theta, const float *comp, const float *g, int m, float *e,
                            float *tau);

/* Owner backward with c->u = U_theta and c->zbar from kv_codec_theta of this chunk: given
 * dcomp = the sum of every consumer's e and dtheta = the sum of their tau, adds its own
 * term at z^T dcomp (left in c->gu) to dtheta, then dz (m x d) += dcomp U^T + (1/m) 1 (W^T dtheta)^T,
 * dw += dtheta zbar^T, db += dtheta. */
void kv_codec_owner_grad(kv_codec *c, const float *w, const float *theta, const float *z, const float *dcomp,
                         float *dtheta, int m, float *dz, float *dw, float *db);

/* The owner's pieces that do not scale with m, for a caller that does the products itself:
 * row (d) = (1/m) W^T dtheta, added to every row of dz; dw += dtheta zbar^T, db += dtheta. */
void kv_codec_owner_row(const kv_codec *c, const float *w, const float *dtheta, int m, float *row);
void kv_codec_head_grad(const kv_codec *c, const float *dtheta, float *dw, float *db);

/* The codec's products are thin (r columns): OpenBLAS splitting one over its threads
 * costs more in hand-offs than it saves (measured 2.3x slower on 2 threads). Callers run
 * a stretch of codec work between these: begin returns the thread count to restore. */
int kv_codec_serial_begin(void);
void kv_codec_serial_end(int threads);

/* ---- the wire ---- */

/* Bytes of n elements: 2 each as bf16, 4 as fp32. */
static inline size_t wire_bytes(size_t n, bool bf16) { return n * (bf16 ? 2 : 4); }

/* Rounds to the nearest bf16 (ties to even) in place; fp32 leaves x alone. */
void wire_round(float *x, size_t n, bool bf16);

/* Writes n floats as wire elements at dst (any alignment); returns the bytes written. */
size_t wire_put(void *dst, const float *src, size_t n, bool bf16);

/* Reads n wire elements into floats; returns the bytes read. */
size_t wire_get(float *dst, const void *src, size_t n, bool bf16);

#endif
