/* A scenario's arm as the model its ranks train (scenario.h): apart from the reader, so the
 * reader's fuzz target needs none of the command line's model code. */
#include "cli_model.h"
#include "scenario.h"

#include "../core/model/config.h"

model_config scenario_model(const scenario *s, const scenario_arm *a)
{
    model_config c = model_config_default();
    c.n_layers = s->layers;
    c.dim = s->dim;
    c.n_heads = s->heads;
    c.n_kv_heads = s->kv_heads;
    c.ffn_dim = s->ffn;
    c.vocab = s->vocab;
    c.context = s->context;
    c.attn_block = 0;
    cli_model_finish(&c);
    cli_model_fit_block(&c, s->context, 2 * s->ranks);
    if (a != NULL && a->compress) {
        const run_method m = scenario_run_method(s, a);
        run_method_compression(&m, &c);
    }
    return c;
}
