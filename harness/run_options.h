#ifndef WANCP_RUN_OPTIONS_H
#define WANCP_RUN_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The method's switches as one table of rows: each names its INI key (in a scenario's
 * [train], for every arm, or an [arm NAME], for that arm), the `wancp train` option it
 * becomes on the arm's rank command line, its type and range, and one line of help. The
 * scenario reader, the resolved print (`check scenario`, scenario.ini in a results folder)
 * and the arm's command line (`run`, `run --dry-run`) all read it; adding a switch is a row.
 * A value left out is "auto": `wancp train`'s own default.
 */
typedef enum run_option_type { RUN_OPT_INT, RUN_OPT_REAL, RUN_OPT_BOOL, RUN_OPT_CHOICE } run_option_type;

typedef struct run_option {
    const char *key;  /* INI key, e.g. "rank_k" */
    const char *flag; /* wancp train's option, e.g. "--rank-k" */
    run_option_type type;
    double min, max;     /* RUN_OPT_INT and RUN_OPT_REAL */
    const char *choices; /* RUN_OPT_CHOICE: "zigzag|contiguous" */
    bool compress_only;  /* only with compress = true */
    const char *help;
} run_option;

#define RUN_OPTION_VALUE 32 /* bytes of a stored value */
#define RUN_OPTIONS_MAX 32  /* rows the table may grow to (a scenario stores a value per row) */

extern const run_option RUN_OPTIONS[];
extern const int RUN_NOPTIONS;

/* The row of key, or -1. */
int run_option_find(const char *key);

/* Checks text as a value of row i; 0, or -1 with why filled ("expected ..."). "auto" is a
 * value of every row: unset. */
int run_option_check(int i, const char *text, char *why, size_t len);

/* The keys, comma-separated, for "unknown key" messages. */
const char *run_option_keys(void);

#endif
