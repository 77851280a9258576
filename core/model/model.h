#ifndef WANCP_MODEL_H
#define WANCP_MODEL_H

#include "../ops/ops.h"
#include "config.h"
#include "params.h"

#include <stdint.h>

/* Indices into the parameter table for one transformer block. */
typedef struct layer_params {
    int attn_norm, wq, wk, wv, wo; /* wq (n_heads*hd, d), wk/wv (n_kv*hd, d), wo (d, n_heads*hd) */
    int mlp_norm, w1, w3, w2;      /* w1/w3 (ffn, d) gate and up, w2 (d, ffn) down */
    /* Compression (cfg.psi_k > 0; else -1): heads psi (W (k, d_kv), b (1, k)) for K and V,
     * trained; bases U0 (d_kv, r), frozen state set by the warm start. */
    int psi_wk, psi_bk, psi_wv, psi_bv;
    int u0_k, u0_v;
} layer_params;

/* Activations kept from the forward pass for the backward, for batch x seq tokens (n). */
typedef struct layer_acts {
    float *x;     /* (n, d) block input (residual stream) */
    float *xn1;   /* (n, d) normed for attention */
    float *rstd1; /* (n,) */
    float *q;     /* (n, n_heads*hd) after RoPE */
    float *k;     /* (n, n_kv*hd) after RoPE */
    float *k_pre; /* (n, n_kv*hd) before RoPE (Z_K), kept when cfg.psi_k > 0; else NULL */
    float *v;     /* (n, n_kv*hd) */
    float *o;     /* (n, n_heads*hd) attention output before wo */
    float *lse;   /* (batch, n_heads, seq) log-sum-exp per query and head */
    float *x2;    /* (n, d) residual after attention */
    float *xn2;   /* (n, d) */
    float *rstd2; /* (n,) */
    float *g;     /* (n, ffn) gate pre-activation */
    float *u;     /* (n, ffn) up projection */
    float *h;     /* (n, ffn) silu(g) * u */
} layer_acts;

struct model;

/* How the model computes attention: locally when NULL, or by an implementation such as
 * context parallelism. Each returns 0 or a negative code (the implementation keeps the
 * message). forward fills the layer's o and lse from q, k, v; backward fills m->dq, m->dk,
 * m->dv from m->dout. */
typedef struct attn_impl {
    int (*forward)(void *ctx, struct model *m, int layer);
    int (*backward)(void *ctx, struct model *m, int layer);
    void *ctx;
} attn_impl;

typedef struct model {
    model_config cfg;
    const ops *ops;
    int batch, seq;            /* the shape the buffers were sized for */

    param_table table;
    float *params;             /* (table.total,) */
    float *grads;              /* (table.total,) */
    float *adam_m, *adam_v;    /* (table.total,) */
    int wte, lm_head, final_norm; /* lm_head == wte when tied */
    layer_params *layers;      /* (n_layers,) */

    float *act_buffer;         /* one allocation carved into the views below */
    layer_acts *acts;          /* (n_layers,) */
    float *x_final;            /* (n, d) residual after the last block */
    float *xf, *rstdf;         /* (n, d), (n,) final norm */
    float *dx, *dxn;           /* (n, d) residual gradient, gradient of a norm's output */
    float *dq, *dk, *dv, *dout;/* (n, n_heads*hd), (n, n_kv*hd) x2, (n, n_heads*hd) */
    float *dk_pre;             /* (n, n_kv*hd) gradient of Z_K reaching it around RoPE (compressed
                                * attention writes it); NULL without compression */
    float *dg, *du, *dh;       /* (n, ffn) */
    float *delta;              /* (n_heads, seq) */
    float *attn_max, *attn_sum;/* (n_heads, seq) online softmax state */
    float *attn_scratch;       /* attn_scratch_floats */
    float *logits;             /* (head_rows, vocab) one chunk of the LM head */
    int head_rows;
    float *rope_cos, *rope_sin;/* (context, hd/2) */
    int32_t *pos;              /* (seq,) global positions of the local tokens, 0..seq-1 by default */
    attn_impl attn;            /* zero: local attention */
    long loss_tokens;          /* the loss is sum / loss_tokens: batch x seq, or the global count under CP */
} model;

/* Allocates everything for batch x seq tokens (seq <= context) and initialises the
 * parameters from seed: normal(0, 0.02), output projections scaled by 1/sqrt(2 layers),
 * norm gains 1, heads psi 0, bases U0 seeded orthonormal. Nothing is allocated after this. */
int model_init(model *m, const model_config *cfg, const ops *o, int batch, int seq, uint64_t seed, char *err,
               size_t errlen);
void model_free(model *m);

/* Cross-entropy of targets given inputs, both (batch, seq), summed and divided by
 * m->loss_tokens (the mean, on one rank). With backward, adds the gradient of that loss to
 * m->grads (zero them first with model_zero_grads). NAN when the attention
 * implementation failed (it holds the reason). */
double model_step(model *m, const uint16_t *inputs, const uint16_t *targets, bool backward);

void model_zero_grads(model *m);

/* Sets the global positions of the local tokens (seq of them), e.g. a rank's CP chunks;
 * every position must be below the context. */
void model_set_positions(model *m, const int32_t *pos);

/* Local attention of one layer for every sequence (what attn_impl replaces). */
void model_attention_forward_local(model *m, int layer);
void model_attention_backward_local(model *m, int layer);

/* Parameters of a tensor by index, and its gradient. */
static inline float *model_param(const model *m, int t) { return m->params + m->table.tensors[t].offset; }
static inline float *model_grad(const model *m, int t) { return m->grads + m->table.tensors[t].offset; }

#endif
