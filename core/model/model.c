/* The decoder's forward and backward passes, written once against the ops table. */
#include "model.h"

#include "../base/status.h"
#include "../subspace/subspace.h"
#include "../util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows of the LM head computed at a time: the full (tokens, vocab) logits would be
 * hundreds of MB at GPT-2's vocabulary. */
#define HEAD_ROWS 512

static int add_params(model *m)
{
    const model_config *c = &m->cfg;
    const int d = c->dim, hd = model_head_dim(c), qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, f = c->ffn_dim;
    param_table *t = &m->table;
    int ok = (m->wte = param_table_add(t, "wte", c->vocab, d, true)) >= 0;
    for (int l = 0; l < c->n_layers && ok; l++) {
        layer_params *p = &m->layers[l];
        char name[40];
#define ADD(field, rows, cols, decay)                                                                                  \
    (snprintf(name, sizeof name, "layer%d.%s", l, #field),                                                             \
     (p->field = param_table_add(t, name, rows, cols, decay)) >= 0)
        ok = ADD(attn_norm, 1, d, false) && ADD(wq, qd, d, true) && ADD(wk, kvd, d, true) && ADD(wv, kvd, d, true) &&
             ADD(wo, d, qd, true) && ADD(mlp_norm, 1, d, false) && ADD(w1, f, d, true) && ADD(w3, f, d, true) &&
             ADD(w2, d, f, true);
#undef ADD
    }
    for (int l = 0; l < c->n_layers && ok; l++) {
        layer_params *p = &m->layers[l];
        p->psi_wk = p->psi_bk = p->psi_wv = p->psi_bv = p->u0_k = p->u0_v = -1;
        char name[40];
        if (c->psi_k > 0) {
#define ADD(field, rows, cols)                                                                                         \
    (snprintf(name, sizeof name, "layer%d.%s", l, #field),                                                             \
     (p->field = param_table_add(t, name, rows, cols, false)) >= 0)
            const int bw = model_basis_dim(c); /* each row of W reads one basis's columns */
            ok = ADD(psi_wk, c->psi_k, bw) && ADD(psi_bk, 1, c->psi_k) && ADD(psi_wv, c->psi_k, bw) &&
                 ADD(psi_bv, 1, c->psi_k);
#undef ADD
        }
    }
    ok = ok && (m->final_norm = param_table_add(t, "final_norm", 1, d, false)) >= 0;
    if (ok)
        m->lm_head = c->tied_head ? m->wte : param_table_add(t, "lm_head", c->vocab, d, true);
    ok = ok && m->lm_head >= 0;
    /* Frozen state last, so weight sync and the optimizer see one trainable prefix. */
    for (int l = 0; l < c->n_layers && ok && c->psi_k > 0; l++) {
        layer_params *p = &m->layers[l];
        char name[40];
        snprintf(name, sizeof name, "layer%d.u0_k", l);
        ok = (p->u0_k = param_table_add_frozen(t, name, kvd, c->rank_k)) >= 0;
        snprintf(name, sizeof name, "layer%d.u0_v", l);
        ok = ok && (p->u0_v = param_table_add_frozen(t, name, kvd, c->rank_v)) >= 0;
    }
    return ok ? WANCP_OK : WANCP_ERR_NOMEM;
}

static void init_params(model *m, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    const float residual_scale = 1.0f / sqrtf(2.0f * (float)m->cfg.n_layers);
    for (int i = 0; i < m->table.count; i++) {
        const tensor_info *t = &m->table.tensors[i];
        float *p = m->params + t->offset;
        if (t->frozen) { /* a basis U0 until the warm start replaces it */
            subspace_random_blocks(p, t->rows, t->cols, model_kv_bases(&m->cfg),
                                   seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
            continue;
        }
        if (strstr(t->name, ".psi_") != NULL) /* psi starts at 0: the first compressed step uses U0 */
            continue;
        if (!t->decay) { /* norm gains */
            for (size_t j = 0; j < t->count; j++)
                p[j] = 1.0f;
            continue;
        }
        int is_output = strstr(t->name, ".wo") != NULL || strstr(t->name, ".w2") != NULL;
        float std = 0.02f * (is_output ? residual_scale : 1.0f);
        for (size_t j = 0; j < t->count; j++)
            p[j] = std * rng_normal(&r);
    }
}

/* Carves one allocation into named views; first with base NULL to measure it. */
static size_t carve(model *m, float *base)
{
    const model_config *c = &m->cfg;
    const size_t n = (size_t)m->batch * m->seq, d = (size_t)c->dim, hd = (size_t)model_head_dim(c);
    const size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd, f = (size_t)c->ffn_dim;
    const size_t heads_seq = (size_t)c->n_heads * m->seq;
    size_t used = 0;
#define TAKE(ptr, floats) ((ptr) = base ? base + used : NULL, used += ((floats) + 15) / 16 * 16)
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *a = &m->acts[l];
        TAKE(a->x, n * d);
        TAKE(a->xn1, n * d);
        TAKE(a->rstd1, n);
        TAKE(a->q, n * qd);
        TAKE(a->k, n * kvd);
        if (c->psi_k > 0)
            TAKE(a->k_pre, n * kvd);
        TAKE(a->v, n * kvd);
        TAKE(a->o, n * qd);
        TAKE(a->lse, (size_t)m->batch * heads_seq);
        TAKE(a->x2, n * d);
        TAKE(a->xn2, n * d);
        TAKE(a->rstd2, n);
        TAKE(a->g, n * f);
        TAKE(a->u, n * f);
        TAKE(a->h, n * f);
    }
    TAKE(m->x_final, n * d);
    TAKE(m->xf, n * d);
    TAKE(m->rstdf, n);
    TAKE(m->dx, n * d);
    TAKE(m->dxn, n * d);
    TAKE(m->dq, n * qd);
    TAKE(m->dk, n * kvd);
    TAKE(m->dv, n * kvd);
    if (c->psi_k > 0)
        TAKE(m->dk_pre, n * kvd);
    TAKE(m->dout, n * qd);
    TAKE(m->dg, n * f);
    TAKE(m->du, n * f);
    TAKE(m->dh, n * f);
    TAKE(m->delta, heads_seq);
    TAKE(m->attn_max, heads_seq);
    TAKE(m->attn_sum, heads_seq);
    attn_shape shape = {c->n_heads, c->n_kv_heads, (int)hd, c->attn_block};
    TAKE(m->attn_scratch, attn_scratch_floats(&shape));
    TAKE(m->logits, (size_t)m->head_rows * c->vocab);
    TAKE(m->rope_cos, (size_t)c->context * hd / 2);
    TAKE(m->rope_sin, (size_t)c->context * hd / 2);
#undef TAKE
    return used;
}

/* RoPE tables in double, rounded once: identical on every rank and every run. */
static void fill_rope(model *m)
{
    const int half = model_head_dim(&m->cfg) / 2;
    for (int p = 0; p < m->cfg.context; p++)
        for (int j = 0; j < half; j++) {
            double freq = pow((double)m->cfg.rope_theta, -(double)j / half);
            m->rope_cos[(size_t)p * half + j] = (float)cos(p * freq);
            m->rope_sin[(size_t)p * half + j] = (float)sin(p * freq);
        }
    for (int i = 0; i < m->seq; i++)
        m->pos[i] = i;
}

int model_init(model *m, const model_config *cfg, const ops *o, int batch, int seq, uint64_t seed, char *err,
               size_t errlen)
{
    *m = (model){.cfg = *cfg, .ops = o, .batch = batch, .seq = seq};
    int rc = model_config_validate(cfg, "model", err, errlen);
    if (rc != WANCP_OK)
        return rc;
    if (batch < 1 || seq < 1 || seq > cfg->context)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "model: batch %d x seq %d (seq must be 1..context %d)", batch,
                          seq, cfg->context);
    m->head_rows = batch * seq < HEAD_ROWS ? batch * seq : HEAD_ROWS;
    m->loss_tokens = (long)batch * seq;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->acts = calloc((size_t)cfg->n_layers, sizeof *m->acts);
    m->pos = calloc((size_t)seq, sizeof *m->pos);
    if (m->layers == NULL || m->acts == NULL || m->pos == NULL || add_params(m) != WANCP_OK)
        goto nomem;
    /* Everything the ops touch comes from the backend (device memory on a GPU). */
    size_t total = m->table.total;
    m->params = o->alloc(total * sizeof *m->params);
    m->grads = o->alloc(total * sizeof *m->grads);
    m->adam_m = o->alloc(total * sizeof *m->adam_m);
    m->adam_v = o->alloc(total * sizeof *m->adam_v);
    size_t act_floats = carve(m, NULL);
    m->act_buffer = o->alloc(act_floats * sizeof *m->act_buffer);
    if (m->params == NULL || m->grads == NULL || m->adam_m == NULL || m->adam_v == NULL || m->act_buffer == NULL)
        goto nomem;
    carve(m, m->act_buffer);
    fill_rope(m);
    init_params(m, seed);
    return WANCP_OK;
nomem:
    model_free(m);
    return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "model: out of memory");
}

void model_free(model *m)
{
    if (m->ops != NULL) {
        m->ops->release(m->params);
        m->ops->release(m->grads);
        m->ops->release(m->adam_m);
        m->ops->release(m->adam_v);
        m->ops->release(m->act_buffer);
    }
    free(m->acts);
    free(m->layers);
    free(m->pos);
    param_table_free(&m->table);
    *m = (model){0};
}

void model_zero_grads(model *m) { m->ops->zero(m->grads, m->table.total); }

static attn_shape shape_of(const model *m)
{
    return (attn_shape){m->cfg.n_heads, m->cfg.n_kv_heads, model_head_dim(&m->cfg), m->cfg.attn_block};
}

void model_set_positions(model *m, const int32_t *pos) { memcpy(m->pos, pos, (size_t)m->seq * sizeof *m->pos); }

void model_attention_forward_local(model *m, int layer)
{
    layer_acts *a = &m->acts[layer];
    const ops *o = m->ops;
    attn_shape shape = shape_of(m);
    const size_t qd = (size_t)shape.n_heads * shape.head_dim, kvd = (size_t)shape.n_kv_heads * shape.head_dim;
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * m->seq;
        /* The output buffer doubles as the accumulator: attn_end normalises it in place. */
        attn_state st = {.acc = a->o + row * qd, .max = m->attn_max, .sum = m->attn_sum, .tq = m->seq};
        o->attn_begin(&st, &shape);
        o->attn_block(&st, a->q + row * qd, m->pos, a->k + row * kvd, a->v + row * kvd, m->pos, m->seq, &shape,
                      m->attn_scratch);
        o->attn_end(a->o + row * qd, a->lse + (size_t)b * shape.n_heads * m->seq, &st, &shape);
    }
}

void model_attention_backward_local(model *m, int layer)
{
    const layer_acts *a = &m->acts[layer];
    const ops *o = m->ops;
    attn_shape shape = shape_of(m);
    const size_t qd = (size_t)shape.n_heads * shape.head_dim, kvd = (size_t)shape.n_kv_heads * shape.head_dim;
    const size_t n = (size_t)m->batch * m->seq;
    o->zero(m->dq, n * qd);
    o->zero(m->dk, n * kvd);
    o->zero(m->dv, n * kvd);
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * m->seq;
        o->attn_bwd_delta(m->delta, a->o + row * qd, m->dout + row * qd, m->seq, &shape);
        o->attn_block_bwd(m->dq + row * qd, m->dk + row * kvd, m->dv + row * kvd, a->q + row * qd, m->pos, m->seq,
                          a->k + row * kvd, a->v + row * kvd, m->pos, m->seq, m->dout + row * qd,
                          a->lse + (size_t)b * shape.n_heads * m->seq, m->delta, &shape, m->attn_scratch);
    }
}

/* Positions repeat per sequence; ops take one row of positions per call, so RoPE is
 * applied sequence by sequence. */
static void rope(model *m, float *x, int heads, bool inverse)
{
    const int hd = model_head_dim(&m->cfg);
    const size_t width = (size_t)heads * hd;
    for (int b = 0; b < m->batch; b++) {
        float *xb = x + (size_t)b * m->seq * width;
        if (inverse)
            m->ops->rope_bwd(xb, m->pos, m->seq, heads, hd, m->rope_cos, m->rope_sin);
        else
            m->ops->rope_fwd(xb, m->pos, m->seq, heads, hd, m->rope_cos, m->rope_sin);
    }
}

static int attention_forward(model *m, int layer)
{
    if (m->attn.forward != NULL)
        return m->attn.forward(m->attn.ctx, m, layer);
    model_attention_forward_local(m, layer);
    return 0;
}

static int attention_backward(model *m, int layer)
{
    if (m->attn.backward != NULL)
        return m->attn.backward(m->attn.ctx, m, layer);
    model_attention_backward_local(m, layer);
    return 0;
}

static int block_forward(model *m, int l, float *x_out)
{
    const ops *o = m->ops;
    const model_config *c = &m->cfg;
    const layer_params *p = &m->layers[l];
    layer_acts *a = &m->acts[l];
    const int n = m->batch * m->seq, d = c->dim, hd = model_head_dim(c);
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, f = c->ffn_dim;

    o->rmsnorm_fwd(a->xn1, a->rstd1, a->x, model_param(m, p->attn_norm), n, d, c->norm_eps);
    o->matmul(a->q, a->xn1, model_param(m, p->wq), n, qd, d, false, true, 1.0f, 0.0f);
    o->matmul(a->k, a->xn1, model_param(m, p->wk), n, kvd, d, false, true, 1.0f, 0.0f);
    o->matmul(a->v, a->xn1, model_param(m, p->wv), n, kvd, d, false, true, 1.0f, 0.0f);
    if (a->k_pre != NULL)
        o->copy(a->k_pre, a->k, (size_t)n * kvd);
    rope(m, a->q, c->n_heads, false);
    rope(m, a->k, c->n_kv_heads, false);
    if (attention_forward(m, l) != 0)
        return -1;
    o->matmul(a->x2, a->o, model_param(m, p->wo), n, d, qd, false, true, 1.0f, 0.0f);
    o->add(a->x2, a->x, (size_t)n * d);

    o->rmsnorm_fwd(a->xn2, a->rstd2, a->x2, model_param(m, p->mlp_norm), n, d, c->norm_eps);
    o->matmul(a->g, a->xn2, model_param(m, p->w1), n, f, d, false, true, 1.0f, 0.0f);
    o->matmul(a->u, a->xn2, model_param(m, p->w3), n, f, d, false, true, 1.0f, 0.0f);
    o->swiglu_fwd(a->h, a->g, a->u, (size_t)n * f);
    o->matmul(x_out, a->h, model_param(m, p->w2), n, d, f, false, true, 1.0f, 0.0f);
    o->add(x_out, a->x2, (size_t)n * d);
    return 0;
}

/* m->dx holds dloss/d(block output) on entry and dloss/d(block input) on return. */
static int block_backward(model *m, int l)
{
    const ops *o = m->ops;
    const model_config *c = &m->cfg;
    const layer_params *p = &m->layers[l];
    const layer_acts *a = &m->acts[l];
    const int n = m->batch * m->seq, d = c->dim, hd = model_head_dim(c);
    const int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, f = c->ffn_dim;

    /* MLP: out = x2 + w2 (silu(w1 xn2) * w3 xn2) */
    o->matmul(m->dh, m->dx, model_param(m, p->w2), n, f, d, false, false, 1.0f, 0.0f);
    o->matmul(model_grad(m, p->w2), m->dx, a->h, d, f, n, true, false, 1.0f, 1.0f);
    o->swiglu_bwd(m->dg, m->du, m->dh, a->g, a->u, (size_t)n * f);
    o->matmul(m->dxn, m->dg, model_param(m, p->w1), n, d, f, false, false, 1.0f, 0.0f);
    o->matmul(m->dxn, m->du, model_param(m, p->w3), n, d, f, false, false, 1.0f, 1.0f);
    o->matmul(model_grad(m, p->w1), m->dg, a->xn2, f, d, n, true, false, 1.0f, 1.0f);
    o->matmul(model_grad(m, p->w3), m->du, a->xn2, f, d, n, true, false, 1.0f, 1.0f);
    o->rmsnorm_bwd(m->dx, model_grad(m, p->mlp_norm), m->dxn, a->x2, model_param(m, p->mlp_norm), a->rstd2, n, d);

    /* attention: x2 = x + wo attn(rope(wq xn1), rope(wk xn1), wv xn1) */
    o->matmul(m->dout, m->dx, model_param(m, p->wo), n, qd, d, false, false, 1.0f, 0.0f);
    o->matmul(model_grad(m, p->wo), m->dx, a->o, d, qd, n, true, false, 1.0f, 1.0f);
    if (m->dk_pre != NULL)
        o->zero(m->dk_pre, (size_t)n * kvd);
    if (attention_backward(m, l) != 0)
        return -1;
    rope(m, m->dq, c->n_heads, true);
    rope(m, m->dk, c->n_kv_heads, true);
    if (m->dk_pre != NULL)
        o->add(m->dk, m->dk_pre, (size_t)n * kvd);
    o->matmul(m->dxn, m->dq, model_param(m, p->wq), n, d, qd, false, false, 1.0f, 0.0f);
    o->matmul(m->dxn, m->dk, model_param(m, p->wk), n, d, kvd, false, false, 1.0f, 1.0f);
    o->matmul(m->dxn, m->dv, model_param(m, p->wv), n, d, kvd, false, false, 1.0f, 1.0f);
    o->matmul(model_grad(m, p->wq), m->dq, a->xn1, qd, d, n, true, false, 1.0f, 1.0f);
    o->matmul(model_grad(m, p->wk), m->dk, a->xn1, kvd, d, n, true, false, 1.0f, 1.0f);
    o->matmul(model_grad(m, p->wv), m->dv, a->xn1, kvd, d, n, true, false, 1.0f, 1.0f);
    o->rmsnorm_bwd(m->dx, model_grad(m, p->attn_norm), m->dxn, a->x, model_param(m, p->attn_norm), a->rstd1, n, d);
    return 0;
}

/* The LM head and loss, HEAD_ROWS rows at a time; with backward, dxf goes to m->dxn. */
static double head(model *m, const uint16_t *targets, bool backward)
{
    const ops *o = m->ops;
    const int n = m->batch * m->seq, d = m->cfg.dim, vocab = m->cfg.vocab;
    const float *w = model_param(m, m->lm_head);
    const float dscale = backward ? 1.0f / (float)m->loss_tokens : 0.0f;
    double loss = 0.0;
    for (int r0 = 0; r0 < n; r0 += m->head_rows) {
        const int rows = n - r0 < m->head_rows ? n - r0 : m->head_rows;
        o->matmul(m->logits, m->xf + (size_t)r0 * d, w, rows, vocab, d, false, true, 1.0f, 0.0f);
        loss += o->cross_entropy(m->logits, targets + r0, rows, vocab, dscale);
        if (backward) {
            o->matmul(m->dxn + (size_t)r0 * d, m->logits, w, rows, d, vocab, false, false, 1.0f, 0.0f);
            o->matmul(model_grad(m, m->lm_head), m->logits, m->xf + (size_t)r0 * d, vocab, d, rows, true, false, 1.0f,
                      1.0f);
        }
    }
    return loss / (double)m->loss_tokens;
}

double model_step(model *m, const uint16_t *inputs, const uint16_t *targets, bool backward)
{
    const ops *o = m->ops;
    const model_config *c = &m->cfg;
    const int n = m->batch * m->seq, d = c->dim;

    o->embedding_fwd(m->acts[0].x, inputs, model_param(m, m->wte), n, d);
    for (int l = 0; l < c->n_layers; l++)
        if (block_forward(m, l, l + 1 < c->n_layers ? m->acts[l + 1].x : m->x_final) != 0)
            return NAN;
    o->rmsnorm_fwd(m->xf, m->rstdf, m->x_final, model_param(m, m->final_norm), n, d, c->norm_eps);
    double loss = head(m, targets, backward);
    if (!backward)
        return loss;

    o->zero(m->dx, (size_t)n * d);
    o->rmsnorm_bwd(m->dx, model_grad(m, m->final_norm), m->dxn, m->x_final, model_param(m, m->final_norm), m->rstdf, n,
                   d);
    for (int l = c->n_layers - 1; l >= 0; l--)
        if (block_backward(m, l) != 0)
            return NAN;
    o->embedding_bwd(model_grad(m, m->wte), inputs, m->dx, n, d);
    return loss;
}
