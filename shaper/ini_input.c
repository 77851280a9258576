#include "ini_input.h"

#include <string.h>

char *ini_input_read_line(char *str, int num, void *stream)
{
    ini_input *in = stream;
    char *got = fgets(str, num, in->file);
    if (got != NULL)
        in->line++;
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
