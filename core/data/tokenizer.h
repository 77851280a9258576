#ifndef WANCP_TOKENIZER_H
#define WANCP_TOKENIZER_H

#include "../util/buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Text -> token ids and back.
 *
 * gpt2:  GPT-2's byte-level BPE, loaded from its encoder.json (token -> id) and vocab.bpe
 *        (merges in rank order). Pre-tokenized by GPT-2's pattern, written for PCRE2 with
 *        the same character classes as JavaScript's /u regexes, so that ids agree
 *        token-for-token with the npm gpt-3-encoder reference. Vocabulary 50257; id 50256
 *        is <|endoftext|>, used between documents and never produced from text.
 * bytes: one token per byte; vocabulary 256; no end-of-text token.
 *
 * Any byte string encodes, valid UTF-8 or not (bytes the pattern cannot match become
 * pre-tokens of their own), and decode(encode(x)) == x always.
 *
 * A tokenizer is not thread-safe: encode keeps a cache of merged pre-tokens and scratch
 * space. Use one per thread.
 */
typedef struct tokenizer tokenizer;

enum tokenizer_kind { TOKENIZER_BYTES, TOKENIZER_GPT2 };

/* Loads GPT-2's tokenizer from dir/encoder.json and dir/vocab.bpe. Errors name the file
 * and line. */
int tokenizer_open_gpt2(tokenizer **out, const char *dir, char *err, size_t errlen);

int tokenizer_open_bytes(tokenizer **out, char *err, size_t errlen);

void tokenizer_free(tokenizer *t);

enum tokenizer_kind tokenizer_kind_of(const tokenizer *t);
const char *tokenizer_name(const tokenizer *t); /* "gpt2" or "bytes" */
int tokenizer_vocab_size(const tokenizer *t);
int tokenizer_eot(const tokenizer *t); /* the end-of-text id, or -1 when there is none */

/* Appends the ids of text[0..len) to out. */
int tokenizer_encode(tokenizer *t, const uint8_t *text, size_t len, tokbuf *out, char *err, size_t errlen);

/* Appends the bytes of ids to out; an id outside the vocabulary is WANCP_ERR_INPUT. */
int tokenizer_decode(const tokenizer *t, const uint16_t *ids, size_t n, bytebuf *out, char *err,
                     size_t errlen);

/* For tests: the merge table and the single-byte token of b (gpt2 only). */
struct bpe_merges;
const struct bpe_merges *tokenizer_merges(const tokenizer *t);
uint16_t tokenizer_byte_id(const tokenizer *t, uint8_t b);

#endif
