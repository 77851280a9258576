#ifndef WANCP_STATUS_H
#define WANCP_STATUS_H

#include <stddef.h>

/*
 * Errors in two layers. Library code in core/ and shaper/ returns WANCP_OK or one of the
 * negative codes below and writes one line of context into the caller's buffer (which
 * file, which line, which peer, what was expected). Only harness/ prints and exits:
 * WANCP_ERR_INPUT maps to exit status 2, the others to 1.
 */
enum wancp_status {
    WANCP_OK = 0,
    WANCP_ERR_SYSTEM = -1, /* the OS refused: write, rename, socket, fork */
    WANCP_ERR_INPUT = -2,  /* bad input: missing or malformed file, bad argument, bad frame */
    WANCP_ERR_NOMEM = -3,  /* allocation failed */
};

/* Size of the error buffers the harness passes; long enough for a path and a reason. */
#define WANCP_ERRLEN 512

/* Formats into err (if err is not NULL) and returns code, so callers can write
 * `return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: bad magic", path);`. */
int wancp_fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Makes text safe to print on one terminal line, in place: control bytes (newlines and
 * escape sequences among them) and bytes that are not valid UTF-8 become '?'. Messages quote
 * input files and command lines; this keeps their binary from reaching the terminal. */
void wancp_text_clean(char *text);

/* Exit status for a status code: 0, 1 or 2. */
int wancp_exit_status(int code);

#endif
