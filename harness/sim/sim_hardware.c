#include "sim_hardware.h"

#include "../../core/base/status.h"
#include "../../shaper/ini_input.h"
#include "../cli.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    K_NAME,
    K_PEAK,
    K_MATMUL,
    K_ATTENTION,
    K_CODEC,
    K_MEMORY,
    K_OVERHEAD,
    K_ACT,
    K_PARAM,
    K_BYTE,
    K_HOST,
    K_CORES,
    K_LINK_COST,
    K_DELAY_LINK_COST,
    NKEYS
};
static const char *const KEYS[NKEYS] = {
    "name",      "peak_flops",  "matmul",      "attention", "codec", "memory_bytes_s", "op_overhead_s",
    "act_bytes", "param_bytes", "byte_cost_s", "host",      "cores", "link_cost_s",    "delay_link_cost_s"};

typedef struct parse {
    sim_hardware *hw;
    ini_input in; /* in.path: the file */
    int seen[NKEYS];
} parse;

static void problem(parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(parse *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ini_input_problem_at(&ps->in, ps->in.line, fmt, ap);
    va_end(ap);
}

/* A finite number in (lo, hi]. */
static int number(parse *ps, const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !isfinite(x) || !(x > lo && x <= hi)) {
        problem(ps, "%s = '%s' must be a number in (%g, %g]", key, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* link_cost_s and delay_link_cost_s: one price, or "PRICE@BPS, PRICE@BPS, ..." by
 * ascending link rate. */
static void link_costs(parse *ps, const char *key, const char *v, sim_link_prices *out)
{
    out->n = 0;
    for (const char *p = v; *p != '\0';) {
        char *end;
        errno = 0;
        double cost = strtod(p, &end), bps = 0;
        bool ok = end != p && errno == 0 && isfinite(cost) && cost > 0 && cost <= 1e-3;
        if (ok && *end == '@') {
            const char *r = end + 1;
            bps = strtod(r, &end);
            ok = end != r && isfinite(bps) && bps > 0 && (out->n == 0 || bps > out->bps[out->n - 1]);
        } else if (ok) {
            ok = out->n == 0; /* a price without a rate stands alone */
        }
        while (ok && *end == ' ')
            end++;
        ok = ok && (*end == '\0' || *end == ',') && out->n < SIM_MAX_LINK_COSTS;
        if (!ok) {
            problem(ps,
                    "%s = '%s' must be 0, a price in (0, 1e-3] s per byte, or up to %d of PRICE@BPS "
                    "separated by commas, rates ascending",
                    key, v, SIM_MAX_LINK_COSTS);
            out->n = 0;
            return;
        }
        out->cost_s[out->n] = cost;
        out->bps[out->n++] = bps;
        p = *end == ',' ? end + 1 : end;
        while (*p == ' ')
            p++;
    }
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse *ps = user;
    sim_hardware *hw = ps->hw;
    if (strcmp(section, "hardware") != 0) {
        problem(ps, "unknown section [%s] (expected [hardware])", section);
        return 1;
    }
    int k = 0;
    while (k < NKEYS && strcmp(name, KEYS[k]) != 0)
        k++;
    if (k == NKEYS) {
        problem(ps,
                "unknown key '%s' (expected name, peak_flops, matmul, attention, codec, memory_bytes_s, "
                "op_overhead_s, act_bytes, param_bytes, byte_cost_s, host, cores, link_cost_s, delay_link_cost_s)",
                name);
        return 1;
    }
    ps->seen[k] = 1;
    switch (k) {
    case K_NAME:
        if (value[0] == '\0' || strlen(value) >= sizeof hw->name)
            problem(ps, "name must be 1 to %zu characters", sizeof hw->name - 1);
        snprintf(hw->name, sizeof hw->name, "%s", value);
        break;
    case K_PEAK: number(ps, name, value, 0, 1e18, &hw->peak_flops); break;
    case K_MATMUL: number(ps, name, value, 0, 2, &hw->efficiency[SIM_MATMUL]); break;
    case K_ATTENTION: number(ps, name, value, 0, 2, &hw->efficiency[SIM_ATTENTION]); break;
    case K_CODEC: number(ps, name, value, 0, 2, &hw->efficiency[SIM_CODEC]); break;
    case K_MEMORY: number(ps, name, value, 0, 1e15, &hw->memory_bytes_s); break;
    case K_OVERHEAD:
        if (strcmp(value, "0") != 0)
            number(ps, name, value, 0, 1, &hw->op_overhead_s);
        break;
    case K_BYTE:
        if (strcmp(value, "0") != 0)
            number(ps, name, value, 0, 1, &hw->byte_cost_s);
        break;
    case K_ACT: number(ps, name, value, 0, 8, &hw->act_bytes); break;
    case K_PARAM: number(ps, name, value, 0, 8, &hw->param_bytes); break;
    case K_CORES:
        if (strcmp(value, "0") != 0)
            number(ps, name, value, 0, 4096, &hw->cores);
        break;
    case K_LINK_COST:
        if (strcmp(value, "0") != 0)
            link_costs(ps, name, value, &hw->link_cost);
        break;
    case K_DELAY_LINK_COST:
        if (strcmp(value, "0") != 0)
            link_costs(ps, name, value, &hw->delay_link_cost);
        break;
    case K_HOST:
        if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
            hw->host = strcmp(value, "true") == 0;
        else
            problem(ps, "host = '%s' must be true or false", value);
        break;
    }
    return 1;
}

int sim_hardware_load(sim_hardware *hw, const char *path, char *err, size_t errlen)
{
    *hw = (sim_hardware){0};
    parse ps = {.hw = hw, .in.path = path};
    ps.in.file = fopen(path, "r");
    if (ps.in.file == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    int rc = ini_input_parse(&ps.in, handler, &ps);
    fclose(ps.in.file);
    if (rc > 0 && ps.in.nproblems == 0) {
        ps.in.line = rc;
        problem(&ps, "not an INI line");
    }
    for (int k = 0; k < NKEYS; k++)
        if (!ps.seen[k]) {
            ps.in.line = 0;
            problem(&ps, "missing key '%s' in [hardware]%s", KEYS[k],
                    k >= K_CORES && hw->host ? " (a calibration of an earlier wancp: run `wancp bench calibrate` again)"
                                             : "");
        }
    if (ps.in.nproblems == 0 && hw->cores > 0 && !hw->host) {
        ps.in.line = 0;
        problem(&ps, "cores = %g with host = false: only this host's cores are shared with its links", hw->cores);
    }
    if (ps.in.nproblems > 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s", ps.in.problems);
    snprintf(hw->source, sizeof hw->source, "%s", path);
    return WANCP_OK;
}

void sim_hardware_local_path(char *buf, size_t len)
{
    const char *env = getenv("WANCP_HARDWARE");
    if (env != NULL && env[0] != '\0')
        snprintf(buf, len, "%s", env);
    else
        snprintf(buf, len, "%s/results/hardware/cpu-local.ini", cli_source_dir());
}

int sim_hardware_find(sim_hardware *hw, const char *name, char *err, size_t errlen)
{
    const size_t n = strlen(name);
    if (strchr(name, '/') != NULL || (n > 4 && strcmp(name + n - 4, ".ini") == 0))
        return sim_hardware_load(hw, name, err, errlen);
    char path[1100];
    if (strcmp(name, "cpu-local") == 0) {
        sim_hardware_local_path(path, sizeof path);
        if (access(path, R_OK) != 0)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                              "hardware cpu-local: %s does not exist yet; measure this host first with "
                              "`wancp bench calibrate SCENARIO.ini`",
                              path);
        return sim_hardware_load(hw, path, err, errlen);
    }
    for (const char *c = name; *c; c++)
        if (!(*c == '-' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
            return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                              "hardware '%s': a name is lower-case letters, digits, - and _", name);
    snprintf(path, sizeof path, "%s/scenarios/hardware/%s.ini", cli_source_dir(), name);
    if (access(path, R_OK) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "unknown hardware '%s' (known: cpu-local, a100-bf16, h100-bf16, or a profile file)", name);
    return sim_hardware_load(hw, path, err, errlen);
}

static void write_link_costs(FILE *f, const char *key, const sim_link_prices *p)
{
    fprintf(f, "%s = ", key);
    if (p->n == 0)
        fputs("0", f);
    for (int k = 0; k < p->n; k++) {
        fprintf(f, "%s%.6g", k > 0 ? ", " : "", p->cost_s[k]);
        if (p->bps[k] > 0)
            fprintf(f, "@%.6g", p->bps[k]);
    }
    fputs("\n", f);
}

int sim_hardware_write(const sim_hardware *hw, const char *path, const char *comment, char *err, size_t errlen)
{
    char dir[1100], tmp[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        mkdir(dir, 0755); /* one level, as results/hardware needs; fopen says the rest */
    }
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write: %s", tmp, strerror(errno));
    /* inih reads at most INI_MAX_LINE (200) bytes a line and parses the rest as a line of
     * its own: comment lines are folded at a space before COMMENT_WIDTH */
    enum { COMMENT_WIDTH = 120 };
    for (const char *c = comment; c != NULL && *c;) {
        const char *nl = strchr(c, '\n');
        int len = nl != NULL ? (int)(nl - c) : (int)strlen(c), take = len;
        if (take > COMMENT_WIDTH) {
            take = COMMENT_WIDTH;
            while (take > COMMENT_WIDTH / 2 && c[take] != ' ')
                take--;
        }
        fprintf(f, "%s%.*s\n", c > comment && c[-1] != '\n' ? ";   " : "; ", take, c);
        c += take;
        if (take == len)
            c += nl != NULL;
        else
            while (*c == ' ')
                c++;
    }
    fprintf(f,
            "[hardware]\nname = %s\npeak_flops = %.6g\nmatmul = %.6g\nattention = %.6g\ncodec = %.6g\n"
            "memory_bytes_s = %.6g\nop_overhead_s = %.6g\nact_bytes = %g\nparam_bytes = %g\nbyte_cost_s = %.6g\n"
            "host = %s\ncores = %g\n",
            hw->name, hw->peak_flops, hw->efficiency[SIM_MATMUL], hw->efficiency[SIM_ATTENTION],
            hw->efficiency[SIM_CODEC], hw->memory_bytes_s, hw->op_overhead_s, hw->act_bytes, hw->param_bytes,
            hw->byte_cost_s, hw->host ? "true" : "false", hw->cores);
    write_link_costs(f, "link_cost_s", &hw->link_cost);
    write_link_costs(f, "delay_link_cost_s", &hw->delay_link_cost);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write: %s", path, strerror(errno));
    }
    return WANCP_OK;
}
