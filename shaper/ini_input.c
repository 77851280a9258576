#include "ini_input.h"

#include <stdarg.h>
#include <string.h>

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

char *ini_input_read_line(char *str, int num, void *stream)
{
    ini_input *in = stream;
    char *got = fgets(str, num, in->file);
    if (got == NULL)
        return NULL;
    in->line++;
    if (strchr(str, '\n') != NULL || feof(in->file))
        return got;
    int c = getc(in->file);
    if (c == '\n' || c == EOF) /* num - 1 characters exactly */
        return got;
    while ((c = getc(in->file)) != EOF && c != '\n') /* the rest of an overlong line */
        ;
    const char *first = str + strspn(str, " \t");
    if (*first != ';' && *first != '#') {
        reader_problem(in, "line longer than %d characters (split the value or shorten it)", num - 1);
        str[0] = '\0';
    }
    return got;
}

void ini_input_problem(ini_input *in, const char *where, const char *fmt, va_list ap)
{
    size_t used = strlen(in->problems);
    in->nproblems++;
    if (used + 8 >= sizeof in->problems)
        return;
    used += (size_t)snprintf(in->problems + used, sizeof in->problems - used, "%s%s: ", in->nproblems > 1 ? "; " : "",
                             where);
    vsnprintf(in->problems + used, sizeof in->problems - used, fmt, ap);
}
