/* wancp bench calibrate: this host's compute by op class, measured as a scenario's ranks run
 * it (P processes sharing the cores, each with the threads `wancp run` gives it), written as
 * the hardware profile cpu-local for `wancp sim`, with the price in cores of its shaped links. */
#include "../cli.h"
#include "../dilation.h"
#include "calibrate.h"
#include "../ranks.h"
#include "../cli_model.h"
#include "../sim/link_price.h"
#include "../scenario.h"
#include "../sim/sim_hardware.h"
#include "../sim/sim_step.h"

#include "../../core/comm/comm.h"
#include "../../core/cp/cp_attention.h"
#include "../../core/model/model.h"
#include "../../core/ops/ops_timed.h"
#include "../../core/base/status.h"
#include "../../core/train/optimizer.h"
#include "../../shaper/capture.h"
#include "../../shaper/topology.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp bench calibrate SCENARIO.ini [--set SECTION.KEY=VALUE]... [--steps N] [--path P] [-o FILE]\n"
    "                             [--json]\n"
    "\n"
    "Runs the scenario's model as its P ranks would on this host (P processes at once, each\n"
    "with the BLAS threads `wancp run` gives a rank; the K/V exchange skipped, so only compute\n"
    "is timed), uncompressed and compressed, --steps timed steps each (3)\n"
    "after one warm-up. Every op is timed into its class (matmul, attention, elementwise and\n"
    "optimizer, and the compression maths); the simulator's FLOP and byte counts for the same\n"
    "step divided by those seconds give this host's efficiency per class against the sgemm\n"
    "peak (measured after). A third pass runs the uncompressed step with its exchange: what\n"
    "it adds per K/V byte a rank moves is the byte cost. As root, the shaped links' price\n"
    "last, at every rate the scenario's rate-shaped arms run: P iperf3 streams as the ring's\n"
    "links through that arm's links (dilated, the capture running) with a spinner on every\n"
    "core; the spinners' lost turns are the cores the links took, and per payload byte, less\n"
    "the byte cost's share, that is link_cost_s (the step model's processor sharing). Links\n"
    "that also delay, jitter or lose (the delay emulator's relays) are priced apart, as\n"
    "delay_link_cost_s. Written to -o FILE (default: results/hardware/cpu-local.ini, or\n"
    "$WANCP_HARDWARE), which `wancp sim --hardware cpu-local` reads.\n"
    "\n"
    "  --path P  where the ranks' bytes go: namespaces (the default as root: each rank in its\n"
    "            own namespace on unshaped veths through the bridge, with the capture running,\n"
    "            as `wancp run` builds them, so the byte cost is what a run's path takes from\n"
    "            the cores) or loopback (127.0.0.1; the default without root)\n";

enum { VARIANTS = 3 }; /* uncompressed, compressed (compute alone); uncompressed with its exchange on loopback */

typedef struct rank_times {
    double step_s, class_s[OPS_TIME_NCLASSES], codec_s;
} rank_times;

typedef struct shared {
    rank_times t[VARIANTS][COMM_MAX_RANKS];
    int failed;
    char error[512];
} shared;

/* The model a rank of s trains, uncompressed or compressed with the [train] switches (the
 * calibration times one of each; the simulator scales them to every arm's shape). */
static model_config config_of(const scenario *s, bool compress)
{
    scenario_arm compressed = {.compress = true}; /* every switch [train]'s */
    return scenario_model(s, compress ? &compressed : NULL);
}

/* BLAS threads of one rank, as `wancp run` gives each. */
static int rank_threads(const scenario *s)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > s->ranks ? (int)(cpus / s->ranks) : 1;
}

static int time_variant(comm *cm, const scenario *s, bool compress, bool exchange, int steps, rank_times *out,
                        char *err, size_t errlen)
{
    const model_config cfg = config_of(s, compress);
    const int chunk = s->context / (2 * s->ranks);
    model m;
    cp_attention cp = {0};
    const ops_options threads = {.cpu_threads = rank_threads(s)};
    const ops *o = ops_timed(ops_make("cpu", &threads, err, errlen));
    int rc = model_init(&m, &cfg, o, s->batch, 2 * chunk, 1, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    cp_layout layout = {.kind = CP_ZIGZAG, .ranks = s->ranks, .chunk = chunk};
    cp_options co = {.wire_bf16 = scenario_run_method(s, NULL).wire == 0, .compress_last = true, .seed = 3};
    rc = cp_attention_init(&cp, s->ranks > 1 ? cm : NULL, &layout, &co, &m, err, errlen);
    if (rc == WANCP_OK && compress)
        rc = cp_attention_set_compression(&cp, &m, true, err, errlen);
    cp.exchange = exchange;
    const size_t n = (size_t)s->batch * m.seq;
    uint16_t *in = calloc(n, sizeof *in), *tg = calloc(n, sizeof *tg);
    if (rc == WANCP_OK && (in == NULL || tg == NULL))
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == WANCP_OK; i++)
        in[i] = (uint16_t)(i * 7 % (size_t)cfg.vocab), tg[i] = (uint16_t)(i * 11 % (size_t)cfg.vocab);
    optim_config oc = optim_config_default();
    oc.total_steps = steps + 1;
    *out = (rank_times){0};
    for (int k = -1; k < steps && rc == WANCP_OK; k++) { /* k = -1 warms up */
        if (s->ranks > 1)
            rc = comm_barrier(cm, err, errlen);
        ops_timed_reset();
        const double codec0 = cp.codec_s, t0 = cli_now();
        model_zero_grads(&m);
        if (rc == WANCP_OK && isnan(model_step(&m, in, tg, true)))
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", cp.error);
        if (rc == WANCP_OK)
            optim_step(&m, &oc, k + 1);
        const double took = cli_now() - t0;
        double cls[OPS_TIME_NCLASSES];
        ops_timed_read(cls);
        if (k < 0)
            continue;
        out->step_s += took / steps;
        out->codec_s += (cp.codec_s - codec0) / steps;
        for (int c = 0; c < OPS_TIME_NCLASSES; c++)
            out->class_s[c] += cls[c] / steps;
    }
    free(in);
    free(tg);
    cp_attention_free(&cp);
    model_free(&m);
    return rc;
}

/* prefix: the rank namespaces to enter (NULL: loopback). */
static int rank_main(int rank, const scenario *s, const char *prefix, int port, int steps, int variants, shared *out)
{
    char err[WANCP_ERRLEN];
    comm *cm = NULL;
    int rc = prefix != NULL ? topology_enter(prefix, rank, err, sizeof err) : WANCP_OK;
    if (rc == WANCP_OK && s->ranks > 1) {
        comm_options o = {
            .rank = rank, .world = s->ranks, .master_port = port, .job_id = (uint64_t)port, .timeout_ms = 120000};
        if (prefix != NULL)
            topology_rank_addr(0, o.master_addr, sizeof o.master_addr);
        else
            snprintf(o.master_addr, sizeof o.master_addr, "127.0.0.1");
        rc = comm_open(&cm, &o, err, sizeof err);
    }
    for (int v = 0; v < variants && rc == WANCP_OK; v++)
        rc = time_variant(cm, s, v == 1, v == 2, steps, &out->t[v][rank], err, sizeof err);
    if (rc != WANCP_OK) {
        out->failed = 1;
        snprintf(out->error, sizeof out->error, "rank %d: %.480s", rank, err);
    }
    comm_close(cm);
    return rc == WANCP_OK ? 0 : 1;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Whether this process can build the rank namespaces (root, and a kernel that has them). */
static bool namespaces_usable(void)
{
    if (geteuid() != 0)
        return false;
    char probe[64];
    snprintf(probe, sizeof probe, "ip netns add wancp-calprobe%ld 2>/dev/null", (long)getpid());
    if (system(probe) != 0)
        return false;
    snprintf(probe, sizeof probe, "ip netns del wancp-calprobe%ld", (long)getpid());
    return system(probe) == 0;
}

typedef struct rank_args {
    const scenario *s;
    const char *prefix;
    int port, steps, variants;
    shared *res;
} rank_args;

static int rank_entry(int rank, void *ctx)
{
    const rank_args *a = ctx;
    return rank_main(rank, a->s, a->prefix, a->port, a->steps, a->variants, a->res);
}

/* Runs the ranks (entered into prefix's namespaces, or on loopback) through the first
 * `variants` variants; Ctrl-C kills them. Fails when a rank did. */
static int run_ranks(const scenario *s, const char *prefix, int port, int steps, int variants, shared *res, char *err,
                     size_t errlen)
{
    rank_args a = {.s = s, .prefix = prefix, .port = port, .steps = steps, .variants = variants, .res = res};
    const int failed = ranks_fork(s->ranks, rank_entry, &a, &interrupted);
    if (interrupted)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "interrupted; everything it created is removed");
    if (failed || res->failed)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", res->failed ? res->error : "a rank failed");
    return WANCP_OK;
}

/* The slowest rank's mean step of variant v: when a step of the arm ends. */
static double slowest_step(const shared *res, int v, int ranks)
{
    double slowest = 0;
    for (int r = 0; r < ranks; r++)
        if (res->t[v][r].step_s > slowest)
            slowest = res->t[v][r].step_s;
    return slowest;
}

int calibrate_compute_step(const scenario *s, int steps, double *step_s, char *err, size_t errlen)
{
    shared *res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "cannot map shared results");
    memset(res, 0, sizeof *res);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    const int port = 10240 + rand() % 20000; /* below the ephemeral range (32768+) */
    int rc = run_ranks(s, NULL, port, steps, 1, res, err, errlen);
    *step_s = rc == WANCP_OK ? slowest_step(res, 0, s->ranks) : NAN;
    munmap(res, sizeof *res);
    return rc;
}

/* Work done inside the rank namespaces, given their prefix. */
typedef int namespaces_job(const char *prefix, void *ctx, char *err, size_t errlen);

/* job inside s's rank namespaces (shaped by profile, or not: NULL) with the capture
 * running, as `wancp run` builds an arm's; everything removed whatever happens. */
static int in_rank_namespaces(const scenario *s, const link_profile *profile, namespaces_job *job, void *ctx, char *err,
                              size_t errlen)
{
    topology t = {.ranks = s->ranks, .model = TOPOLOGY_UPLINK, .profile = profile};
    snprintf(t.prefix, sizeof t.prefix, "%s%ld", TOPOLOGY_CALIBRATE_PREFIX, (long)getpid());
    char csv[] = "/tmp/wancp-calibrate-XXXXXX";
    int fd = mkstemp(csv);
    if (fd < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot create a file in /tmp: %s", strerror(errno));
    close(fd);
    int rc = topology_up(&t, err, errlen);
    capture cap;
    bool capturing = false;
    if (rc == WANCP_OK && (rc = capture_start(&cap, t.prefix, s->ranks, csv, NULL, err, errlen)) == WANCP_OK)
        capturing = true;
    if (rc == WANCP_OK)
        rc = job(t.prefix, ctx, err, errlen);
    char other[WANCP_ERRLEN];
    if (capturing && capture_stop(&cap, other, sizeof other) != WANCP_OK && rc == WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", other);
    int removed = 0;
    if (topology_down(t.prefix, &removed, other, sizeof other) != WANCP_OK && rc == WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", other);
    unlink(csv);
    return rc;
}

typedef struct ranks_job {
    const scenario *s;
    int port, steps;
    shared *res;
} ranks_job;

static int ranks_in(const char *prefix, void *ctx, char *err, size_t errlen)
{
    const ranks_job *j = ctx;
    return run_ranks(j->s, prefix, j->port, j->steps, VARIANTS, j->res, err, errlen);
}

/* The ranks in their own unshaped namespaces, as `wancp run`'s unshaped arm. */
static int run_in_namespaces(const scenario *s, int port, int steps, shared *res, char *err, size_t errlen)
{
    ranks_job j = {.s = s, .port = port, .steps = steps, .res = res};
    return in_rank_namespaces(s, NULL, ranks_in, &j, err, errlen);
}

/* One price per distinct rate of s's rate-shaped arms (dilated as `wancp run` applies it),
 * and apart for links that also delay, jitter or lose (the delay emulator's relays work
 * for every frame): the first arm of each, its dilated profile; links by rate alone first,
 * each kind by ascending rate. Returns how many (up to max). */
typedef struct priced_rate {
    const scenario_arm *arm;
    link_profile links; /* dilated; owned */
    bool delayed;       /* link_profile_delays */
    char describe[160];
    link_price price;
    double per_byte_s; /* cores_taken / payload_bytes_s */
    double cost_s;     /* per_byte_s less the byte cost's share: link_cost_s or delay_link_cost_s */
} priced_rate;

static bool priced_before(const priced_rate *a, bool delayed, uint64_t rate_bps)
{
    return a->delayed != delayed ? !a->delayed : a->links.rate_bps < rate_bps;
}

static int shaped_rates(const scenario *s, priced_rate *out, int max)
{
    int n = 0;
    for (int a = 0; a < s->narms; a++) {
        const link_profile *p = &s->arms[a].profile;
        if (!s->arms[a].shaped || p->rate_bps == 0 || p->ntrace > 0)
            continue;
        link_profile d;
        if (link_profile_dilate(p, s->dilation, &d) != 0)
            continue;
        const bool delayed = link_profile_delays(&d);
        int k = 0;
        while (k < n && priced_before(&out[k], delayed, d.rate_bps))
            k++;
        if ((k < n && out[k].delayed == delayed && out[k].links.rate_bps == d.rate_bps) || n == max) {
            link_profile_free(&d);
            continue;
        }
        memmove(&out[k + 1], &out[k], (size_t)(n - k) * sizeof *out);
        out[k] = (priced_rate){.arm = &s->arms[a], .links = d, .delayed = delayed};
        link_profile_describe(&d, out[k].describe, sizeof out[k].describe);
        n++;
    }
    return n;
}

typedef struct price_job {
    const scenario *s;
    int port;
    link_price *out;
} price_job;

static int price_in(const char *prefix, void *ctx, char *err, size_t errlen)
{
    const price_job *j = ctx;
    char why[WANCP_ERRLEN] = "";
    if (link_price_measure(prefix, j->s->ranks, j->port, j->out, &interrupted, why, sizeof why) != WANCP_OK)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "the links' price: %s", why);
    return WANCP_OK;
}

/* The price in cores of links shaped by profile (an arm's, dilated): P iperf3 streams as
 * the ring's links through the rank namespaces, as the arm's run builds them. */
static int measure_link_price(const scenario *s, const link_profile *profile, int port, link_price *out, char *err,
                              size_t errlen)
{
    price_job j = {.s = s, .port = port, .out = out};
    return in_rank_namespaces(s, profile, price_in, &j, err, errlen);
}

/* The simulator's setup of s's step (links do not matter here). */
static sim_setup setup_of(const scenario *s, const sim_hardware *hw, bool compress)
{
    const model_config c = config_of(s, compress);
    const run_method method = scenario_run_method(s, NULL); /* [train]'s switches */
    /* the bytes the ranks' exchange really moves: the scenario's wire format */
    sim_setup st = {.hw = *hw,
                    .compress = compress,
                    .compress_last = true,
                    .wire_bytes = method.wire == 0 ? 2 : 4,
                    .sync = 'N',
                    .time_scale = 1};
    st.shape = sim_shape_of(&c, s->ranks, s->batch, method.planes);
    st.link = (link_model_config){.nodes = s->ranks, .topology = 0};
    return st;
}

int bench_calibrate(int argc, char **argv)
{
    static const struct option opts[] = {{"set", 1, 0, 's'},  {"steps", 1, 0, 'n'}, {"json", 0, 0, 'j'},
                                         {"path", 1, 0, 'p'}, {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    char *sets[64], out_path[1100] = "";
    const char *path = NULL;
    int nsets = 0, c;
    unsigned long steps = 3;
    bool json = false;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (nsets == 64)
                return cli_usage_error("bench", "more than 64 --set options");
            sets[nsets++] = optarg;
            break;
        case 'n':
            if (cli_parse_ulong("bench", "--steps", optarg, 1, 100, &steps) != 0)
                return 2;
            break;
        case 'o': snprintf(out_path, sizeof out_path, "%s", optarg); break;
        case 'j': json = true; break;
        case 'p':
            if (strcmp(optarg, "namespaces") != 0 && strcmp(optarg, "loopback") != 0)
                return cli_usage_error("bench", "--path '%s': expected namespaces or loopback", optarg);
            path = optarg;
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return cli_usage_error("bench", "calibrate: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("bench", "calibrate takes one scenario file");
    if (out_path[0] == '\0')
        sim_hardware_local_path(out_path, sizeof out_path);
    char err[WANCP_ERRLEN];
    scenario *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cli_report("bench", WANCP_ERR_NOMEM, "out of memory");
    int rc = scenario_load(s, argv[optind], sets, nsets, err, sizeof err);
    if (rc == WANCP_OK && s->ranks > COMM_MAX_RANKS)
        rc = wancp_fail(err, sizeof err, WANCP_ERR_INPUT, "%s: %d ranks", s->path, s->ranks);
    if (rc != WANCP_OK) {
        free(s);
        return cli_report("bench", rc, err);
    }
    shared *res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        scenario_free(s);
        free(s);
        return cli_report("bench", WANCP_ERR_NOMEM, "cannot map shared results");
    }
    memset(res, 0, sizeof *res);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    const int port = 10240 + rand() % 20000; /* below the ephemeral range (32768+) */
    const bool in_namespaces = s->ranks > 1 && (path != NULL ? strcmp(path, "namespaces") == 0 : namespaces_usable());
    if (in_namespaces && geteuid() != 0) {
        scenario_free(s);
        free(s);
        munmap(res, sizeof *res);
        return cli_report("bench", WANCP_ERR_INPUT, "calibrate --path namespaces needs root (network namespaces)");
    }
    const char *where =
        in_namespaces ? "in their own namespaces (unshaped veths, the bridge, the capture)" : "on 127.0.0.1";
    if (!json)
        fprintf(stderr, "bench calibrate: %s, %d ranks %s, %lu timed steps uncompressed and compressed\n", s->name,
                s->ranks, where, steps);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = in_namespaces ? run_in_namespaces(s, port, (int)steps, res, err, sizeof err)
                       : run_ranks(s, NULL, port, (int)steps, VARIANTS, res, err, sizeof err);
    dilation_choice chosen;
    if (rc == WANCP_OK && s->dilation_auto) { /* the links' price at the D `wancp run` would choose here */
        dilation_choose(s, slowest_step(res, 0, s->ranks), &chosen);
        if (!json)
            fprintf(stderr, "bench calibrate: dilation D = %g (%s)\n", chosen.dilation, chosen.why);
    }
    /* The ceiling, alone on the host as bench step measures it; after the ranks, since BLAS
     * and the thread pool started here would not survive into forked ranks. */
    const model_config cfg = config_of(s, false);
    char peak_shape[64] = "";
    const double peak = rc == WANCP_OK ? bench_sgemm_peak(ops_make("cpu", NULL, NULL, 0), &cfg, s->context / s->ranks,
                                                          peak_shape, sizeof peak_shape) *
                                             1e9
                                       : 0;
    /* The shaped links' price at each rate the arms run (after the peak, alone again). */
    priced_rate rates[SIM_MAX_LINK_COSTS];
    const int nrates = in_namespaces && rc == WANCP_OK ? shaped_rates(s, rates, SIM_MAX_LINK_COSTS) : 0;
    for (int k = 0; k < nrates && rc == WANCP_OK; k++) {
        if (!json)
            fprintf(stderr,
                    "bench calibrate: the shaped links' price at %s: %d iperf3 streams through arm %s's links, "
                    "a spinner on every core...\n",
                    rates[k].describe, s->ranks, rates[k].arm->name);
        rc = measure_link_price(s, &rates[k].links, port + 1 + COMM_NCLASSES * s->ranks + 16 * k, &rates[k].price, err,
                                sizeof err);
        const link_price *lp = &rates[k].price;
        rates[k].per_byte_s = lp->payload_bytes_s > 0 ? lp->cores_taken / lp->payload_bytes_s : 0;
    }
    /* Efficiency per class: the simulator's counts over measured seconds, summed over ranks. */
    sim_hardware hw = {.peak_flops = peak,
                       .efficiency = {1, 1, 1},
                       .memory_bytes_s = 1,
                       .act_bytes = 4,
                       .param_bytes = 4,
                       .host = true};
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    hw.cores = online > 0 ? (double)online : 1;
    snprintf(hw.name, sizeof hw.name, "cpu-local");
    double amount[SIM_NCLASSES] = {0}, secs[SIM_NCLASSES] = {0}, step_measured[VARIANTS] = {0};
    double moved[VARIANTS][COMM_MAX_RANKS], byte_s = 0, bytes = 0;
    sim_work work[VARIANTS][COMM_MAX_RANKS];
    for (int v = 0; v < VARIANTS && rc == WANCP_OK; v++) {
        sim_setup st = setup_of(s, &hw, v == 1);
        for (int r = 0; r < s->ranks && rc == WANCP_OK; r++) {
            rc = sim_step_work(&st, v == 1, r, &work[v][r], &moved[v][r], err, sizeof err);
            const rank_times *t = &res->t[v][r];
            const double *cl = t->class_s;
            step_measured[v] += t->step_s / s->ranks;
            if (v == 2) { /* what the exchange adds to a rank's step, per byte it moved */
                byte_s += t->step_s - res->t[0][r].step_s;
                bytes += moved[v][r];
                continue;
            }
            if (v == 1) { /* the codec from the compressed step; the rest from the plain one */
                amount[SIM_CODEC] += work[v][r].amount[SIM_CODEC];
                secs[SIM_CODEC] += t->codec_s;
                continue;
            }
            const double other = fmax(0.0, t->step_s - cl[OPS_TIME_MATMUL] - cl[OPS_TIME_ATTENTION] -
                                               cl[OPS_TIME_ELEMENTWISE] - cl[OPS_TIME_OPTIMIZER] - t->codec_s);
            amount[SIM_MATMUL] += work[v][r].amount[SIM_MATMUL];
            amount[SIM_ATTENTION] += work[v][r].amount[SIM_ATTENTION];
            amount[SIM_MEMORY] += work[v][r].amount[SIM_MEMORY];
            secs[SIM_MATMUL] += cl[OPS_TIME_MATMUL];
            secs[SIM_ATTENTION] += cl[OPS_TIME_ATTENTION];
            secs[SIM_MEMORY] += cl[OPS_TIME_ELEMENTWISE] + cl[OPS_TIME_OPTIMIZER] + other;
        }
    }
    for (int k = 0; k < SIM_NCLASSES && rc == WANCP_OK; k++)
        if (!(secs[k] > 0) || !(amount[k] > 0))
            rc = wancp_fail(err, sizeof err, WANCP_ERR_SYSTEM, "class %d measured no time; nothing to calibrate", k);
    double predicted[VARIANTS] = {0};
    if (rc == WANCP_OK) {
        for (int k = 0; k < SIM_MEMORY; k++)
            hw.efficiency[k] = amount[k] / secs[k] / peak;
        hw.memory_bytes_s = amount[SIM_MEMORY] / secs[SIM_MEMORY];
        hw.byte_cost_s = s->ranks > 1 && bytes > 0 ? fmax(0.0, byte_s / bytes) : 0;
        /* The streams' price per payload byte less what the byte cost already charges the
         * ranks for the same byte: its sender's and its receiver's share, each at the pace of
         * a rank in the calibration (cores / P of a core, at most its threads). */
        const double rank_cores = sim_calibration_cores(hw.cores, s->ranks);
        char prices[900] = "";
        size_t used = 0;
        for (int k = 0; k < nrates; k++) {
            priced_rate *pr = &rates[k];
            sim_link_prices *list = pr->delayed ? &hw.delay_link_cost : &hw.link_cost;
            pr->cost_s = fmax(1e-12, pr->per_byte_s - 2 * hw.byte_cost_s * rank_cores);
            list->cost_s[list->n] = pr->cost_s;
            list->bps[list->n++] = (double)pr->links.rate_bps;
            used += (size_t)snprintf(prices + used, sizeof prices - used,
                                     "\nshaped links at %s (arm %s): %d iperf3 streams at %.1f Mbit/s each took %.3f "
                                     "cores: %.3g ns per payload byte, %.3g ns beyond the byte cost",
                                     pr->describe, pr->arm->name, s->ranks, pr->price.stream_bps / 1e6,
                                     pr->price.cores_taken, pr->per_byte_s * 1e9, pr->cost_s * 1e9);
            if (used >= sizeof prices)
                used = sizeof prices - 1;
        }
        for (int v = 0; v < VARIANTS; v++)
            for (int r = 0; r < s->ranks; r++)
                predicted[v] +=
                    (sim_work_seconds(&work[v][r], &hw) + (v == 2 ? moved[v][r] * hw.byte_cost_s : 0)) / s->ranks;
        char host[256] = "?", comment[4096];
        gethostname(host, sizeof host);
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(comment, sizeof comment,
                 "cpu-local: this host (%.200s, %s), measured by `wancp bench calibrate %.1000s` (wancp %.40s)\n"
                 "%d ranks at once, %d BLAS threads each (%s); sgemm peak %.1f GFLOP/s alone (%s)\n"
                 "per rank and step: matmul %.4f s, attention %.4f s, memory-bound %.4f s, compression %.4f s\n"
                 "compute-only step measured %.4f s uncompressed, %.4f s compressed; with the exchange %s "
                 "%.4f s (byte cost %.3g ns per byte sent or received)%s",
                 host, stamp, s->path, wancp_git_commit, s->ranks, rank_threads(s), ops_cpu_blas_core(), peak / 1e9,
                 peak_shape, secs[SIM_MATMUL] / s->ranks, secs[SIM_ATTENTION] / s->ranks, secs[SIM_MEMORY] / s->ranks,
                 secs[SIM_CODEC] / s->ranks, step_measured[0], step_measured[1],
                 in_namespaces ? "through the rank namespaces" : "on loopback", step_measured[2], hw.byte_cost_s * 1e9,
                 nrates > 0 ? prices : "\nshaped links: not priced");
        rc = sim_hardware_write(&hw, out_path, comment, err, sizeof err);
    }
    if (rc == WANCP_OK && json) {
        json_t *j = json_pack(
            "{s:s, s:s, s:i, s:f, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "scenario", s->name, "profile",
            out_path, "ranks", s->ranks, "sgemm_peak_gflops", peak / 1e9, "sgemm_peak_shape", peak_shape, "matmul",
            hw.efficiency[SIM_MATMUL], "attention", hw.efficiency[SIM_ATTENTION], "codec", hw.efficiency[SIM_CODEC],
            "memory_bytes_s", hw.memory_bytes_s, "step_measured_s", step_measured[0], "step_predicted_s", predicted[0],
            "compressed_step_measured_s", step_measured[1], "compressed_step_predicted_s", predicted[1]);
        json_object_set_new(j, "byte_cost_s", json_real(hw.byte_cost_s));
        json_object_set_new(j, "exchange_step_measured_s", json_real(step_measured[2]));
        json_object_set_new(j, "cores", json_real(hw.cores));
        json_t *lp = json_array();
        for (int k = 0; k < nrates; k++)
            json_array_append_new(lp,
                                  json_pack("{s:s, s:s, s:b, s:f, s:f, s:f, s:f, s:f}", "arm", rates[k].arm->name,
                                            "links", rates[k].describe, "delayed", rates[k].delayed, "rate_bps",
                                            (double)rates[k].links.rate_bps, "cores_taken", rates[k].price.cores_taken,
                                            "payload_bytes_s", rates[k].price.payload_bytes_s, "stream_bps",
                                            rates[k].price.stream_bps, "link_cost_s", rates[k].cost_s));
        json_object_set_new(j, "link_prices", lp);
        cli_print_json(j);
    } else if (rc == WANCP_OK) {
        printf("# wancp bench calibrate %s: %d ranks at once on this host; sgemm peak %.1f GFLOP/s (%s)\n", s->name,
               s->ranks, peak / 1e9, peak_shape);
        printf("# class         seconds/step/rank   work/step/rank        efficiency\n");
        static const char *const NAMES[SIM_NCLASSES] = {"matmul", "attention", "compression", "memory-bound"};
        for (int k = 0; k < SIM_NCLASSES; k++)
            printf("  %-14s %12.4f %16.4g %s %10.4g%s\n", NAMES[k], secs[k] / s->ranks, amount[k] / s->ranks,
                   k == SIM_MEMORY ? "B   " : "FLOP", k == SIM_MEMORY ? hw.memory_bytes_s / 1e9 : hw.efficiency[k],
                   k == SIM_MEMORY ? " GB/s" : " of peak");
        printf("# compute-only step per rank: uncompressed measured %.4f s, model %.4f s; compressed %.4f s, model "
               "%.4f s\n",
               step_measured[0], predicted[0], step_measured[1], predicted[1]);
        printf("# with the exchange %s: %.4f s; byte cost %.3g ns per K/V byte a rank sends or receives\n",
               in_namespaces ? "through the rank namespaces" : "on loopback", step_measured[2], hw.byte_cost_s * 1e9);
        for (int k = 0; k < nrates; k++)
            printf("# shaped links at %s (arm %s): %d iperf3 streams at %.1f Mbit/s each took %.3f of %g cores: "
                   "%.3g ns per payload byte, %.3g ns beyond the byte cost (%s)\n",
                   rates[k].describe, rates[k].arm->name, s->ranks, rates[k].price.stream_bps / 1e6,
                   rates[k].price.cores_taken, hw.cores, rates[k].per_byte_s * 1e9, rates[k].cost_s * 1e9,
                   rates[k].delayed ? "delay_link_cost_s" : "link_cost_s");
        if (nrates == 0)
            printf("# shaped links: not priced (%s); link_cost_s 0\n",
                   in_namespaces ? "the scenario has no rate-shaped arm" : "no namespaces on this path");
        printf("# written: %s\n", out_path);
    }
    for (int k = 0; k < nrates; k++)
        link_profile_free(&rates[k].links);
    munmap(res, sizeof *res);
    scenario_free(s);
    free(s);
    return rc == WANCP_OK ? 0 : cli_report("bench", rc, err);
}
