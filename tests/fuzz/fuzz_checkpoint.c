/* libFuzzer: checkpoints, against a small model's shapes. Half the inputs (first byte odd)
 * get a correct trailing hash, so that the fields behind it are explored too. Refused with one
 * printable line naming the file, or accepted into the model. */
#include "fuzz_input.h"
#include "core/train/checkpoint.h"

enum { FLOATS = 40 };
static model m;
static float params[FLOATS], adam_m[FLOATS], adam_v[FLOATS];

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    m.cfg = model_config_default();
    m.cfg.n_layers = 1, m.cfg.dim = 8, m.cfg.n_heads = 2, m.cfg.n_kv_heads = 2, m.cfg.ffn_dim = 16;
    m.cfg.vocab = 16, m.cfg.context = 8, m.cfg.attn_block = 8;
    m.table.total = FLOATS;
    m.params = params, m.adam_m = adam_m, m.adam_v = adam_v;
    /* The seed: this model's own checkpoint (kept in the corpus folder by the first run). */
    char path[256], err[WANCP_ERRLEN];
    fuzz_path(path, sizeof path, "seed.ckpt");
    train_state s = {.step = 3, .data_pos = 77};
    if (checkpoint_save(path, &m, &s, err, sizeof err) != WANCP_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    if (size > 9 && (data[0] & 1)) {
        uint64_t h = fnv1a(copy, size - 8);
        for (int i = 0; i < 8; i++)
            copy[size - 8 + i] = (uint8_t)(h >> (8 * i));
    }
    fuzz_write("c.ckpt", copy, size);
    free(copy);
    char path[256], err[WANCP_ERRLEN];
    fuzz_path(path, sizeof path, "c.ckpt");
    train_state s;
    int rc = checkpoint_load(path, &m, &s, err, sizeof err);
    if (rc != WANCP_OK)
        fuzz_check_refusal(rc, err, "c.ckpt");
    return 0;
}
