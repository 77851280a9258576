#include "checkpoint.h"

#include "../base/status.h"
#include "../util/buf.h"

#include <stdlib.h>
#include <string.h>

#define CHECKPOINT_MAGIC "WANCPCKP"
#define CHECKPOINT_VERSION 3u
#define CHECKPOINT_HEADER 256u

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV_OFFSET 1469598103934665603ull

/* The config fields in file order, with the names errors use. */
typedef struct config_field {
    const char *name;
    int is_float;
    size_t offset; /* in model_config */
} config_field;

#define INT_FIELD(f)                                                                                                   \
    {                                                                                                                  \
#f, 0, offsetof(model_config, f)                                                                               \
    }
#define FLOAT_FIELD(f)                                                                                                 \
    {                                                                                                                  \
#f, 1, offsetof(model_config, f)                                                                               \
    }
static const config_field FIELDS[] = {
    INT_FIELD(n_layers),   INT_FIELD(dim),     INT_FIELD(n_heads),    INT_FIELD(n_kv_heads), INT_FIELD(ffn_dim),
    INT_FIELD(vocab),      INT_FIELD(context), INT_FIELD(attn_block), INT_FIELD(tied_head),  FLOAT_FIELD(rope_theta),
    FLOAT_FIELD(norm_eps), INT_FIELD(psi_k),   INT_FIELD(rank_k),     INT_FIELD(rank_v),     INT_FIELD(kv_bases),
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS[0])

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int checkpoint_save(const char *path, const model *m, const train_state *s, char *err, size_t errlen)
{
    uint8_t header[CHECKPOINT_HEADER] = {0};
    memcpy(header, CHECKPOINT_MAGIC, 8);
    put32(header + 8, CHECKPOINT_VERSION);
    put32(header + 12, CHECKPOINT_HEADER);
    for (size_t i = 0; i < NFIELDS; i++)
        memcpy(header + 16 + 4 * i, (const char *)&m->cfg + FIELDS[i].offset, 4);
    uint8_t *p = header + 16 + 4 * NFIELDS;
    put64(p, s->step);
    put64(p + 8, s->data_pos);
    for (int i = 0; i < 4; i++)
        put64(p + 16 + 8 * i, s->rng.s[i]);
    put64(p + 48, m->table.total);
    size_t bytes = m->table.total * sizeof(float);
    uint64_t h = fnv1a(FNV_OFFSET, header, sizeof header);
    h = fnv1a(h, m->params, bytes);
    h = fnv1a(h, m->adam_m, bytes);
    h = fnv1a(h, m->adam_v, bytes);
    uint8_t trailer[8];
    put64(trailer, h);
    const void *parts[5] = {header, m->params, m->adam_m, m->adam_v, trailer};
    size_t lens[5] = {sizeof header, bytes, bytes, bytes, sizeof trailer};
    return file_write_atomic_parts(path, parts, lens, 5, err, errlen);
}

int checkpoint_load(const char *path, model *m, train_state *s, char *err, size_t errlen)
{
    bytebuf file = {0};
    int rc = file_read_all(path, &file, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    const uint8_t *d = file.data;
    size_t bytes = m->table.total * sizeof(float), want = CHECKPOINT_HEADER + 3 * bytes + 8;
    if (file.len < CHECKPOINT_HEADER + 8 || memcmp(d, CHECKPOINT_MAGIC, 8) != 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: not a wancp checkpoint (field magic)", path);
    /* The hash first: a flipped byte anywhere is corruption, not a field that disagrees
     * (a file shorter than its own header says is called truncated). */
    else if (fnv1a(FNV_OFFSET, d, file.len - 8) != get64(d + file.len - 8)) {
        uint64_t floats = get64(d + 16 + 4 * NFIELDS + 48);
        uint64_t said = floats < (UINT64_MAX - CHECKPOINT_HEADER - 8) / 12 ? CHECKPOINT_HEADER + 12 * floats + 8 : 0;
        if (file.len < said)
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: truncated: %zu bytes, its header says %llu", path,
                            file.len, (unsigned long long)said);
        else
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field checksum does not match the contents (corrupt)",
                            path);
    } else if (get32(d + 8) != CHECKPOINT_VERSION)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field version is %u, this wancp reads %u", path,
                        get32(d + 8), CHECKPOINT_VERSION);
    else if (get32(d + 12) != CHECKPOINT_HEADER)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field header_bytes is %u, expected %u", path, get32(d + 12),
                        CHECKPOINT_HEADER);
    for (size_t i = 0; i < NFIELDS && rc == WANCP_OK; i++) {
        const uint8_t *stored = d + 16 + 4 * i;
        const char *mine = (const char *)&m->cfg + FIELDS[i].offset;
        if (memcmp(stored, mine, 4) == 0)
            continue;
        if (FIELDS[i].is_float) {
            float a, b;
            memcpy(&a, stored, 4);
            memcpy(&b, mine, 4);
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field %s is %g but this run has %g", path,
                            FIELDS[i].name, (double)a, (double)b);
        } else {
            int32_t a, b;
            memcpy(&a, stored, 4);
            memcpy(&b, mine, 4);
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field %s is %d but this run has %d", path,
                            FIELDS[i].name, a, b);
        }
    }
    const uint8_t *p = d + 16 + 4 * NFIELDS;
    if (rc == WANCP_OK && get64(p + 48) != m->table.total)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: field param_floats is %llu but this model has %zu", path,
                        (unsigned long long)get64(p + 48), m->table.total);
    if (rc == WANCP_OK && file.len != want)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %s: %zu bytes, expected %zu", path,
                        file.len < want ? "truncated" : "trailing bytes", file.len, want);
    if (rc == WANCP_OK) {
        s->step = get64(p);
        s->data_pos = get64(p + 8);
        for (int i = 0; i < 4; i++)
            s->rng.s[i] = get64(p + 16 + 8 * i);
        memcpy(m->params, d + CHECKPOINT_HEADER, bytes);
        memcpy(m->adam_m, d + CHECKPOINT_HEADER + bytes, bytes);
        memcpy(m->adam_v, d + CHECKPOINT_HEADER + 2 * bytes, bytes);
    }
    bytebuf_free(&file);
    return rc;
}
