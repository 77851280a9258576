#ifndef WANCP_OPTIMIZER_H
#define WANCP_OPTIMIZER_H

#include "../model/model.h"

/* AdamW with decoupled weight decay (matrices only), linear warm-up then linear decay, and
 * clipping by the global gradient norm. */
typedef struct optim_config {
    float lr;             /* peak learning rate */
    float lr_final_frac;  /* the rate at the last step, as a fraction of lr */
    int warmup_steps;
    int total_steps;
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip;      /* max global norm; 0 disables */
} optim_config;

optim_config optim_config_default(void);

/* Learning rate at 0-based step. */
float optim_lr(const optim_config *c, int step);

/* Clips and applies one AdamW step (0-based step) to every tensor of m from m->grads.
 * Returns the global gradient norm before clipping. */
double optim_step(model *m, const optim_config *c, int step);

#endif
