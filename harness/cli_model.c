/* The model options that wancp train and wancp bench step share. */
#include "cli_model.h"

#include "cli.h"

int cli_model_option(const char *cmd, int code, const char *name, const char *value, model_config *c)
{
    unsigned long u = 0;
    double f = 0.0;
    int bad = 0;
    switch (code) {
    case CLI_MODEL_LAYERS:
        bad = cli_parse_ulong(cmd, name, value, 1, 1024, &u);
        c->n_layers = (int)u;
        break;
    case CLI_MODEL_DIM:
        bad = cli_parse_ulong(cmd, name, value, 1, 65536, &u);
        c->dim = (int)u;
        break;
    case CLI_MODEL_HEADS:
        bad = cli_parse_ulong(cmd, name, value, 1, 1024, &u);
        c->n_heads = (int)u;
        break;
    case CLI_MODEL_KV_HEADS:
        bad = cli_parse_ulong(cmd, name, value, 1, 1024, &u);
        c->n_kv_heads = (int)u;
        break;
    case CLI_MODEL_FFN:
        bad = cli_parse_ulong(cmd, name, value, 1, 1 << 20, &u);
        c->ffn_dim = (int)u;
        break;
    case CLI_MODEL_VOCAB:
        bad = cli_parse_ulong(cmd, name, value, 2, 65536, &u);
        c->vocab = (int)u;
        break;
    case CLI_MODEL_CONTEXT:
        bad = cli_parse_ulong(cmd, name, value, 1, 1 << 24, &u);
        c->context = (int)u;
        break;
    case CLI_MODEL_ATTN_BLOCK:
        bad = cli_parse_ulong(cmd, name, value, 1, 4096, &u);
        c->attn_block = (int)u;
        break;
    case CLI_MODEL_UNTIED: c->tied_head = 0; break;
    case CLI_MODEL_ROPE_THETA:
        bad = cli_parse_float(cmd, name, value, 2, 1e9, &f);
        c->rope_theta = (float)f;
        break;
    default: return cli_usage_error(cmd, "unknown option '%s'", name);
    }
    return bad ? 2 : 0;
}

void cli_model_fit_block(model_config *c, int seq, int pieces)
{
    if (pieces > 0 && seq % pieces == 0)
        while (c->attn_block > 1 && (seq / pieces) % c->attn_block != 0)
            c->attn_block /= 2;
}

void cli_model_finish(model_config *c)
{
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    /* Default attention block: 256 rows (the fastest measured here), or the largest power
     * of two below it that divides the context. */
    if (c->attn_block == 0)
        for (c->attn_block = 256; c->attn_block > 1 && c->context % c->attn_block != 0; c->attn_block /= 2)
            ;
}
