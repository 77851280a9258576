#include "topology.h"

#include "../core/util/proc.h"

#include "../core/status.h"
#include "rate_player.h"
#include "units.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


void topology_ns_name(const char *prefix, int rank, char *buf, size_t len)
{
    if (rank < 0)
        snprintf(buf, len, TOPOLOGY_NS_PREFIX "%s-sw", prefix);
    else
        snprintf(buf, len, TOPOLOGY_NS_PREFIX "%s-r%d", prefix, rank);
}

void topology_rank_addr(int rank, char *buf, size_t len)
{
    snprintf(buf, len, "198.18.0.%d", rank + 1);
}

int topology_prefix_check(const char *prefix, char *err, size_t errlen)
{
    size_t n = strlen(prefix);
    int ok = n > 0 && n <= 16;
    for (size_t i = 0; i < n && ok; i++)
        ok = (prefix[i] >= 'a' && prefix[i] <= 'z') || (prefix[i] >= '0' && prefix[i] <= '9');
    if (!ok)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "prefix '%.40s': use 1 to 16 of a-z and 0-9", prefix);
    return WANCP_OK;
}

static int check(const topology *t, char *err, size_t errlen)
{
    if (topology_prefix_check(t->prefix, err, errlen) != WANCP_OK)
        return WANCP_ERR_INPUT;
    if (t->ranks < 1 || t->ranks > TOPOLOGY_MAX_RANKS)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "ranks %d: 1 to 250 fit 198.18.0.0/24", t->ranks);
    const link_profile *p = t->profile;
    if (p != NULL && p->rate_bps == 0 && p->ntrace == 0 && p->nschedule == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "profile %s has no rate, schedule or trace", p->name);
    if (t->straggler_k > 1 && (t->straggler < 0 || t->straggler >= t->ranks))
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "straggler rank %d: the topology has ranks 0 to %d",
                          t->straggler, t->ranks - 1);
    if (t->straggler_k > 1 && p == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "a straggler needs shaped links (a profile)");
    return WANCP_OK;
}

/* The relay holds every frame for its delay, so beside the queue the profile allows (4 MB
 * when it says nothing) it must hold what the link carries meanwhile: its fastest rate x
 * (delay + 3 jitters), up to 1 GiB. A wire does not drop bytes for being long. */
static uint64_t relay_queue_bytes(const link_profile *p)
{
    double peak = (double)p->rate_bps;
    rate_plan plan = {0};
    char ignore[WANCP_ERRLEN];
    if (rate_plan_of(p, &plan, ignore, sizeof ignore) == WANCP_OK)
        for (size_t i = 0; i < plan.n; i++)
            peak = fmax(peak, (double)plan.steps[i].rate_bps);
    rate_plan_free(&plan);
    const double held_ns = (double)p->delay_ns + 3.0 * (double)p->jitter_ns;
    const double bytes = (double)(p->queue_bytes > 0 ? p->queue_bytes : (4u << 20)) + peak / 8.0 * held_ns * 1e-9;
    return (uint64_t)fmin(bytes, (double)(1u << 30)); /* the relay's memory: at most 1 GiB */
}

relay_options relay_options_of(const topology *t, int rank)
{
    const link_profile *p = t->profile;
    relay_options o = {.delay_ns = p->delay_ns, .jitter_ns = p->jitter_ns, .distribution = p->distribution,
                       .loss_ppm = p->loss_ppm, .queue_bytes = relay_queue_bytes(p),
                       .seed = 0x5EEDull * (uint64_t)(rank + 1)};
    snprintf(o.in, sizeof o.in, "p%d", rank);
    snprintf(o.out, sizeof o.out, "d%d", rank);
    return o;
}

/* The kernel's own configuration, when it publishes it (/proc/config.gz); else no netem. */
static bool kernel_has_netem(void)
{
    static int known = -1;
    if (known < 0) {
        FILE *f = popen("zcat /proc/config.gz 2>/dev/null | grep -qE '^CONFIG_NET_SCH_NETEM=(y|m)' && echo yes", "r");
        char said[8] = "";
        known = f != NULL && fgets(said, sizeof said, f) != NULL && strncmp(said, "yes", 3) == 0;
        if (f != NULL)
            pclose(f);
    }
    return known == 1;
}

static bool needs_delay(const topology *t)
{
    const link_profile *p = t->profile;
    return p != NULL && !t->ignore_delay && link_profile_delays(p);
}



/* One step of the script: a command line and what it reads on stdin. */
typedef struct step {
    char ns[64];   /* "" for the host namespace */
    int is_tc;
    char text[8192];
    char dev[16];  /* set: not a batch but `ethtool -K dev ...` inside ns */
    int tx_off;    /* with dev: transmit checksums off too (the relay re-sends frames as they are) */
    int tcp_tuning; /* set: not a batch but `sysctl` of TCP_TUNING inside ns */
    int force;     /* the batch goes on past a failing line (removal: take what can go) */
} step;

/* A rank's TCP is tuned as hosts for long fat paths are, so the link is the limit, not the
 * host: buffers may grow to 64 MiB (Linux's default 4 MiB send buffer caps a stream at
 * 4 MiB per round trip, under 300 Mbit/s at 100 ms once the link's queue adds its own
 * delay), and a connection keeps its window across the compute gaps between a step's
 * exchanges (with slow start after idle, every exchange longer than a retransmission
 * timeout apart starts again from 10 segments and needs several round trips to fill the
 * link: on a 20 ms link that more than doubled the exposed communication of a CP step). */
#define TCP_RMEM "4096 131072 67108864"
#define TCP_WMEM "4096 16384 67108864"
#define TCP_TUNING "net.ipv4.tcp_rmem=" TCP_RMEM, "net.ipv4.tcp_wmem=" TCP_WMEM, "net.ipv4.tcp_slow_start_after_idle=0"
#define TCP_TUNING_SHELL                                                                                               \
    "net.ipv4.tcp_rmem='" TCP_RMEM "' net.ipv4.tcp_wmem='" TCP_WMEM "' net.ipv4.tcp_slow_start_after_idle=0"

/* Segmentation offloads off, so packets on the wire are real MTU-sized frames: htb shapes
 * them smoothly and the capture counts the headers each segment really carries. */
#define OFFLOADS_OFF "tso off gso off gro off"

static void add_line(step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_line(step *s, const char *fmt, ...)
{
    size_t used = strlen(s->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->text + used, sizeof s->text - used, fmt, ap);
    va_end(ap);
    used = strlen(s->text);
    if (used + 1 < sizeof s->text)
        strcat(s->text, "\n");
}

/* One htb class at the profile's rate, with a byte FIFO of its queue under it. */
/* netem under a shaped class: the rank's egress gets the whole one-way delay, as the relay. */
static void netem_child(step *s, const char *dev, int minor, const link_profile *p)
{
    static const char *dist[] = {"", " distribution normal", " distribution pareto", " distribution paretonormal"};
    char delay[32], jitter[32];
    shaper_format_time(p->delay_ns, delay, sizeof delay);
    shaper_format_time(p->jitter_ns, jitter, sizeof jitter);
    add_line(s, "qdisc add dev %s parent 1:%d handle %d: netem delay %s%s%s%s loss %.4f%% limit 100000", dev, minor,
             100 + minor, delay, p->jitter_ns > 0 ? " " : "", p->jitter_ns > 0 ? jitter : "",
             p->jitter_ns > 0 && p->distribution >= 0 && p->distribution < 4 ? dist[p->distribution] : "",
             p->loss_ppm / 1e4);
}

static bool always(void) { return true; }
static size_t relay_script(const topology *t, char *buf, size_t len);
static int start_relays(const topology *t, char *err, size_t errlen);

/*
 * Where delay, jitter and loss come from, behind one table: whether this kernel has it;
 * whether it needs the rank ports out of the bridge (a relay between pK and dK, qK the
 * bridge port); what goes under a rank's egress class; what --dry-run prints after the
 * commands; and what must run beside the links once they are up.
 */
typedef struct delay_mechanism {
    const char *name, *says;
    bool (*available)(void);
    bool own_ports;
    void (*egress_child)(step *s, const char *dev, int minor, const link_profile *p);
    size_t (*script)(const topology *t, char *buf, size_t len);
    int (*start)(const topology *t, char *err, size_t errlen);
} delay_mechanism;

static const delay_mechanism NETEM = {"netem", "netem under each rank's egress class", kernel_has_netem, false,
                                      netem_child, NULL, NULL};
static const delay_mechanism RELAY = {"relay", "the user-space relay (no netem in this kernel), lines at the end",
                                      always, true, NULL, relay_script, start_relays};

/* The mechanism t uses, or NULL when its links carry no delay, jitter or loss. */
static const delay_mechanism *delay_of(const topology *t)
{
    if (!needs_delay(t))
        return NULL;
    if (t->delay_mechanism == DELAY_NETEM)
        return &NETEM;
    if (t->delay_mechanism == DELAY_RELAY)
        return &RELAY;
    return NETEM.available() ? &NETEM : &RELAY;
}

const char *topology_delay_mechanism(const topology *t)
{
    const delay_mechanism *m = delay_of(t);
    return m != NULL ? m->name : "none";
}

bool topology_emulates(const topology *t)
{
    const delay_mechanism *m = delay_of(t);
    return m != NULL && m->own_ports;
}

/* The rate a link starts at: its schedule's or trace's first, or its fixed one. */
static uint64_t start_rate(const link_profile *p)
{
    rate_plan plan;
    char ignore[WANCP_ERRLEN];
    if (rate_plan_of(p, &plan, ignore, sizeof ignore) != WANCP_OK)
        return p->rate_bps;
    uint64_t rate = plan.steps[0].rate_bps;
    rate_plan_free(&plan);
    return rate;
}

double topology_rank_scale(const topology *t, int rank)
{
    return t->straggler_k > 1 && rank == t->straggler ? 1.0 / t->straggler_k : 1.0;
}

int topology_parse_straggler(const char *text, int *rank, double *k)
{
    int used = 0;
    if (sscanf(text, "%d:%lf%n", rank, k, &used) != 2 || text[used] != '\0' || *rank < 0 ||
        *rank >= TOPOLOGY_MAX_RANKS || !(*k >= 1 && *k <= 1e6))
        return -1;
    return 0;
}

static uint64_t scaled(uint64_t rate_bps, double scale)
{
    return scale == 1.0 ? rate_bps : (uint64_t)llround((double)rate_bps * scale);
}

/* One htb class line: add (at setup) or change (the rate player). */
static void class_line(step *s, const char *verb, const char *dev, int minor, uint64_t rate_bps)
{
    char rate[32];
    shaper_format_rate(rate_bps, rate, sizeof rate);
    add_line(s, "class %s dev %s parent 1: classid 1:%d htb rate %s ceil %s burst %dk cburst %dk quantum 60000", verb,
             dev, minor, rate, rate, TOPOLOGY_HTB_BURST_KIB, TOPOLOGY_HTB_BURST_KIB);
}

/* A shaped class, with the delay mechanism's child under it (egress_child, may be NULL) or
 * a byte queue of the profile's length. */
static void shaped_class(step *s, const char *dev, int minor, const link_profile *p, double scale,
                         void (*egress_child)(step *, const char *, int, const link_profile *))
{
    class_line(s, "add", dev, minor, scaled(start_rate(p), scale));
    if (egress_child != NULL)
        egress_child(s, dev, minor, p);
    else if (p->queue_bytes > 0)
        add_line(s, "qdisc add dev %s parent 1:%d handle %d: bfifo limit %llu", dev, minor, 100 + minor,
                 (unsigned long long)p->queue_bytes);
}

/* Uplink: everything through dev in one class (with netem under it on a rank's egress). */
static void shape_dev(step *s, const char *dev, const link_profile *p, double scale,
                      void (*egress_child)(step *, const char *, int, const link_profile *))
{
    add_line(s, "qdisc add dev %s root handle 1: htb default 1", dev);
    shaped_class(s, dev, 1, p, scale, egress_child);
}

/* Mesh: one class per peer of rank self, chosen by the peer's address (dst on a rank's
 * eth0, src on the switch port towards self); other packets (ARP) pass unshaped. */
static void shape_dev_mesh(step *s, const char *dev, const link_profile *p, double scale, int self, int ranks,
                           const char *match, void (*egress_child)(step *, const char *, int, const link_profile *))
{
    add_line(s, "qdisc add dev %s root handle 1: htb default 0", dev);
    for (int q = 0; q < ranks; q++) {
        if (q == self)
            continue;
        char addr[32];
        topology_rank_addr(q, addr, sizeof addr);
        shaped_class(s, dev, q + 1, p, scale, egress_child);
        add_line(s, "filter add dev %s parent 1: protocol ip prio 1 u32 match ip %s %s/32 flowid 1:%d", dev, match,
                 addr, q + 1);
    }
}

/* The steps of topology_up, in order: host, switch, ranks, then tc per namespace. */
static int build_steps(const topology *t, step **out, int *count)
{
    const int P = t->ranks, shaped = t->profile != NULL, emulate = topology_emulates(t);
    int n = 2 + 2 * P + 2 * P + (emulate ? 2 * P : 0) + (shaped ? P + 1 : 0);
    step *s = calloc((size_t)n, sizeof *s);
    if (s == NULL)
        return WANCP_ERR_NOMEM;
    char sw[64], rk[64], addr[32];
    topology_ns_name(t->prefix, -1, sw, sizeof sw);
    int k = 0;
    for (int r = -1; r < P; r++) {
        topology_ns_name(t->prefix, r, rk, sizeof rk);
        add_line(&s[k], "netns add %s", rk);
    }
    k++;
    snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
    add_line(&s[k], "link set lo up");
    add_line(&s[k], "link add br0 type bridge");
    add_line(&s[k], "link set br0 up");
    for (int r = 0; r < P; r++) {
        topology_ns_name(t->prefix, r, rk, sizeof rk);
        add_line(&s[k], "link add p%d type veth peer name eth0 netns %s", r, rk);
        if (emulate) { /* p -> relay -> d, whose peer q is the bridge port */
            add_line(&s[k], "link add d%d type veth peer name q%d", r, r);
            add_line(&s[k], "link set q%d master br0", r);
            add_line(&s[k], "link set d%d up", r);
            add_line(&s[k], "link set q%d up", r);
        } else {
            add_line(&s[k], "link set p%d master br0", r);
        }
        add_line(&s[k], "link set p%d up", r);
    }
    k++;
    for (int r = 0; r < P; r++, k++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        topology_rank_addr(r, addr, sizeof addr);
        add_line(&s[k], "link set lo up");
        add_line(&s[k], "addr add %s/24 dev eth0", addr);
        add_line(&s[k], "link set eth0 up");
    }
    for (int r = 0; r < P; r++, k++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        s[k].tcp_tuning = 1;
    }
    for (int r = 0; r < P; r++) {
        topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
        s[k].tx_off = emulate;
        snprintf(s[k++].dev, sizeof s[k].dev, "eth0");
        snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
        s[k].tx_off = emulate;
        snprintf(s[k++].dev, sizeof s[k].dev, "p%d", r);
        for (int side = 0; side < 2 && emulate; side++) {
            snprintf(s[k].ns, sizeof s[k].ns, "%s", sw);
            s[k].tx_off = 1;
            snprintf(s[k++].dev, sizeof s[k].dev, "%c%d", side == 0 ? 'd' : 'q', r);
        }
    }
    if (shaped) {
        const int mesh = t->model == TOPOLOGY_MESH;
        const delay_mechanism *m = delay_of(t);
        void (*child)(step *, const char *, int, const link_profile *) = m != NULL ? m->egress_child : NULL;
        for (int r = 0; r < P; r++, k++) { /* uplinks */
            topology_ns_name(t->prefix, r, s[k].ns, sizeof s[k].ns);
            s[k].is_tc = 1;
            if (mesh)
                shape_dev_mesh(&s[k], "eth0", t->profile, topology_rank_scale(t, r), r, P, "dst", child);
            else
                shape_dev(&s[k], "eth0", t->profile, topology_rank_scale(t, r), child);
        }
        snprintf(s[k].ns, sizeof s[k].ns, "%s", sw); /* downlinks */
        s[k].is_tc = 1;
        for (int r = 0; r < P; r++) {
            char dev[16];
            snprintf(dev, sizeof dev, "p%d", r);
            if (mesh)
                shape_dev_mesh(&s[k], dev, t->profile, topology_rank_scale(t, r), r, P, "src", NULL);
            else
                shape_dev(&s[k], dev, t->profile, topology_rank_scale(t, r), NULL);
        }
        k++;
    }
    *out = s;
    *count = k;
    return WANCP_OK;
}

/* The checked plan: the steps topology_up runs and topology_script prints. */
static int plan(const topology *t, step **s, int *n, char *err, size_t errlen)
{
    int rc = check(t, err, errlen);
    if (rc == WANCP_OK && build_steps(t, s, n) != WANCP_OK)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory");
    return rc;
}

/* The relays as `wancp shape relay` lines, one per rank, run in the switch namespace. */
static size_t relay_script(const topology *t, char *buf, size_t len)
{
    size_t used = 0;
    char sw[64];
    topology_ns_name(t->prefix, -1, sw, sizeof sw);
    for (int r = 0; r < t->ranks && used < len; r++) {
        relay_options o = relay_options_of(t, r);
        used += (size_t)snprintf(buf + used, len - used,
                                 "ip netns exec %s wancp shape relay --in %s --out %s --delay-ns %llu --jitter-ns %llu "
                                 "--distribution %d --loss-ppm %u --queue-bytes %llu --seed %llu &\n",
                                 sw, o.in, o.out, (unsigned long long)o.delay_ns, (unsigned long long)o.jitter_ns,
                                 o.distribution, o.loss_ppm, (unsigned long long)o.queue_bytes,
                                 (unsigned long long)o.seed);
    }
    return used;
}

int topology_script(const topology *t, char *buf, size_t len, char *err, size_t errlen)
{
    step *s;
    int n, rc = plan(t, &s, &n, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    size_t used = 0;
    buf[0] = 0;
    const delay_mechanism *m = delay_of(t);
    if (m != NULL)
        used += (size_t)snprintf(buf + used, len - used, "# delay, jitter and loss: %s\n", m->says);
    for (int i = 0; i < n && used < len; i++) {
        if (s[i].tcp_tuning)
            used += (size_t)snprintf(buf + used, len - used, "ip netns exec %s sysctl -q -w " TCP_TUNING_SHELL "\n",
                                     s[i].ns);
        else if (s[i].dev[0])
            used += (size_t)snprintf(buf + used, len - used, "ip netns exec %s ethtool -K %s " OFFLOADS_OFF "%s\n",
                                     s[i].ns, s[i].dev, s[i].tx_off ? " tx off" : "");
        else
            used += (size_t)snprintf(buf + used, len - used, "%s%s%s -batch - <<'EOF'\n%sEOF\n",
                                     s[i].is_tc ? "tc" : "ip", s[i].ns[0] ? " -n " : "", s[i].ns, s[i].text);
    }
    free(s);
    rate_plan plan = {0};
    if (t->profile != NULL && rate_plan_of(t->profile, &plan, err, errlen) == WANCP_OK && plan.n > 1) {
        used +=
            (size_t)snprintf(buf + used, len - used,
                             "# the rate changes over time%s: wancp shape up plays it through one `tc -n NS -batch -`"
                             " per namespace, changing every class above to\n",
                             plan.period_ns ? " (a trace, repeating)" : "");
        for (size_t i = 0; i < plan.n && used < len; i++) {
            char rate[32], at[32];
            shaper_format_rate(plan.steps[i].rate_bps, rate, sizeof rate);
            if (plan.steps[i].at_ns == 0)
                snprintf(at, sizeof at, "0s");
            else
                shaper_format_time(plan.steps[i].at_ns, at, sizeof at);
            used += (size_t)snprintf(buf + used, len - used, "#   %s at %s\n", rate, at);
        }
    }
    rate_plan_free(&plan);
    if (m != NULL && m->script != NULL && used < len)
        used += m->script(t, buf + used, len - used);
    if (used >= len)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "script longer than %zu bytes", len);
    return WANCP_OK;
}

/* Runs `ip|tc [-n ns] -batch -` with text on stdin; the first line of its complaints goes
 * into err. */
static int run_batch(const step *s, char *err, size_t errlen)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDERR_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        const char *tool = s->is_tc ? "tc" : "ip";
        if (s->tcp_tuning)
            execlp("ip", "ip", "netns", "exec", s->ns, "sysctl", "-q", "-w", TCP_TUNING, (char *)NULL);
        else if (s->dev[0] && s->tx_off)
            execlp("ip", "ip", "netns", "exec", s->ns, "ethtool", "-K", s->dev, "tso", "off", "gso", "off", "gro",
                   "off", "tx", "off", (char *)NULL);
        else if (s->dev[0])
            execlp("ip", "ip", "netns", "exec", s->ns, "ethtool", "-K", s->dev, "tso", "off", "gso", "off", "gro",
                   "off", (char *)NULL);
        else if (s->ns[0])
            execlp(tool, tool, "-n", s->ns, "-batch", "-", (char *)NULL);
        else if (s->force)
            execlp(tool, tool, "-force", "-batch", "-", (char *)NULL);
        else
            execlp(tool, tool, "-batch", "-", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    size_t len = strlen(s->text);
    if (write(in[1], s->text, len) != (ssize_t)len) {
        /* the tool died early: its status says why */
    }
    close(in[1]);
    char said[2048] = "";
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof said && (r = read(out[0], said + got, sizeof said - 1 - got)) > 0)
        got += (size_t)r;
    said[got] = 0;
    close(out[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return WANCP_OK;
    /* the complaint, without the "Command failed -:N" trailer */
    char *nl = strchr(said, '\n');
    if (nl != NULL)
        *nl = 0;
    const bool exec = s->dev[0] || s->tcp_tuning;
    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s%s%s%s: %s",
                      s->tcp_tuning ? "sysctl in " : s->dev[0] ? "ethtool in " : "",
                      exec ? "" : s->is_tc ? "tc" : "ip", s->ns[0] && !exec ? " -n " : "", s->ns,
                      said[0] ? said : (WIFEXITED(st) && WEXITSTATUS(st) == 127) ? "not installed" : "failed");
}

static volatile sig_atomic_t relay_stop;

static void relay_on_signal(int sig)
{
    (void)sig;
    relay_stop = 1;
}

int topology_enter(const char *prefix, int rank, char *err, size_t errlen)
{
    char ns[64], path[128];
    topology_ns_name(prefix, rank, ns, sizeof ns);
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        int rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot enter %s: %s", ns, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return WANCP_OK;
}

/* Forks a helper that lives in t's switch namespace, in its own session (the caller's
 * Ctrl-C is the caller's to handle) with no terminal; returns its pid, 0 in the helper, or
 * -1. topology_down kills it with everything else inside the namespace. */
static pid_t fork_into_switch(const topology *t)
{
    const pid_t self = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (t->owned && !proc_die_with_parent(self, SIGKILL))
        _exit(3);
    setsid();
    char ignore[WANCP_ERRLEN];
    if (topology_enter(t->prefix, -1, ignore, sizeof ignore) != WANCP_OK)
        _exit(3);
    int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO), dup2(null, STDOUT_FILENO), dup2(null, STDERR_FILENO);
    return 0;
}

/* Starts rank r's relay as a child entered into the switch namespace, and waits until its
 * sockets are open. It lives until topology_down kills what is inside the namespace. */
static int start_relay(const topology *t, int r, char *err, size_t errlen)
{
    char sw[64];
    topology_ns_name(t->prefix, -1, sw, sizeof sw);
    int ready[2];
    if (pipe(ready) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "pipe: %s", strerror(errno));
    pid_t pid = fork_into_switch(t);
    if (pid < 0) {
        close(ready[0]), close(ready[1]);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(ready[0]);
        struct sigaction sa = {.sa_handler = relay_on_signal};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        relay_options o = relay_options_of(t, r);
        char ignore[WANCP_ERRLEN];
        _exit(relay_run(&o, ready[1], &relay_stop, ignore, sizeof ignore) == WANCP_OK ? 0 : 1);
    }
    close(ready[1]);
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    char one = 0;
    int ok = poll(&p, 1, 5000) == 1 && read(ready[0], &one, 1) == 1;
    close(ready[0]);
    if (!ok)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "the delay emulator for rank %d did not start in %s", r, sw);
    return WANCP_OK;
}

/* The class changes that set every link of namespace `rank` (-1: the switch) to rate. */
static void rate_lines(const topology *t, int rank, uint64_t rate, step *s)
{
    s->text[0] = 0;
    for (int r = rank < 0 ? 0 : rank; r < (rank < 0 ? t->ranks : rank + 1); r++) {
        char dev[16] = "eth0";
        if (rank < 0)
            snprintf(dev, sizeof dev, "p%d", r);
        for (int q = 0; q < t->ranks; q++) {
            if (t->model == TOPOLOGY_MESH && q != r)
                class_line(s, "change", dev, q + 1, scaled(rate, topology_rank_scale(t, r)));
            else if (t->model != TOPOLOGY_MESH && q == 0)
                class_line(s, "change", dev, 1, scaled(rate, topology_rank_scale(t, r)));
        }
    }
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Plays the profile's rate over time through one long-lived `tc -batch -` per namespace
 * (a change takes effect within milliseconds; starting tc each time took about a second).
 * Runs in the switch namespace until topology_down kills it. */
static void play_rates(const topology *t, const rate_plan *plan)
{
    signal(SIGPIPE, SIG_IGN);
    FILE *tc[TOPOLOGY_MAX_RANKS + 1];
    for (int i = 0; i <= t->ranks; i++) {
        char ns[64], cmd[128];
        topology_ns_name(t->prefix, i == t->ranks ? -1 : i, ns, sizeof ns);
        snprintf(cmd, sizeof cmd, "exec tc -n %s -batch - >/dev/null 2>&1", ns);
        tc[i] = popen(cmd, "w");
        if (tc[i] == NULL)
            _exit(1);
    }
    static step lines;
    const uint64_t start = clock_ns();
    uint64_t base = 0; /* start of the current period of a repeating trace */
    for (size_t k = 1;; k++) {
        if (k == plan->n) {
            if (plan->period_ns == 0)
                break; /* a schedule holds its last rate */
            base += plan->period_ns;
            k = 0;
        }
        const uint64_t at = start + base + plan->steps[k].at_ns;
        for (uint64_t now = clock_ns(); now < at; now = clock_ns()) {
            struct timespec nap = {.tv_sec = (time_t)((at - now) / 1000000000ull),
                                   .tv_nsec = (long)((at - now) % 1000000000ull)};
            nanosleep(&nap, NULL);
        }
        for (int i = 0; i <= t->ranks; i++) {
            rate_lines(t, i == t->ranks ? -1 : i, plan->steps[k].rate_bps, &lines);
            if (fputs(lines.text, tc[i]) < 0 || fflush(tc[i]) != 0)
                _exit(1);
        }
    }
    for (;;)
        pause();
}

/* Forks the rate player into the switch namespace when the rate changes over time. */
static int start_rate_player(const topology *t, char *err, size_t errlen)
{
    rate_plan plan;
    int rc = rate_plan_of(t->profile, &plan, err, errlen);
    if (rc != WANCP_OK || plan.n < 2) {
        rate_plan_free(&plan);
        return rc;
    }
    pid_t pid = fork_into_switch(t);
    if (pid < 0) {
        rate_plan_free(&plan);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        play_rates(t, &plan);
        _exit(0);
    }
    rate_plan_free(&plan);
    return WANCP_OK;
}

static int start_relays(const topology *t, char *err, size_t errlen)
{
    int rc = WANCP_OK;
    for (int r = 0; r < t->ranks && rc == WANCP_OK; r++)
        rc = start_relay(t, r, err, errlen);
    return rc;
}

int topology_up(const topology *t, char *err, size_t errlen)
{
    step *s;
    int n, rc = plan(t, &s, &n, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    for (int i = 0; i < n && rc == WANCP_OK; i++)
        rc = run_batch(&s[i], err, errlen);
    free(s);
    const delay_mechanism *m = delay_of(t);
    if (rc == WANCP_OK && m != NULL && m->start != NULL)
        rc = m->start(t, err, errlen);
    if (rc == WANCP_OK && t->profile != NULL)
        rc = start_rate_player(t, err, errlen);
    if (rc != WANCP_OK) {
        int removed;
        char ignore[WANCP_ERRLEN];
        topology_down(t->prefix, &removed, ignore, sizeof ignore);
    }
    return rc;
}

/* Kills every process inside namespace name (ranks, helpers), so deleting it frees it. */
static void kill_inside(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ip netns pids %s 2>/dev/null", name);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return;
    int pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 1 && pid != getpid())
            kill(pid, SIGKILL);
    pclose(f);
}

/* The namespaces whose names start with want, into s as `netns del` lines, each one's
 * processes killed first. Returns how many, or a WANCP_ERR_* code. */
static int del_lines(const char *want, step *s, char *err, size_t errlen)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return errno == ENOENT ? 0 : wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "/run/netns: %s", strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, want, strlen(want)) != 0)
            continue;
        kill_inside(e->d_name);
        add_line(s, "netns del %s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* `ip netns del` fails now and then with "Device or resource busy" while the kernel still
 * tears down the namespace's devices; a namespace left behind would outlive the run, so
 * removal goes on past a failure and tries again for up to two seconds. */
int topology_down(const char *prefix, int *removed, char *err, size_t errlen)
{
    *removed = 0;
    if (prefix != NULL && topology_prefix_check(prefix, err, errlen) != WANCP_OK)
        return WANCP_ERR_INPUT;
    char want[64];
    if (prefix != NULL)
        snprintf(want, sizeof want, TOPOLOGY_NS_PREFIX "%s-", prefix);
    else
        snprintf(want, sizeof want, TOPOLOGY_NS_PREFIX);
    int rc = WANCP_OK;
    for (int attempt = 0; attempt < 20; attempt++) {
        step s = {.force = 1};
        int n = del_lines(want, &s, err, errlen);
        if (n < 0)
            return n;
        if (n == 0)
            return WANCP_OK;
        if (attempt == 0)
            *removed = n;
        if ((rc = run_batch(&s, err, errlen)) == WANCP_OK)
            return WANCP_OK;
        usleep(100000);
    }
    return rc;
}

/* The owner's process id in an owned prefix ("run4242" -> 4242), or 0. */
static long owner_of(const char *prefix)
{
    static const char *const OWNED[] = {TOPOLOGY_RUN_PREFIX, TOPOLOGY_CALIBRATE_PREFIX, TOPOLOGY_BENCH_PREFIX};
    for (size_t i = 0; i < sizeof OWNED / sizeof OWNED[0]; i++) {
        size_t n = strlen(OWNED[i]);
        if (strncmp(prefix, OWNED[i], n) != 0 || prefix[n] < '1' || prefix[n] > '9')
            continue;
        char *end;
        long pid = strtol(prefix + n, &end, 10);
        return *end == '\0' ? pid : 0;
    }
    return 0;
}

/* Whether pid runs wancp now: its executable is called wancp (ranks are started through
 * /proc/self/exe, so their comm says "exe"). */
static bool runs_wancp(long pid)
{
    char path[64], exe[4096];
    snprintf(path, sizeof path, "/proc/%ld/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    base = base != NULL ? base + 1 : exe;
    return strncmp(base, "wancp", 5) == 0;
}

int topology_down_orphans(int *removed, char *names, size_t len, char *err, size_t errlen)
{
    *removed = 0;
    if (len > 0)
        names[0] = '\0';
    char orphans[32][24];
    int norphans = 0;
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return errno == ENOENT ? WANCP_OK
                               : wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "/run/netns: %s", strerror(errno));
    const size_t skip = strlen(TOPOLOGY_NS_PREFIX);
    for (struct dirent *e; (e = readdir(d)) != NULL && norphans < 32;) {
        if (strncmp(e->d_name, TOPOLOGY_NS_PREFIX, skip) != 0)
            continue;
        char prefix[24];
        snprintf(prefix, sizeof prefix, "%.*s", (int)strcspn(e->d_name + skip, "-"), e->d_name + skip);
        long pid = owner_of(prefix);
        if (pid <= 0 || pid == (long)getpid() || runs_wancp(pid))
            continue;
        bool known = false;
        for (int i = 0; i < norphans && !known; i++)
            known = strcmp(orphans[i], prefix) == 0;
        if (!known)
            snprintf(orphans[norphans++], sizeof orphans[0], "%s", prefix);
    }
    closedir(d);
    int rc = WANCP_OK;
    for (int i = 0; i < norphans; i++) {
        int n = 0;
        int r = topology_down(orphans[i], &n, err, errlen);
        if (r != WANCP_OK)
            rc = r;
        *removed += n;
        size_t used = strlen(names);
        if (used < len)
            snprintf(names + used, len - used, "%s%s", used ? ", " : "", orphans[i]);
    }
    return rc;
}
