#ifndef WANCP_BPE_H
#define WANCP_BPE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Byte-pair merges: the table of (left id, right id) -> (rank, merged id) read from
 * GPT-2's vocab.bpe, and the merge loop applied to one pre-token.
 *
 * The loop always merges the pair of lowest rank, leftmost first, which yields exactly the
 * tokens of GPT-2's reference loop (merge every occurrence of the best pair, repeat): a
 * merge can only create pairs that contain its result, and vocab.bpe lists every merge
 * after the merges that built its parts, so no new pair can outrank the one just merged.
 * With a heap and a linked list it runs in O(n log n) for a pre-token of n bytes, so a
 * pathological run of 100 KB of spaces costs milliseconds, not minutes.
 */
typedef struct bpe_merges {
    uint32_t *keys;    /* (cap,) (left << 16 | right) + 1; 0 marks an empty slot */
    uint32_t *ranks;   /* (cap,) */
    uint16_t *merged;  /* (cap,) */
    size_t cap;        /* power of two */
    size_t count;
} bpe_merges;

/* Scratch space for bpe_apply, grown on demand, reused across calls. */
typedef struct bpe_scratch {
    int32_t *next;       /* (cap,) linked list of live symbols */
    int32_t *prev;       /* (cap,) */
    struct bpe_candidate *heap; /* (3 * cap,) candidate pairs ordered by (rank, left) */
    size_t cap;
} bpe_scratch;

/* Sizes the table for expected merges. 0 or WANCP_ERR_NOMEM. */
int bpe_merges_init(bpe_merges *m, size_t expected);

/* Adds a merge; returns 1 if the pair was already present (left unchanged), 0 if added. */
int bpe_merges_add(bpe_merges *m, uint16_t left, uint16_t right, uint32_t rank, uint16_t merged);

/* 1 with rank and merged id when (left, right) merges, else 0. */
int bpe_merges_find(const bpe_merges *m, uint16_t left, uint16_t right, uint32_t *rank, uint16_t *merged);

void bpe_merges_free(bpe_merges *m);

/* Merges ids[0..*n) in place; *n becomes the number of tokens. 0 or WANCP_ERR_NOMEM. */
int bpe_apply(const bpe_merges *m, bpe_scratch *s, uint16_t *ids, size_t *n);

void bpe_scratch_free(bpe_scratch *s);

#endif
