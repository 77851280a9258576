/* A results folder read back into per-arm summaries (summary.json, summary.md). */
#include "results.h"

#include "../../core/comm/comm.h"
#include "../../core/base/status.h"
#include "../../core/util/buf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- wire.csv: bytes on the wire per second and flow ---- */

typedef struct wire_row {
    double second;
    int src, dst, port;
    double frames, wire, payload;
} wire_row;

typedef struct wire_file {
    wire_row *rows;
    size_t n;
    double start_unix;
} wire_file;

static int wire_read(wire_file *w, const char *path, char *err, size_t errlen)
{
    *w = (wire_file){.start_unix = NAN};
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open", path);
    char line[512];
    size_t cap = 0;
    int lineno = 0, rc = WANCP_OK;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strncmp(line, "# start_unix:", 13) == 0)
            w->start_unix = strtod(line + 13, NULL);
        if (line[0] < '0' || line[0] > '9')
            continue;
        wire_row r;
        if (sscanf(line, "%lf,%d,%d,%d,%lf,%lf,%lf", &r.second, &r.src, &r.dst, &r.port, &r.frames, &r.wire,
                   &r.payload) != 7) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: expected 7 numbers", path, lineno);
            break;
        }
        if (w->n == cap) {
            cap = cap ? 2 * cap : 1024;
            wire_row *grown = realloc(w->rows, cap * sizeof *grown);
            if (grown == NULL) {
                rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
                break;
            }
            w->rows = grown;
        }
        w->rows[w->n++] = r;
    }
    fclose(f);
    if (rc != WANCP_OK) {
        free(w->rows);
        w->rows = NULL;
    }
    return rc;
}

/* The traffic class of a listening port (comm.h: master_port + 1 + 4 rank + class). */
static int port_class(int port, int master_port)
{
    if (port <= master_port)
        return COMM_CONTROL; /* the rendezvous */
    return (port - master_port - 1) % COMM_NCLASSES;
}

/* K/V bytes rank 0 put on the wire between unix times a and b (seconds are apportioned
 * where the window cuts them); NAN bounds: the whole capture. */
static void wire_kv_from_rank0(const wire_file *w, int master_port, double a, double b, double *wire, double *payload)
{
    *wire = *payload = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wire_row *r = &w->rows[i];
        int cls = port_class(r->port, master_port);
        if (r->src != 0 || r->dst < 0 || r->port == 0 || (cls != COMM_KV_FORWARD && cls != COMM_KV_BACKWARD))
            continue;
        double share = 1.0;
        if (isfinite(a) && isfinite(b)) {
            double lo = w->start_unix + r->second, hi = lo + 1;
            double from = lo > a ? lo : a, to = hi < b ? hi : b;
            share = to > from ? to - from : 0;
        }
        *wire += share * r->wire;
        *payload += share * r->payload;
    }
}

/* ---- summary of one arm ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n == 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Training-loss spikes: a step whose loss exceeds twice the median of the (up to) 20 steps
 * before it, once 5 are there. A baseline that spikes and recovers compares recoveries, not
 * methods; the summary says so. */
static void find_spikes(arm_summary *a, const metrics_file *m)
{
    enum { WINDOW = 20, MIN_HISTORY = 5 };
    double window[WINDOW], sorted[WINDOW];
    int have = 0;
    a->spikes = a->first_spike_step = 0;
    for (int i = 0; i < m->nrows; i++) {
        const double loss = m->rows[i].train_loss;
        if (m->rows[i].step <= 0 || !isfinite(loss))
            continue;
        const int n = have < WINDOW ? have : WINDOW;
        if (n >= MIN_HISTORY) {
            memcpy(sorted, window, (size_t)n * sizeof *sorted);
            if (loss > 2 * median(sorted, n)) {
                a->spikes++;
                if (a->first_spike_step == 0)
                    a->first_spike_step = m->rows[i].step;
            }
        }
        window[have++ % WINDOW] = loss;
    }
}

/* Everything the metrics tell: losses, time to target, the steady window's medians. */
static void summarize_metrics(arm_summary *a, const metrics_file *m, double target)
{
    const double D = a->dilation;
    const metrics_row *rows = m->rows;
    const int n = m->nrows;
    a->final_val_loss = NAN;
    a->time_to_target_s = NAN;
    double train_s = 0, prev_s = NAN, prev_val = NAN;
    for (int i = 0; i < n; i++) {
        if (rows[i].step > 0 && isfinite(rows[i].step_ms))
            train_s += rows[i].step_ms / 1e3 / D;
        if (isfinite(rows[i].val_loss)) {
            const double v = rows[i].val_loss;
            a->final_val_loss = v;
            /* Where the validation curve crosses the target, linear between evaluations, so
             * the evaluation interval does not round every arm's time up. */
            if (target > 0 && v <= target && !isfinite(a->time_to_target_s))
                a->time_to_target_s = isfinite(prev_val) && prev_val > target
                                          ? prev_s + (train_s - prev_s) * (prev_val - target) / (prev_val - v)
                                          : train_s;
            prev_s = train_s;
            prev_val = v;
        }
        a->steps = rows[i].step;
    }
    /* Steady: from the second step after the last switch (compression on, or off when
     * unplugged), so start-up and the switch itself are left out. */
    int switch_at = 0;
    for (int i = 2; i < n; i++)
        if (rows[i].compressed != rows[i - 1].compressed)
            switch_at = i;
    int from = switch_at + 2 < n ? switch_at + 2 : (n > 1 ? n - 1 : 0);
    a->steady_from = n > 0 ? rows[from].step : 0;
    int k = 0;
    double *v[7];
    int allocated = 1;
    for (int j = 0; j < 7; j++)
        allocated &= (v[j] = calloc((size_t)n + 1, sizeof(double))) != NULL;
    if (!allocated) {
        for (int j = 0; j < 7; j++)
            free(v[j]);
        return;
    }
    for (int i = from > 0 ? from : 1; i < n; i++, k++) {
        v[0][k] = rows[i].step_ms / 1e3 / D;
        v[1][k] = (rows[i].step_ms - rows[i].comm_ms) / 1e3 / D;
        v[2][k] = rows[i].comm_ms / 1e3 / D;
        v[3][k] = rows[i].kv_fwd_wait_ms / 1e3 / D;
        v[4][k] = rows[i].kv_bwd_wait_ms / 1e3 / D;
        v[5][k] = (double)(rows[i].kv_fwd_tx - rows[i - 1].kv_fwd_tx);
        v[6][k] = (double)(rows[i].kv_bwd_tx - rows[i - 1].kv_bwd_tx);
    }
    a->step_time_s_median = median(v[0], k); /* sorts v[0] */
    a->step_time_s_p95 = k > 0 ? v[0][(int)floor(0.95 * (k - 1))] : NAN;
    a->compute_s_median = median(v[1], k);
    a->comm_s_median = median(v[2], k);
    a->kv_fwd_wait_s_median = median(v[3], k);
    a->kv_bwd_wait_s_median = median(v[4], k);
    a->kv_fwd_bytes_per_step_app = median(v[5], k);
    a->kv_bwd_bytes_per_step_app = median(v[6], k);
    a->kv_bytes_per_step_app = a->kv_fwd_bytes_per_step_app + a->kv_bwd_bytes_per_step_app;
    k = 0;
    for (int i = from > 0 ? from : 1; i < n; i++)
        v[0][k++] = rows[i].sync_wait_ms / 1e3 / D;
    a->sync_wait_s_median = median(v[0], k);
    for (int j = 0; j < 7; j++)
        free(v[j]);
    if (n > 1 && a->steps > 0)
        a->sync_bytes_per_step = (double)(rows[n - 1].sync_tx - rows[0].sync_tx) / (double)(n - 1);
    uint64_t fwd, bwd;
    metrics_kv_formula(m, 0, n > 0 && rows[n - 1].compressed, &fwd, &bwd);
    a->kv_fwd_formula = (double)fwd;
    a->kv_bwd_formula = (double)bwd;
    /* per compressed block: the same formula with every block compressed, against none */
    metrics_file every_block = *m;
    every_block.compress_last = 1;
    uint64_t cf, cb, uf, ub;
    metrics_kv_formula(&every_block, 0, true, &cf, &cb);
    metrics_kv_formula(m, 0, false, &uf, &ub);
    a->compress_last = m->compress_last != 0;
    a->kv_block_ratio = a->compress && uf + ub > 0 ? (double)(cf + cb) / (double)(uf + ub) : NAN;
    find_spikes(a, m);
}

/* Bytes on the wire against the app counters: the whole run, and per step in the steady
 * window (the wire's bytes per app byte there, times a training step's app bytes, so the
 * evaluations' traffic, counted by both, does not inflate a step). A window shorter than
 * 30 s takes the whole run's ratio instead. */
static void summarize_wire(arm_summary *a, const metrics_file *m, const wire_file *w, int master_port)
{
    const int n = m->nrows;
    double wire, payload;
    wire_kv_from_rank0(w, master_port, NAN, NAN, &wire, &payload);
    const double app_total = n > 0 ? (double)(m->rows[n - 1].kv_fwd_tx + m->rows[n - 1].kv_bwd_tx) : 0;
    a->wire_payload_over_app = app_total > 0 ? payload / app_total : NAN;
    int from = 0;
    while (from < n && m->rows[from].step < a->steady_from)
        from++;
    /* Per-second buckets cut the window's ends approximately: only a long window is used. */
    const double min_window_s = 30;
    if (from < 1 || from >= n || !isfinite(m->rows[from - 1].unix_s) || !isfinite(w->start_unix) ||
        m->rows[n - 1].unix_s - m->rows[from - 1].unix_s < min_window_s) {
        a->wire_over_app = app_total > 0 ? wire / app_total : NAN;
    } else {
        const metrics_row *first = &m->rows[from - 1], *last = &m->rows[n - 1];
        wire_kv_from_rank0(w, master_port, first->unix_s, last->unix_s, &wire, &payload);
        double app = (double)(last->kv_fwd_tx + last->kv_bwd_tx - first->kv_fwd_tx - first->kv_bwd_tx);
        a->wire_over_app = app > 0 ? wire / app : NAN;
    }
    a->kv_bytes_per_step_wire = a->kv_bytes_per_step_app * a->wire_over_app;
}

/* ---- an arm over its seeds ---- */

/* Seeds whose value lies outside the 95% prediction interval of the other seeds' values
 * (leave one out; needs 3 seeds or more): seeds that disagree beyond their spread. */
static int count_outliers(const double *x, int n)
{
    int outliers = 0;
    double others[RESULTS_MAX_SEEDS];
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 0; j < n; j++)
            if (j != i && isfinite(x[j]))
                others[k++] = x[j];
        if (!isfinite(x[i]) || k < 2)
            continue;
        const interval r = interval_95(others, k);
        /* the interval's half width is t sd / sqrt(k); a new value's is t sd sqrt(1 + 1/k) */
        const double half = r.half_width * sqrt((double)k) * sqrt(1 + 1.0 / k);
        outliers += fabs(x[i] - r.mean) > half;
    }
    return outliers;
}

static int group_of(run_summary *s, const char *name)
{
    for (int g = 0; g < s->ngroups; g++)
        if (strcmp(s->groups[g].name, name) == 0)
            return g;
    if (s->ngroups == RESULTS_MAX_ARMS)
        return -1;
    arm_group *g = &s->groups[s->ngroups];
    *g = (arm_group){0};
    snprintf(g->name, sizeof g->name, "%s", name);
    return s->ngroups++;
}

/* The value of a field for each of a group's seeds, in the order of the run's seeds, so two
 * groups' arrays pair seed with seed (NAN where a seed has no run or no value). */
static void by_seed(const run_summary *s, const arm_group *g, double (*field)(const arm_summary *), double *out)
{
    for (int k = 0; k < s->nseeds; k++) {
        out[k] = NAN;
        for (int r = 0; r < g->nruns; r++)
            if (s->arms[g->runs[r]].seed == s->seeds[k] && s->arms[g->runs[r]].has_metrics)
                out[k] = field(&s->arms[g->runs[r]]);
    }
}

static double final_val_loss(const arm_summary *a) { return a->final_val_loss; }
static double perplexity(const arm_summary *a) { return exp(a->final_val_loss); }
static double time_to_target(const arm_summary *a) { return a->time_to_target_s; }
static double step_time(const arm_summary *a) { return a->step_time_s_median; }

/* The group g is compared with: the baseline, or where a [sweep] made both, the arm the sweep
 * made from the baseline's arm with g's value (each corpus against its own baseline). */
static int pair_of(const run_summary *s, int g, int base)
{
    const arm_summary *a = &s->arms[s->groups[g].runs[0]], *b = &s->arms[s->groups[base].runs[0]];
    if (!a->swept_from[0] || !b->swept_from[0] || strcmp(a->sweep_key, b->sweep_key) != 0)
        return base;
    for (int k = 0; k < s->ngroups; k++) {
        const arm_summary *c = &s->arms[s->groups[k].runs[0]];
        if (strcmp(c->swept_from, b->swept_from) == 0 && strcmp(c->sweep_value, a->sweep_value) == 0)
            return k;
    }
    return base;
}

static void group_runs(run_summary *s)
{
    s->ngroups = 0;
    for (int i = 0; i < s->narms; i++) {
        const int g = group_of(s, s->arms[i].name);
        if (g >= 0 && s->groups[g].nruns < RESULTS_MAX_SEEDS)
            s->groups[g].runs[s->groups[g].nruns++] = i;
    }
    int base = -1;
    for (int g = 0; g < s->ngroups; g++)
        if (strcmp(s->groups[g].name, s->baseline) == 0)
            base = g;
    for (int i = 0; i < s->narms && base < 0; i++) /* results from before baselines */
        if (!s->arms[i].compress && strstr(s->arms[i].link, "unshaped") != NULL)
            base = group_of(s, s->arms[i].name);
    if (base < 0 && s->ngroups > 0)
        base = 0;
    if (base >= 0)
        snprintf(s->baseline, sizeof s->baseline, "%s", s->groups[base].name);
    double x[RESULTS_MAX_SEEDS], y[RESULTS_MAX_SEEDS];
    for (int gi = 0; gi < s->ngroups; gi++) {
        arm_group *g = &s->groups[gi];
        for (int r = 0; r < g->nruns; r++) {
            const arm_summary *a = &s->arms[g->runs[r]];
            g->ok += strcmp(a->outcome, "ok") == 0;
            g->reached += isfinite(a->time_to_target_s);
            g->spiky += a->spikes > 0;
        }
        by_seed(s, g, final_val_loss, x);
        g->final_val_loss = interval_95(x, s->nseeds);
        g->outliers = count_outliers(x, s->nseeds);
        by_seed(s, g, perplexity, x);
        g->perplexity = interval_95(x, s->nseeds);
        by_seed(s, g, time_to_target, x);
        g->time_to_target_s = interval_95(x, s->nseeds);
        by_seed(s, g, step_time, x);
        g->step_time_s = interval_95(x, s->nseeds);
        const interval none = {.mean = NAN, .half_width = NAN};
        g->d_final_val_loss = g->d_time_to_target_s = g->d_step_time_s = none;
        const int paired = base >= 0 ? pair_of(s, gi, base) : -1;
        if (paired < 0 || gi == paired)
            continue;
        memcpy(g->paired_with, s->groups[paired].name, sizeof g->paired_with); /* both 64 bytes, NUL-terminated */
        double (*fields[3])(const arm_summary *) = {final_val_loss, time_to_target, step_time};
        interval *diffs[3] = {&g->d_final_val_loss, &g->d_time_to_target_s, &g->d_step_time_s};
        for (int f = 0; f < 3; f++) {
            by_seed(s, g, fields[f], x);
            by_seed(s, &s->groups[paired], fields[f], y);
            *diffs[f] = paired_interval_95(x, y, s->nseeds);
        }
    }
}

static void json_text(json_t *o, const char *key, char *out, size_t len)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(out, len, "%s", s != NULL ? s : "");
}

int results_summarize(run_summary *s, const char *run_dir, char *err, size_t errlen)
{
    *s = (run_summary){.dilation = 1, .master_port = 20000};
    snprintf(s->dir, sizeof s->dir, "%s", run_dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    json_error_t jerr;
    json_t *run = json_load_file(path, 0, &jerr);
    if (run == NULL && access(path, R_OK) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot read: not a wancp run's results folder", path);
    if (run == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: %s", path, jerr.line, jerr.text);
    json_text(run, "scenario", s->scenario, sizeof s->scenario);
    if (json_is_number(json_object_get(run, "dilation")))
        s->dilation = json_number_value(json_object_get(run, "dilation"));
    s->target_val_loss = json_number_value(json_object_get(run, "target_val_loss"));
    if (json_is_integer(json_object_get(run, "master_port")))
        s->master_port = (int)json_integer_value(json_object_get(run, "master_port"));
    json_t *arms = json_object_get(run, "arms"), *seeds = json_object_get(run, "seeds");
    if (!json_is_array(arms) || s->dilation < 1) {
        json_decref(run);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no \"arms\" list (or a dilation below 1)", path);
    }
    for (size_t i = 0; i < json_array_size(seeds) && s->nseeds < RESULTS_MAX_SEEDS; i++) {
        const json_int_t seed = json_integer_value(json_array_get(seeds, i));
        if (!json_is_integer(json_array_get(seeds, i)) || seed < 0 || seed > 2147483647) {
            json_decref(run);
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: \"seeds\"[%zu] is not a seed", path, i);
        }
        s->seeds[s->nseeds++] = (unsigned long)seed;
    }
    if (s->nseeds == 0) /* results from before seeds */
        s->seeds[s->nseeds++] = 1;
    json_text(run, "baseline", s->baseline, sizeof s->baseline);
    if (json_is_object(json_object_get(run, "dilation_choice")))
        json_text(json_object_get(run, "dilation_choice"), "why", s->dilation_why, sizeof s->dilation_why);
    int rc = WANCP_OK;
    for (size_t i = 0; i < json_array_size(arms) && s->narms < RESULTS_MAX_RUNS; i++) {
        json_t *ja = json_array_get(arms, i);
        arm_summary *a = &s->arms[s->narms++];
        *a = (arm_summary){.dilation = s->dilation,
                           .final_val_loss = NAN,
                           .time_to_target_s = NAN,
                           .step_time_s_median = NAN,
                           .step_time_s_p95 = NAN,
                           .compute_s_median = NAN,
                           .comm_s_median = NAN,
                           .kv_fwd_wait_s_median = NAN,
                           .kv_bwd_wait_s_median = NAN,
                           .sync_wait_s_median = NAN,
                           .kv_fwd_bytes_per_step_app = NAN,
                           .kv_bwd_bytes_per_step_app = NAN,
                           .kv_bytes_per_step_app = NAN,
                           .kv_bytes_per_step_wire = NAN,
                           .sync_bytes_per_step = NAN,
                           .kv_fwd_formula = NAN,
                           .kv_block_ratio = NAN,
                           .kv_bwd_formula = NAN,
                           .wire_payload_over_app = NAN,
                           .wire_over_app = NAN};
        json_text(ja, "name", a->name, sizeof a->name);
        json_text(ja, "outcome", a->outcome, sizeof a->outcome);
        json_text(ja, "reason", a->reason, sizeof a->reason);
        json_text(ja, "link", a->link, sizeof a->link);
        json_text(ja, "sync", a->sync, sizeof a->sync);
        a->sync_every = (int)json_integer_value(json_object_get(ja, "sync_every"));
        a->compress = json_is_true(json_object_get(ja, "compress"));
        if (a->name[0] == 0 || strchr(a->name, '/') != NULL || a->name[0] == '.') {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: arm %zu has no usable name", path, i);
            break;
        }
        json_t *sweep = json_object_get(ja, "sweep");
        if (json_is_object(sweep)) {
            json_text(sweep, "from", a->swept_from, sizeof a->swept_from);
            json_text(sweep, "key", a->sweep_key, sizeof a->sweep_key);
            json_text(sweep, "value", a->sweep_value, sizeof a->sweep_value);
        }
        json_t *seed = json_object_get(ja, "seed");
        if (seed != NULL &&
            (!json_is_integer(seed) || json_integer_value(seed) < 0 || json_integer_value(seed) > 2147483647)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: arm %zu's seed is not a seed", path, i);
            break;
        }
        a->seed = seed != NULL ? (unsigned long)json_integer_value(seed) : s->seeds[0];
        char dir[sizeof a->dir];
        if (s->nseeds > 1) /* as scenario_run_dir names it */
            snprintf(dir, sizeof dir, "%s/seed-%lu", a->name, a->seed);
        else
            snprintf(dir, sizeof dir, "%s", a->name);
        memcpy(a->dir, dir, sizeof dir);
        metrics_file m;
        snprintf(path, sizeof path, "%s/%s/metrics.csv", run_dir, a->dir);
        if (access(path, F_OK) != 0)
            continue; /* never started, or nothing written */
        if ((rc = metrics_read(&m, path, err, errlen)) != WANCP_OK)
            break;
        a->has_metrics = true;
        summarize_metrics(a, &m, s->target_val_loss);
        wire_file w;
        snprintf(path, sizeof path, "%s/%s/wire.csv", run_dir, a->dir);
        if (access(path, F_OK) == 0) {
            if ((rc = wire_read(&w, path, err, errlen)) != WANCP_OK) {
                metrics_free(&m);
                break;
            }
            a->has_wire = true;
            summarize_wire(a, &m, &w, s->master_port);
            free(w.rows);
        }
        metrics_free(&m);
    }
    json_t *simulation = json_object_get(run, "simulation");
    s->simulate = json_is_object(simulation);
    if (s->simulate)
        json_text(simulation, "note", s->sim_note, sizeof s->sim_note);
    json_decref(run);
    if (rc == WANCP_OK)
        group_runs(s);
    if (rc == WANCP_OK)
        rc = results_read_prediction(s, err, errlen);
    return rc;
}

/* ---- summary.json and summary.md ---- */

static json_t *number_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *interval_json(interval r)
{
    json_t *o = json_object();
    json_object_set_new(o, "mean", number_or_null(r.mean));
    json_object_set_new(o, "half_width_95", number_or_null(r.half_width));
    json_object_set_new(o, "n", json_integer(r.n));
    return o;
}

static json_t *groups_json(const run_summary *s)
{
    json_t *list = json_array();
    for (int i = 0; i < s->ngroups; i++) {
        const arm_group *g = &s->groups[i];
        json_t *j = json_object(), *d = json_object();
        const arm_summary *first = &s->arms[g->runs[0]];
        json_object_set_new(j, "name", json_string(g->name));
        if (first->swept_from[0])
            json_object_set_new(j, "sweep",
                                json_pack("{s:s, s:s, s:s}", "key", first->sweep_key, "value", first->sweep_value,
                                          "from", first->swept_from));
        json_object_set_new(j, "seeds_run", json_integer(g->nruns));
        json_object_set_new(j, "seeds_ok", json_integer(g->ok));
        json_object_set_new(j, "seeds_reaching_target", json_integer(g->reached));
        json_object_set_new(j, "seeds_with_spikes", json_integer(g->spiky));
        json_object_set_new(j, "seeds_outlying", json_integer(g->outliers));
        json_object_set_new(j, "final_val_loss", interval_json(g->final_val_loss));
        json_object_set_new(j, "final_val_perplexity", interval_json(g->perplexity));
        json_object_set_new(j, "time_to_target_s", interval_json(g->time_to_target_s));
        json_object_set_new(j, "step_time_s_median", interval_json(g->step_time_s));
        if (g->paired_with[0]) {
            json_object_set_new(d, "against", json_string(g->paired_with));
            json_object_set_new(d, "final_val_loss", interval_json(g->d_final_val_loss));
            json_object_set_new(d, "time_to_target_s", interval_json(g->d_time_to_target_s));
            json_object_set_new(d, "step_time_s_median", interval_json(g->d_step_time_s));
            json_object_set_new(j, "minus_baseline_paired", d);
        } else {
            json_decref(d);
        }
        json_array_append_new(list, j);
    }
    return list;
}

static int write_then_rename(const char *path, const char *text, char *err, size_t errlen)
{
    return file_write_atomic(path, text, strlen(text), err, errlen);
}

static char *summary_json(const run_summary *s)
{
    json_t *o = json_object(), *arms = json_array();
    json_object_set_new(o, "scenario", json_string(s->scenario));
    json_object_set_new(o, "dilation", json_real(s->dilation));
    if (s->dilation_why[0])
        json_object_set_new(o, "dilation_chosen", json_string(s->dilation_why));
    json_object_set_new(o, "target_val_loss", number_or_null(s->target_val_loss > 0 ? s->target_val_loss : NAN));
    json_object_set_new(o, "times",
                        json_string("training time: the sum of step times (start-up and evaluation "
                                    "left out), divided by the dilation"));
    json_object_set_new(o, "bytes",
                        json_string("payload bytes rank 0 sends per training step (app counters, median "
                                    "over the steady steps); wire: whole frames"));
    json_t *seeds = json_array();
    for (int i = 0; i < s->nseeds; i++)
        json_array_append_new(seeds, json_integer((json_int_t)s->seeds[i]));
    json_object_set_new(o, "seeds", seeds);
    json_object_set_new(o, "baseline", json_string(s->baseline));
    json_object_set_new(o, "over_seeds_note",
                        json_string("each arm over its seeds: mean and 95% interval (t distribution); "
                                    "minus_baseline_paired: this arm minus the baseline, seed by seed"));
    json_object_set_new(o, "over_seeds", groups_json(s));
    if (s->simulate) {
        json_object_set_new(o, "simulation_note", json_string(s->sim_note));
        json_object_set_new(o, "predicted_vs_measured", results_prediction_json(s));
    }
    for (int i = 0; i < s->narms; i++) {
        const arm_summary *a = &s->arms[i];
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(a->name));
        json_object_set_new(j, "seed", json_integer((json_int_t)a->seed));
        json_object_set_new(j, "dir", json_string(a->dir));
        json_object_set_new(j, "outcome", json_string(a->outcome));
        if (a->reason[0])
            json_object_set_new(j, "reason", json_string(a->reason));
        json_object_set_new(j, "link", json_string(a->link));
        json_object_set_new(j, "sync", json_string(a->sync));
        json_object_set_new(j, "sync_every", json_integer(a->sync_every));
        json_object_set_new(j, "compress", json_boolean(a->compress));
        json_object_set_new(j, "steps", json_integer(a->steps));
        json_object_set_new(j, "final_val_loss", number_or_null(a->final_val_loss));
        json_object_set_new(j, "time_to_target_s", number_or_null(a->time_to_target_s));
        json_object_set_new(j, "steady_from_step", json_integer(a->steady_from));
        json_object_set_new(j, "kv_bytes_per_step_app", number_or_null(a->kv_bytes_per_step_app));
        json_object_set_new(j, "kv_fwd_bytes_per_step_app", number_or_null(a->kv_fwd_bytes_per_step_app));
        json_object_set_new(j, "kv_bwd_bytes_per_step_app", number_or_null(a->kv_bwd_bytes_per_step_app));
        json_object_set_new(j, "kv_bytes_per_step_formula", number_or_null(a->kv_fwd_formula + a->kv_bwd_formula));
        json_object_set_new(j, "kv_block_ratio", number_or_null(a->kv_block_ratio));
        if (a->compress)
            json_object_set_new(j, "compress_last", json_boolean(a->compress_last));
        json_object_set_new(j, "kv_bytes_per_step_wire", number_or_null(a->kv_bytes_per_step_wire));
        json_object_set_new(j, "kv_wire_payload_over_app", number_or_null(a->wire_payload_over_app));
        json_object_set_new(j, "sync_bytes_per_step", number_or_null(a->sync_bytes_per_step));
        json_object_set_new(j, "step_time_s_median", number_or_null(a->step_time_s_median));
        json_object_set_new(j, "step_time_s_p95", number_or_null(a->step_time_s_p95));
        json_object_set_new(j, "compute_s_median", number_or_null(a->compute_s_median));
        json_object_set_new(j, "exposed_comm_s_median", number_or_null(a->comm_s_median));
        json_object_set_new(j, "dilation", json_real(a->dilation));
        json_object_set_new(j, "train_loss_spikes", json_integer(a->spikes));
        json_object_set_new(j, "first_spike_step", a->spikes > 0 ? json_integer(a->first_spike_step) : json_null());
        json_array_append_new(arms, j);
    }
    json_object_set_new(o, "arms", arms);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(o);
    return text;
}

static void fmt_bytes(double b, char *buf, size_t len)
{
    if (!isfinite(b))
        snprintf(buf, len, "-");
    else if (b >= 1e6)
        snprintf(buf, len, "%.2f MB", b / 1e6);
    else
        snprintf(buf, len, "%.1f kB", b / 1e3);
}

static void fmt_num(double x, const char *f, char *buf, size_t len)
{
    if (isfinite(x))
        snprintf(buf, len, f, x);
    else
        snprintf(buf, len, "-");
}

/* "mean ± half" (or the mean alone with one seed): the mean as f prints it (a signed
 * difference: "%+.4f"), the half width with f's decimals and no sign. */
static void fmt_interval(interval r, const char *f, char *buf, size_t len)
{
    char mean[32], half[32], unsigned_f[16];
    fmt_num(r.mean, f, mean, sizeof mean);
    if (!isfinite(r.half_width)) {
        snprintf(buf, len, "%s", mean);
        return;
    }
    snprintf(unsigned_f, sizeof unsigned_f, "%%%s", f + strspn(f, "%+"));
    fmt_num(r.half_width, unsigned_f, half, sizeof half);
    snprintf(buf, len, "%s ± %s", mean, half);
}

/* A paired difference in words: its interval, and whether it excludes zero. */
static void say_difference(FILE *f, const char *what, interval d, const char *unit, const char *fmt)
{
    if (d.n == 0 || !isfinite(d.mean))
        return;
    char mean[32], lo[32], hi[32];
    snprintf(mean, sizeof mean, fmt, d.mean);
    if (!isfinite(d.half_width)) {
        fprintf(f, "%s %s%s (one seed: no interval)", what, mean, unit);
        return;
    }
    snprintf(lo, sizeof lo, fmt, d.mean - d.half_width);
    snprintf(hi, sizeof hi, fmt, d.mean + d.half_width);
    const char *verdict = d.mean - d.half_width > 0   ? "higher"
                          : d.mean + d.half_width < 0 ? "lower"
                                                      : "no difference shown";
    fprintf(f, "%s %s%s, 95%% interval [%s, %s] over %d seeds: %s", what, mean, unit, lo, hi, d.n, verdict);
}

static void groups_md(FILE *f, const run_summary *s)
{
    fprintf(f,
            "\n## Each arm over its %d seeds\n\nMean ± half width of the 95%% interval (t distribution, n - 1 "
            "degrees of freedom); the paired columns take this arm minus the baseline (%s) seed by seed.\n\n",
            s->nseeds, s->baseline);
    fprintf(f, "| arm | seeds ok | final val | perplexity | time to target (seeds reaching it) | step (s) | "
               "val − baseline | time to target − baseline |\n|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < s->ngroups; i++) {
        const arm_group *g = &s->groups[i];
        char fv[80], pp[80], tt[80], st[80], dv[80], dt[80];
        fmt_interval(g->final_val_loss, "%.4f", fv, sizeof fv);
        fmt_interval(g->perplexity, "%.2f", pp, sizeof pp);
        fmt_interval(g->time_to_target_s, "%.1f", tt, sizeof tt);
        fmt_interval(g->step_time_s, "%.3f", st, sizeof st);
        fmt_interval(g->d_final_val_loss, "%+.4f", dv, sizeof dv);
        fmt_interval(g->d_time_to_target_s, "%+.1f", dt, sizeof dt);
        fprintf(f, "| %s | %d/%d | %s | %s | %s s (%d) | %s | %s | %s |\n", g->name, g->ok, g->nruns, fv, pp, tt,
                g->reached, st, g->paired_with[0] ? dv : "baseline", g->paired_with[0] ? dt : "baseline");
    }
    fprintf(f, "\n");
    for (int i = 0; i < s->ngroups; i++) {
        const arm_group *g = &s->groups[i];
        if (!g->paired_with[0] || g->d_final_val_loss.n == 0)
            continue;
        fprintf(f, "- %s − %s, seed by seed: ", g->name, g->paired_with);
        say_difference(f, "final validation loss", g->d_final_val_loss, " nats", "%+.4f");
        if (g->d_time_to_target_s.n > 0) {
            fprintf(f, "; ");
            say_difference(f, "time to target", g->d_time_to_target_s, " s", "%+.1f");
        }
        fprintf(f, ".\n");
    }
}

/* A [sweep]'s table: per arm it was made from, one row per value (the paper's Table 3 when
 * the key is warm_steps: validation perplexity against the warm-up's length). */
static void sweep_md(FILE *f, const run_summary *s)
{
    const arm_summary *any = NULL;
    for (int i = 0; i < s->ngroups && any == NULL; i++)
        if (s->arms[s->groups[i].runs[0]].swept_from[0])
            any = &s->arms[s->groups[i].runs[0]];
    if (any == NULL)
        return;
    fprintf(f, "\n## Sweep over %s\n\n", any->sweep_key);
    fprintf(f, "| arm | %s | final val | perplexity | time to target (seeds reaching it) | step (s) |\n",
            any->sweep_key);
    fprintf(f, "|---|---|---|---|---|---|\n");
    for (int i = 0; i < s->ngroups; i++) {
        const arm_group *g = &s->groups[i];
        const arm_summary *a = &s->arms[g->runs[0]];
        if (!a->swept_from[0])
            continue;
        char fv[80], pp[80], tt[80], st[80];
        fmt_interval(g->final_val_loss, "%.4f", fv, sizeof fv);
        fmt_interval(g->perplexity, "%.2f", pp, sizeof pp);
        fmt_interval(g->time_to_target_s, "%.1f", tt, sizeof tt);
        fmt_interval(g->step_time_s, "%.3f", st, sizeof st);
        fprintf(f, "| %s | %s | %s | %s | %s s (%d/%d) | %s |\n", a->swept_from, a->sweep_value, fv, pp, tt, g->reached,
                g->nruns, st);
    }
}

/* What makes a comparison unsafe: spikes (a baseline that spikes and recovers compares
 * recoveries, not methods) and seeds that disagree beyond their spread. */
static void flags_md(FILE *f, const run_summary *s)
{
    for (int i = 0; i < s->narms; i++) {
        const arm_summary *a = &s->arms[i];
        char seed[32] = "";
        if (s->nseeds > 1)
            snprintf(seed, sizeof seed, " seed %lu", a->seed);
        if (a->spikes > 0)
            fprintf(f,
                    "- FLAG %s%s: training loss spiked above twice its running median at %d step%s (first at step "
                    "%d).\n",
                    a->name, seed, a->spikes, a->spikes == 1 ? "" : "s", a->first_spike_step);
    }
    for (int i = 0; i < s->ngroups; i++)
        if (s->groups[i].outliers > 0)
            fprintf(f,
                    "- FLAG %s: %d seed%s' final validation loss outside the other seeds' 95%% prediction "
                    "interval.\n",
                    s->groups[i].name, s->groups[i].outliers, s->groups[i].outliers == 1 ? "" : "s");
}

static char *summary_md(const run_summary *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    const bool seeded = s->nseeds > 1;
    fprintf(f, "# %s\n\n", s->scenario);
    fprintf(f,
            "Times are training time (the sum of step times; start-up and evaluation left out)%s. "
            "Bytes are what rank 0 sends per training step: the app counters (median over the steady steps) "
            "and whole frames on the wire (pcap).\n\n",
            s->dilation > 1 ? ", dilated: links ran at B/D with delays x D and times are divided by D" : "");
    if (s->dilation_why[0])
        fprintf(f, "Dilation D = %g, %s.\n\n", s->dilation, s->dilation_why);
    else if (s->dilation > 1)
        fprintf(f, "Dilation D = %g (the scenario's).\n\n", s->dilation);
    fprintf(f, "Seed%s", seeded ? "s" : "");
    for (int i = 0; i < s->nseeds; i++)
        fprintf(f, "%s %lu", i ? "," : "", s->seeds[i]);
    fprintf(f, "; baseline arm: %s.\n\n", s->baseline);
    fprintf(f,
            "| arm | outcome | link | sync | steps | final val | time to %s | step (s) | compute | exposed comm | "
            "K/V per step (app) | K/V (wire) | formula | sync per step |\n",
            s->target_val_loss > 0 ? "target" : "target (none)");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    double base_kv = NAN;
    for (int i = 0; i < s->narms; i++) {
        const arm_summary *a = &s->arms[i];
        char fv[32], tt[32], st[32], cs[32], cm[32], kv[32], kw[32], kf[32], sy[32], name[96];
        fmt_num(a->final_val_loss, "%.4f", fv, sizeof fv);
        fmt_num(a->time_to_target_s, "%.1f s", tt, sizeof tt);
        fmt_num(a->step_time_s_median, "%.3f", st, sizeof st);
        fmt_num(a->compute_s_median, "%.3f", cs, sizeof cs);
        fmt_num(a->comm_s_median, "%.3f", cm, sizeof cm);
        fmt_bytes(a->kv_bytes_per_step_app, kv, sizeof kv);
        fmt_bytes(a->kv_bytes_per_step_wire, kw, sizeof kw);
        fmt_bytes(a->kv_fwd_formula + a->kv_bwd_formula, kf, sizeof kf);
        fmt_bytes(a->sync_bytes_per_step, sy, sizeof sy);
        if (seeded)
            snprintf(name, sizeof name, "%s seed %lu", a->name, a->seed);
        else
            snprintf(name, sizeof name, "%s", a->name);
        fprintf(f, "| %s | %s%s%s | %s | %s every %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
                a->outcome, a->reason[0] ? ": " : "", a->reason, a->link, a->sync, a->sync_every, a->steps, fv, tt, st,
                cs, cm, kv, kw, kf, sy);
        if (!a->compress && isfinite(a->kv_bytes_per_step_wire) && !isfinite(base_kv))
            base_kv = a->kv_bytes_per_step_wire;
    }
    if (seeded)
        groups_md(f, s);
    sweep_md(f, s);
    fprintf(f, "\n");
    for (int i = 0; i < s->ngroups; i++) {
        const arm_group *g = &s->groups[i];
        const arm_summary *a = &s->arms[g->runs[0]]; /* bytes do not depend on the seed */
        const double t = g->time_to_target_s.mean;
        double base_time = NAN;
        for (int k = 0; k < s->ngroups && g->paired_with[0]; k++)
            if (strcmp(s->groups[k].name, g->paired_with) == 0)
                base_time = s->groups[k].time_to_target_s.mean;
        if (a->compress && isfinite(a->kv_bytes_per_step_wire) && isfinite(base_kv))
            fprintf(f,
                    "- %s: K/V on the wire per step %.2f%% of an uncompressed arm's (the whole step, %s); "
                    "%.2f%% per compressed block (METHOD.md section 5's formula).\n",
                    a->name, 100 * a->kv_bytes_per_step_wire / base_kv,
                    a->compress_last ? "every block compressed" : "the last block exact, as the paper",
                    100 * a->kv_block_ratio);
        if (isfinite(t) && isfinite(base_time))
            fprintf(f, "- %s: time to target %.2fx the baseline's (%s)%s.\n", a->name, t / base_time, g->paired_with,
                    seeded ? ", means over seeds" : "");
        if (isfinite(a->wire_payload_over_app))
            fprintf(f, "- %s: K/V TCP payload on the wire / app counters over the run: %.4f.\n", a->name,
                    a->wire_payload_over_app);
    }
    results_prediction_md(f, s);
    flags_md(f, s);
    fclose(f);
    return text;
}

int results_write_summary(const run_summary *s, char *err, size_t errlen)
{
    char path[1200];
    char *json = summary_json(s), *md = summary_md(s);
    int rc = json != NULL && md != NULL ? WANCP_OK : wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
    if (rc == WANCP_OK) {
        snprintf(path, sizeof path, "%s/summary.json", s->dir);
        size_t n = strlen(json);
        char *with_newline = malloc(n + 2);
        if (with_newline == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
        else {
            memcpy(with_newline, json, n);
            memcpy(with_newline + n, "\n", 2);
            rc = write_then_rename(path, with_newline, err, errlen);
            free(with_newline);
        }
    }
    if (rc == WANCP_OK) {
        snprintf(path, sizeof path, "%s/summary.md", s->dir);
        rc = write_then_rename(path, md, err, errlen);
    }
    free(json);
    free(md);
    return rc;
}
