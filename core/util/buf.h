#ifndef WANCP_BUF_H
#define WANCP_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte string. Owns data; free with bytebuf_free. Zero-initialise to start. */
typedef struct bytebuf {
    uint8_t *data;
    size_t len;
    size_t cap;
} bytebuf;

/* A growable array of token ids (uint16: GPT-2's 50257 ids fit, as in llm.c's shards). */
typedef struct tokbuf {
    uint16_t *data;
    size_t len;
    size_t cap;
} tokbuf;

int bytebuf_append(bytebuf *b, const void *src, size_t n); /* 0 or WANCP_ERR_NOMEM */
int bytebuf_reserve(bytebuf *b, size_t cap);
void bytebuf_free(bytebuf *b);

int tokbuf_push(tokbuf *t, uint16_t id);
int tokbuf_append(tokbuf *t, const uint16_t *ids, size_t n);
void tokbuf_free(tokbuf *t);

/* Reads a whole file into out (which must be empty). A missing or unreadable file is
 * WANCP_ERR_INPUT with the path and the OS reason in err. A NUL is kept after the data
 * (not counted in len) so text parsers may treat it as a C string. */
int file_read_all(const char *path, bytebuf *out, char *err, size_t errlen);

/* Writes data to path atomically: a temporary file beside it, fsync, rename. A killed
 * writer leaves either the old file or the new one, never half of one. */
int file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Same, from several pieces written in order (header and body without a copy). */
int file_write_atomic_parts(const char *path, const void *const *parts, const size_t *lens,
                            size_t nparts, char *err, size_t errlen);

#endif
