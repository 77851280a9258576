#ifndef WANCP_CP_LAYOUT_H
#define WANCP_CP_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Which rank holds which tokens of a sequence (METHOD.md section 1). A sequence of N tokens
 * is cut into 2P chunks of m = N / 2P tokens. Zig-zag (default, Llama 3): rank p holds
 * chunks p and 2P-1-p, so causal work is equal on every rank. Contiguous: rank p holds
 * chunks 2p and 2p+1. A rank's local tokens are its two chunks in ascending order.
 */
enum cp_layout_kind { CP_ZIGZAG, CP_CONTIGUOUS };

typedef struct cp_layout {
    enum cp_layout_kind kind;
    int ranks;   /* P */
    int chunk;   /* m tokens */
} cp_layout;

/* The two chunks rank p holds, ascending. */
void cp_chunks_of(const cp_layout *l, int rank, int chunks[2]);

/* The rank holding chunk j. */
int cp_owner(const cp_layout *l, int chunk);

/* Whether a query in chunk q may see keys of chunk j (causal: j <= q). */
static inline bool cp_needs(int q, int j) { return j <= q; }

/* Whether rank p needs chunk j (some chunk it holds is at or after j). */
bool cp_rank_needs(const cp_layout *l, int rank, int chunk);

/* Global positions of rank p's 2m local tokens, in local order. */
void cp_positions(const cp_layout *l, int rank, int32_t *pos);

/* Copies rank p's local tokens of each of batch sequences (batch x 2P x chunk tokens) into
 * local (batch x 2 x chunk). */
void cp_select_tokens(const cp_layout *l, int rank, const uint16_t *full, int batch, uint16_t *local);

/* Causal attention work (query-key pairs) rank p does, for balance checks. */
long long cp_causal_pairs(const cp_layout *l, int rank);

#endif
