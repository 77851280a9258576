#include "trainer.h"

#include "../data/loader.h"
#include "../status.h"
#include "checkpoint.h"

#include <math.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Mean loss over the first val_tokens tokens of the validation shard (whole batches). */
static double evaluate(model *m, loader *val, long batches)
{
    double total = 0.0;
    val->pos = 0;
    for (long b = 0; b < batches; b++) {
        loader_next(val);
        total += model_step(m, val->inputs, val->targets, false);
    }
    return total / (double)batches;
}

static int save(const trainer_config *c, const model *m, const loader *train, const rng *r, int step, char *err,
                size_t errlen)
{
    if (c->checkpoint_path == NULL)
        return WANCP_OK;
    train_state ts = {.step = (uint64_t)step, .data_pos = train->pos, .rng = *r};
    return checkpoint_save(c->checkpoint_path, m, &ts, err, errlen);
}

int trainer_run(const trainer_config *c, const ops *o, trainer_report_fn *report, void *report_ctx,
                volatile sig_atomic_t *stop, int *stopped_at, char *err, size_t errlen)
{
    model m = {0};
    loader train = {0}, val = {0};
    rng r;
    rng_seed(&r, c->seed);
    int rc = model_init(&m, &c->model, o, c->batch, c->seq, c->seed, err, errlen);
    if (rc == WANCP_OK)
        rc = loader_open(&train, c->train_path, c->model.vocab, c->batch, c->seq, err, errlen);
    if (rc == WANCP_OK)
        rc = loader_open(&val, c->val_path, c->model.vocab, c->batch, c->seq, err, errlen);
    int step = 0;
    if (rc == WANCP_OK && c->resume_path != NULL) {
        train_state ts;
        rc = checkpoint_load(c->resume_path, &m, &ts, err, errlen);
        if (rc == WANCP_OK && ts.data_pos > train.tokens.count)
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT,
                            "%s: field data_pos is %llu, beyond the %zu tokens of %s (another shard?)",
                            c->resume_path, (unsigned long long)ts.data_pos, train.tokens.count, c->train_path);
        if (rc == WANCP_OK) {
            step = (int)ts.step;
            train.pos = ts.data_pos;
            r = ts.rng;
        }
    }
    if (rc != WANCP_OK)
        goto done;

    const long per_batch = (long)c->batch * c->seq;
    long val_batches = c->val_tokens / per_batch;
    long val_available = (long)((val.tokens.count - 1) / (size_t)per_batch);
    if (val_batches < 1)
        val_batches = 1;
    if (val_batches > val_available)
        val_batches = val_available;

    const double start = now_s();
    const int total = c->optim.total_steps;
    step_report rep = {.step = step, .total_steps = total, .train_loss = NAN, .grad_norm = NAN,
                       .lr = optim_lr(&c->optim, step), .tokens = (long long)step * per_batch};
    rep.val_loss = evaluate(&m, &val, val_batches);
    rep.wall_s = now_s() - start;
    report(report_ctx, &rep);

    while (step < total) {
        if ((stop != NULL && *stop) || (c->stop_after > 0 && step >= c->stop_after))
            break;
        double t0 = now_s();
        loader_next(&train);
        model_zero_grads(&m);
        double loss = model_step(&m, train.inputs, train.targets, true);
        double norm = optim_step(&m, &c->optim, step);
        step++;
        rep = (step_report){.step = step, .total_steps = total, .train_loss = loss, .val_loss = NAN,
                            .grad_norm = norm, .lr = optim_lr(&c->optim, step - 1),
                            .tokens = (long long)step * per_batch, .step_ms = (now_s() - t0) * 1e3};
        if (!isfinite(loss)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "training diverged at step %d (loss %g); lower --lr",
                            step, loss);
            goto done;
        }
        if (step == total || (c->eval_every > 0 && step % c->eval_every == 0))
            rep.val_loss = evaluate(&m, &val, val_batches);
        rep.wall_s = now_s() - start;
        report(report_ctx, &rep);
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step < total &&
            (rc = save(c, &m, &train, &r, step, err, errlen)) != WANCP_OK)
            goto done;
    }
    rc = save(c, &m, &train, &r, step, err, errlen);
    if (stopped_at != NULL)
        *stopped_at = step;
done:
    loader_free(&train);
    loader_free(&val);
    model_free(&m);
    return rc;
}
