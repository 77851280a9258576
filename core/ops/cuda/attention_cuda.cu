// Blockwise causal attention with an online softmax on the GPU. The structure is the cpu
// backend's, with bigger blocks: a block of query rows against every key it can see is
// three cuBLAS products (scores, then probabilities times values; in the backward also the
// gradients) around a row kernel that masks by position, keeps the running max and sum,
// and rescales the accumulator. The products run on tensor cores with TF32; the score tile
// is bounded (SCORE_TILE_FLOATS) so memory stays O(rows x keys per block), never O(seq^2).
// With TF32 and the fused kernels switched on, attention_fused.cu takes the shapes it has
// kernels for and keeps the score tiles on chip instead.
#include "ops_cuda_internal.h"

#include <math.h>

// Floats in one score tile (group x rows x keys); two tiles in the backward. Larger tiles
// mean fewer, larger products: at 32K tokens, dim 2048, 8 heads on an H100 a step took
// 2.96 s with 4 M floats, 1.53 s with 8 M, 1.14 s with 16 M, 1.00 s with 32 M, 0.92 s with
// 64 M and 0.89 s with 128 M (512 MB, 1 GB in the backward).
#define SCORE_TILE_FLOATS ((size_t)128 << 20)
#define SOFTMAX_THREADS 128

static device_buffer g_q_pos, g_k_pos, g_scores, g_dscores;

// Query rows per block: as many as fit the tile with every key visible, at least 1, and a
// multiple of 64 when that large (tensor-core friendly).
static int query_rows_per_block(int tq, int tk, int group)
{
    size_t rows = SCORE_TILE_FLOATS / ((size_t)(tk > 0 ? tk + 3 : 1) * group);
    if (rows >= 64)
        rows = rows / 64 * 64;
    if (rows < 1)
        rows = 1;
    return rows > (size_t)tq ? tq : (int)rows;
}

// What a forward or backward call shares: positions copied to the device, and the query
// rows per block.
typedef struct block_plan {
    const int32_t *q_pos, *k_pos; // device copies
    int rows_per_block;
} block_plan;

static block_plan plan_blocks(const int32_t *q_pos, int tq, const int32_t *k_pos, int tk, int group)
{
    block_plan p;
    p.q_pos = (const int32_t *)device_upload(&g_q_pos, q_pos, (size_t)tq * sizeof *q_pos);
    p.k_pos = (const int32_t *)device_upload(&g_k_pos, k_pos, (size_t)tk * sizeof *k_pos);
    p.rows_per_block = query_rows_per_block(tq, tk, group);
    return p;
}

// Score tiles' rows are a multiple of 4 floats apart, so cuBLAS keeps its fast kernels
// whatever the number of visible keys.
static int tile_ld(int keys)
{
    return (keys + 3) / 4 * 4;
}

// Keys with position <= last: positions ascend, so a binary search on the host copy.
static int visible_keys(const int32_t *k_pos, int tk, int32_t last)
{
    int lo = 0, hi = tk;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (k_pos[mid] <= last)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

__global__ static void attn_begin_kernel(float *max, float *sum, size_t rows)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < rows; i += (size_t)gridDim.x * blockDim.x) {
        max[i] = -INFINITY;
        sum[i] = 0.0f;
    }
}

void cuda_attn_begin(attn_state *st, const attn_shape *shape)
{
    const size_t rows = (size_t)shape->n_heads * st->tq;
    CUDA_CHECK(cudaMemsetAsync(st->acc, 0, (size_t)st->tq * shape->n_heads * shape->head_dim * sizeof(float),
                               g_cuda.stream));
    attn_begin_kernel<<<grid_for(rows, 256), 256, 0, g_cuda.stream>>>(st->max, st->sum, rows);
    LAUNCH_CHECK();
}

// Block-wide max and sum for SOFTMAX_THREADS threads; every thread gets the result.
__device__ static float block_max(float x)
{
    __shared__ float part[SOFTMAX_THREADS / 32];
    for (int o = 16; o > 0; o /= 2)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    __syncthreads(); // part may still be read by an earlier call
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = x;
    __syncthreads();
    x = part[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; w++)
        x = fmaxf(x, part[w]);
    return x;
}

__device__ static float block_sum(float x)
{
    __shared__ float part[SOFTMAX_THREADS / 32];
    for (int o = 16; o > 0; o /= 2)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = x;
    __syncthreads();
    x = part[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; w++)
        x += part[w];
    return x;
}

// A row of scores is read 4 floats at a time (tile rows are 16-byte aligned, and so are the
// key positions), the last nv % 4 one at a time.
static_assert(SOFTMAX_THREADS % 32 == 0, "whole warps");

// One block per (head of the group, query row), two passes over the row: the largest
// visible score, then exp(s - m_new) written in place and summed; the running max m and
// sum l are merged and the row's accumulator rescaled by exp(m_old - m_new).
__global__ static void softmax_merge_kernel(float *scores, int rows, int nv, int ld, const int32_t *q_pos,
                                            const int32_t *k_pos, int i0, int h0, int tq, int qs, int hd, float *acc,
                                            float *max, float *sum)
{
    const int g = blockIdx.x / rows, r = blockIdx.x % rows, i = i0 + r, h = h0 + g;
    float *s = scores + ((size_t)g * rows + r) * ld;
    const int32_t qp = q_pos[i];
    const int nv4 = nv / 4 * 4;
    float m = -INFINITY;
    for (int j = 4 * threadIdx.x; j < nv4; j += 4 * SOFTMAX_THREADS) {
        const float4 x = *(const float4 *)(s + j);
        const int4 kp = *(const int4 *)(k_pos + j);
        m = fmaxf(m, fmaxf(fmaxf(kp.x <= qp ? x.x : -INFINITY, kp.y <= qp ? x.y : -INFINITY),
                           fmaxf(kp.z <= qp ? x.z : -INFINITY, kp.w <= qp ? x.w : -INFINITY)));
    }
    for (int j = nv4 + threadIdx.x; j < nv; j += SOFTMAX_THREADS)
        m = fmaxf(m, k_pos[j] <= qp ? s[j] : -INFINITY);
    m = block_max(m);
    const size_t state = (size_t)h * tq + i;
    const float m_old = max[state];
    const float m_new = fmaxf(m_old, m);
    float l = 0.0f;
    if (m_new == -INFINITY) { // nothing visible yet: contributes nothing
        for (int j = threadIdx.x; j < nv; j += SOFTMAX_THREADS)
            s[j] = 0.0f;
        return;
    }
    for (int j = 4 * threadIdx.x; j < nv4; j += 4 * SOFTMAX_THREADS) {
        float4 x = *(const float4 *)(s + j);
        const int4 kp = *(const int4 *)(k_pos + j);
        x.x = kp.x <= qp ? expf(x.x - m_new) : 0.0f;
        x.y = kp.y <= qp ? expf(x.y - m_new) : 0.0f;
        x.z = kp.z <= qp ? expf(x.z - m_new) : 0.0f;
        x.w = kp.w <= qp ? expf(x.w - m_new) : 0.0f;
        l += (x.x + x.y) + (x.z + x.w);
        *(float4 *)(s + j) = x;
    }
    for (int j = nv4 + threadIdx.x; j < nv; j += SOFTMAX_THREADS) {
        const float p = k_pos[j] <= qp ? expf(s[j] - m_new) : 0.0f;
        l += p;
        s[j] = p;
    }
    l = block_sum(l);
    const float alpha = expf(m_old - m_new); // 0 when m_old is -inf
    if (alpha != 1.0f) {
        float *a = acc + (size_t)i * qs + (size_t)h * hd;
        for (int d = threadIdx.x; d < hd; d += SOFTMAX_THREADS)
            a[d] *= alpha;
    }
    if (threadIdx.x == 0) {
        sum[state] = sum[state] * alpha + l;
        max[state] = m_new;
    }
}

void cuda_attn_block(attn_state *st, const float *q, const int32_t *q_pos, const float *k, const float *v,
                     const int32_t *k_pos, int tk, const attn_shape *shape, float *scratch)
{
    (void)scratch;
    const int tq = st->tq, H = shape->n_heads, hkv = shape->n_kv_heads, hd = shape->head_dim, group = H / hkv;
    const int qs = H * hd, ks = hkv * hd;
    if (tq <= 0 || tk <= 0)
        return;
    const float scale = 1.0f / sqrtf((float)hd);
    const block_plan plan = plan_blocks(q_pos, tq, k_pos, tk, group);
    if (cuda_fused_attn_block(st, q, plan.q_pos, k, v, plan.k_pos, tk, shape))
        return;
    const int bq = plan.rows_per_block;
    float *s = (float *)device_buffer_reserve(&g_scores, (size_t)group * bq * tile_ld(tk) * sizeof(float));
    for (int i0 = 0; i0 < tq; i0 += bq) {
        const int rows = tq - i0 < bq ? tq - i0 : bq;
        const int nv = visible_keys(k_pos, tk, q_pos[i0 + rows - 1]), ld = tile_ld(nv);
        if (nv == 0)
            continue;
        for (int kh = 0; kh < hkv; kh++) {
            const int h0 = kh * group;
            // S_g = scale Q_h K_kh^T for the group's heads h = h0 + g
            gemm_rm(false, true, rows, nv, hd, scale, q + (size_t)i0 * qs + (size_t)h0 * hd, qs, hd,
                    k + (size_t)kh * hd, ks, 0, 0.0f, s, ld, (long long)rows * ld, group);
            softmax_merge_kernel<<<group * rows, SOFTMAX_THREADS, 0, g_cuda.stream>>>(
                s, rows, nv, ld, plan.q_pos, plan.k_pos, i0, h0, tq, qs, hd, st->acc, st->max, st->sum);
            LAUNCH_CHECK();
            // acc_h += P_g V_kh
            gemm_rm(false, false, rows, hd, nv, 1.0f, s, ld, (long long)rows * ld, v + (size_t)kh * hd, ks, 0, 1.0f,
                    st->acc + (size_t)i0 * qs + (size_t)h0 * hd, qs, hd, group);
        }
    }
}

// o = acc / l and lse = m + log l per (row, head); o may be the accumulator itself.
__global__ static void attn_end_kernel(float *o, float *lse, const float *acc, const float *max, const float *sum,
                                       int tq, int heads, int hd)
{
    const int i = blockIdx.x / heads, h = blockIdx.x % heads;
    const size_t state = (size_t)h * tq + i;
    const float l = sum[state], inv = l > 0.0f ? 1.0f / l : 0.0f;
    const size_t base = (size_t)i * heads * hd + (size_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x)
        o[base + d] = acc[base + d] * inv;
    if (threadIdx.x == 0)
        lse[state] = l > 0.0f ? max[state] + logf(l) : -INFINITY;
}

void cuda_attn_end(float *o, float *lse, const attn_state *st, const attn_shape *shape)
{
    if (st->tq <= 0)
        return;
    attn_end_kernel<<<st->tq * shape->n_heads, 64, 0, g_cuda.stream>>>(o, lse, st->acc, st->max, st->sum, st->tq,
                                                                       shape->n_heads, shape->head_dim);
    LAUNCH_CHECK();
}

// delta (h, i) = o_ih . dout_ih: one warp per (row, head).
__global__ static void attn_delta_kernel(float *delta, const float *o, const float *dout, int tq, int heads, int hd)
{
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= tq * heads)
        return;
    const int i = warp / heads, h = warp % heads;
    const size_t base = (size_t)i * heads * hd + (size_t)h * hd;
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32)
        s += o[base + d] * dout[base + d];
    for (int off = 16; off > 0; off /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0)
        delta[(size_t)h * tq + i] = s;
}

void cuda_attn_bwd_delta(float *delta, const float *o, const float *dout, int tq, const attn_shape *shape)
{
    if (tq <= 0)
        return;
    const size_t warps = (size_t)tq * shape->n_heads;
    attn_delta_kernel<<<(unsigned)((warps * 32 + 255) / 256), 256, 0, g_cuda.stream>>>(delta, o, dout, tq,
                                                                                      shape->n_heads, shape->head_dim);
    LAUNCH_CHECK();
}

// From the scores S and dP = dO V^T: P = exp(S - lse) under the mask (rows whose lse is
// -inf saw nothing: 0) over S, and dS = P (dP - delta) over dP, in one pass.
__global__ static void probs_dscores_kernel(float *scores, float *dp, int rows, int nv, int ld, const int32_t *q_pos,
                                            const int32_t *k_pos, int i0, int h0, int tq, const float *lse,
                                            const float *delta)
{
    const int g = blockIdx.x / rows, r = blockIdx.x % rows, i = i0 + r;
    float *s = scores + ((size_t)g * rows + r) * ld, *d = dp + ((size_t)g * rows + r) * ld;
    const size_t state = (size_t)(h0 + g) * tq + i;
    const float L = lse[state], dr = delta[state];
    const int32_t qp = L != -INFINITY ? q_pos[i] : INT32_MIN; // a row that saw nothing: every p is 0
    const int nv4 = nv / 4 * 4;
    for (int j = 4 * threadIdx.x; j < nv4; j += 4 * SOFTMAX_THREADS) {
        float4 p = *(const float4 *)(s + j), q = *(const float4 *)(d + j);
        const int4 kp = *(const int4 *)(k_pos + j);
        p.x = kp.x <= qp ? expf(p.x - L) : 0.0f;
        p.y = kp.y <= qp ? expf(p.y - L) : 0.0f;
        p.z = kp.z <= qp ? expf(p.z - L) : 0.0f;
        p.w = kp.w <= qp ? expf(p.w - L) : 0.0f;
        q.x = p.x * (q.x - dr);
        q.y = p.y * (q.y - dr);
        q.z = p.z * (q.z - dr);
        q.w = p.w * (q.w - dr);
        *(float4 *)(s + j) = p;
        *(float4 *)(d + j) = q;
    }
    for (int j = nv4 + threadIdx.x; j < nv; j += SOFTMAX_THREADS) {
        const float p = k_pos[j] <= qp ? expf(s[j] - L) : 0.0f;
        s[j] = p;
        d[j] = p * (d[j] - dr);
    }
}

// With P recomputed from the saved lse:
//   dV += P^T dO;  dP = dO V^T;  dS = P (dP - delta);  dQ += scale dS K;  dK += scale dS^T Q
void cuda_attn_block_bwd(float *dq, float *dk, float *dv, const float *q, const int32_t *q_pos, int tq,
                         const float *k, const float *v, const int32_t *k_pos, int tk, const float *dout,
                         const float *lse, const float *delta, const attn_shape *shape, float *scratch)
{
    (void)scratch;
    const int H = shape->n_heads, hkv = shape->n_kv_heads, hd = shape->head_dim, group = H / hkv;
    const int qs = H * hd, ks = hkv * hd;
    if (tq <= 0 || tk <= 0)
        return;
    const float scale = 1.0f / sqrtf((float)hd);
    const block_plan plan = plan_blocks(q_pos, tq, k_pos, tk, group);
    if (cuda_fused_attn_block_bwd(dq, dk, dv, q, plan.q_pos, tq, k, v, plan.k_pos, tk, dout, lse, delta, shape))
        return;
    const int bq = plan.rows_per_block;
    float *p = (float *)device_buffer_reserve(&g_scores, (size_t)group * bq * tile_ld(tk) * sizeof(float));
    float *ds = (float *)device_buffer_reserve(&g_dscores, (size_t)group * bq * tile_ld(tk) * sizeof(float));
    for (int i0 = 0; i0 < tq; i0 += bq) {
        const int rows = tq - i0 < bq ? tq - i0 : bq;
        const int nv = visible_keys(k_pos, tk, q_pos[i0 + rows - 1]), ld = tile_ld(nv);
        if (nv == 0)
            continue;
        const long long tile = (long long)rows * ld;
        for (int kh = 0; kh < hkv; kh++) {
            const int h0 = kh * group;
            const float *qb = q + (size_t)i0 * qs + (size_t)h0 * hd, *gb = dout + (size_t)i0 * qs + (size_t)h0 * hd;
            const float *kb = k + (size_t)kh * hd, *vb = v + (size_t)kh * hd;
            gemm_rm(false, true, rows, nv, hd, scale, qb, qs, hd, kb, ks, 0, 0.0f, p, ld, tile, group);
            gemm_rm(false, true, rows, nv, hd, 1.0f, gb, qs, hd, vb, ks, 0, 0.0f, ds, ld, tile, group);
            probs_dscores_kernel<<<group * rows, SOFTMAX_THREADS, 0, g_cuda.stream>>>(
                p, ds, rows, nv, ld, plan.q_pos, plan.k_pos, i0, h0, tq, lse, delta);
            LAUNCH_CHECK();
            gemm_rm(false, false, rows, hd, nv, scale, ds, ld, tile, kb, ks, 0, 1.0f,
                    dq + (size_t)i0 * qs + (size_t)h0 * hd, qs, hd, group);
            // The group's heads all add into one dK and dV: one product at a time.
            for (int g = 0; g < group; g++) {
                gemm_rm(true, false, nv, hd, rows, 1.0f, p + g * tile, ld, 0, gb + (size_t)g * hd, qs, 0, 1.0f,
                        dv + (size_t)kh * hd, ks, 0, 1);
                gemm_rm(true, false, nv, hd, rows, scale, ds + g * tile, ld, 0, qb + (size_t)g * hd, qs, 0, 1.0f,
                        dk + (size_t)kh * hd, ks, 0, 1);
            }
        }
    }
}
