#ifndef WANCP_FAST_EXP_H
#define WANCP_FAST_EXP_H

#include <stdint.h>
#include <string.h>

/*
 * exp(x) for fp32 in straight-line code that the compiler vectorises (no calls, no
 * branches), for the softmax loops that otherwise cost as much as the matmuls. Range
 * reduction x = n ln2 + r with |r| <= ln2/2, then a degree-6 polynomial for e^r and 2^n by
 * building the exponent bits: relative error below 2e-7 (about 2 ulp) over the range.
 * Inputs below -87 give 0 (softmax entries that underflow anyway); above 88, +inf is not
 * needed by any caller (scores are max-subtracted) and the result saturates at 2^127.
 */
static inline float fast_exp(float x)
{
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = (xc * log2e + 12582912.0f) - 12582912.0f; /* round to nearest, branch-free */
    float r = xc - n * ln2_hi - n * ln2_lo;
    float p = 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

#endif
