#ifndef WANCP_SIM_STEP_H
#define WANCP_SIM_STEP_H

#include "../../core/comm/comm.h"
#include "../../shaper/link_model.h"
#include "sim_cost.h"

#include <stdbool.h>

/*
 * The event model of context-parallel training steps (SIMULATION.md, "Step model"): every
 * rank runs the program the trainer runs, in the same order (cp_attention.c), against the
 * link model of shaper/:
 *
 *   step start: rank 0 broadcasts "go on" (control)
 *   forward, per layer: norm, QKV, RoPE; per sequence: each own chunk (encoded first when
 *     compressed) posted to the ranks that need it; the two diagonal blocks at once; every
 *     earlier chunk in chunk order, waited for when remote, decompressed, merged into the
 *     later local chunks; sends waited for; output projection and MLP
 *   LM head and loss, forward and backward
 *   backward, per layer: MLP and projection gradients; per sequence: each earlier chunk's
 *     blocks, its partial gradient (E and tau when compressed) posted to its owner; the
 *     diagonal blocks; the partial gradients of own chunks waited for, summed (the owner's
 *     codec sums); QKV backward; Mode S with sync_overlap: the layer's gradients all-reduced
 *     (ring, progressed by the communication thread) while earlier layers run
 *   Mode S: a ring all-reduce of every gradient (unless overlapped); AdamW; Mode A every c
 *   steps: a ring all-reduce of the weights
 *
 * Compute takes sim_cost's seconds on the hardware profile, plus the hardware's byte cost
 * for every K/V byte a rank packs and sends or receives and unpacks; a rank blocked on a message
 * counts as exposed communication of its class. Step time, compute and exposure are rank
 * 0's, measured as the trainer measures them (from after the broadcast to after the sync).
 */
typedef struct sim_setup {
    sim_shape shape;
    sim_hardware hw;
    link_model_config link; /* nodes = ranks */
    bool compress, compress_last;
    int warm_steps;    /* steps before compression goes on */
    double wire_bytes; /* K/V element on the wire: 2 (bf16) or 4 */
    char sync;         /* 'S', 'A' or 'N' (none) */
    int sync_every;    /* Mode A's c */
    bool sync_overlap; /* Mode S: bucketed per layer, overlapping the rest of the backward */
    bool allgather;    /* every chunk to every other rank and every partial gradient back
                              * (SIMULATION.md's arithmetic) instead of only where needed */
    bool no_overlap;   /* every remote chunk waited for before any attention of its layer,
                              * every partial gradient sent after the layer's blocks (the closed
                              * form's assumption) */
    double time_scale; /* reported times x this: 1 / D for a dilated run on this host */
} sim_setup;

typedef struct sim_step_stats {
    double step_s, compute_s;
    double exposed_s[COMM_NCLASSES];
    double bytes[COMM_NCLASSES]; /* payload rank 0 sends in the step */
} sim_step_stats;

typedef struct sim_result {
    sim_step_stats steady;    /* a steady step without Mode A's averaging (compressed when on) */
    sim_step_stats warm;      /* a steady step of the uncompressed warm-up (= steady without compression) */
    sim_step_stats sync_step; /* a steady step with Mode A's averaging (= steady otherwise) */
    int steps;                /* the projected run's steps */
    double *step_s;           /* (steps) time of each step */
    double total_s, mean_s;   /* over every step */
    double p50_s, p95_s;      /* over the steady steps, as a run's summary takes them: from
                              * the second after compression goes on, else from the second */
    bool stepwise;            /* links with jitter or a rate over time: every step simulated */
    int simulated_steps;      /* steps the event model ran */
} sim_result;

/* Runs the model for a run of steps steps (>= 1). Deterministic links: each kind of step
 * (warm-up, compressed, with averaging) is simulated three times in a row and the third
 * repeats exactly; otherwise all steps are simulated in order. */
int sim_run(const sim_setup *s, int steps, sim_result *out, char *err, size_t errlen);
void sim_result_free(sim_result *r);

/* What rank computes in one step (compressed: after the warm-up), by class, and the K/V
 * payload bytes it sends and receives (*moved): what `wancp bench calibrate` divides
 * measured seconds by. */
int sim_step_work(const sim_setup *s, bool compressed, int rank, sim_work *out, double *moved, char *err,
                  size_t errlen);

/* SIMULATION.md's closed form for one step of rank 0 with overlap off (sim_setup.no_overlap):
 * per layer, forward and backward, compute + the slowest link's bytes / its payload rate with traffic both ways
 * + its delay; the head, the optimizer, the step's broadcast (one delay), and the weight
 * sync by the ring formula (Mode S every step, Mode A / c). compressed: a step after the
 * warm-up. */
double sim_closed_form(const sim_setup *s, bool compressed, char *err, size_t errlen);

#endif
