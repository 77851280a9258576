// A warp emulator: CUDA kernels written against core/ops/cuda/attention_fused_kernels.h run on
// the host, one host thread per CUDA thread, so their indexing, masking, barriers and
// shared-memory bounds are tested where there is no GPU (and under ASan and UBSan, which see
// every shared-memory access as a heap access of exactly the block's size).
//
// What it emulates, from the PTX ISA:
//   - mma.sync.m16n8k8 with TF32 operands: each lane's fragments are put where the ISA's
//     fragment layouts say they belong (A: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4),
//     a3 (g + 8, t + 4); B: b0 (t, g), b1 (t + 4, g); C: c0 (g, 2t), c1 (g, 2t + 1),
//     c2 (g + 8, 2t), c3 (g + 8, 2t + 1); g = lane / 4, t = lane % 4), the 16 x 8 x 8
//     product is formed, and each lane takes its four results back;
//   - cvt.rna.tf32.f32 (to nearest, ties away from zero, 10 mantissa bits); with
//     emu::exact set, operands keep all their bits, so the kernels compute in fp32 and can
//     be held to the cpu's fp32 tolerance;
//   - mma.sync.m16n8k16 with bf16 operands, two to a register, the lower k index in the low
//     half (A: a0 (g, 2t..2t+1), a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8, 2t + 8..);
//     B: b0 (2t..2t+1, g), b1 (2t + 8..2t + 9, g); C as above), and cvt.rn.bf16x2.f32
//     (to nearest, ties to even: core/util/bf16.h's rounding, which the wire uses too);
//   - ldmatrix.sync.m8n8.x4.trans.b16: lane L gives row L % 8 of matrix L / 8 (16 bytes,
//     16-byte aligned), and register i of lane (g, t) gets rows 2t and 2t + 1 of matrix i at
//     column g, the lower row in the low half;
//   - __shfl_xor_sync and __syncthreads as barriers over the warp's and the block's threads
//     (barrier_t: waiters yield rather than sleep);
//   - cp.async (copy16_async, copies_commit, copies_wait<N>): a thread's copies are held
//     back and land only when its copies_wait lets their group complete, so a kernel that
//     reads a tile before waiting for it reads what was there before.
// Shared memory starts as NaN bytes: a kernel that reads what it never staged sees NaN.
//
// One block runs at a time; blocks of a launch run one after another.
#ifndef WANCP_WARP_EMULATOR_H
#define WANCP_WARP_EMULATOR_H

#include <atomic>
#include <new>
#include <pthread.h>
#include <sched.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "core/util/bf16.h"
}

struct dim3 {
    unsigned x, y, z;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};

inline float2 make_float2(float x, float y)
{
    return {x, y};
}

inline float4 make_float4(float x, float y, float z, float w)
{
    return {x, y, z, w};
}

inline uint32_t __float_as_uint(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

inline float __uint_as_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

inline int min(int a, int b)
{
    return a < b ? a : b;
}

namespace emu {

// A barrier whose waiters yield the core instead of sleeping. Every shuffle, mma and
// ldmatrix is a barrier over the warp's 32 threads: with pthread barriers each sent its
// threads to sleep and woke them: 83 million context switches and 5.5 minutes for
// test_fused_emulated on two cores. Yielding, it takes 2.7 (8 minutes to 5.7 under ASan).
struct barrier_t {
    std::atomic<unsigned> arrived{0}, generation{0};
    unsigned count = 0;

    void reset(unsigned n)
    {
        arrived.store(0, std::memory_order_relaxed);
        generation.store(0, std::memory_order_relaxed);
        count = n;
    }
};

// A warp's exchange buffers, two of each: a lane's n-th warp-wide call (shuffle or mma)
// uses set n % 2, so one barrier per call suffices. A lane that has passed call n's barrier
// can write set n % 2 again only at call n + 2, after call n + 1's barrier, which every lane
// reaches only when done reading call n's set.
struct warp_state {
    barrier_t barrier;
    float lanes[2][32];
    uint32_t a[2][32][4], b[2][32][2];
    const uint16_t *rows[2][32]; // ldmatrix's row addresses
};

struct block_state {
    barrier_t barrier;
    warp_state *warps;
    float4 *shared;
};

// Operands at full fp32 precision instead of TF32 (the products are then exact fp32 sums).
inline bool exact;

inline thread_local block_state *t_block;
inline thread_local unsigned t_warp_calls; // this lane's warp-wide calls so far

// A cp.async in flight: 16 bytes (zeros when src is null) for dst, in commit group `group`.
struct pending_copy {
    void *dst;
    const void *src;
    unsigned group;
};
inline thread_local std::vector<pending_copy> t_copies;
inline thread_local unsigned t_groups; // groups committed so far

inline void fail(const char *what)
{
    fprintf(stderr, "warp emulator: %s\n", what);
    abort();
}

// The last thread to arrive opens the barrier for the others; what each wrote before
// arriving is visible to all after (acquire/release on the counter and the generation).
inline void wait(barrier_t *b)
{
    const unsigned g = b->generation.load(std::memory_order_acquire);
    if (b->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == b->count) {
        b->arrived.store(0, std::memory_order_relaxed);
        b->generation.fetch_add(1, std::memory_order_release);
    } else
        while (b->generation.load(std::memory_order_acquire) == g)
            sched_yield();
}

} // namespace emu

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define FUSED_DEVICE inline
#define FUSED_HOST_DEVICE
#define FUSED_KERNEL(threads) void
#define FUSED_SHARED(name) float4 *name = emu::t_block->shared
#define FUSED_UNROLL

inline void __syncthreads()
{
    emu::wait(&emu::t_block->barrier);
}

inline emu::warp_state &this_warp()
{
    return emu::t_block->warps[threadIdx.x / 32];
}

inline float __shfl_xor_sync(unsigned mask, float x, int offset)
{
    if (mask != 0xffffffffu)
        emu::fail("only full-warp shuffles are emulated");
    emu::warp_state &w = this_warp();
    const unsigned lane = threadIdx.x % 32, set = emu::t_warp_calls++ % 2;
    w.lanes[set][lane] = x;
    emu::wait(&w.barrier);
    return w.lanes[set][lane ^ (unsigned)offset];
}

inline uint32_t tf32_bits(float x)
{
    const uint32_t u = __float_as_uint(x);
    if (emu::exact)
        return u;
    if ((u & 0x7f800000u) == 0x7f800000u) // inf stays inf, NaN stays NaN
        return (u & 0x1fffu) != 0 ? (u | 0x400000u) & ~0x1fffu : u;
    return (u + 0x1000u) & ~0x1fffu; // half an ulp of TF32 added to the magnitude: ties away from zero
}

// The value an operand register carries into the product: TF32 keeps 10 mantissa bits.
inline float tf32_operand(uint32_t bits)
{
    return __uint_as_float(emu::exact ? bits : bits & ~0x1fffu);
}

// One warp-wide 16 x 8 x KDIM product: every lane puts its fragments where the others can
// read them, then forms its four C elements from everyone's. a_elem(regs, row, k) and
// b_elem(regs, k, col) read an element from the warp's exchanged A and B registers.
template <unsigned KDIM, typename AElem, typename BElem>
inline void warp_mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], AElem a_elem, BElem b_elem)
{
    emu::warp_state &w = this_warp();
    const unsigned lane = threadIdx.x % 32, set = emu::t_warp_calls++ % 2;
    memcpy(w.a[set][lane], a, sizeof w.a[set][lane]);
    memcpy(w.b[set][lane], b, sizeof w.b[set][lane]);
    emu::wait(&w.barrier);
    const unsigned g = lane / 4, t = lane % 4;
    float out[4];
    for (unsigned i = 0; i < 4; i++) {
        const unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
        float sum = 0.0f;
        for (unsigned k = 0; k < KDIM; k++)
            sum += a_elem(w.a[set], row, k) * b_elem(w.b[set], k, col);
        out[i] = d[i] + sum;
    }
    memcpy(d, out, sizeof out);
}

inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    warp_mma<8>(
        d, a, b,
        [](const uint32_t (*regs)[4], unsigned row, unsigned k) {
            return tf32_operand(regs[(row % 8) * 4 + k % 4][(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
        },
        [](const uint32_t (*regs)[2], unsigned k, unsigned col) {
            return tf32_operand(regs[col * 4 + k % 4][k >= 4 ? 1 : 0]);
        });
}

inline uint32_t bf16x2_bits(float lo, float hi)
{
    return (uint32_t)bf16_from_float(lo) | (uint32_t)bf16_from_float(hi) << 16;
}

// Element i (0: low half, 1: high half) of a register of two bf16.
inline float bf16_half(uint32_t bits, unsigned i)
{
    return bf16_to_float((uint16_t)(i ? bits >> 16 : bits & 0xffffu));
}

// The products of two bf16 are exact in fp32; only the sums round.
inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    warp_mma<16>(
        d, a, b,
        [](const uint32_t (*regs)[4], unsigned row, unsigned k) {
            return bf16_half(regs[(row % 8) * 4 + (k % 8) / 2][(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
        },
        [](const uint32_t (*regs)[2], unsigned k, unsigned col) {
            return bf16_half(regs[col * 4 + (k % 8) / 2][k >= 8 ? 1 : 0], k % 2);
        });
}

// Every lane gives its row's address; each then reads its four registers from the rows the
// others gave.
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t *row)
{
    if (((uintptr_t)row & 15u) != 0)
        emu::fail("ldmatrix rows must be 16-byte aligned");
    emu::warp_state &w = this_warp();
    const unsigned lane = threadIdx.x % 32, set = emu::t_warp_calls++ % 2;
    w.rows[set][lane] = row;
    emu::wait(&w.barrier);
    const unsigned g = lane / 4, t = lane % 4;
    for (unsigned i = 0; i < 4; i++) {
        const uint16_t lo = w.rows[set][8 * i + 2 * t][g], hi = w.rows[set][8 * i + 2 * t + 1][g];
        r[i] = (uint32_t)lo | (uint32_t)hi << 16;
    }
}

inline void copy16_async(void *smem_dst, const void *src, bool valid)
{
    if (((uintptr_t)smem_dst & 15u) != 0 || (valid && ((uintptr_t)src & 15u) != 0))
        emu::fail("cp.async of 16 bytes needs 16-byte aligned addresses");
    emu::t_copies.push_back({smem_dst, valid ? src : nullptr, emu::t_groups});
}

inline void copies_commit()
{
    emu::t_groups++;
}

// Lands every copy of the groups older than the N most recent committed ones (copies not
// yet committed stay in flight, as on the GPU).
template <int N> inline void copies_wait()
{
    std::vector<emu::pending_copy> &q = emu::t_copies;
    size_t kept = 0;
    for (size_t i = 0; i < q.size(); i++) {
        if (q[i].group + N < emu::t_groups) {
            if (q[i].src != nullptr)
                memcpy(q[i].dst, q[i].src, 16);
            else
                memset(q[i].dst, 0, 16);
        } else {
            q[kept++] = q[i];
        }
    }
    q.resize(kept);
}

namespace emu {

template <typename Args> struct thread_job {
    void (*kernel)(Args);
    const Args *args;
    block_state *block;
    unsigned x, bx, by;
};

template <typename Args> void *run_thread(void *p)
{
    const thread_job<Args> *job = (const thread_job<Args> *)p;
    threadIdx = {job->x, 0, 0};
    blockIdx = {job->bx, job->by, 0};
    t_block = job->block;
    t_warp_calls = 0;
    t_copies.clear();
    t_groups = 0;
    job->kernel(*job->args);
    if (!t_copies.empty()) // the GPU would land them later, but nothing waited for them
        fail("a kernel ended with copies it never waited for");
    t_copies.clear();
    t_copies.shrink_to_fit();
    return nullptr;
}

// Runs kernel over grid_x x grid_y blocks of threads (a multiple of 32) with smem bytes of
// shared memory each.
template <typename Args>
void launch(void (*kernel)(Args), size_t smem, int grid_x, int grid_y, int threads, const Args &args)
{
    if (threads <= 0 || threads % 32 != 0 || threads > 1024)
        fail("threads per block must be whole warps, at most 1024");
    blockDim = {(unsigned)threads, 1, 1};
    gridDim = {(unsigned)grid_x, (unsigned)grid_y, 1};
    const size_t bytes = (smem + 15) / 16 * 16;
    const int warps = threads / 32;
    thread_job<Args> *jobs = (thread_job<Args> *)calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = (pthread_t *)calloc((size_t)threads, sizeof *tids);
    warp_state *ws = new (std::nothrow) warp_state[(size_t)warps]();
    float4 *shared = (float4 *)aligned_alloc(16, bytes > 0 ? bytes : 16);
    if (jobs == nullptr || tids == nullptr || ws == nullptr || shared == nullptr)
        fail("out of memory");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)4 << 20);
    for (int by = 0; by < grid_y; by++) {
        for (int bx = 0; bx < grid_x; bx++) {
            block_state block;
            block.barrier.reset((unsigned)threads);
            for (int w = 0; w < warps; w++)
                ws[w].barrier.reset(32);
            block.warps = ws;
            block.shared = shared;
            memset(shared, 0xff, bytes); // NaN: what was never staged
            for (int x = 0; x < threads; x++) {
                jobs[x] = {kernel, &args, &block, (unsigned)x, (unsigned)bx, (unsigned)by};
                if (pthread_create(&tids[x], &attr, run_thread<Args>, &jobs[x]) != 0)
                    fail("pthread_create failed");
            }
            for (int x = 0; x < threads; x++)
                pthread_join(tids[x], nullptr);
        }
    }
    pthread_attr_destroy(&attr);
    free(shared), free(tids), free(jobs);
    delete[] ws;
}

} // namespace emu

#endif
