#ifndef WANCP_OPS_CPU_INTERNAL_H
#define WANCP_OPS_CPU_INTERNAL_H

/* Shared by the files of the cpu backend; nothing outside core/ops/cpu includes it. */
#include "../ops.h"

/* Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, chosen at load time, so one
 * binary is fast on the machines it meets without -march=native. */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define WANCP_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WANCP_HOT
#endif

void cpu_attn_begin(attn_state *st, const attn_shape *shape);
void cpu_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                    const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch);
void cpu_attn_end(float *o, float *lse, const attn_state *st, const attn_shape *shape);
void cpu_attn_bwd_delta(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape);
void cpu_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq,
                        const float *k, const float *v, const int32_t *k_pos, int tk, const float *dout,
                        const float *lse, const float *delta, const attn_shape *shape, float *scratch);

#endif
