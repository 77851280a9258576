#ifndef WANCP_CP_LAYOUT_H
#define WANCP_CP_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Which rank holds which tokens of a sequence (METHOD.md section 1). A sequence of N tokens
 * is cut into chunks of m tokens, per_rank of them on each of P ranks (2 unless said).
 * Zig-zag (default, Llama 3; per_rank must be 2): rank p holds chunks p and 2P-1-p, so
 * causal work is equal on every rank. Contiguous: rank p holds chunks p*per_rank ..
 * (p+1)*per_rank-1; with one rank and many chunks it is METHOD.md section 2's model on one
 * process. A rank's local tokens are its chunks in ascending order.
 */
enum cp_layout_kind { CP_ZIGZAG, CP_CONTIGUOUS };

#define CP_MAX_LOCAL 64

typedef struct cp_layout {
    enum cp_layout_kind kind;
    int ranks;    /* P */
    int chunk;    /* m tokens */
    int per_rank; /* chunks per rank; 0 means 2 */
} cp_layout;

static inline int cp_local_count(const cp_layout *l) { return l->per_rank > 0 ? l->per_rank : 2; }
static inline int cp_total_chunks(const cp_layout *l) { return l->ranks * cp_local_count(l); }

/* The chunks rank p holds, ascending (cp_local_count of them). */
void cp_chunks_of(const cp_layout *l, int rank, int chunks[CP_MAX_LOCAL]);

/* The rank holding chunk j. */
int cp_owner(const cp_layout *l, int chunk);

/* Whether a query in chunk q may see keys of chunk j (causal: j <= q). */
static inline bool cp_needs(int q, int j) { return j <= q; }

/* Whether rank p needs chunk j (some chunk it holds is at or after j). */
bool cp_rank_needs(const cp_layout *l, int rank, int chunk);

/* Global positions of rank p's local tokens, in local order. */
void cp_positions(const cp_layout *l, int rank, int32_t *pos);

/* Copies rank p's local tokens of each of batch sequences (batch x total chunks x chunk
 * tokens) into local (batch x local chunks x chunk). */
void cp_select_tokens(const cp_layout *l, int rank, const uint16_t *full, int batch, uint16_t *local);

/* Causal attention work (query-key pairs) rank p does, for balance checks. */
long long cp_causal_pairs(const cp_layout *l, int rank);

#endif
