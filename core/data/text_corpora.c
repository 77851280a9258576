/* The State of the Union addresses and the SpamAssassin ham as corpora of documents. */
#include "text_corpora.h"

#include "../base/status.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names in dir ending in suffix, sorted; *names is freed with free_names. */
static int list_files(const char *dir, const char *suffix, char ***names, size_t *count, char *err, size_t errlen)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open the corpus folder", dir);
    size_t cap = 0, slen = strlen(suffix);
    int rc = WANCP_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL && rc == WANCP_OK;) {
        size_t n = strlen(e->d_name);
        if (n <= slen || e->d_name[0] == '.' || strcmp(e->d_name + n - slen, suffix) != 0)
            continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 256;
            char **grown = realloc(*names, cap * sizeof *grown);
            if (grown == NULL) {
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            *names = grown;
        }
        if (((*names)[*count] = strdup(e->d_name)) == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", dir);
        else
            (*count)++;
    }
    closedir(d);
    if (rc == WANCP_OK && *count == 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no *%s files", dir, suffix);
    if (*count > 1)
        qsort(*names, *count, sizeof **names, compare_names);
    return rc;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* Text fit for a document: not empty, no NUL byte. */
static int check_text(const char *path, const uint8_t *text, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: empty", path);
    const uint8_t *nul = memchr(text, 0, len);
    if (nul != NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: a NUL byte at offset %zu: not text", path,
                          (size_t)(nul - text));
    return WANCP_OK;
}

int mail_body(const char *name, const char *message, size_t len, size_t *body_offset, char *err, size_t errlen)
{
    for (size_t i = 0; i < len; i++) {
        if (message[i] != '\n')
            continue;
        size_t next = i + 1;
        if (next < len && message[next] == '\r')
            next++;
        if (next < len && message[next] == '\n') {
            *body_offset = next + 1;
            if (*body_offset == len)
                return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: a message without a body", name);
            return WANCP_OK;
        }
    }
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no empty line ends the header: not an RFC 5322 message", name);
}

/* The length of the valid UTF-8 sequence at p (1 to 4 bytes), or 0 where none starts: a
 * stray continuation byte, a cut sequence, an overlong form, a surrogate or a code point
 * beyond U+10FFFF. */
static size_t utf8_sequence(const uint8_t *p, size_t left)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC0 ? 2 : 0;
    if (n == 0 || n > left || p[0] > 0xF4 || p[0] == 0xC0 || p[0] == 0xC1)
        return 0;
    uint32_t cp = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int text_as_utf8(const uint8_t *text, size_t len, bytebuf *out)
{
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(text + i, len - i);
        int rc;
        if (n > 0) {
            rc = bytebuf_append(out, text + i, n);
            i += n;
        } else { /* ISO-8859-1: the byte is its code point, U+0080 to U+00FF */
            const uint8_t two[2] = {(uint8_t)(0xC0 | text[i] >> 6), (uint8_t)(0x80 | (text[i] & 0x3F))};
            rc = bytebuf_append(out, two, 2);
            i++;
        }
        if (rc != WANCP_OK)
            return rc;
    }
    return WANCP_OK;
}

/* Every *.txt of dir, in name order, as documents; mail: the bodies, made UTF-8. */
static int load_folder(corpus *out, const char *dir, bool mail, char *err, size_t errlen)
{
    char **names;
    size_t count;
    int rc = list_files(dir, ".txt", &names, &count, err, errlen);
    bytebuf text = {0}, utf8 = {0};
    for (size_t i = 0; i < count && rc == WANCP_OK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        text.len = 0;
        size_t from = 0;
        rc = file_read_all(path, &text, err, errlen);
        if (rc == WANCP_OK && mail)
            rc = mail_body(path, (const char *)text.data, text.len, &from, err, errlen);
        if (rc == WANCP_OK)
            rc = check_text(path, text.data + from, text.len - from, err, errlen);
        utf8.len = 0;
        if (rc == WANCP_OK && text_as_utf8(text.data + from, text.len - from, &utf8) != WANCP_OK)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        if (rc == WANCP_OK) {
            char doc[512];
            size_t stem = strlen(names[i]) - 4; /* without .txt */
            snprintf(doc, sizeof doc, "%.*s", (int)(stem < sizeof doc - 1 ? stem : sizeof doc - 1), names[i]);
            if (corpus_add(out, doc, utf8.data, utf8.len) != WANCP_OK)
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    bytebuf_free(&text);
    bytebuf_free(&utf8);
    free_names(names, count);
    return rc;
}

int sotu_load(corpus *out, const char *dir, char *err, size_t errlen)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    return load_folder(out, data, false, err, errlen);
}

int mail_load(corpus *out, const char *dir, char *err, size_t errlen)
{
    static const char *const groups[] = {"easy-ham-1", "easy-ham-2"};
    int rc = WANCP_OK;
    for (size_t g = 0; g < 2 && rc == WANCP_OK; g++) {
        char data[4096];
        snprintf(data, sizeof data, "%s/data/%s", dir, groups[g]);
        rc = load_folder(out, data, true, err, errlen);
    }
    return rc;
}
