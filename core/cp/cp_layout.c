#include "cp_layout.h"

#include <stddef.h>

void cp_chunks_of(const cp_layout *l, int rank, int chunks[2])
{
    if (l->kind == CP_ZIGZAG) {
        chunks[0] = rank;
        chunks[1] = 2 * l->ranks - 1 - rank;
    } else {
        chunks[0] = 2 * rank;
        chunks[1] = 2 * rank + 1;
    }
}

int cp_owner(const cp_layout *l, int chunk)
{
    if (l->kind == CP_CONTIGUOUS)
        return chunk / 2;
    return chunk < l->ranks ? chunk : 2 * l->ranks - 1 - chunk;
}

bool cp_rank_needs(const cp_layout *l, int rank, int chunk)
{
    int mine[2];
    cp_chunks_of(l, rank, mine);
    return cp_needs(mine[0], chunk) || cp_needs(mine[1], chunk);
}

void cp_positions(const cp_layout *l, int rank, int32_t *pos)
{
    int mine[2];
    cp_chunks_of(l, rank, mine);
    for (int c = 0; c < 2; c++)
        for (int t = 0; t < l->chunk; t++)
            pos[c * l->chunk + t] = mine[c] * l->chunk + t;
}

long long cp_causal_pairs(const cp_layout *l, int rank)
{
    int32_t pos[2 * 65536];
    if (l->chunk > 65536)
        return -1;
    cp_positions(l, rank, pos);
    long long pairs = 0;
    for (int i = 0; i < 2 * l->chunk; i++)
        pairs += pos[i] + 1; /* a query at position t sees t + 1 keys */
    return pairs;
}

void cp_select_tokens(const cp_layout *l, int rank, const uint16_t *full, int batch, uint16_t *local)
{
    int mine[2];
    cp_chunks_of(l, rank, mine);
    const int n = 2 * l->ranks * l->chunk;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < 2; c++)
            for (int t = 0; t < l->chunk; t++)
                local[(size_t)b * 2 * l->chunk + (size_t)c * l->chunk + t] =
                    full[(size_t)b * n + (size_t)mine[c] * l->chunk + t];
}
