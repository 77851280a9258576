#include "config.h"

#include "../base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

model_config model_config_default(void)
{
    return (model_config){
        .n_layers = 4,
        .dim = 256,
        .n_heads = 4,
        .n_kv_heads = 4,
        .ffn_dim = 704,
        .vocab = 50257,
        .context = 1024,
        .attn_block = 64,
        .tied_head = 1,
        .rope_theta = 10000.0f,
        .norm_eps = 1e-5f,
    };
}

/* Appends one problem to err. */
static void problem(char *err, size_t errlen, int *count, const char *fmt, ...)
{
    size_t used = strlen(err);
    if (used + 3 >= errlen)
        return;
    if (*count > 0)
        used += (size_t)snprintf(err + used, errlen - used, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - used, fmt, ap);
    va_end(ap);
    (*count)++;
}

int model_config_validate(const model_config *c, const char *source, char *err, size_t errlen)
{
    char list[WANCP_ERRLEN] = "";
    int n = 0;
    const struct {
        const char *name;
        int value, max;
    } positive[] = {
        {"layers", c->n_layers, 1024},    {"dim", c->dim, 65536},
        {"heads", c->n_heads, 1024},      {"kv_heads", c->n_kv_heads, 1024},
        {"ffn_dim", c->ffn_dim, 1 << 20}, {"vocab", c->vocab, 65536},
        {"context", c->context, 1 << 24}, {"attn_block", c->attn_block, 4096},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value < 1 || positive[i].value > positive[i].max)
            problem(list, sizeof list, &n, "%s = %d must be 1..%d", positive[i].name, positive[i].value,
                    positive[i].max);
    if (n == 0) {
        if (c->dim % c->n_heads != 0)
            problem(list, sizeof list, &n, "dim = %d is not divisible by heads = %d", c->dim, c->n_heads);
        else if (model_head_dim(c) % 2 != 0)
            problem(list, sizeof list, &n, "head_dim = dim / heads = %d must be even for RoPE", model_head_dim(c));
        if (c->n_heads % c->n_kv_heads != 0)
            problem(list, sizeof list, &n, "heads = %d is not divisible by kv_heads = %d", c->n_heads, c->n_kv_heads);
        if (c->context % c->attn_block != 0)
            problem(list, sizeof list, &n, "context = %d is not divisible by attn_block = %d", c->context,
                    c->attn_block);
    }
    if (!(c->rope_theta > 1.0f))
        problem(list, sizeof list, &n, "rope_theta = %g must be > 1", (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        problem(list, sizeof list, &n, "norm_eps = %g must be in (0, 1)", (double)c->norm_eps);
    if (c->tied_head != 0 && c->tied_head != 1)
        problem(list, sizeof list, &n, "tied_head = %d must be 0 or 1", c->tied_head);
    if (c->psi_k < 0 || c->psi_k > 64)
        problem(list, sizeof list, &n, "psi_k = %d must be 0..64", c->psi_k);
    if (n == 0 && c->psi_k > 0) {
        const int kvd = model_kv_dim(c), bases = model_kv_bases(c);
        if (c->kv_bases < 0 || c->n_kv_heads % bases != 0)
            problem(list, sizeof list, &n, "kv_bases = %d must divide kv_heads = %d", c->kv_bases, c->n_kv_heads);
        else if (bases == 1) {
            if (c->rank_k < 1 || c->rank_k > kvd)
                problem(list, sizeof list, &n, "rank_k = %d must be 1..d_kv = %d", c->rank_k, kvd);
            if (c->rank_v < 1 || c->rank_v > kvd)
                problem(list, sizeof list, &n, "rank_v = %d must be 1..d_kv = %d", c->rank_v, kvd);
        } else {
            const int w = kvd / bases;
            if (c->psi_k % bases != 0 || c->rank_k % bases != 0 || c->rank_v % bases != 0)
                problem(list, sizeof list, &n, "psi_k = %d, rank_k = %d, rank_v = %d must each divide by kv_bases = %d",
                        c->psi_k, c->rank_k, c->rank_v, bases);
            else if (c->rank_k < bases || c->rank_v < bases || c->rank_k / bases > w || c->rank_v / bases > w)
                problem(list, sizeof list, &n, "ranks per basis %d (K) and %d (V) must be 1..its width %d",
                        c->rank_k / bases, c->rank_v / bases, w);
        }
    } else if (c->psi_k == 0 && (c->rank_k != 0 || c->rank_v != 0 || c->kv_bases != 0)) {
        problem(list, sizeof list, &n, "rank_k, rank_v and kv_bases need psi_k >= 1");
    }
    if (n == 0)
        return WANCP_OK;
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %s", source, list);
}

int model_default_rank_k(const model_config *c) { return model_kv_bases(c) * ((2 * model_basis_dim(c) + 99) / 100); }
int model_default_rank_v(const model_config *c) { return model_kv_bases(c) * ((5 * model_basis_dim(c) + 99) / 100); }

size_t model_matmul_params(const model_config *c)
{
    size_t d = (size_t)c->dim, qd = d, kvd = (size_t)c->n_kv_heads * model_head_dim(c), f = (size_t)c->ffn_dim;
    size_t per_layer = d * qd + 2 * d * kvd + qd * d + 3 * d * f;
    return (size_t)c->n_layers * per_layer + (size_t)c->vocab * d;
}

double model_step_flops(const model_config *c, int batch, int seq)
{
    double tokens = (double)batch * seq;
    return 6.0 * (double)model_matmul_params(c) * tokens + 6.0 * c->n_layers * (double)seq * seq * c->dim * batch;
}
