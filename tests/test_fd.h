#ifndef WANCP_TEST_FD_H
#define WANCP_TEST_FD_H

/* Shared by the model-level tests: seeded tokens, and one tensor's sampled gradient against
 * Richardson-extrapolated central differences of the model's loss. */
#include "core/model/model.h"
#include "core/util/rng.h"

#include <math.h>

/* n seeded tokens below vocab. */
static inline void random_tokens(uint16_t *t, size_t n, int vocab, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        t[i] = (uint16_t)(rng_next(&r) % (uint64_t)vocab);
}

typedef struct fd_result {
    double worst;     /* relative error, over elements above 10% of the largest sampled gradient */
    double worst_abs; /* absolute error as a fraction of the largest sampled gradient */
    double amax;      /* the largest sampled |gradient| */
} fd_result;

/* Compares m->grads (from a backward pass on in/tg) of tensor t with finite differences of
 * model_step at steps 1e-2 and 5e-3, on up to `samples` elements (all of a small tensor). */
static inline fd_result fd_check_tensor(model *m, int t, const uint16_t *in, const uint16_t *tg, rng *r,
                                        size_t samples)
{
    const tensor_info *info = &m->table.tensors[t];
    float *p = m->params + info->offset, *g = m->grads + info->offset;
    size_t n = info->count < samples ? info->count : samples, idx[64];
    fd_result res = {0};
    for (size_t s = 0; s < n && s < 64; s++) {
        idx[s] = info->count <= samples ? s : (size_t)(rng_next(r) % info->count);
        res.amax = fmax(res.amax, fabs(g[idx[s]]));
    }
    for (size_t s = 0; s < n && s < 64; s++) {
        float saved = p[idx[s]];
        double d[2];
        for (int k = 0; k < 2; k++) {
            float h = k == 0 ? 1e-2f : 5e-3f;
            p[idx[s]] = saved + h;
            double lp = model_step(m, in, tg, false);
            p[idx[s]] = saved - h;
            double lm = model_step(m, in, tg, false);
            p[idx[s]] = saved + h;
            double step = (double)p[idx[s]] - saved;
            p[idx[s]] = saved;
            d[k] = (lp - lm) / (2.0 * step);
        }
        double fd = (4.0 * d[1] - d[0]) / 3.0, a = g[idx[s]];
        res.worst_abs = fmax(res.worst_abs, fabs(a - fd) / (res.amax + 1e-30));
        /* fp32 losses put a noise floor of ~2e-5 under every difference quotient: at 1% of a
         * largest gradient of ~2e-2 that alone is up to 8% relative, so the relative bar is
         * held where the gradient stands well above it; the absolute bar covers the rest */
        if (fabs(a) >= 1e-1 * res.amax)
            res.worst = fmax(res.worst, fabs(a - fd) / fabs(a));
    }
    return res;
}

#endif
