#ifndef WANCP_RUN_OPTIONS_H
#define WANCP_RUN_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * The method's and the runtime's switches as one table of rows: each names its INI key (in a scenario's
 * [train], for every arm, or an [arm NAME], for that arm), the `wancp train` option it
 * becomes on the arm's rank command line, its type and range, its default, one line of help
 * and the field of run_method it fills. Everything that spells a switch reads it: the
 * scenario reader, the resolved print (`check scenario`, scenario.ini in a results folder),
 * the arm's command line (`run`, `run --dry-run`), `wancp train`'s option parsing and --help,
 * and the metrics header's "# method:" line. Adding a switch is a row, a field, and the code
 * that uses it. A value left out is "auto": the row's default, or where it has none, a value
 * `wancp train` derives from the model (the help says how).
 */
typedef enum run_option_type { RUN_OPT_INT, RUN_OPT_REAL, RUN_OPT_BOOL, RUN_OPT_CHOICE } run_option_type;

typedef struct run_option {
    const char *key;  /* INI key, e.g. "rank_k" */
    const char *flag; /* wancp train's option, e.g. "--rank-k" */
    run_option_type type;
    double min, max;      /* RUN_OPT_INT and RUN_OPT_REAL */
    const char *choices;  /* RUN_OPT_CHOICE: "zigzag|contiguous" */
    bool compress_only;   /* only with compress = true */
    const char *fallback; /* the default as a value, or NULL: derived (see help) */
    size_t field;         /* offsetof(run_method, ...): int (INT, CHOICE: the choice's index),
                          * double (REAL) or bool (BOOL) */
    const char *help;
} run_option;

#define RUN_OPTION_VALUE 32 /* bytes of a stored value */
#define RUN_OPTIONS_MAX 32  /* rows the table may grow to (a scenario stores a value per row) */

/* The switches' values in one run, as `wancp train` holds them; given[i]: row i was set
 * (otherwise the field holds the row's fallback, or 0 where the value is derived). */
typedef struct run_method {
    int wire;      /* 0 bf16, 1 fp32 */
    int device;    /* 0 cpu, 1 cuda */
    int precision; /* a cuda_precision: 0 tf32, 1 fp32, 2 bf16 */
    int attention; /* 0 products, 1 fused */
    int cp_layout; /* 0 zigzag, 1 contiguous (CP_ZIGZAG, CP_CONTIGUOUS) */
    bool kv_regather;
    int basis;                         /* 0 head (one basis per KV head), 1 layer (one over d_kv) */
    int rank_k, rank_v, psi_k, planes; /* per basis */
    bool cheap_rotation;
    int cov_steps;
    double unplug_at;
    bool check_shared, stiefel;
    double stiefel_lr;
    int stiefel_every;
    bool given[RUN_OPTIONS_MAX];
} run_method;

extern const run_option RUN_OPTIONS[];
extern const int RUN_NOPTIONS;

/* The row of key, or -1. */
int run_option_find(const char *key);

/* Checks text as a value of row i; 0, or -1 with why filled ("expected ..."). "auto" is a
 * value of every row: unset. */
int run_option_check(int i, const char *text, char *why, size_t len);

/* The keys, comma-separated, for "unknown key" messages. */
const char *run_option_keys(void);

/* Every row at its fallback, none given. */
run_method run_method_defaults(void);

/* Sets row i of m from text (already checked by run_option_check; "auto" is the fallback)
 * and marks it given unless auto. */
void run_method_set(run_method *m, int i, const char *text);

/* Row i's value in m as a scenario spells it ("zigzag", "true", "5", "0.5"). */
void run_method_value(const run_method *m, int i, char *out, size_t len);

/* The compression's fields of c from m: kv_bases from basis (c's kv heads, or 1), and psi_k,
 * rank_k and rank_v as totals over the bases: the per-basis values given times kv_bases, the
 * ranks else derived from c's shape (METHOD.md's defaults, model_default_rank_k/v). */
struct model_config;
void run_method_compression(const run_method *m, struct model_config *c);

/* --help's lines for the table: the option, its value, its default and its help. */
void run_option_usage(FILE *out);

#endif
