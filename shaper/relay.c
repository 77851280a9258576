#include "relay.h"

#include "../core/status.h"
#include "profile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 65536
#define QUEUE_SLOTS 65536
#define DEFAULT_QUEUE_BYTES (4u << 20)

/* Pareto with shape 3 (finite variance), scaled to mean 0 and standard deviation 1. */
#define PARETO_ALPHA 3.0
#define PARETO_MEAN 1.5
#define PARETO_SD 0.8660254037844386

double relay_jitter_sample(int distribution, double jitter_ns, double u1, double u2, double u3)
{
    const double normal = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    const double pareto = (pow(u3, -1.0 / PARETO_ALPHA) - PARETO_MEAN) / PARETO_SD;
    switch (distribution) {
    case JITTER_UNIFORM: return jitter_ns * (2.0 * u3 - 1.0);
    case JITTER_NORMAL: return jitter_ns * normal;
    case JITTER_PARETO: return jitter_ns * pareto;
    default: /* paretonormal, as netem mixes them: a quarter normal, three quarters pareto */
        return jitter_ns * (0.25 * normal + 0.75 * pareto) / sqrt(0.25 * 0.25 + 0.75 * 0.75);
    }
}

/* splitmix64: the relay's own seeded generator (shaper/ stays apart from core/). */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return ((double)(next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* (0, 1) */
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_port(const char *name, char *err, size_t errlen)
{
    unsigned idx = if_nametoindex(name);
    if (idx == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "relay: no interface %s here", name);
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: packet socket: %s", strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        close(fd);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: bind to %s: %s", name, strerror(errno));
    }
    return fd;
}

/* Frames held for their due time, oldest first (a ring of offsets into one byte buffer). */
typedef struct held {
    uint64_t due_ns;
    uint32_t offset, len;
} held;

typedef struct queue {
    held *slots;
    uint8_t *bytes;
    size_t cap_bytes, head, count, used_bytes, write_at;
} queue;

/* Where in the byte ring a frame of n bytes goes, or -1 when it does not fit (tail drop).
 * Queued frames lie from the head's offset onwards, possibly wrapping to the start. */
static long ring_place(const queue *q, size_t n)
{
    if (n > q->cap_bytes)
        return -1;
    if (q->count == 0)
        return 0;
    const size_t head = q->slots[q->head].offset;
    if (q->write_at > head) { /* not wrapped: room up to the end, else from the start up to head */
        if (q->write_at + n <= q->cap_bytes)
            return (long)q->write_at;
        return n <= head ? 0 : -1;
    }
    return q->write_at + n <= head ? (long)q->write_at : -1; /* wrapped: room up to head */
}

/* Reads one frame from fd into buf; 0 when none is waiting or it is our own outgoing copy. */
static ssize_t read_frame(int fd, uint8_t *buf)
{
    struct sockaddr_ll from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(fd, buf, MAX_FRAME, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    return from.sll_pkttype == PACKET_OUTGOING ? 0 : n;
}

int relay_run(const relay_options *o, int ready_fd, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    int fd_in = open_port(o->in, err, errlen);
    if (fd_in < 0)
        return fd_in;
    int fd_out = open_port(o->out, err, errlen);
    if (fd_out < 0) {
        close(fd_in);
        return fd_out;
    }
    queue q = {.cap_bytes = o->queue_bytes > 0 ? o->queue_bytes : DEFAULT_QUEUE_BYTES};
    q.slots = calloc(QUEUE_SLOTS, sizeof *q.slots);
    q.bytes = malloc(q.cap_bytes);
    uint8_t *frame = malloc(MAX_FRAME);
    if (q.slots == NULL || q.bytes == NULL || frame == NULL) {
        free(q.slots), free(q.bytes), free(frame);
        close(fd_in), close(fd_out);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "relay: out of memory");
    }
    if (ready_fd >= 0) {
        char one = 1;
        if (write(ready_fd, &one, 1) != 1) {
            /* the parent went away; run anyway until stopped */
        }
    }
    uint64_t rng = o->seed ^ 0xA0761D6478BD642Full, last_due = 0;
    const double loss = o->loss_ppm / 1e6;
    int rc = WANCP_OK;
    while (!*stop && rc == WANCP_OK) {
        /* send what is due */
        uint64_t now = now_ns();
        while (q.count > 0 && q.slots[q.head].due_ns <= now) {
            const held *h = &q.slots[q.head];
            if (send(fd_out, q.bytes + h->offset, h->len, 0) < 0 && errno != ENOBUFS && errno != EAGAIN)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: send on %s: %s", o->out, strerror(errno));
            q.used_bytes -= h->len;
            q.head = (q.head + 1) % QUEUE_SLOTS;
            q.count--;
            if (q.count == 0)
                q.write_at = 0, q.used_bytes = 0;
        }
        struct pollfd p[2] = {{.fd = fd_in, .events = POLLIN}, {.fd = fd_out, .events = POLLIN}};
        struct timespec wait = {.tv_sec = 0, .tv_nsec = 50000000}; /* look at *stop now and then */
        if (q.count > 0) {
            uint64_t due = q.slots[q.head].due_ns, t = now_ns();
            uint64_t left = due > t ? due - t : 0;
            if (left < 50000000ull)
                wait.tv_nsec = (long)left;
        }
        int ready = ppoll(p, 2, &wait, NULL);
        if (ready < 0 && errno != EINTR) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: poll: %s", strerror(errno));
            break;
        }
        /* towards the rank: at once */
        for (ssize_t n; (p[1].revents & POLLIN) && (n = read_frame(fd_out, frame)) > 0;)
            if (send(fd_in, frame, (size_t)n, 0) < 0 && errno != ENOBUFS && errno != EAGAIN)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: send on %s: %s", o->in, strerror(errno));
        /* from the rank: lost, or held until its delay has passed */
        for (ssize_t n; (p[0].revents & POLLIN) && (n = read_frame(fd_in, frame)) > 0;) {
            if (loss > 0 && uniform01(&rng) < loss)
                continue;
            double jitter = 0;
            if (o->jitter_ns > 0)
                jitter = relay_jitter_sample(o->distribution, (double)o->jitter_ns, uniform01(&rng), uniform01(&rng),
                                             uniform01(&rng));
            double delay = (double)o->delay_ns + jitter;
            uint64_t due = now_ns() + (uint64_t)(delay > 0 ? delay : 0);
            due = due < last_due ? last_due : due; /* one queue: no overtaking */
            last_due = due;
            long at = q.count < QUEUE_SLOTS ? ring_place(&q, (size_t)n) : -1;
            if (at < 0)
                continue; /* tail drop */
            size_t tail = (q.head + q.count) % QUEUE_SLOTS;
            q.slots[tail] = (held){.due_ns = due, .offset = (uint32_t)at, .len = (uint32_t)n};
            memcpy(q.bytes + at, frame, (size_t)n);
            q.write_at = (size_t)at + (size_t)n;
            q.used_bytes += (size_t)n;
            q.count++;
        }
    }
    free(q.slots), free(q.bytes), free(frame);
    close(fd_in), close(fd_out);
    return rc;
}
