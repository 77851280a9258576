/* The simulator beside a run: sim.json (`wancp sim --against` on the calibration taken just
 * before the arms, harness/run_sim.h) read into the summary, and its table. */
#include "results.h"

#include "../../core/base/status.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* The simulator's aim on this host class, and what it is held to. */
#define AIM 0.05
#define BOUND 0.10

static double number_at(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

int results_read_prediction(run_summary *s, char *err, size_t errlen)
{
    for (int g = 0; g < s->ngroups; g++)
        s->groups[g].predicted_step_s = s->groups[g].predicted_compute_s = s->groups[g].predicted_comm_s = NAN;
    char path[1200];
    snprintf(path, sizeof path, "%s/sim.json", s->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return WANCP_OK; /* no simulation beside this run */
    json_error_t jerr;
    json_t *sim = json_loadf(f, 0, &jerr);
    fclose(f);
    if (sim == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: %s", path, jerr.line, jerr.text);
    json_t *arms = json_object_get(sim, "arms"), *hw = json_object_get(sim, "hardware");
    int rc = json_is_array(arms) ? WANCP_OK : wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no \"arms\" list", path);
    const char *name = json_string_value(json_object_get(hw, "name"));
    const char *source = json_string_value(json_object_get(hw, "source"));
    snprintf(s->sim_hardware, sizeof s->sim_hardware, "%s%s%.150s", name ? name : "?", source ? ", " : "",
             source ? source : "");
    for (size_t i = 0; rc == WANCP_OK && i < json_array_size(arms); i++) {
        json_t *a = json_array_get(arms, i);
        const char *arm = json_string_value(json_object_get(a, "name"));
        const double step = number_at(a, "step_s");
        if (arm == NULL || !(step > 0)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: arm %zu has no name or step_s", path, i);
            break;
        }
        for (int g = 0; g < s->ngroups; g++)
            if (strcmp(s->groups[g].name, arm) == 0) {
                s->groups[g].predicted_step_s = step;
                s->groups[g].predicted_compute_s = number_at(a, "compute_s");
                s->groups[g].predicted_comm_s = number_at(a, "exposed_comm_s");
            }
    }
    json_decref(sim);
    return rc;
}

/* The group's measured steady step, compute and exposed communication: means over its seeds. */
static void measured(const run_summary *s, const arm_group *g, double *step, double *compute, double *comm,
                     bool *shaped)
{
    double sum[3] = {0};
    int n = 0;
    *shaped = false;
    for (int r = 0; r < g->nruns; r++) {
        const arm_summary *a = &s->arms[g->runs[r]];
        *shaped = strstr(a->link, "unshaped") == NULL;
        if (!a->has_metrics || !(a->step_time_s_median > 0))
            continue;
        sum[0] += a->step_time_s_median, sum[1] += a->compute_s_median, sum[2] += a->comm_s_median, n++;
    }
    *step = n ? sum[0] / n : NAN;
    *compute = n ? sum[1] / n : NAN;
    *comm = n ? sum[2] / n : NAN;
}

/* Where the model misses: the part (compute or exposed communication) whose error is the
 * larger share of the step's; on shaped links a compute error is the cores the links' packet
 * work takes (or leaves), which the model shares as a fluid. */
static const char *miss_part(double d_compute, double d_comm, bool shaped)
{
    if (!isfinite(d_compute) || !isfinite(d_comm))
        return "unknown (no split)";
    if (fabs(d_comm) > fabs(d_compute))
        return d_comm > 0 ? "link: more exposed communication predicted than measured"
                          : "link: less exposed communication predicted than measured";
    if (shaped)
        return d_compute > 0 ? "host sharing: the model slows compute more for the links' packet work than measured"
                             : "host sharing: compute slowed by the links' packet work (or the other ranks) beyond "
                               "the model";
    return d_compute > 0 ? "compute: predicted slower than measured" : "compute: measured slower than predicted";
}

void results_prediction_md(FILE *f, const run_summary *s)
{
    bool any = false;
    for (int g = 0; g < s->ngroups; g++)
        any |= isfinite(s->groups[g].predicted_step_s);
    if (!any) {
        if (s->simulate)
            fprintf(f, "\nNo prediction beside this run: %s.\n", s->sim_note);
        return;
    }
    fprintf(f,
            "\n## Predicted against measured step time\n\n`wancp sim` on this host's calibration (%s; "
            "`hardware.ini`, measured just before the arms), steady steps, seconds (means over seeds). The "
            "simulator aims for %.0f%% and is held to %.0f%%.\n\n",
            s->sim_hardware, 100 * AIM, 100 * BOUND);
    fprintf(f, "| arm | predicted | measured | difference | compute predicted / measured | exposed comm "
               "predicted / measured | where it misses |\n|---|---|---|---|---|---|---|\n");
    for (int gi = 0; gi < s->ngroups; gi++) {
        const arm_group *g = &s->groups[gi];
        double step, compute, comm;
        bool shaped;
        measured(s, g, &step, &compute, &comm, &shaped);
        if (!isfinite(g->predicted_step_s) || !isfinite(step))
            continue;
        const double d = (g->predicted_step_s - step) / step;
        fprintf(f, "| %s | %.4f | %.4f | %+.1f%% | %.4f / %.4f | %.4f / %.4f | %s |\n", g->name, g->predicted_step_s,
                step, 100 * d, g->predicted_compute_s, compute, g->predicted_comm_s, comm,
                fabs(d) <= AIM ? "within the aim"
                               : miss_part(g->predicted_compute_s - compute, g->predicted_comm_s - comm, shaped));
    }
}

json_t *results_prediction_json(const run_summary *s)
{
    json_t *list = json_array();
    for (int gi = 0; gi < s->ngroups; gi++) {
        const arm_group *g = &s->groups[gi];
        double step, compute, comm;
        bool shaped;
        measured(s, g, &step, &compute, &comm, &shaped);
        if (!isfinite(g->predicted_step_s))
            continue;
        const double d = isfinite(step) ? (g->predicted_step_s - step) / step : NAN;
        json_t *o = json_pack("{s:s, s:f}", "name", g->name, "predicted_step_s", g->predicted_step_s);
        json_object_set_new(o, "predicted_compute_s",
                            isfinite(g->predicted_compute_s) ? json_real(g->predicted_compute_s) : json_null());
        json_object_set_new(o, "predicted_exposed_comm_s",
                            isfinite(g->predicted_comm_s) ? json_real(g->predicted_comm_s) : json_null());
        json_object_set_new(o, "measured_step_s", isfinite(step) ? json_real(step) : json_null());
        json_object_set_new(o, "rel_diff", isfinite(d) ? json_real(d) : json_null());
        json_object_set_new(o, "within_aim", json_boolean(isfinite(d) && fabs(d) <= AIM));
        if (isfinite(d) && fabs(d) > AIM)
            json_object_set_new(
                o, "misses",
                json_string(miss_part(g->predicted_compute_s - compute, g->predicted_comm_s - comm, shaped)));
        json_array_append_new(list, o);
    }
    return list;
}
