#include "loader.h"

#include "../base/status.h"

#include <stdlib.h>
#include <string.h>

int loader_open(loader *l, const char *path, int vocab, int batch, int seq, char *err, size_t errlen)
{
    *l = (loader){.batch = batch, .seq = seq};
    int rc = shard_read(path, vocab, &l->tokens, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    size_t need = (size_t)batch * seq + 1;
    if (l->tokens.count < need) {
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %zu tokens, fewer than one batch needs (%d x %d + 1)", path,
                        l->tokens.count, batch, seq);
        loader_free(l);
        return rc;
    }
    l->inputs = malloc((need - 1) * sizeof *l->inputs);
    l->targets = malloc((need - 1) * sizeof *l->targets);
    if (l->inputs == NULL || l->targets == NULL) {
        loader_free(l);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
    }
    return WANCP_OK;
}

void loader_start_at_seed(loader *l, uint64_t seed)
{
    const size_t n = (size_t)l->batch * l->seq, starts = l->tokens.count - n; /* pos + n + 1 <= count */
    const uint64_t weyl = (seed - 1) * 0x9E3779B97F4A7C15ull;                 /* 2^64 / phi, odd */
    const double fraction = (double)(weyl >> 11) * 0x1p-53;
    l->pos = (size_t)(fraction * (double)starts);
    if (l->pos >= starts)
        l->pos = starts - 1;
}

void loader_next(loader *l)
{
    size_t n = (size_t)l->batch * l->seq;
    if (l->pos + n + 1 > l->tokens.count)
        l->pos = 0;
    memcpy(l->inputs, l->tokens.tokens + l->pos, n * sizeof *l->inputs);
    memcpy(l->targets, l->tokens.tokens + l->pos + 1, n * sizeof *l->targets);
    l->pos += n;
}

void loader_free(loader *l)
{
    shard_free(&l->tokens);
    free(l->inputs);
    free(l->targets);
    *l = (loader){0};
}
