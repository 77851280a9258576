#ifndef WANCP_TRAINER_H
#define WANCP_TRAINER_H

#include "../comm/comm.h"
#include "../comm/comm_nccl.h"
#include "../cp/cp_attention.h"
#include "../model/model.h"
#include "optimizer.h"

#include <signal.h>
#include <stdint.h>

/* How ranks keep their weights together (METHOD.md section 4). */
enum sync_mode {
    SYNC_EVERY_STEP, /* Mode S: all-reduce every gradient every step; exact */
    SYNC_AVERAGE,    /* Mode A: local steps, weights averaged every sync_every steps */
};

/* One training run on this rank: data, model, optimizer, evaluation and checkpoints; with a
 * communicator of P > 1 ranks, context-parallel over them (each rank holds 2 chunks of
 * every sequence; every rank reads the same batches). */
typedef struct trainer_config {
    model_config model;
    optim_config optim;     /* optim.total_steps is the run's length */
    int batch, seq;
    uint64_t seed;
    const char *train_path, *val_path;
    int eval_every;         /* evaluate at step 0, every eval_every steps and at the end */
    long val_tokens;        /* held-out tokens per evaluation, read from the start of val */
    const char *checkpoint_path; /* NULL: none */
    int checkpoint_every;   /* also written at the end and on a stop request */
    const char *resume_path;/* NULL: start fresh */
    int stop_after;         /* > 0: stop (with a checkpoint) once this many steps are done */
    comm *comm;             /* NULL or 1 rank: no context parallelism */
    comm_nccl *nccl;        /* non-NULL: the weight-sync class over NCCL on op memory (comm_nccl.h),
                             * also with one rank; NULL: over comm, staged */
    int cp_layout;          /* CP_ZIGZAG or CP_CONTIGUOUS */
    int sync_mode;          /* enum sync_mode */
    int sync_every;         /* Mode A's interval c */
    int chunks;             /* one rank: METHOD.md section 2's model over this many chunks (0: none) */
    cp_options cp;          /* wire dtype, last block compressed, planes, seed of Q and Omega */
    /* Compression, when model.psi_k > 0 (METHOD.md section 3): */
    int warm_steps;         /* T_w: steps trained uncompressed before the warm start (0: none) */
    int cov_steps;          /* the last of them accumulate the covariance of Z */
    double unplug_at;       /* > 0: exchange uncompressed again from this fraction of the steps on */
    bool check_shared;      /* hash U0, Q, Omega on every rank every step; a difference fails the run */
    float stiefel_lr;       /* with cp.stiefel: step size of the Riemannian step on U0 (scheduled like lr) */
    int stiefel_every;      /* rank 0 re-broadcasts U0 every this many steps, removing drift */
} trainer_config;

/* What the trainer reports after each step (and once before the first, with step = start). */
typedef struct step_report {
    int step;               /* optimizer steps done */
    int total_steps;
    double train_loss;      /* NAN for the report before the first step */
    double val_loss;        /* NAN when not evaluated at this step */
    double grad_norm;       /* NAN before the first step */
    float lr;
    long long tokens;       /* training tokens seen, resumed runs included */
    double step_ms;         /* forward + backward + optimizer of this step */
    double wall_s;          /* since the trainer started */
    uint64_t tx_bytes[COMM_NCLASSES]; /* payload bytes this rank sent so far, per class */
    double wait_ms[COMM_NCLASSES]; /* of step_ms, time blocked on communication, per class */
    double unix_s;          /* real time of the report (lines a run up with packet captures) */
    bool compressed;        /* K/V went compressed in this step */
    double basis_error;     /* final report with compression: largest |U^T U - I| over every U0 and
                             * U_theta of the last step; NAN otherwise */
    uint64_t shared_hash;   /* final report with compression: the state every rank holds (checked equal) */
} step_report;

typedef void trainer_report_fn(void *ctx, const step_report *r);

/* Runs the whole training. With compression, steps before warm_steps run uncompressed;
 * at warm_steps the covariance of Z from the last cov_steps of them (all-reduced) gives
 * rank 0 the bases U0, broadcast to all, heads psi restart at 0 and compression goes on.
 * stop (may be NULL) is polled between steps (rank 0's decides for all): when set, the run
 * writes its checkpoint and returns early with *stopped_at set to the step reached. report
 * (may be NULL) is called on every rank, before the first step and after each. Errors name
 * the file, or the rank for communication failures. Under CP, checkpoints are PATH.rankR. */
int trainer_run(const trainer_config *c, const ops *o, trainer_report_fn *report, void *report_ctx,
                volatile sig_atomic_t *stop, int *stopped_at, char *err, size_t errlen);

#endif
