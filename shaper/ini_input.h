#ifndef WANCP_INI_INPUT_H
#define WANCP_INI_INPUT_H

#include <stdarg.h>
#include <stdio.h>

/*
 * What the INI readers (link profiles, scenarios, hardware profiles) share: inih reads the
 * file through ini_input_read_line, so a handler knows the line it is on, and problems are
 * collected rather than returned one at a time, so a file's every problem is reported at
 * once, each prefixed with where it is ("file:line", "--set key=value", ...).
 *
 * A file says each thing once: a [section] given twice, or a key given twice in one
 * section (also as an indented continuation line, which inih hands over as the same key
 * again), is a problem naming both lines, never a silent merge or "the last wins".
 */
typedef struct ini_seen ini_seen;

typedef struct ini_input {
    FILE *file;
    const char *path;    /* the file's name, for the problems the reader finds itself */
    int line;            /* the line inih read last */
    char problems[4096]; /* "where: what; where: what" */
    int nproblems;       /* every problem, also those the text had no room for */
    /* Set while ini_input_parse runs; freed by it. */
    char section[256]; /* the section being read, whole (inih's own copy is cut at 49) */
    ini_seen *seen;    /* (nseen,) sections and keys met so far, with their lines */
    size_t nseen, cap;
    int (*handler)(void *user, const char *section, const char *name, const char *value);
    void *user;
} ini_input;

/* inih's ini_parse_stream over in->file with repeats refused (see above); handler gets the
 * section's whole name. Returns what inih returns (0, or the first line it could not read). */
int ini_input_parse(ini_input *in, int (*handler)(void *user, const char *section, const char *name, const char *value),
                    void *user);

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
