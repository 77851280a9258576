/* Rank 0's metrics CSV read back, and METHOD.md section 5 for the run it describes. */
#include "results.h"

#include "../../core/cp/cp_message.h"
#include "../../core/base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "key=value" in a header line, as an int (missing: keeps *out). */
static void header_int(const char *line, const char *key, int *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (p != NULL)
        *out = atoi(p + strlen(pat));
}

static void header_word(const char *line, const char *key, char *out, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (p != NULL)
        snprintf(out, len, "%.*s", (int)strcspn(p + strlen(pat), " \n"), p + strlen(pat));
}

static void read_header(metrics_file *m, const char *line)
{
    if (strncmp(line, "# model:", 8) == 0) {
        header_int(line, "layers", &m->layers);
        header_int(line, "dim", &m->dim);
        header_int(line, "heads", &m->heads);
        header_int(line, "kv_heads", &m->kv_heads);
    } else if (strncmp(line, "# data:", 7) == 0) {
        header_int(line, "batch", &m->batch);
        header_int(line, "seq", &m->seq);
    } else if (strncmp(line, "# cp:", 5) == 0) {
        header_int(line, "ranks", &m->ranks);
        header_int(line, "sync_every", &m->sync_every);
        header_word(line, "sync", m->sync, sizeof m->sync);
        header_word(line, "layout", m->layout, sizeof m->layout);
        header_word(line, "wire", m->wire, sizeof m->wire);
        header_word(line, "kv", m->kv, sizeof m->kv);
    } else if (strncmp(line, "# compression:", 14) == 0) {
        header_int(line, "psi_k", &m->psi_k); /* totals over a layer's bases (and files before "# method:") */
        header_int(line, "rank_k", &m->rank_k);
        header_int(line, "rank_v", &m->rank_v);
        header_int(line, "compress_last", &m->compress_last);
    } else if (strncmp(line, "# method:", 9) == 0) { /* the run-options table's keys */
        char regather[8] = "";
        header_word(line, "cp_layout", m->layout, sizeof m->layout);
        header_word(line, "wire", m->wire, sizeof m->wire);
        header_word(line, "kv_regather", regather, sizeof regather);
        if (regather[0])
            snprintf(m->kv, sizeof m->kv, "%s", strcmp(regather, "true") == 0 ? "regathered" : "cached");
        if (m->rank_k == 0) { /* files whose compression line had no totals: one basis per layer */
            header_int(line, "psi_k", &m->psi_k);
            header_int(line, "rank_k", &m->rank_k);
            header_int(line, "rank_v", &m->rank_v);
        }
    }
}

enum column {
    C_STEP,
    C_WALL,
    C_TRAIN,
    C_VAL,
    C_STEP_MS,
    C_KV_FWD,
    C_KV_BWD,
    C_SYNC,
    C_CONTROL,
    C_COMPRESSED,
    C_COMM_MS,
    C_FWD_WAIT,
    C_BWD_WAIT,
    C_SYNC_WAIT,
    C_UNIX,
    NCOLUMNS
};
static const char *const COLUMN_NAMES[NCOLUMNS] = {"step",
                                                   "wall_s",
                                                   "train_loss",
                                                   "val_loss",
                                                   "step_ms",
                                                   "kv_fwd_tx_bytes",
                                                   "kv_bwd_tx_bytes",
                                                   "sync_tx_bytes",
                                                   "control_tx_bytes",
                                                   "compressed",
                                                   "comm_ms",
                                                   "kv_fwd_wait_ms",
                                                   "kv_bwd_wait_ms",
                                                   "sync_wait_ms",
                                                   "unix_s"};

/* Which field holds each column; -1 for columns an older file lacks. */
static int map_columns(const char *header, int where[NCOLUMNS])
{
    for (int c = 0; c < NCOLUMNS; c++)
        where[c] = -1;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", header);
    int field = 0;
    for (char *save, *tok = strtok_r(buf, ",\r\n", &save); tok != NULL; tok = strtok_r(NULL, ",\r\n", &save), field++)
        for (int c = 0; c < NCOLUMNS; c++)
            if (strcmp(tok, COLUMN_NAMES[c]) == 0)
                where[c] = field;
    return where[C_STEP] == 0 && where[C_STEP_MS] > 0 && where[C_VAL] > 0 && where[C_KV_FWD] > 0 ? 0 : -1;
}

/* Splits a data line at commas into fields (empty fields are NAN). */
static int split(char *line, double *v, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *end;
        double x = strtod(p, &end);
        v[n++] = end == p ? NAN : x;
        p = strchr(end, ',');
        if (p == NULL)
            break;
        p++;
    }
    return n;
}

int metrics_read(metrics_file *m, const char *path, char *err, size_t errlen)
{
    *m = (metrics_file){.ranks = 1};
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open", path);
    char line[4096];
    int where[NCOLUMNS], have_columns = 0, cap = 0, lineno = 0, rc = WANCP_OK;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n')
            break; /* the last line of a run that was killed while writing it */
        if (line[0] == '#') {
            read_header(m, line);
            continue;
        }
        if (!have_columns) {
            if (map_columns(line, where) != 0) {
                rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: not a wancp metrics header", path, lineno);
                break;
            }
            have_columns = 1;
            continue;
        }
        double v[64];
        int nf = split(line, v, 64);
        if (nf <= where[C_KV_FWD] || !isfinite(v[0])) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: a row with %d fields", path, lineno, nf);
            break;
        }
        if (!(v[0] >= 0 && v[0] <= 1e9 && v[0] == floor(v[0]))) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: step %g is not a step number", path, lineno, v[0]);
            break;
        }
        const int counts[] = {C_KV_FWD, C_KV_BWD, C_SYNC, C_CONTROL};
        for (size_t k = 0; k < sizeof counts / sizeof counts[0] && rc == WANCP_OK; k++) {
            int c = where[counts[k]];
            if (c >= 0 && c < nf && isfinite(v[c]) && !(v[c] >= 0 && v[c] < 9e18))
                rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: %g is not a byte count", path, lineno, v[c]);
        }
        if (rc != WANCP_OK)
            break;
        if (m->nrows == cap) {
            cap = cap ? 2 * cap : 256;
            metrics_row *grown = realloc(m->rows, (size_t)cap * sizeof *grown);
            if (grown == NULL) {
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
                break;
            }
            m->rows = grown;
        }
#define COL(c) (where[c] >= 0 && where[c] < nf ? v[where[c]] : NAN)
#define BYTES(c) (isfinite(COL(c)) ? (uint64_t)COL(c) : 0)
        m->rows[m->nrows++] = (metrics_row){.step = (int)v[0],
                                            .wall_s = COL(C_WALL),
                                            .train_loss = COL(C_TRAIN),
                                            .val_loss = COL(C_VAL),
                                            .step_ms = COL(C_STEP_MS),
                                            .comm_ms = COL(C_COMM_MS),
                                            .kv_fwd_wait_ms = COL(C_FWD_WAIT),
                                            .kv_bwd_wait_ms = COL(C_BWD_WAIT),
                                            .sync_wait_ms = COL(C_SYNC_WAIT),
                                            .unix_s = COL(C_UNIX),
                                            .kv_fwd_tx = BYTES(C_KV_FWD),
                                            .kv_bwd_tx = BYTES(C_KV_BWD),
                                            .sync_tx = BYTES(C_SYNC),
                                            .control_tx = BYTES(C_CONTROL),
                                            .compressed = COL(C_COMPRESSED) > 0.5};
#undef COL
#undef BYTES
    }
    fclose(f);
    if (rc == WANCP_OK && !have_columns)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no metrics header line", path);
    if (rc != WANCP_OK)
        metrics_free(m);
    return rc;
}

void metrics_free(metrics_file *m)
{
    free(m->rows);
    m->rows = NULL;
    m->nrows = 0;
}

void metrics_kv_formula(const metrics_file *m, int rank, bool compressed, uint64_t *fwd, uint64_t *bwd)
{
    *fwd = *bwd = 0;
    const int P = m->ranks;
    if (P < 2 || m->heads <= 0 || strcmp(m->layout, "zigzag") != 0)
        return;
    cp_message_shape shape = {.chunk = (uint64_t)m->seq / (2u * (unsigned)P),
                              .d_kv = m->kv_heads * (m->dim / m->heads),
                              .rank_k = m->rank_k,
                              .rank_v = m->rank_v,
                              .psi_k = m->psi_k,
                              .wire_bytes = strcmp(m->wire, "bf16") == 0 ? 2 : 4,
                              .compressed = false};
    const uint64_t mu0 = cp_kv_message_bytes(&shape);
    shape.compressed = true;
    const uint64_t mu = cp_kv_message_bytes(&shape);
    uint64_t per_sequence = 0;
    for (int l = 0; l < m->layers; l++)
        per_sequence += compressed && (l + 1 < m->layers || m->compress_last) ? mu : mu0;
    const uint64_t per = per_sequence * (uint64_t)m->batch;
    const uint64_t gathers = strcmp(m->kv, "regathered") == 0 ? 2 : 1;
    *fwd = gathers * (uint64_t)(P - 1 + rank) * per;
    *bwd = (uint64_t)(P - 1 + P - 1 - rank) * per;
}
