/* wancp run: a scenario's arms over shaped links, results and figures; wancp plot. */
#include "arm_launch.h"
#include "bench/calibrate.h"
#include "cli.h"
#include "dilation.h"
#include "report/results.h"
#include "run_sim.h"
#include "scenario.h"

#include "../core/ops/ops.h"
#include "../core/base/status.h"
#include "../core/util/buf.h"
#include "../shaper/capture.h"
#include "../shaper/topology.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MASTER_PORT 20000 /* inside fresh namespaces: nothing else listens there */

static const char USAGE[] =
    "Usage: wancp run SCENARIO.ini [--set section.key=value]... [-o DIR] [--only ARM]... [--dry-run]\n"
    "       wancp plot RESULTS_DIR\n"
    "\n"
    "run: reads and checks the whole scenario first (nothing is created when it has a problem:\n"
    "every problem is printed with file:line, exit status 2), then for each arm: brings up P rank\n"
    "namespaces shaped by the arm's link profile (scaled by the dilation D: rates / D, delays x D),\n"
    "captures bytes on the wire, starts P `wancp train` ranks, one inside each namespace, watches\n"
    "them with a live progress line, and tears everything down. A rank that fails or hangs, or the\n"
    "scenario's timeout, stops the arm (marked failed with the reason) and the run goes on with the\n"
    "next arm. Ctrl-C stops the run: the network is removed and the partial results still plot.\n"
    "Needs root (network namespaces).\n"
    "\n"
    "  --set section.key=value  override a scenario value (arm.NAME.key for an arm)\n"
    "  -o DIR                   results folder (default results/NAME-UTCTIME in the source tree)\n"
    "  --only ARM               run only this arm (repeatable)\n"
    "  --dry-run                print the resolved scenario and each arm's rank command; run nothing\n"
    "\n"
    "With seeds = 1,2,3 in [scenario] (or --set scenario.seeds=1,2,3) every arm runs once per seed,\n"
    "seed by seed, into DIR/ARM/seed-S/; the summary gives each arm's mean and 95% interval over\n"
    "its seeds and its paired difference against the baseline arm.\n"
    "\n"
    "Results: DIR/scenario.ini (resolved), run.json (commit, host, libraries, start/end, outcome per\n"
    "arm and seed), DIR/ARM/metrics.csv, wire.csv and rankK.log, summary.md, summary.json, and the\n"
    "figures loss_vs_time, loss_vs_step, bytes_per_step and step_time (.png and .svg).\n"
    "\n"
    "plot: recomputes summary.json and summary.md from a results folder's CSV files and redraws\n"
    "its figures with the gnuplot scripts in plots/.\n";

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static const char *plots_dir(void)
{
    static char dir[1100];
    const char *env = getenv("WANCP_PLOTS");
    if (env != NULL && env[0])
        return env;
    snprintf(dir, sizeof dir, "%s/plots", cli_source_dir());
    return dir;
}

static void utc_now(char *buf, size_t len, const char *fmt)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, fmt, &tm);
}

/* What the arm's link was, for run.json and the figures' legends. */
static void describe_link(const scenario *s, const scenario_arm *a, const char *mechanism, char *buf, size_t len)
{
    const char *model = a->link_model == TOPOLOGY_MESH ? "mesh" : "uplink";
    if (!a->shaped) {
        snprintf(buf, len, "unshaped veth (stands in for a datacenter link)");
        return;
    }
    char d[256];
    link_profile_describe(&a->profile, d, sizeof d);
    size_t used = (size_t)snprintf(buf, len, "%s, %s", d, model);
    if (a->straggler_k > 1 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", rank %d's links at 1/%g", a->straggler, a->straggler_k);
    if (s->dilation > 1 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", run at 1/%g of the rate", s->dilation);
    if (strcmp(mechanism, "none") != 0 && used < len)
        snprintf(buf + used, len - used, ", delay by %s", mechanism);
}

/* The rank command line of an arm: wancp train with the scenario's values. */
typedef struct arm_argv { /* room for every option of train once, the table's switches included */
    char *argv[128];
    char text[64][1100];
    int n, ntext;
} arm_argv;

static void add(arm_argv *v, const char *arg) { v->argv[v->n++] = (char *)arg; }

static void add_value(arm_argv *v, const char *opt, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_value(arm_argv *v, const char *opt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->text[v->ntext], sizeof v->text[0], fmt, ap);
    va_end(ap);
    add(v, opt);
    add(v, v->text[v->ntext++]);
}

static void build_argv(const scenario *s, const scenario_arm *a, unsigned long seed, const char *metrics, arm_argv *v)
{
    *v = (arm_argv){0};
    add(v, "wancp");
    add(v, "train");
    add_value(v, "--train", "%s", scenario_train_shard(s, a));
    add_value(v, "--val", "%s", scenario_val_shard(s, a));
    add_value(v, "--layers", "%d", s->layers);
    add_value(v, "--dim", "%d", s->dim);
    add_value(v, "--heads", "%d", s->heads);
    add_value(v, "--kv-heads", "%d", s->kv_heads);
    add_value(v, "--ffn", "%d", s->ffn);
    add_value(v, "--context", "%d", s->context);
    add_value(v, "--vocab", "%d", s->vocab);
    add_value(v, "--batch", "%d", s->batch);
    add_value(v, "--steps", "%d", s->steps);
    add_value(v, "--lr", "%g", s->lr);
    add_value(v, "--warmup", "%d", s->warmup >= 0 ? s->warmup : s->steps / 10);
    add_value(v, "--eval-every", "%d", s->eval_every);
    add_value(v, "--val-tokens", "%ld", s->val_tokens);
    add_value(v, "--seed", "%lu", seed);
    add_value(v, "--sync", "%c", a->sync ? a->sync : s->sync);
    add_value(v, "--sync-every", "%d", a->sync_every ? a->sync_every : s->sync_every);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    add_value(v, "--threads", "%ld", cpus > s->ranks ? cpus / s->ranks : 1);
    if (a->compress) {
        int warm = a->warm_steps >= 0 ? a->warm_steps : s->steps / 10;
        add(v, "--compress");
        add_value(v, "--warm-steps", "%d", warm);
        if (scenario_method(s, a, run_option_find("cov_steps"))[0] == 0)
            add_value(v, "--cov-steps", "%d", warm < 10 ? warm : 10);
        if (a->compress_last)
            add(v, "--compress-last");
    }
    for (int i = 0; i < RUN_NOPTIONS; i++) { /* the table's switches, as it spells them */
        const run_option *o = &RUN_OPTIONS[i];
        const char *value = scenario_method(s, a, i);
        if (value[0] == 0 || (o->compress_only && !a->compress) || strcmp(value, "false") == 0)
            continue;
        if (o->type == RUN_OPT_BOOL)
            add(v, o->flag);
        else
            add_value(v, o->flag, "%s", value);
    }
    add_value(v, "--metrics", "%s", metrics);
    v->argv[v->n] = NULL;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create: %s", path, strerror(errno));
    return WANCP_OK;
}

/* run.json: what ran where, and how each arm ended (rewritten after every arm). */
static int write_run_json(const char *dir, json_t *run, char *err, size_t errlen)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    char *text = json_dumps(run, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (text == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "%s: out of memory", path);
    int rc = file_write_atomic(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

static json_t *run_header(const scenario *s, int argc, char **argv)
{
    json_t *o = json_object(), *libs = json_object();
    char cmd[2048], host[256] = "?", when[64];
    struct utsname u;
    cli_command_line(argc, argv, cmd, sizeof cmd);
    gethostname(host, sizeof host);
    json_object_set_new(o, "scenario", json_string(s->name));
    json_object_set_new(o, "scenario_file", json_string(s->path));
    json_object_set_new(o, "command", json_string(cmd));
    json_object_set_new(o, "commit", json_string(wancp_git_commit));
    json_object_set_new(o, "host", json_string(host));
    if (uname(&u) == 0) {
        char kernel[600];
        snprintf(kernel, sizeof kernel, "%s %s %s", u.sysname, u.release, u.machine);
        json_object_set_new(o, "kernel", json_string(kernel));
    }
    json_object_set_new(o, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    char blas[256];
    snprintf(blas, sizeof blas, "%s (core %s)", ops_cpu_blas_name(), ops_cpu_blas_core());
    json_object_set_new(libs, "blas", json_string(blas));
    json_object_set_new(libs, "libpcap", json_string(pcap_lib_version()));
    json_object_set_new(libs, "jansson", json_string(jansson_version_str()));
    json_object_set_new(o, "libraries", libs);
    utc_now(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
    json_object_set_new(o, "start", json_string(when));
    json_object_set_new(o, "ranks", json_integer(s->ranks));
    json_object_set_new(o, "steps", json_integer(s->steps));
    json_object_set_new(o, "dilation", json_real(s->dilation));
    json_object_set_new(o, "target_val_loss", json_real(s->target_val_loss));
    json_object_set_new(o, "master_port", json_integer(MASTER_PORT));
    json_t *seeds = json_array();
    for (int i = 0; i < s->nseeds; i++)
        json_array_append_new(seeds, json_integer((json_int_t)s->seeds[i]));
    json_object_set_new(o, "seeds", seeds);
    json_object_set_new(o, "baseline", json_string(s->baseline));
    json_object_set_new(
        o, "times", json_string(s->dilation > 1 ? "links at B/D with delays x D; reported times / D" : "real time"));
    json_object_set_new(o, "arms", json_array());
    return o;
}

typedef struct run_options {
    const char *scenario_path;
    char *sets[64];
    int nsets;
    const char *out_dir;
    const char *only[16];
    int nonly;
    int dry_run;
} run_options;

static int parse_run(int argc, char **argv, run_options *o)
{
    *o = (run_options){0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return -1;
        } else if (strcmp(a, "--set") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "--only") == 0) {
            if (i + 1 >= argc)
                return cli_usage_error("run", "%s needs a value", a);
            const char *v = argv[++i];
            if (a[2] == 's') {
                if (o->nsets == 64)
                    return cli_usage_error("run", "at most 64 --set");
                o->sets[o->nsets++] = (char *)v;
            } else if (a[1] == 'o') {
                o->out_dir = v;
            } else {
                if (o->nonly == 16)
                    return cli_usage_error("run", "at most 16 --only");
                o->only[o->nonly++] = v;
            }
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if (a[0] == '-') {
            return cli_usage_error("run", "unknown option '%s'", a);
        } else if (o->scenario_path != NULL) {
            return cli_usage_error("run", "one SCENARIO file, not '%s' as well", a);
        } else {
            o->scenario_path = a;
        }
    }
    if (o->scenario_path == NULL)
        return cli_usage_error("run", "missing the SCENARIO file");
    return 0;
}

static int selected(const run_options *o, const char *arm)
{
    if (o->nonly == 0)
        return 1;
    for (int i = 0; i < o->nonly; i++)
        if (strcmp(o->only[i], arm) == 0)
            return 1;
    return 0;
}

/* One arm with one seed: network up, capture, ranks, capture stopped, network down. The
 * outcome goes into ja; the return value is nonzero only when the run itself must stop. */
static int run_arm(const scenario *s, const scenario_arm *a, int seed_index, int index, int nruns, const char *dir,
                   json_t *ja)
{
    char arm_dir[1400], metrics[1500], wire[1500], err[WANCP_ERRLEN], label[200], link[512], rel[200];
    scenario_run_dir(s, a, seed_index, rel, sizeof rel);
    snprintf(arm_dir, sizeof arm_dir, "%s/%s", dir, a->name);
    int made = make_dir(arm_dir, err, sizeof err);
    snprintf(arm_dir, sizeof arm_dir, "%s/%s", dir, rel);
    snprintf(metrics, sizeof metrics, "%s/metrics.csv", arm_dir);
    snprintf(wire, sizeof wire, "%s/wire.csv", arm_dir);
    if (s->nseeds > 1)
        snprintf(label, sizeof label, "run %d/%d %s seed %lu", index + 1, nruns, a->name, s->seeds[seed_index]);
    else
        snprintf(label, sizeof label, "arm %d/%d %s", index + 1, nruns, a->name);
    if (made != WANCP_OK || make_dir(arm_dir, err, sizeof err) != WANCP_OK) {
        json_object_set_new(ja, "outcome", json_string("failed"));
        json_object_set_new(ja, "reason", json_string(err));
        return 1;
    }
    link_profile dilated;
    if (a->shaped && link_profile_dilate(&a->profile, s->dilation, &dilated) != 0) {
        json_object_set_new(ja, "outcome", json_string("failed"));
        json_object_set_new(ja, "reason", json_string("out of memory"));
        return 1;
    }
    topology t = {.ranks = s->ranks,
                  .model = a->link_model,
                  .profile = a->shaped ? &dilated : NULL,
                  .delay_mechanism = DELAY_AUTO,
                  .straggler = a->straggler,
                  .straggler_k = a->straggler_k,
                  .owned = true};
    snprintf(t.prefix, sizeof t.prefix, "%s%ld", TOPOLOGY_RUN_PREFIX, (long)getpid());
    describe_link(s, a, topology_delay_mechanism(&t), link, sizeof link);
    json_object_set_new(ja, "link", json_string(link));
    fprintf(stderr, "%s: %s\n", label, link);

    char when[64];
    utc_now(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
    json_object_set_new(ja, "start", json_string(when));
    const char *outcome = "failed";
    char reason[600] = "";
    double seconds = 0;
    int stop_run = 0;
    capture cap = {0};
    int up = topology_up(&t, err, sizeof err) == WANCP_OK;
    if (!up)
        snprintf(reason, sizeof reason, "network: %s", err);
    int capturing = up && capture_start(&cap, t.prefix, s->ranks, wire, NULL, err, sizeof err) == WANCP_OK;
    if (up && !capturing)
        snprintf(reason, sizeof reason, "capture: %s", err);
    if (capturing) {
        arm_argv v;
        build_argv(s, a, s->seeds[seed_index], metrics, &v);
        arm_launch l = {.label = label,
                        .prefix = t.prefix,
                        .ranks = s->ranks,
                        .argv = v.argv,
                        .log_dir = arm_dir,
                        .metrics_path = metrics,
                        .total_steps = s->steps,
                        .dilation = s->dilation,
                        .timeout_s = s->timeout_s,
                        .master_port = MASTER_PORT};
        arm_outcome out;
        if (arm_launch_run(&l, &interrupted, &out) != 0) {
            snprintf(reason, sizeof reason, "%s", out.reason);
        } else {
            outcome = out.ok ? "ok" : out.interrupted ? "interrupted" : "failed";
            snprintf(reason, sizeof reason, "%s", out.reason);
            seconds = out.seconds;
        }
        stop_run = out.interrupted;
    }
    if (capturing && capture_stop(&cap, err, sizeof err) != WANCP_OK)
        fprintf(stderr, "wancp run: %s: capture: %s\n", a->name, err);
    int removed = 0;
    if (topology_down(t.prefix, &removed, err, sizeof err) != WANCP_OK)
        fprintf(stderr, "wancp run: %s: teardown: %s (wancp shape down --all removes what is left)\n", a->name, err);
    if (a->shaped)
        link_profile_free(&dilated);
    /* A stopped run's rank 0 may leave its metrics as FILE.partial: complete rows, still
     * worth summarising and plotting. */
    char partial[1600];
    snprintf(partial, sizeof partial, "%s.partial", metrics);
    if (access(metrics, F_OK) != 0 && access(partial, F_OK) == 0)
        rename(partial, metrics);
    json_object_set_new(ja, "outcome", json_string(outcome));
    if (reason[0])
        json_object_set_new(ja, "reason", json_string(reason));
    json_object_set_new(ja, "seconds", json_real(seconds));
    utc_now(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
    json_object_set_new(ja, "end", json_string(when));
    if (strcmp(outcome, "ok") == 0)
        fprintf(stderr, "%s: done in %.0f s\n", label, seconds);
    else
        fprintf(stderr, "%s: %s%s%s (logs in %s)\n", label, outcome, reason[0] ? ": " : "", reason, arm_dir);
    return stop_run;
}

/* summary.json, summary.md and the figures of a results folder. */
static int summarize_and_plot(const char *dir, const char *cmd, int quiet)
{
    static run_summary rs;
    char err[WANCP_ERRLEN];
    int rc = results_summarize(&rs, dir, err, sizeof err);
    if (rc == WANCP_OK)
        rc = results_write_summary(&rs, err, sizeof err);
    if (rc == WANCP_OK)
        rc = results_plot(&rs, plots_dir(), err, sizeof err);
    if (rc != WANCP_OK)
        return cli_report(cmd, rc, err);
    if (!quiet) {
        char path[1200];
        snprintf(path, sizeof path, "%s/summary.md", dir);
        FILE *f = fopen(path, "r");
        char line[2048];
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            fputs(line, stdout);
        if (f != NULL)
            fclose(f);
    }
    fprintf(stderr, "figures: %s/{loss_vs_time,loss_vs_step,bytes_per_step,step_time}.{png,svg}\n", dir);
    return 0;
}

static int cli_run_main(int argc, char **argv)
{
    run_options o;
    int status = parse_run(argc, argv, &o);
    if (status != 0)
        return status < 0 ? 0 : status;
    static scenario s;
    char err[8192];
    int rc = scenario_load(&s, o.scenario_path, o.sets, o.nsets, err, sizeof err);
    if (rc != WANCP_OK)
        return cli_report("run", rc, err);
    for (int i = 0; i < o.nonly; i++) {
        int found = 0;
        for (int k = 0; k < s.narms; k++)
            found |= strcmp(s.arms[k].name, o.only[i]) == 0;
        if (!found) {
            scenario_free(&s);
            return cli_usage_error("run", "--only %s: no such arm in %s", o.only[i], o.scenario_path);
        }
    }
    if (o.dry_run) {
        scenario_write(&s, stdout);
        for (int seed = 0; seed < s.nseeds; seed++)
            for (int i = 0; i < s.narms; i++) {
                if (!selected(&o, s.arms[i].name))
                    continue;
                char metrics[300] = "DIR/ARM/metrics.csv";
                if (s.nseeds > 1)
                    snprintf(metrics, sizeof metrics, "DIR/ARM/seed-%lu/metrics.csv", s.seeds[seed]);
                arm_argv v;
                build_argv(&s, &s.arms[i], s.seeds[seed], metrics, &v);
                if (s.nseeds > 1)
                    printf("\n; arm %s, seed %lu, each rank:", s.arms[i].name, s.seeds[seed]);
                else
                    printf("\n; arm %s, each rank:", s.arms[i].name);
                for (int k = 0; k < v.n; k++)
                    printf(" %s", v.argv[k]);
                printf("\n");
            }
        scenario_free(&s);
        return 0;
    }
    rc = scenario_check_data(&s, err, sizeof err);
    if (rc != WANCP_OK) {
        scenario_free(&s);
        return cli_report("run", rc, err);
    }
    if (geteuid() != 0) {
        scenario_free(&s);
        return cli_report("run", WANCP_ERR_SYSTEM, "needs root: every arm runs in its own network namespaces");
    }
    dilation_choice chosen = {0};
    if (s.dilation_auto) {
        fprintf(stderr, "wancp run: dilation = auto: timing this host's compute step (%d ranks at once, 3 steps)\n",
                s.ranks);
        double compute_s;
        rc = calibrate_compute_step(&s, 3, &compute_s, err, sizeof err);
        if (rc != WANCP_OK) {
            scenario_free(&s);
            return cli_report("run", rc, err);
        }
        dilation_choose(&s, compute_s, &chosen);
        s.dilation_auto = false;
        snprintf(s.dilation_note, sizeof s.dilation_note, "%s", chosen.why);
        fprintf(stderr, "wancp run: dilation D = %g (%s)\n", s.dilation, chosen.why);
    }
    char dir[1100];
    if (o.out_dir != NULL) {
        snprintf(dir, sizeof dir, "%s", o.out_dir);
    } else {
        char when[32];
        utc_now(when, sizeof when, "%Y%m%dT%H%M%SZ");
        snprintf(dir, sizeof dir, "%s/results/%s-%s", cli_source_dir(), s.name, when);
    }
    if (make_dir(dir, err, sizeof err) != WANCP_OK) {
        scenario_free(&s);
        return cli_report("run", WANCP_ERR_SYSTEM, err);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/scenario.ini", dir);
    char *resolved = NULL;
    size_t resolved_len = 0;
    FILE *f = open_memstream(&resolved, &resolved_len);
    if (f != NULL) {
        scenario_write(&s, f);
        fclose(f);
    }
    rc = resolved != NULL ? file_write_atomic(path, resolved, resolved_len, err, sizeof err)
                          : wancp_fail(err, sizeof err, WANCP_ERR_NOMEM, "%s: out of memory", path);
    free(resolved);
    if (rc != WANCP_OK) {
        scenario_free(&s);
        return cli_report("run", rc, err);
    }
    fprintf(stderr, "wancp run: %s: %d arm%s x %d seed%s, %d ranks, %d steps%s; results in %s\n", s.name, s.narms,
            s.narms == 1 ? "" : "s", s.nseeds, s.nseeds == 1 ? "" : "s", s.ranks, s.steps,
            s.dilation > 1 ? ", dilated" : "", dir);

    int orphans = 0;
    char names[256];
    if (topology_down_orphans(&orphans, names, sizeof names, err, sizeof err) != WANCP_OK)
        fprintf(stderr, "wancp run: removing an earlier run's network: %s (wancp shape down --all)\n", err);
    else if (orphans > 0)
        fprintf(stderr, "wancp run: removed %d namespaces left by runs that were killed (%s)\n", orphans, names);
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    json_t *run = run_header(&s, argc, argv), *arms = json_object_get(run, "arms");
    if (chosen.dilation > 0)
        json_object_set_new(run, "dilation_choice",
                            json_pack("{s:f, s:f, s:f, s:f, s:s}", "compute_s", chosen.compute_s, "exchange_bytes",
                                      chosen.exchange_bytes, "rate_bps", chosen.rate_bps, "exchange_ratio",
                                      chosen.ratio, "why", chosen.why));
    for (int seed = 0; seed < s.nseeds; seed++) /* seed by seed: a drifting host touches every arm alike */
        for (int i = 0; i < s.narms; i++) {
            const scenario_arm *a = &s.arms[i];
            json_t *ja = json_object();
            json_object_set_new(ja, "name", json_string(a->name));
            json_object_set_new(ja, "seed", json_integer((json_int_t)s.seeds[seed]));
            json_object_set_new(ja, "compress", json_boolean(a->compress));
            char sync[2] = {a->sync ? a->sync : s.sync, 0};
            json_object_set_new(ja, "sync", json_string(sync));
            json_object_set_new(ja, "sync_every", json_integer(a->sync_every ? a->sync_every : s.sync_every));
            json_object_set_new(ja, "outcome", json_string("not-run"));
            if (a->swept_from[0])
                json_object_set_new(
                    ja, "sweep",
                    json_pack("{s:s, s:s, s:s}", "key", s.sweep_key, "value", a->sweep_value, "from", a->swept_from));
            json_array_append_new(arms, ja);
        }
    if (write_run_json(dir, run, err, sizeof err) != WANCP_OK) {
        json_decref(run);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        scenario_free(&s);
        return cli_report("run", WANCP_ERR_SYSTEM, err);
    }
    char sim_why[600] = "";
    bool calibrated = false;
    if (s.simulate && !interrupted) { /* this host, close in time to the arms */
        fprintf(stderr, "wancp run: calibrating this host for the simulator (simulate = true; %s/calibrate.txt)\n",
                dir);
        calibrated =
            run_sim_calibrate(o.scenario_path, o.sets, o.nsets, s.dilation, dir, sim_why, sizeof sim_why) == WANCP_OK;
        if (!calibrated)
            fprintf(stderr, "wancp run: no prediction beside this run: %s\n", sim_why);
    }
    int failed = 0, nruns = 0, index = 0;
    for (int i = 0; i < s.narms; i++)
        nruns += selected(&o, s.arms[i].name) ? s.nseeds : 0;
    for (int r = 0; r < s.narms * s.nseeds && !interrupted; r++) {
        const int seed = r / s.narms, i = r % s.narms;
        if (!selected(&o, s.arms[i].name))
            continue;
        json_t *ja = json_array_get(arms, (size_t)r);
        int stop = run_arm(&s, &s.arms[i], seed, index++, nruns, dir, ja);
        failed |= strcmp(json_string_value(json_object_get(ja, "outcome")), "ok") != 0;
        if (write_run_json(dir, run, err, sizeof err) != WANCP_OK)
            fprintf(stderr, "wancp run: %s\n", err);
        if (stop)
            break;
    }
    char when[64];
    utc_now(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ");
    json_object_set_new(run, "end", json_string(when));
    if (calibrated && !interrupted) {
        write_run_json(dir, run, err, sizeof err); /* the outcomes sim reads */
        fprintf(stderr, "wancp run: predicting each arm's step time on this calibration (%s/sim.json)\n", dir);
        if (run_sim_predict(o.scenario_path, o.sets, o.nsets, s.dilation, dir, sim_why, sizeof sim_why) != WANCP_OK)
            fprintf(stderr, "wancp run: no prediction beside this run: %s\n", sim_why);
    }
    if (s.simulate)
        json_object_set_new(run, "simulation",
                            json_pack("{s:b, s:s}", "calibrated", calibrated, "note",
                                      sim_why[0] ? sim_why
                                      : calibrated
                                          ? "hardware.ini: `wancp bench calibrate` before the arms; sim.json: `wancp "
                                            "sim --against` after them"
                                          : "interrupted before the calibration"));
    json_object_set_new(run, "interrupted", json_boolean(interrupted != 0));
    if (write_run_json(dir, run, err, sizeof err) != WANCP_OK)
        fprintf(stderr, "wancp run: %s\n", err);
    json_decref(run);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    scenario_free(&s);
    int plotted = summarize_and_plot(dir, "run", 0);
    if (interrupted) {
        fprintf(stderr, "wancp run: interrupted; network removed, partial results in %s\n", dir);
        return 130;
    }
    return failed || plotted != 0 ? 1 : 0;
}

int cli_run(int argc, char **argv) { return cli_run_main(argc, argv); }

int cli_plot(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return cli_usage_error("plot", "expected one RESULTS_DIR");
    return summarize_and_plot(argv[1], "plot", 1);
}
