#ifndef WANCP_STRMAP_H
#define WANCP_STRMAP_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * A hash map from byte strings to 64-bit values, with open addressing. Keys are copied
 * into one arena owned by the map. Used for the tokenizer's vocabulary and its cache of
 * already-merged pre-tokens. Zero-initialise to start; free with strmap_free.
 */
typedef struct strmap_slot {
    uint64_t hash;   /* 0 marks an empty slot */
    uint64_t value;
    uint32_t key_off;
    uint32_t key_len;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots; /* (cap,) cap a power of two */
    size_t cap;
    size_t count;
    bytebuf keys;
} strmap;

/* Inserts or overwrites. 0 or WANCP_ERR_NOMEM. */
int strmap_put(strmap *m, const void *key, size_t len, uint64_t value);

/* 1 and *value when found, 0 when not. */
int strmap_get(const strmap *m, const void *key, size_t len, uint64_t *value);

/* Forgets every entry, keeping the memory. */
void strmap_clear(strmap *m);

void strmap_free(strmap *m);

#endif
