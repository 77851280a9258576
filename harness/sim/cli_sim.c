/* wancp sim: a scenario's arms through the step simulator (sim_step.h) on a hardware profile;
 * against a run's measured step times; loss curves projected onto simulated wall-clock. */
#include "../cli.h"
#include "../report/results.h"
#include "../scenario.h"
#include "sim_hardware.h"
#include "sim_step.h"

#include "../../core/model/config.h"
#include "../../core/base/status.h"
#include "../../shaper/topology.h"
#include "../../shaper/units.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp sim SCENARIO.ini [options]\n"
    "       wancp sim validate [options]   the link model against emulated links (--help)\n"
    "\n"
    "Predicts each arm's step time from the event model of a context-parallel step (every\n"
    "rank's compute and messages, in the trainer's order) over the link model of the arm's\n"
    "profile (uplink or mesh, rate, delay, jitter, loss, rate over time), with compute from a\n"
    "hardware profile. Times are rank 0's, as the trainer reports them: step, compute, and\n"
    "communication it waits for (exposed), by class; bytes are what rank 0 sends per step.\n"
    "\n"
    "  --hardware NAME|FILE  cpu-local (this host, measured by `wancp bench calibrate`;\n"
    "                      the default), a100-bf16, h100-bf16 (scenarios/hardware/), or a\n"
    "                      profile file. On cpu-local the scenario's dilation D applies as in\n"
    "                      `wancp run` (links at B/D, delays x D, times / D); elsewhere not.\n"
    "                      A host profile's cores are shared: computing ranks split what the\n"
    "                      shaped links' packet work (link_cost_s per byte; links that\n"
    "                      delay, jitter or lose: delay_link_cost_s) leaves of them.\n"
    "  --set SECTION.KEY=VALUE  override the scenario, as `wancp run --set` (repeatable)\n"
    "  --arm NAME          only this arm (repeatable)\n"
    "  --steps N           project a run of N steps (default: the scenario's)\n"
    "  --routing needed|allgather  K/V only to the ranks that need it (wancp's CP, default)\n"
    "                      or every chunk to every rank and every gradient back (SIMULATION.md)\n"
    "  --no-overlap        remote K/V waited for before any attention, links without htb's\n"
    "                      bucket (the closed form's case)\n"
    "  --sync-overlap      Mode S all-reduces each layer's gradients as its backward ends\n"
    "                      (buckets overlapping the rest); default: one all-reduce after it,\n"
    "                      as wancp's trainer does\n"
    "  --straggler RANK:K  RANK's links at B/K in every arm (an arm's own straggler key\n"
    "                      otherwise)\n"
    "  --unshaped-rate RATE  what an unshaped arm's links carry (default 10gbit)\n"
    "  --seed N            jitter samples (default 1)\n"
    "  --against RESULTS   compare with a `wancp run` results folder's measured steady step\n"
    "                      times (summary); exit 1 if an arm differs by more than --tolerance;\n"
    "                      also (SIMULATION.md V5) a jittered arm's p50 and p95 step times\n"
    "                      (within 10% and 15%) and, for a sweep of fixed rates with an unshaped\n"
    "                      arm, the knee: the rate where the step time is twice the unshaped\n"
    "                      arm's (within 25%)\n"
    "  --tolerance F       (0.10)\n"
    "  --loss METRICS.csv  a real run's loss per step (metrics.csv): write loss against each\n"
    "                      arm's projected wall-clock (T = sum of simulated step times) and the\n"
    "                      figure sim_loss_vs_time.png/.svg into -o DIR\n"
    "  -o DIR              where --loss writes (default results/sim-SCENARIO-TIME)\n"
    "  --json              one JSON object on stdout\n";

typedef struct sim_cli {
    const char *scenario, *hardware, *against, *loss, *out_dir;
    char *sets[64];
    int nsets;
    const char *arms[SCENARIO_MAX_ARMS];
    int narms;
    int steps;
    bool allgather, no_overlap, sync_overlap, json;
    int straggler;
    double straggler_k, unshaped_bps, tolerance;
    unsigned long seed;
} sim_cli;

enum {
    O_HARDWARE = 1,
    O_SET,
    O_ARM,
    O_STEPS,
    O_ROUTING,
    O_NO_OVERLAP,
    O_SYNC_OVERLAP,
    O_STRAGGLER,
    O_UNSHAPED,
    O_SEED,
    O_AGAINST,
    O_TOLERANCE,
    O_LOSS,
    O_JSON,
    O_HELP
};

static int parse(int argc, char **argv, sim_cli *o)
{
    static const struct option opts[] = {{"hardware", 1, 0, O_HARDWARE},
                                         {"set", 1, 0, O_SET},
                                         {"arm", 1, 0, O_ARM},
                                         {"steps", 1, 0, O_STEPS},
                                         {"routing", 1, 0, O_ROUTING},
                                         {"no-overlap", 0, 0, O_NO_OVERLAP},
                                         {"sync-overlap", 0, 0, O_SYNC_OVERLAP},
                                         {"straggler", 1, 0, O_STRAGGLER},
                                         {"unshaped-rate", 1, 0, O_UNSHAPED},
                                         {"seed", 1, 0, O_SEED},
                                         {"against", 1, 0, O_AGAINST},
                                         {"tolerance", 1, 0, O_TOLERANCE},
                                         {"loss", 1, 0, O_LOSS},
                                         {"json", 0, 0, O_JSON},
                                         {"help", 0, 0, O_HELP},
                                         {0, 0, 0, 0}};
    *o = (sim_cli){.hardware = "cpu-local", .straggler = -1, .tolerance = 0.10, .seed = 1};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        unsigned long u;
        char err[WANCP_ERRLEN];
        uint64_t bps;
        switch (c) {
        case O_HARDWARE: o->hardware = optarg; break;
        case O_SET:
            if (o->nsets == 64)
                return cli_usage_error("sim", "more than 64 --set options");
            o->sets[o->nsets++] = optarg;
            break;
        case O_ARM:
            if (o->narms == SCENARIO_MAX_ARMS)
                return cli_usage_error("sim", "more than %d --arm options", SCENARIO_MAX_ARMS);
            o->arms[o->narms++] = optarg;
            break;
        case O_STEPS:
            if (cli_parse_ulong("sim", "--steps", optarg, 1, 10000000, &u) != 0)
                return 2;
            o->steps = (int)u;
            break;
        case O_ROUTING:
            if (strcmp(optarg, "needed") != 0 && strcmp(optarg, "allgather") != 0)
                return cli_usage_error("sim", "--routing '%s': expected needed or allgather", optarg);
            o->allgather = strcmp(optarg, "allgather") == 0;
            break;
        case O_NO_OVERLAP: o->no_overlap = true; break;
        case O_SYNC_OVERLAP: o->sync_overlap = true; break;
        case O_STRAGGLER: {
            int rank;
            double k;
            if (topology_parse_straggler(optarg, &rank, &k) != 0 || rank >= LINK_MAX_NODES)
                return cli_usage_error("sim", "--straggler '%s': expected RANK:K with K >= 1", optarg);
            o->straggler = rank;
            o->straggler_k = k;
            break;
        }
        case O_UNSHAPED:
            if (shaper_parse_rate(optarg, &bps, err, sizeof err) != WANCP_OK || bps == 0)
                return cli_usage_error("sim", "--unshaped-rate '%s': %s", optarg, bps == 0 ? "must be above 0" : err);
            o->unshaped_bps = (double)bps;
            break;
        case O_SEED:
            if (cli_parse_ulong("sim", "--seed", optarg, 0, ~0ul, &o->seed) != 0)
                return 2;
            break;
        case O_AGAINST: o->against = optarg; break;
        case O_TOLERANCE:
            if (cli_parse_float("sim", "--tolerance", optarg, 0.0, 10.0, &o->tolerance) != 0)
                return 2;
            break;
        case O_LOSS: o->loss = optarg; break;
        case 'o': o->out_dir = optarg; break;
        case O_JSON: o->json = true; break;
        case O_HELP: fputs(USAGE, stdout); return -1;
        default: return cli_usage_error("sim", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("sim", optind == argc ? "no scenario file" : "one scenario file, not several");
    o->scenario = argv[optind];
    if (o->out_dir != NULL && o->loss == NULL)
        return cli_usage_error("sim", "-o needs --loss");
    return 0;
}

/* One arm's simulation and, with --against, its measurement. */
typedef struct arm_sim {
    const scenario_arm *arm;
    link_profile dilated;
    bool has_dilated;
    double node_scale[LINK_MAX_NODES];
    sim_setup setup;
    sim_result result;
    double closed_form_s;
    const arm_summary *measured; /* NULL: none */
} arm_sim;

static bool wanted(const sim_cli *o, const char *name)
{
    if (o->narms == 0)
        return true;
    for (int i = 0; i < o->narms; i++)
        if (strcmp(o->arms[i], name) == 0)
            return true;
    return false;
}

static int setup_arm(const sim_cli *o, const scenario *s, const sim_hardware *hw, arm_sim *a, char *err, size_t errlen)
{
    const scenario_arm *arm = a->arm;
    const double D = hw->host ? s->dilation : 1.0;
    sim_setup *st = &a->setup;
    *st = (sim_setup){.hw = *hw};
    const run_method method = scenario_run_method(s, arm); /* the arm's own switches */
    const model_config model = scenario_model(s, arm);
    st->shape = sim_shape_of(&model, s->ranks, s->batch, method.planes);
    if (s->ranks > LINK_MAX_NODES)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %d ranks; the simulator takes at most %d", s->path,
                          s->ranks, LINK_MAX_NODES);
    const link_profile *profile = NULL;
    if (arm->shaped) {
        if (D > 1) {
            if (link_profile_dilate(&arm->profile, D, &a->dilated) != 0)
                return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
            a->has_dilated = true;
            profile = &a->dilated;
        } else {
            profile = &arm->profile;
        }
    }
    const int straggler = o->straggler >= 0 ? o->straggler : arm->straggler_k > 1 ? arm->straggler : -1;
    const double straggler_k = o->straggler >= 0 ? o->straggler_k : arm->straggler_k;
    for (int r = 0; r < s->ranks; r++)
        a->node_scale[r] = r == straggler ? 1.0 / straggler_k : 1.0;
    if (o->straggler >= s->ranks)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "--straggler %d: the scenario has %d ranks", o->straggler,
                          s->ranks);
    st->link = (link_model_config){.nodes = s->ranks,
                                   .topology = arm->link_model,
                                   .profile = profile,
                                   .unshaped_bps = o->unshaped_bps,
                                   .node_scale = a->node_scale,
                                   .seed = o->seed};
    st->compress = arm->compress;
    st->compress_last = arm->compress_last;
    st->warm_steps = arm->warm_steps >= 0 ? arm->warm_steps : s->steps / 10;
    st->wire_bytes = method.wire == 0 ? 2 : 4; /* bf16 or fp32 */
    st->sync = arm->sync != 0 ? arm->sync : s->sync;
    st->sync_every = arm->sync_every != 0 ? arm->sync_every : s->sync_every;
    st->sync_overlap = o->sync_overlap;
    st->allgather = o->allgather;
    st->no_overlap = o->no_overlap;
    st->link.no_burst = o->no_overlap; /* the closed form's links: no htb bucket either */
    st->time_scale = 1.0 / D;
    return WANCP_OK;
}

static const char *const CLASS_KEYS[COMM_NCLASSES] = {"kv_forward", "kv_backward", "weight_sync", "control"};

static void describe_arm(const arm_sim *a, char *buf, size_t len)
{
    const scenario_arm *arm = a->arm;
    char link[160] = "unshaped";
    if (arm->shaped)
        link_profile_describe(&arm->profile, link, sizeof link);
    if (arm->straggler_k > 1) {
        size_t used = strlen(link);
        snprintf(link + used, sizeof link - used, ", rank %d's links at 1/%g", arm->straggler, arm->straggler_k);
    }
    snprintf(buf, len, "%s, %s, %s%s, sync %c%s", link, arm->link_model == TOPOLOGY_MESH ? "mesh" : "uplink",
             arm->compress ? "compressed" : "uncompressed", arm->compress && arm->compress_last ? " (all blocks)" : "",
             a->setup.sync, a->setup.sync == 'A' ? " (averaging)" : " (every step)");
}

static double rel_diff(double predicted, double measured) { return (predicted - measured) / measured; }

/* SIMULATION.md V5's bounds: the knee within 25%, a jittered arm's p50 and p95 step times
 * within 10% and 15%. */
#define KNEE_BOUND 0.25
#define P50_BOUND 0.10
#define P95_BOUND 0.15

/* An arm of a bandwidth sweep: a fixed rate and nothing else (no delay, jitter, loss,
 * schedule or straggler). */
static bool plain_rate(const scenario_arm *a)
{
    const link_profile *p = &a->profile;
    return a->shaped && p->rate_bps > 0 && p->delay_ns == 0 && p->jitter_ns == 0 && p->loss_ppm == 0 &&
           p->ntrace == 0 && p->nschedule == 0 && !(a->straggler_k > 1);
}

static double step_of(const arm_sim *a, bool measured)
{
    return measured ? a->measured->step_time_s_median : a->result.steady.step_s;
}

/* V5's knee of the measured arms of one compression: the rate at which the step time
 * crosses twice the unshaped arm's, log-linear in the rate between the two arms that
 * bracket it; measured or predicted from the same arms. NAN without an unshaped arm, two
 * rates, or a crossing. */
static double knee_bps(const arm_sim *arms, int n, bool compressed, bool measured)
{
    const arm_sim *fast = NULL, *member[SCENARIO_MAX_ARMS];
    int m = 0;
    for (int i = 0; i < n; i++) {
        const scenario_arm *a = arms[i].arm;
        if (arms[i].measured == NULL || a->compress != compressed)
            continue;
        if (!a->shaped && !(a->straggler_k > 1))
            fast = &arms[i];
        else if (plain_rate(a))
            member[m++] = &arms[i];
    }
    if (fast == NULL || m < 2)
        return NAN;
    for (int i = 1; i < m; i++) /* by rate, ascending */
        for (int j = i; j > 0 && member[j]->arm->profile.rate_bps < member[j - 1]->arm->profile.rate_bps; j--) {
            const arm_sim *t = member[j];
            member[j] = member[j - 1];
            member[j - 1] = t;
        }
    const double target = 2 * step_of(fast, measured);
    for (int i = 0; i + 1 < m; i++) {
        const double slow = step_of(member[i], measured), quick = step_of(member[i + 1], measured);
        if (slow >= target && quick <= target && slow > quick) {
            const double lo = log((double)member[i]->arm->profile.rate_bps);
            const double hi = log((double)member[i + 1]->arm->profile.rate_bps);
            return exp(lo + (slow - target) / (slow - quick) * (hi - lo));
        }
    }
    return NAN;
}

static json_t *arm_json(const arm_sim *a)
{
    json_t *o = json_object();
    char desc[400];
    describe_arm(a, desc, sizeof desc);
    const sim_result *r = &a->result;
    json_object_set_new(o, "name", json_string(a->arm->name));
    json_object_set_new(o, "link", json_string(desc));
    json_object_set_new(o, "step_s", json_real(r->steady.step_s));
    json_object_set_new(o, "compute_s", json_real(r->steady.compute_s));
    json_t *ex = json_object(), *by = json_object();
    double exposed = 0;
    for (int c = 0; c < COMM_NCLASSES; c++) {
        json_object_set_new(ex, CLASS_KEYS[c], json_real(r->steady.exposed_s[c]));
        json_object_set_new(by, CLASS_KEYS[c], json_real(r->steady.bytes[c]));
        exposed += r->steady.exposed_s[c];
    }
    json_object_set_new(o, "exposed_comm_s", json_real(exposed));
    json_object_set_new(o, "exposed_s", ex);
    json_object_set_new(o, "bytes_per_step", by);
    json_object_set_new(o, "warm_step_s", json_real(r->warm.step_s));
    json_object_set_new(o, "sync_step_s", json_real(r->sync_step.step_s));
    json_object_set_new(o, "sync_step_bytes", json_real(r->sync_step.bytes[COMM_WEIGHT_SYNC]));
    json_object_set_new(o, "mean_step_s", json_real(r->mean_s));
    json_object_set_new(o, "p50_step_s", json_real(r->p50_s));
    json_object_set_new(o, "p95_step_s", json_real(r->p95_s));
    json_object_set_new(o, "total_s", json_real(r->total_s));
    json_object_set_new(o, "closed_form_s", json_real(a->closed_form_s));
    json_object_set_new(o, "stepwise", json_boolean(r->stepwise));
    if (a->measured != NULL) {
        json_t *m = json_object();
        json_object_set_new(m, "step_s", json_real(a->measured->step_time_s_median));
        json_object_set_new(m, "compute_s", json_real(a->measured->compute_s_median));
        json_object_set_new(m, "exposed_comm_s", json_real(a->measured->comm_s_median));
        json_object_set_new(m, "step_rel_diff", json_real(rel_diff(r->steady.step_s, a->measured->step_time_s_median)));
        json_object_set_new(m, "p95_step_s", json_real(a->measured->step_time_s_p95));
        if (r->stepwise) {
            json_object_set_new(m, "p50_rel_diff", json_real(rel_diff(r->p50_s, a->measured->step_time_s_median)));
            json_object_set_new(m, "p95_rel_diff", json_real(rel_diff(r->p95_s, a->measured->step_time_s_p95)));
        }
        json_object_set_new(o, "measured", m);
    }
    return o;
}

/* knees: V5's knee per family, as main judged them (the "knee" of --json). */
static void print_table(const sim_cli *o, const scenario *s, const sim_hardware *hw, arm_sim *arms, int n,
                        const json_t *knees, double sim_s, int steps)
{
    printf("# wancp sim %s: hardware %s (%s), %d ranks, %d steps projected\n", s->name, hw->name, hw->source, s->ranks,
           steps);
    if (hw->host && s->dilation > 1)
        printf("# dilation D = %g as the run: links at B/D, delays x D, times / D\n", s->dilation);
    printf("# model: %d layers, dim %d, %d heads (%d kv), ffn %d, vocab %d, context %d (chunk %d), batch %d; routing "
           "%s%s\n",
           s->layers, s->dim, s->heads, s->kv_heads, s->ffn, s->vocab, s->context, s->context / (2 * s->ranks),
           s->batch, o->allgather ? "allgather" : "needed", o->no_overlap ? ", no overlap" : "");
    printf("# times in seconds per step (rank 0; steady); exposed = waiting for communication, by class;\n"
           "# MB = payload rank 0 sends per step; total = the projected run\n");
    printf("%-26s %9s %9s %9s %9s %9s %9s %10s %10s\n", "arm", "step_s", "compute", "exp_fwd", "exp_bwd", "exp_sync",
           "KV_MB", "sync_step", "total_s");
    for (int i = 0; i < n; i++) {
        const sim_step_stats *t = &arms[i].result.steady;
        printf("%-26s %9.4f %9.4f %9.4f %9.4f %9.4f %9.3f %10.4f %10.1f\n", arms[i].arm->name, t->step_s, t->compute_s,
               t->exposed_s[COMM_KV_FORWARD], t->exposed_s[COMM_KV_BACKWARD], t->exposed_s[COMM_WEIGHT_SYNC],
               (t->bytes[COMM_KV_FORWARD] + t->bytes[COMM_KV_BACKWARD]) / 1e6, arms[i].result.sync_step.step_s,
               arms[i].result.total_s);
    }
    for (int i = 0; i < n; i++) {
        char desc[400];
        describe_arm(&arms[i], desc, sizeof desc);
        printf("#   %s: %s%s\n", arms[i].arm->name, desc,
               arms[i].result.stepwise ? "; every step simulated (jitter or rate over time)" : "");
        if (arms[i].result.stepwise)
            printf("#     steps: median %.4f s, p95 %.4f s\n", arms[i].result.p50_s, arms[i].result.p95_s);
    }
    bool any = false;
    for (int i = 0; i < n; i++)
        any = any || arms[i].measured != NULL;
    if (any) {
        printf("# against %s (measured: median of the steady steps)\n", o->against);
        printf("%-26s %10s %10s %9s %10s %10s\n", "arm", "predicted", "measured", "diff", "compute_m", "exposed_m");
        for (int i = 0; i < n; i++) {
            const arm_summary *m = arms[i].measured;
            if (m == NULL) {
                printf("%-26s %10.4f %10s\n", arms[i].arm->name, arms[i].result.steady.step_s, "(not run)");
                continue;
            }
            double d = rel_diff(arms[i].result.steady.step_s, m->step_time_s_median);
            printf("%-26s %10.4f %10.4f %+8.1f%% %10.4f %10.4f%s\n", arms[i].arm->name, arms[i].result.steady.step_s,
                   m->step_time_s_median, 100 * d, m->compute_s_median, m->comm_s_median,
                   fabs(d) > o->tolerance ? "  OUTSIDE" : "");
        }
        for (int i = 0; i < n; i++) { /* V5: jitter's spread of step times */
            const arm_summary *m = arms[i].measured;
            const sim_result *r = &arms[i].result;
            if (m == NULL || !r->stepwise)
                continue;
            const double d50 = rel_diff(r->p50_s, m->step_time_s_median), d95 = rel_diff(r->p95_s, m->step_time_s_p95);
            printf("# %s: p50 predicted %.4f, measured %.4f (%+.1f%%%s); p95 predicted %.4f, measured %.4f "
                   "(%+.1f%%%s)\n",
                   arms[i].arm->name, r->p50_s, m->step_time_s_median, 100 * d50,
                   fabs(d50) > P50_BOUND ? ", OUTSIDE 10%" : "", r->p95_s, m->step_time_s_p95, 100 * d95,
                   fabs(d95) > P95_BOUND ? ", OUTSIDE 15%" : "");
        }
        for (size_t k = 0; k < json_array_size(knees); k++) { /* V5: the knee of a bandwidth sweep */
            const json_t *e = json_array_get(knees, k);
            const char *family = json_string_value(json_object_get(e, "arms"));
            const double meas = json_real_value(json_object_get(e, "measured_bps"));
            const json_t *pred = json_object_get(e, "predicted_bps");
            if (json_is_null(pred)) {
                printf("# knee (step time twice the unshaped arm's), %s: measured %.0f Mbit/s, predicted: no "
                       "crossing, OUTSIDE\n",
                       family, meas / 1e6);
                continue;
            }
            const double d = rel_diff(json_real_value(pred), meas);
            printf("# knee (step time twice the unshaped arm's), %s: measured %.0f Mbit/s, predicted %.0f Mbit/s "
                   "(%+.1f%%%s)\n",
                   family, meas / 1e6, json_real_value(pred) / 1e6, 100 * d,
                   fabs(d) > KNEE_BOUND ? ", OUTSIDE 25%" : "");
        }
    }
    printf("# simulated in %.3f s\n", sim_s);
}

/* --loss: each arm's projected wall-clock for the real run's losses, and the figure. */
static int project_loss(const sim_cli *o, const scenario *s, const sim_hardware *hw, arm_sim *arms, int n,
                        const metrics_file *mf, char *dir_out, size_t dir_len, char *err, size_t errlen)
{
    if (o->out_dir != NULL) {
        snprintf(dir_out, dir_len, "%s", o->out_dir);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(dir_out, dir_len, "%s/results/sim-%s-%s", cli_source_dir(), s->name, stamp);
    }
    char data_dir[1200], path[1400];
    snprintf(data_dir, sizeof data_dir, "%s/plot-data", dir_out);
    if ((mkdir(dir_out, 0755) != 0 && errno != EEXIST) || (mkdir(data_dir, 0755) != 0 && errno != EEXIST))
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create: %s", data_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/arms.gp", data_dir);
    FILE *g = fopen(path, "w");
    if (g == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create", path);
    fprintf(g, "# written by wancp sim --loss\nnarms = %d\narray arm_data[%d]\narray arm_title[%d]\n", n, n, n);
    int rc = WANCP_OK;
    for (int i = 0; i < n && rc == WANCP_OK; i++) {
        const sim_result *r = &arms[i].result;
        snprintf(path, sizeof path, "%s/%s.sim", data_dir, arms[i].arm->name);
        FILE *f = fopen(path, "w");
        if (f == NULL) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create", path);
            break;
        }
        fprintf(f, "# step projected_s train_loss val_loss (loss from %s; time from wancp sim, %s)\n", o->loss,
                hw->name);
        double t = 0;
        int k = 0;
        for (int row = 0; row < mf->nrows; row++) {
            const metrics_row *m = &mf->rows[row];
            for (; k < m->step && k < r->steps; k++)
                t += r->step_s[k];
            fprintf(f, "%d %.6f %.6f ", m->step, t, m->train_loss);
            if (isnan(m->val_loss))
                fprintf(f, "NaN\n");
            else
                fprintf(f, "%.6f\n", m->val_loss);
        }
        if (fclose(f) != 0)
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot write", path);
        char title[512];
        describe_arm(&arms[i], title, sizeof title);
        snprintf(title + strlen(title), sizeof title - strlen(title), ": %.3g s/step", r->steady.step_s);
        snprintf(path, sizeof path, "%s/%s.sim", data_dir, arms[i].arm->name);
        fprintf(g, "arm_data[%d] = ", i + 1);
        results_put_string(g, path);
        fprintf(g, "\narm_title[%d] = ", i + 1);
        char full[600];
        snprintf(full, sizeof full, "%s: %s", arms[i].arm->name, title);
        results_put_string(g, full);
        fputc('\n', g);
    }
    char mode[300];
    snprintf(mode, sizeof mode, "projected: hardware %s%s; losses of %s", hw->name,
             hw->host && s->dilation > 1 ? ", dilated as the run" : "", o->loss);
    results_put_run_vars(g, dir_out, s->name, mode, s->target_val_loss, data_dir);
    if (fclose(g) != 0 && rc == WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s/arms.gp: cannot write", data_dir);
    char plots[1100], script[1200];
    snprintf(plots, sizeof plots, "%s/plots", cli_source_dir());
    snprintf(script, sizeof script, "%s/sim_loss_vs_time.gp", plots);
    if (rc == WANCP_OK)
        rc = results_gnuplot(plots, data_dir, script, err, errlen);
    return rc;
}

int cli_sim(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "validate") == 0)
        return sim_validate(argc - 1, argv + 1);
    sim_cli o;
    int st = parse(argc, argv, &o);
    if (st != 0)
        return st < 0 ? 0 : st;
    char err[WANCP_ERRLEN];
    scenario *s = calloc(1, sizeof *s);
    arm_sim *arms = calloc(SCENARIO_MAX_ARMS, sizeof *arms);
    run_summary *measured = o.against != NULL ? calloc(1, sizeof *measured) : NULL;
    metrics_file mf = {0};
    sim_hardware hw;
    int rc = s == NULL || arms == NULL || (o.against != NULL && measured == NULL) ? WANCP_ERR_NOMEM : WANCP_OK;
    if (rc != WANCP_OK)
        snprintf(err, sizeof err, "out of memory");
    if (rc == WANCP_OK)
        rc = scenario_load(s, o.scenario, o.sets, o.nsets, err, sizeof err);
    if (rc == WANCP_OK)
        rc = sim_hardware_find(&hw, o.hardware, err, sizeof err);
    if (rc == WANCP_OK && o.against != NULL)
        rc = results_summarize(measured, o.against, err, sizeof err);
    if (rc == WANCP_OK && s->dilation_auto) { /* the D the run chose, else none (dilation.h chooses on the host) */
        s->dilation = measured != NULL ? measured->dilation : 1;
        if (hw.host)
            fprintf(stderr, "wancp sim: dilation = auto: %s\n",
                    measured != NULL ? "the D the run chose" : "simulated at D = 1 (wancp run chooses D on the host)");
    }
    if (rc == WANCP_OK && o.loss != NULL)
        rc = metrics_read(&mf, o.loss, err, sizeof err);
    if (rc == WANCP_OK && o.loss != NULL && mf.nrows == 0)
        rc = wancp_fail(err, sizeof err, WANCP_ERR_INPUT, "%s: no steps to project", o.loss);
    int n = 0;
    for (int i = 0; rc == WANCP_OK && i < o.narms; i++) {
        bool found = false;
        for (int a = 0; a < s->narms; a++)
            found = found || strcmp(s->arms[a].name, o.arms[i]) == 0;
        if (!found)
            rc = wancp_fail(err, sizeof err, WANCP_ERR_INPUT, "%s: no arm named '%s'", o.scenario, o.arms[i]);
    }
    int steps = o.steps > 0 ? o.steps : s->steps;
    if (rc == WANCP_OK && o.loss != NULL && mf.rows[mf.nrows - 1].step > steps)
        steps = mf.rows[mf.nrows - 1].step;
    const double t0 = cli_now();
    for (int a = 0; rc == WANCP_OK && a < s->narms; a++) {
        if (!wanted(&o, s->arms[a].name))
            continue;
        arm_sim *as = &arms[n++];
        as->arm = &s->arms[a];
        rc = setup_arm(&o, s, &hw, as, err, sizeof err);
        if (rc == WANCP_OK)
            rc = sim_run(&as->setup, steps, &as->result, err, sizeof err);
        if (rc == WANCP_OK)
            as->closed_form_s = sim_closed_form(&as->setup, as->setup.compress, err, sizeof err);
        for (int m = 0; measured != NULL && m < measured->narms; m++)
            if (strcmp(measured->arms[m].name, as->arm->name) == 0 && measured->arms[m].has_metrics &&
                measured->arms[m].step_time_s_median > 0)
                as->measured = &measured->arms[m];
        if (!o.json && rc == WANCP_OK && isatty(fileno(stderr)))
            fprintf(stderr, "\rsimulated %d/%d arms", n, o.narms > 0 ? o.narms : s->narms);
    }
    const double sim_s = cli_now() - t0;
    if (!o.json && isatty(fileno(stderr)))
        fputc('\n', stderr);
    int status = 0;
    if (rc == WANCP_OK) {
        for (int i = 0; i < n; i++) {
            const arm_summary *m = arms[i].measured;
            const sim_result *r = &arms[i].result;
            if (m != NULL && fabs(rel_diff(r->steady.step_s, m->step_time_s_median)) > o.tolerance)
                status = 1;
            if (m != NULL && r->stepwise &&
                (fabs(rel_diff(r->p50_s, m->step_time_s_median)) > P50_BOUND ||
                 fabs(rel_diff(r->p95_s, m->step_time_s_p95)) > P95_BOUND))
                status = 1;
        }
        json_t *knees = json_array();
        for (int c = 0; c < 2; c++) {
            const double meas = knee_bps(arms, n, c == 1, true), pred = knee_bps(arms, n, c == 1, false);
            if (!isfinite(meas))
                continue;
            status |= !isfinite(pred) || fabs(rel_diff(pred, meas)) > KNEE_BOUND;
            json_t *k = json_pack("{s:s, s:f}", "arms", c ? "compressed" : "uncompressed", "measured_bps", meas);
            json_object_set_new(k, "predicted_bps", isfinite(pred) ? json_real(pred) : json_null());
            json_object_set_new(k, "rel_diff", isfinite(pred) ? json_real(rel_diff(pred, meas)) : json_null());
            json_array_append_new(knees, k);
        }
        if (o.json) {
            json_t *j = json_object(), *list = json_array(), *h = json_object();
            json_object_set_new(j, "scenario", json_string(s->name));
            json_object_set_new(h, "name", json_string(hw.name));
            json_object_set_new(h, "source", json_string(hw.source));
            json_object_set_new(h, "peak_flops", json_real(hw.peak_flops));
            json_object_set_new(h, "matmul", json_real(hw.efficiency[SIM_MATMUL]));
            json_object_set_new(h, "attention", json_real(hw.efficiency[SIM_ATTENTION]));
            json_object_set_new(h, "codec", json_real(hw.efficiency[SIM_CODEC]));
            json_object_set_new(h, "memory_bytes_s", json_real(hw.memory_bytes_s));
            json_object_set_new(j, "hardware", h);
            json_object_set_new(j, "ranks", json_integer(s->ranks));
            json_object_set_new(j, "steps", json_integer(steps));
            json_object_set_new(j, "dilation", json_real(hw.host ? s->dilation : 1.0));
            json_object_set_new(j, "routing", json_string(o.allgather ? "allgather" : "needed"));
            json_object_set_new(j, "overlap", json_boolean(!o.no_overlap));
            json_object_set_new(j, "sim_seconds", json_real(sim_s));
            if (o.against != NULL) {
                json_object_set_new(j, "against", json_string(o.against));
                json_object_set_new(j, "tolerance", json_real(o.tolerance));
            }
            for (int i = 0; i < n; i++)
                json_array_append_new(list, arm_json(&arms[i]));
            json_object_set_new(j, "arms", list);
            if (o.against != NULL)
                json_object_set_new(j, "knee", json_incref(knees));
            cli_print_json(j);
        } else {
            print_table(&o, s, &hw, arms, n, knees, sim_s, steps);
        }
        json_decref(knees);
        if (o.loss != NULL) {
            char dir[1100];
            rc = project_loss(&o, s, &hw, arms, n, &mf, dir, sizeof dir, err, sizeof err);
            if (rc == WANCP_OK)
                fprintf(o.json ? stderr : stdout, "# loss vs projected time: %s/sim_loss_vs_time.png (and .svg)\n",
                        dir);
        }
    }
    for (int i = 0; i < n; i++) {
        sim_result_free(&arms[i].result);
        if (arms[i].has_dilated)
            link_profile_free(&arms[i].dilated);
    }
    metrics_free(&mf);
    free(measured);
    if (s != NULL)
        scenario_free(s);
    free(s);
    free(arms);
    if (rc != WANCP_OK)
        return cli_report("sim", rc, err);
    return status;
}
