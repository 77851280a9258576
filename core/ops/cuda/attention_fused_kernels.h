// The fused attention kernels (attention_fused.cu uses them; see there for the design), in
// a header of their own so that the same source also compiles for the host under the warp
// emulator of tests/warp_emulator.h: there every thread is a host thread, and mma.sync,
// shuffles and barriers are emulated from the PTX ISA's fragment layouts, so the kernels'
// indexing, masking, synchronisation and shared-memory bounds are tested on machines without
// a GPU (and under the sanitizers).
//
// What the includer provides: under nvcc, nothing (CUDA and the inline PTX below); on the
// host, the emulator's threadIdx, blockIdx, blockDim, __syncthreads, __shfl_xor_sync,
// tf32_bits, mma_tf32, bf16x2_bits, mma_bf16, ldmatrix_x4_trans, copy16_async,
// copies_commit, copies_wait, float2/float4 and the FUSED_* macros.
//
// Every kernel comes in two precisions of its products' operands, the template argument BF16:
// TF32 (m16n8k8) or bf16 (m16n8k16); both accumulate in fp32. TF32 kernels stage fp32 tiles
// (the seam's tensors) and round as fragments are loaded; bf16 kernels stage bf16 tiles from
// bf16 copies of Q, K, V and dO (the launcher makes them, rounded to nearest even), which
// halves the shared-memory traffic per product: a fragment register is one 32-bit load, or
// comes from ldmatrix. Only the staged element type (tile_t) and the two mma_* helpers below
// differ between them.
// Loops marked FUSED_UNROLL have trip counts known at compile time; nvcc unrolls them, which
// keeps the fragments' arrays in registers.
#ifndef WANCP_ATTENTION_FUSED_KERNELS_H
#define WANCP_ATTENTION_FUSED_KERNELS_H

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#ifdef __CUDACC__
#define FUSED_DEVICE __device__ __forceinline__
#define FUSED_HOST_DEVICE __host__ __device__
#define FUSED_KERNEL(threads) __global__ void __launch_bounds__(threads, 1)
#define FUSED_SHARED(name) extern __shared__ float4 name[]
#define FUSED_UNROLL _Pragma("unroll")

// x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero), as mma.sync takes it.
__device__ __forceinline__ uint32_t tf32_bits(float x)
{
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d += a b on one 16 x 8 x 8 tile.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// lo and hi rounded to bf16 (to nearest, ties to even) and packed into one register, lo in
// the low half: the layout of two consecutive k elements of an m16n8k16 fragment.
__device__ __forceinline__ uint32_t bf16x2_bits(float lo, float hi)
{
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// d += a b on one 16 x 8 x 16 tile of bf16 operands.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8 x 8 matrices of 16-bit elements from shared memory, transposed: lane L gives the
// address of row L % 8 of matrix L / 8 (16 bytes, 16-byte aligned), and register i of lane
// (g, t) receives rows 2t and 2t + 1 of matrix i at column g, the lower row in the low half:
// the B fragment of an m16n8k16 product whose k runs down the rows.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t *row)
{
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16 bytes from global to shared memory on the copy path that bypasses registers (sm_80's
// cp.async), landing by the time copies_wait says; with valid false they are zeros and src
// is not read. copies_commit closes a group of copies; copies_wait<N> waits until at most
// the N most recent groups are still in flight (this thread's copies only: a barrier
// after it makes everyone's visible).
__device__ __forceinline__ void copy16_async(void *smem_dst, const void *src, bool valid)
{
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

__device__ __forceinline__ void copies_commit()
{
    asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int N> __device__ __forceinline__ void copies_wait()
{
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
#endif

namespace fused {

constexpr float LOG2E = 1.4426950408889634f;
constexpr int KEYS_PER_TILE = 32;    // keys per step of the forward and dQ loops
constexpr int QUERIES_PER_TILE = 32; // queries per step of the dK/dV loop

// What a tile holds: fp32 for TF32 products, bf16 bits for bf16 ones.
template <bool BF16> using tile_t = typename std::conditional<BF16, uint16_t, float>::type;

// Elements between two staged rows, 16 bytes more than a row: HD + 4 floats puts a TF32
// fragment's 32 loads on 32 banks, HD + 8 bf16 (HD / 2 + 4 words) a bf16 fragment's 32-bit
// loads, and the 8 rows of an ldmatrix on 8 distinct groups of 4 banks.
template <int HD, bool BF16> FUSED_HOST_DEVICE constexpr int staged_ld() { return HD + (BF16 ? 8 : 4); }

// Two neighbouring bf16 of a staged row as one register, the first in the low half: one
// 32-bit load (p is 4-byte aligned: an even element of a row of an even number of them).
FUSED_DEVICE uint32_t bf16_pair(const uint16_t *p)
{
#ifdef __CUDACC__
    return *reinterpret_cast<const uint32_t *>(p);
#else
    if (((uintptr_t)p & 3u) != 0) // a misaligned load would fault on the GPU
        abort();
    uint32_t r;
    memcpy(&r, p, sizeof r);
    return r;
#endif
}

// Where a kernel stages an operand from: the seam's fp32 tensor, or its bf16 copy.
template <bool BF16> FUSED_DEVICE const tile_t<BF16> *staged_source(const float *fp32, const uint16_t *bf16)
{
    if constexpr (BF16)
        return bf16;
    else
        return fp32;
}

// c (16 x 8 NT) += A (16 x KDIM) B^T, with A the warp's 16 staged rows and B NT x 8 staged
// rows (both ld elements apart; fp32 rounded to TF32 as they are loaded, or bf16): the scores
// of 16 rows against 8 NT rows.
template <int KDIM, int NT, bool BF16>
FUSED_DEVICE void mma_rows_by_rows(float (&c)[NT][4], const tile_t<BF16> *a, const tile_t<BF16> *b, int ld)
{
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    if constexpr (BF16) {
        static_assert(KDIM % 16 == 0, "bf16 products contract 16 columns at a time");
FUSED_UNROLL
        for (int k = 0; k < KDIM; k += 16) {
            // a0 (g, 2t..2t+1), a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8, 2t + 8..)
            const uint16_t *a0 = a + g * ld + k + 2 * t, *a1 = a0 + 8 * ld;
            const uint32_t af[4] = {bf16_pair(a0), bf16_pair(a1), bf16_pair(a0 + 8), bf16_pair(a1 + 8)};
FUSED_UNROLL
            for (int j = 0; j < NT; j++) {
                const uint16_t *bj = b + (8 * j + g) * ld + k + 2 * t; // b0 (2t..2t+1, g), b1 (2t + 8.., g)
                const uint32_t bf[2] = {bf16_pair(bj), bf16_pair(bj + 8)};
                mma_bf16(c[j], af, bf);
            }
        }
    } else {
FUSED_UNROLL
        for (int k = 0; k < KDIM; k += 8) {
            const uint32_t af[4] = {tf32_bits(a[g * ld + k + t]), tf32_bits(a[(g + 8) * ld + k + t]),
                                    tf32_bits(a[g * ld + k + t + 4]), tf32_bits(a[(g + 8) * ld + k + t + 4])};
FUSED_UNROLL
            for (int j = 0; j < NT; j++) {
                const float *bj = b + (8 * j + g) * ld + k;
                const uint32_t bf[2] = {tf32_bits(bj[t]), tf32_bits(bj[t + 4])};
                mma_tf32(c[j], af, bf);
            }
        }
    }
}

// c (16 x 8 NN) += P (16 x 8 NK) B, with P in registers in the C layout of mma_rows_by_rows
// (its 8 NK columns are B's rows) and B 8 NK staged rows of which the first 8 NN columns are
// used: probabilities (or their gradients) times values (or queries, keys, dO).
template <int NK, int NN, bool BF16>
FUSED_DEVICE void mma_regs_by_rows(float (&c)[NN][4], const float (&p)[NK][4], const tile_t<BF16> *b, int ld)
{
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    if constexpr (BF16) {
        static_assert(NK % 2 == 0, "bf16 products contract two score tiles at a time");
        static_assert(NN % 2 == 0, "one ldmatrix loads the B fragments of two column tiles");
        // This lane's row for ldmatrix: row L % 8 of matrix L / 8, the matrices being rows
        // 0-7 and 8-15 of the 16 (b0, b1) of columns 0-7, then the same of columns 8-15.
        const int lane = threadIdx.x & 31, m = lane >> 3;
        const uint16_t *rows = b + (8 * (m & 1) + (lane & 7)) * ld + 8 * (m >> 1);
FUSED_UNROLL
        for (int j = 0; j < NK; j += 2) {
            // The C layouts of score tiles j and j + 1 side by side are the A layout of one
            // 16-column fragment: nothing moves between lanes.
            const uint32_t af[4] = {bf16x2_bits(p[j][0], p[j][1]), bf16x2_bits(p[j][2], p[j][3]),
                                    bf16x2_bits(p[j + 1][0], p[j + 1][1]), bf16x2_bits(p[j + 1][2], p[j + 1][3])};
FUSED_UNROLL
            for (int d = 0; d < NN; d += 2) {
                uint32_t r[4]; // b0, b1 of column tile d, then of d + 1
                ldmatrix_x4_trans(r, rows + 8 * j * ld + 8 * d);
                const uint32_t b_d[2] = {r[0], r[1]}, b_next[2] = {r[2], r[3]};
                mma_bf16(c[d], af, b_d);
                mma_bf16(c[d + 1], af, b_next);
            }
        }
    } else {
FUSED_UNROLL
        for (int j = 0; j < NK; j++) {
            // column t is key 8j + 2t (p[j][0], p[j][2]); column t + 4 is key 8j + 2t + 1
            const uint32_t af[4] = {tf32_bits(p[j][0]), tf32_bits(p[j][2]), tf32_bits(p[j][1]), tf32_bits(p[j][3])};
            const float *b0 = b + (8 * j + 2 * t) * ld + g, *b1 = b0 + ld;
FUSED_UNROLL
            for (int d = 0; d < NN; d++) {
                const uint32_t bf[2] = {tf32_bits(b0[8 * d]), tf32_bits(b1[8 * d])};
                mma_tf32(c[d], af, bf);
            }
        }
    }
}

// Starts copying rows x COLS elements from src (rows src_ld elements apart) into shared memory,
// rows DST_LD elements apart; rows from valid on become zeros. The whole block takes part; the
// copies land by the next copies_wait after the group is committed.
template <int COLS, int DST_LD, typename T>
FUSED_DEVICE void stage_block(T *dst, const T *src, size_t src_ld, int rows, int valid)
{
    constexpr int PER = 16 / (int)sizeof(T), CHUNKS = COLS / PER;
    for (int x = threadIdx.x; x < rows * CHUNKS; x += blockDim.x) {
        const int r = x / CHUNKS, c = (x % CHUNKS) * PER;
        copy16_async(dst + r * DST_LD + c, src + (size_t)(r < valid ? r : 0) * src_ld + c, r < valid);
    }
}

// stage_block of rows of one head (HD elements), staged_ld apart.
template <int HD, bool BF16>
FUSED_DEVICE void stage_rows(tile_t<BF16> *dst, const tile_t<BF16> *src, size_t src_ld, int rows, int valid)
{
    stage_block<HD, staged_ld<HD, BF16>()>(dst, src, src_ld, rows, valid);
}

// How many of the ascending positions are <= last; the index of the first that is >= first.
FUSED_DEVICE int count_at_most(const int32_t *pos, int n, int32_t last)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (pos[mid] <= last)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

FUSED_DEVICE int first_at_least(const int32_t *pos, int n, int32_t first)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (pos[mid] < first)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// The largest (or the sum) over the four lanes of a quad, which share C rows.
FUSED_DEVICE float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

FUSED_DEVICE float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

struct fused_args {
    const float *q, *k, *v, *dout, *lse, *delta;
    const uint16_t *q16, *k16, *v16, *dout16; // bf16 kernels: Q, K, V, dO rounded to bf16, same layouts
    const int32_t *q_pos, *k_pos;
    float *acc, *max, *sum;  // forward state
    float *dq, *dk, *dv;     // backward outputs (accumulated)
    int tq, tk, group;       // query rows, key rows, query heads per kv head
    int qs, ks;              // row strides of q/dout/acc/dq and of k/v/dk/dv, in floats
    int hs;                  // rows between two heads of max/sum/lse/delta (tq but in a chunk)
    float scale;
    // Backward only: where the dK/dV kernel leaves dS for the dQ kernel to read (null: the dQ
    // kernel recomputes it), per head tq rows of ds_ld floats, and how many query rows one
    // pass of the two kernels takes (see stored_ds_plan).
    float *ds;
    int ds_ld, ds_rows;
};

// Starts staging key tile [j0, j0 + KEYS_PER_TILE) of kv head kh (of the nv keys visited)
// into k_dst and v_dst, and its positions into kp_dst (INT32_MAX past nv: never visible).
template <int HD, bool BF16>
FUSED_DEVICE void stage_key_tile(tile_t<BF16> *k_dst, tile_t<BF16> *v_dst, int32_t *kp_dst, const fused_args &a, int kh,
                                 int j0, int nv)
{
    constexpr int BC = KEYS_PER_TILE;
    const int valid = min(BC, nv - j0);
    const size_t at = (size_t)j0 * a.ks + (size_t)kh * HD;
    stage_rows<HD, BF16>(k_dst, staged_source<BF16>(a.k, a.k16) + at, a.ks, BC, valid);
    stage_rows<HD, BF16>(v_dst, staged_source<BF16>(a.v, a.v16) + at, a.ks, BC, valid);
    for (int x = threadIdx.x; x < BC; x += blockDim.x)
        kp_dst[x] = x < valid ? a.k_pos[j0 + x] : INT32_MAX;
}

// Waits for tile `tile` of `tiles` of a loop (staged into buffer tile % STAGES by
// stage(buffer, tile), which starts copies) and, with two stages, starts the next one into the
// other buffer; with one stage the tile is staged here (tile 0 by the caller). On return every
// thread of the block sees the tile, and no warp still uses the buffer being filled.
template <int STAGES, typename Stage> FUSED_DEVICE void advance_tiles(int tile, int tiles, Stage stage)
{
    if (STAGES == 1) {
        if (tile > 0) {
            __syncthreads(); // every warp is done with the last tile
            stage(0, tile);
            copies_commit();
        }
        copies_wait<0>();
        __syncthreads();
    } else {
        copies_wait<0>(); // this thread's copies of this tile have landed
        __syncthreads();  // everyone's have; and everyone is done with the other buffer
        if (tile + 1 < tiles) {
            stage((tile + 1) % 2, tile + 1);
            copies_commit();
        }
    }
}

// advance_tiles over the key tiles of the forward and dQ loops: per buffer a key tile, then a
// value tile (skv), and the keys' positions (skp).
template <int HD, int STAGES, bool BF16>
FUSED_DEVICE void next_key_tile(tile_t<BF16> *skv, int32_t *skp, const fused_args &a, int kh, int tile, int tiles,
                                int nv)
{
    constexpr int BC = KEYS_PER_TILE, LD = staged_ld<HD, BF16>();
    advance_tiles<STAGES>(tile, tiles, [&](int buf, int next) {
        stage_key_tile<HD, BF16>(skv + buf * 2 * BC * LD, skv + (buf * 2 + 1) * BC * LD, skp + buf * BC, a, kh,
                                 next * BC, nv);
    });
}

// dQ (16 rows of this thread's warp, in the C layout) added, times scale, to a.dq.
template <int HD>
FUSED_DEVICE void add_dq_rows(const fused_args &a, const int (&row)[2], int h, const float (&dq)[HD / 8][4])
{
    const int t = threadIdx.x & 3;
FUSED_UNROLL
    for (int r = 0; r < 2; r++) {
        if (row[r] >= a.tq)
            continue;
FUSED_UNROLL
        for (int d = 0; d < HD / 8; d++) {
            float2 *out = (float2 *)(a.dq + (size_t)row[r] * a.qs + (size_t)h * HD + 8 * d + 2 * t);
            float2 x = *out;
            x.x += a.scale * dq[d][2 * r], x.y += a.scale * dq[d][2 * r + 1];
            *out = x;
        }
    }
}

// Where a block of BR query rows (blockIdx.x) of head blockIdx.y stands: its kv head, first
// row, rows in range, and the keys its last row sees (nv: keys are in ascending position, so
// those are the first nv) in tiles of KEYS_PER_TILE. The forward and both dQ kernels start so.
struct query_block {
    int h, kh, i0, valid_rows, nv, tiles;
};

template <int BR> FUSED_DEVICE query_block locate_query_block(const fused_args &a)
{
    query_block b;
    b.h = blockIdx.y, b.kh = b.h / a.group, b.i0 = blockIdx.x * BR;
    b.valid_rows = min(BR, a.tq - b.i0);
    b.nv = count_at_most(a.k_pos, a.tk, a.q_pos[b.i0 + b.valid_rows - 1]);
    b.tiles = (b.nv + KEYS_PER_TILE - 1) / KEYS_PER_TILE;
    return b;
}

// ---- forward -------------------------------------------------------------------------------

template <int HD, int NW, int STAGES, bool BF16> constexpr size_t fwd_smem()
{
    return ((size_t)(16 * NW) + (size_t)STAGES * 2 * KEYS_PER_TILE) * staged_ld<HD, BF16>() * sizeof(tile_t<BF16>) +
           (size_t)STAGES * KEYS_PER_TILE * sizeof(int32_t);
}

// One block per (16 NW query rows, head); warp w owns rows 16 w .. 16 w + 15 of them. Key
// tiles go through STAGES buffers: with two, the next tile is copied while this one is used.
template <int HD, int NW, int STAGES, bool BF16>
FUSED_KERNEL(NW * 32) fused_fwd_kernel(fused_args a)
{
    using T = tile_t<BF16>;
    constexpr int BR = 16 * NW, BC = KEYS_PER_TILE, LD = staged_ld<HD, BF16>(), NT = BC / 8, ND = HD / 8;
    FUSED_SHARED(smem4);
    T *sq = (T *)smem4, *skv = sq + BR * LD; // skv: per stage, a key tile then a value tile
    int32_t *skp = (int32_t *)(skv + STAGES * 2 * BC * LD);
    const query_block qb = locate_query_block<BR>(a);
    if (qb.nv == 0) // the same for the whole block: no key is visible to any of its rows
        return;
    const int h = qb.h, kh = qb.kh, i0 = qb.i0, valid_rows = qb.valid_rows, nv = qb.nv, tiles = qb.tiles;
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    stage_rows<HD, BF16>(sq, staged_source<BF16>(a.q, a.q16) + (size_t)i0 * a.qs + (size_t)h * HD, a.qs, BR,
                         valid_rows);
    stage_key_tile<HD, BF16>(skv, skv + BC * LD, skp, a, kh, 0, nv);
    copies_commit();

    // This thread's two rows (g and g + 8 of its warp's 16) and their state.
    const int row[2] = {i0 + 16 * warp + g, i0 + 16 * warp + g + 8};
    int32_t qp[2];
    float m[2], l[2], o[ND][4];
FUSED_UNROLL
    for (int r = 0; r < 2; r++) {
        const bool in = row[r] < a.tq;
        qp[r] = in ? a.q_pos[row[r]] : INT32_MIN;
        m[r] = in ? a.max[(size_t)h * a.hs + row[r]] : -INFINITY;
        l[r] = in ? a.sum[(size_t)h * a.hs + row[r]] : 0.0f;
    }
FUSED_UNROLL
    for (int d = 0; d < ND; d++) {
FUSED_UNROLL
        for (int r = 0; r < 2; r++) {
            float2 x = make_float2(0.0f, 0.0f);
            if (row[r] < a.tq)
                x = *(const float2 *)(a.acc + (size_t)row[r] * a.qs + (size_t)h * HD + 8 * d + 2 * t);
            o[d][2 * r] = x.x, o[d][2 * r + 1] = x.y;
        }
    }

    for (int tile = 0; tile < tiles; tile++) {
        next_key_tile<HD, STAGES, BF16>(skv, skp, a, kh, tile, tiles, nv);
        const int stage = tile % STAGES;
        const T *sk = skv + stage * 2 * BC * LD, *sv = sk + BC * LD;
        const int32_t *kp = skp + stage * BC;

        float s[NT][4] = {};
        mma_rows_by_rows<HD, NT, BF16>(s, sq + 16 * warp * LD, sk, LD);
        float top[2] = {-INFINITY, -INFINITY};
FUSED_UNROLL
        for (int j = 0; j < NT; j++) {
FUSED_UNROLL
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                s[j][e] = kp[8 * j + 2 * t + (e & 1)] <= qp[r] ? s[j][e] * a.scale : -INFINITY;
                top[r] = fmaxf(top[r], s[j][e]);
            }
        }
        float alpha[2], m_new[2], added[2] = {0.0f, 0.0f};
FUSED_UNROLL
        for (int r = 0; r < 2; r++) {
            m_new[r] = fmaxf(m[r], quad_max(top[r]));
            alpha[r] = m_new[r] == -INFINITY ? 1.0f : exp2f((m[r] - m_new[r]) * LOG2E); // 0 when m was -inf
        }
FUSED_UNROLL
        for (int j = 0; j < NT; j++) {
FUSED_UNROLL
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                const float p = m_new[r] == -INFINITY ? 0.0f : exp2f((s[j][e] - m_new[r]) * LOG2E);
                s[j][e] = p;
                added[r] += p;
            }
        }
FUSED_UNROLL
        for (int r = 0; r < 2; r++) {
            l[r] = l[r] * alpha[r] + quad_sum(added[r]);
            m[r] = m_new[r];
        }
FUSED_UNROLL
        for (int d = 0; d < ND; d++)
            o[d][0] *= alpha[0], o[d][1] *= alpha[0], o[d][2] *= alpha[1], o[d][3] *= alpha[1];
        mma_regs_by_rows<NT, ND, BF16>(o, s, sv, LD);
    }

FUSED_UNROLL
    for (int r = 0; r < 2; r++) {
        if (row[r] >= a.tq)
            continue;
FUSED_UNROLL
        for (int d = 0; d < ND; d++)
            *(float2 *)(a.acc + (size_t)row[r] * a.qs + (size_t)h * HD + 8 * d + 2 * t) =
                make_float2(o[d][2 * r], o[d][2 * r + 1]);
        if (t == 0) {
            a.max[(size_t)h * a.hs + row[r]] = m[r];
            a.sum[(size_t)h * a.hs + row[r]] = l[r];
        }
    }
}

// ---- backward: dQ --------------------------------------------------------------------------

template <int HD, int NW, int STAGES, bool BF16> constexpr size_t dq_smem()
{
    return (2 * (size_t)(16 * NW) + (size_t)STAGES * 2 * KEYS_PER_TILE) * staged_ld<HD, BF16>() *
               sizeof(tile_t<BF16>) +
           (size_t)STAGES * KEYS_PER_TILE * sizeof(int32_t);
}

// One block per (16 NW query rows, head): dQ += scale dS K over every visible key, with
//   P = exp(scale Q K^T - lse) under the mask, dP = dO V^T, dS = P (dP - delta).
template <int HD, int NW, int STAGES, bool BF16>
FUSED_KERNEL(NW * 32) fused_dq_kernel(fused_args a)
{
    using T = tile_t<BF16>;
    constexpr int BR = 16 * NW, BC = KEYS_PER_TILE, LD = staged_ld<HD, BF16>(), NT = BC / 8, ND = HD / 8;
    FUSED_SHARED(smem4);
    T *sq = (T *)smem4, *sg = sq + BR * LD, *skv = sg + BR * LD;
    int32_t *skp = (int32_t *)(skv + STAGES * 2 * BC * LD);
    const query_block qb = locate_query_block<BR>(a);
    if (qb.nv == 0)
        return;
    const int h = qb.h, kh = qb.kh, i0 = qb.i0, valid_rows = qb.valid_rows, nv = qb.nv, tiles = qb.tiles;
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const size_t at = (size_t)i0 * a.qs + (size_t)h * HD;
    stage_rows<HD, BF16>(sq, staged_source<BF16>(a.q, a.q16) + at, a.qs, BR, valid_rows);
    stage_rows<HD, BF16>(sg, staged_source<BF16>(a.dout, a.dout16) + at, a.qs, BR, valid_rows);
    stage_key_tile<HD, BF16>(skv, skv + BC * LD, skp, a, kh, 0, nv);
    copies_commit();

    const int row[2] = {i0 + 16 * warp + g, i0 + 16 * warp + g + 8};
    int32_t qp[2];
    float lse[2], delta[2];
FUSED_UNROLL
    for (int r = 0; r < 2; r++) {
        const bool in = row[r] < a.tq;
        lse[r] = in ? a.lse[(size_t)h * a.hs + row[r]] : -INFINITY;
        delta[r] = in ? a.delta[(size_t)h * a.hs + row[r]] : 0.0f;
        qp[r] = in && lse[r] != -INFINITY ? a.q_pos[row[r]] : INT32_MIN; // a row that saw nothing: P = 0
    }
    float dq[ND][4] = {};

    for (int tile = 0; tile < tiles; tile++) {
        next_key_tile<HD, STAGES, BF16>(skv, skp, a, kh, tile, tiles, nv);
        const int stage = tile % STAGES;
        const T *sk = skv + stage * 2 * BC * LD, *sv = sk + BC * LD;
        const int32_t *kp = skp + stage * BC;

        float s[NT][4] = {}, dp[NT][4] = {};
        mma_rows_by_rows<HD, NT, BF16>(s, sq + 16 * warp * LD, sk, LD);
        mma_rows_by_rows<HD, NT, BF16>(dp, sg + 16 * warp * LD, sv, LD);
FUSED_UNROLL
        for (int j = 0; j < NT; j++) {
FUSED_UNROLL
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                const float p = kp[8 * j + 2 * t + (e & 1)] <= qp[r]
                                    ? exp2f((s[j][e] * a.scale - lse[r]) * LOG2E)
                                    : 0.0f;
                s[j][e] = p * (dp[j][e] - delta[r]); // dS
            }
        }
        mma_regs_by_rows<NT, ND, BF16>(dq, s, sk, LD);
    }
    add_dq_rows<HD>(a, row, h, dq);
}

// ---- backward: dQ from the dS the dK/dV kernel stored ------------------------------------

// Floats between two staged dS rows: a half warp's float2 loads (rows g, columns 2t) then land
// on 32 distinct banks.
constexpr int DS_TILE_LD = KEYS_PER_TILE + 8;

template <int HD, int NW, int STAGES, bool BF16> constexpr size_t dq_stored_smem()
{
    return (size_t)STAGES * ((size_t)KEYS_PER_TILE * staged_ld<HD, BF16>() * sizeof(tile_t<BF16>) +
                             (size_t)16 * NW * DS_TILE_LD * sizeof(float)) +
           (size_t)STAGES * KEYS_PER_TILE * sizeof(int32_t);
}

// One block per (16 NW query rows, head): dQ += scale dS K over every visible key, with dS read
// from a.ds as the dK/dV kernel left it: one product per key tile instead of three. Where a
// key is not visible to a row, dS counts as 0 whatever the buffer holds there (the dK/dV
// kernel writes only the queries from the first one that sees its keys).
template <int HD, int NW, int STAGES, bool BF16>
FUSED_KERNEL(NW * 32) fused_dq_stored_kernel(fused_args a)
{
    using T = tile_t<BF16>;
    constexpr int BR = 16 * NW, BC = KEYS_PER_TILE, LD = staged_ld<HD, BF16>(), DL = DS_TILE_LD, NT = BC / 8;
    constexpr int ND = HD / 8;
    FUSED_SHARED(smem4);
    T *sk = (T *)smem4;
    float *sds = (float *)(sk + STAGES * BC * LD); // per buffer: a key tile; a dS tile (fp32)
    int32_t *skp = (int32_t *)(sds + STAGES * BR * DL);
    const query_block qb = locate_query_block<BR>(a);
    if (qb.nv == 0)
        return;
    const int h = qb.h, kh = qb.kh, i0 = qb.i0, valid_rows = qb.valid_rows, nv = qb.nv, tiles = qb.tiles;
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const float *ds = a.ds + ((size_t)h * a.tq + i0) * a.ds_ld;
    // Key tile `tile` and the block's dS columns for it (ds_ld covers whole tiles, so no row
    // is read past its end); rows past the end become zeros.
    auto stage = [&](int buf, int tile) {
        const int j0 = tile * BC, valid = min(BC, nv - j0);
        stage_rows<HD, BF16>(sk + buf * BC * LD, staged_source<BF16>(a.k, a.k16) + (size_t)j0 * a.ks + (size_t)kh * HD,
                             a.ks, BC, valid);
        stage_block<BC, DL>(sds + buf * BR * DL, ds + j0, a.ds_ld, BR, valid_rows);
        for (int x = threadIdx.x; x < BC; x += blockDim.x)
            skp[buf * BC + x] = x < valid ? a.k_pos[j0 + x] : INT32_MAX;
    };
    stage(0, 0);
    copies_commit();

    const int row[2] = {i0 + 16 * warp + g, i0 + 16 * warp + g + 8};
    int32_t qp[2];
FUSED_UNROLL
    for (int r = 0; r < 2; r++)
        qp[r] = row[r] < a.tq ? a.q_pos[row[r]] : INT32_MIN;
    float dq[ND][4] = {};

    for (int tile = 0; tile < tiles; tile++) {
        advance_tiles<STAGES>(tile, tiles, stage);
        const int buf = tile % STAGES;
        const T *kt = sk + buf * BC * LD;
        const float *dst = sds + buf * BR * DL + 16 * warp * DL;
        const int32_t *kp = skp + buf * BC;
        float p[NT][4]; // dS in the C layout of a score tile
FUSED_UNROLL
        for (int j = 0; j < NT; j++) {
FUSED_UNROLL
            for (int r = 0; r < 2; r++) {
                const int c = 8 * j + 2 * t;
                const float2 x = *(const float2 *)(dst + (g + 8 * r) * DL + c);
                p[j][2 * r] = kp[c] <= qp[r] ? x.x : 0.0f;
                p[j][2 * r + 1] = kp[c + 1] <= qp[r] ? x.y : 0.0f;
            }
        }
        mma_regs_by_rows<NT, ND, BF16>(dq, p, kt, LD);
    }
    add_dq_rows<HD>(a, row, h, dq);
}

// ---- backward: dK and dV -------------------------------------------------------------------

// KG groups of 16 key rows per block, each split over NS warps by head-dimension columns
// (NS = 2 at HD 256, where a warp's dK and dV for all 256 columns would not fit its
// registers): the warps of a group each contract half of the head dimension and add their
// halves of the scores through shared memory. Query tiles go through STAGES buffers.
template <int HD, int KG, int NS, int STAGES, bool BF16> constexpr size_t dkdv_smem()
{
    constexpr int NTQ = QUERIES_PER_TILE / 8;
    return (2 * (size_t)(16 * KG) + (size_t)STAGES * 2 * QUERIES_PER_TILE) * staged_ld<HD, BF16>() *
               sizeof(tile_t<BF16>) +
           (size_t)STAGES * 3 * QUERIES_PER_TILE * sizeof(float) +
           (NS > 1 ? (size_t)KG * NS * 2 * NTQ * 4 * 32 * sizeof(float) : 0);
}

// Starts staging query tile [i0, i0 + QUERIES_PER_TILE) of head h: Q and dO rows, and per
// query its lse, delta and position (INT32_MIN, never seeing a key, for a query past the
// end or one that saw nothing).
template <int HD, bool BF16>
FUSED_DEVICE void stage_query_tile(tile_t<BF16> *q_dst, tile_t<BF16> *g_dst, float *stats, const fused_args &a, int h,
                                   int i0)
{
    constexpr int BQ = QUERIES_PER_TILE;
    const int valid = min(BQ, a.tq - i0);
    const size_t at = (size_t)i0 * a.qs + (size_t)h * HD;
    stage_rows<HD, BF16>(q_dst, staged_source<BF16>(a.q, a.q16) + at, a.qs, BQ, valid);
    stage_rows<HD, BF16>(g_dst, staged_source<BF16>(a.dout, a.dout16) + at, a.qs, BQ, valid);
    float *slse = stats, *sdelta = stats + BQ;
    int32_t *sqp = (int32_t *)(stats + 2 * BQ);
    for (int x = threadIdx.x; x < BQ; x += blockDim.x) {
        const bool in = x < valid;
        const float L = in ? a.lse[(size_t)h * a.hs + i0 + x] : -INFINITY;
        slse[x] = L;
        sdelta[x] = in ? a.delta[(size_t)h * a.hs + i0 + x] : 0.0f;
        sqp[x] = L != -INFINITY ? a.q_pos[i0 + x] : INT32_MIN;
    }
}

// One block per (16 KG key rows, kv head): for every head of the group and every query
// that can see one of its keys, with S^T = K Q^T and dP^T = V dO^T,
//   dV += P^T dO,  dK += scale dS^T Q.
template <int HD, int KG, int NS, int STAGES, bool BF16>
FUSED_KERNEL(KG * NS * 32) fused_dkdv_kernel(fused_args a)
{
    using T = tile_t<BF16>;
    constexpr int KEYS = 16 * KG, BQ = QUERIES_PER_TILE, LD = staged_ld<HD, BF16>(), NTQ = BQ / 8;
    constexpr int HS = HD / NS, NDS = HS / 8; // head-dimension columns per warp
    FUSED_SHARED(smem4);
    // per stage: a query tile, a dO tile, then 3 BQ floats of stats (lse, delta, positions)
    T *sk = (T *)smem4, *sv = sk + KEYS * LD, *sqg = sv + KEYS * LD;
    float *sstats = (float *)(sqg + STAGES * 2 * BQ * LD);
    float *xchg = sstats + STAGES * 3 * BQ; // NS > 1: per warp, its partial S^T and dP^T, lane-major
    const int kh = blockIdx.y, j0 = blockIdx.x * KEYS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kg = warp / NS, part = warp % NS;
    const int valid_keys = min(KEYS, a.tk - j0);
    const int first_query = first_at_least(a.q_pos, a.tq, a.k_pos[j0]);
    if (first_query >= a.tq) // no query sees any of these keys
        return;
    // The tiles: for each head of the group, the queries from first_query on.
    const int per_head = (a.tq - first_query + BQ - 1) / BQ, tiles = per_head * a.group;
    const size_t at = (size_t)j0 * a.ks + (size_t)kh * HD;
    stage_rows<HD, BF16>(sk, staged_source<BF16>(a.k, a.k16) + at, a.ks, KEYS, valid_keys);
    stage_rows<HD, BF16>(sv, staged_source<BF16>(a.v, a.v16) + at, a.ks, KEYS, valid_keys);
    stage_query_tile<HD, BF16>(sqg, sqg + BQ * LD, sstats, a, kh * a.group, first_query);
    copies_commit();

    const int key[2] = {j0 + 16 * kg + g, j0 + 16 * kg + g + 8};
    int32_t kp[2];
FUSED_UNROLL
    for (int r = 0; r < 2; r++)
        kp[r] = key[r] < a.tk ? a.k_pos[key[r]] : INT32_MAX;
    float dk[NDS][4] = {}, dv[NDS][4] = {};

    for (int tile = 0; tile < tiles; tile++) {
        // (the barriers in here also free the exchange for this tile)
        advance_tiles<STAGES>(tile, tiles, [&](int buf, int next) {
            stage_query_tile<HD, BF16>(sqg + buf * 2 * BQ * LD, sqg + (buf * 2 + 1) * BQ * LD, sstats + buf * 3 * BQ, a,
                                 kh * a.group + next / per_head, first_query + next % per_head * BQ);
        });
        const int stage = tile % STAGES;
        const T *sq = sqg + stage * 2 * BQ * LD, *sg = sq + BQ * LD;
        const float *slse = sstats + stage * 3 * BQ, *sdelta = slse + BQ;
        const int32_t *sqp = (const int32_t *)(slse + 2 * BQ);

        float st[NTQ][4] = {}, dpt[NTQ][4] = {};
        mma_rows_by_rows<HS, NTQ, BF16>(st, sk + 16 * kg * LD + part * HS, sq + part * HS, LD);
        mma_rows_by_rows<HS, NTQ, BF16>(dpt, sv + 16 * kg * LD + part * HS, sg + part * HS, LD);
        if (NS > 1) {
            float *mine = xchg + (size_t)warp * 2 * NTQ * 4 * 32;
FUSED_UNROLL
            for (int j = 0; j < NTQ; j++)
FUSED_UNROLL
                for (int e = 0; e < 4; e++) {
                    mine[(j * 4 + e) * 32 + lane] = st[j][e];
                    mine[(NTQ * 4 + j * 4 + e) * 32 + lane] = dpt[j][e];
                }
            __syncthreads();
            for (int other = 0; other < NS; other++) {
                if (other == part)
                    continue;
                const float *theirs = xchg + (size_t)(kg * NS + other) * 2 * NTQ * 4 * 32;
FUSED_UNROLL
                for (int j = 0; j < NTQ; j++)
FUSED_UNROLL
                    for (int e = 0; e < 4; e++) {
                        st[j][e] += theirs[(j * 4 + e) * 32 + lane];
                        dpt[j][e] += theirs[(NTQ * 4 + j * 4 + e) * 32 + lane];
                    }
            }
        }
FUSED_UNROLL
        for (int j = 0; j < NTQ; j++) {
FUSED_UNROLL
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, col = 8 * j + 2 * t + (e & 1);
                const float p = kp[r] <= sqp[col] ? exp2f((st[j][e] * a.scale - slse[col]) * LOG2E) : 0.0f;
                st[j][e] = p;
                dpt[j][e] = p * (dpt[j][e] - sdelta[col]); // dS^T
            }
        }
        if (a.ds != nullptr && part == 0) { // dS for the dQ kernel (each warp of a pair holds all of it)
            const int q0 = first_query + tile % per_head * BQ;
            float *ds = a.ds + (size_t)(kh * a.group + tile / per_head) * a.tq * a.ds_ld;
FUSED_UNROLL
            for (int j = 0; j < NTQ; j++) {
FUSED_UNROLL
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1, q = q0 + 8 * j + 2 * t + (e & 1);
                    if (q < a.tq && key[r] < a.tk)
                        ds[(size_t)q * a.ds_ld + key[r]] = dpt[j][e];
                }
            }
        }
        mma_regs_by_rows<NTQ, NDS, BF16>(dv, st, sg + part * HS, LD);
        mma_regs_by_rows<NTQ, NDS, BF16>(dk, dpt, sq + part * HS, LD);
    }

FUSED_UNROLL
    for (int r = 0; r < 2; r++) {
        if (key[r] >= a.tk)
            continue;
        const size_t base = (size_t)key[r] * a.ks + (size_t)kh * HD + part * HS + 2 * t;
FUSED_UNROLL
        for (int d = 0; d < NDS; d++) {
            float2 *k_out = (float2 *)(a.dk + base + 8 * d), *v_out = (float2 *)(a.dv + base + 8 * d);
            float2 x = *k_out, y = *v_out;
            x.x += a.scale * dk[d][2 * r], x.y += a.scale * dk[d][2 * r + 1];
            y.x += dv[d][2 * r], y.y += dv[d][2 * r + 1];
            *k_out = x, *v_out = y;
        }
    }
}

// ---- launch plans, shared by the GPU and the emulator -----------------------------------------

// Head dimensions with kernels.
inline bool takes_head_dim(int hd)
{
    return hd == 16 || hd == 32 || hd == 64 || hd == 128 || hd == 256;
}

// How the kernels are started: the device's opt-in shared memory per block, and the most
// stages (buffers for the tiles a loop walks: 2 overlaps copying the next tile with using
// this one; 1 waits) a kernel may take where they fit.
struct plan_limits {
    size_t smem;
    int max_stages;
};

// launch(kernel, shared bytes, grid x, grid y, threads, args) starts one kernel. False, having
// started nothing, when no variant fits the limits.
template <int HD, bool BF16, typename Launch>
bool forward(const fused_args &a, int heads, plan_limits lim, Launch launch)
{
    const int grid = (a.tq + 63) / 64;
    if (lim.max_stages >= 2 && fwd_smem<HD, 4, 2, BF16>() <= lim.smem)
        launch(fused_fwd_kernel<HD, 4, 2, BF16>, fwd_smem<HD, 4, 2, BF16>(), grid, heads, 128, a);
    else if (fwd_smem<HD, 4, 1, BF16>() <= lim.smem)
        launch(fused_fwd_kernel<HD, 4, 1, BF16>, fwd_smem<HD, 4, 1, BF16>(), grid, heads, 128, a);
    else
        return false;
    return true;
}

// How much of dS the backward can keep for the dQ kernel within budget bytes: ds_ld floats
// per query row and head (tk rounded up to whole key tiles, so that a staged tile never reads
// past a row), and the query rows of one pass of the two kernels (a multiple of 64, the dQ
// blocks; at most tq rounded up to it). Rows 0 when not even 64 rows fit.
struct ds_plan {
    int ld, rows;
    size_t floats; // of the buffer: heads x rows x ld
};

inline ds_plan stored_ds_plan(int tq, int tk, int heads, size_t budget)
{
    ds_plan p = {(tk + KEYS_PER_TILE - 1) / KEYS_PER_TILE * KEYS_PER_TILE, 0, 0};
    const size_t row_bytes = (size_t)heads * (size_t)p.ld * sizeof(float);
    size_t rows = budget / row_bytes / 64 * 64;
    const size_t all = ((size_t)tq + 63) / 64 * 64;
    if (rows > all)
        rows = all;
    if (rows < 64)
        return {p.ld, 0, 0};
    p.rows = (int)rows;
    p.floats = (size_t)heads * rows * (size_t)p.ld;
    return p;
}

// The dK/dV kernel for a (or one pass of it).
template <int HD, bool BF16, typename Launch>
void launch_dkdv(const fused_args &a, int kv_heads, plan_limits lim, Launch launch)
{
    constexpr int NS = HD > 128 ? 2 : 1, KG = 4 / NS;
    const int key_blocks = (a.tk + 16 * KG - 1) / (16 * KG);
    if (lim.max_stages >= 2 && dkdv_smem<HD, KG, NS, 2, BF16>() <= lim.smem)
        launch(fused_dkdv_kernel<HD, KG, NS, 2, BF16>, dkdv_smem<HD, KG, NS, 2, BF16>(), key_blocks, kv_heads,
               KG * NS * 32, a);
    else
        launch(fused_dkdv_kernel<HD, KG, NS, 1, BF16>, dkdv_smem<HD, KG, NS, 1, BF16>(), key_blocks, kv_heads,
               KG * NS * 32, a);
}

// The dQ kernel that recomputes dS: four warps per block where shared memory allows, else two
// (at HD 256 with two stages, or on an A100).
template <int HD, bool BF16, typename Launch>
void launch_dq(const fused_args &a, int heads, plan_limits lim, Launch launch)
{
    const bool two = lim.max_stages >= 2;
    const int grid4 = (a.tq + 63) / 64, grid2 = (a.tq + 31) / 32;
    if (two && dq_smem<HD, 4, 2, BF16>() <= lim.smem)
        launch(fused_dq_kernel<HD, 4, 2, BF16>, dq_smem<HD, 4, 2, BF16>(), grid4, heads, 128, a);
    else if (two && dq_smem<HD, 2, 2, BF16>() <= lim.smem)
        launch(fused_dq_kernel<HD, 2, 2, BF16>, dq_smem<HD, 2, 2, BF16>(), grid2, heads, 64, a);
    else if (dq_smem<HD, 4, 1, BF16>() <= lim.smem)
        launch(fused_dq_kernel<HD, 4, 1, BF16>, dq_smem<HD, 4, 1, BF16>(), grid4, heads, 128, a);
    else
        launch(fused_dq_kernel<HD, 2, 1, BF16>, dq_smem<HD, 2, 1, BF16>(), grid2, heads, 64, a);
}

// dK/dV first, then dQ. With a.ds (a buffer and rows from stored_ds_plan) the queries go in
// passes of a.ds_rows: the dK/dV kernel of a pass stores its dS and the pass's dQ kernel reads
// it (dK and dV add up over the passes in order, so runs still repeat bit for bit); without,
// the dQ kernel recomputes the scores and dP from Q, K, V and dO.
template <int HD, bool BF16, typename Launch>
bool backward(const fused_args &a, int heads, int kv_heads, plan_limits lim, Launch launch)
{
    constexpr int NS = HD > 128 ? 2 : 1, KG = 4 / NS;
    if (dkdv_smem<HD, KG, NS, 1, BF16>() > lim.smem || dq_smem<HD, 2, 1, BF16>() > lim.smem ||
        (a.ds != nullptr && dq_stored_smem<HD, 4, 1, BF16>() > lim.smem))
        return false;
    if (a.ds == nullptr) {
        launch_dkdv<HD, BF16>(a, kv_heads, lim, launch);
        launch_dq<HD, BF16>(a, heads, lim, launch);
        return true;
    }
    const bool two = lim.max_stages >= 2 && dq_stored_smem<HD, 4, 2, BF16>() <= lim.smem;
    for (int c0 = 0; c0 < a.tq; c0 += a.ds_rows) {
        fused_args c = a; // the pass's queries; max/sum/lse/delta keep their head stride
        c.tq = a.tq - c0 < a.ds_rows ? a.tq - c0 : a.ds_rows;
        c.q += (size_t)c0 * a.qs, c.dout += (size_t)c0 * a.qs, c.dq += (size_t)c0 * a.qs;
        c.q_pos += c0, c.lse += c0, c.delta += c0;
        launch_dkdv<HD, BF16>(c, kv_heads, lim, launch);
        const int grid = (c.tq + 63) / 64;
        if (two)
            launch(fused_dq_stored_kernel<HD, 4, 2, BF16>, dq_stored_smem<HD, 4, 2, BF16>(), grid, heads, 128, c);
        else
            launch(fused_dq_stored_kernel<HD, 4, 1, BF16>, dq_stored_smem<HD, 4, 1, BF16>(), grid, heads, 128, c);
    }
    return true;
}

// The kernels for head dimension hd, with bf16 or TF32 operands.
template <bool BF16, typename Launch>
bool forward_hd(const fused_args &a, int hd, int heads, plan_limits lim, Launch launch)
{
    switch (hd) {
    case 16: return forward<16, BF16>(a, heads, lim, launch);
    case 32: return forward<32, BF16>(a, heads, lim, launch);
    case 64: return forward<64, BF16>(a, heads, lim, launch);
    case 128: return forward<128, BF16>(a, heads, lim, launch);
    case 256: return forward<256, BF16>(a, heads, lim, launch);
    default: return false;
    }
}

template <typename Launch>
bool forward_any(const fused_args &a, int hd, int heads, bool bf16, plan_limits lim, Launch launch)
{
    return bf16 ? forward_hd<true>(a, hd, heads, lim, launch) : forward_hd<false>(a, hd, heads, lim, launch);
}

template <bool BF16, typename Launch>
bool backward_hd(const fused_args &a, int hd, int heads, int kv_heads, plan_limits lim, Launch launch)
{
    switch (hd) {
    case 16: return backward<16, BF16>(a, heads, kv_heads, lim, launch);
    case 32: return backward<32, BF16>(a, heads, kv_heads, lim, launch);
    case 64: return backward<64, BF16>(a, heads, kv_heads, lim, launch);
    case 128: return backward<128, BF16>(a, heads, kv_heads, lim, launch);
    case 256: return backward<256, BF16>(a, heads, kv_heads, lim, launch);
    default: return false;
    }
}

template <typename Launch>
bool backward_any(const fused_args &a, int hd, int heads, int kv_heads, bool bf16, plan_limits lim, Launch launch)
{
    return bf16 ? backward_hd<true>(a, hd, heads, kv_heads, lim, launch)
                : backward_hd<false>(a, hd, heads, kv_heads, lim, launch);
}

} // namespace fused

#endif
