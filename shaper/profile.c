#include "profile.h"

#include "ini_input.h"

#include "../core/base/status.h"
#include "units.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parsing state: the profile, where we are, and every problem found so far. */
typedef struct parse {
    link_profile *p;
    ini_input in; /* in.path: the file */
    int in_link;
    int seen_link, seen_rate, seen_delay, seen_jitter, seen_trace;
    int delay_bad; /* a delay was given but did not parse: say that, not "no delay" */
    int jitter_line;
    char trace_path[1024];
    int trace_line;
} parse;

/* Records one problem; returns -1 so callers can `return problem(...)`. */
static int problem(parse *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int problem(parse *ps, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ini_input_problem_at(&ps->in, line, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_loss(const char *v, uint32_t *ppm)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || strcmp(end, "%") != 0 || !(x >= 0.0 && x <= 100.0))
        return -1;
    *ppm = (uint32_t)(x * 10000.0 + 0.5);
    return 0;
}

/* "0s 300mbit, 30s 100mbit": times ascending, starting at 0. */
static int parse_schedule(parse *ps, const char *v)
{
    char copy[1024], err[WANCP_ERRLEN];
    snprintf(copy, sizeof copy, "%s", v);
    if (ps->p->schedule != NULL) /* the reader refuses a repeated key; never write past this one's steps */
        return problem(ps, ps->in.line, "schedule given twice");
    if (copy[strspn(copy, " \t")] == '\0')
        return problem(ps, ps->in.line, "schedule is empty (give \"time rate\" steps, e.g. 0s 300mbit, 30s 100mbit)");
    size_t n = 1;
    for (const char *c = copy; *c; c++)
        n += *c == ',';
    ps->p->schedule = calloc(n, sizeof *ps->p->schedule);
    if (ps->p->schedule == NULL)
        return problem(ps, ps->in.line, "schedule: out of memory");
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char at[64] = "", rate[64] = "", extra[8] = "";
        if (sscanf(item, " %63s %63s %7s", at, rate, extra) != 2)
            return problem(ps, ps->in.line, "schedule: '%s' is not \"time rate\"", item);
        rate_step *s = &ps->p->schedule[ps->p->nschedule];
        if (shaper_parse_time(at, &s->at_ns, err, sizeof err) != WANCP_OK)
            return problem(ps, ps->in.line, "schedule: %s", err);
        if (shaper_parse_rate(rate, &s->rate_bps, err, sizeof err) != WANCP_OK)
            return problem(ps, ps->in.line, "schedule: %s", err);
        if (s->rate_bps == 0)
            return problem(ps, ps->in.line, "schedule: %s at %s: a rate must be above 0", rate, at);
        if (ps->p->nschedule == 0 && s->at_ns != 0)
            return problem(ps, ps->in.line, "schedule: the first step must be at 0s, not %s", at);
        if (ps->p->nschedule > 0 && s->at_ns <= ps->p->schedule[ps->p->nschedule - 1].at_ns)
            return problem(ps, ps->in.line, "schedule: %s does not come after the step before it", at);
        ps->p->nschedule++;
    }
    return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse *ps = user;
    link_profile *p = ps->p;
    char err[WANCP_ERRLEN];
    if (strcmp(section, "link") != 0) {
        problem(ps, ps->in.line, "unknown section [%s] (expected [link])", section);
        return 1;
    }
    ps->seen_link = 1;
    if (strcmp(name, "name") == 0) {
        if (value[0] == '\0' || strlen(value) >= sizeof p->name)
            problem(ps, ps->in.line, "name: 1 to %zu characters", sizeof p->name - 1);
        else
            snprintf(p->name, sizeof p->name, "%s", value);
    } else if (strcmp(name, "rate") == 0) {
        ps->seen_rate = 1;
        if (shaper_parse_rate(value, &p->rate_bps, err, sizeof err) != WANCP_OK)
            problem(ps, ps->in.line, "%s", err);
        else if (p->rate_bps == 0)
            problem(ps, ps->in.line, "rate must be above 0");
    } else if (strcmp(name, "delay") == 0) {
        ps->seen_delay = 1;
        if (shaper_parse_time(value, &p->delay_ns, err, sizeof err) != WANCP_OK) {
            problem(ps, ps->in.line, "delay: %s", err);
            ps->delay_bad = 1;
        }
    } else if (strcmp(name, "jitter") == 0) {
        ps->seen_jitter = 1;
        ps->jitter_line = ps->in.line;
        if (shaper_parse_time(value, &p->jitter_ns, err, sizeof err) != WANCP_OK)
            problem(ps, ps->in.line, "jitter: %s", err);
    } else if (strcmp(name, "distribution") == 0) {
        static const char *const names[] = {"uniform", "normal", "pareto", "paretonormal"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(value, names[i]) == 0)
                found = i;
        if (found < 0)
            problem(ps, ps->in.line, "distribution '%s': expected uniform, normal, pareto or paretonormal", value);
        else
            p->distribution = found;
    } else if (strcmp(name, "loss") == 0) {
        if (parse_loss(value, &p->loss_ppm) != 0)
            problem(ps, ps->in.line, "loss '%s': expected a percentage from 0%% to 100%%, e.g. 0.1%%", value);
    } else if (strcmp(name, "queue") == 0) {
        if (shaper_parse_size(value, &p->queue_bytes, err, sizeof err) != WANCP_OK)
            problem(ps, ps->in.line, "queue: %s", err);
    } else if (strcmp(name, "schedule") == 0) {
        parse_schedule(ps, value);
    } else if (strcmp(name, "trace") == 0) {
        ps->seen_trace = 1;
        ps->trace_line = ps->in.line;
        snprintf(ps->trace_path, sizeof ps->trace_path, "%s", value);
    } else {
        problem(ps, ps->in.line,
                "unknown key '%s' (expected name, rate, delay, jitter, distribution, loss, queue, "
                "schedule or trace)",
                name);
    }
    return 1;
}

/* A mahimahi trace: one delivery opportunity per line, a millisecond timestamp each,
 * never going backwards. A relative path is taken from the profile's folder. */
static int load_trace(parse *ps)
{
    char path[2048];
    const char *slash = strrchr(ps->in.path, '/');
    if (ps->trace_path[0] == '/' || slash == NULL)
        snprintf(path, sizeof path, "%s", ps->trace_path);
    else
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - ps->in.path), ps->in.path, ps->trace_path);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return problem(ps, ps->trace_line, "trace %s: cannot open", path);
    size_t cap = 1024;
    link_profile *p = ps->p;
    p->trace_ms = malloc(cap * sizeof *p->trace_ms);
    char line[128];
    int line_no = 0, bad = 0;
    while (p->trace_ms != NULL && fgets(line, sizeof line, f) != NULL && bad < 3) {
        line_no++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            problem(ps, ps->trace_line, "trace %s:%d: line longer than %zu characters", path, line_no, sizeof line - 2);
            bad++;
            int c;
            while ((c = getc(f)) != EOF && c != '\n') /* the rest of the line */
                ;
            continue;
        }
        char *end;
        errno = 0;
        unsigned long ms = strtoul(line, &end, 10);
        int range = errno == ERANGE || ms > UINT32_MAX;
        while (*end == ' ' || *end == '\r' || *end == '\n')
            end++;
        if (end == line || *end != 0 || line[0] == '-' || range) {
            problem(ps, ps->trace_line, "trace %s:%d: '%.*s' is not a millisecond timestamp (0 to %u)", path, line_no,
                    (int)strcspn(line, "\r\n"), line, UINT32_MAX);
            bad++;
            continue;
        }
        if (p->ntrace > 0 && ms < p->trace_ms[p->ntrace - 1]) {
            problem(ps, ps->trace_line, "trace %s:%d: %lu ms goes backwards (after %u ms)", path, line_no, ms,
                    p->trace_ms[p->ntrace - 1]);
            bad++;
            continue;
        }
        if (p->ntrace == cap) {
            uint32_t *grown = realloc(p->trace_ms, 2 * cap * sizeof *grown);
            if (grown == NULL)
                break;
            p->trace_ms = grown;
            cap *= 2;
        }
        p->trace_ms[p->ntrace++] = (uint32_t)ms;
    }
    fclose(f);
    if (bad == 0 && p->ntrace == 0)
        problem(ps, ps->trace_line, "trace %s: no delivery opportunities", path);
    if (bad == 0 && p->ntrace > 0 && p->trace_ms[p->ntrace - 1] == 0)
        problem(ps, ps->trace_line, "trace %s: every opportunity is at 0 ms (a trace must span time)", path);
    return 0;
}

int link_profile_load(link_profile *p, const char *path, char *err, size_t errlen)
{
    *p = (link_profile){.distribution = JITTER_NORMAL};
    parse ps = {.p = p, .in.path = path};
    ps.in.file = fopen(path, "r");
    if (ps.in.file == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open", path);
    int rc = ini_input_parse(&ps.in, handler, &ps);
    fclose(ps.in.file);
    if (rc > 0 && ps.in.nproblems == 0)
        problem(&ps, rc, "not INI syntax (expected [link] and key = value lines)");
    if (rc == 0 && !ps.seen_link)
        problem(&ps, 1, "no [link] section");
    if (ps.seen_link && !ps.seen_rate && !ps.seen_trace)
        problem(&ps, ps.in.line, "no rate (give rate, or a trace)");
    if (ps.seen_jitter && p->jitter_ns > 0 && !ps.delay_bad && (!ps.seen_delay || p->delay_ns == 0))
        problem(&ps, ps.jitter_line, "jitter without delay (jitter spreads the delay: give delay too)");
    if (p->jitter_ns > p->delay_ns && p->delay_ns > 0 && p->distribution == JITTER_UNIFORM)
        problem(&ps, ps.jitter_line, "uniform jitter larger than the delay would make delays negative");
    if (ps.seen_trace && ps.in.nproblems == 0)
        load_trace(&ps);
    if (p->name[0] == 0) {
        const char *base = strrchr(path, '/');
        snprintf(p->name, sizeof p->name, "%.*s", (int)strcspn(base ? base + 1 : path, "."), base ? base + 1 : path);
    }
    if (ps.in.nproblems > 0) {
        link_profile_free(p);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s", ps.in.problems);
    }
    return WANCP_OK;
}

void link_profile_free(link_profile *p)
{
    free(p->schedule);
    free(p->trace_ms);
    p->schedule = NULL;
    p->trace_ms = NULL;
    p->nschedule = p->ntrace = 0;
}

bool link_profile_delays(const link_profile *p) { return p->delay_ns > 0 || p->jitter_ns > 0 || p->loss_ppm > 0; }

void link_profile_describe(const link_profile *p, char *buf, size_t len)
{
    static const char *const names[] = {"uniform", "normal", "pareto", "paretonormal"};
    char rate[32] = "trace", delay[32], jitter[32];
    if (p->rate_bps > 0)
        shaper_format_rate(p->rate_bps, rate, sizeof rate);
    shaper_format_time(p->delay_ns, delay, sizeof delay);
    shaper_format_time(p->jitter_ns, jitter, sizeof jitter);
    size_t used = (size_t)snprintf(buf, len, "%s: %s", p->name, rate);
    if (p->delay_ns > 0 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", delay %s", delay);
    if (p->jitter_ns > 0 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", jitter %s %s", jitter, names[p->distribution]);
    if (p->loss_ppm > 0 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", loss %.4g%%", p->loss_ppm / 10000.0);
    if (p->nschedule > 0 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", %zu-step schedule", p->nschedule);
    if (p->ntrace > 0 && used < len)
        snprintf(buf + used, len - used, ", trace of %zu opportunities over %u ms", p->ntrace,
                 p->trace_ms[p->ntrace - 1]);
}

int link_profile_dilate(const link_profile *in, double D, link_profile *out)
{
    *out = *in;
    out->schedule = NULL;
    out->trace_ms = NULL;
    out->rate_bps = (uint64_t)llround((double)in->rate_bps / D);
    out->delay_ns = (uint64_t)llround((double)in->delay_ns * D);
    out->jitter_ns = (uint64_t)llround((double)in->jitter_ns * D);
    out->queue_bytes = (uint64_t)llround((double)in->queue_bytes / D);
    if (in->nschedule > 0) {
        out->schedule = malloc(in->nschedule * sizeof *out->schedule);
        if (out->schedule == NULL)
            return -1;
        for (size_t i = 0; i < in->nschedule; i++)
            out->schedule[i] = (rate_step){.at_ns = (uint64_t)llround((double)in->schedule[i].at_ns * D),
                                           .rate_bps = (uint64_t)llround((double)in->schedule[i].rate_bps / D)};
    }
    if (in->ntrace > 0) {
        out->trace_ms = malloc(in->ntrace * sizeof *out->trace_ms);
        if (out->trace_ms == NULL) {
            free(out->schedule);
            return -1;
        }
        for (size_t i = 0; i < in->ntrace; i++)
            out->trace_ms[i] = (uint32_t)llround((double)in->trace_ms[i] * D);
    }
    return 0;
}
