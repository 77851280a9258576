#include "sim_cost.h"

#include "../../core/cp/cp_message.h"
#include "../../core/model/config.h"

#include <math.h>

double sim_work_seconds(const sim_work *w, const sim_hardware *hw)
{
    double s = w->ops * hw->op_overhead_s;
    for (int c = 0; c < SIM_MEMORY; c++)
        if (w->amount[c] > 0)
            s += w->amount[c] / (hw->peak_flops * hw->efficiency[c]);
    if (w->amount[SIM_MEMORY] > 0)
        s += w->amount[SIM_MEMORY] / hw->memory_bytes_s;
    return s;
}

double sim_rank_threads(double cores, int ranks) { return fmax(1.0, floor(cores / ranks)); }

double sim_calibration_cores(double cores, int ranks) { return fmin(sim_rank_threads(cores, ranks), cores / ranks); }

double sim_link_cost_at(const sim_link_prices *p, double bps)
{
    const int n = p->n;
    if (n == 0)
        return 0;
    if (n == 1 || p->bps[0] <= 0 || bps <= p->bps[0])
        return p->cost_s[0];
    if (bps >= p->bps[n - 1])
        return p->cost_s[n - 1];
    int k = 1;
    while (p->bps[k] < bps)
        k++;
    const double f = log(bps / p->bps[k - 1]) / log(p->bps[k] / p->bps[k - 1]);
    return p->cost_s[k - 1] + f * (p->cost_s[k] - p->cost_s[k - 1]);
}

double sim_link_cost_of(const sim_hardware *hw, double bps, bool delayed)
{
    return sim_link_cost_at(delayed && hw->delay_link_cost.n > 0 ? &hw->delay_link_cost : &hw->link_cost, bps);
}

void sim_work_add(sim_work *into, const sim_work *w, double times)
{
    for (int c = 0; c < SIM_NCLASSES; c++)
        into->amount[c] += w->amount[c] * times;
    into->ops += w->ops * times;
}

static double tokens(const sim_shape *s) { return 2.0 * s->batch * s->chunk; }

/* Backward passes do twice the forward's products and about twice its memory traffic. */
static double pass_factor(bool backward) { return backward ? 2.0 : 1.0; }

sim_work sim_cost_pre_attention(const sim_shape *s, const sim_hardware *hw, bool backward)
{
    const double n = tokens(s), d = s->dim, kvd = sim_kv_dim(s), f = pass_factor(backward);
    sim_work w = {0};
    w.amount[SIM_MATMUL] = f * 2 * n * d * (d + 2 * kvd);
    /* RMSNorm (read x, write out), RoPE on q and k (read, write) */
    w.amount[SIM_MEMORY] = f * n * hw->act_bytes * (2 * d + 2 * (d + kvd));
    w.ops = f * 5;
    return w;
}

sim_work sim_cost_post_attention(const sim_shape *s, const sim_hardware *hw, bool backward)
{
    const double n = tokens(s), d = s->dim, ffn = s->ffn, f = pass_factor(backward);
    sim_work w = {0};
    w.amount[SIM_MATMUL] = f * (2 * n * d * d + 6 * n * d * ffn);
    /* attention's output state, two residual adds (read two, write one), RMSNorm, SwiGLU */
    w.amount[SIM_MEMORY] = f * n * hw->act_bytes * (2 * d + 6 * d + 2 * d + 3 * ffn);
    w.ops = f * 8;
    return w;
}

sim_work sim_cost_block(const sim_shape *s, bool diagonal, bool backward)
{
    const double m = s->chunk, d = s->dim;
    sim_work w = {0};
    w.amount[SIM_ATTENTION] = (diagonal ? 0.5 : 1.0) * pass_factor(backward) * 4 * m * m * d;
    w.ops = backward ? 4 : 2;
    return w;
}

static double codec_rank(const sim_shape *s) { return (double)s->rank_k + s->rank_v; }

static double planes(const sim_shape *s) { return s->planes > 0 ? s->planes : sim_basis_dim(s) / 2; }

sim_work sim_cost_view(const sim_shape *s, const sim_hardware *hw, bool compressed, bool rotate)
{
    const double m = s->chunk, kvd = sim_kv_dim(s);
    sim_work w = {0};
    /* K and V unpacked or copied into the view (read, write) */
    w.amount[SIM_MEMORY] = 2 * m * kvd * 2 * hw->act_bytes;
    w.ops = 2;
    if (compressed) {
        w.amount[SIM_CODEC] =
            2 * m * kvd * codec_rank(s) + (rotate ? 4 * sim_basis_dim(s) * planes(s) * codec_rank(s) : 0);
        w.ops += 4;
    }
    return w;
}

sim_work sim_cost_encode(const sim_shape *s)
{
    const double m = s->chunk, kvd = sim_kv_dim(s);
    sim_work w = {0};
    w.amount[SIM_CODEC] = 2 * m * kvd * codec_rank(s) + 4 * sim_basis_dim(s) * planes(s) * codec_rank(s) + 2 * m * kvd;
    w.ops = 6;
    return w;
}

sim_work sim_cost_consumer_grad(const sim_shape *s)
{
    const double m = s->chunk, kvd = sim_kv_dim(s);
    sim_work w = {0};
    w.amount[SIM_CODEC] = 4 * m * kvd * codec_rank(s);
    w.ops = 4;
    return w;
}

sim_work sim_cost_owner_finish(const sim_shape *s)
{
    const double m = s->chunk, kvd = sim_kv_dim(s);
    sim_work w = {0};
    w.amount[SIM_CODEC] = 4 * m * kvd * codec_rank(s) + 4 * sim_basis_dim(s) * planes(s) * codec_rank(s);
    w.ops = 6;
    return w;
}

sim_work sim_cost_head(const sim_shape *s, const sim_hardware *hw, bool backward)
{
    const double n = tokens(s), d = s->dim, v = s->vocab, f = pass_factor(backward);
    sim_work w = {0};
    w.amount[SIM_MATMUL] = f * 2 * n * d * v;
    /* final norm, embedding rows, and the loss over the logits (read, exp, write the
     * gradient) once, in the forward */
    w.amount[SIM_MEMORY] = n * hw->act_bytes * (4 * d + (backward ? 0 : 3 * v));
    w.ops = f * 4;
    return w;
}

double sim_trainable_params(const sim_shape *s)
{
    const double d = s->dim, kvd = sim_kv_dim(s), v = s->vocab;
    const double per_layer =
        2 * d + d * d + 2 * d * kvd + d * d + 3 * d * s->ffn + 2 * (sim_basis_dim(s) * s->psi_k + s->psi_k);
    return s->layers * per_layer + v * d * (s->tied ? 1 : 2) + d;
}

sim_work sim_cost_optimizer(const sim_shape *s)
{
    sim_work w = {0};
    /* AdamW reads p, g, m, v and writes p, m, v in fp32 */
    w.amount[SIM_MEMORY] = 28 * sim_trainable_params(s);
    w.ops = 1;
    return w;
}

double sim_message_bytes(const sim_shape *s, bool compressed, double wire_bytes)
{
    const cp_message_shape shape = {.chunk = (uint64_t)s->chunk,
                                    .d_kv = sim_kv_dim(s),
                                    .rank_k = s->rank_k,
                                    .rank_v = s->rank_v,
                                    .psi_k = s->psi_k,
                                    .wire_bytes = (int)wire_bytes,
                                    .compressed = compressed};
    return (double)cp_kv_message_bytes(&shape);
}

sim_shape sim_shape_of(const model_config *c, int ranks, int batch, int planes)
{
    return (sim_shape){.ranks = ranks,
                       .layers = c->n_layers,
                       .dim = c->dim,
                       .heads = c->n_heads,
                       .kv_heads = c->n_kv_heads,
                       .ffn = c->ffn_dim,
                       .vocab = c->vocab,
                       .batch = batch,
                       .chunk = c->context / (2 * ranks),
                       .rank_k = c->rank_k,
                       .rank_v = c->rank_v,
                       .psi_k = c->psi_k,
                       .bases = c->psi_k > 0 ? model_kv_bases(c) : 1,
                       .planes = planes,
                       .tied = c->tied_head};
}
