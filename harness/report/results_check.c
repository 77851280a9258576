/* The communication-volume check: bytes per step against METHOD.md and a reference. */
#include "results.h"

#include "../../core/base/status.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIRE_AGREEMENT 0.03 /* K/V TCP payload vs app counters: frame headers and rounding */

static double json_num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* One measured value against a reference value: a line, and whether it grew too much. */
static int compare(FILE *f, const char *arm, const char *what, double now, double ref, double tolerance)
{
    if (!isfinite(ref) || !isfinite(now))
        return 0;
    double change = ref > 0 ? now / ref - 1 : (now > 0 ? INFINITY : 0);
    int grew = change > tolerance;
    fprintf(f, "  %-24s %-22s %14.0f %14.0f %+8.2f%%%s\n", arm, what, now, ref, 100 * change,
            grew ? "  GREW beyond the tolerance" : "");
    return grew;
}

static json_t *load_reference(const char *reference, char *err, size_t errlen)
{
    char path[1200];
    struct stat st = {0};
    if (stat(reference, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(path, sizeof path, "%s/summary.json", reference);
    else
        snprintf(path, sizeof path, "%s", reference);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    if (ref == NULL) {
        if (access(path, R_OK) != 0)
            wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot read%s", path,
                       S_ISDIR(st.st_mode) ? " (wancp plot RESULTS_DIR writes it)" : "");
        else
            wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s:%d: %s", path, jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_array(json_object_get(ref, "arms"))) {
        json_decref(ref);
        wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: no \"arms\" list: not a wancp summary.json", path);
        return NULL;
    }
    return ref;
}

int results_check(const run_summary *s, const char *reference, double tolerance, FILE *f, char *err, size_t errlen)
{
    json_t *ref = NULL;
    if (reference != NULL && (ref = load_reference(reference, err, errlen)) == NULL)
        return 2;
    int failures = 0, checked = 0;
    fprintf(f, "K/V bytes rank 0 sends per training step against METHOD.md section 5 (exact):\n");
    for (int i = 0; i < s->narms; i++) {
        const arm_summary *a = &s->arms[i];
        if (!a->has_metrics || a->steps < 3) {
            fprintf(f, "  %-24s not checked: %s\n", a->name, a->has_metrics ? "fewer than 3 steps" : "no metrics");
            continue;
        }
        checked++;
        const double got[2] = {a->kv_fwd_bytes_per_step_app, a->kv_bwd_bytes_per_step_app};
        const double want[2] = {a->kv_fwd_formula, a->kv_bwd_formula};
        for (int k = 0; k < 2; k++) {
            int same = got[k] == want[k];
            fprintf(f, "  %-24s %-22s %14.0f %14.0f%s\n", a->name, k == 0 ? "kv-forward" : "kv-backward", got[k],
                    want[k], same ? "  ok" : "  DIFFERS from the formula");
            failures += !same;
        }
        if (a->has_wire) {
            double off = a->wire_payload_over_app - 1;
            int agrees = fabs(off) <= WIRE_AGREEMENT;
            fprintf(f, "  %-24s %-22s %+13.2f%% of the app counters over the run%s\n", a->name, "K/V payload (pcap)",
                    100 * off, agrees ? "  ok" : "  DISAGREES (more than 3%)");
            failures += !agrees;
        }
    }
    if (ref != NULL) {
        fprintf(f, "\nAgainst the reference %s (tolerance +%.1f%%):\n  %-24s %-22s %14s %14s %9s\n", reference,
                100 * tolerance, "arm", "bytes per step", "now", "reference", "change");
        json_t *arms = json_object_get(ref, "arms");
        for (int i = 0; i < s->narms; i++) {
            const arm_summary *a = &s->arms[i];
            json_t *match = NULL;
            for (size_t j = 0; j < json_array_size(arms) && match == NULL; j++) {
                const char *name = json_string_value(json_object_get(json_array_get(arms, j), "name"));
                if (name != NULL && strcmp(name, a->name) == 0)
                    match = json_array_get(arms, j);
            }
            if (match == NULL) {
                fprintf(f, "  %-24s not in the reference\n", a->name);
                continue;
            }
            if (!a->has_metrics) { /* fails only where the reference has numbers to keep */
                int expected = isfinite(json_num(match, "kv_fwd_bytes_per_step_app"));
                fprintf(f, "  %-24s no metrics in this run%s\n", a->name, expected ? "  MISSING" : "");
                failures += expected;
                continue;
            }
            failures += compare(f, a->name, "kv-forward (app)", a->kv_fwd_bytes_per_step_app,
                                json_num(match, "kv_fwd_bytes_per_step_app"), tolerance);
            failures += compare(f, a->name, "kv-backward (app)", a->kv_bwd_bytes_per_step_app,
                                json_num(match, "kv_bwd_bytes_per_step_app"), tolerance);
            failures += compare(f, a->name, "weight sync (app)", a->sync_bytes_per_step,
                                json_num(match, "sync_bytes_per_step"), tolerance);
        }
        json_decref(ref);
    }
    if (checked == 0) {
        fprintf(f, "nothing to check: no arm ran 3 steps\n");
        return 1;
    }
    fprintf(f, "\n%s\n", failures == 0 ? "communication volume: ok" : "communication volume: FAILED");
    return failures == 0 ? 0 : 1;
}
