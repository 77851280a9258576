// Fused attention on tensor cores: the score tiles never leave the chip. The products path
// (attention_cuda.cu) writes every score tile to memory and reads it back several times per
// block (scores, probabilities, their gradients); at 32K tokens, dim 2048, 8 heads that
// traffic, not the products, bounds the step. Here each warp keeps its 16 rows of scores in
// registers, between two TF32 mma.sync products, in the layout the PTX ISA documents for
// mma.m16n8k8 (lane = 4 x groupID + threadID_in_group; g and t below):
//   A (16 x 8, row-major): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8):             b0 (t, g), b1 (t + 4, g)
//   C (16 x 8):            c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
// A product's C fragment becomes the next product's A fragment without a shuffle by
// numbering that product's k index differently: its column t is key 2t of the eight, its
// column t + 4 key 2t + 1, and the B operand's rows are read in the same order.
//
// Three kernels: the forward merges one key/value set into the online-softmax state (the seam's
// acc, max, sum), one warp per 16 query rows; the backward is one kernel per 16 key rows for dK
// and dV (summed over the group's heads and every query) and one per 16 query rows for dQ, so
// every output element has one owner and sums in a fixed order (no atomics: runs repeat bit for
// bit). At head dimensions of 128 and more the dK/dV kernel also stores dS (in passes of
// queries that fit DS_BUDGET) and the dQ kernel reads it back, one product per key tile;
// otherwise the dQ kernel recomputes the scores and dP first (three products). Operands are
// copied into shared memory with cp.async (rows HD + 4 floats apart, which puts the 32 lanes of
// every fragment load on 32 banks) and rounded to TF32 as fragments are loaded.
//
// With bf16 operands the products are mma.m16n8k16 (twice the work per instruction):
//   A (16 x 16): a0 (g, 2t..2t+1), a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8, 2t + 8..)
//   B (16 x 8):  b0 (2t..2t+1, g), b1 (2t + 8..2t + 9, g); C as above
// two k elements to a register, the lower index in the low half. Two neighbouring C
// fragments (keys 8j.. and 8j + 8..) are then exactly one A fragment, keys in order. Tiles
// are staged from bf16 copies of Q, K, V and dO made before the launch, so a fragment
// register is one 32-bit shared load (or comes from ldmatrix), with half the bytes of fp32
// tiles; the probabilities are rounded in registers, in pairs (cvt.rn.bf16x2.f32).
//
// The tiles a loop walks (keys and values, or
// queries and dO) have two buffers where shared memory allows: the next tile is copied
// while this one is used; one buffer (copy, wait, use) otherwise, or with
// WANCP_FUSED_STAGES=1.
//
// Used with TF32 or bf16 on and when the instance was made with fused_attention, for head dimensions
// 16, 32, 64, 128 and 256 with 16-byte aligned operands; anything else takes the products
// path, which is also the fp32 reference the tests hold to 1e-5. The kernels themselves are
// in attention_fused_kernels.h, which the warp emulator's test also compiles for the host.
#include "ops_cuda_internal.h"

#include "attention_fused_kernels.h"

#include <stdlib.h>
#include <string.h>

namespace
{

unsigned long long g_fused_launches;

// The device's opt-in shared memory per block, and the most stages a kernel may take: 2
// (copy the next tile while using this one) unless WANCP_FUSED_STAGES=1 asks for the
// waiting variants, for measuring one against the other.
fused::plan_limits limits(void)
{
    static fused::plan_limits lim = {0, 0};
    if (lim.max_stages == 0) {
        int device = 0, bytes = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        const char *stages = getenv("WANCP_FUSED_STAGES");
        lim.smem = (size_t)bytes;
        lim.max_stages = stages != NULL && strcmp(stages, "1") == 0 ? 1 : 2;
    }
    return lim;
}

// Starts one kernel on the backend's stream, allowed its shared memory past the default 48 KB.
struct stream_launch {
    template <typename Kernel>
    void operator()(Kernel kernel, size_t smem, int grid_x, int grid_y, int threads,
                    const fused::fused_args &args) const
    {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        kernel<<<dim3((unsigned)grid_x, (unsigned)grid_y), (unsigned)threads, smem, g_cuda.stream>>>(args);
        LAUNCH_CHECK();
        g_fused_launches++;
    }
};

// bf16 kernels stage bf16 copies of Q, K, V (and dO in the backward), made here on the stream
// before each launch: one pass over each operand, rounded as the fp32 kernels' fragment loads
// would round them, so the tiles in shared memory and the traffic to them are half as large.
device_buffer g_bf16_copies[4];

void attach_bf16_copies(fused::fused_args *a, bool backward)
{
    if (g_cuda.precision != CUDA_BF16)
        return;
    const size_t q_count = (size_t)a->tq * (size_t)a->qs, k_count = (size_t)a->tk * (size_t)a->ks;
    a->q16 = bf16_copy(&g_bf16_copies[0], a->q, q_count);
    a->k16 = bf16_copy(&g_bf16_copies[1], a->k, k_count);
    a->v16 = bf16_copy(&g_bf16_copies[2], a->v, k_count);
    if (backward)
        a->dout16 = bf16_copy(&g_bf16_copies[3], a->dout, q_count);
}

// The most memory dS may take between the dK/dV and dQ kernels (more queries than fit go in
// passes); and what is left free beside it.
constexpr size_t DS_BUDGET = (size_t)4 << 30;
constexpr size_t DS_SPARE = (size_t)1 << 30;
device_buffer g_ds;
size_t g_ds_refused = SIZE_MAX; // the smallest dS buffer memory was short for: not asked again

// Whether the dQ kernel reads dS stored by the dK/dV kernel rather than recomputing it: at
// head dimensions of 128 and more, where writing and reading 8 bytes per score costs less
// than the two products of 2 x HD multiply-adds each that recompute it.
// WANCP_FUSED_DQ=recompute or =stored decides for every head dimension, to measure one
// against the other.
bool dq_from_stored_ds(int head_dim)
{
    static int mode = -1; // 0 recompute, 1 stored, 2 by head dimension
    if (mode < 0) {
        const char *e = getenv("WANCP_FUSED_DQ");
        mode = e != NULL && strcmp(e, "recompute") == 0 ? 0 : e != NULL && strcmp(e, "stored") == 0 ? 1 : 2;
    }
    return mode == 1 || (mode == 2 && head_dim >= 128);
}

// Points a at a buffer for dS when the dQ kernel should read it and it fits; otherwise leaves
// a.ds null (the dQ kernel then recomputes dS: too little memory is not an error).
void attach_stored_ds(fused::fused_args *a, const attn_shape *shape)
{
    if (!dq_from_stored_ds(shape->head_dim))
        return;
    const fused::ds_plan plan = fused::stored_ds_plan(a->tq, a->tk, shape->n_heads, DS_BUDGET);
    const size_t bytes = plan.floats * sizeof(float);
    if (plan.rows == 0 || bytes >= g_ds_refused) // without a stream sync per backward call
        return;
    if (bytes > g_ds.bytes) {
        CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream)); // queued kernels may still use the old one
        if (g_ds.ptr != NULL)
            CUDA_CHECK(cudaFree(g_ds.ptr));
        g_ds.ptr = NULL, g_ds.bytes = 0;
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        if (bytes + DS_SPARE > free_bytes || cudaMalloc(&g_ds.ptr, bytes) != cudaSuccess) {
            cudaGetLastError(); // out of memory is an answer here, not a broken context
            g_ds.ptr = NULL;
            g_ds_refused = bytes;
            return;
        }
        g_ds.bytes = bytes;
    }
    a->ds = (float *)g_ds.ptr, a->ds_ld = plan.ld, a->ds_rows = plan.rows;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

bool eligible(const attn_shape *shape, const void *const *ptrs, int count)
{
    if (!g_cuda.fused_attention || g_cuda.precision == CUDA_FP32 || !fused::takes_head_dim(shape->head_dim))
        return false;
    for (int i = 0; i < count; i++)
        if (!aligned16(ptrs[i]))
            return false;
    return true;
}

fused::fused_args args_for(const attn_shape *shape, int tq, int tk)
{
    fused::fused_args a = {};
    a.tq = tq, a.tk = tk, a.hs = tq, a.group = shape->n_heads / shape->n_kv_heads;
    a.qs = shape->n_heads * shape->head_dim, a.ks = shape->n_kv_heads * shape->head_dim;
    a.scale = 1.0f / sqrtf((float)shape->head_dim);
    return a;
}

} // namespace

bool cuda_fused_attn_block(attn_state *st, const float *q, const int32_t *q_pos_dev, const float *k, const float *v,
                           const int32_t *k_pos_dev, int tk, const attn_shape *shape)
{
    const void *ptrs[] = {q, k, v, st->acc};
    if (!eligible(shape, ptrs, 4))
        return false;
    fused::fused_args a = args_for(shape, st->tq, tk);
    a.q = q, a.k = k, a.v = v, a.q_pos = q_pos_dev, a.k_pos = k_pos_dev;
    a.acc = st->acc, a.max = st->max, a.sum = st->sum;
    attach_bf16_copies(&a, false);
    return fused::forward_any(a, shape->head_dim, shape->n_heads, g_cuda.precision == CUDA_BF16, limits(),
                              stream_launch{});
}

bool cuda_fused_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos_dev, int tq,
                               const float *k, const float *v, const int32_t *k_pos_dev, int tk, const float *dout,
                               const float *lse, const float *delta, const attn_shape *shape)
{
    const void *ptrs[] = {dq, dk, dv, q, k, v, dout};
    if (!eligible(shape, ptrs, 7))
        return false;
    fused::fused_args a = args_for(shape, tq, tk);
    a.q = q, a.k = k, a.v = v, a.dout = dout, a.lse = lse, a.delta = delta, a.q_pos = q_pos_dev, a.k_pos = k_pos_dev;
    a.dq = dq, a.dk = dk, a.dv = dv;
    attach_bf16_copies(&a, true);
    attach_stored_ds(&a, shape);
    return fused::backward_any(a, shape->head_dim, shape->n_heads, shape->n_kv_heads, g_cuda.precision == CUDA_BF16,
                               limits(), stream_launch{});
}

extern "C" unsigned long long ops_cuda_fused_attention_launches(void) { return g_fused_launches; }

extern "C" const char *ops_cuda_fused_dq(int head_dim)
{
    return dq_from_stored_ds(head_dim) ? "stored dS" : "recomputed dS";
}
