/* Delay, jitter and loss: netem under a rank's egress class where the kernel has it, else
 * the user-space relay between a rank's switch port and the bridge. */
#include "shaper_internal.h"

#include "../core/base/status.h"
#include "../core/base/proc.h"
#include "rate_player.h"
#include "relay.h"
#include "units.h"

#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <stdlib.h>

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
    relay_options o = {.delay_ns = p->delay_ns,
                       .jitter_ns = p->jitter_ns,
                       .distribution = p->distribution,
                       .loss_ppm = p->loss_ppm,
                       .queue_bytes = relay_queue_bytes(p),
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

static const delay_mechanism NETEM = {
    "netem", "netem under each rank's egress class", kernel_has_netem, false, netem_child, NULL, NULL};
static const delay_mechanism RELAY = {
    "relay",     "the user-space relay (no netem in this kernel), lines at the end", always, true, NULL, relay_script,
    start_relays};

/* The mechanism t uses, or NULL when its links carry no delay, jitter or loss. */
const delay_mechanism *delay_of(const topology *t)
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

/* The relays as `wancp shape relay` lines, one per rank, run in the switch namespace. */
static size_t relay_script(const topology *t, char *buf, size_t len)
{
    size_t used = 0;
    char sw[64];
    topology_ns_name(t->prefix, -1, sw, sizeof sw);
    for (int r = 0; r < t->ranks && used < len; r++) {
        relay_options o = relay_options_of(t, r);
        used +=
            (size_t)snprintf(buf + used, len - used,
                             "ip netns exec %s wancp shape relay --in %s --out %s --delay-ns %llu --jitter-ns %llu "
                             "--distribution %d --loss-ppm %u --queue-bytes %llu --seed %llu &\n",
                             sw, o.in, o.out, (unsigned long long)o.delay_ns, (unsigned long long)o.jitter_ns,
                             o.distribution, o.loss_ppm, (unsigned long long)o.queue_bytes, (unsigned long long)o.seed);
    }
    return used;
}

static volatile sig_atomic_t relay_stop;

static void relay_on_signal(int sig)
{
    (void)sig;
    relay_stop = 1;
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
    pid_t pid = netns_fork_into_switch(t);
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

static int start_relays(const topology *t, char *err, size_t errlen)
{
    int rc = WANCP_OK;
    for (int r = 0; r < t->ranks && rc == WANCP_OK; r++)
        rc = start_relay(t, r, err, errlen);
    return rc;
}
