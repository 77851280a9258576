#include "optimizer.h"

#include <math.h>

optim_config optim_config_default(void)
{
    return (optim_config){.lr = 3e-4f,
                          .lr_final_frac = 0.1f,
                          .warmup_steps = 0,
                          .total_steps = 1,
                          .beta1 = 0.9f,
                          .beta2 = 0.95f,
                          .eps = 1e-8f,
                          .weight_decay = 0.01f,
                          .grad_clip = 1.0f};
}

float optim_lr(const optim_config *c, int step)
{
    if (step < c->warmup_steps)
        return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    int decay_steps = c->total_steps - c->warmup_steps;
    if (decay_steps <= 1)
        return c->lr;
    float frac = (float)(step - c->warmup_steps) / (float)(decay_steps - 1);
    if (frac > 1.0f)
        frac = 1.0f;
    return c->lr * (1.0f - (1.0f - c->lr_final_frac) * frac);
}

double optim_step(model *m, const optim_config *c, int step)
{
    const ops *o = m->ops;
    double norm = sqrt(o->sumsq(m->grads, m->table.trainable));
    float grad_scale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip)
        grad_scale = (float)(c->grad_clip / norm);
    float lr = optim_lr(c, step);
    for (int i = 0; i < m->table.count; i++) {
        const tensor_info *t = &m->table.tensors[i];
        if (t->frozen)
            continue;
        o->adamw(m->params + t->offset, m->grads + t->offset, m->adam_m + t->offset, m->adam_v + t->offset, t->count,
                 lr, c->beta1, c->beta2, c->eps, t->decay ? c->weight_decay : 0.0f, grad_scale, step + 1);
    }
    return norm;
}
