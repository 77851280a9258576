/* wancp bench comm: collectives over P local ranks in the style of nccl-tests, against
 * iperf3 between the same endpoints in the same run: on loopback, or with every rank in
 * its own network namespace behind (optionally shaped) links, as `wancp run` places them. */
#include "../cli.h"
#include "../ranks.h"
#include "iperf3_ring.h"

#include "../../core/comm/comm.h"
#include "../../core/cp/cp_attention.h"
#include "../../core/base/status.h"
#include "../../core/util/rng.h"
#include "../../shaper/profile.h"
#include "../../shaper/topology.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] = "Usage: wancp bench comm [--ranks P] [--max-bytes N] [--iters N] [--cp-seq N]\n"
                            "                        [--path loopback|namespaces] [--profile LINK.ini] [--json]\n"
                            "\n"
                            "All-gather (ring), all-reduce (ring) and reduce-scatter (ring) over P ranks, sizes\n"
                            "from 4 KiB to --max-bytes (default 64 MiB) by x4. Where the bytes go (--path):\n"
                            "  loopback    every rank on 127.0.0.1 (the default): the \"link\" is this host's CPU\n"
                            "  namespaces  every rank in its own network namespace on a veth to a bridge, as\n"
                            "              `wancp run` places them (root); --profile shapes each rank's link (uplink\n"
                            "              model) with a link profile such as scenarios/profiles/wan-300m-rate.ini,\n"
                            "              delay included; without it the veths are unshaped. Everything created is\n"
                            "              removed at the end, on Ctrl-C, and by `wancp shape down --all`.\n"
                            "As nccl-tests:\n"
                            "  size   all-gather: output bytes (P x per rank); all-reduce: data bytes;\n"
                            "         reduce-scatter: input bytes (P x per rank)\n"
                            "  time   median over --iters (default 5) of the slowest rank's time\n"
                            "  algbw  size / time\n"
                            "  busbw  algbw x (P-1)/P for all-gather and reduce-scatter, x 2(P-1)/P for all-reduce:\n"
                            "         the rate each link carried, comparable across P\n"
                            "The ceiling: P iperf3 streams at once, rank r to rank r+1 between the ranks' own\n"
                            "addresses as the ring's links are (3 s each, the first second, TCP's ramp, left out);\n"
                            "per-link ceiling = their mean rate. ratio_min is the smallest busbw / ceiling over sizes\n"
                            ">= 4 MiB.\n"
                            "\n"
                            "Then one context-parallel forward and backward (2 layers, dim 256, --cp-seq tokens, 4096\n"
                            "by default) is timed three ways on the same ranks: whole; compute alone (exchange\n"
                            "skipped); exchange alone (the same messages, no compute). overlap fraction =\n"
                            "(compute + exchange - whole) / min(compute, exchange): 1 when the smaller one is\n"
                            "hidden entirely, 0 when nothing overlaps (above 1: the whole ran faster than compute\n"
                            "alone, within timing noise).\n";

enum { OP_ALLGATHER, OP_ALLREDUCE, OP_REDUCE_SCATTER, NOPS };
static const char *const OP_NAMES[NOPS] = {"all_gather", "all_reduce", "reduce_scatter"};

#define MAX_SIZES 16

typedef struct results {
    int nsizes;
    size_t sizes[MAX_SIZES];
    double seconds[NOPS][MAX_SIZES]; /* median over iterations of the slowest rank */
    int cp_seq;
    double cp_step_s, cp_compute_s, cp_comm_s;
    int failed;
    char error[512];
} results;

/* The slowest rank's time for fn, median of 3 after a warm-up. */
typedef int timed_fn(void *ctx, char *err, size_t errlen);

static int time_slowest(comm *c, timed_fn *fn, void *ctx, double *out, char *err, size_t errlen)
{
    double times[3];
    for (int it = -1; it < 3; it++) {
        int rc = comm_barrier(c, err, errlen);
        double t0 = cli_now();
        if (rc == WANCP_OK)
            rc = fn(ctx, err, errlen);
        float t = (float)(cli_now() - t0), all[COMM_MAX_RANKS];
        if (rc == WANCP_OK)
            rc = comm_allgather(c, COMM_CONTROL, &t, all, sizeof t, COMM_DIRECT, err, errlen);
        if (rc != WANCP_OK)
            return rc;
        double worst = 0;
        for (int r = 0; r < comm_size(c); r++)
            worst = fmax(worst, all[r]);
        if (it >= 0)
            times[it] = worst;
    }
    qsort(times, 3, sizeof *times, cli_cmp_double);
    *out = times[1];
    return WANCP_OK;
}

typedef struct cp_bench {
    model m;
    cp_attention cp;
    uint16_t *in, *tg;
} cp_bench;

static int cp_step(void *ctx, char *err, size_t errlen)
{
    cp_bench *b = ctx;
    model_zero_grads(&b->m);
    if (isnan(model_step(&b->m, b->in, b->tg, true)))
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", b->cp.error);
    return WANCP_OK;
}

static int cp_exchange(void *ctx, char *err, size_t errlen)
{
    cp_bench *b = ctx;
    return cp_attention_exchange_only(&b->cp, &b->m, err, errlen);
}

/* Whole step, compute alone, exchange alone, for the overlap fraction. */
static int cp_overlap(comm *c, results *out, char *err, size_t errlen)
{
    const int P = comm_size(c);
    model_config cfg = model_config_default();
    cfg.n_layers = 2;
    cfg.dim = 256;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 4;
    cfg.ffn_dim = 256;
    cfg.vocab = 256;
    cfg.context = out->cp_seq;
    cfg.attn_block = 64;
    cp_bench b = {0};
    cp_layout layout = {.kind = CP_ZIGZAG, .ranks = P, .chunk = out->cp_seq / (2 * P)};
    const ops_options one_thread = {.cpu_threads = 1}; /* ranks share the cores already */
    int rc = model_init(&b.m, &cfg, ops_make("cpu", &one_thread, err, errlen), 1, 2 * layout.chunk, 1, err, errlen);
    if (rc == WANCP_OK)
        rc = cp_attention_init(&b.cp, c, &layout, NULL, &b.m, err, errlen);
    b.in = calloc((size_t)b.m.seq, sizeof *b.in);
    b.tg = calloc((size_t)b.m.seq, sizeof *b.tg);
    if (rc == WANCP_OK && (b.in == NULL || b.tg == NULL))
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < b.m.seq && rc == WANCP_OK; i++)
        b.in[i] = (uint16_t)(i * 7 % 256), b.tg[i] = (uint16_t)(i * 11 % 256);
    if (rc == WANCP_OK)
        rc = time_slowest(c, cp_step, &b, &out->cp_step_s, err, errlen);
    b.cp.exchange = false;
    if (rc == WANCP_OK)
        rc = time_slowest(c, cp_step, &b, &out->cp_compute_s, err, errlen);
    b.cp.exchange = true;
    if (rc == WANCP_OK)
        rc = time_slowest(c, cp_exchange, &b, &out->cp_comm_s, err, errlen);
    free(b.in);
    free(b.tg);
    cp_attention_free(&b.cp);
    model_free(&b.m);
    return rc;
}

/* Where the ranks run: prefix names their namespaces (NULL: loopback). */
typedef struct bench_where {
    const char *prefix;
    int ranks, port, iters;
    results *res;
} bench_where;

/* Rank r's address: its namespace's, or loopback's. */
static void rank_addr(const bench_where *w, int rank, char *buf, size_t len)
{
    if (w->prefix != NULL)
        topology_rank_addr(rank, buf, len);
    else
        snprintf(buf, len, "127.0.0.1");
}

/* One rank's part: every op and size, timing the slowest rank via an all-reduce of times. */
static int rank_main(int rank, void *ctx)
{
    const bench_where *w = ctx;
    const int ranks = w->ranks, iters = w->iters;
    results *out = w->res;
    comm_options o = {
        .rank = rank, .world = ranks, .master_port = w->port, .job_id = (uint64_t)w->port, .timeout_ms = 60000};
    rank_addr(w, 0, o.master_addr, sizeof o.master_addr);
    char err[WANCP_ERRLEN];
    comm *c = NULL;
    int rc = w->prefix != NULL ? topology_enter(w->prefix, rank, err, sizeof err) : WANCP_OK;
    if (rc == WANCP_OK)
        rc = comm_open(&c, &o, err, sizeof err);
    size_t max = out->sizes[out->nsizes - 1];
    float *a = malloc(max + 64), *b = malloc(max + 64);
    if (rc == WANCP_OK && (a == NULL || b == NULL))
        rc = wancp_fail(err, sizeof err, WANCP_ERR_NOMEM, "out of memory for %zu bytes", max);
    if (rc == WANCP_OK)
        memset(a, 0, max), memset(b, 0, max);
    for (int op = 0; op < NOPS && rc == WANCP_OK; op++) {
        if (rank == 0)
            fprintf(stderr, "bench comm: %s, %d sizes...\n", OP_NAMES[op], out->nsizes);
        for (int s = 0; s < out->nsizes && rc == WANCP_OK; s++) {
            size_t size = out->sizes[s], per_rank = size / (size_t)ranks;
            double times[64];
            for (int it = -1; it < iters && rc == WANCP_OK; it++) { /* it = -1 warms up */
                rc = comm_barrier(c, err, sizeof err);
                double t0 = cli_now();
                if (rc == WANCP_OK && op == OP_ALLGATHER)
                    rc = comm_allgather(c, COMM_KV_FORWARD, a, b, per_rank, COMM_RING, err, sizeof err);
                else if (rc == WANCP_OK && op == OP_ALLREDUCE)
                    rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, a, size / sizeof(float), err, sizeof err);
                else if (rc == WANCP_OK)
                    rc = comm_reduce_scatter_sum(c, COMM_KV_BACKWARD, a, b, per_rank / sizeof(float), err, sizeof err);
                float t = (float)(cli_now() - t0), slowest[COMM_MAX_RANKS];
                if (rc == WANCP_OK)
                    rc = comm_allgather(c, COMM_CONTROL, &t, slowest, sizeof t, COMM_DIRECT, err, sizeof err);
                if (rc == WANCP_OK && it >= 0) {
                    double worst = 0;
                    for (int r = 0; r < ranks; r++)
                        worst = fmax(worst, slowest[r]);
                    times[it] = worst;
                }
            }
            if (rc == WANCP_OK && rank == 0) {
                qsort(times, (size_t)iters, sizeof *times, cli_cmp_double);
                out->seconds[op][s] = times[iters / 2];
            }
        }
    }
    if (rc == WANCP_OK && out->cp_seq > 0) {
        if (rank == 0)
            fprintf(stderr, "bench comm: a CP forward and backward of %d tokens, three ways...\n", out->cp_seq);
        rc = cp_overlap(c, out, err, sizeof err);
    }
    if (rc != WANCP_OK) {
        out->failed = 1;
        snprintf(out->error, sizeof out->error, "rank %d: %.450s", rank, err);
    }
    free(a);
    free(b);
    comm_close(c);
    return rc == WANCP_OK ? 0 : 1;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The ranks, then the ceiling, on w's path; why filled on failure. */
static int measure(const bench_where *w, double *ceiling_bps, char *why, size_t why_len)
{
    const int failed = ranks_fork(w->ranks, rank_main, (void *)w, &interrupted);
    if (interrupted)
        return snprintf(why, why_len, "interrupted; everything it created is removed"), WANCP_ERR_SYSTEM;
    if (failed || w->res->failed)
        return snprintf(why, why_len, "%s", w->res->failed ? w->res->error : "a rank failed"), WANCP_ERR_SYSTEM;
    *ceiling_bps =
        iperf3_ring(w->prefix, w->ranks, w->port + 2 + COMM_NCLASSES * w->ranks, 3, 1, &interrupted, why, why_len);
    if (interrupted)
        return snprintf(why, why_len, "interrupted; everything it created is removed"), WANCP_ERR_SYSTEM;
    return *ceiling_bps > 0 ? WANCP_OK : WANCP_ERR_SYSTEM;
}

/* The rank namespaces (shaped by profile, or not) around measure(); they go whatever happens. */
static int measure_in_namespaces(bench_where *w, const link_profile *profile, double *ceiling_bps, char *why,
                                 size_t why_len)
{
    topology t = {.ranks = w->ranks, .model = TOPOLOGY_UPLINK, .profile = profile};
    snprintf(t.prefix, sizeof t.prefix, "%s%ld", TOPOLOGY_BENCH_PREFIX, (long)getpid());
    w->prefix = t.prefix;
    int rc = topology_up(&t, why, why_len);
    if (rc == WANCP_OK)
        rc = measure(w, ceiling_bps, why, why_len);
    int removed = 0;
    char other[WANCP_ERRLEN];
    if (topology_down(t.prefix, &removed, other, sizeof other) != WANCP_OK && rc == WANCP_OK)
        rc = (snprintf(why, why_len, "%s", other), WANCP_ERR_SYSTEM);
    w->prefix = NULL; /* t goes with this frame */
    return rc;
}

int bench_comm(int argc, char **argv)
{
    enum { A_RANKS = 256, A_MAX, A_ITERS, A_JSON, A_CP_SEQ, A_PATH, A_PROFILE };
    static const struct option LONG[] = {
        {"ranks", 1, 0, A_RANKS},     {"max-bytes", 1, 0, A_MAX}, {"iters", 1, 0, A_ITERS},
        {"json", 0, 0, A_JSON},       {"cp-seq", 1, 0, A_CP_SEQ}, {"path", 1, 0, A_PATH},
        {"profile", 1, 0, A_PROFILE}, {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    unsigned long ranks = 4, max_bytes = 64ul << 20, iters = 5, cp_seq = 4096;
    const char *path = NULL, *profile_path = NULL;
    int json = 0;
    optind = 1;
    opterr = 0;
    for (int opt, li = -1; (opt = getopt_long(argc, argv, ":h", LONG, &li)) != -1; li = -1) {
        int bad = 0;
        switch (opt) {
        case A_RANKS: bad = cli_parse_ulong("bench", "--ranks", optarg, 2, 64, &ranks); break;
        case A_MAX: bad = cli_parse_ulong("bench", "--max-bytes", optarg, 4096, 1ul << 30, &max_bytes); break;
        case A_ITERS: bad = cli_parse_ulong("bench", "--iters", optarg, 1, 64, &iters); break;
        case A_JSON: json = 1; break;
        case A_CP_SEQ: bad = cli_parse_ulong("bench", "--cp-seq", optarg, 0, 1ul << 20, &cp_seq); break;
        case A_PATH:
            if (strcmp(optarg, "loopback") != 0 && strcmp(optarg, "namespaces") != 0)
                return cli_usage_error("bench", "--path '%s': expected loopback or namespaces", optarg);
            path = optarg;
            break;
        case A_PROFILE: profile_path = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("bench", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (cp_seq > 0 && cp_seq % (2 * ranks * 64) != 0)
        return cli_usage_error("bench", "--cp-seq %lu must be a multiple of 2 x ranks x 64 (0 skips the CP step)",
                               cp_seq);
    if (ranks > TOPOLOGY_MAX_RANKS)
        return cli_usage_error("bench", "--ranks %lu: at most %d", ranks, TOPOLOGY_MAX_RANKS);
    const bool in_namespaces = profile_path != NULL || (path != NULL && strcmp(path, "namespaces") == 0);
    if (profile_path != NULL && path != NULL && strcmp(path, "loopback") == 0)
        return cli_usage_error("bench", "--profile shapes the rank namespaces' links: it needs --path namespaces");
    link_profile profile;
    char err[WANCP_ERRLEN];
    if (profile_path != NULL && link_profile_load(&profile, profile_path, err, sizeof err) != WANCP_OK)
        return cli_report("bench", WANCP_ERR_INPUT, err);
    if (in_namespaces && geteuid() != 0) {
        if (profile_path != NULL)
            link_profile_free(&profile);
        return cli_report("bench", WANCP_ERR_INPUT, "bench comm --path namespaces needs root (network namespaces)");
    }
    results *res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        if (profile_path != NULL)
            link_profile_free(&profile);
        return cli_report("bench", WANCP_ERR_NOMEM, "cannot map shared results");
    }
    memset(res, 0, sizeof *res);
    res->cp_seq = (int)cp_seq;
    for (size_t s = 4096; s <= max_bytes && res->nsizes < MAX_SIZES; s *= 4)
        res->sizes[res->nsizes++] = s / (ranks * 4) * ranks * 4; /* whole floats per rank */
    srand((unsigned)getpid());
    bench_where w = {.ranks = (int)ranks,
                     .port = 10240 + rand() % 20000, /* below the ephemeral range */
                     .iters = (int)iters,
                     .res = res};
    char link[160] = "loopback";
    if (in_namespaces && profile_path != NULL)
        link_profile_describe(&profile, link, sizeof link);
    else if (in_namespaces)
        snprintf(link, sizeof link, "unshaped veths");
    fprintf(stderr, "bench comm: %lu ranks %s (%s), ports %d..%d\n", ranks,
            in_namespaces ? "in their own namespaces" : "on 127.0.0.1", link, w.port,
            w.port + 1 + COMM_NCLASSES * (int)ranks + (int)ranks);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double ceiling_bps = 0;
    char why[600] = "";
    int rc = in_namespaces
                 ? measure_in_namespaces(&w, profile_path != NULL ? &profile : NULL, &ceiling_bps, why, sizeof why)
                 : measure(&w, &ceiling_bps, why, sizeof why);
    if (profile_path != NULL)
        link_profile_free(&profile);
    if (rc != WANCP_OK) {
        munmap(res, sizeof *res);
        return interrupted ? (cli_report("bench", WANCP_ERR_SYSTEM, why), 130) : cli_report("bench", rc, why);
    }
    const double P = (double)ranks, factor[NOPS] = {(P - 1) / P, 2 * (P - 1) / P, (P - 1) / P};
    double ratio_min = INFINITY;
    json_t *rows = json_array();
    if (!json) {
        printf("# wancp bench comm: %lu ranks %s, %s; iperf3 ceiling %.3f Gbit/s per link (%lu streams at once)\n",
               ranks, in_namespaces ? "in their own namespaces" : "on loopback", link, ceiling_bps / 1e9, ranks);
        printf("# busbw = algbw x (P-1)/P (all_gather, reduce_scatter), x 2(P-1)/P (all_reduce)\n");
        printf("# %-14s %12s %12s %12s %12s %8s\n", "op", "size(B)", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "ratio");
    }
    for (int op = 0; op < NOPS; op++)
        for (int s = 0; s < res->nsizes; s++) {
            double t = res->seconds[op][s], algbw = (double)res->sizes[s] / t / 1e9, busbw = algbw * factor[op];
            double ratio = busbw * 8e9 / ceiling_bps;
            if (res->sizes[s] >= (4u << 20))
                ratio_min = fmin(ratio_min, ratio);
            if (!json)
                printf("  %-14s %12zu %12.1f %12.4f %12.4f %8.3f\n", OP_NAMES[op], res->sizes[s], t * 1e6, algbw, busbw,
                       ratio);
            json_array_append_new(rows, json_pack("{s:s, s:I, s:f, s:f, s:f, s:f}", "op", OP_NAMES[op], "bytes",
                                                  (json_int_t)res->sizes[s], "time_us", t * 1e6, "algbw_gbs", algbw,
                                                  "busbw_gbs", busbw, "ratio", ratio));
        }
    if (!isfinite(ratio_min))
        ratio_min = 0;
    double overlap = NAN;
    if (res->cp_seq > 0)
        overlap = (res->cp_compute_s + res->cp_comm_s - res->cp_step_s) / fmin(res->cp_compute_s, res->cp_comm_s);
    if (json) {
        json_t *o =
            json_pack("{s:s, s:i, s:s, s:s, s:f, s:s, s:o, s:f}", "bench", "comm", "ranks", (int)ranks, "path",
                      in_namespaces ? "namespaces" : "loopback", "link", link, "iperf3_gbit_per_link",
                      ceiling_bps / 1e9, "busbw_factor", "all_gather, reduce_scatter: (P-1)/P; all_reduce: 2(P-1)/P",
                      "rows", rows, "ratio_min", ratio_min);
        if (o != NULL && res->cp_seq > 0) {
            json_object_set_new(o, "cp_seq", json_integer(res->cp_seq));
            json_object_set_new(o, "cp_step_ms", json_real(res->cp_step_s * 1e3));
            json_object_set_new(o, "cp_compute_ms", json_real(res->cp_compute_s * 1e3));
            json_object_set_new(o, "cp_exchange_ms", json_real(res->cp_comm_s * 1e3));
            json_object_set_new(o, "overlap_fraction", json_real(overlap));
        }
        cli_print_json(o);
    } else {
        printf("# ratio_min (busbw / iperf3, sizes >= 4 MiB): %.3f\n", ratio_min);
        if (res->cp_seq > 0)
            printf("# CP forward+backward, %d tokens over %lu ranks: whole %.1f ms, compute alone %.1f ms, exchange "
                   "alone %.1f ms; overlap fraction %.2f\n",
                   res->cp_seq, ranks, res->cp_step_s * 1e3, res->cp_compute_s * 1e3, res->cp_comm_s * 1e3, overlap);
        json_decref(rows);
    }
    munmap(res, sizeof *res);
    return 0;
}
