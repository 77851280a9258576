#include "strmap.h"

#include "../base/status.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: short keys, good enough spread */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

static strmap_slot *find_slot(strmap_slot *slots, size_t cap, const bytebuf *keys, uint64_t h, const void *key,
                              size_t len)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        strmap_slot *s = &slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->key_len == len && (len == 0 || memcmp(keys->data + s->key_off, key, len) == 0))
            return s;
    }
}

static int rehash(strmap *m, size_t cap)
{
    strmap_slot *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return WANCP_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        const strmap_slot *s = &m->slots[i];
        if (s->hash == 0)
            continue;
        size_t j = s->hash & (cap - 1);
        while (slots[j].hash != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return WANCP_OK;
}

int strmap_put(strmap *m, const void *key, size_t len, uint64_t value)
{
    if ((m->count + 1) * 2 > m->cap) {
        int rc = rehash(m, m->cap ? m->cap * 2 : 1024);
        if (rc != WANCP_OK)
            return rc;
    }
    uint64_t h = hash_bytes(key, len);
    strmap_slot *s = find_slot(m->slots, m->cap, &m->keys, h, key, len);
    if (s->hash != 0) {
        s->value = value;
        return WANCP_OK;
    }
    if (m->keys.len + len > UINT32_MAX)
        return WANCP_ERR_NOMEM;
    uint32_t off = (uint32_t)m->keys.len;
    int rc = bytebuf_append(&m->keys, key, len);
    if (rc != WANCP_OK)
        return rc;
    *s = (strmap_slot){.hash = h, .value = value, .key_off = off, .key_len = (uint32_t)len};
    m->count++;
    return WANCP_OK;
}

int strmap_get(const strmap *m, const void *key, size_t len, uint64_t *value)
{
    if (m->count == 0)
        return 0;
    uint64_t h = hash_bytes(key, len);
    const strmap_slot *s = find_slot(m->slots, m->cap, &m->keys, h, key, len);
    if (s->hash == 0)
        return 0;
    *value = s->value;
    return 1;
}

void strmap_clear(strmap *m)
{
    if (m->slots != NULL)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->keys.len = 0;
}

void strmap_free(strmap *m)
{
    free(m->slots);
    bytebuf_free(&m->keys);
    *m = (strmap){0};
}
