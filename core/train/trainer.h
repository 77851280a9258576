#ifndef WANCP_TRAINER_H
#define WANCP_TRAINER_H

#include "../model/model.h"
#include "optimizer.h"

#include <signal.h>
#include <stdint.h>

/* One training run on one rank: data, model, optimizer, evaluation and checkpoints. */
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
} step_report;

typedef void trainer_report_fn(void *ctx, const step_report *r);

/* Runs the whole training. stop (may be NULL) is polled between steps: when set, the run
 * writes its checkpoint and returns early with *stopped_at set to the step reached.
 * Errors (bad shards, checkpoint mismatch) name the file. */
int trainer_run(const trainer_config *c, const ops *o, trainer_report_fn *report, void *report_ctx,
                volatile sig_atomic_t *stop, int *stopped_at, char *err, size_t errlen);

#endif
