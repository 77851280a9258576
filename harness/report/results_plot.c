/* A results folder's figures: data files for gnuplot, then the scripts of plots/. */
#include "results.h"

#include "../../core/base/status.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const SCRIPTS[] = {"loss_vs_time.gp", "loss_vs_step.gp", "bytes_per_step.gp", "step_time.gp"};
#define NSCRIPTS (sizeof SCRIPTS / sizeof SCRIPTS[0])

static void put_number(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, " %.9g", x);
    else
        fputs(" NaN", f);
}

/* One run's metrics by step: cumulative training time (dilated), losses and the time split;
 * NAN where the run has no such step or value. */
enum curve_column { TRAIN_S, TRAIN_LOSS, VAL_LOSS, STEP_S, COMPUTE_S, COMM_S, NCOLUMNS };

typedef struct run_curve {
    int last_step;
    double *column[NCOLUMNS]; /* each indexed by step, 0 to last_step */
} run_curve;

static void curve_free(run_curve *c)
{
    free(c->column[0]);
    *c = (run_curve){0};
}

static int curve_read(const run_summary *s, const arm_summary *a, run_curve *c, char *err, size_t errlen)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s/metrics.csv", s->dir, a->dir);
    metrics_file m;
    int rc = metrics_read(&m, path, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    *c = (run_curve){.last_step = m.nrows > 0 && m.rows[m.nrows - 1].step > 0 ? m.rows[m.nrows - 1].step : 0};
    const size_t n = (size_t)c->last_step + 1;
    double *all = malloc(NCOLUMNS * n * sizeof *all);
    if (all == NULL) {
        metrics_free(&m);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < NCOLUMNS * n; i++)
        all[i] = NAN;
    for (int k = 0; k < NCOLUMNS; k++)
        c->column[k] = all + (size_t)k * n;
    double train_s = 0;
    for (int i = 0; i < m.nrows; i++) {
        const metrics_row *r = &m.rows[i];
        if (r->step < 0 || r->step > c->last_step)
            continue;
        if (r->step > 0 && isfinite(r->step_ms))
            train_s += r->step_ms / 1e3 / a->dilation;
        c->column[TRAIN_S][r->step] = train_s;
        if (r->step > 0) {
            c->column[TRAIN_LOSS][r->step] = r->train_loss;
            c->column[STEP_S][r->step] = r->step_ms / 1e3 / a->dilation;
            c->column[COMPUTE_S][r->step] = (r->step_ms - r->comm_ms) / 1e3 / a->dilation;
            c->column[COMM_S][r->step] = r->comm_ms / 1e3 / a->dilation;
        }
        if (isfinite(r->val_loss))
            c->column[VAL_LOSS][r->step] = r->val_loss;
    }
    metrics_free(&m);
    return WANCP_OK;
}

/* A column's mean at a step over the n runs that have it, and its interval. */
static interval at_step(const run_curve *c, int n, enum curve_column column, int step)
{
    double x[RESULTS_MAX_SEEDS];
    for (int k = 0; k < n; k++)
        x[k] = step <= c[k].last_step ? c[k].column[column][step] : NAN;
    return interval_95(x, n);
}

/* plot-data/ARM.steps (every step) and ARM.val (the evaluations) of an arm, over its seeds:
 * the mean at each step, and for the validation loss the 95% interval's ends (the band; equal
 * to the mean with one seed). Times are dilated training time. */
static int group_curves(const run_summary *s, const arm_group *g, const char *data_dir, char *err, size_t errlen)
{
    run_curve c[RESULTS_MAX_SEEDS];
    int n = 0, rc = WANCP_OK, last = 0;
    for (int r = 0; r < g->nruns && rc == WANCP_OK; r++) {
        const arm_summary *a = &s->arms[g->runs[r]];
        if (!a->has_metrics)
            continue;
        rc = curve_read(s, a, &c[n], err, errlen);
        if (rc == WANCP_OK && c[n].last_step > last)
            last = c[n].last_step;
        n += rc == WANCP_OK;
    }
    char steps_path[1400], val_path[1400];
    snprintf(steps_path, sizeof steps_path, "%s/%s.steps", data_dir, g->name);
    snprintf(val_path, sizeof val_path, "%s/%s.val", data_dir, g->name);
    FILE *fs = NULL, *fv = NULL;
    if (rc == WANCP_OK && ((fs = fopen(steps_path, "w")) == NULL || (fv = fopen(val_path, "w")) == NULL))
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create", fs == NULL ? steps_path : val_path);
    if (rc == WANCP_OK) {
        const double D = s->dilation;
        fprintf(fs,
                "# step training_s train_loss step_s compute_s exposed_comm_s (times / D = %g; means over %d seed%s)\n",
                D, n, n == 1 ? "" : "s");
        fprintf(fv,
                "# step training_s val_loss val_loss_low val_loss_high (times / D = %g; mean over %d seed%s and "
                "its 95%% interval)\n",
                D, n, n == 1 ? "" : "s");
        for (int step = 0; step <= last; step++) {
            const interval t = at_step(c, n, TRAIN_S, step);
            if (step > 0 && t.n > 0) {
                fprintf(fs, "%d", step);
                put_number(fs, t.mean);
                put_number(fs, at_step(c, n, TRAIN_LOSS, step).mean);
                put_number(fs, at_step(c, n, STEP_S, step).mean);
                put_number(fs, at_step(c, n, COMPUTE_S, step).mean);
                put_number(fs, at_step(c, n, COMM_S, step).mean);
                fputc('\n', fs);
            }
            const interval v = at_step(c, n, VAL_LOSS, step);
            if (v.n > 0) {
                const double half = isfinite(v.half_width) ? v.half_width : 0;
                fprintf(fv, "%d", step);
                put_number(fv, t.mean);
                put_number(fv, v.mean);
                put_number(fv, v.mean - half);
                put_number(fv, v.mean + half);
                fputc('\n', fv);
            }
        }
    }
    if (fs != NULL && fclose(fs) != 0 && rc == WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write", steps_path);
    if (fv != NULL && fclose(fv) != 0 && rc == WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write", val_path);
    for (int k = 0; k < n; k++)
        curve_free(&c[k]);
    return rc;
}

void results_put_run_vars(FILE *f, const char *run_dir, const char *run_name, const char *run_mode, double target,
                          const char *data_dir)
{
    fprintf(f, "run_dir = ");
    results_put_string(f, run_dir);
    fprintf(f, "\nrun_name = ");
    results_put_string(f, run_name);
    fprintf(f, "\nrun_mode = ");
    results_put_string(f, run_mode);
    if (target > 0)
        fprintf(f, "\ntarget = %.9g\n", target);
    else
        fprintf(f, "\ntarget = NaN\n");
    fprintf(f, "data_dir = ");
    results_put_string(f, data_dir);
    fputc('\n', f);
}

void results_put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* plot-data/arms.gp (what the scripts loop over), bytes.dat and time.dat (one row per arm). */
static int run_tables(const run_summary *s, const char *data_dir, int *plotted, int n, char *err, size_t errlen)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/arms.gp", data_dir);
    FILE *g = fopen(path, "w");
    if (g == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create", path);
    fprintf(g, "# written by wancp plot: the arms the scripts in plots/ draw\nnarms = %d\n", n);
    const int size = n > 0 ? n : 1;
    fprintf(g,
            "array arm_data[%d]\narray arm_title[%d]\narray arm_short[%d]\narray arm_panel[%d]\narray arm_style[%d]\n",
            size, size, size, size, size);
    /* A sweep over the data (corpus, train) draws one panel per value, as the paper's Figure 2
     * has one per corpus; arms the sweep did not make appear in every panel (arm_panel 0). */
    const char *panels[RESULTS_MAX_ARMS];
    int npanels = 0, panel_of[RESULTS_MAX_ARMS] = {0};
    for (int i = 0; i < n; i++) {
        const arm_summary *a = &s->arms[s->groups[plotted[i]].runs[0]];
        if (!a->swept_from[0] || (strcmp(a->sweep_key, "corpus") != 0 && strcmp(a->sweep_key, "train") != 0))
            continue;
        int p = 0;
        while (p < npanels && strcmp(panels[p], a->sweep_value) != 0)
            p++;
        if (p == npanels)
            panels[npanels++] = a->sweep_value;
        panel_of[i] = p + 1;
    }
    const char *legends[RESULTS_MAX_ARMS];
    int nlegends = 0;
    fprintf(g, "npanels = %d\narray panel_title[%d]\n", npanels, npanels > 0 ? npanels : 1);
    for (int p = 0; p < npanels; p++) {
        fprintf(g, "panel_title[%d] = ", p + 1);
        results_put_string(g, panels[p]);
        fputc('\n', g);
    }
    for (int i = 0; i < n; i++) {
        const arm_group *gr = &s->groups[plotted[i]];
        const arm_summary *a = &s->arms[gr->runs[0]];
        char title[600], data[1500];
        if (strcmp(a->sync, "A") == 0)
            snprintf(title, sizeof title, "%s: %s, weights averaged every %d steps", a->name, a->link, a->sync_every);
        else
            snprintf(title, sizeof title, "%s: %s, gradients all-reduced every step", a->name, a->link);
        if (s->nseeds > 1)
            snprintf(title + strlen(title), sizeof title - strlen(title), "; mean of %d seeds, band: 95%% interval",
                     gr->nruns);
        if (gr->ok < gr->nruns)
            snprintf(title + strlen(title), sizeof title - strlen(title), " (%d of %d not ok)", gr->nruns - gr->ok,
                     gr->nruns);
        snprintf(data, sizeof data, "%s/%s", data_dir, a->name);
        fprintf(g, "arm_data[%d] = ", i + 1);
        results_put_string(g, data);
        fprintf(g, "\narm_title[%d] = ", i + 1);
        results_put_string(g, title);
        fprintf(g, "\narm_short[%d] = ", i + 1);
        results_put_string(g, a->swept_from[0] && panel_of[i] > 0 ? a->swept_from : a->name);
        fprintf(g, "\narm_panel[%d] = %d\n", i + 1, panel_of[i]);
        /* one colour per arm across the panels: the styles go by legend name, first seen first */
        const char *legend = a->swept_from[0] && panel_of[i] > 0 ? a->swept_from : a->name;
        int style = 0;
        while (style < nlegends && strcmp(legends[style], legend) != 0)
            style++;
        if (style == nlegends)
            legends[nlegends++] = legend;
        fprintf(g, "arm_style[%d] = %d\n", i + 1, style + 1);
    }
    char mode[256];
    if (s->dilation > 1)
        snprintf(mode, sizeof mode, "dilated, D = %g%s: links at B/D, delays x D, times / D", s->dilation,
                 s->dilation_why[0] ? " (auto: chosen on this host)" : "");
    else
        snprintf(mode, sizeof mode, "emulated in real time (D = 1)");
    results_put_run_vars(g, s->dir, s->scenario, mode, s->target_val_loss, data_dir);
    bool predicted = false;
    for (int i = 0; i < n; i++)
        predicted |= isfinite(s->groups[plotted[i]].predicted_step_s);
    fprintf(g, "has_prediction = %d\n", predicted);
    if (fclose(g) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write", path);

    snprintf(path, sizeof path, "%s/bytes.dat", data_dir);
    FILE *b = fopen(path, "w");
    snprintf(path, sizeof path, "%s/time.dat", data_dir);
    FILE *t = fopen(path, "w");
    if (b == NULL || t == NULL) {
        if (b != NULL)
            fclose(b);
        if (t != NULL)
            fclose(t);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create", path);
    }
    fprintf(b, "# arm kv_forward_app_MB kv_backward_app_MB kv_wire_MB sync_app_MB (rank 0, per training step; "
               "mean over seeds)\n");
    fprintf(t, "# arm compute_s kv_forward_wait_s kv_backward_wait_s sync_wait_s (medians of the steady steps, / D; "
               "mean over seeds) predicted_step_s (wancp sim beside the run; NaN: none)\n");
    for (int i = 0; i < n; i++) {
        const arm_group *g = &s->groups[plotted[i]];
        double sum[8] = {0};
        int count[8] = {0};
        for (int r = 0; r < g->nruns; r++) {
            const arm_summary *a = &s->arms[g->runs[r]];
            const double x[8] = {a->kv_fwd_bytes_per_step_app, a->kv_bwd_bytes_per_step_app, a->kv_bytes_per_step_wire,
                                 a->sync_bytes_per_step,       a->compute_s_median,          a->kv_fwd_wait_s_median,
                                 a->kv_bwd_wait_s_median,      a->sync_wait_s_median};
            for (int k = 0; k < 8; k++)
                if (a->has_metrics && isfinite(x[k]))
                    sum[k] += x[k], count[k]++;
        }
        results_put_string(b, g->name);
        for (int k = 0; k < 4; k++)
            put_number(b, count[k] ? sum[k] / count[k] / 1e6 : NAN);
        fputc('\n', b);
        results_put_string(t, g->name);
        for (int k = 4; k < 8; k++)
            put_number(t, count[k] ? sum[k] / count[k] : NAN);
        put_number(t, g->predicted_step_s);
        fputc('\n', t);
    }
    int bad = fclose(b) != 0;
    bad |= fclose(t) != 0;
    return bad ? wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write", data_dir) : WANCP_OK;
}

int results_gnuplot(const char *plots_dir, const char *data_dir, const char *script, char *err, size_t errlen)
{
    char arms[1400], log_path[1400], where[1400];
    snprintf(where, sizeof where, "plots_dir = '%s'", plots_dir);
    snprintf(arms, sizeof arms, "%s/arms.gp", data_dir);
    snprintf(log_path, sizeof log_path, "%s/gnuplot.log", data_dir);
    pid_t pid = fork();
    if (pid < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *log = fopen(log_path, "a");
        if (log != NULL) {
            dup2(fileno(log), STDERR_FILENO);
            dup2(fileno(log), STDOUT_FILENO);
        }
        execlp("gnuplot", "gnuplot", "-e", where, arms, script, (char *)NULL);
        fprintf(stderr, "gnuplot: %s\n", strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "gnuplot did not run (harness/setup installs it); see %s",
                          log_path);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "gnuplot failed on %s; see %s", script, log_path);
    return WANCP_OK;
}

/* Whether the file ends as a whole figure of its kind does: a PNG with its IEND chunk, an SVG
 * with </svg>. gnuplot exits 0 when the disk fills under it, leaving an empty or cut file. */
static bool figure_whole(const char *path, bool png)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    char tail[64] = "";
    size_t n = 0;
    if (fseek(f, -(long)(sizeof tail - 1), SEEK_END) != 0)
        rewind(f);
    n = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[n] = '\0';
    if (png)
        return n >= 12 && memcmp(tail + n - 8, "IEND", 4) == 0;
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == ' '))
        tail[--n] = '\0';
    return n >= 6 && strcmp(tail + n - 6, "</svg>") == 0;
}

/* The PNG and SVG a script draws (its name without .gp): both whole, or both removed and
 * the run told which could not be written. */
static int figures_whole(const char *dir, const char *script, char *err, size_t errlen)
{
    char png[1400], svg[1400];
    int n = (int)strcspn(script, ".");
    snprintf(png, sizeof png, "%s/%.*s.png", dir, n, script);
    snprintf(svg, sizeof svg, "%s/%.*s.svg", dir, n, script);
    bool png_ok = figure_whole(png, true), svg_ok = figure_whole(svg, false);
    if (png_ok && svg_ok)
        return WANCP_OK;
    unlink(png);
    unlink(svg);
    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: gnuplot left it empty or cut (is the disk full?)",
                      png_ok ? svg : png);
}

int results_plot(const run_summary *s, const char *plots_dir, char *err, size_t errlen)
{
    char data_dir[1100];
    snprintf(data_dir, sizeof data_dir, "%s/plot-data", s->dir);
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create: %s", data_dir, strerror(errno));
    char log_path[1200];
    snprintf(log_path, sizeof log_path, "%s/gnuplot.log", data_dir);
    unlink(log_path);
    int plotted[RESULTS_MAX_ARMS], n = 0, rc = WANCP_OK;
    for (int g = 0; g < s->ngroups && rc == WANCP_OK; g++) {
        bool any = false;
        for (int r = 0; r < s->groups[g].nruns; r++)
            any |= s->arms[s->groups[g].runs[r]].has_metrics;
        if (!any)
            continue;
        rc = group_curves(s, &s->groups[g], data_dir, err, errlen);
        plotted[n++] = g;
    }
    if (rc == WANCP_OK && n == 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no arm has metrics to plot", s->dir);
    if (rc == WANCP_OK)
        rc = run_tables(s, data_dir, plotted, n, err, errlen);
    for (size_t i = 0; i < NSCRIPTS && rc == WANCP_OK; i++) {
        char script[1200];
        snprintf(script, sizeof script, "%s/%s", plots_dir, SCRIPTS[i]);
        if (access(script, R_OK) != 0)
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot read", script);
        else
            rc = results_gnuplot(plots_dir, data_dir, script, err, errlen);
        if (rc == WANCP_OK)
            rc = figures_whole(s->dir, SCRIPTS[i], err, errlen);
    }
    return rc;
}
