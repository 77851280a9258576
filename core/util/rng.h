#ifndef WANCP_RNG_H
#define WANCP_RNG_H

#include <stdint.h>

/*
 * A small deterministic generator (xoshiro256**, seeded by splitmix64): the same seed gives
 * the same stream on every machine and every rank, which the equivalence tests and resumed
 * runs rely on. The state is plain data so checkpoints can store it.
 */
typedef struct rng {
    uint64_t s[4];
} rng;

void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next(rng *r);
double rng_uniform(rng *r); /* [0, 1) with 53 random bits */
float rng_normal(rng *r);   /* N(0, 1) by Box-Muller; one value per call */

#endif
