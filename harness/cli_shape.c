/* wancp shape: bring the emulated network of P ranks up and down by hand. */
#include "cli.h"

#include "../core/base/status.h"
#include "../shaper/capture.h"
#include "../shaper/profile.h"
#include "../shaper/relay.h"
#include "../shaper/topology.h"

#include <getopt.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp shape up PROFILE|none --ranks P [--model uplink|mesh] [--prefix NAME] [--ignore-delay]\n"
    "                       [--delay-mechanism auto|relay|netem] [--straggler RANK:K] [--dry-run]\n"
    "       wancp shape down --prefix NAME | --all\n"
    "       wancp shape show [--prefix NAME]\n"
    "       wancp shape capture --prefix NAME --ranks P -o WIRE.csv [--seconds N] [--pcap DIR]\n"
    "       wancp shape check [--model uplink|mesh|both] [--rates LIST] [--seconds N] [--json]\n"
    "       wancp shape relay --in DEV --out DEV [--delay-ns N] [--jitter-ns N] [--distribution D]\n"
    "                         [--loss-ppm N] [--queue-bytes N] [--seed N]\n"
    "\n"
    "  up     P rank namespaces wancp-NAME-r0.. (198.18.0.1.., no route out) and a switch\n"
    "         namespace wancp-NAME-sw with a bridge; each rank's link shaped up and down with\n"
    "         htb at the profile's rate (uplink model: a rank's flows share its link; mesh:\n"
    "         every ordered pair of ranks has its own link at the rate). 'none': unshaped.\n"
    "         --dry-run prints the exact ip and tc commands instead (a runnable script).\n"
    "  down   removes the namespaces of NAME, and every link, qdisc and process in them;\n"
    "         --all removes every wancp-* namespace (after a crash).\n"
    "  show   the namespaces and their qdisc counters.\n"
    "  capture  bytes on the wire at the switch ports, per second and (source rank, destination\n"
    "         rank, TCP port), into WIRE.csv, for N seconds or until Ctrl-C; --pcap DIR also\n"
    "         writes DIR/pK.pcap for Wireshark.\n"
    "  check  measures the shaper's rates on this kernel against iperf3 and the capture\n"
    "         (wancp shape check --help).\n"
    "  relay  the user-space delay emulator between two interfaces of this namespace, until\n"
    "         Ctrl-C (up starts one per rank in the switch namespace when a profile has delay,\n"
    "         jitter or loss; --dry-run prints these lines). D: 0 uniform, 1 normal, 2 pareto,\n"
    "         3 paretonormal.\n"
    "\n"
    "  --prefix NAME   1-16 of a-z0-9 (default: wancp's process id)\n"
    "  --ignore-delay  shape the rate alone of a profile that also has delay, jitter or loss\n"
    "                  (without it they come from netem where the kernel has it, else the relay)\n"
    "  --delay-mechanism  auto (netem when /proc/config.gz says the kernel has it, else the\n"
    "                  user-space relay), relay or netem; up prints the one chosen\n"
    "  --straggler RANK:K  RANK's links (up and down; in the mesh every pair of them) at the\n"
    "                  profile's rate / K: one slow node, as SIMULATION.md's V5\n"
    "Needs root (network namespaces).\n";

int cli_shape(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("shape", "missing action: up, down, show, capture or check");
    const char *action = argv[1];
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(action, "check") == 0)
        return shape_check(argc - 1, argv + 1);
    if (strcmp(action, "relay") == 0)
        return shape_relay(argc - 1, argv + 1);
    enum { O_RANKS = 256, O_PREFIX, O_IGNORE, O_DRY, O_ALL, O_SECONDS, O_PCAP, O_MODEL, O_MECH, O_STRAGGLER };
    static const struct option LONG[] = {
        {"ranks", 1, 0, O_RANKS},
        {"prefix", 1, 0, O_PREFIX},
        {"ignore-delay", 0, 0, O_IGNORE},
        {"dry-run", 0, 0, O_DRY},
        {"all", 0, 0, O_ALL},
        {"seconds", 1, 0, O_SECONDS},
        {"pcap", 1, 0, O_PCAP},
        {"output", 1, 0, 'o'},
        {"model", 1, 0, O_MODEL},
        {"delay-mechanism", 1, 0, O_MECH},
        {"straggler", 1, 0, O_STRAGGLER},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *pcap_dir = NULL;
    unsigned long seconds = 0;
    topology t = {.ranks = 0};
    snprintf(t.prefix, sizeof t.prefix, "p%ld", (long)getpid());
    int dry = 0, all = 0, have_prefix = 0;
    unsigned long ranks = 0;
    optind = 1;
    opterr = 0;
    for (int opt; (opt = getopt_long(argc - 1, argv + 1, ":ho:", LONG, NULL)) != -1;) {
        switch (opt) {
        case O_RANKS:
            if (cli_parse_ulong("shape", "--ranks", optarg, 1, 250, &ranks) != 0)
                return 2;
            break;
        case O_PREFIX: {
            char why[WANCP_ERRLEN];
            if (topology_prefix_check(optarg, why, sizeof why) != WANCP_OK)
                return cli_usage_error("shape", "--prefix: %s", why);
            snprintf(t.prefix, sizeof t.prefix, "%s", optarg);
            have_prefix = 1;
            break;
        }
        case O_IGNORE: t.ignore_delay = 1; break;
        case O_DRY: dry = 1; break;
        case O_ALL: all = 1; break;
        case O_SECONDS:
            if (cli_parse_ulong("shape", "--seconds", optarg, 1, 1000000, &seconds) != 0)
                return 2;
            break;
        case O_PCAP: pcap_dir = optarg; break;
        case O_MODEL:
            if (strcmp(optarg, "uplink") != 0 && strcmp(optarg, "mesh") != 0)
                return cli_usage_error("shape", "--model '%s': expected uplink or mesh", optarg);
            t.model = strcmp(optarg, "mesh") == 0 ? TOPOLOGY_MESH : TOPOLOGY_UPLINK;
            break;
        case O_STRAGGLER:
            if (topology_parse_straggler(optarg, &t.straggler, &t.straggler_k) != 0)
                return cli_usage_error("shape", "--straggler '%s': expected RANK:K with K >= 1", optarg);
            break;
        case O_MECH:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "relay") != 0 && strcmp(optarg, "netem") != 0)
                return cli_usage_error("shape", "--delay-mechanism '%s': expected auto, relay or netem", optarg);
            t.delay_mechanism = strcmp(optarg, "relay") == 0   ? DELAY_RELAY
                                : strcmp(optarg, "netem") == 0 ? DELAY_NETEM
                                                               : DELAY_AUTO;
            break;
        case 'o': output = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("shape", "%s needs a value", argv[optind]);
        default: return cli_usage_error("shape", "unknown option '%s'", argv[optind]);
        }
    }
    char **rest = argv + 1 + optind;
    int nrest = argc - 1 - optind;
    char err[2048];
    if (strcmp(action, "up") == 0) {
        if (nrest != 1)
            return cli_usage_error("shape", "up takes one PROFILE (a file, or none)");
        if (ranks == 0)
            return cli_usage_error("shape", "up needs --ranks P");
        t.ranks = (int)ranks;
        link_profile p;
        int loaded = strcmp(rest[0], "none") != 0;
        if (loaded) {
            int rc = link_profile_load(&p, rest[0], err, sizeof err);
            if (rc != WANCP_OK)
                return cli_report("shape", rc, err);
            t.profile = &p;
        }
        int rc;
        if (dry) {
            static char script[1 << 16];
            rc = topology_script(&t, script, sizeof script, err, sizeof err);
            if (rc == WANCP_OK)
                fputs(script, stdout);
        } else if (geteuid() != 0) {
            rc = wancp_fail(err, sizeof err, WANCP_ERR_INPUT, "up needs root (network namespaces); try --dry-run");
        } else {
            rc = topology_up(&t, err, sizeof err);
            if (rc == WANCP_OK)
                printf("up: %d ranks in wancp-%s-r0..r%d (198.18.0.1..%d), switch wancp-%s-sw, %s, %s model, delay "
                       "mechanism %s\n",
                       t.ranks, t.prefix, t.ranks - 1, t.ranks, t.prefix, loaded ? p.name : "unshaped",
                       t.model == TOPOLOGY_MESH ? "mesh" : "uplink", topology_delay_mechanism(&t));
        }
        if (loaded)
            link_profile_free(&p);
        return rc == WANCP_OK ? 0 : cli_report("shape", rc, err);
    }
    if (strcmp(action, "down") == 0) {
        if (nrest != 0 || all == have_prefix)
            return cli_usage_error("shape", "down takes --prefix NAME or --all");
        int removed = 0, rc = topology_down(all ? NULL : t.prefix, &removed, err, sizeof err);
        if (rc != WANCP_OK)
            return cli_report("shape", rc, err);
        printf("down: removed %d namespace%s\n", removed, removed == 1 ? "" : "s");
        return 0;
    }
    if (strcmp(action, "capture") == 0) {
        if (!have_prefix || ranks == 0 || output == NULL)
            return cli_usage_error("shape", "capture needs --prefix NAME, --ranks P and -o WIRE.csv");
        capture cap;
        int rc = capture_start(&cap, t.prefix, (int)ranks, output, pcap_dir, err, sizeof err);
        if (rc != WANCP_OK)
            return cli_report("shape", rc, err);
        sigset_t wait_for;
        sigemptyset(&wait_for);
        sigaddset(&wait_for, SIGINT);
        sigaddset(&wait_for, SIGTERM);
        sigprocmask(SIG_BLOCK, &wait_for, NULL);
        fprintf(stderr, "capturing on wancp-%s-sw%s\n", t.prefix, seconds ? "" : " until Ctrl-C");
        struct timespec limit = {.tv_sec = seconds ? (time_t)seconds : 365 * 86400};
        sigtimedwait(&wait_for, NULL, &limit);
        rc = capture_stop(&cap, err, sizeof err);
        if (rc == WANCP_OK)
            fprintf(stderr, "wrote %s\n", output);
        return rc == WANCP_OK ? 0 : cli_report("shape", rc, err);
    }
    if (strcmp(action, "show") == 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd,
                 "for ns in $(ip netns list | awk '{print $1}' | grep '^wancp-%s'); do echo \"== $ns\"; "
                 "tc -n \"$ns\" -s qdisc show | awk '/^qdisc noqueue/ {skip = 1; next} /^qdisc/ {skip = 0} !skip'; "
                 "done",
                 have_prefix ? t.prefix : "");
        return system(cmd) == 0 ? 0 : 1;
    }
    return cli_usage_error("shape", "unknown action '%s': expected up, down, show, capture or check", action);
}

/* wancp shape relay: one delay emulator in the current namespace, until Ctrl-C. */
static volatile sig_atomic_t relay_stopped;

static void relay_signal(int sig)
{
    (void)sig;
    relay_stopped = 1;
}

int shape_relay(int argc, char **argv)
{
    enum { O_IN = 256, O_OUT, O_DELAY, O_JITTER, O_DIST, O_LOSS, O_QUEUE, O_SEED };
    static const struct option LONG[] = {
        {"in", 1, 0, O_IN},
        {"out", 1, 0, O_OUT},
        {"delay-ns", 1, 0, O_DELAY},
        {"jitter-ns", 1, 0, O_JITTER},
        {"distribution", 1, 0, O_DIST},
        {"loss-ppm", 1, 0, O_LOSS},
        {"queue-bytes", 1, 0, O_QUEUE},
        {"seed", 1, 0, O_SEED},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    relay_options o = {.distribution = JITTER_NORMAL};
    optind = 1;
    opterr = 0;
    for (int opt; (opt = getopt_long(argc, argv, ":h", LONG, NULL)) != -1;) {
        unsigned long u = 0;
        int bad = 0;
        switch (opt) {
        case O_IN: snprintf(o.in, sizeof o.in, "%s", optarg); break;
        case O_OUT: snprintf(o.out, sizeof o.out, "%s", optarg); break;
        case O_DELAY:
            bad = cli_parse_ulong("shape", "--delay-ns", optarg, 0, 100000000000ul, &u);
            o.delay_ns = u;
            break;
        case O_JITTER:
            bad = cli_parse_ulong("shape", "--jitter-ns", optarg, 0, 100000000000ul, &u);
            o.jitter_ns = u;
            break;
        case O_DIST:
            bad = cli_parse_ulong("shape", "--distribution", optarg, 0, 3, &u);
            o.distribution = (int)u;
            break;
        case O_LOSS:
            bad = cli_parse_ulong("shape", "--loss-ppm", optarg, 0, 1000000, &u);
            o.loss_ppm = (uint32_t)u;
            break;
        case O_QUEUE:
            bad = cli_parse_ulong("shape", "--queue-bytes", optarg, 0, 1ul << 32, &u);
            o.queue_bytes = u;
            break;
        case O_SEED:
            bad = cli_parse_ulong("shape", "--seed", optarg, 0, ~0ul, &u);
            o.seed = u;
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("shape", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("shape", "unknown option '%s'", argv[optind - 1]);
        }
        if (bad)
            return 2;
    }
    if (o.in[0] == 0 || o.out[0] == 0)
        return cli_usage_error("shape", "relay needs --in DEV and --out DEV");
    struct sigaction sa = {.sa_handler = relay_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char err[WANCP_ERRLEN];
    int rc = relay_run(&o, -1, &relay_stopped, err, sizeof err);
    return rc == WANCP_OK ? 0 : cli_report("shape", rc, err);
}
