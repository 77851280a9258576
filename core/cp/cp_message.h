#ifndef WANCP_CP_MESSAGE_H
#define WANCP_CP_MESSAGE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The one definition of a K/V message's size (METHOD.md section 5): what one rank sends for
 * one of its chunks, in one layer, to each rank that needs it. The trainer sizes and counts
 * its messages with it, `wancp check` derives the byte formulas from it, the simulator
 * prices the links with it.
 *
 *   uncompressed: K and V of the chunk, 2 x chunk x d_kv elements of the wire's type;
 *   compressed:   the coordinates C and E, chunk x (rank_k + rank_v) elements of the wire's
 *                 type, after theta and tau of the head psi, 2 x psi_k fp32 values.
 */
typedef struct cp_message_shape {
    uint64_t chunk;     /* tokens in the chunk */
    int d_kv;           /* kv_heads x head_dim */
    int rank_k, rank_v; /* the subspace ranks (compressed only) */
    int psi_k;          /* outputs of the head psi (compressed only) */
    int wire_bytes;     /* 2 (bf16) or 4 (fp32): the element type of K/V, C and E */
    bool compressed;
} cp_message_shape;

uint64_t cp_kv_message_bytes(const cp_message_shape *s);

#endif
