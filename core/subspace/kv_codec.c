#include "kv_codec.h"

#include "basis_blocks.h"

#include "../base/status.h"
#include "../util/bf16.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static void block_get(const kv_codec *c, int b, const float *full, float *blk)
{
    basis_block_get(full, c->d, c->r, c->bases, b, blk);
}

static void block_put(const kv_codec *c, int b, const float *blk, float *full)
{
    basis_block_put(full, c->d, c->r, c->bases, b, blk);
}

int kv_codec_init(kv_codec *c, int d, int r, int k, int bases, int planes, bool cheap, const float *u0, uint64_t seed,
                  char *err, size_t errlen)
{
    *c = (kv_codec){0};
    if (bases < 1 || d % bases != 0 || r % bases != 0 || k % bases != 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "compression: d %d, r %d, k %d do not divide by %d bases", d, r,
                          k, bases);
    const int db = d / bases, rb = r / bases, kb = k / bases;
    c->bases = bases, c->d = d, c->r = r, c->k = k;
    c->s = calloc((size_t)bases, sizeof *c->s);
    c->u = calloc((size_t)d * r, sizeof *c->u);
    c->gu = calloc((size_t)d * r, sizeof *c->gu);
    c->zbar = malloc((size_t)d * sizeof *c->zbar);
    c->sum = malloc((size_t)d * sizeof *c->sum);
    c->zrow = malloc((size_t)d * sizeof *c->zrow);
    c->blk = malloc((size_t)db * rb * sizeof *c->blk);
    c->blk2 = malloc((size_t)db * rb * sizeof *c->blk2);
    if (c->s == NULL || c->u == NULL || c->gu == NULL || c->zbar == NULL || c->sum == NULL || c->zrow == NULL ||
        c->blk == NULL || c->blk2 == NULL) {
        kv_codec_free(c);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "compression: out of memory");
    }
    for (int b = 0; b < bases; b++) {
        const uint64_t sb = basis_seed(seed, b);
        block_get(c, b, u0, c->blk);
        int rc = cheap ? subspace_init_cheap(&c->s[b], db, rb, kb, c->blk, sb, err, errlen)
                       : subspace_init(&c->s[b], db, rb, kb, planes, c->blk, sb, err, errlen);
        if (rc != WANCP_OK) {
            kv_codec_free(c);
            return rc;
        }
    }
    return WANCP_OK;
}

void kv_codec_free(kv_codec *c)
{
    for (int b = 0; c->s != NULL && b < c->bases; b++)
        subspace_free(&c->s[b]);
    free(c->s);
    free(c->u);
    free(c->gu);
    free(c->zbar);
    free(c->sum);
    free(c->zrow);
    free(c->blk);
    free(c->blk2);
    *c = (kv_codec){0};
}

int kv_codec_set_u0(kv_codec *c, const float *u0)
{
    for (int b = 0; b < c->bases; b++) {
        block_get(c, b, u0, c->blk);
        if (subspace_set_u0(&c->s[b], c->blk) != WANCP_OK)
            return WANCP_ERR_NOMEM;
    }
    return WANCP_OK;
}

void kv_codec_theta(kv_codec *c, const float *w, const float *b, const float *z, int m, float *theta)
{
    const int d = c->d;
    double *sum = c->sum;
    for (int j = 0; j < d; j++)
        sum[j] = 0;
    for (int t = 0; t < m; t++) /* row by row: z is row-major */
        for (int j = 0; j < d; j++)
            sum[j] += z[(size_t)t * d + j];
    for (int j = 0; j < d; j++)
        c->zbar[j] = (float)(sum[j] / m);
    kv_codec_head(c, w, b, theta);
}

void kv_codec_head(const kv_codec *c, const float *w, const float *b, float *theta)
{
    const int db = c->d / c->bases, kb = c->k / c->bases;
    for (int i = 0; i < c->k; i++) {
        const float *zb = c->zbar + (size_t)(i / kb) * db;
        double a = b[i];
        for (int j = 0; j < db; j++)
            a += (double)w[(size_t)i * db + j] * zb[j];
        theta[i] = (float)a;
    }
}

void kv_codec_basis(kv_codec *c, const float *theta)
{
    const int kb = c->k / c->bases;
    if (c->bases == 1) {
        subspace_rotate(&c->s[0], theta, c->u);
        return;
    }
    for (int b = 0; b < c->bases; b++) {
        subspace_rotate(&c->s[b], theta + (size_t)b * kb, c->blk);
        block_put(c, b, c->blk, c->u);
    }
}

void kv_codec_rotate_grad(const kv_codec *c, const float *theta, const float *gu, float *tau)
{
    const int kb = c->k / c->bases;
    if (c->bases == 1) {
        subspace_rotate_grad(&c->s[0], theta, gu, tau);
        return;
    }
    for (int b = 0; b < c->bases; b++) {
        block_get(c, b, gu, c->blk);
        subspace_rotate_grad(&c->s[b], theta + (size_t)b * kb, c->blk, tau + (size_t)b * kb);
    }
}

void kv_codec_unrotate(const kv_codec *c, const float *theta, const float *in, float *out)
{
    const int kb = c->k / c->bases;
    if (c->bases == 1) {
        subspace_apply_rotation(&c->s[0], theta, -1, in, out);
        return;
    }
    memset(out, 0, (size_t)c->d * c->r * sizeof *out);
    for (int b = 0; b < c->bases; b++) {
        block_get(c, b, in, c->blk);
        subspace_apply_rotation(&c->s[b], theta + (size_t)b * kb, -1, c->blk, c->blk2);
        block_put(c, b, c->blk2, out);
    }
}

/* The products below run over the whole block-diagonal U: the zeros off the blocks add
 * nothing, so each basis's columns of C are exactly its own block's product, at bases times
 * the (thin) product's work. */
void kv_codec_compress(const kv_codec *c, const float *z, int m, float *comp)
{
    subspace_compress(z, c->u, m, c->d, c->r, comp);
}

void kv_codec_decompress(const kv_codec *c, const float *comp, int m, float *z_out)
{
    subspace_decompress(comp, c->u, m, c->d, c->r, z_out);
}

void kv_codec_consumer_grad(kv_codec *c, const float *theta, const float *comp, const float *g, int m, float *e,
                            float *tau)
{
    const int d = c->d, r = c->r;
    /* decompression z = comp U^T is linear: its adjoint in comp is compression by U, and
     * its gradient in U is g^T comp */
    subspace_compress(g, c->u, m, d, r, e);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, m, 1.0f, g, d, comp, r, 0.0f, c->gu, r);
    kv_codec_rotate_grad(c, theta, c->gu, tau);
}

void kv_codec_owner_grad(kv_codec *c, const float *w, const float *theta, const float *z, const float *dcomp,
                         float *dtheta, int m, float *dz, float *dw, float *db)
{
    const int d = c->d, r = c->r, k = c->k;
    float own[64];
    /* comp = z U: its gradient in U is z^T dcomp */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, m, 1.0f, z, d, dcomp, r, 0.0f, c->gu, r);
    kv_codec_rotate_grad(c, theta, c->gu, own);
    for (int i = 0; i < k; i++)
        dtheta[i] += own[i];
    /* dz += dcomp U^T, and every row gets (1/m) W^T dtheta through zbar */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, d, r, 1.0f, dcomp, r, c->u, r, 1.0f, dz, d);
    kv_codec_owner_row(c, w, dtheta, m, c->zrow);
    for (int t = 0; t < m; t++)
        for (int j = 0; j < d; j++)
            dz[(size_t)t * d + j] += c->zrow[j];
    kv_codec_head_grad(c, dtheta, dw, db);
}

void kv_codec_owner_row(const kv_codec *c, const float *w, const float *dtheta, int m, float *row)
{
    const int db = c->d / c->bases, kb = c->k / c->bases;
    for (int j = 0; j < c->d; j++) {
        const int b = j / db, jj = j % db;
        double a = 0;
        for (int i = b * kb; i < (b + 1) * kb; i++)
            a += (double)w[(size_t)i * db + jj] * dtheta[i];
        row[j] = (float)(a / m);
    }
}

void kv_codec_head_grad(const kv_codec *c, const float *dtheta, float *dw, float *db)
{
    const int dbw = c->d / c->bases, kb = c->k / c->bases;
    for (int i = 0; i < c->k; i++) {
        const float *zb = c->zbar + (size_t)(i / kb) * dbw;
        for (int j = 0; j < dbw; j++)
            dw[(size_t)i * dbw + j] += dtheta[i] * zb[j];
        db[i] += dtheta[i];
    }
}

int kv_codec_serial_begin(void)
{
    int threads = openblas_get_num_threads();
    if (threads > 1)
        openblas_set_num_threads(1);
    return threads;
}

void kv_codec_serial_end(int threads)
{
    if (threads > 1)
        openblas_set_num_threads(threads);
}

void wire_round(float *x, size_t n, bool bf16)
{
    if (!bf16)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = bf16_to_float(bf16_from_float(x[i]));
}

size_t wire_put(void *dst, const float *src, size_t n, bool bf16)
{
    if (!bf16) {
        memcpy(dst, src, n * sizeof *src);
        return n * sizeof *src;
    }
    uint8_t *out = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = bf16_from_float(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
    return 2 * n;
}

size_t wire_get(float *dst, const void *src, size_t n, bool bf16)
{
    if (!bf16) {
        memcpy(dst, src, n * sizeof *dst);
        return n * sizeof *dst;
    }
    const uint8_t *in = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, in + 2 * i, 2);
        dst[i] = bf16_to_float(h);
    }
    return 2 * n;
}
