#ifndef WANCP_SHARD_H
#define WANCP_SHARD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Token shards in llm.c's .bin format, so FineWeb shards prepared for llm.c work as is:
 *   header: 256 little-endian int32; [0] = 20240520 (magic), [1] = 1 (version: uint16
 *           tokens), [2] = token count; the rest is zero when we write it, ignored on read
 *   body:   token count x uint16 token ids
 */
#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)

typedef struct shard {
    uint16_t *tokens; /* (count,) owned; free with shard_free */
    size_t count;
} shard;

/* Validates a whole shard image: magic, version, count against the image size, and every
 * token < vocab_size. name is what errors call the input (usually its path). On success
 * out->tokens is a fresh copy. */
int shard_parse(const uint8_t *image, size_t len, const char *name, int vocab_size, shard *out,
                char *err, size_t errlen);

/* Reads and validates path (see shard_parse). */
int shard_read(const char *path, int vocab_size, shard *out, char *err, size_t errlen);

/* Writes tokens to path atomically (temporary file, fsync, rename). An empty shard is
 * refused: nothing could train on it. */
int shard_write(const char *path, const uint16_t *tokens, size_t count, char *err, size_t errlen);

void shard_free(shard *s);

#endif
