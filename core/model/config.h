#ifndef WANCP_MODEL_CONFIG_H
#define WANCP_MODEL_CONFIG_H

#include <stddef.h>

/* A LLaMA-3 style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP. */
typedef struct model_config {
    int n_layers;
    int dim;        /* model width d */
    int n_heads;    /* query heads; head_dim = dim / n_heads */
    int n_kv_heads; /* key/value heads (grouped-query attention); divides n_heads */
    int ffn_dim;    /* SwiGLU hidden width */
    int vocab;
    int context;    /* longest sequence; RoPE tables cover it */
    int attn_block; /* rows per block of the blockwise attention; divides context */
    int tied_head;  /* 1: the LM head is the embedding matrix */
    float rope_theta;
    float norm_eps;
    /* K/V compression (METHOD.md section 2); all 0 for a model without it. With psi_k > 0
     * every layer compresses K and V each with kv_bases independent bases side by side:
     * kv_bases = n_kv_heads gives every KV head its own (the paper's Algorithm 1), 1 one basis
     * over the layer's d_kv (0 reads as 1). psi_k, rank_k and rank_v are totals over a layer's
     * bases, what travels: psi_k angles theta (psi_k / kv_bases per basis), C_K with rank_k
     * columns and C_V with rank_v; each divides by kv_bases. U0 of K is stored d_kv x rank_k,
     * block-diagonal (basis b owns rows b d_kv/kv_bases.. and columns b rank_k/kv_bases..),
     * and psi's W is (psi_k, d_kv / kv_bases): row i reads basis i / (psi_k / kv_bases)'s
     * columns of Z's mean. */
    int psi_k;
    int rank_k, rank_v;
    int kv_bases;
} model_config;

/* Defaults for a model of this width: heads of 64, ffn 8/3 d rounded up to 64, block 64. */
model_config model_config_default(void);

/* Checks every field; reports every problem at once, "; "-separated, prefixed by source
 * (a file name or "--layers ..." for the command line). WANCP_ERR_INPUT when any fails. */
int model_config_validate(const model_config *c, const char *source, char *err, size_t errlen);

static inline int model_head_dim(const model_config *c) { return c->dim / c->n_heads; }
static inline int model_kv_dim(const model_config *c) { return c->n_kv_heads * model_head_dim(c); }

/* Independent bases per layer and side (kv_bases, with 0 read as 1), and each one's width. */
static inline int model_kv_bases(const model_config *c) { return c->kv_bases > 0 ? c->kv_bases : 1; }
static inline int model_basis_dim(const model_config *c) { return model_kv_dim(c) / model_kv_bases(c); }

/* METHOD.md's default ranks as totals over the layer's bases: ceil(0.02 w) for K and
 * ceil(0.05 w) for V per basis of width w = model_basis_dim (per head: ceil(0.02 d_head)). */
int model_default_rank_k(const model_config *c);
int model_default_rank_v(const model_config *c);

/* Parameters that take part in matmuls (embedding lookups excluded, the LM head included),
 * for the 6 x params x tokens FLOP count. */
size_t model_matmul_params(const model_config *c);

/* Model FLOPs of one training step (forward and backward) on batch x seq tokens:
 * 6 x matmul params x tokens + 6 x layers x seq^2 x dim x batch for causal attention
 * (forward 2 seq^2 dim: QK^T and PV over the causal half; backward twice that). */
double model_step_flops(const model_config *c, int batch, int seq);

#endif
