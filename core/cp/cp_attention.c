#include "cp_attention.h"

#include "../status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t kv_floats(const cp_attention *cp, const model *m)
{
    return (size_t)cp->layout.chunk * m->cfg.n_kv_heads * model_head_dim(&m->cfg);
}

/* Remote K (then V) of chunk j for a layer and sequence. */
static float *recv_slot(cp_attention *cp, const model *m, int layer, int b, int chunk)
{
    const size_t per_chunk = 2 * kv_floats(cp, m), chunks = 2 * (size_t)cp->layout.ranks;
    return cp->recv_kv + (((size_t)layer * m->batch + b) * chunks + chunk) * per_chunk;
}

static int fail(cp_attention *cp, const char *what, const char *why)
{
    snprintf(cp->error, sizeof cp->error, "%s: %.400s", what, why);
    return -1;
}

static int cp_forward(void *ctx, model *m, int layer)
{
    cp_attention *cp = ctx;
    const ops *o = m->ops;
    layer_acts *a = &m->acts[layer];
    const int P = cp->layout.ranks, chunk = cp->layout.chunk, seq = m->seq;
    const int hd = model_head_dim(&m->cfg), qd = m->cfg.n_heads * hd, kvd = m->cfg.n_kv_heads * hd;
    const size_t kvf = kv_floats(cp, m);
    const attn_shape shape = {m->cfg.n_heads, m->cfg.n_kv_heads, hd, m->cfg.attn_block};
    int mine[2];
    cp_chunks_of(&cp->layout, cp->rank, mine);
    int32_t pos_remote[65536];
    char err[WANCP_ERRLEN];
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * seq;
        comm_request *reqs[4 * COMM_MAX_RANKS];
        int nreq = 0, rc = WANCP_OK;
        for (int j = 0; j < 2 * P && rc == WANCP_OK && cp->exchange; j++) {
            int owner = cp_owner(&cp->layout, j);
            if (owner != cp->rank && cp_rank_needs(&cp->layout, cp->rank, j))
                rc = comm_irecv(cp->comm, owner, COMM_KV_FORWARD, recv_slot(cp, m, layer, b, j), 2 * kvf * sizeof(float),
                                &reqs[nreq++], err, sizeof err);
        }
        const int first_recv = nreq;
        for (int c = 0; c < 2 && rc == WANCP_OK; c++) {
            float *pack = cp->send_kv + (size_t)c * 2 * kvf;
            memcpy(pack, a->k + (row + (size_t)c * chunk) * kvd, kvf * sizeof *pack);
            memcpy(pack + kvf, a->v + (row + (size_t)c * chunk) * kvd, kvf * sizeof *pack);
            for (int r = 0; r < P && rc == WANCP_OK && cp->exchange; r++)
                if (r != cp->rank && cp_rank_needs(&cp->layout, r, mine[c]))
                    rc = comm_isend(cp->comm, r, COMM_KV_FORWARD, pack, 2 * kvf * sizeof *pack, &reqs[nreq++], err,
                                    sizeof err);
        }
        if (rc != WANCP_OK)
            return fail(cp, "context-parallel forward", err);
        /* The local block while remote chunks travel; then each remote chunk, in order. */
        attn_state st = {.acc = a->o + row * qd, .max = m->attn_max, .sum = m->attn_sum, .tq = seq};
        o->attn_begin(&st, &shape);
        o->attn_block(&st, a->q + row * qd, m->pos, a->k + row * kvd, a->v + row * kvd, m->pos, seq, &shape,
                      m->attn_scratch);
        int next = 0;
        for (int j = 0; j < 2 * P; j++) {
            if (cp_owner(&cp->layout, j) == cp->rank || !cp_rank_needs(&cp->layout, cp->rank, j))
                continue;
            if (cp->exchange && comm_wait(cp->comm, reqs[next++], err, sizeof err) != WANCP_OK)
                return fail(cp, "context-parallel forward", err);
            const float *kv = recv_slot(cp, m, layer, b, j);
            for (int t = 0; t < chunk; t++)
                pos_remote[t] = j * chunk + t;
            o->attn_block(&st, a->q + row * qd, m->pos, kv, kv + kvf, pos_remote, chunk, &shape, m->attn_scratch);
        }
        o->attn_end(a->o + row * qd, a->lse + (size_t)b * shape.n_heads * seq, &st, &shape);
        if (comm_wait_all(cp->comm, reqs + first_recv, nreq - first_recv, err, sizeof err) != WANCP_OK)
            return fail(cp, "context-parallel forward", err);
    }
    return 0;
}

static int cp_backward(void *ctx, model *m, int layer)
{
    cp_attention *cp = ctx;
    const ops *o = m->ops;
    const layer_acts *a = &m->acts[layer];
    const int P = cp->layout.ranks, chunk = cp->layout.chunk, seq = m->seq;
    const int hd = model_head_dim(&m->cfg), qd = m->cfg.n_heads * hd, kvd = m->cfg.n_kv_heads * hd;
    const size_t kvf = kv_floats(cp, m), n = (size_t)m->batch * seq;
    const attn_shape shape = {m->cfg.n_heads, m->cfg.n_kv_heads, hd, m->cfg.attn_block};
    int mine[2];
    cp_chunks_of(&cp->layout, cp->rank, mine);
    int32_t pos_remote[65536];
    char err[WANCP_ERRLEN];
    memset(m->dq, 0, n * qd * sizeof *m->dq);
    memset(m->dk, 0, n * kvd * sizeof *m->dk);
    memset(m->dv, 0, n * kvd * sizeof *m->dv);
    for (int b = 0; b < m->batch; b++) {
        const size_t row = (size_t)b * seq;
        const float *lse = a->lse + (size_t)b * shape.n_heads * seq;
        comm_request *reqs[4 * COMM_MAX_RANKS];
        int nreq = 0, rc = WANCP_OK;
        /* Partial gradients of this rank's chunks from every rank that attended to them. */
        for (int c = 0; c < 2 && rc == WANCP_OK && cp->exchange; c++)
            for (int r = 0; r < P && rc == WANCP_OK; r++)
                if (r != cp->rank && cp_rank_needs(&cp->layout, r, mine[c]))
                    rc = comm_irecv(cp->comm, r, COMM_KV_BACKWARD, cp->grad_in + ((size_t)c * P + r) * 2 * kvf,
                                    2 * kvf * sizeof(float), &reqs[nreq++], err, sizeof err);
        const int first_send = nreq;
        o->attn_bwd_delta(m->delta, a->o + row * qd, m->dout + row * qd, seq, &shape);
        for (int j = 0; j < 2 * P && rc == WANCP_OK; j++) {
            int owner = cp_owner(&cp->layout, j);
            if (owner == cp->rank || !cp_rank_needs(&cp->layout, cp->rank, j))
                continue;
            const float *kv = recv_slot(cp, m, layer, b, j);
            float *g = cp->grad_out + (size_t)j * 2 * kvf;
            memset(g, 0, 2 * kvf * sizeof *g);
            for (int t = 0; t < chunk; t++)
                pos_remote[t] = j * chunk + t;
            o->attn_block_bwd(m->dq + row * qd, g, g + kvf, a->q + row * qd, m->pos, seq, kv, kv + kvf, pos_remote,
                              chunk, m->dout + row * qd, lse, m->delta, &shape, m->attn_scratch);
            if (cp->exchange)
                rc = comm_isend(cp->comm, owner, COMM_KV_BACKWARD, g, 2 * kvf * sizeof *g, &reqs[nreq++], err,
                                sizeof err);
        }
        if (rc != WANCP_OK)
            return fail(cp, "context-parallel backward", err);
        o->attn_block_bwd(m->dq + row * qd, m->dk + row * kvd, m->dv + row * kvd, a->q + row * qd, m->pos, seq,
                          a->k + row * kvd, a->v + row * kvd, m->pos, seq, m->dout + row * qd, lse, m->delta, &shape,
                          m->attn_scratch);
        if (comm_wait_all(cp->comm, reqs, nreq, err, sizeof err) != WANCP_OK)
            return fail(cp, "context-parallel backward", err);
        (void)first_send;
        /* Owners add the partial gradients, in rank order. */
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < P; r++) {
                if (r == cp->rank || !cp_rank_needs(&cp->layout, r, mine[c]))
                    continue;
                const float *g = cp->grad_in + ((size_t)c * P + r) * 2 * kvf;
                o->add(m->dk + (row + (size_t)c * chunk) * kvd, g, kvf);
                o->add(m->dv + (row + (size_t)c * chunk) * kvd, g + kvf, kvf);
            }
    }
    return 0;
}

int cp_attention_init(cp_attention *cp, comm *c, const cp_layout *layout, model *m, char *err, size_t errlen)
{
    *cp = (cp_attention){.comm = c, .layout = *layout, .rank = comm_rank(c)};
    if (m->seq != 2 * layout->chunk || layout->ranks != comm_size(c))
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "context parallelism: %d ranks x 2 chunks of %d tokens, but the "
                          "model holds %d local tokens on %d ranks", layout->ranks, layout->chunk, m->seq, comm_size(c));
    if (layout->chunk % m->cfg.attn_block != 0 || layout->chunk > 65536)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "context parallelism: chunk of %d tokens is not a multiple of attn_block %d", layout->chunk,
                          m->cfg.attn_block);
    if (2 * layout->ranks * layout->chunk > m->cfg.context)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "context parallelism: sequence of %d tokens exceeds context %d",
                          2 * layout->ranks * layout->chunk, m->cfg.context);
    const size_t kvf = kv_floats(cp, m), P = (size_t)layout->ranks;
    cp->recv_kv = calloc((size_t)m->cfg.n_layers * m->batch * 2 * P * 2 * kvf, sizeof(float));
    cp->send_kv = calloc(4 * kvf, sizeof(float));
    cp->grad_out = calloc(2 * P * 2 * kvf, sizeof(float));
    cp->grad_in = calloc(2 * P * 2 * kvf, sizeof(float));
    if (cp->recv_kv == NULL || cp->send_kv == NULL || cp->grad_out == NULL || cp->grad_in == NULL) {
        cp_attention_free(cp);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "context parallelism: out of memory for K/V buffers");
    }
    int32_t *pos = malloc((size_t)m->seq * sizeof *pos);
    if (pos == NULL) {
        cp_attention_free(cp);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "context parallelism: out of memory");
    }
    cp_positions(layout, cp->rank, pos);
    model_set_positions(m, pos);
    free(pos);
    m->attn = (attn_impl){.forward = cp_forward, .backward = cp_backward, .ctx = cp};
    cp->exchange = true;
    return WANCP_OK;
}

/* The same messages as one step's cp_forward and cp_backward, from the same buffers. */
int cp_attention_exchange_only(cp_attention *cp, model *m, char *err, size_t errlen)
{
    const int P = cp->layout.ranks;
    const size_t kvf = kv_floats(cp, m);
    int mine[2];
    cp_chunks_of(&cp->layout, cp->rank, mine);
    for (int pass = 0; pass < 2; pass++) /* 0: forward, every layer; 1: backward, every layer */
        for (int layer = 0; layer < m->cfg.n_layers; layer++)
            for (int b = 0; b < m->batch; b++) {
                comm_request *reqs[4 * COMM_MAX_RANKS];
                int nreq = 0, rc = WANCP_OK;
                const int cls = pass == 0 ? COMM_KV_FORWARD : COMM_KV_BACKWARD;
                for (int j = 0; j < 2 * P && rc == WANCP_OK; j++) {
                    int owner = cp_owner(&cp->layout, j);
                    if (owner == cp->rank || !cp_rank_needs(&cp->layout, cp->rank, j))
                        continue;
                    float *slot = pass == 0 ? recv_slot(cp, m, layer, b, j) : cp->grad_out + (size_t)j * 2 * kvf;
                    rc = pass == 0 ? comm_irecv(cp->comm, owner, cls, slot, 2 * kvf * sizeof(float), &reqs[nreq++], err,
                                                errlen)
                                   : comm_isend(cp->comm, owner, cls, slot, 2 * kvf * sizeof(float), &reqs[nreq++], err,
                                                errlen);
                }
                for (int c = 0; c < 2 && rc == WANCP_OK; c++)
                    for (int r = 0; r < P && rc == WANCP_OK; r++) {
                        if (r == cp->rank || !cp_rank_needs(&cp->layout, r, mine[c]))
                            continue;
                        rc = pass == 0 ? comm_isend(cp->comm, r, cls, cp->send_kv + (size_t)c * 2 * kvf,
                                                    2 * kvf * sizeof(float), &reqs[nreq++], err, errlen)
                                       : comm_irecv(cp->comm, r, cls, cp->grad_in + ((size_t)c * P + r) * 2 * kvf,
                                                    2 * kvf * sizeof(float), &reqs[nreq++], err, errlen);
                    }
                if (rc == WANCP_OK)
                    rc = comm_wait_all(cp->comm, reqs, nreq, err, errlen);
                if (rc != WANCP_OK)
                    return rc;
            }
    return WANCP_OK;
}

void cp_attention_free(cp_attention *cp)
{
    free(cp->recv_kv);
    free(cp->send_kv);
    free(cp->grad_out);
    free(cp->grad_in);
    cp->recv_kv = cp->send_kv = cp->grad_out = cp->grad_in = NULL;
}
