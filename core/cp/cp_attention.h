#ifndef WANCP_CP_ATTENTION_H
#define WANCP_CP_ATTENTION_H

#include "../comm/comm.h"
#include "../model/model.h"
#include "../subspace/kv_codec.h"
#include "cp_layout.h"

/*
 * Context-parallel attention (METHOD.md sections 1 and 2) as the model's attention
 * implementation. Each local chunk of queries keeps its own online-softmax state. Per
 * layer and sequence, forward: each of this rank's chunks goes (one message) to exactly
 * the ranks that need it; the exact diagonal blocks are computed while those are in
 * flight; then every earlier chunk, local or remote, in chunk order, is merged into the
 * query chunks after it, as that chunk is "seen from later chunks":
 *
 *   uncompressed: its K (after RoPE) and V, at the wire dtype;
 *   compressed:   RoPE_j(C_K U_K^T) and C_V U_V^T from (theta, C) of METHOD.md section 2,
 *                 also for a rank's own earlier chunk, so the model depends on the chunk
 *                 length only, never on P or on which rank holds which chunk.
 *
 * Backward: every rank computes its partial gradient of each earlier chunk and returns it
 * to the owner (dK/dV, or E and tau when compressed); owners add them in rank order.
 * With one rank and many chunks (contiguous layout) this is METHOD.md section 2's model on
 * one process, with no communicator.
 *
 * Bytes per rank, layer and sequence (zig-zag), each direction: (P-1)+p messages out and
 * (P-1)+(P-1-p) in; a message is 2 m d_kv s bytes, or m (r_K + r_V) s + 8 k compressed
 * (s = 2 for bf16, 4 for fp32); comm's counters say so.
 */
typedef struct cp_options {
    bool wire_bf16;     /* K/V, C and E as bf16 on the wire (theta and tau stay fp32) */
    bool compress_last; /* compress the last block too (default: exact, as in the paper) */
    int planes;         /* rotation planes h; 0: floor(d_kv / 2) */
    bool cheap_rotation;/* h = r planes pairing U0 with a complement: O(d r^2) per rotation */
    uint64_t seed;      /* Q and Omega of every layer; the same on every rank */
    bool stiefel;       /* accumulate dL/dU0 for the Stiefel step (METHOD.md section 3, option) */
    bool regather;      /* the backward gathers remote K/V again (kv-forward bytes double) instead of
                         * keeping every layer's from the forward pass (memory of one layer) */
} cp_options;

/* Where the codec's products run on a device backend (whose memory is not host memory):
 * the products over a chunk's m rows go to the device through the ops table; theta, the
 * rotation and its gradient (sizes d, r and k) stay on the host. One set per side, K and V. */
typedef struct cp_codec_device {
    float *u, *comp, *e, *gu, *vec, *tmp; /* op memory: (d, r) U; (m, r) C or dC; (m, r) E; (d, r); (d); (k, d) */
    float *w, *b, *zbar, *he, *hgu;       /* pinned host: what the host downloads, so that the downloads of
                                           * both sides queue behind one wait: psi (k, d), (k); zbar (d);
                                           * E (m, r); dL/dU (d, r) */
    float *dw, *db;                       /* plain host: psi's gradient, uploaded */
} cp_codec_device;

/* The requests of one sequence's K/V exchange in flight. */
typedef struct gather_state {
    comm_request *recv[2 * COMM_MAX_RANKS]; /* by chunk; NULL when local or not needed */
    comm_request *send[CP_MAX_LOCAL * COMM_MAX_RANKS];
    int nsend;
} gather_state;

typedef struct cp_attention {
    comm *comm;                 /* NULL with one rank */
    cp_layout layout;
    int rank, nloc, layers;
    int mine[CP_MAX_LOCAL];     /* this rank's chunks, ascending */
    cp_options opt;
    bool compress;              /* compression on now (after the warm start, before unplugging) */
    kv_codec (*codec)[2];       /* (layers) K and V; built when compression goes on */
    size_t slot_bytes;          /* room for one message, the larger form */
    uint8_t *recv_msg;          /* (layers, batch, chunks, slot) messages from owners, kept for backward;
                                 * (chunks, slot) when the backward gathers them again */
    gather_state gather;
    uint8_t *send_msg;          /* (nloc, slot) this rank's chunks, packed */
    uint8_t *grad_out;          /* (chunks, slot) partial gradients going to owners */
    uint8_t *grad_in;           /* (nloc, P, slot) partial gradients arriving */
    size_t own_floats;          /* 2k + m (r_K + r_V) */
    float *own;                 /* (layers, batch, nloc, own_floats) theta_K, theta_V, C_K, C_V */
    float *acc;                 /* (nloc, own_floats) dtheta and dC summed at the owner */
    float *ucache;              /* (layers, batch, chunks, d_kv (r_K + r_V)) U_theta of every chunk seen */
    float *zcache;              /* (layers, batch, nloc, 2 d_kv) zbar of K and V of own chunks */
    float *du0;                 /* (layers, d_kv (r_K + r_V)) this rank's part of dL/dU0, K then V */
    float *rot;                 /* (d_kv, max r) scratch */
    float *part;                /* (own_floats, or 2 m d_kv) one unpacked message */
    float *gpart;               /* the same size: one partial gradient before packing */
    const ops *ops;             /* the model's backend: the views below are its memory */
    float *view_k, *view_v;     /* (m, d_kv) a chunk as seen from later chunks (op memory) */
    float *gview_k, *gview_v;   /* (m, d_kv) its gradient (op memory) */
    float *gdev;                /* (2 m d_kv) a received partial dK/dV on its way to dK/dV (op memory) */
    float *stage;               /* (nloc, 2 m d_kv) own K/V copied out to send (host staging) */
    float *gstage;              /* (2 m d_kv) a partial dK/dV copied out to send (host staging) */
    cp_codec_device dev[2];     /* compression on a device backend (all NULL otherwise) */
    float *ones;                /* (m) ones in op memory: column means and row broadcasts as products */
    int32_t *view_pos;          /* (m) its positions */
    bool exchange;              /* false: skip every send and receive (compute-only timing) */
    double codec_s;             /* seconds in compression maths so far (compress, decompress, E, tau, owner sums) */
    char error[512];
} cp_attention;

/* Sizes the buffers for m (its seq must be local chunks x chunk) and installs itself as
 * m's attention; sets m's positions to this rank's chunks. c may be NULL for one rank.
 * opt NULL: fp32 wire, defaults. Compression starts off. */
int cp_attention_init(cp_attention *cp, comm *c, const cp_layout *layout, const cp_options *opt, model *m,
                      char *err, size_t errlen);
void cp_attention_free(cp_attention *cp);

/* Compression on (rebuilding Q, Omega and the rotations from the model's current bases
 * U0) or off. The model must have psi_k > 0 to turn it on. */
int cp_attention_set_compression(cp_attention *cp, const model *m, bool on, char *err, size_t errlen);

/* The bases U0 changed in the model (a Stiefel step, a broadcast): refresh the codecs. */
int cp_attention_refresh_bases(cp_attention *cp, const model *m, char *err, size_t errlen);

/* This rank's part of dL/dU0 of layer l (d_kv x r_K for K, then d_kv x r_V for V), summed
 * over the backward passes since the last zeroing (opt.stiefel); all-reduce before use. */
float *cp_attention_basis_grads(const cp_attention *cp, const model *m, int layer);
void cp_attention_zero_basis_grads(cp_attention *cp, const model *m);

/* Largest |U^T U - I| over every layer's U0 and every U_theta of the last forward pass. */
double cp_attention_orthonormality_error(const cp_attention *cp, const model *m);

/* Whether layer l exchanges compressed K/V now. */
bool cp_attention_layer_compressed(const cp_attention *cp, const model *m, int layer);

/* Payload bytes of one chunk's message in layer l (forward and backward alike). */
size_t cp_attention_message_bytes(const cp_attention *cp, const model *m, int layer);

/* FNV-1a of the state every rank must hold bit for bit: the bases U0, Q, Omega, r, k, h,
 * the positions and the RoPE tables. */
uint64_t cp_attention_shared_hash(const cp_attention *cp, const model *m);

/* The exchange of one training step (forward and backward, every layer and sequence) with
 * no compute: what bench comm times to find how much of it the step hides. */
int cp_attention_exchange_only(cp_attention *cp, model *m, char *err, size_t errlen);

#endif
