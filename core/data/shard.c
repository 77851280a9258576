#include "shard.h"

#include "../base/status.h"
#include "../util/buf.h"

#include <stdlib.h>
#include <string.h>

static int32_t read_le32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

int shard_parse(const uint8_t *image, size_t len, const char *name, int vocab_size, shard *out, char *err,
                size_t errlen)
{
    *out = (shard){0};
    if (len < SHARD_HEADER_BYTES)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: truncated: %zu bytes, shorter than the %d-byte header",
                          name, len, SHARD_HEADER_BYTES);
    int32_t magic = read_le32(image), version = read_le32(image + 4), count = read_le32(image + 8);
    if (magic != SHARD_MAGIC)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: bad magic %d (expected %d: an llm.c token shard)", name,
                          magic, SHARD_MAGIC);
    if (version != SHARD_VERSION)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: unsupported version %d (expected %d: uint16 tokens)", name,
                          version, SHARD_VERSION);
    if (count <= 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: token count %d in header (need > 0)", name, count);
    size_t body = len - SHARD_HEADER_BYTES;
    if (body != (size_t)count * 2)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "%s: %s: header says %d tokens (%zu bytes) but %zu bytes follow the header", name,
                          body < (size_t)count * 2 ? "truncated" : "trailing bytes", count, (size_t)count * 2, body);
    const uint8_t *p = image + SHARD_HEADER_BYTES;
    for (size_t i = 0; i < (size_t)count; i++) {
        unsigned id = (unsigned)p[2 * i] | (unsigned)p[2 * i + 1] << 8;
        if (id >= (unsigned)vocab_size)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: token %zu is %u, outside the vocabulary of %d", name,
                              i, id, vocab_size);
    }
    out->tokens = malloc((size_t)count * sizeof *out->tokens);
    if (out->tokens == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory for %d tokens", name, count);
    for (size_t i = 0; i < (size_t)count; i++)
        out->tokens[i] = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    out->count = (size_t)count;
    return WANCP_OK;
}

int shard_read(const char *path, int vocab_size, shard *out, char *err, size_t errlen)
{
    bytebuf image = {0};
    int rc = file_read_all(path, &image, err, errlen);
    if (rc == WANCP_OK)
        rc = shard_parse(image.data, image.len, path, vocab_size, out, err, errlen);
    bytebuf_free(&image);
    return rc;
}

int shard_write(const char *path, const uint16_t *tokens, size_t count, char *err, size_t errlen)
{
    if (count == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: refusing to write an empty shard", path);
    if (count > INT32_MAX)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %zu tokens do not fit one shard (max %d); split the input",
                          path, count, INT32_MAX);
    uint8_t header[SHARD_HEADER_BYTES] = {0};
    const uint32_t fields[3] = {SHARD_MAGIC, SHARD_VERSION, (uint32_t)count};
    for (int f = 0; f < 3; f++)
        for (int b = 0; b < 4; b++)
            header[4 * f + b] = (uint8_t)(fields[f] >> (8 * b));
    /* Tokens go out little-endian; on a big-endian host they would need a swap first. */
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards are little-endian");
    const void *parts[2] = {header, tokens};
    size_t lens[2] = {sizeof header, count * sizeof *tokens};
    return file_write_atomic_parts(path, parts, lens, 2, err, errlen);
}

void shard_free(shard *s)
{
    free(s->tokens);
    *s = (shard){0};
}
