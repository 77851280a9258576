#include "kv_codec.h"

#include "../base/status.h"
#include "../util/bf16.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

int kv_codec_init(kv_codec *c, int d, int r, int k, int planes, bool cheap, const float *u0, uint64_t seed, char *err,
                  size_t errlen)
{
    *c = (kv_codec){0};
    int rc = cheap ? subspace_init_cheap(&c->s, d, r, k, u0, seed, err, errlen)
                   : subspace_init(&c->s, d, r, k, planes, u0, seed, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    c->u = malloc((size_t)d * r * sizeof *c->u);
    c->gu = malloc((size_t)d * r * sizeof *c->gu);
    c->zbar = malloc((size_t)d * sizeof *c->zbar);
    c->sum = malloc((size_t)d * sizeof *c->sum);
    c->zrow = malloc((size_t)d * sizeof *c->zrow);
    if (c->u == NULL || c->gu == NULL || c->zbar == NULL || c->sum == NULL || c->zrow == NULL) {
        kv_codec_free(c);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "compression: out of memory");
    }
    return WANCP_OK;
}

void kv_codec_free(kv_codec *c)
{
    subspace_free(&c->s);
    free(c->u);
    free(c->gu);
    free(c->zbar);
    free(c->sum);
    free(c->zrow);
    *c = (kv_codec){0};
}

void kv_codec_theta(kv_codec *c, const float *w, const float *b, const float *z, int m, float *theta)
{
    const int d = c->s.d;
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
    const int d = c->s.d, k = c->s.k;
    for (int i = 0; i < k; i++) {
        double a = b[i];
        for (int j = 0; j < d; j++)
            a += (double)w[(size_t)i * d + j] * c->zbar[j];
        theta[i] = (float)a;
    }
}

void kv_codec_basis(kv_codec *c, const float *theta) { subspace_rotate(&c->s, theta, c->u); }

void kv_codec_compress(const kv_codec *c, const float *z, int m, float *comp)
{
    subspace_compress(z, c->u, m, c->s.d, c->s.r, comp);
}

void kv_codec_decompress(const kv_codec *c, const float *comp, int m, float *z_out)
{
    subspace_decompress(comp, c->u, m, c->s.d, c->s.r, z_out);
}

void kv_codec_consumer_grad(kv_codec *c, const float *theta, const float *comp, const float *g, int m, float *e,
                            float *tau)
{
    const int d = c->s.d, r = c->s.r;
    /* decompression z = comp U^T is linear: its adjoint in comp is compression by U, and
     * its gradient in U is g^T comp */
    subspace_compress(g, c->u, m, d, r, e);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, m, 1.0f, g, d, comp, r, 0.0f, c->gu, r);
    subspace_rotate_grad(&c->s, theta, c->gu, tau);
}

void kv_codec_owner_grad(kv_codec *c, const float *w, const float *theta, const float *z, const float *dcomp,
                         float *dtheta, int m, float *dz, float *dw, float *db)
{
    const int d = c->s.d, r = c->s.r, k = c->s.k;
    float own[64];
    /* comp = z U: its gradient in U is z^T dcomp */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, m, 1.0f, z, d, dcomp, r, 0.0f, c->gu, r);
    subspace_rotate_grad(&c->s, theta, c->gu, own);
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
    const int d = c->s.d, k = c->s.k;
    for (int j = 0; j < d; j++) {
        double a = 0;
        for (int i = 0; i < k; i++)
            a += (double)w[(size_t)i * d + j] * dtheta[i];
        row[j] = (float)(a / m);
    }
}

void kv_codec_head_grad(const kv_codec *c, const float *dtheta, float *dw, float *db)
{
    const int d = c->s.d, k = c->s.k;
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < d; j++)
            dw[(size_t)i * d + j] += dtheta[i] * c->zbar[j];
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
