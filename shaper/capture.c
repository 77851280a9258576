#include "capture.h"

#include "../core/base/proc.h"

#include "../core/base/status.h"
#include "topology.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 250
#define MAX_FLOWS 65536

typedef struct flow {
    uint32_t second;
    uint16_t src, dst, port;
    uint64_t frames, wire, payload;
} flow;

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

typedef struct counter {
    flow *flows;
    size_t nflows;
    struct timespec start;
    int overflow;
} counter;

static void count(counter *k, int port_rank, const struct pcap_pkthdr *h, const uint8_t *pkt)
{
    /* Ethernet + IPv4 + TCP from 198.18.0.0/24: anything else (ARP, IPv6) is counted as
     * port 0 with no payload, so wire bytes still add up. */
    uint16_t src = (uint16_t)port_rank, dst = 0xFFFF, tport = 0;
    uint64_t payload = 0;
    if (h->caplen >= 34 && pkt[12] == 0x08 && pkt[13] == 0x00) {
        const uint8_t *ip = pkt + 14;
        size_t ihl = (size_t)(ip[0] & 0x0F) * 4, total = (size_t)ip[2] << 8 | ip[3];
        if (ip[12] == 198 && ip[13] == 18 && ip[14] == 0 && ip[16] == 198 && ip[17] == 18 && ip[18] == 0) {
            src = (uint16_t)(ip[15] - 1);
            dst = (uint16_t)(ip[19] - 1);
        }
        if (ip[9] == 6 && h->caplen >= 14 + ihl + 20) {
            const uint8_t *tcp = ip + ihl;
            uint16_t sport = (uint16_t)(tcp[0] << 8 | tcp[1]), dport = (uint16_t)(tcp[2] << 8 | tcp[3]);
            size_t thl = (size_t)(tcp[12] >> 4) * 4;
            tport = dport < 32768 ? dport : sport;
            /* The IP length, unless it cannot be right: GSO super-frames may carry 0 there,
             * and then the frame's own length tells. Ethernet padding is not payload. */
            size_t ip_len = total >= ihl + thl && total <= h->len - 14 ? total : h->len - 14;
            payload = ip_len > ihl + thl ? ip_len - ihl - thl : 0;
        }
    }
    uint32_t second = (uint32_t)(h->ts.tv_sec - k->start.tv_sec);
    if (h->ts.tv_sec < k->start.tv_sec)
        second = 0;
    for (size_t i = k->nflows; i-- > 0;) { /* recent flows are at the end */
        flow *f = &k->flows[i];
        if (f->second == second && f->src == src && f->dst == dst && f->port == tport) {
            f->frames++, f->wire += h->len, f->payload += payload;
            return;
        }
        if (f->second + 1 < second)
            break;
    }
    if (k->nflows == MAX_FLOWS) {
        k->overflow = 1;
        return;
    }
    k->flows[k->nflows++] = (flow){second, src, dst, tport, 1, h->len, payload};
}

static int cmp_flow(const void *a, const void *b)
{
    const flow *x = a, *y = b;
    if (x->second != y->second)
        return x->second < y->second ? -1 : 1;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    if (x->dst != y->dst)
        return x->dst < y->dst ? -1 : 1;
    return (x->port > y->port) - (x->port < y->port);
}

/* The capture process: enter the switch namespace, read every port, write the CSV. */
static int capture_main(const char *prefix, int ranks, const char *csv_path, const char *pcap_dir)
{
    char ns[128], path[1200], errbuf[PCAP_ERRBUF_SIZE], err[WANCP_ERRLEN];
    topology_ns_name(prefix, -1, ns, sizeof ns);
    if (topology_enter(prefix, -1, err, sizeof err) != WANCP_OK) {
        fprintf(stderr, "wancp capture: %s\n", err);
        return 2;
    }
    pcap_t *handles[MAX_PORTS];
    pcap_dumper_t *dumps[MAX_PORTS] = {0};
    struct pollfd fds[MAX_PORTS];
    counter k = {.flows = calloc(MAX_FLOWS, sizeof(flow))};
    clock_gettime(CLOCK_REALTIME, &k.start);
    for (int r = 0; r < ranks; r++) {
        char dev[16];
        snprintf(dev, sizeof dev, "p%d", r);
        handles[r] = pcap_create(dev, errbuf);
        if (handles[r] == NULL || pcap_set_snaplen(handles[r], 128) != 0 ||
            pcap_set_buffer_size(handles[r], 16 << 20) != 0 || pcap_set_immediate_mode(handles[r], 1) != 0 ||
            pcap_activate(handles[r]) < 0 || pcap_setdirection(handles[r], PCAP_D_IN) != 0 ||
            pcap_setnonblock(handles[r], 1, errbuf) != 0) {
            fprintf(stderr, "wancp capture: %s in %s: %s\n", dev, ns, handles[r] ? pcap_geterr(handles[r]) : errbuf);
            return 2;
        }
        fds[r] = (struct pollfd){.fd = pcap_get_selectable_fd(handles[r]), .events = POLLIN};
        if (pcap_dir != NULL) {
            snprintf(path, sizeof path, "%s/p%d.pcap", pcap_dir, r);
            dumps[r] = pcap_dump_open(handles[r], path);
            if (dumps[r] == NULL) {
                fprintf(stderr, "wancp capture: %s: %s\n", path, pcap_geterr(handles[r]));
                return 2;
            }
        }
    }
    /* ready: the parent waits for this byte before it lets traffic start */
    if (write(STDOUT_FILENO, "R", 1) != 1)
        return 2;
    while (!stopping) {
        poll(fds, (nfds_t)ranks, 100);
        for (int r = 0; r < ranks; r++) {
            struct pcap_pkthdr *h;
            const u_char *pkt;
            while (pcap_next_ex(handles[r], &h, &pkt) == 1) {
                count(&k, r, h, pkt);
                if (dumps[r] != NULL)
                    pcap_dump((u_char *)dumps[r], h, pkt);
            }
        }
    }
    qsort(k.flows, k.nflows, sizeof *k.flows, cmp_flow);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.partial", csv_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "wancp capture: %s: cannot create\n", tmp);
        return 1;
    }
    fprintf(f, "# wancp wire capture: switch %s, %d ports, ingress only (each packet once, at its sender)\n", ns,
            ranks);
    fprintf(f, "# start_unix: %lld.%09ld (second 0 begins here)\n", (long long)k.start.tv_sec, k.start.tv_nsec);
    for (int r = 0; r < ranks; r++) {
        struct pcap_stat st = {0};
        pcap_stats(handles[r], &st);
        fprintf(f, "# p%d: %u received by the filter, %u dropped by the kernel, %u by the interface\n", r, st.ps_recv,
                st.ps_drop, st.ps_ifdrop);
        if (dumps[r] != NULL)
            pcap_dump_close(dumps[r]);
        pcap_close(handles[r]);
    }
    if (k.overflow)
        fprintf(f, "# more than %d flow-seconds: later ones were not counted\n", MAX_FLOWS);
    fprintf(f, "second,src_rank,dst_rank,port,frames,wire_bytes,payload_bytes\n");
    for (size_t i = 0; i < k.nflows; i++) {
        const flow *x = &k.flows[i];
        fprintf(f, "%u,%d,%d,%u,%llu,%llu,%llu\n", x->second, x->src, x->dst == 0xFFFF ? -1 : x->dst, x->port,
                (unsigned long long)x->frames, (unsigned long long)x->wire, (unsigned long long)x->payload);
    }
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, csv_path) != 0) {
        fprintf(stderr, "wancp capture: %s: cannot write\n", csv_path);
        return 1;
    }
    free(k.flows);
    return 0;
}

int capture_start(capture *c, const char *prefix, int ranks, const char *csv_path, const char *pcap_dir, char *err,
                  size_t errlen)
{
    *c = (capture){.pid = -1};
    if (ranks < 1 || ranks > MAX_PORTS)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "capture: %d ranks (1 to %d)", ranks, MAX_PORTS);
    snprintf(c->csv_path, sizeof c->csv_path, "%s", csv_path);
    int ready[2];
    if (pipe(ready) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "pipe: %s", strerror(errno));
    const pid_t self = getpid();
    c->pid = fork();
    if (c->pid < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    if (c->pid == 0) {
        struct sigaction sa = {.sa_handler = on_stop};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        if (!proc_die_with_parent(self, SIGTERM)) /* its caller died: wire.csv written, then gone */
            _exit(1);
        close(ready[0]);
        dup2(ready[1], STDOUT_FILENO);
        close(ready[1]);
        _exit(capture_main(prefix, ranks, csv_path, pcap_dir));
    }
    close(ready[1]);
    char byte = 0;
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    int ok = poll(&p, 1, 10000) == 1 && read(ready[0], &byte, 1) == 1 && byte == 'R';
    close(ready[0]);
    if (!ok) {
        int st;
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &st, 0);
        c->pid = -1;
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "capture on wancp-%s-sw did not start (see its message above)",
                          prefix);
    }
    return WANCP_OK;
}

int capture_stop(capture *c, char *err, size_t errlen)
{
    if (c->pid <= 0)
        return WANCP_OK;
    kill(c->pid, SIGTERM);
    int st;
    waitpid(c->pid, &st, 0);
    c->pid = -1;
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "capture failed; %s not written", c->csv_path);
    return WANCP_OK;
}
