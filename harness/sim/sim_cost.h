#ifndef WANCP_SIM_COST_H
#define WANCP_SIM_COST_H

#include <stdbool.h>
#include <stddef.h>

/*
 * What the pieces of one rank's CP training step cost: FLOPs per op class and bytes moved
 * by memory-bound ops, and their seconds on a hardware profile. The step simulator charges
 * these; `wancp bench calibrate` divides the same counts by measured seconds to find this
 * host's efficiencies, so the counts only need to be consistent, not exact.
 *
 * FLOPs follow the model-FLOP convention of bench step (SIMULATION.md's arithmetic):
 * matmuls 2 x params x tokens forward and twice that backward; attention 4 m^2 d per full
 * chunk-by-chunk block forward, half for a diagonal (causal) block, backward twice the
 * forward. Compression maths (METHOD.md section 2) with r = r_K + r_V over a layer's bases,
 * each w = d_kv / bases wide with h planes: compress 2 m d_kv r (the codec's products run
 * over the block-diagonal U) + the rotations 4 w h r; decompress 2 m d_kv r; the consumer's E
 * and tau 4 m d_kv r; the owner's sums 4 m d_kv r + 4 w h r.
 */
enum sim_op_class { SIM_MATMUL, SIM_ATTENTION, SIM_CODEC, SIM_MEMORY, SIM_NCLASSES };

/* Core-seconds per payload byte crossing shaped links, measured at link rates bps
 * (ascending; one price with bps 0 stands for every rate), since it falls as rates rise. */
#define SIM_MAX_LINK_COSTS 8
typedef struct sim_link_prices {
    double cost_s[SIM_MAX_LINK_COSTS];
    double bps[SIM_MAX_LINK_COSTS];
    int n; /* 0: not priced */
} sim_link_prices;

/* A hardware profile: peak and the fraction of it each op class reaches. */
typedef struct sim_hardware {
    char name[64];
    char source[1100];     /* the file it came from */
    double peak_flops;     /* FLOP/s at the profile's precision */
    double efficiency[3];  /* SIM_MATMUL, SIM_ATTENTION, SIM_CODEC: fraction of peak */
    double memory_bytes_s; /* what memory-bound ops reach, bytes/s */
    double op_overhead_s;  /* per op: a kernel launch, a call */
    double act_bytes;      /* bytes per activation element (4 fp32, 2 bf16) */
    double param_bytes;    /* bytes per parameter in the weight sync */
    double byte_cost_s;    /* a rank's own time per payload byte it sends or receives (packing,
                             * copies, system calls); 0 where a NIC or NCCL moves the bytes */
    bool host;             /* this host itself: a scenario's dilation applies to it */
    double cores;          /* the cores the ranks share with the shaped links' packet work
                             * (processor sharing in the step model); 0: not shared (devices) */
    /* the shaped links' packet work beyond the ranks' own byte cost: links shaped by rate
     * alone (the kernel's TCP, htb, veths, bridge and capture), and links that also delay,
     * jitter or lose (the same with the delay emulator, a user-space relay per rank, which
     * competes with the ranks for the cores); a host without delay prices uses the first */
    sim_link_prices link_cost;
    sim_link_prices delay_link_cost;
} sim_hardware;

/* A rank's BLAS threads as `wancp run` gives them on a host of cores (cores / P, at least
 * one), and the cores each of P ranks had in a calibration, all computing at once. */
double sim_rank_threads(double cores, int ranks);
double sim_calibration_cores(double cores, int ranks);

/* A price at a link rate of bps: the measured price of the nearest rates, log-linear
 * between them, the end's beyond them; 0 without prices. */
double sim_link_cost_at(const sim_link_prices *p, double bps);

/* The price of hw's links shaped by profile-like parameters: rate bps, and delayed when the
 * links delay, jitter or lose (their own prices where hw has them). */
double sim_link_cost_of(const sim_hardware *hw, double bps, bool delayed);

/* The shape of one rank's work. */
typedef struct sim_shape {
    int ranks, layers, dim, heads, kv_heads, ffn, vocab, batch;
    int chunk;                 /* m = context / (2 P) tokens */
    int rank_k, rank_v, psi_k; /* totals over a layer's bases */
    int bases;                 /* bases per layer and side (model_config's kv_bases; 0 reads as 1) */
    int planes;                /* per basis */
    bool tied;
} sim_shape;

/* The cost of one piece of work, by class (FLOPs, or bytes for SIM_MEMORY) and op count. */
typedef struct sim_work {
    double amount[SIM_NCLASSES];
    double ops;
} sim_work;

/* The shape of model c over ranks ranks (2 chunks each) and batch sequences; planes: each
 * basis's rotation's (0: its width / 2). */
struct model_config;
sim_shape sim_shape_of(const struct model_config *c, int ranks, int batch, int planes);

static inline int sim_kv_dim(const sim_shape *s) { return s->kv_heads * (s->dim / s->heads); }
static inline int sim_basis_dim(const sim_shape *s) { return sim_kv_dim(s) / (s->bases > 0 ? s->bases : 1); }

/* Seconds of w on hw. */
double sim_work_seconds(const sim_work *w, const sim_hardware *hw);

void sim_work_add(sim_work *into, const sim_work *w, double times);

/* The pieces of a layer, per rank: projections, MLP and head over its batch x 2 x chunk
 * tokens; blocks, views and the codec per sequence. */
sim_work sim_cost_pre_attention(const sim_shape *s, const sim_hardware *hw, bool backward);  /* norm, QKV, RoPE */
sim_work sim_cost_post_attention(const sim_shape *s, const sim_hardware *hw, bool backward); /* O, norm, MLP */
sim_work sim_cost_block(const sim_shape *s, bool diagonal, bool backward); /* one chunk x chunk block */
sim_work sim_cost_view(const sim_shape *s, const sim_hardware *hw, bool compressed, bool rotate); /* a chunk as seen */
sim_work sim_cost_encode(const sim_shape *s);                                      /* compress one own chunk */
sim_work sim_cost_consumer_grad(const sim_shape *s);                               /* E and tau of one chunk */
sim_work sim_cost_owner_finish(const sim_shape *s);                                /* the owner's sums of one chunk */
sim_work sim_cost_head(const sim_shape *s, const sim_hardware *hw, bool backward); /* final norm, LM head, loss */
sim_work sim_cost_optimizer(const sim_shape *s);

/* Payload bytes of one chunk's K/V message (METHOD.md section 5), wire_bytes per element. */
double sim_message_bytes(const sim_shape *s, bool compressed, double wire_bytes);

/* Trainable parameters (what a weight sync moves). */
double sim_trainable_params(const sim_shape *s);

#endif
