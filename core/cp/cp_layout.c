#include "cp_layout.h"

#include <stddef.h>

void cp_chunks_of(const cp_layout *l, int rank, int chunks[CP_MAX_LOCAL])
{
    const int n = cp_local_count(l);
    if (l->kind == CP_ZIGZAG) {
        chunks[0] = rank;
        chunks[1] = 2 * l->ranks - 1 - rank;
        return;
    }
    for (int i = 0; i < n; i++)
        chunks[i] = rank * n + i;
}

int cp_owner(const cp_layout *l, int chunk)
{
    if (l->kind == CP_CONTIGUOUS)
        return chunk / cp_local_count(l);
    return chunk < l->ranks ? chunk : 2 * l->ranks - 1 - chunk;
}

bool cp_rank_needs(const cp_layout *l, int rank, int chunk)
{
    int mine[CP_MAX_LOCAL];
    cp_chunks_of(l, rank, mine);
    return cp_needs(mine[cp_local_count(l) - 1], chunk); /* its last chunk is its latest */
}

void cp_positions(const cp_layout *l, int rank, int32_t *pos)
{
    int mine[CP_MAX_LOCAL];
    cp_chunks_of(l, rank, mine);
    for (int c = 0; c < cp_local_count(l); c++)
        for (int t = 0; t < l->chunk; t++)
            pos[c * l->chunk + t] = mine[c] * l->chunk + t;
}

long long cp_causal_pairs(const cp_layout *l, int rank)
{
    int mine[CP_MAX_LOCAL];
    cp_chunks_of(l, rank, mine);
    long long pairs = 0;
    for (int c = 0; c < cp_local_count(l); c++)
        for (long long t = 0; t < l->chunk; t++)
            pairs += (long long)mine[c] * l->chunk + t + 1; /* a query at position t sees t + 1 keys */
    return pairs;
}

void cp_select_tokens(const cp_layout *l, int rank, const uint16_t *full, int batch, uint16_t *local)
{
    int mine[CP_MAX_LOCAL];
    cp_chunks_of(l, rank, mine);
    const int n = cp_total_chunks(l) * l->chunk, per = cp_local_count(l);
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < per; c++)
            for (int t = 0; t < l->chunk; t++)
                local[(size_t)b * per * l->chunk + (size_t)c * l->chunk + t] =
                    full[(size_t)b * n + (size_t)mine[c] * l->chunk + t];
}
