#ifndef WANCP_LOADER_H
#define WANCP_LOADER_H

#include "shard.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Batches from one token shard, in order: each batch is batch x seq consecutive tokens as
 * inputs and the same shifted by one as targets (as llm.c reads its shards). The next batch
 * starts where this one ended; past the end it wraps to the start. The position is plain
 * data so a checkpoint can store it and a resumed run reads the same tokens.
 */
typedef struct loader {
    shard tokens;
    size_t pos; /* first input token of the next batch */
    int batch, seq;
    uint16_t *inputs;  /* (batch, seq) */
    uint16_t *targets; /* (batch, seq) */
} loader;

/* Opens path (validated against vocab) and needs at least batch x seq + 1 tokens. */
int loader_open(loader *l, const char *path, int vocab, int batch, int seq, char *err, size_t errlen);

/* Where a run with this seed starts reading: seed 1 at the first token (as every run did
 * before seeds varied the data), seed s at the fraction frac((s - 1) / phi) of the shard's
 * batch starts (a Weyl sequence, phi the golden ratio: a few seeds start far apart). The
 * same seed gives the same position on every rank. */
void loader_start_at_seed(loader *l, uint64_t seed);

/* Fills inputs and targets with the batch at pos, then advances pos. */
void loader_next(loader *l);

void loader_free(loader *l);

#endif
