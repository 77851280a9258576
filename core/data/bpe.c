#include "bpe.h"

#include "../base/status.h"

#include <stdlib.h>

typedef struct bpe_candidate {
    uint32_t rank;
    int32_t left;  /* index of the left symbol */
    int32_t right; /* index of the right symbol when pushed */
    uint16_t a, b; /* their ids when pushed; a change means the candidate is stale */
    uint16_t merged;
} bpe_candidate;

static uint32_t pair_hash(uint32_t key)
{
    key ^= key >> 16;
    key *= 0x7feb352dU;
    key ^= key >> 15;
    key *= 0x846ca68bU;
    key ^= key >> 16;
    return key;
}

int bpe_merges_init(bpe_merges *m, size_t expected)
{
    *m = (bpe_merges){0};
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->ranks = calloc(cap, sizeof *m->ranks);
    m->merged = calloc(cap, sizeof *m->merged);
    if (m->keys == NULL || m->ranks == NULL || m->merged == NULL) {
        bpe_merges_free(m);
        return WANCP_ERR_NOMEM;
    }
    m->cap = cap;
    return WANCP_OK;
}

static size_t slot_of(const bpe_merges *m, uint32_t key)
{
    size_t i = pair_hash(key) & (m->cap - 1);
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int bpe_merges_add(bpe_merges *m, uint16_t left, uint16_t right, uint32_t rank, uint16_t merged)
{
    uint32_t key = ((uint32_t)left << 16 | right) + 1;
    size_t i = slot_of(m, key);
    if (m->keys[i] == key)
        return 1;
    /* The table was sized for the expected count; keep it at most half full. */
    if ((m->count + 1) * 2 > m->cap)
        return WANCP_ERR_NOMEM;
    m->keys[i] = key;
    m->ranks[i] = rank;
    m->merged[i] = merged;
    m->count++;
    return 0;
}

int bpe_merges_find(const bpe_merges *m, uint16_t left, uint16_t right, uint32_t *rank, uint16_t *merged)
{
    if (m->cap == 0)
        return 0;
    uint32_t key = ((uint32_t)left << 16 | right) + 1;
    size_t i = slot_of(m, key);
    if (m->keys[i] != key)
        return 0;
    *rank = m->ranks[i];
    *merged = m->merged[i];
    return 1;
}

void bpe_merges_free(bpe_merges *m)
{
    free(m->keys);
    free(m->ranks);
    free(m->merged);
    *m = (bpe_merges){0};
}

void bpe_scratch_free(bpe_scratch *s)
{
    free(s->next);
    free(s->prev);
    free(s->heap);
    *s = (bpe_scratch){0};
}

static int scratch_reserve(bpe_scratch *s, size_t n)
{
    if (n <= s->cap)
        return WANCP_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *next = realloc(s->next, cap * sizeof *next);
    if (next != NULL)
        s->next = next;
    int32_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev != NULL)
        s->prev = prev;
    bpe_candidate *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap != NULL)
        s->heap = heap;
    if (next == NULL || prev == NULL || heap == NULL)
        return WANCP_ERR_NOMEM;
    s->cap = cap;
    return WANCP_OK;
}

static int before(const bpe_candidate *x, const bpe_candidate *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->left < y->left;
}

static void heap_push(bpe_candidate *heap, size_t *len, bpe_candidate c)
{
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&c, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static bpe_candidate heap_pop(bpe_candidate *heap, size_t *len)
{
    bpe_candidate top = heap[0], last = heap[--(*len)];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *len)
            break;
        if (child + 1 < *len && before(&heap[child + 1], &heap[child]))
            child++;
        if (!before(&heap[child], &last))
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (*len > 0)
        heap[i] = last;
    return top;
}

static void push_pair(const bpe_merges *m, bpe_candidate *heap, size_t *len, const uint16_t *ids, int32_t left,
                      int32_t right)
{
    bpe_candidate c = {.left = left, .right = right, .a = ids[left], .b = ids[right]};
    if (bpe_merges_find(m, c.a, c.b, &c.rank, &c.merged))
        heap_push(heap, len, c);
}

int bpe_apply(const bpe_merges *m, bpe_scratch *s, uint16_t *ids, size_t *n)
{
    size_t count = *n;
    if (count < 2)
        return WANCP_OK;
    if (count > INT32_MAX / 4)
        return WANCP_ERR_NOMEM;
    int rc = scratch_reserve(s, count);
    if (rc != WANCP_OK)
        return rc;
    int32_t *next = s->next, *prev = s->prev;
    for (size_t i = 0; i < count; i++) {
        next[i] = i + 1 < count ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
    }
    /* Each merge pushes at most two candidates: the heap never exceeds 3n entries. */
    size_t heap_len = 0;
    for (size_t i = 0; i + 1 < count; i++)
        push_pair(m, s->heap, &heap_len, ids, (int32_t)i, (int32_t)i + 1);

    while (heap_len > 0) {
        bpe_candidate c = heap_pop(s->heap, &heap_len);
        /* Stale when either side was merged away or changed since the push. A symbol that
         * was absorbed into its left neighbour has prev == -2. */
        if (prev[c.left] == -2 || next[c.left] != c.right || ids[c.left] != c.a || ids[c.right] != c.b)
            continue;
        ids[c.left] = c.merged;
        int32_t after = next[c.right];
        next[c.left] = after;
        if (after >= 0)
            prev[after] = c.left;
        prev[c.right] = -2;
        if (prev[c.left] >= 0)
            push_pair(m, s->heap, &heap_len, ids, prev[c.left], c.left);
        if (after >= 0)
            push_pair(m, s->heap, &heap_len, ids, c.left, after);
    }
    size_t out = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        ids[out++] = ids[i];
    *n = out;
    return WANCP_OK;
}
