#ifndef WANCP_CORPUS_H
#define WANCP_CORPUS_H

#include "../util/buf.h"

#include <stddef.h>

/*
 * A list of documents (byte strings with a name), kept in two arenas. Documents are the
 * unit of the train/validation split and are separated by the end-of-text token in shards.
 * Zero-initialise to start; free with corpus_free.
 */
typedef struct corpus_doc {
    size_t text_off, text_len;
    size_t name_off, name_len;
} corpus_doc;

typedef struct corpus {
    bytebuf text;
    bytebuf names;
    corpus_doc *docs; /* (count,) */
    size_t count, cap;
} corpus;

int corpus_add(corpus *c, const char *name, const void *text, size_t len);

/* The text and name of document i (not NUL-terminated; use the lengths). */
const uint8_t *corpus_text(const corpus *c, size_t i, size_t *len);
const char *corpus_name(const corpus *c, size_t i, size_t *len);

/* Appends documents from path: a .jsonl file holds one JSON object per line with a string
 * "text" (and optionally "id"), as FineWeb-style dumps do; any other file is one document.
 * Errors name path and line. */
int corpus_load(corpus *c, const char *path, char *err, size_t errlen);

/* Writes every document as a JSONL line {"id": name, "text": text}, atomically. */
int corpus_write_jsonl(const corpus *c, const char *path, char *err, size_t errlen);

/* The deterministic train/validation split: with val_every = 10, documents 9, 19, 29, ...
 * (every tenth, counting from 0) are held out, 10% as in the paper, spread over the whole
 * corpus (for Brown: over every genre). val_every = 0 holds out nothing. */
int corpus_is_validation(size_t doc_index, unsigned val_every);

/* Encodes every document, each preceded by the end-of-text token where the tokenizer has
 * one (as llm.c's shards are), into train or val by corpus_is_validation. */
struct tokenizer;
typedef void corpus_progress_fn(void *ctx, size_t docs_done, size_t docs_total);
int corpus_encode(const corpus *c, struct tokenizer *t, unsigned val_every, tokbuf *train, tokbuf *val,
                  corpus_progress_fn *progress, void *progress_ctx, char *err, size_t errlen);

void corpus_free(corpus *c);

#endif
