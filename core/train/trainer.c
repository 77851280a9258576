#include "trainer.h"

#include "../cp/cp_attention.h"
#include "../data/loader.h"
#include "../base/status.h"
#include "../subspace/warm_start.h"
#include "checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Everything one run holds: the model on this rank, data, and the context-parallel parts. */
typedef struct run {
    const trainer_config *c;
    model m;
    loader train, val;
    cp_attention cp;
    bool cp_on;
    int world, rank;
    uint16_t *local_in, *local_tg; /* (batch, 2 chunk) this rank's tokens under CP */
    float *cov;                    /* (layers, K and V, d_kv, d_kv) covariance of Z during warm-up */
    float *stage;                  /* (parameters) host staging of what crosses the network, for a
                                    * backend whose memory is not host memory; NULL otherwise */
    double nccl_wait_s;            /* seconds in NCCL's weight-sync collectives so far */
    int cov_count;                 /* steps accumulated into it */
    char *err;
    size_t errlen;
} run;

/* Loss of one batch (the full sequences from the loader), on every rank; with backward,
 * gradients too. Under CP each rank takes its chunks and the loss is summed over ranks. */
static int batch_loss(run *r, const uint16_t *in, const uint16_t *tg, bool backward, double *loss)
{
    const uint16_t *x = in, *y = tg;
    if (r->cp_on) {
        cp_select_tokens(&r->cp.layout, r->rank, in, r->c->batch, r->local_in);
        cp_select_tokens(&r->cp.layout, r->rank, tg, r->c->batch, r->local_tg);
        x = r->local_in;
        y = r->local_tg;
    }
    double l = model_step(&r->m, x, y, backward);
    if (isnan(l) && r->cp_on)
        return wancp_fail(r->err, r->errlen, WANCP_ERR_SYSTEM, "%s", r->cp.error);
    if (r->world > 1) {
        float part = (float)l;
        int rc = comm_allreduce_sum(r->c->comm, COMM_CONTROL, &part, 1, r->err, r->errlen);
        if (rc != WANCP_OK)
            return rc;
        /* Mode S: partial losses over the global token count add up to the mean; Mode A:
         * each rank's loss is its own mean, so average them. */
        l = r->c->sync_mode == SYNC_EVERY_STEP ? part : part / r->world;
    }
    *loss = l;
    return WANCP_OK;
}

/* Mean loss over the first val_tokens tokens of the validation shard (whole batches). */
static int evaluate(run *r, long batches, double *out)
{
    double total = 0.0;
    r->val.pos = 0;
    for (long b = 0; b < batches; b++) {
        loader_next(&r->val);
        double l;
        int rc = batch_loss(r, r->val.inputs, r->val.targets, false, &l);
        if (rc != WANCP_OK)
            return rc;
        total += l;
    }
    *out = total / (double)batches;
    return WANCP_OK;
}

/* Sums count floats of op memory over ranks (root < 0), or sends root's to every rank:
 * directly where op memory is host memory, else through the pinned staging buffer. */
static int exchange_op_memory(run *r, float *x, size_t count, int root)
{
    const ops *o = r->m.ops;
    if (r->c->nccl != NULL) { /* on the device, in stream order: no staging */
        const double t0 = now_s();
        int rc = root < 0 ? comm_nccl_allreduce_sum(r->c->nccl, x, count, r->err, r->errlen)
                          : comm_nccl_broadcast(r->c->nccl, x, count, root, r->err, r->errlen);
        r->nccl_wait_s += now_s() - t0;
        return rc;
    }
    float *buf = o->host_memory ? x : r->stage;
    if (!o->host_memory)
        o->download(buf, x, count);
    o->sync(); /* the host sends what the device wrote */
    int rc = root < 0 ? comm_allreduce_sum(r->c->comm, COMM_WEIGHT_SYNC, buf, count, r->err, r->errlen)
                      : comm_broadcast(r->c->comm, COMM_WEIGHT_SYNC, buf, count * sizeof *buf, root, r->err, r->errlen);
    if (rc == WANCP_OK && !o->host_memory) {
        o->upload(x, buf, count);
        o->sync(); /* the staging buffer is reused by the next exchange */
    }
    return rc;
}

/* Mode S: gradients summed over ranks every step. Mode A: nothing here; weights are
 * averaged every sync_every steps after the optimizer. */
static int sync_gradients(run *r)
{
    if ((r->world == 1 && r->c->nccl == NULL) || r->c->sync_mode != SYNC_EVERY_STEP)
        return WANCP_OK; /* with NCCL one rank still runs its (identity) all-reduce */
    return exchange_op_memory(r, r->m.grads, r->m.table.trainable, -1);
}

static int sync_weights(run *r, int step)
{
    if ((r->world == 1 && r->c->nccl == NULL) || r->c->sync_mode != SYNC_AVERAGE || step % r->c->sync_every != 0)
        return WANCP_OK;
    /* Only the trained prefix: the bases U0 are identical on every rank and never averaged. */
    int rc = exchange_op_memory(r, r->m.params, r->m.table.trainable, -1);
    if (rc == WANCP_OK)
        r->m.ops->scale(r->m.params, r->m.table.trainable, 1.0f / (float)r->world);
    return rc;
}

/* Seconds blocked on communication so far, per class (zero for one process). */
static void blocked(const run *r, double out[COMM_NCLASSES])
{
    for (int cls = 0; cls < COMM_NCLASSES; cls++)
        out[cls] = r->world > 1 ? comm_blocked_seconds(r->c->comm, cls) : 0.0;
    out[COMM_WEIGHT_SYNC] += r->nccl_wait_s;
}

static double unix_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void counts(run *r, step_report *rep)
{
    rep->unix_s = unix_now();
    for (int cls = 0; cls < COMM_NCLASSES && r->world > 1; cls++) {
        rep->tx_bytes[cls] = 0;
        for (int p = 0; p < r->world; p++)
            rep->tx_bytes[cls] += comm_counts_of(r->c->comm, p, cls).tx_bytes;
    }
    if (r->world > 1)
        rep->tx_bytes[COMM_WEIGHT_SYNC] += comm_nccl_tx_bytes(r->c->nccl);
}

/* A checkpoint per rank under CP (Mode A leaves the ranks' weights apart). */
static void checkpoint_path(const run *r, char *buf, size_t len)
{
    if (r->world > 1)
        snprintf(buf, len, "%s.rank%d", r->c->checkpoint_path, r->rank);
    else
        snprintf(buf, len, "%s", r->c->checkpoint_path);
}

static int save(run *r, const rng *g, int step)
{
    if (r->c->checkpoint_path == NULL)
        return WANCP_OK;
    char path[4096];
    checkpoint_path(r, path, sizeof path);
    train_state ts = {.step = (uint64_t)step, .data_pos = r->train.pos, .rng = *g};
    r->m.ops->sync(); /* the file gets what the optimizer wrote */
    return checkpoint_save(path, &r->m, &ts, r->err, r->errlen);
}

static int setup(run *r, const ops *o, int *step, rng *g)
{
    const trainer_config *c = r->c;
    r->world = c->comm != NULL ? comm_size(c->comm) : 1;
    r->rank = c->comm != NULL ? comm_rank(c->comm) : 0;
    r->cp_on = r->world > 1 || c->chunks > 0;
    int local_seq = c->seq;
    cp_layout layout = {.kind = c->cp_layout, .ranks = r->world, .chunk = c->seq / (2 * r->world)};
    if (r->world > 1) {
        if (c->seq % (2 * r->world) != 0)
            return wancp_fail(r->err, r->errlen, WANCP_ERR_INPUT,
                              "sequence of %d tokens does not split into 2 x %d chunks", c->seq, r->world);
        local_seq = c->seq / r->world;
    } else if (c->chunks > 0) {
        if (c->seq % c->chunks != 0 || c->chunks > CP_MAX_LOCAL)
            return wancp_fail(r->err, r->errlen, WANCP_ERR_INPUT,
                              "sequence of %d tokens does not split into %d chunks (at most %d)", c->seq, c->chunks,
                              CP_MAX_LOCAL);
        layout = (cp_layout){.kind = CP_CONTIGUOUS, .ranks = 1, .chunk = c->seq / c->chunks, .per_rank = c->chunks};
    }
    if (c->model.psi_k > 0 && !r->cp_on)
        return wancp_fail(r->err, r->errlen, WANCP_ERR_INPUT,
                          "compression needs chunks: run over ranks (--ranks P) or give --chunks N");
    int rc = model_init(&r->m, &c->model, o, c->batch, local_seq, c->seed, r->err, r->errlen);
    if (rc == WANCP_OK && r->world > 1 && !o->host_memory &&
        (r->stage = o->host_alloc(r->m.table.total * sizeof(float))) == NULL)
        rc = wancp_fail(r->err, r->errlen, WANCP_ERR_NOMEM, "out of pinned host memory for staging the weight sync");
    if (rc == WANCP_OK && c->model.psi_k > 0) {
        const size_t kvd = (size_t)model_kv_dim(&c->model);
        r->cov = calloc((size_t)c->model.n_layers * 2 * kvd * kvd, sizeof *r->cov);
        if (r->cov == NULL)
            rc = wancp_fail(r->err, r->errlen, WANCP_ERR_NOMEM, "out of memory for the warm start's covariance");
    }
    if (rc == WANCP_OK && r->cp_on) {
        rc = cp_attention_init(&r->cp, c->comm, &layout, &c->cp, &r->m, r->err, r->errlen);
        r->m.loss_tokens = c->sync_mode == SYNC_EVERY_STEP ? (long)c->batch * c->seq : (long)c->batch * local_seq;
        r->local_in = malloc((size_t)c->batch * local_seq * sizeof *r->local_in);
        r->local_tg = malloc((size_t)c->batch * local_seq * sizeof *r->local_tg);
        if (rc == WANCP_OK && (r->local_in == NULL || r->local_tg == NULL))
            rc = wancp_fail(r->err, r->errlen, WANCP_ERR_NOMEM, "out of memory for the local tokens");
    }
    if (rc == WANCP_OK)
        rc = loader_open(&r->train, c->train_path, c->model.vocab, c->batch, c->seq, r->err, r->errlen);
    if (rc == WANCP_OK)
        loader_start_at_seed(&r->train, c->seed); /* a resumed run reads its position back below */
    if (rc == WANCP_OK)
        rc = loader_open(&r->val, c->val_path, c->model.vocab, c->batch, c->seq, r->err, r->errlen);
    if (rc == WANCP_OK && c->resume_path != NULL) {
        char path[4096];
        if (r->world > 1)
            snprintf(path, sizeof path, "%s.rank%d", c->resume_path, r->rank);
        else
            snprintf(path, sizeof path, "%s", c->resume_path);
        train_state ts;
        rc = checkpoint_load(path, &r->m, &ts, r->err, r->errlen);
        if (rc == WANCP_OK && ts.data_pos > r->train.tokens.count)
            rc = wancp_fail(r->err, r->errlen, WANCP_ERR_INPUT,
                            "%s: field data_pos is %llu, beyond the %zu tokens of %s (another shard?)", path,
                            (unsigned long long)ts.data_pos, r->train.tokens.count, c->train_path);
        if (rc == WANCP_OK && ts.step > (uint64_t)c->optim.total_steps)
            rc = wancp_fail(r->err, r->errlen, WANCP_ERR_INPUT,
                            "%s: field step is %llu, beyond this run's %d steps (give --steps %llu or more)", path,
                            (unsigned long long)ts.step, c->optim.total_steps, (unsigned long long)ts.step);
        if (rc == WANCP_OK) {
            *step = (int)ts.step;
            r->train.pos = ts.data_pos;
            *g = ts.rng;
        }
    }
    return rc;
}

/* Adds this step's Z (K before RoPE, and V) of every layer to the covariance. */
static void accumulate_covariance(run *r)
{
    const int kvd = model_kv_dim(&r->m.cfg), n = r->m.batch * r->m.seq;
    r->m.ops->sync(); /* host maths on what the device wrote */
    for (int l = 0; l < r->m.cfg.n_layers; l++) {
        float *cov = r->cov + (size_t)l * 2 * kvd * kvd;
        covariance_accumulate(cov, r->m.acts[l].k_pre, n, kvd);
        covariance_accumulate(cov + (size_t)kvd * kvd, r->m.acts[l].v, n, kvd);
    }
    r->cov_count++;
}

/* Rank 0's bases U0 (the frozen end of the parameter table) to every rank. */
static int broadcast_bases(run *r)
{
    model *m = &r->m;
    return exchange_op_memory(r, m->params + m->table.trainable, m->table.total - m->table.trainable, 0);
}

/* METHOD.md section 3: covariance all-reduced, U0 from rank 0, psi back to 0. */
static int warm_start(run *r)
{
    model *m = &r->m;
    const int kvd = model_kv_dim(&m->cfg);
    const size_t cov_floats = (size_t)m->cfg.n_layers * 2 * kvd * kvd;
    int rc = WANCP_OK;
    m->ops->sync(); /* the host rewrites U0 and the heads psi below */
    if (r->world > 1)
        rc = comm_allreduce_sum(r->c->comm, COMM_WEIGHT_SYNC, r->cov, cov_floats, r->err, r->errlen);
    for (int l = 0; l < m->cfg.n_layers && rc == WANCP_OK && r->rank == 0; l++)
        for (int w = 0; w < 2 && rc == WANCP_OK; w++) {
            const layer_params *lp = &m->layers[l];
            rc = bases_from_covariance(r->cov + ((size_t)l * 2 + w) * kvd * kvd, kvd,
                                       w == 0 ? m->cfg.rank_k : m->cfg.rank_v, model_kv_bases(&m->cfg),
                                       model_param(m, w == 0 ? lp->u0_k : lp->u0_v), r->err, r->errlen);
        }
    if (rc == WANCP_OK && r->world > 1)
        rc = broadcast_bases(r);
    for (int l = 0; l < m->cfg.n_layers && rc == WANCP_OK; l++) {
        const int heads[4] = {m->layers[l].psi_wk, m->layers[l].psi_bk, m->layers[l].psi_wv, m->layers[l].psi_bv};
        for (int i = 0; i < 4; i++) {
            const tensor_info *t = &m->table.tensors[heads[i]];
            memset(m->params + t->offset, 0, t->count * sizeof(float));
            memset(m->adam_m + t->offset, 0, t->count * sizeof(float));
            memset(m->adam_v + t->offset, 0, t->count * sizeof(float));
        }
    }
    memset(r->cov, 0, cov_floats * sizeof *r->cov);
    return rc;
}

/* Compression on or off for the step about to run: off before warm_steps and after the
 * unplugging point; the warm start when it first goes on after a warm-up run here. */
static int schedule_compression(run *r, int step)
{
    const trainer_config *c = r->c;
    if (c->model.psi_k == 0)
        return WANCP_OK;
    const int unplug = c->unplug_at > 0 ? (int)(c->unplug_at * c->optim.total_steps) : -1;
    const bool want = step >= c->warm_steps && !(unplug >= 0 && step >= unplug);
    if (want == r->cp.compress)
        return WANCP_OK;
    int rc = WANCP_OK;
    if (want && step == c->warm_steps && r->cov_count > 0)
        rc = warm_start(r);
    return rc == WANCP_OK ? cp_attention_set_compression(&r->cp, &r->m, want, r->err, r->errlen) : rc;
}

/* The Stiefel option: dL/dU0 summed over ranks, the same step on every rank, and rank 0's
 * bases broadcast every stiefel_every steps so rounding cannot drift them apart. */
static int stiefel_update(run *r, int step)
{
    const trainer_config *c = r->c;
    model *m = &r->m;
    if (!c->cp.stiefel || !r->cp.compress)
        return WANCP_OK;
    const int kvd = model_kv_dim(&m->cfg);
    const size_t per_layer = (size_t)kvd * (m->cfg.rank_k + m->cfg.rank_v);
    int rc = WANCP_OK;
    m->ops->sync(); /* the host steps U0 below */
    if (r->world > 1)
        rc = comm_allreduce_sum(c->comm, COMM_WEIGHT_SYNC, r->cp.du0, per_layer * m->cfg.n_layers, r->err, r->errlen);
    const float lr = c->optim.lr > 0 ? c->stiefel_lr * optim_lr(&c->optim, step) / c->optim.lr : 0.0f;
    for (int l = 0; l < m->cfg.n_layers && rc == WANCP_OK; l++) {
        if (!cp_attention_layer_compressed(&r->cp, m, l))
            continue;
        const float *g = cp_attention_basis_grads(&r->cp, m, l);
        const int bases = model_kv_bases(&m->cfg);
        rc =
            stiefel_step_blocks(model_param(m, m->layers[l].u0_k), g, kvd, m->cfg.rank_k, bases, lr, r->err, r->errlen);
        if (rc == WANCP_OK)
            rc = stiefel_step_blocks(model_param(m, m->layers[l].u0_v), g + (size_t)kvd * m->cfg.rank_k, kvd,
                                     m->cfg.rank_v, bases, lr, r->err, r->errlen);
    }
    if (rc == WANCP_OK && r->world > 1 && c->stiefel_every > 0 && (step + 1) % c->stiefel_every == 0)
        rc = broadcast_bases(r);
    if (rc == WANCP_OK)
        rc = cp_attention_refresh_bases(&r->cp, m, r->err, r->errlen);
    cp_attention_zero_basis_grads(&r->cp, m);
    return rc;
}

/* Every rank must hold the same U0, Q, Omega: compare hashes (the debug check, and once at
 * the end of every compressed run). */
static int check_shared_state(run *r, int step, bool always)
{
    if ((!r->c->check_shared && !always) || r->world == 1)
        return WANCP_OK;
    uint64_t mine = cp_attention_shared_hash(&r->cp, &r->m), all[COMM_MAX_RANKS];
    int rc = comm_allgather(r->c->comm, COMM_CONTROL, &mine, all, sizeof mine, COMM_DIRECT, r->err, r->errlen);
    for (int p = 0; p < r->world && rc == WANCP_OK; p++)
        if (all[p] != all[0])
            rc =
                wancp_fail(r->err, r->errlen, WANCP_ERR_SYSTEM,
                           "step %d: rank %d's shared compression state (U0, Q, Omega) differs from rank 0's", step, p);
    return rc;
}

int trainer_run(const trainer_config *c, const ops *o, trainer_report_fn *report, void *report_ctx,
                volatile sig_atomic_t *stop, int *stopped_at, char *err, size_t errlen)
{
    run r = {.c = c, .err = err, .errlen = errlen};
    rng g;
    rng_seed(&g, c->seed);
    int step = 0;
    int rc = setup(&r, o, &step, &g);
    if (rc != WANCP_OK)
        goto done;

    const long per_batch = (long)c->batch * c->seq;
    long val_batches = c->val_tokens / per_batch;
    long val_available = (long)((r.val.tokens.count - 1) / (size_t)per_batch);
    if (val_batches < 1)
        val_batches = 1;
    if (val_batches > val_available)
        val_batches = val_available;

    if ((rc = schedule_compression(&r, step)) != WANCP_OK)
        goto done;
    const double start = now_s();
    const int total = c->optim.total_steps;
    step_report rep = {.step = step,
                       .total_steps = total,
                       .train_loss = NAN,
                       .grad_norm = NAN,
                       .compressed = r.cp_on && r.cp.compress,
                       .basis_error = NAN,
                       /* a row's lr is the one its step trained with: a resumed run's first row at
                        * step s repeats the uninterrupted run's row s (step s - 1's lr) */
                       .lr = optim_lr(&c->optim, step > 0 ? step - 1 : 0),
                       .tokens = (long long)step * per_batch};
    if ((rc = evaluate(&r, val_batches, &rep.val_loss)) != WANCP_OK)
        goto done;
    rep.wall_s = now_s() - start;
    counts(&r, &rep);
    if (report != NULL)
        report(report_ctx, &rep);

    while (step < total) {
        /* Under CP every rank must stop at the same step: rank 0's wish decides. */
        int stop_now = (stop != NULL && *stop) || (c->stop_after > 0 && step >= c->stop_after);
        if (r.world > 1) {
            uint8_t flag = (uint8_t)stop_now;
            if ((rc = comm_broadcast(c->comm, COMM_CONTROL, &flag, 1, 0, err, errlen)) != WANCP_OK)
                goto done;
            stop_now = flag;
        }
        if (stop_now)
            break;
        if ((rc = schedule_compression(&r, step)) != WANCP_OK)
            goto done;
        const bool compressed = r.cp_on && r.cp.compress;
        double t0 = now_s(), blocked0[COMM_NCLASSES], blocked1[COMM_NCLASSES];
        blocked(&r, blocked0);
        loader_next(&r.train);
        model_zero_grads(&r.m);
        double loss;
        if ((rc = batch_loss(&r, r.train.inputs, r.train.targets, true, &loss)) != WANCP_OK ||
            (rc = sync_gradients(&r)) != WANCP_OK)
            goto done;
        if (r.cov != NULL && step < c->warm_steps && step >= c->warm_steps - c->cov_steps)
            accumulate_covariance(&r);
        if ((rc = stiefel_update(&r, step)) != WANCP_OK)
            goto done;
        double norm = optim_step(&r.m, &c->optim, step);
        step++;
        if ((rc = check_shared_state(&r, step, false)) != WANCP_OK)
            goto done;
        if ((rc = sync_weights(&r, step)) != WANCP_OK)
            goto done;
        rep = (step_report){.step = step,
                            .total_steps = total,
                            .train_loss = loss,
                            .val_loss = NAN,
                            .grad_norm = norm,
                            .lr = optim_lr(&c->optim, step - 1),
                            .tokens = (long long)step * per_batch,
                            .step_ms = (now_s() - t0) * 1e3,
                            .compressed = compressed};
        blocked(&r, blocked1);
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            rep.wait_ms[cls] = (blocked1[cls] - blocked0[cls]) * 1e3;
        if (!isfinite(loss)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "training diverged at step %d (loss %g); lower --lr", step,
                            loss);
            goto done;
        }
        if ((step == total || (c->eval_every > 0 && step % c->eval_every == 0)) &&
            (rc = evaluate(&r, val_batches, &rep.val_loss)) != WANCP_OK)
            goto done;
        rep.wall_s = now_s() - start;
        counts(&r, &rep);
        rep.basis_error = NAN;
        if (step == total && c->model.psi_k > 0) {
            rep.basis_error = cp_attention_orthonormality_error(&r.cp, &r.m);
            rep.shared_hash = cp_attention_shared_hash(&r.cp, &r.m);
            if ((rc = check_shared_state(&r, step, true)) != WANCP_OK)
                goto done;
        }
        if (report != NULL)
            report(report_ctx, &rep);
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step < total &&
            (rc = save(&r, &g, step)) != WANCP_OK)
            goto done;
    }
    rc = save(&r, &g, step);
    if (stopped_at != NULL)
        *stopped_at = step;
done:
    if (r.cp_on)
        cp_attention_free(&r.cp);
    free(r.local_in);
    free(r.local_tg);
    free(r.cov);
    if (r.stage != NULL)
        r.m.ops->host_release(r.stage);
    loader_free(&r.train);
    loader_free(&r.val);
    model_free(&r.m);
    return rc;
}
