#ifndef WANCP_CP_ATTENTION_H
#define WANCP_CP_ATTENTION_H

#include "../comm/comm.h"
#include "../model/model.h"
#include "cp_layout.h"

/*
 * Context-parallel attention (METHOD.md section 1, all-gather form) as the model's
 * attention implementation. Per layer and sequence, forward: each of this rank's two chunks
 * of K/V goes (as one message, K then V, fp32) to exactly the ranks that need it; the local
 * block is computed while those are in flight, then each remote chunk is merged by the
 * online softmax, in chunk order so results are the same every run. The received K/V are
 * kept for the backward, which computes this rank's partial dK/dV of every remote chunk and
 * returns them to the owner (kv-backward class); the owner adds them, in rank order.
 *
 * Bytes per rank, layer and sequence, both directions: (P-1)+p messages out and
 * (P-1)+(P-1-p) in (zig-zag), each 2 m d_kv x 4 bytes; comm's counters must say so.
 */
typedef struct cp_attention {
    comm *comm;
    cp_layout layout;
    int rank;
    float *recv_kv;   /* (layers, batch, 2P chunks, 2, m, kvd): remote K/V kept for backward */
    float *send_kv;   /* (2, 2, m, kvd): this rank's two chunks packed K then V */
    float *grad_out;  /* (2P chunks, 2, m, kvd): partial dK/dV of remote chunks */
    float *grad_in;   /* (2 own chunks, P, 2, m, kvd): partial dK/dV arriving from each rank */
    bool exchange;    /* false: skip every send and receive (compute-only timing in benchmarks) */
    char error[512];
} cp_attention;

/* Sizes the buffers for m (its seq must be 2 x chunk) and installs itself as m's attention;
 * sets m's positions to this rank's chunks. */
int cp_attention_init(cp_attention *cp, comm *c, const cp_layout *layout, model *m, char *err, size_t errlen);
void cp_attention_free(cp_attention *cp);

/* The exchange of one training step (forward and backward, every layer and sequence) with
 * no compute: what bench comm times to find how much of it the step hides. */
int cp_attention_exchange_only(cp_attention *cp, model *m, char *err, size_t errlen);

#endif
