#ifndef WANCP_INI_INPUT_H
#define WANCP_INI_INPUT_H

#include <stdarg.h>
#include <stdio.h>

/*
 * What the INI readers (link profiles, scenarios, hardware profiles) share: inih reads the
 * file through ini_input_read_line, so a handler knows the line it is on, and problems are
 * collected rather than returned one at a time, so a file's every problem is reported at
 * once, each prefixed with where it is ("file:line", "--set key=value", ...).
 */
typedef struct ini_input {
    FILE *file;
    const char *path;    /* the file's name, for the problems the reader finds itself */
    int line;            /* the line inih read last */
    char problems[4096]; /* "where: what; where: what" */
    int nproblems;       /* every problem, also those the text had no room for */
} ini_input;

/* inih's reader (ini_parse_stream): stream is the ini_input. inih reads num - 1 bytes of a
 * line at most and would take the rest for a line of its own, or cut a value short: a
 * longer comment line is read cut short, any other longer line is a problem ("path:line:
 * longer than ...") and read as blank. */
char *ini_input_read_line(char *str, int num, void *stream);

/* Appends one problem at line of the file: "path:line", ": ", then fmt with ap. */
void ini_input_problem_at(ini_input *in, int line, const char *fmt, va_list ap);

/* Appends one problem: where, ": ", then fmt with ap. */
void ini_input_problem(ini_input *in, const char *where, const char *fmt, va_list ap);

#endif
