#ifndef WANCP_BASIS_BLOCKS_H
#define WANCP_BASIS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A layer's bases stored as one block-diagonal matrix (d x r, row-major): with `bases`
 * independent bases (one per KV head, or one over the layer), basis b owns rows
 * b d/bases .. (b+1) d/bases - 1 and columns b r/bases .. (b+1) r/bases - 1; everything off
 * those blocks is zero. One layout for U0 in the parameters, U_theta in the codec and
 * dL/dU0 in the Stiefel step.
 */

/* The seed of basis b's seeded parts from a layer's seed: basis 0 keeps it, so one basis per
 * layer draws exactly what the per-layer codec drew. */
static inline uint64_t basis_seed(uint64_t seed, int b)
{
    return b == 0 ? seed : seed ^ (0x94D049BB133111EBull * (uint64_t)b);
}

/* blk (d/bases x r/bases, contiguous) = basis b's block of full. */
static inline void basis_block_get(const float *full, int d, int r, int bases, int b, float *blk)
{
    const int db = d / bases, rb = r / bases;
    for (int i = 0; i < db; i++)
        memcpy(blk + (size_t)i * rb, full + ((size_t)b * db + i) * r + (size_t)b * rb, (size_t)rb * sizeof *blk);
}

/* Basis b's block of full = blk; the rest of full is left alone. */
static inline void basis_block_put(float *full, int d, int r, int bases, int b, const float *blk)
{
    const int db = d / bases, rb = r / bases;
    for (int i = 0; i < db; i++)
        memcpy(full + ((size_t)b * db + i) * r + (size_t)b * rb, blk + (size_t)i * rb, (size_t)rb * sizeof *blk);
}

#endif
