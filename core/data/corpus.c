#include "corpus.h"

#include "../base/status.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int corpus_add(corpus *c, const char *name, const void *text, size_t len)
{
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        corpus_doc *docs = realloc(c->docs, cap * sizeof *docs);
        if (docs == NULL)
            return WANCP_ERR_NOMEM;
        c->docs = docs;
        c->cap = cap;
    }
    corpus_doc d = {.text_off = c->text.len, .text_len = len, .name_off = c->names.len, .name_len = strlen(name)};
    int rc = bytebuf_append(&c->text, text, len);
    if (rc == WANCP_OK)
        rc = bytebuf_append(&c->names, name, d.name_len);
    if (rc == WANCP_OK)
        c->docs[c->count++] = d;
    return rc;
}

const uint8_t *corpus_text(const corpus *c, size_t i, size_t *len)
{
    *len = c->docs[i].text_len;
    return c->text.data + c->docs[i].text_off;
}

const char *corpus_name(const corpus *c, size_t i, size_t *len)
{
    *len = c->docs[i].name_len;
    return (const char *)c->names.data + c->docs[i].name_off;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int load_jsonl(corpus *c, const char *path, const bytebuf *file, char *err, size_t errlen)
{
    const char *s = (const char *)file->data, *end = s + file->len;
    size_t line_no = 0, before = c->count;
    for (const char *line = s; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        line_no++;
        size_t n = (size_t)(eol - line);
        int blank = 1;
        for (size_t i = 0; i < n && blank; i++)
            blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
        if (!blank) {
            json_error_t jerr;
            json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL, &jerr);
            json_t *text = obj ? json_object_get(obj, "text") : NULL;
            json_t *id = obj ? json_object_get(obj, "id") : NULL;
            int rc = WANCP_OK;
            if (obj == NULL)
                rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu:%d: %s", path, line_no, jerr.column, jerr.text);
            else if (!json_is_string(text))
                rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: expected an object with a string \"text\"", path,
                                line_no);
            else {
                char name[64];
                if (json_is_string(id))
                    snprintf(name, sizeof name, "%s", json_string_value(id));
                else
                    snprintf(name, sizeof name, "line%zu", line_no);
                if (corpus_add(c, name, json_string_value(text), json_string_length(text)) != WANCP_OK)
                    rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s:%zu: out of memory", path, line_no);
            }
            json_decref(obj);
            if (rc != WANCP_OK)
                return rc;
        }
        line = eol + 1;
    }
    if (c->count == before)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no documents (empty input)", path);
    return WANCP_OK;
}

int corpus_load(corpus *c, const char *path, char *err, size_t errlen)
{
    bytebuf file = {0};
    int rc = file_read_all(path, &file, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    if (ends_with(path, ".jsonl")) {
        rc = load_jsonl(c, path, &file, err, errlen);
    } else if (file.len == 0) {
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: empty input", path);
    } else {
        const char *base = strrchr(path, '/');
        if (corpus_add(c, base ? base + 1 : path, file.data, file.len) != WANCP_OK)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
    }
    bytebuf_free(&file);
    return rc;
}

int corpus_write_jsonl(const corpus *c, const char *path, char *err, size_t errlen)
{
    bytebuf out = {0};
    int rc = WANCP_OK;
    for (size_t i = 0; i < c->count && rc == WANCP_OK; i++) {
        size_t name_len, text_len;
        const char *name = corpus_name(c, i, &name_len);
        const uint8_t *text = corpus_text(c, i, &text_len);
        json_t *obj = json_object();
        json_t *jname = json_stringn(name, name_len);
        json_t *jtext = json_stringn((const char *)text, text_len);
        char *line = NULL;
        if (obj != NULL && jname != NULL && jtext != NULL && json_object_set_new(obj, "id", jname) == 0 &&
            json_object_set_new(obj, "text", jtext) == 0) {
            jname = jtext = NULL; /* owned by obj now */
            line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        }
        if (line == NULL) /* json_stringn refuses text that is not UTF-8 */
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: document %zu is not valid UTF-8 or memory ran out", path,
                            i);
        else if (bytebuf_append(&out, line, strlen(line)) != WANCP_OK || bytebuf_append(&out, "\n", 1) != WANCP_OK)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        free(line);
        json_decref(jname);
        json_decref(jtext);
        json_decref(obj);
    }
    if (rc == WANCP_OK)
        rc = file_write_atomic(path, out.data, out.len, err, errlen);
    bytebuf_free(&out);
    return rc;
}

void corpus_free(corpus *c)
{
    bytebuf_free(&c->text);
    bytebuf_free(&c->names);
    free(c->docs);
    *c = (corpus){0};
}

int corpus_is_validation(size_t doc_index, unsigned val_every)
{
    return val_every > 0 && doc_index % val_every == val_every - 1;
}

int corpus_encode(const corpus *c, tokenizer *t, unsigned val_every, tokbuf *train, tokbuf *val,
                  corpus_progress_fn *progress, void *progress_ctx, char *err, size_t errlen)
{
    int eot = tokenizer_eot(t);
    for (size_t i = 0; i < c->count; i++) {
        tokbuf *dst = corpus_is_validation(i, val_every) ? val : train;
        if (eot >= 0 && tokbuf_push(dst, (uint16_t)eot) != WANCP_OK)
            return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
        size_t len;
        const uint8_t *text = corpus_text(c, i, &len);
        int rc = tokenizer_encode(t, text, len, dst, err, errlen);
        if (rc != WANCP_OK)
            return rc;
        if (progress != NULL)
            progress(progress_ctx, i + 1, c->count);
    }
    return WANCP_OK;
}
