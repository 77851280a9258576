#ifndef WANCP_OPS_H
#define WANCP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The math seam: every operation the model needs, as a table of functions. Model code is
 * written once against this table and never includes a backend's headers; the cpu table
 * (OpenBLAS and plain C) is the readable reference every other backend is tested against.
 *
 * Conventions: row-major fp32; n = number of token rows; shapes in comments as (rows, cols).
 * Backward functions ACCUMULATE (+=) into parameter gradients and into the residual-stream
 * gradient they are documented to accumulate into, and OVERWRITE other outputs.
 *
 * Memory: float arrays an op reads or writes come from ops->alloc (the cpu backend's is
 * calloc; the cuda backend's is managed memory, which host code may read and write too,
 * after ops->sync). Integer arrays (tokens, targets, positions) are small and may live
 * anywhere the host can read: backends copy what they need. Ops may run asynchronously;
 * those that return a value (cross_entropy, sumsq) wait for it.
 *
 * What crosses the network never goes from op memory to a socket directly: it is copied
 * (download) into host memory first and back (upload) after, so a device backend's copies
 * run on its own engines and the host touches only host memory (host staging).
 */

/* Shape of multi-head attention with grouped-query heads: q has n_heads heads, k and v have
 * n_kv_heads (n_heads a multiple of it); head h reads kv head h / (n_heads / n_kv_heads). */
typedef struct attn_shape {
    int n_heads, n_kv_heads, head_dim;
    int block; /* query and key rows per block of the blockwise loop */
} attn_shape;

/*
 * Running state of the online softmax for a set of query rows, so that key/value blocks can
 * be merged one at a time in any order (local blocks first, remote ones as they arrive):
 *   acc (tq, n_heads*head_dim)  sum_j exp(s_ij - m_i) v_j
 *   max (n_heads, tq)           m_i, the largest score seen (-inf before any)
 *   sum (n_heads, tq)           l_i = sum_j exp(s_ij - m_i)
 */
typedef struct attn_state {
    float *acc;
    float *max;
    float *sum;
    int tq;
} attn_state;

/* The operands of the cuda backend's products (matmuls, and attention's products of scores):
 *   fp32  full fp32 on the CUDA cores: what the tests compare with the cpu at 1e-5;
 *   tf32  rounded to TF32 (10 mantissa bits) on tensor cores, the default;
 *   bf16  rounded to bf16 (7 mantissa bits, ties to even) on tensor cores, at twice TF32's
 *         rate: each product reads bf16 copies of its fp32 operands.
 * Every product accumulates in fp32, and parameters, gradients, optimizer state, the
 * residual stream and the elementwise ops stay fp32 in all three. */
typedef enum cuda_precision { CUDA_TF32, CUDA_FP32, CUDA_BF16 } cuda_precision; /* zero: the default */

/* What a backend is made with (ops_make); all zero is every default. */
typedef struct ops_options {
    int cpu_threads;          /* host threads of BLAS, LAPACK and the loops, for the cpu backend's ops
                               * and every backend's host work; 0: one per CPU */
    cuda_precision precision; /* cuda: the products' operands */
    bool fused_attention;     /* cuda: attention in the fused tensor-core kernels (tf32 or bf16; head
                               * dimensions 16, 32, 64, 128 and 256); else cuBLAS products */
} ops_options;

typedef struct ops {
    const char *name;
    ops_options options; /* what this instance was made with (cpu_threads resolved) */

    /* Zeroed memory for bytes (NULL when out of memory), and its release. */
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);
    /* x = 0; dst = src (count floats, both from alloc). */
    void (*zero)(float *x, size_t count);
    void (*copy)(float *dst, const float *src, size_t count);
    /* Waits for every op issued so far: after it, host code may touch op memory. */
    void (*sync)(void);

    /* Host staging. host_memory: op memory is plain host memory (cpu), so a socket may read
     * and write it directly. host_alloc: zeroed host memory the device copies to and from
     * at full speed (pinned, for cuda), released by host_release. download: host = src
     * (count floats of op memory), in issue order: read host after sync. upload: dst (op
     * memory) = host, in issue order; host is plain malloc'd memory (not host_alloc's) and
     * may be changed again as soon as upload returns. */
    bool host_memory;
    void *(*host_alloc)(size_t bytes);
    void (*host_release)(void *p);
    void (*download)(float *host, const float *src, size_t count);
    void (*upload)(float *dst, const float *host, size_t count);

    /* x rounded in place to the nearest bf16 (ties to even; NaN stays NaN), kept as fp32:
     * the values a bf16 wire carries. */
    void (*round_bf16)(float *x, size_t count);

    /* c (m, n) = alpha * op(a) op(b) + beta * c, op(x) = x or x^T; a is (m, k) or (k, m),
     * b is (k, n) or (n, k); all packed. */
    void (*matmul)(float *c, const float *a, const float *b, int m, int n, int k, bool trans_a, bool trans_b,
                   float alpha, float beta);

    /* out (n, d) = wte[tokens]; backward: dwte[tokens] += dout. */
    void (*embedding_fwd)(float *out, const uint16_t *tokens, const float *wte, int n, int d);
    void (*embedding_bwd)(float *dwte, const uint16_t *tokens, const float *dout, int n, int d);

    /* out (n, d) = x * rstd * w with rstd (n,) = 1 / sqrt(mean(x^2) + eps).
     * Backward: dx += d(out)/dx^T dout; dw += ...; needs the forward's rstd. */
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps);
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                        int n, int d);

    /* Rotary embedding in place on x (n, heads * head_dim) at global positions pos (n,),
     * rotate-half convention (pairs i and i + head_dim/2), from tables cos/sin
     * (max_pos, head_dim/2). Backward is the inverse rotation of the gradient, in place. */
    void (*rope_fwd)(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_table,
                     const float *sin_table);
    void (*rope_bwd)(float *dx, const int32_t *pos, int n, int heads, int head_dim, const float *cos_table,
                     const float *sin_table);

    /* h (count,) = silu(g) * u; backward overwrites dg and du. */
    void (*swiglu_fwd)(float *h, const float *g, const float *u, size_t count);
    void (*swiglu_bwd)(float *dg, float *du, const float *dh, const float *g, const float *u, size_t count);

    /* Attention, blockwise with an online softmax, causal by position: query i sees key j
     * iff k_pos[j] <= q_pos[i]. Positions ascend within q_pos and within k_pos.
     *   q (tq, n_heads*hd), k and v (tk, n_kv_heads*hd).
     * attn_begin resets a state; attn_block merges one key/value set into it; attn_end
     * writes o (tq, n_heads*hd) and lse (n_heads, tq). scratch: attn_scratch_floats(shape). */
    void (*attn_begin)(attn_state *st, const attn_shape *shape);
    void (*attn_block)(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                       const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch);
    void (*attn_end)(float *o, float *lse, const attn_state *st, const attn_shape *shape);

    /* Backward of one key/value set, given the forward's o and lse:
     *   delta (n_heads, tq) = rowsum(do * o) per head, from attn_bwd_delta, computed once;
     *   dq (tq, n_heads*hd) += ..., dk and dv (tk, n_kv_heads*hd) += ... */
    void (*attn_bwd_delta)(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape);
    void (*attn_block_bwd)(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq,
                           const float *k, const float *v, const int32_t *k_pos, int tk, const float *dout,
                           const float *lse, const float *delta, const attn_shape *shape, float *scratch);

    /* Softmax cross-entropy over logits (n, vocab) against targets (n,): returns the summed
     * loss (double); when dscale != 0, overwrites logits with dscale * dloss/dlogits. */
    double (*cross_entropy)(float *logits, const uint16_t *targets, int n, int vocab, float dscale);

    /* y += x; x *= s; sum of squares (double accumulation). */
    void (*add)(float *y, const float *x, size_t count);
    void (*scale)(float *x, size_t count, float s);
    double (*sumsq)(const float *x, size_t count);

    /* One AdamW step on count parameters: grads are multiplied by grad_scale first (global
     * norm clipping), weight decay is decoupled (p -= lr * wd * p), bias correction uses t
     * (the 1-based step). */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t count, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t);
} ops;

/* Scratch floats attn_block and attn_block_bwd need for this shape (the cpu backend's
 * tiles; other backends keep their own and ignore it). */
size_t attn_scratch_floats(const attn_shape *shape);

/*
 * A backend, made with its options (NULL: the defaults): "cpu", the reference (OpenBLAS for
 * matmuls, C loops for the rest), or "cuda" on device 0 (cuBLAS for matmuls and attention's
 * blockwise products, CUDA kernels for the rest). NULL, with the reason in err, for another
 * name, or for cuda when this build has none or no usable device is present.
 *
 * A process holds one instance of each backend, because what it configures is the
 * process's: OpenBLAS's thread count, the CUDA device with its stream and cuBLAS handle.
 * Making a backend again remakes that instance with the new options (tests compare
 * precisions so); a run makes its backend once. No option is set any other way.
 */
const ops *ops_make(const char *name, const ops_options *options, char *err, size_t errlen);

/* "OpenBLAS 0.3.21, core SkylakeX" style: the library and the kernels it chose. */
const char *ops_cpu_blas_name(void);
const char *ops_cpu_blas_core(void);

/* "fp32", "tf32", "bf16"; and back (false for any other text). */
const char *cuda_precision_name(cuda_precision p);
bool cuda_precision_parse(const char *text, cuda_precision *p);

/* The best rate (GFLOP/s, of 3 tries after a warm-up) of the device's plain GEMM at the
 * precision the cuda instance was made with, on an m x n x k product whose operands are already in the storage type
 * the tensor cores read (bf16 arrays for bf16): the peak a step's rate is measured against.
 * 0 when the device cannot hold the operands. */
double ops_cuda_gemm_peak_gflops(int m, int n, int k);

/* The fused attention kernels started so far (TF32 or bf16 operands as the precision says,
 * fp32 accumulation, score tiles kept on chip; never at fp32): tests check that a case made
 * with fused_attention really took them. */
unsigned long long ops_cuda_fused_attention_launches(void);

/* How the fused backward gets dQ at this head dimension: "stored dS" (the dK/dV kernel keeps
 * dS in device memory and the dQ kernel reads it: head dimensions of 128 and more, or all
 * with WANCP_FUSED_DQ=stored) or "recomputed dS" (the dQ kernel recomputes the scores and dP:
 * smaller head dimensions, or WANCP_FUSED_DQ=recompute). A backward that finds too little free
 * memory for dS recomputes it whatever this says. */
const char *ops_cuda_fused_dq(int head_dim);

/* "NVIDIA H100 80GB HBM3, sm_90, CUDA 13.0, cuBLAS 13.0.0" style. */
const char *ops_cuda_device_name(void);

#endif
