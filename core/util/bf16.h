#ifndef WANCP_BF16_H
#define WANCP_BF16_H

/* bf16 as the wire carries it: the upper 16 bits of an fp32, rounded to nearest even.
 * One definition for the host (the codec's wire format, the cpu backend) and the device
 * (the cuda backend's rounding kernel), so both round the same bits the same way. */

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define BF16_FN __host__ __device__ static inline
#else
#define BF16_FN static inline
#endif

/* Round to nearest even on the upper 16 bits; NaN stays NaN (quiet). */
BF16_FN uint16_t bf16_from_float(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

BF16_FN float bf16_to_float(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

#endif
