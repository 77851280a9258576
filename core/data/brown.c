#include "brown.h"

#include "../base/status.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_sample_name(const char *s)
{
    return strlen(s) == 4 && s[0] == 'c' && s[1] >= 'a' && s[1] <= 'r' && s[2] >= '0' && s[2] <= '9' && s[3] >= '0' &&
           s[3] <= '9';
}

static int word_is(const char *w, size_t n, const char *s) { return strlen(s) == n && memcmp(w, s, n) == 0; }

/* A sentence line: its words and whether it is a headline. */
typedef struct brown_line {
    const char *words[1024];
    size_t lens[1024];
    size_t count;
    int headline;
} brown_line;

static int parse_line(const char *name, size_t line_no, const char *s, size_t n, brown_line *out, char *err,
                      size_t errlen)
{
    out->count = 0;
    out->headline = 1;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            i++;
        const char *slash = NULL;
        for (size_t k = start; k < i; k++)
            if (s[k] == '/')
                slash = s + k;
        if (slash == NULL || slash == s + start || slash + 1 == s + i)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: token '%.*s' is not word/TAG", name, line_no,
                              (int)(i - start), s + start);
        if (out->count == sizeof out->words / sizeof out->words[0])
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%zu: more than 1024 tokens in a line", name, line_no);
        size_t tag_len = (size_t)(s + i - slash - 1);
        int hl = 0;
        for (size_t k = 0; k + 3 <= tag_len; k++)
            hl |= memcmp(slash + 1 + k, "-hl", 3) == 0;
        out->headline &= hl;
        out->words[out->count] = s + start;
        out->lens[out->count] = (size_t)(slash - (s + start));
        out->count++;
    }
    return WANCP_OK;
}

/* Appends one sentence's words to out, tracking the quote state of the paragraph. */
static int append_sentence(const brown_line *line, bytebuf *out, int *need_space, int *open_double, int *open_single)
{
    int rc = WANCP_OK;
    for (size_t i = 0; i < line->count && rc == WANCP_OK; i++) {
        const char *w = line->words[i];
        size_t n = line->lens[i];
        int glue_before = 0, glue_after = 0;
        if (word_is(w, n, "``") || word_is(w, n, "''")) {
            *open_double = word_is(w, n, "``");
            w = "\"";
            n = 1;
            glue_before = !*open_double;
            glue_after = *open_double;
        } else if (word_is(w, n, "`") || word_is(w, n, "'")) {
            *open_single = word_is(w, n, "`");
            w = "'";
            n = 1;
            glue_before = !*open_single;
            glue_after = *open_single;
        } else if (n == 1 && strchr(",.;:?!)]}", w[0]) != NULL) {
            glue_before = 1;
        } else if (n == 1 && strchr("([{", w[0]) != NULL) {
            glue_after = 1;
        }
        if (*need_space && !glue_before)
            rc = bytebuf_append(out, " ", 1);
        if (rc == WANCP_OK)
            rc = bytebuf_append(out, w, n);
        *need_space = !glue_after;
    }
    return rc;
}

int brown_detag(const char *name, const char *tagged, size_t len, bytebuf *out, char *err, size_t errlen)
{
    brown_line *line = malloc(sizeof *line);
    if (line == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", name);
    int rc = WANCP_OK, in_paragraph = 0, after_blank = 1, prev_headline = 0;
    int need_space = 0, open_double = 0, open_single = 0;
    size_t line_no = 0, start_len = out->len;
    for (const char *s = tagged, *end = tagged + len; s < end && rc == WANCP_OK;) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (eol == NULL)
            eol = end;
        line_no++;
        rc = parse_line(name, line_no, s, (size_t)(eol - s), line, err, errlen);
        if (rc == WANCP_OK && line->count == 0) {
            after_blank = 1;
        } else if (rc == WANCP_OK) {
            int new_paragraph = !in_paragraph || s[0] == '\t' || after_blank || line->headline || prev_headline;
            if (new_paragraph && in_paragraph)
                rc = bytebuf_append(out, "\n\n", 2);
            if (new_paragraph) {
                need_space = open_double = open_single = 0;
            }
            if (rc == WANCP_OK)
                rc = append_sentence(line, out, &need_space, &open_double, &open_single);
            if (rc != WANCP_OK)
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", name);
            in_paragraph = 1;
            after_blank = 0;
            prev_headline = line->headline;
        }
        s = eol + 1;
    }
    free(line);
    if (rc == WANCP_OK && out->len == start_len)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no sentences (empty input)", name);
    if (rc == WANCP_OK && bytebuf_append(out, "\n", 1) != WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", name);
    return rc;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int brown_load(corpus *out, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open the Brown corpus folder", dir);
    char *names[1024];
    size_t count = 0;
    int rc = WANCP_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL && rc == WANCP_OK;) {
        if (!is_sample_name(e->d_name))
            continue;
        if (count == sizeof names / sizeof names[0] || (names[count] = strdup(e->d_name)) == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: too many sample files", dir);
        else
            count++;
    }
    closedir(d);
    if (rc == WANCP_OK && count == 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no Brown sample files (ca01 .. cr09)", dir);
    qsort(names, count, sizeof names[0], compare_names);
    bytebuf tagged = {0}, plain = {0};
    for (size_t i = 0; i < count && rc == WANCP_OK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        tagged.len = plain.len = 0;
        rc = file_read_all(path, &tagged, err, errlen);
        if (rc == WANCP_OK)
            rc = brown_detag(path, (const char *)tagged.data, tagged.len, &plain, err, errlen);
        if (rc == WANCP_OK && corpus_add(out, names[i], plain.data, plain.len) != WANCP_OK)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
    }
    bytebuf_free(&tagged);
    bytebuf_free(&plain);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    return rc;
}
