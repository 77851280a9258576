#include "relay.h"

#include "../core/base/status.h"
#include "profile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
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
    int big = 8 << 20, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
#ifdef PACKET_IGNORE_OUTGOING
    /* The frames we send would come back to us as outgoing copies: not reading them halves
     * the relay's receive work (read_frames drops them where the kernel cannot). */
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
#else
    (void)one;
#endif
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

/* Frames move in batches, one system call for up to BATCH of them: at 1 Gbit/s a frame
 * arrives every 12 us. */
#define BATCH 32
#define WAKE_NS 100000ull

typedef struct batch {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_ll from[BATCH];
    uint8_t *frames; /* BATCH x MAX_FRAME */
} batch;

/* Reads up to BATCH waiting frames from fd; our own outgoing copies get length 0. The count
 * read, 0 when none is waiting, -1 on an error. */
static int read_frames(int fd, batch *b)
{
    for (int i = 0; i < BATCH; i++) {
        b->iov[i] = (struct iovec){.iov_base = b->frames + (size_t)i * MAX_FRAME, .iov_len = MAX_FRAME};
        b->msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &b->from[i], .msg_namelen = sizeof b->from[i], .msg_iov = &b->iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, b->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++)
        if (b->from[i].sll_pkttype == PACKET_OUTGOING)
            b->msgs[i].msg_len = 0;
    return n;
}

/* Sends n frames (m[i].msg_hdr set) on fd. A frame the interface's queue refuses (ENOBUFS,
 * EAGAIN) is lost, as on a wire; 0, or -1 on another error. */
static int send_frames(int fd, struct mmsghdr *m, int n)
{
    for (int done = 0; done < n;) {
        int k = sendmmsg(fd, m + done, (unsigned)(n - done), 0);
        if (k > 0)
            done += k;
        else if (k < 0 && (errno == ENOBUFS || errno == EAGAIN))
            done++;
        else if (k < 0 && errno != EINTR)
            return -1;
    }
    return 0;
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
    batch *b = calloc(1, sizeof *b);
    uint8_t *frames = malloc((size_t)BATCH * MAX_FRAME);
    if (b != NULL)
        b->frames = frames;
    if (q.slots == NULL || q.bytes == NULL || b == NULL || frames == NULL) {
        free(q.slots), free(q.bytes), free(b), free(frames);
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
    bool moved = false; /* frames were read in the last round */
    while (!*stop && rc == WANCP_OK) {
        /* While frames flow, wake at most once per WAKE_NS: one wake per frame would make the
         * relay, not the profile, set the rate at 1 Gbit/s on two cores. Frames wait in the
         * sockets meanwhile; each leaves at most WAKE_NS late. */
        if (moved) {
            struct timespec nap = {.tv_sec = 0, .tv_nsec = (long)WAKE_NS};
            nanosleep(&nap, NULL);
            moved = false;
        }
        /* send what is due, a batch at a time */
        for (uint64_t now = now_ns(); q.count > 0 && q.slots[q.head].due_ns <= now && rc == WANCP_OK;) {
            struct mmsghdr out[BATCH];
            struct iovec iov[BATCH];
            int k = 0;
            for (size_t at = q.head; k < BATCH && (size_t)k < q.count && q.slots[at].due_ns <= now;
                 at = (at + 1) % QUEUE_SLOTS, k++) {
                iov[k] = (struct iovec){.iov_base = q.bytes + q.slots[at].offset, .iov_len = q.slots[at].len};
                out[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
            }
            if (send_frames(fd_out, out, k) != 0)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: send on %s: %s", o->out, strerror(errno));
            for (int i = 0; i < k; i++) {
                q.used_bytes -= q.slots[q.head].len;
                q.head = (q.head + 1) % QUEUE_SLOTS;
                q.count--;
            }
            if (q.count == 0)
                q.write_at = 0, q.used_bytes = 0;
        }
        struct pollfd p[2] = {{.fd = fd_in, .events = POLLIN}, {.fd = fd_out, .events = POLLIN}};
        struct timespec wait = {.tv_sec = 0, .tv_nsec = 50000000}; /* look at *stop now and then */
        if (q.count > 0) {
            uint64_t due = q.slots[q.head].due_ns, t = now_ns();
            uint64_t left = due > t ? due - t : 0;
            left = left > 0 && left < WAKE_NS ? WAKE_NS : left; /* frames due meanwhile leave together */
            if (left < 50000000ull)
                wait.tv_nsec = (long)left;
        }
        int ready = ppoll(p, 2, &wait, NULL);
        if (ready < 0 && errno != EINTR) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: poll: %s", strerror(errno));
            break;
        }
        /* towards the rank: at once */
        for (int n = (p[1].revents & POLLIN) ? BATCH : 0; n == BATCH && rc == WANCP_OK;) {
            n = read_frames(fd_out, b);
            moved = moved || n > 0;
            struct mmsghdr out[BATCH];
            int k = 0;
            for (int i = 0; i < n; i++)
                if (b->msgs[i].msg_len > 0) {
                    b->iov[i].iov_len = b->msgs[i].msg_len;
                    out[k++].msg_hdr = (struct msghdr){.msg_iov = &b->iov[i], .msg_iovlen = 1};
                }
            if (n < 0 || send_frames(fd_in, out, k) != 0)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: %s on %s: %s", n < 0 ? "receive" : "send",
                                n < 0 ? o->out : o->in, strerror(errno));
        }
        /* from the rank: lost, or held until its delay has passed */
        for (int n = (p[0].revents & POLLIN) ? BATCH : 0; n == BATCH && rc == WANCP_OK;) {
            n = read_frames(fd_in, b);
            moved = moved || n > 0;
            if (n < 0)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "relay: receive on %s: %s", o->in, strerror(errno));
            const uint64_t arrived = now_ns();
            for (int i = 0; i < n; i++) {
                const size_t len = b->msgs[i].msg_len;
                if (len == 0 || (loss > 0 && uniform01(&rng) < loss))
                    continue;
                double jitter = 0;
                if (o->jitter_ns > 0)
                    jitter = relay_jitter_sample(o->distribution, (double)o->jitter_ns, uniform01(&rng),
                                                 uniform01(&rng), uniform01(&rng));
                double delay = (double)o->delay_ns + jitter;
                uint64_t due = arrived + (uint64_t)(delay > 0 ? delay : 0);
                due = due < last_due ? last_due : due; /* one queue: no overtaking */
                last_due = due;
                long at = q.count < QUEUE_SLOTS ? ring_place(&q, len) : -1;
                if (at < 0)
                    continue; /* tail drop */
                size_t tail = (q.head + q.count) % QUEUE_SLOTS;
                q.slots[tail] = (held){.due_ns = due, .offset = (uint32_t)at, .len = (uint32_t)len};
                memcpy(q.bytes + at, b->iov[i].iov_base, len);
                q.write_at = (size_t)at + len;
                q.used_bytes += len;
                q.count++;
            }
        }
    }
    free(q.slots), free(q.bytes), free(b), free(frames);
    close(fd_in), close(fd_out);
    return rc;
}
