#include "ini_input.h"

#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* One section or key the file has given: key "" for the section header itself. */
struct ini_seen {
    char section[256];
    char key[64];
    int line;
};

void ini_input_problem_at(ini_input *in, int line, const char *fmt, va_list ap)
{
    char where[1100];
    snprintf(where, sizeof where, "%s:%d", in->path != NULL ? in->path : "(input)", line);
    ini_input_problem(in, where, fmt, ap);
}

static void reader_problem(ini_input *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reader_problem(ini_input *in, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ini_input_problem_at(in, in->line, fmt, ap);
    va_end(ap);
}

/* Records (section, key) at the current line; 0 if new, else the line it was first given on. */
static int seen_before(ini_input *in, const char *section, const char *key)
{
    for (size_t i = 0; i < in->nseen; i++)
        if (strcmp(in->seen[i].section, section) == 0 && strcmp(in->seen[i].key, key) == 0)
            return in->seen[i].line;
    if (in->nseen == in->cap) {
        size_t cap = in->cap ? 2 * in->cap : 32;
        ini_seen *grown = realloc(in->seen, cap * sizeof *grown);
        if (grown == NULL) {
            reader_problem(in, "out of memory");
            return 0;
        }
        in->seen = grown;
        in->cap = cap;
    }
    ini_seen *s = &in->seen[in->nseen++];
    snprintf(s->section, sizeof s->section, "%s", section);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->line = in->line;
    return 0;
}

/* A "[name]" line as inih reads it (leading blanks and a first line's UTF-8 BOM skipped,
 * the name up to the first ']'): keeps the whole name and refuses a section given twice. */
static void note_section(ini_input *in, const char *text)
{
    if (in->line == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3;
    text += strspn(text, " \t");
    const char *end = text[0] == '[' ? strchr(text + 1, ']') : NULL;
    if (end == NULL)
        return; /* not a section header, or one inih refuses itself */
    size_t n = (size_t)(end - text - 1);
    if (n >= sizeof in->section) {
        reader_problem(in, "section name longer than %zu characters", sizeof in->section - 1);
        n = sizeof in->section - 1;
    }
    memcpy(in->section, text + 1, n);
    in->section[n] = '\0';
    int first = seen_before(in, in->section, "");
    if (first > 0)
        reader_problem(in, "[%s] again (first at line %d): give each section once", in->section, first);
}

char *ini_input_read_line(char *str, int num, void *stream)
{
    ini_input *in = stream;
    char *got = fgets(str, num, in->file);
    if (got == NULL)
        return NULL;
    in->line++;
    if (strchr(str, '\n') != NULL || feof(in->file)) {
        if (in->handler != NULL)
            note_section(in, str);
        return got;
    }
    int c = getc(in->file);
    if (c == '\n' || c == EOF) { /* num - 1 characters exactly */
        if (in->handler != NULL)
            note_section(in, str);
        return got;
    }
    while ((c = getc(in->file)) != EOF && c != '\n') /* the rest of an overlong line */
        ;
    const char *first = str + strspn(str, " \t");
    if (*first != ';' && *first != '#') {
        reader_problem(in, "line longer than %d characters (split the value or shorten it)", num - 1);
        str[0] = '\0';
    }
    return got;
}

/* Between inih and the reader's handler: a key given twice in one section is refused. */
static int dispatch(void *user, const char *section, const char *name, const char *value)
{
    ini_input *in = user;
    /* inih's copy of the name is cut short; ours is whole where both agree on the start. */
    const char *whole = strncmp(in->section, section, strlen(section)) == 0 ? in->section : section;
    int first = seen_before(in, whole, name);
    if (first > 0) {
        reader_problem(in, "[%s] %s given again (first at line %d): give each key once", whole, name, first);
        return 1;
    }
    return in->handler(in->user, whole, name, value);
}

int ini_input_parse(ini_input *in, int (*handler)(void *user, const char *section, const char *name, const char *value),
                    void *user)
{
    in->handler = handler;
    in->user = user;
    in->section[0] = '\0';
    int rc = ini_parse_stream(ini_input_read_line, in, dispatch, in);
    free(in->seen);
    in->seen = NULL;
    in->nseen = in->cap = 0;
    in->handler = NULL;
    return rc;
}

void ini_input_problem(ini_input *in, const char *where, const char *fmt, va_list ap)
{
    size_t used = strlen(in->problems);
    in->nproblems++;
    if (used + 8 >= sizeof in->problems)
        return;
    int n = snprintf(in->problems + used, sizeof in->problems - used, "%s%s: ", in->nproblems > 1 ? "; " : "", where);
    used += n > 0 ? (size_t)n : 0;
    if (used + 1 >= sizeof in->problems) /* the place alone filled it (snprintf says what it wanted) */
        return;
    vsnprintf(in->problems + used, sizeof in->problems - used, fmt, ap);
}
