/* wancp shape check: the shaper's acceptance, measured on this kernel with real peers.
 * For each link model and rate: two rank namespaces shaped at the rate, the capture at
 * the switch, iperf3 from rank 0 to rank 1; then the L2 rate the capture saw against the
 * configured one, iperf3's goodput, and the capture's bytes against iperf3's. Then the
 * delay emulator: round trips by ping, loss and order by iperf3 over UDP. */
#include "../cli.h"

#include "../../core/base/status.h"
#include "../../core/util/buf.h"
#include "../../shaper/capture.h"
#include "../../shaper/profile.h"
#include "../../shaper/topology.h"
#include "../../shaper/units.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp shape check [--model uplink|mesh|both] [--rates LIST] [--seconds N] [--json]\n"
    "\n"
    "Measures the shaper on this kernel, for each link model and rate: two rank namespaces\n"
    "shaped at the rate, iperf3 from rank 0 to rank 1 for N seconds, the capture at the switch.\n"
    "Reports the L2 rate the capture saw (whole seconds, the first and last left out) against\n"
    "the configured rate (target within 1%, floor 3%), iperf3's TCP goodput (at least 0.92 of\n"
    "the rate), the captured payload between what iperf3 received and what it sent (within 2%:\n"
    "a receiver left behind ends with bytes unread), the captured wire bytes against that\n"
    "payload plus headers (within 2%), and kernel drops at the capture (none); then the delay\n"
    "emulator (below). Exit 1 when a floor is missed. Everything it creates is removed at the\n"
    "end, and on Ctrl-C.\n"
    "\n"
    "  --model M      uplink, mesh or both (both)\n"
    "  --rates LIST   comma-separated tc rates (100mbit,300mbit,1gbit)\n"
    "  --seconds N    iperf3 duration per case (4)\n"
    "  --delay T --jitter T --loss P (20ms, 5ms, 2%)  the delay emulator's checks, one way: ping's\n"
    "                 median round trip must add 2 x delay (within 5% or 1 ms) and spread by sqrt(2) x\n"
    "                 jitter (normal; within 20%); iperf3 over UDP must lose P (within 20%) and\n"
    "                 reorder nothing. --no-emulator skips them.\n"
    "  --json         one JSON object on stdout\n"
    "Needs root (network namespaces), iperf3 and ip.\n";

#define MAX_RATES 8
#define PORT 5201
/* Ethernet 14 + IPv4 20 + TCP 32 (timestamps) per segment of at most 1448 payload bytes */
#define HEADER_BYTES 66.0
#define SEGMENT_BYTES 1448.0

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct check_case {
    int model;
    uint64_t rate_bps;
    double l2_bps, goodput_bps;
    double iperf_bytes, sent_bytes, payload_bytes, wire_bytes; /* iperf3's received and sent */
    unsigned long drops;
    double l2_ratio, goodput_ratio, payload_ratio, sent_ratio, wire_ratio;
    bool passed;
    char error[WANCP_ERRLEN];
} check_case;

/* Starts argv inside namespace ns with its output discarded; returns the pid or -1. */
static pid_t spawn_quiet(const char *ns, const char *const *args)
{
    char *argv[16] = {"ip", "netns", "exec", (char *)ns};
    int n = 4;
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *null = freopen("/dev/null", "w", stdout);
        (void)null;
        null = freopen("/dev/null", "w", stderr);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Sums the capture's rows of flow rank 0 -> rank 1 on PORT; the L2 rate from the whole
 * seconds strictly between the first and the last. */
static int read_wire(const char *path, check_case *k, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot open the capture", path);
    char line[512];
    double per_second[4096] = {0};
    int first = -1, last = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long recv = 0, kernel = 0, iface = 0;
        int port_no = 0;
        if (sscanf(line, "# p%d: %lu received by the filter, %lu dropped by the kernel, %lu by the interface", &port_no,
                   &recv, &kernel, &iface) == 4) {
            k->drops += kernel;
            continue;
        }
        long second, src, dst, port, frames;
        double wire, payload;
        if (line[0] == '#' ||
            sscanf(line, "%ld,%ld,%ld,%ld,%ld,%lf,%lf", &second, &src, &dst, &port, &frames, &wire, &payload) != 7)
            continue;
        if (src != 0 || dst != 1 || port != PORT || second < 0 || second >= 4096)
            continue;
        k->wire_bytes += wire;
        k->payload_bytes += payload;
        per_second[second] += wire;
        first = first < 0 || second < first ? (int)second : first;
        last = second > last ? (int)second : last;
    }
    fclose(f);
    if (last - first < 2)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: fewer than 3 seconds of iperf3 traffic captured", path);
    double middle = 0;
    for (int s = first + 1; s < last; s++)
        middle += per_second[s];
    k->l2_bps = 8.0 * middle / (last - first - 1);
    return WANCP_OK;
}

/* Removes prefix's namespaces; failing to is the step's failure unless it failed already. */
static int down_keeping_first_error(const char *prefix, int rc, char *err, size_t errlen)
{
    int removed = 0;
    char down_err[WANCP_ERRLEN];
    int down = topology_down(prefix, &removed, down_err, sizeof down_err);
    if (down != WANCP_OK && rc == WANCP_OK)
        return wancp_fail(err, errlen, down, "%s", down_err);
    return rc;
}

/* One case: up, capture, iperf3, down. The namespaces go whatever happens. */
static int run_case(check_case *k, const char *prefix, int seconds, const char *work, char *err, size_t errlen)
{
    link_profile p = {.rate_bps = k->rate_bps};
    snprintf(p.name, sizeof p.name, "check");
    topology t = {.ranks = 2, .model = k->model, .profile = &p};
    snprintf(t.prefix, sizeof t.prefix, "%s", prefix);
    char r0[64], r1[64], addr1[32], csv[1100], secs[16];
    topology_ns_name(prefix, 0, r0, sizeof r0);
    topology_ns_name(prefix, 1, r1, sizeof r1);
    topology_rank_addr(1, addr1, sizeof addr1);
    snprintf(csv, sizeof csv, "%s/wire.csv", work);
    snprintf(secs, sizeof secs, "%d", seconds);
    int rc = topology_up(&t, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    capture cap;
    bool capturing = false;
    pid_t server = -1;
    bytebuf out = {0};
    if ((rc = capture_start(&cap, prefix, 2, csv, NULL, err, errlen)) == WANCP_OK)
        capturing = true;
    if (rc == WANCP_OK) {
        const char *srv[] = {"iperf3", "-s", "-1", "-B", addr1, "-p", "5201", NULL};
        server = spawn_quiet(r1, srv);
        usleep(500000); /* the server binds */
        char *cli[] = {"ip", "netns", "exec", r0, "iperf3", "-c", addr1, "-p", "5201", "-t", secs, "-J", NULL};
        if (!interrupted)
            rc = cli_run_capture(cli, &out, err, errlen);
        usleep(300000); /* the last frames reach the capture */
    }
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    if (capturing) {
        int stop = capture_stop(&cap, err, errlen);
        rc = rc == WANCP_OK ? stop : rc;
    }
    rc = down_keeping_first_error(prefix, rc, err, errlen);
    if (rc == WANCP_OK && interrupted)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "interrupted");
    if (rc == WANCP_OK) {
        json_error_t jerr;
        json_t *j = json_loadb((const char *)out.data, out.len, 0, &jerr);
        json_t *end = json_object_get(j, "end"), *recv = json_object_get(end, "sum_received");
        if (recv == NULL)
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "iperf3 gave no end.sum_received (%.200s)",
                            j == NULL ? jerr.text : "error in its JSON");
        else {
            k->goodput_bps = json_number_value(json_object_get(recv, "bits_per_second"));
            k->iperf_bytes = json_number_value(json_object_get(recv, "bytes"));
            k->sent_bytes = json_number_value(json_object_get(json_object_get(end, "sum_sent"), "bytes"));
        }
        json_decref(j);
    }
    bytebuf_free(&out);
    if (rc == WANCP_OK)
        rc = read_wire(csv, k, err, errlen);
    unlink(csv);
    return rc;
}

/* ---- the delay emulator: round trips by ping, loss and order by iperf3 over UDP ---- */

/* Round trips from one ping run, in ms. The delay is judged on the median: a user-space
 * relay on a busy two-core host now and then answers a few milliseconds late; those few
 * replies move the mean (seen: 42.5 ms for a 40 ms round trip, standard deviation 3.7),
 * while the median stays with the bulk. The standard deviation is what jitter is judged on. */
typedef struct ping_stats {
    double median_ms, avg_ms, sd_ms;
} ping_stats;

typedef struct emu_check {
    double delay_ms, jitter_ms, loss_percent; /* configured (one way) */
    ping_stats rtt, jitter_rtt;               /* delay and jitter cases */
    double lost_percent, out_of_order;        /* loss case */
    bool delay_ok, jitter_ok, loss_ok;
    const char *mechanism; /* netem or relay, as up chose */
    char error[WANCP_ERRLEN];
} emu_check;

/* Two shaped, emulated ranks at 100 Mbit/s with the given one-way delay, jitter and loss. */
static int emu_up(const char *prefix, uint64_t delay_ns, uint64_t jitter_ns, uint32_t loss_ppm, const char **mechanism,
                  char *err, size_t errlen)
{
    static link_profile p;
    p = (link_profile){.rate_bps = 100000000ull,
                       .delay_ns = delay_ns,
                       .jitter_ns = jitter_ns,
                       .distribution = JITTER_NORMAL,
                       .loss_ppm = loss_ppm};
    snprintf(p.name, sizeof p.name, "check-emulator");
    topology t = {.ranks = 2, .model = TOPOLOGY_UPLINK, .profile = &p};
    snprintf(t.prefix, sizeof t.prefix, "%s", prefix);
    *mechanism = topology_delay_mechanism(&t);
    return topology_up(&t, err, errlen);
}

/* The replies' "time=X ms" values of ping's output, sorted, in times[0..max). */
static int ping_times(const char *out, double *times, int max)
{
    int n = 0;
    for (const char *at = strstr(out, "time="); at != NULL && n < max; at = strstr(at + 5, "time="))
        if (sscanf(at + 5, "%lf", &times[n]) == 1)
            n++;
    qsort(times, (size_t)n, sizeof *times, cli_cmp_double);
    return n;
}

/* ping from rank 0 to rank 1 (after one for ARP), count replies at the interval. */
static int ping_rtt(const char *prefix, int count, const char *interval, ping_stats *st, char *err, size_t errlen)
{
    enum { MAX_PINGS = 1000 };
    char r0[64], addr[32], n[16];
    topology_ns_name(prefix, 0, r0, sizeof r0);
    topology_rank_addr(1, addr, sizeof addr);
    snprintf(n, sizeof n, "%d", count < MAX_PINGS ? count : MAX_PINGS);
    char *warm[] = {"ip", "netns", "exec", r0, "ping", "-c", "1", "-W", "2", addr, NULL};
    char *run[] = {"ip", "netns", "exec", r0, "ping", "-c", n, "-i", (char *)interval, addr, NULL};
    bytebuf out = {0};
    int rc = cli_run_capture(warm, &out, err, errlen);
    bytebuf_free(&out);
    if (rc == WANCP_OK)
        rc = cli_run_capture(run, &out, err, errlen);
    double mn, mx, times[MAX_PINGS];
    const char *text = rc == WANCP_OK && out.data != NULL ? (const char *)out.data : NULL;
    const char *line = text != NULL ? strstr(text, "rtt min/avg/max/mdev = ") : NULL;
    const int replies = text != NULL ? ping_times(text, times, MAX_PINGS) : 0;
    if (rc == WANCP_OK &&
        (line == NULL || replies == 0 ||
         sscanf(line, "rtt min/avg/max/mdev = %lf/%lf/%lf/%lf", &mn, &st->avg_ms, &mx, &st->sd_ms) != 4))
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "ping between the ranks gave no round-trip times");
    if (rc == WANCP_OK)
        st->median_ms = replies % 2 ? times[replies / 2] : 0.5 * (times[replies / 2 - 1] + times[replies / 2]);
    bytebuf_free(&out);
    return rc;
}

/* iperf3 over UDP from rank 0 to rank 1 at 40 Mbit/s for 5 s: lost and reordered. */
static int udp_loss(const char *prefix, double *lost, double *ooo, char *err, size_t errlen)
{
    char r0[64], r1[64], addr[32];
    topology_ns_name(prefix, 0, r0, sizeof r0);
    topology_ns_name(prefix, 1, r1, sizeof r1);
    topology_rank_addr(1, addr, sizeof addr);
    const char *srv[] = {"iperf3", "-s", "-1", "-B", addr, "-p", "5201", NULL};
    pid_t server = spawn_quiet(r1, srv);
    usleep(500000);
    char *cli[] = {"ip", "netns", "exec", r0,   "iperf3", "-c", addr, "-p", "5201",
                   "-u", "-b",    "40M",  "-l", "1400",   "-t", "5",  "-J", NULL};
    bytebuf out = {0};
    int rc = interrupted ? WANCP_ERR_SYSTEM : cli_run_capture(cli, &out, err, errlen);
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    json_t *j = rc == WANCP_OK ? json_loadb((const char *)out.data, out.len, 0, NULL) : NULL;
    json_t *sum = json_object_get(json_object_get(j, "end"), "sum");
    if (rc == WANCP_OK && sum == NULL)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "iperf3 over UDP gave no end.sum");
    if (rc == WANCP_OK) {
        *lost = json_number_value(json_object_get(sum, "lost_percent"));
        *ooo = json_number_value(json_object_get(sum, "out_of_order"));
    }
    json_decref(j);
    bytebuf_free(&out);
    return rc;
}

static int run_emulator(emu_check *e, const char *prefix, char *err, size_t errlen)
{
    const uint64_t delay = (uint64_t)(e->delay_ms * 1e6), jitter = (uint64_t)(e->jitter_ms * 1e6);
    int rc = emu_up(prefix, delay, 0, 0, &e->mechanism, err, errlen);
    if (rc == WANCP_OK)
        rc = ping_rtt(prefix, 20, "0.05", &e->rtt, err, errlen);
    rc = down_keeping_first_error(prefix, rc, err, errlen);
    if (rc == WANCP_OK && !interrupted &&
        (rc = emu_up(prefix, delay, jitter, 0, &e->mechanism, err, errlen)) == WANCP_OK)
        rc = ping_rtt(prefix, 300, "0.02", &e->jitter_rtt, err, errlen);
    rc = down_keeping_first_error(prefix, rc, err, errlen);
    if (rc == WANCP_OK && !interrupted &&
        (rc = emu_up(prefix, 0, 0, (uint32_t)(e->loss_percent * 1e4), &e->mechanism, err, errlen)) == WANCP_OK)
        rc = udp_loss(prefix, &e->lost_percent, &e->out_of_order, err, errlen);
    rc = down_keeping_first_error(prefix, rc, err, errlen);
    if (rc == WANCP_OK && interrupted)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "interrupted");
    /* a round trip crosses the delay twice; two independent jitters add their variances */
    const double want_rtt = 2 * e->delay_ms, want_sd = sqrt(2.0) * e->jitter_ms;
    e->delay_ok = fabs(e->rtt.median_ms - want_rtt) <= fmax(0.05 * want_rtt, 1.0);
    e->jitter_ok = fabs(e->jitter_rtt.sd_ms - want_sd) <= 0.2 * want_sd;
    e->loss_ok = fabs(e->lost_percent - e->loss_percent) <= 0.2 * e->loss_percent && e->out_of_order == 0;
    return rc;
}

static void judge(check_case *k)
{
    const double rate = (double)k->rate_bps;
    k->l2_ratio = k->l2_bps / rate;
    k->goodput_ratio = k->goodput_bps / rate;
    /* The capture sees every byte that crossed the switch: at least what iperf3's receiver
     * read, at most what its sender wrote. The two differ when a starved receiver falls
     * behind and the test ends with bytes unread in its socket (seen: received 2% short of
     * the capture, goodput 0.936 of the rate, while the link ran full). */
    k->payload_ratio = k->iperf_bytes > 0 ? k->payload_bytes / k->iperf_bytes : 0;
    k->sent_ratio = k->sent_bytes > 0 ? k->payload_bytes / k->sent_bytes : 0;
    const double expect = k->payload_bytes * (1 + HEADER_BYTES / SEGMENT_BYTES);
    k->wire_ratio = expect > 0 ? k->wire_bytes / expect : 0;
    k->passed = fabs(k->l2_ratio - 1) <= 0.03 && k->goodput_ratio >= 0.92 && k->payload_ratio >= 0.98 &&
                k->sent_ratio <= 1.02 && fabs(k->wire_ratio - 1) <= 0.02 && k->drops == 0;
}

static int parse_rates(const char *text, uint64_t *rates, int *n)
{
    char buf[256], err[WANCP_ERRLEN];
    snprintf(buf, sizeof buf, "%s", text);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_RATES)
            return cli_usage_error("shape", "--rates: at most %d rates", MAX_RATES);
        if (shaper_parse_rate(tok, &rates[*n], err, sizeof err) != WANCP_OK || rates[*n] == 0)
            return cli_usage_error("shape", "--rates: '%s': %s", tok, rates[*n] == 0 ? "must be above 0" : err);
        (*n)++;
    }
    return *n == 0 ? cli_usage_error("shape", "--rates: no rate given") : 0;
}

int shape_check(int argc, char **argv)
{
    enum { O_MODEL = 256, O_RATES, O_SECONDS, O_JSON, O_DELAY, O_JITTER, O_LOSS, O_NO_EMU };
    static const struct option LONG[] = {
        {"model", 1, 0, O_MODEL},     {"rates", 1, 0, O_RATES},
        {"seconds", 1, 0, O_SECONDS}, {"json", 0, 0, O_JSON},
        {"delay", 1, 0, O_DELAY},     {"jitter", 1, 0, O_JITTER},
        {"loss", 1, 0, O_LOSS},       {"no-emulator", 0, 0, O_NO_EMU},
        {"help", 0, 0, 'h'},          {0, 0, 0, 0},
    };
    emu_check emu = {.delay_ms = 20, .jitter_ms = 5, .loss_percent = 2};
    int with_emulator = 1;
    int models[2] = {TOPOLOGY_UPLINK, TOPOLOGY_MESH}, nmodels = 2, json = 0, nrates = 0;
    uint64_t rates[MAX_RATES];
    unsigned long seconds = 4;
    const char *rate_text = "100mbit,300mbit,1gbit";
    optind = 1;
    opterr = 0;
    for (int opt; (opt = getopt_long(argc, argv, ":h", LONG, NULL)) != -1;) {
        switch (opt) {
        case O_MODEL:
            if (strcmp(optarg, "both") == 0)
                nmodels = 2;
            else if (strcmp(optarg, "uplink") == 0 || strcmp(optarg, "mesh") == 0)
                nmodels = 1, models[0] = strcmp(optarg, "mesh") == 0 ? TOPOLOGY_MESH : TOPOLOGY_UPLINK;
            else
                return cli_usage_error("shape", "--model '%s': expected uplink, mesh or both", optarg);
            break;
        case O_RATES: rate_text = optarg; break;
        case O_SECONDS:
            if (cli_parse_ulong("shape", "--seconds", optarg, 3, 600, &seconds) != 0)
                return 2;
            break;
        case O_JSON: json = 1; break;
        case O_NO_EMU: with_emulator = 0; break;
        case O_DELAY:
        case O_JITTER: {
            uint64_t ns;
            char terr[WANCP_ERRLEN];
            if (shaper_parse_time(optarg, &ns, terr, sizeof terr) != WANCP_OK || ns < 1000000 || ns > 1000000000)
                return cli_usage_error("shape", "%s '%s': a time from 1ms to 1s",
                                       opt == O_DELAY ? "--delay" : "--jitter", optarg);
            *(opt == O_DELAY ? &emu.delay_ms : &emu.jitter_ms) = (double)ns / 1e6;
            break;
        }
        case O_LOSS: {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || strcmp(end, "%") != 0 || !(v > 0 && v <= 50))
                return cli_usage_error("shape", "--loss '%s': a percentage above 0 and at most 50, such as 2%%",
                                       optarg);
            emu.loss_percent = v;
            break;
        }
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("shape", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("shape", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("shape", "check: unexpected argument '%s'", argv[optind]);
    int status = parse_rates(rate_text, rates, &nrates);
    if (status != 0)
        return status;
    if (geteuid() != 0)
        return cli_report("shape", WANCP_ERR_INPUT, "check needs root (network namespaces)");

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char work[] = "/tmp/wancp-check-XXXXXX", prefix[24];
    if (mkdtemp(work) == NULL)
        return cli_report("shape", WANCP_ERR_SYSTEM, "cannot create a folder in /tmp");
    snprintf(prefix, sizeof prefix, "chk%ld", (long)getpid() % 100000);
    check_case cases[2 * MAX_RATES];
    int ncases = 0, failed = 0;
    for (int mi = 0; mi < nmodels && !interrupted; mi++)
        for (int ri = 0; ri < nrates && !interrupted; ri++) {
            check_case *k = &cases[ncases++];
            *k = (check_case){.model = models[mi], .rate_bps = rates[ri]};
            if (!json)
                fprintf(stderr, "shape check: %s model at %.0f Mbit/s, %lu s of iperf3...\n",
                        k->model == TOPOLOGY_MESH ? "mesh" : "uplink", (double)k->rate_bps / 1e6, seconds);
            if (run_case(k, prefix, (int)seconds, work, k->error, sizeof k->error) == WANCP_OK)
                judge(k);
            failed += !k->passed;
        }
    if (with_emulator && !interrupted) {
        if (!json)
            fprintf(stderr, "shape check: the delay emulator (delay %g ms, jitter %g ms, loss %g%%)...\n", emu.delay_ms,
                    emu.jitter_ms, emu.loss_percent);
        if (run_emulator(&emu, prefix, emu.error, sizeof emu.error) != WANCP_OK)
            emu.delay_ok = emu.jitter_ok = emu.loss_ok = false;
        failed += !emu.delay_ok + !emu.jitter_ok + !emu.loss_ok;
    }
    rmdir(work);
    if (interrupted) {
        fprintf(stderr, "wancp shape check: interrupted; everything it created is removed\n");
        return 1;
    }
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < ncases; i++) {
            const check_case *k = &cases[i];
            json_t *o =
                json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b}", "model",
                          k->model == TOPOLOGY_MESH ? "mesh" : "uplink", "rate_bps", (double)k->rate_bps, "l2_bps",
                          k->l2_bps, "l2_ratio", k->l2_ratio, "goodput_bps", k->goodput_bps, "goodput_ratio",
                          k->goodput_ratio, "payload_ratio", k->payload_ratio, "sent_ratio", k->sent_ratio,
                          "wire_ratio", k->wire_ratio, "kernel_drops", (json_int_t)k->drops, "passed", k->passed);
            if (k->error[0])
                json_object_set_new(o, "error", json_string(k->error));
            json_array_append_new(arr, o);
        }
        json_t *top = json_pack("{s:s, s:I, s:o, s:b}", "check", "shape", "seconds", (json_int_t)seconds, "cases", arr,
                                "passed", failed == 0);
        if (with_emulator) {
            json_t *e =
                json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:b, s:b, s:b}", "delay_ms", emu.delay_ms,
                          "jitter_ms", emu.jitter_ms, "loss_percent", emu.loss_percent, "rtt_median_ms",
                          emu.rtt.median_ms, "rtt_avg_ms", emu.rtt.avg_ms, "jitter_rtt_avg_ms", emu.jitter_rtt.avg_ms,
                          "jitter_rtt_sd_ms", emu.jitter_rtt.sd_ms, "expected_rtt_sd_ms", sqrt(2.0) * emu.jitter_ms,
                          "lost_percent", emu.lost_percent, "out_of_order", emu.out_of_order, "delay_ok", emu.delay_ok,
                          "jitter_ok", emu.jitter_ok, "loss_ok", emu.loss_ok);
            json_object_set_new(e, "mechanism", json_string(emu.mechanism != NULL ? emu.mechanism : "none"));
            if (emu.error[0])
                json_object_set_new(e, "error", json_string(emu.error));
            json_object_set_new(top, "emulator", e);
        }
        cli_print_json(top);
    } else {
        printf("%-7s %9s %9s %8s %11s %8s %8s %8s %8s %6s  %s\n", "# model", "rate", "L2 Mbit/s", "L2/rate", "goodput",
               "gp/rate", "payload", "/sent", "wire", "drops", "verdict");
        for (int i = 0; i < ncases; i++) {
            const check_case *k = &cases[i];
            if (k->error[0]) {
                printf("%-7s %9.0f  failed: %s\n", k->model == TOPOLOGY_MESH ? "mesh" : "uplink",
                       (double)k->rate_bps / 1e6, k->error);
                continue;
            }
            printf("%-7s %9.0f %9.1f %8.4f %11.1f %8.4f %8.4f %8.4f %8.4f %6lu  %s\n",
                   k->model == TOPOLOGY_MESH ? "mesh" : "uplink", (double)k->rate_bps / 1e6, k->l2_bps / 1e6,
                   k->l2_ratio, k->goodput_bps / 1e6, k->goodput_ratio, k->payload_ratio, k->sent_ratio, k->wire_ratio,
                   k->drops,
                   k->passed ? (fabs(k->l2_ratio - 1) <= 0.01 ? "ok (within 1%)" : "ok (within 3%)") : "FAILED");
        }
        printf("# rates in Mbit/s; payload: captured TCP payload / the bytes iperf3 received (>= 0.98), /sent: / "
               "the bytes it sent (<= 1.02); wire: captured frames / (captured payload + %g B per %g B segment)\n",
               HEADER_BYTES, SEGMENT_BYTES);
        if (with_emulator && emu.error[0])
            printf("emulator: failed: %s\n", emu.error);
        else if (with_emulator)
            printf("emulator (%s): RTT %.2f ms (median) for a one-way delay of %g ms (%s); with normal jitter %g ms, "
                   "RTT standard deviation %.2f ms, expected %.2f (%s); loss %g%%: %.2f%% lost, %g reordered (%s)\n",
                   emu.mechanism != NULL ? emu.mechanism : "none", emu.rtt.median_ms, emu.delay_ms,
                   emu.delay_ok ? "ok" : "FAILED", emu.jitter_ms, emu.jitter_rtt.sd_ms, sqrt(2.0) * emu.jitter_ms,
                   emu.jitter_ok ? "ok" : "FAILED", emu.loss_percent, emu.lost_percent, emu.out_of_order,
                   emu.loss_ok ? "ok" : "FAILED");
    }
    return failed == 0 ? 0 : 1;
}
