#ifndef WANCP_CHECKPOINT_H
#define WANCP_CHECKPOINT_H

#include "../model/model.h"
#include "../util/rng.h"

#include <stdint.h>

/*
 * Training checkpoints: everything a run needs to continue bitwise as if never stopped.
 *
 *   bytes 0..7     "WANCPCKP"
 *   8              uint32 version (1)
 *   12             uint32 header size in bytes (256)
 *   16             model config: layers, dim, heads, kv_heads, ffn_dim, vocab, context,
 *                  attn_block, tied_head (int32 each), rope_theta, norm_eps (float32)
 *   60             uint64 step (steps done), uint64 data position, uint64 rng[4],
 *                  uint64 parameter floats
 *   ..256          zero
 *   header         parameters, AdamW first moments, second moments (float32 each)
 *   end - 8        uint64 FNV-1a hash of every byte before it
 *
 * Little-endian. Written to a temporary file, fsynced and renamed.
 */
typedef struct train_state {
    uint64_t step;     /* optimizer steps done */
    uint64_t data_pos; /* the training loader's position */
    rng rng;
} train_state;

int checkpoint_save(const char *path, const model *m, const train_state *s, char *err, size_t errlen);

/* Loads into m, which must have been built with the same config (every field is checked,
 * and a mismatch names the field); checks size and hash. On error m is unchanged. */
int checkpoint_load(const char *path, model *m, train_state *s, char *err, size_t errlen);

#endif
