#include "tokenizer.h"

#include "../base/status.h"
#include "bpe.h"
#include "byte_unicode.h"
#include "../util/strmap.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * GPT-2's pre-tokenizer pattern as gpt-3-encoder runs it in JavaScript:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+   (flags gu)
 * JavaScript's \s is not PCRE2's: it includes U+FEFF and excludes U+0085, so \s and \S are
 * spelled out here as the exact set JavaScript uses.
 */
#define JS_SPACE                                                                                                       \
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"                                        \
    "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" JS_SPACE "\\p{L}\\p{N}]+"
                                   "|[" JS_SPACE "]+(?![^" JS_SPACE "])|[" JS_SPACE "]+";

#define GPT2_EOT_TEXT "<|endoftext|>"
/* Pre-tokens longer than this are merged every time instead of cached: they are rare, and
 * caching them would let one long run of spaces fill the cache. */
#define CACHE_MAX_PIECE 256
/* The cache is emptied when it holds this many pre-tokens, bounding its memory on huge
 * corpora (about 100 MB at this size). */
#define CACHE_MAX_ENTRIES (1u << 20)

struct tokenizer {
    enum tokenizer_kind kind;
    int vocab_size;
    int eot;

    /* gpt2 only */
    bytebuf vocab_bytes;    /* every token's bytes, back to back */
    uint32_t *vocab_offset; /* (vocab_size + 1,) token i is vocab_bytes[offset[i], offset[i+1]) */
    uint16_t byte_id[256];  /* the single-byte token for each byte */
    bpe_merges merges;
    bpe_scratch scratch;
    pcre2_code *pattern;
    pcre2_match_data *match;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *match_context;
    strmap cache; /* pre-token bytes -> (offset in cache_ids) << 16 | count */
    tokbuf cache_ids;
    tokbuf piece; /* ids of the pre-token being merged */
};

static int open_common(tokenizer **out, enum tokenizer_kind kind, char *err, size_t errlen)
{
    tokenizer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the tokenizer");
    t->kind = kind;
    t->eot = -1;
    *out = t;
    return WANCP_OK;
}

int tokenizer_open_bytes(tokenizer **out, char *err, size_t errlen)
{
    int rc = open_common(out, TOKENIZER_BYTES, err, errlen);
    if (rc == WANCP_OK)
        (*out)->vocab_size = 256;
    return rc;
}

/* encoder.json: {"token": id, ...} with ids 0..n-1, each once. Fills vocab_bytes,
 * vocab_offset and ids (bytes -> id), and the end-of-text id. */
static int load_encoder(tokenizer *t, const char *path, strmap *ids, char *err, size_t errlen)
{
    bytebuf text = {0};
    int rc = file_read_all(path, &text, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)text.data, text.len, JSON_REJECT_DUPLICATES, &jerr);
    bytebuf_free(&text);
    if (root == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    size_t n = json_is_object(root) ? json_object_size(root) : 0;
    if (n < 256 || n > 65536) {
        json_decref(root);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: expected an object of 256..65536 tokens, found %zu", path,
                          n);
    }
    uint8_t **token = calloc(n, sizeof *token);
    size_t *token_len = calloc(n, sizeof *token_len);
    uint8_t *bytes = malloc(4096);
    rc = (token == NULL || token_len == NULL || bytes == NULL) ? WANCP_ERR_NOMEM : WANCP_OK;
    if (rc != WANCP_OK)
        wancp_fail(err, errlen, rc, "%s: out of memory", path);
    for (void *it = json_object_iter(root); it != NULL && rc == WANCP_OK; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        json_t *value = json_object_iter_value(it);
        json_int_t id = json_is_integer(value) ? json_integer_value(value) : -1;
        if (id < 0 || (size_t)id >= n) {
            rc =
                wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: token \"%.40s\" has id %lld; ids must be integers 0..%zu",
                           path, key, (long long)id, n - 1);
            break;
        }
        if (token[id] != NULL) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: id %lld is given to two tokens", path, (long long)id);
            break;
        }
        long len = key_len < 4096 ? byte_unicode_decode(key, key_len, bytes) : -1;
        if (len <= 0) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: token \"%.40s\" is not spelled in GPT-2's byte alphabet",
                            path, key);
            break;
        }
        if (strcmp(key, GPT2_EOT_TEXT) == 0)
            t->eot = (int)id;
        uint64_t other;
        if (strmap_get(ids, bytes, (size_t)len, &other)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: token \"%.40s\" appears twice", path, key);
            break;
        }
        token[id] = malloc((size_t)len);
        if (token[id] == NULL || strmap_put(ids, bytes, (size_t)len, (uint64_t)id) != WANCP_OK) {
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(token[id], bytes, (size_t)len);
        token_len[id] = (size_t)len;
    }
    if (rc == WANCP_OK && t->eot < 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no %s token", path, GPT2_EOT_TEXT);
    if (rc == WANCP_OK) {
        t->vocab_size = (int)n;
        t->vocab_offset = malloc((n + 1) * sizeof *t->vocab_offset);
        if (t->vocab_offset == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < n && rc == WANCP_OK; i++) {
            t->vocab_offset[i] = (uint32_t)t->vocab_bytes.len;
            if (bytebuf_append(&t->vocab_bytes, token[i], token_len[i]) != WANCP_OK)
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        }
        if (rc == WANCP_OK)
            t->vocab_offset[n] = (uint32_t)t->vocab_bytes.len;
    }
    for (size_t i = 0; token != NULL && i < n; i++)
        free(token[i]);
    free(token);
    free(token_len);
    free(bytes);
    json_decref(root);
    return rc;
}

static int lookup_id(const strmap *ids, const uint8_t *bytes, size_t len, uint16_t *id)
{
    uint64_t v;
    if (!strmap_get(ids, bytes, len, &v))
        return 0;
    *id = (uint16_t)v;
    return 1;
}

/* vocab.bpe: a "#version" line, then one merge "left right" per line in rank order. */
static int load_merges(tokenizer *t, const char *path, const strmap *ids, char *err, size_t errlen)
{
    bytebuf text = {0};
    int rc = file_read_all(path, &text, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    char *s = (char *)text.data, *end = s + text.len;
    size_t lines = 0;
    for (char *p = s; p < end; p++)
        lines += *p == '\n';
    uint8_t *left = malloc(text.len + 1), *joined = malloc(text.len + 1);
    if (left == NULL || joined == NULL || bpe_merges_init(&t->merges, lines + 1) != WANCP_OK) {
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (text.len == 0 || strncmp(s, "#version", 8) != 0) {
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:1: expected a '#version' line (GPT-2's vocab.bpe)", path);
        goto done;
    }
    uint32_t rank = 0;
    size_t line_no = 1;
    for (char *line = memchr(s, '\n', text.len); line != NULL && line + 1 < end;) {
        line++;
        line_no++;
        char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        char *space = memchr(line, ' ', (size_t)(eol - line));
        if (space == NULL || space == line || space + 1 == eol || memchr(space + 1, ' ', (size_t)(eol - space - 1))) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: expected two tokens separated by one space", path,
                            line_no);
            goto done;
        }
        long left_len = byte_unicode_decode(line, (size_t)(space - line), left);
        long right_len =
            left_len < 0 ? -1 : byte_unicode_decode(space + 1, (size_t)(eol - space - 1), joined + left_len);
        if (left_len < 0 || right_len < 0) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: token not spelled in GPT-2's byte alphabet", path,
                            line_no);
            goto done;
        }
        memcpy(joined, left, (size_t)left_len);
        uint16_t a, b, merged;
        if (!lookup_id(ids, left, (size_t)left_len, &a) || !lookup_id(ids, joined + left_len, (size_t)right_len, &b) ||
            !lookup_id(ids, joined, (size_t)(left_len + right_len), &merged)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT,
                            "%s:%zu: merge '%.*s' uses or makes a token missing from encoder.json", path, line_no,
                            (int)(eol - line), line);
            goto done;
        }
        int added = bpe_merges_add(&t->merges, a, b, rank++, merged);
        if (added != 0) {
            rc = added == 1 ? wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: merge listed twice", path, line_no)
                            : wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        line = eol;
        if (line == end)
            break;
    }
    if (rank == 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no merges", path);
done:
    free(left);
    free(joined);
    bytebuf_free(&text);
    return rc;
}

static int compile_pattern(tokenizer *t, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE offset;
    t->pattern = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                               &code, &offset, NULL);
    if (t->pattern == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "PCRE2 refused GPT-2's pattern at %zu: %s", (size_t)offset,
                          (char *)msg);
    }
    /* JIT is an optimisation: where the platform lacks it, the interpreter gives the same
     * matches more slowly. */
    if (pcre2_jit_compile(t->pattern, PCRE2_JIT_COMPLETE) == 0) {
        t->jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
        t->match_context = pcre2_match_context_create(NULL);
        if (t->jit_stack == NULL || t->match_context == NULL)
            return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the PCRE2 JIT stack");
        pcre2_jit_stack_assign(t->match_context, NULL, t->jit_stack);
    }
    t->match = pcre2_match_data_create_from_pattern(t->pattern, NULL);
    if (t->match == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for PCRE2 match data");
    return WANCP_OK;
}

int tokenizer_open_gpt2(tokenizer **out, const char *dir, char *err, size_t errlen)
{
    int rc = open_common(out, TOKENIZER_GPT2, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    tokenizer *t = *out;
    strmap ids = {0};
    char encoder_path[4096], merges_path[4096];
    if (snprintf(encoder_path, sizeof encoder_path, "%s/encoder.json", dir) >= (int)sizeof encoder_path ||
        snprintf(merges_path, sizeof merges_path, "%s/vocab.bpe", dir) >= (int)sizeof merges_path) {
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: path too long", dir);
        goto fail;
    }
    rc = load_encoder(t, encoder_path, &ids, err, errlen);
    if (rc == WANCP_OK)
        rc = load_merges(t, merges_path, &ids, err, errlen);
    for (int b = 0; b < 256 && rc == WANCP_OK; b++) {
        uint8_t byte = (uint8_t)b;
        if (!lookup_id(&ids, &byte, 1, &t->byte_id[b]))
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no token for byte 0x%02x", encoder_path, b);
    }
    if (rc == WANCP_OK)
        rc = compile_pattern(t, err, errlen);
fail:
    strmap_free(&ids);
    if (rc == WANCP_OK)
        return WANCP_OK;
    tokenizer_free(t);
    *out = NULL;
    return rc;
}

void tokenizer_free(tokenizer *t)
{
    if (t == NULL)
        return;
    bytebuf_free(&t->vocab_bytes);
    free(t->vocab_offset);
    bpe_merges_free(&t->merges);
    bpe_scratch_free(&t->scratch);
    pcre2_match_data_free(t->match);
    pcre2_match_context_free(t->match_context);
    pcre2_jit_stack_free(t->jit_stack);
    pcre2_code_free(t->pattern);
    strmap_free(&t->cache);
    tokbuf_free(&t->cache_ids);
    tokbuf_free(&t->piece);
    free(t);
}

enum tokenizer_kind tokenizer_kind_of(const tokenizer *t) { return t->kind; }
const char *tokenizer_name(const tokenizer *t) { return t->kind == TOKENIZER_GPT2 ? "gpt2" : "bytes"; }
int tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }
int tokenizer_eot(const tokenizer *t) { return t->eot; }
const bpe_merges *tokenizer_merges(const tokenizer *t) { return &t->merges; }
uint16_t tokenizer_byte_id(const tokenizer *t, uint8_t b) { return t->kind == TOKENIZER_GPT2 ? t->byte_id[b] : b; }

/* One pre-token: from the cache, or merged and then cached. */
static int encode_piece(tokenizer *t, const uint8_t *s, size_t n, tokbuf *out)
{
    uint64_t hit;
    if (n <= CACHE_MAX_PIECE && strmap_get(&t->cache, s, n, &hit))
        return tokbuf_append(out, t->cache_ids.data + (hit >> 16), hit & 0xFFFF);
    t->piece.len = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = tokbuf_push(&t->piece, t->byte_id[s[i]]);
        if (rc != WANCP_OK)
            return rc;
    }
    size_t count = t->piece.len;
    int rc = bpe_apply(&t->merges, &t->scratch, t->piece.data, &count);
    if (rc == WANCP_OK)
        rc = tokbuf_append(out, t->piece.data, count);
    if (rc != WANCP_OK || n > CACHE_MAX_PIECE)
        return rc;
    if (t->cache.count >= CACHE_MAX_ENTRIES) {
        strmap_clear(&t->cache);
        t->cache_ids.len = 0;
    }
    uint64_t value = (uint64_t)t->cache_ids.len << 16 | count;
    rc = tokbuf_append(&t->cache_ids, t->piece.data, count);
    return rc == WANCP_OK ? strmap_put(&t->cache, s, n, value) : rc;
}

int tokenizer_encode(tokenizer *t, const uint8_t *text, size_t len, tokbuf *out, char *err, size_t errlen)
{
    int rc = WANCP_OK;
    if (t->kind == TOKENIZER_BYTES) {
        for (size_t i = 0; i < len && rc == WANCP_OK; i++)
            rc = tokbuf_push(out, text[i]);
        return rc == WANCP_OK ? rc : wancp_fail(err, errlen, rc, "out of memory encoding %zu bytes", len);
    }
    size_t done = 0; /* text[0..done) is encoded */
    while (done < len && rc == WANCP_OK) {
        int m = pcre2_match(t->pattern, text, len, done, 0, t->match, t->match_context);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "PCRE2 match failed at byte %zu: %s", done, (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->match);
        size_t start = ov[0], end = ov[1];
        /* Bytes the pattern skipped are invalid UTF-8: they form a pre-token of their own. */
        if (start > done)
            rc = encode_piece(t, text + done, start - done, out);
        if (rc == WANCP_OK && end > start)
            rc = encode_piece(t, text + start, end - start, out);
        done = end > start ? end : start + 1;
    }
    if (rc == WANCP_OK && done < len)
        rc = encode_piece(t, text + done, len - done, out);
    return rc == WANCP_OK ? rc : wancp_fail(err, errlen, rc, "out of memory encoding %zu bytes", len);
}

int tokenizer_decode(const tokenizer *t, const uint16_t *ids, size_t n, bytebuf *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->vocab_size)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "token %zu is %u, outside the %s vocabulary of %d", i,
                              ids[i], tokenizer_name(t), t->vocab_size);
        int rc;
        if (t->kind == TOKENIZER_BYTES) {
            uint8_t b = (uint8_t)ids[i];
            rc = bytebuf_append(out, &b, 1);
        } else {
            uint32_t off = t->vocab_offset[ids[i]];
            rc = bytebuf_append(out, t->vocab_bytes.data + off, t->vocab_offset[ids[i] + 1] - off);
        }
        if (rc != WANCP_OK)
            return wancp_fail(err, errlen, rc, "out of memory decoding %zu tokens", n);
    }
    return WANCP_OK;
}
