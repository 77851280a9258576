#ifndef WANCP_CLI_MODEL_H
#define WANCP_CLI_MODEL_H

#include "../core/model/config.h"

/* Option codes of the model options, for getopt_long tables (CLI_MODEL_OPTIONS). */
enum {
    CLI_MODEL_FIRST = 1000,
    CLI_MODEL_LAYERS = CLI_MODEL_FIRST,
    CLI_MODEL_DIM,
    CLI_MODEL_HEADS,
    CLI_MODEL_KV_HEADS,
    CLI_MODEL_FFN,
    CLI_MODEL_VOCAB,
    CLI_MODEL_CONTEXT,
    CLI_MODEL_ATTN_BLOCK,
    CLI_MODEL_UNTIED,
    CLI_MODEL_ROPE_THETA,
    CLI_MODEL_LAST = CLI_MODEL_ROPE_THETA,
};

/* Entries to splice into a struct option table. */
#define CLI_MODEL_OPTIONS                                                                                              \
    {"layers", 1, 0, CLI_MODEL_LAYERS}, {"dim", 1, 0, CLI_MODEL_DIM}, {"heads", 1, 0, CLI_MODEL_HEADS},                \
        {"kv-heads", 1, 0, CLI_MODEL_KV_HEADS}, {"ffn", 1, 0, CLI_MODEL_FFN}, {"vocab", 1, 0, CLI_MODEL_VOCAB},        \
        {"context", 1, 0, CLI_MODEL_CONTEXT}, {"attn-block", 1, 0, CLI_MODEL_ATTN_BLOCK},                              \
        {"untied", 0, 0, CLI_MODEL_UNTIED},                                                                            \
    {                                                                                                                  \
        "rope-theta", 1, 0, CLI_MODEL_ROPE_THETA                                                                       \
    }

/* Applies one model option (code from the table, name for errors). 0, or 2 after a usage
 * error. Set c->n_kv_heads and c->attn_block to 0 before parsing: cli_model_finish makes
 * them "= heads" and "256, or the largest power of two dividing the context". */
int cli_model_option(const char *cmd, int code, const char *name, const char *value, model_config *c);
void cli_model_finish(model_config *c);

/* A default attention block (not given on the command line) also divides each of the pieces a
 * sequence of seq tokens is cut into (2 per rank, or the chunks of one process): halved until
 * it does. Nothing when pieces is 0 or does not divide seq (the caller's checks say why). */
void cli_model_fit_block(model_config *c, int seq, int pieces);

#endif
