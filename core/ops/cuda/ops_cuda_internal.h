// What the cuda backend's files share: the device context (one stream, one cuBLAS handle),
// error checks, device copies of the small integer arrays, and row-major GEMM on cuBLAS.
#ifndef WANCP_OPS_CUDA_INTERNAL_H
#define WANCP_OPS_CUDA_INTERNAL_H

extern "C" {
#include "../ops.h"
}

#include <cublas_v2.h>
#include <cuda_runtime.h>

// Every op runs on this stream, in issue order; cuBLAS is bound to it too.
typedef struct cuda_context {
    cudaStream_t stream;
    cublasHandle_t blas;
    cuda_precision precision; // what the instance was made with (ops_make)
    bool fused_attention;
    char name[400];
} cuda_context;

extern cuda_context g_cuda;

// A CUDA or cuBLAS failure inside an op is fatal to the process: ops return nothing, and
// after most device errors the context is unusable anyway. The line names the op and the
// error; a rank that exits this way is reported by its peers and by the harness.
[[noreturn]] void cuda_fatal(const char *what, const char *detail, const char *file, int line);

#define CUDA_CHECK(call)                                                                                               \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            cuda_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__);                                             \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                             \
    do {                                                                                                               \
        cublasStatus_t s_ = (call);                                                                                    \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                               \
            cuda_fatal(#call, cublasGetStatusString(s_), __FILE__, __LINE__);                                          \
    } while (0)

// After a kernel launch: a bad configuration shows up here, not at the next sync.
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

// A device buffer that grows on demand and is kept for the next call (integer arrays
// copied from the host, attention's score tiles).
typedef struct device_buffer {
    void *ptr;
    size_t bytes;
} device_buffer;

void *device_buffer_reserve(device_buffer *b, size_t bytes);

// count floats rounded to bf16 (to nearest even) into b, on the stream; returns the copy.
const uint16_t *bf16_copy(device_buffer *b, const float *x, size_t count);

// Copies count host integers (or bytes) into b and returns the device pointer.
const void *device_upload(device_buffer *b, const void *host, size_t bytes);

// Row-major C (m, n) = alpha op(A) op(B) + beta C for batch products whose operands step
// by stride_* floats (0: the same matrix for every product), with leading dimensions lda,
// ldb, ldc in row-major terms. cuBLAS is column-major, so this computes C^T = op(B)^T op(A)^T.
void gemm_rm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda, long long stride_a,
             const float *b, int ldb, long long stride_b, float beta, float *c, int ldc, long long stride_c, int batch);

// Grid size for a grid-stride loop over count elements.
static inline unsigned grid_for(size_t count, unsigned threads)
{
    size_t blocks = (count + threads - 1) / threads;
    return (unsigned)(blocks < 1 ? 1 : (blocks > 65535u * 16 ? 65535u * 16 : blocks));
}

// Attention, in attention_cuda.cu.
void cuda_attn_begin(attn_state *st, const attn_shape *shape);
void cuda_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                     const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch);
void cuda_attn_end(float *o, float *lse, const attn_state *st, const attn_shape *shape);
void cuda_attn_bwd_delta(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape);
void cuda_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq, const float *k,
                         const float *v, const int32_t *k_pos, int tk, const float *dout, const float *lse,
                         const float *delta, const attn_shape *shape, float *scratch);

// The fused tensor-core kernels, in attention_fused.cu (positions are device copies): false,
// having done nothing, when they are off or do not take this shape, precision or alignment.
bool cuda_fused_attn_block(attn_state *st, const float *q, const int32_t *q_pos_dev, const float *k, const float *v,
                           const int32_t *k_pos_dev, int tk, const attn_shape *shape);
bool cuda_fused_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos_dev, int tq,
                               const float *k, const float *v, const int32_t *k_pos_dev, int tk, const float *dout,
                               const float *lse, const float *delta, const attn_shape *shape);

#endif
