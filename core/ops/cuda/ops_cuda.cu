// The cuda backend: cuBLAS for matmuls, a kernel per elementwise or row-wise op, managed
// memory so the host code around the model (initialisation, checkpoints, communication)
// reads and writes the same arrays after ops->sync. Every op is checked against the cpu
// reference by tests/test_ops_cuda.c.
#include "ops_cuda_internal.h"
#include "ops_cuda.h"

extern "C" {
#include "../../base/status.h"
#include "../../util/bf16.h"
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

cuda_context g_cuda = {NULL, NULL, CUDA_TF32, false, ""};

void cuda_fatal(const char *what, const char *detail, const char *file, int line)
{
    fprintf(stderr, "wancp: cuda: %s failed: %s (%s:%d)\n", what, detail, file, line);
    exit(1);
}

void *device_buffer_reserve(device_buffer *b, size_t bytes)
{
    if (bytes <= b->bytes)
        return b->ptr;
    // The old buffer may still be read by queued work: wait before freeing it.
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    if (b->ptr != NULL)
        CUDA_CHECK(cudaFree(b->ptr));
    b->ptr = NULL;
    b->bytes = 0;
    size_t want = bytes + bytes / 4; // room to grow a little without another round trip
    CUDA_CHECK(cudaMalloc(&b->ptr, want));
    b->bytes = want;
    return b->ptr;
}

const void *device_upload(device_buffer *b, const void *host, size_t bytes)
{
    void *d = device_buffer_reserve(b, bytes > 0 ? bytes : 1);
    if (bytes > 0)
        CUDA_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyDefault, g_cuda.stream));
    return d;
}

// bf16 copies of the two operands of the product being issued (kept for the next one).
static device_buffer g_bf16_operands[2];

__global__ static void to_bf16_kernel(uint16_t *dst, const float *src, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = bf16_from_float(src[i]);
}

const uint16_t *bf16_copy(device_buffer *buf, const float *x, size_t count)
{
    uint16_t *copy = (uint16_t *)device_buffer_reserve(buf, (count > 0 ? count : 1) * sizeof *copy);
    if (count > 0) {
        to_bf16_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(copy, x, count);
        LAUNCH_CHECK();
    }
    return copy;
}

// A bf16 copy of every float a batch of stored (rows, cols) matrices, ld apart by rows and
// stride apart by matrix, can reach: element offsets are kept, so the copy takes the same
// ld and stride.
static const uint16_t *bf16_operand(device_buffer *buf, const float *x, int rows, int cols, int ld, long long stride,
                                    int batch)
{
    const size_t span = (size_t)(batch - 1) * (size_t)stride + (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
    return bf16_copy(buf, x, span);
}

void gemm_rm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda, long long stride_a,
             const float *b, int ldb, long long stride_b, float beta, float *c, int ldc, long long stride_c, int batch)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (g_cuda.precision == CUDA_BF16 && k > 0) {
        // Tensor cores read bf16: both operands are copied to it (a pass over each, cheap next
        // to the product), and the product accumulates and writes fp32.
        const uint16_t *a16 =
            bf16_operand(&g_bf16_operands[0], a, trans_a ? k : m, trans_a ? m : k, lda, stride_a, batch);
        const uint16_t *b16 =
            bf16_operand(&g_bf16_operands[1], b, trans_b ? n : k, trans_b ? k : n, ldb, stride_b, batch);
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(g_cuda.blas, op_b, op_a, n, m, k, &alpha, b16, CUDA_R_16BF, ldb,
                                                stride_b, a16, CUDA_R_16BF, lda, stride_a, &beta, c, CUDA_R_32F, ldc,
                                                stride_c, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else if (batch == 1) {
        CUBLAS_CHECK(cublasSgemm(g_cuda.blas, op_b, op_a, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
    } else {
        CUBLAS_CHECK(cublasSgemmStridedBatched(g_cuda.blas, op_b, op_a, n, m, k, &alpha, b, ldb, stride_b, a, lda,
                                               stride_a, &beta, c, ldc, stride_c, batch));
    }
}

// ---- memory ---------------------------------------------------------------------------------

// Managed memory beyond what the card has free would page against the host and can stall
// the whole GPU: such a request is refused as out of memory instead (256 MiB kept spare
// for cuBLAS workspaces and attention's score tiles).
static void *cuda_alloc(size_t bytes)
{
    void *p = NULL;
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes + ((size_t)256 << 20) > free_bytes)
        return NULL;
    if (cudaMallocManaged(&p, bytes > 0 ? bytes : 1, cudaMemAttachGlobal) != cudaSuccess) {
        cudaGetLastError(); // out of memory is an answer, not a broken context
        return NULL;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_cuda.stream));
    // The caller may write it from the host next.
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    return p;
}

static void cuda_release(void *p)
{
    if (p != NULL) {
        CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
        CUDA_CHECK(cudaFree(p));
    }
}

static void cuda_zero(float *x, size_t count) { CUDA_CHECK(cudaMemsetAsync(x, 0, count * sizeof *x, g_cuda.stream)); }

static void cuda_copy(float *dst, const float *src, size_t count)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof *dst, cudaMemcpyDefault, g_cuda.stream));
}

static void cuda_sync(void) { CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream)); }

// ---- host staging -----------------------------------------------------------------------------

// Pinned host memory: the copy engines reach it directly, so downloads into it run while
// the stream computes and the host waits only for the copy it needs.
static void *cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes > 0 ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

static void cuda_host_release(void *p)
{
    if (p != NULL) {
        CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream)); // a download may still be writing it
        CUDA_CHECK(cudaFreeHost(p));
    }
}

static void cuda_download(float *host, const float *src, size_t count)
{
    CUDA_CHECK(cudaMemcpyAsync(host, src, count * sizeof *host, cudaMemcpyDefault, g_cuda.stream));
}

// From pageable memory the runtime copies the source into its own staging buffer before it
// returns, so the caller may reuse it at once; the copy to the device stays in stream order.
static void cuda_upload(float *dst, const float *host, size_t count)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, host, count * sizeof *dst, cudaMemcpyDefault, g_cuda.stream));
}

__global__ static void round_bf16_kernel(float *x, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        x[i] = bf16_to_float(bf16_from_float(x[i]));
}

static void cuda_round_bf16(float *x, size_t count)
{
    round_bf16_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(x, count);
    LAUNCH_CHECK();
}

// ---- reductions -----------------------------------------------------------------------------

__device__ static float warp_sum(float x)
{
    for (int o = 16; o > 0; o /= 2)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ static double warp_sum_d(double x)
{
    for (int o = 16; o > 0; o /= 2)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ static float warp_max(float x)
{
    for (int o = 16; o > 0; o /= 2)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum (or max) over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets it.
__device__ static float block_reduce(float x, bool take_max)
{
    __shared__ float part[32];
    __shared__ float total;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = take_max ? warp_max(x) : warp_sum(x);
    if (lane == 0)
        part[warp] = x;
    __syncthreads();
    if (warp == 0) {
        float y = lane < warps ? part[lane] : (take_max ? -INFINITY : 0.0f);
        y = take_max ? warp_max(y) : warp_sum(y);
        if (lane == 0)
            total = y;
    }
    __syncthreads();
    float result = total;
    __syncthreads(); // the next reduction may overwrite total
    return result;
}

__device__ static float block_sum(float x) { return block_reduce(x, false); }

__device__ static float block_max(float x) { return block_reduce(x, true); }

// ---- matmul, embedding ------------------------------------------------------------------------

// Rows of an odd width (GPT-2's vocabulary of 50257 makes the LM head's logits one) leave
// every row but the first misaligned, and cuBLAS then falls back to kernels that read one
// element at a time: measured at 112 TFLOP/s on an H100 where aligned operands reach 400.
// Large products copy such an operand into rows padded to 16 bytes first (a pass over it,
// a few percent of the product) and the result back.
static device_buffer g_pad[3];
#define PAD_MIN_FLOPS (1ll << 32)

static int padded_ld(int ld) { return (ld + 3) / 4 * 4; }

static const float *pad_rows(device_buffer *buf, const float *x, int rows, int ld, bool copy)
{
    const int pld = padded_ld(ld);
    float *p = (float *)device_buffer_reserve(buf, (size_t)rows * pld * sizeof *p);
    if (copy)
        CUDA_CHECK(cudaMemcpy2DAsync(p, (size_t)pld * sizeof *p, x, (size_t)ld * sizeof *x, (size_t)ld * sizeof *x,
                                     (size_t)rows, cudaMemcpyDeviceToDevice, g_cuda.stream));
    return p;
}

static void cuda_matmul(float *c, const float *a, const float *b, int m, int n, int k, bool trans_a, bool trans_b,
                        float alpha, float beta)
{
    const int lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
    const bool odd = lda % 4 != 0 || ldb % 4 != 0 || ldc % 4 != 0;
    if (!odd || 2ll * m * n * k < PAD_MIN_FLOPS) {
        gemm_rm(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
        return;
    }
    const float *pa = lda % 4 ? pad_rows(&g_pad[0], a, trans_a ? k : m, lda, true) : a;
    const float *pb = ldb % 4 ? pad_rows(&g_pad[1], b, trans_b ? n : k, ldb, true) : b;
    float *pc = ldc % 4 ? (float *)pad_rows(&g_pad[2], c, m, ldc, beta != 0.0f) : c;
    gemm_rm(trans_a, trans_b, m, n, k, alpha, pa, padded_ld(lda), 0, pb, padded_ld(ldb), 0, beta, pc, padded_ld(ldc), 0,
            1);
    if (pc != c)
        CUDA_CHECK(cudaMemcpy2DAsync(c, (size_t)ldc * sizeof *c, pc, (size_t)padded_ld(ldc) * sizeof *c,
                                     (size_t)ldc * sizeof *c, (size_t)m, cudaMemcpyDeviceToDevice, g_cuda.stream));
}

static device_buffer g_tokens;

__global__ static void embedding_fwd_kernel(float *out, const uint16_t *tokens, const float *wte, int n, int d)
{
    size_t total = (size_t)n * d;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        size_t i = x / d, j = x % d;
        out[x] = wte[(size_t)tokens[i] * d + j];
    }
}

// Repeated tokens add into the same row: atomics (the order of those sums may vary).
__global__ static void embedding_bwd_kernel(float *dwte, const uint16_t *tokens, const float *dout, int n, int d)
{
    size_t total = (size_t)n * d;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < total; x += (size_t)gridDim.x * blockDim.x) {
        size_t i = x / d, j = x % d;
        atomicAdd(&dwte[(size_t)tokens[i] * d + j], dout[x]);
    }
}

static void cuda_embedding_fwd(float *out, const uint16_t *tokens, const float *wte, int n, int d)
{
    const uint16_t *t = (const uint16_t *)device_upload(&g_tokens, tokens, (size_t)n * sizeof *tokens);
    embedding_fwd_kernel<<<grid_for((size_t)n * d, 256), 256, 0, g_cuda.stream>>>(out, t, wte, n, d);
    LAUNCH_CHECK();
}

static void cuda_embedding_bwd(float *dwte, const uint16_t *tokens, const float *dout, int n, int d)
{
    const uint16_t *t = (const uint16_t *)device_upload(&g_tokens, tokens, (size_t)n * sizeof *tokens);
    embedding_bwd_kernel<<<grid_for((size_t)n * d, 256), 256, 0, g_cuda.stream>>>(dwte, t, dout, n, d);
    LAUNCH_CHECK();
}

// ---- rmsnorm ----------------------------------------------------------------------------------

#define ROW_THREADS 256

__global__ static void rmsnorm_fwd_kernel(float *out, float *rstd, const float *x, const float *w, int d, float eps)
{
    const float *xi = x + (size_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        ss += xi[j] * xi[j];
    ss = block_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    float *oi = out + (size_t)blockIdx.x * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        oi[j] = xi[j] * r * w[j];
}

// dx_i += rstd_i (dy_i w - xhat_i mean_j(dy_ij w_j xhat_ij)), one block per row.
__global__ static void rmsnorm_bwd_dx_kernel(float *dx, const float *dout, const float *x, const float *w,
                                             const float *rstd, int d)
{
    const size_t row = (size_t)blockIdx.x * d;
    const float r = rstd[blockIdx.x];
    float dot = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        dot += dout[row + j] * w[j] * x[row + j] * r;
    dot = block_sum(dot) / (float)d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        float xhat = x[row + j] * r;
        dx[row + j] += r * (dout[row + j] * w[j] - xhat * dot);
    }
}

// dw_j += sum_i dy_ij xhat_ij: each thread sums a column over a slab of rows, then one
// atomic per slab and column.
#define DW_SLAB 256
__global__ static void rmsnorm_bwd_dw_kernel(float *dw, const float *dout, const float *x, const float *rstd, int n,
                                             int d)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int i0 = blockIdx.y * DW_SLAB, i1 = min(n, i0 + DW_SLAB);
    if (j >= d)
        return;
    float s = 0.0f;
    for (int i = i0; i < i1; i++)
        s += dout[(size_t)i * d + j] * x[(size_t)i * d + j] * rstd[i];
    atomicAdd(&dw[j], s);
}

static void cuda_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps)
{
    if (n <= 0)
        return;
    rmsnorm_fwd_kernel<<<n, ROW_THREADS, 0, g_cuda.stream>>>(out, rstd, x, w, d, eps);
    LAUNCH_CHECK();
}

static void cuda_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                             int n, int d)
{
    if (n <= 0)
        return;
    rmsnorm_bwd_dx_kernel<<<n, ROW_THREADS, 0, g_cuda.stream>>>(dx, dout, x, w, rstd, d);
    LAUNCH_CHECK();
    dim3 grid((unsigned)(d + 255) / 256, (unsigned)(n + DW_SLAB - 1) / DW_SLAB);
    rmsnorm_bwd_dw_kernel<<<grid, 256, 0, g_cuda.stream>>>(dw, dout, x, rstd, n, d);
    LAUNCH_CHECK();
}

// ---- rope, swiglu --------------------------------------------------------------------------

static device_buffer g_rope_pos;

__global__ static void rope_kernel(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_t,
                                   const float *sin_t, float sign)
{
    const int half = head_dim / 2;
    size_t total = (size_t)n * heads * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        size_t i = t / ((size_t)heads * half);
        int rest = (int)(t % ((size_t)heads * half)), h = rest / half, j = rest % half;
        float c = cos_t[(size_t)pos[i] * half + j], s = sign * sin_t[(size_t)pos[i] * half + j];
        float *a = x + ((size_t)i * heads + h) * head_dim, *b = a + half;
        float a0 = a[j], b0 = b[j];
        a[j] = a0 * c - b0 * s;
        b[j] = a0 * s + b0 * c;
    }
}

static void rope(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_t, const float *sin_t,
                 float sign)
{
    if (n <= 0)
        return;
    const int32_t *p = (const int32_t *)device_upload(&g_rope_pos, pos, (size_t)n * sizeof *pos);
    rope_kernel<<<grid_for((size_t)n * heads * head_dim / 2, 256), 256, 0, g_cuda.stream>>>(x, p, n, heads, head_dim,
                                                                                            cos_t, sin_t, sign);
    LAUNCH_CHECK();
}

static void cuda_rope_fwd(float *x, const int32_t *pos, int n, int heads, int head_dim, const float *cos_t,
                          const float *sin_t)
{
    rope(x, pos, n, heads, head_dim, cos_t, sin_t, 1.0f);
}

static void cuda_rope_bwd(float *dx, const int32_t *pos, int n, int heads, int head_dim, const float *cos_t,
                          const float *sin_t)
{
    rope(dx, pos, n, heads, head_dim, cos_t, sin_t, -1.0f);
}

__global__ static void swiglu_fwd_kernel(float *h, const float *g, const float *u, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        h[i] = g[i] * sig * u[i];
    }
}

__global__ static void swiglu_bwd_kernel(float *dg, float *du, const float *dh, const float *g, const float *u,
                                         size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * sig;
        float gi = dh[i];
        du[i] = gi * silu;
        dg[i] = gi * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

static void cuda_swiglu_fwd(float *h, const float *g, const float *u, size_t count)
{
    swiglu_fwd_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(h, g, u, count);
    LAUNCH_CHECK();
}

static void cuda_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t count)
{
    swiglu_bwd_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(dg, du, dh, g, u, count);
    LAUNCH_CHECK();
}

// ---- cross-entropy --------------------------------------------------------------------------

static device_buffer g_targets, g_row_loss;

// One block per row: the max, the sum of exps, the row's loss (in double, summed on the
// host in row order so the total does not depend on scheduling), and the gradient.
__global__ static void cross_entropy_kernel(float *logits, const uint16_t *targets, int vocab, float dscale,
                                            double *row_loss)
{
    float *row = logits + (size_t)blockIdx.x * vocab;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        mx = fmaxf(mx, row[j]);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x)
        sum += expf(row[j] - mx);
    sum = block_sum(sum);
    const int t = targets[blockIdx.x];
    const float target_logit = row[t];
    __syncthreads(); // everyone has read row[t] before it is overwritten
    if (threadIdx.x == 0)
        row_loss[blockIdx.x] = (double)logf(sum) + (double)mx - (double)target_logit;
    if (dscale != 0.0f) {
        float inv = dscale / sum;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x)
            row[j] = expf(row[j] - mx) * inv - (j == t ? dscale : 0.0f);
    }
}

static double cuda_cross_entropy(float *logits, const uint16_t *targets, int n, int vocab, float dscale)
{
    if (n <= 0)
        return 0.0;
    const uint16_t *t = (const uint16_t *)device_upload(&g_targets, targets, (size_t)n * sizeof *targets);
    double *loss = (double *)device_buffer_reserve(&g_row_loss, (size_t)n * sizeof(double));
    cross_entropy_kernel<<<n, ROW_THREADS, 0, g_cuda.stream>>>(logits, t, vocab, dscale, loss);
    LAUNCH_CHECK();
    double *host = (double *)malloc((size_t)n * sizeof *host);
    if (host == NULL)
        cuda_fatal("cross_entropy", "out of host memory", __FILE__, __LINE__);
    CUDA_CHECK(cudaMemcpyAsync(host, loss, (size_t)n * sizeof *host, cudaMemcpyDeviceToHost, g_cuda.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += host[i];
    free(host);
    return total;
}

// ---- add, scale, sumsq, adamw -----------------------------------------------------------------

__global__ static void add_kernel(float *y, const float *x, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ static void scale_kernel(float *x, size_t count, float s)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

static void cuda_add(float *y, const float *x, size_t count)
{
    if (count == 0)
        return;
    add_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(y, x, count);
    LAUNCH_CHECK();
}

static void cuda_scale(float *x, size_t count, float s)
{
    if (count == 0)
        return;
    scale_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(x, count, s);
    LAUNCH_CHECK();
}

// A fixed number of blocks, each writing its partial sum: the host adds them in order.
#define SUMSQ_BLOCKS 256
static device_buffer g_partials;

__global__ static void sumsq_kernel(const float *x, size_t count, double *partial)
{
    __shared__ double part[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = warp_sum_d(s);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0)
        part[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++)
            t += part[w];
        partial[blockIdx.x] = t;
    }
}

static double cuda_sumsq(const float *x, size_t count)
{
    double *partial = (double *)device_buffer_reserve(&g_partials, SUMSQ_BLOCKS * sizeof(double));
    sumsq_kernel<<<SUMSQ_BLOCKS, 256, 0, g_cuda.stream>>>(x, count, partial);
    LAUNCH_CHECK();
    double host[SUMSQ_BLOCKS];
    CUDA_CHECK(cudaMemcpyAsync(host, partial, sizeof host, cudaMemcpyDeviceToHost, g_cuda.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    double total = 0.0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++)
        total += host[b];
    return total;
}

__global__ static void adamw_kernel(float *p, const float *g, float *m, float *v, size_t count, float lr, float beta1,
                                    float beta2, float eps, float weight_decay, float grad_scale, float c1, float c2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + weight_decay * p[i]);
    }
}

static void cuda_adamw(float *p, const float *g, float *m, float *v, size_t count, float lr, float beta1, float beta2,
                       float eps, float weight_decay, float grad_scale, int t)
{
    if (count == 0)
        return;
    // Bias corrections on the host, as the cpu backend computes them.
    float c1 = 1.0f / (1.0f - powf(beta1, (float)t)), c2 = 1.0f / (1.0f - powf(beta2, (float)t));
    adamw_kernel<<<grid_for(count, 256), 256, 0, g_cuda.stream>>>(p, g, m, v, count, lr, beta1, beta2, eps,
                                                                  weight_decay, grad_scale, c1, c2);
    LAUNCH_CHECK();
}

// ---- the table --------------------------------------------------------------------------------

// Filled field by field (C++17 has no designated initialisers).
static ops CUDA_OPS;

static void fill_table(void)
{
    CUDA_OPS.name = "cuda";
    CUDA_OPS.alloc = cuda_alloc;
    CUDA_OPS.release = cuda_release;
    CUDA_OPS.zero = cuda_zero;
    CUDA_OPS.copy = cuda_copy;
    CUDA_OPS.sync = cuda_sync;
    CUDA_OPS.host_memory = false;
    CUDA_OPS.host_alloc = cuda_host_alloc;
    CUDA_OPS.host_release = cuda_host_release;
    CUDA_OPS.download = cuda_download;
    CUDA_OPS.upload = cuda_upload;
    CUDA_OPS.round_bf16 = cuda_round_bf16;
    CUDA_OPS.matmul = cuda_matmul;
    CUDA_OPS.embedding_fwd = cuda_embedding_fwd;
    CUDA_OPS.embedding_bwd = cuda_embedding_bwd;
    CUDA_OPS.rmsnorm_fwd = cuda_rmsnorm_fwd;
    CUDA_OPS.rmsnorm_bwd = cuda_rmsnorm_bwd;
    CUDA_OPS.rope_fwd = cuda_rope_fwd;
    CUDA_OPS.rope_bwd = cuda_rope_bwd;
    CUDA_OPS.swiglu_fwd = cuda_swiglu_fwd;
    CUDA_OPS.swiglu_bwd = cuda_swiglu_bwd;
    CUDA_OPS.attn_begin = cuda_attn_begin;
    CUDA_OPS.attn_block = cuda_attn_block;
    CUDA_OPS.attn_end = cuda_attn_end;
    CUDA_OPS.attn_bwd_delta = cuda_attn_bwd_delta;
    CUDA_OPS.attn_block_bwd = cuda_attn_block_bwd;
    CUDA_OPS.cross_entropy = cuda_cross_entropy;
    CUDA_OPS.add = cuda_add;
    CUDA_OPS.scale = cuda_scale;
    CUDA_OPS.sumsq = cuda_sumsq;
    CUDA_OPS.adamw = cuda_adamw;
}

static bool g_ready;
static char g_why[WANCP_ERRLEN];

static bool context_init(void)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(g_why, sizeof g_why, "device cuda: no usable CUDA device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();
        return false;
    }
    // Which GPU: WANCP_CUDA_DEVICE, else the rank's index on its node as launchers set it
    // (one GPU per rank on a cluster node; ranks sharing a GPU all land on device 0).
    int device = 0;
    static const char *const LOCAL[] = {"WANCP_CUDA_DEVICE", "LOCAL_RANK", "SLURM_LOCALID",
                                        "OMPI_COMM_WORLD_LOCAL_RANK"};
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(LOCAL[i]);
        if (v != NULL && v[0] >= '0' && v[0] <= '9') {
            device = atoi(v) % count;
            break;
        }
    }
    cudaDeviceProp p;
    int runtime = 0, blas_version = 0;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g_cuda.stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(g_why, sizeof g_why, "device cuda: %s", cudaGetErrorString(e));
        return false;
    }
    cublasStatus_t s = cublasCreate(&g_cuda.blas);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSetStream(g_cuda.blas, g_cuda.stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasGetVersion(g_cuda.blas, &blas_version);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(g_why, sizeof g_why, "device cuda: cuBLAS: %s", cublasGetStatusString(s));
        return false;
    }
    cudaRuntimeGetVersion(&runtime);
    snprintf(g_cuda.name, sizeof g_cuda.name, "%s (device %d of %d), sm_%d%d, %d SMs, CUDA %d.%d, cuBLAS %d.%d.%d",
             p.name, device, count, p.major, p.minor, p.multiProcessorCount, runtime / 1000, runtime % 1000 / 10,
             blas_version / 10000, blas_version / 100 % 100, blas_version % 100);
    return true;
}

// Full fp32 unless TF32 is asked for; CUBLAS_PEDANTIC_MATH would also forbid the reduced
// precision paths cuBLAS may pick on its own, which DEFAULT_MATH does not take for fp32. (bf16
// products name their types in each call.)
static void apply_math_mode(void)
{
    CUBLAS_CHECK(cublasSetMathMode(g_cuda.blas,
                                   g_cuda.precision == CUDA_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

extern "C" const ops *ops_cuda_table(char *err, size_t errlen)
{
    static bool tried;
    if (!tried) {
        tried = true;
        g_ready = context_init();
        if (g_ready) {
            apply_math_mode();
            fill_table();
        }
    }
    if (!g_ready) {
        wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s", g_why);
        return NULL;
    }
    return &CUDA_OPS;
}

extern "C" void ops_cuda_configure(cuda_precision precision, bool fused_attention)
{
    g_cuda.precision = precision;
    g_cuda.fused_attention = fused_attention;
    if (g_ready)
        apply_math_mode();
}

extern "C" double ops_cuda_gemm_peak_gflops(int m, int n, int k)
{
    if (!g_ready || m <= 0 || n <= 0 || k <= 0)
        return 0.0;
    const bool bf16 = g_cuda.precision == CUDA_BF16;
    const size_t elem = bf16 ? 2 : 4, a_bytes = (size_t)m * k * elem, b_bytes = (size_t)k * n * elem;
    const size_t c_bytes = (size_t)m * n * sizeof(float);
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (a_bytes + b_bytes + c_bytes + ((size_t)256 << 20) > free_bytes)
        return 0.0;
    void *a = NULL, *b = NULL, *c = NULL;
    CUDA_CHECK(cudaMalloc(&a, a_bytes));
    CUDA_CHECK(cudaMalloc(&b, b_bytes));
    CUDA_CHECK(cudaMalloc(&c, c_bytes));
    // Small values, so no product overflows: the rate of finite arithmetic.
    CUDA_CHECK(cudaMemsetAsync(a, 0x3c, a_bytes, g_cuda.stream));
    CUDA_CHECK(cudaMemsetAsync(b, 0x3c, b_bytes, g_cuda.stream));
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    const float alpha = 1.0f, beta = 0.0f;
    double best = 0.0;
    for (int r = 0; r < 4; r++) { // the first is a warm-up
        CUDA_CHECK(cudaEventRecord(start, g_cuda.stream));
        if (bf16)
            CUBLAS_CHECK(cublasGemmEx(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_16BF, n, a,
                                      CUDA_R_16BF, k, &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
        else
            CUBLAS_CHECK(cublasSgemm(g_cuda.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, (const float *)b, n,
                                     (const float *)a, k, &beta, (float *)c, n));
        CUDA_CHECK(cudaEventRecord(stop, g_cuda.stream));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        const double gflops = 2.0 * m * n * k / (ms * 1e-3) / 1e9;
        if (r > 0 && gflops > best)
            best = gflops;
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(c));
    return best;
}

extern "C" const char *ops_cuda_device_name(void) { return g_ready ? g_cuda.name : "none"; }
