/* The communicator's life: open (rendezvous through rank 0, then the full mesh: one connection
 * per peer and class, then the progress thread) and close. */
#include "comm_internal.h"

#include "../base/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Blocking I/O with a deadline on a socket that may be non-blocking. */
static int io_full(int fd, void *buf, size_t len, bool writing, double deadline)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0 && !writing)
            return -2; /* closed */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        int left = (int)((deadline - comm_now()) * 1000);
        if (left <= 0)
            return -3; /* timed out */
        struct pollfd p1 = {.fd = fd, .events = writing ? POLLOUT : POLLIN};
        poll(&p1, 1, left < 200 ? left : 200);
    }
    return 0;
}

static const char *io_reason(int rc)
{
    return rc == -2 ? "closed the connection" : rc == -3 ? "timed out" : strerror(errno);
}

static int send_frame(const comm *c, int fd, int cls, int kind, const void *payload, size_t len, double deadline)
{
    uint8_t header[FRAME_BYTES];
    frame f = {.cls = (uint8_t)cls, .kind = (uint8_t)kind, .job_id = c->opt.job_id, .seq = 0, .length = len};
    frame_encode(&f, header);
    int rc = io_full(fd, header, sizeof header, true, deadline);
    return rc == 0 && len > 0 ? io_full(fd, (void *)payload, len, true, deadline) : rc;
}

/* Reads a frame header and payload of exactly len bytes; refusals name peer. */
static int recv_frame(const comm *c, int fd, int cls, int kind, void *payload, size_t len, double deadline,
                      const char *peer, char *err, size_t errlen)
{
    uint8_t header[FRAME_BYTES];
    int rc = io_full(fd, header, sizeof header, false, deadline);
    if (rc != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s %s", peer, io_reason(rc));
    frame f;
    rc = frame_decode(header, c->opt.job_id, cls, kind, 0, len, &f, peer, err, errlen);
    if (rc == WANCP_OK && f.length != len)
        rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: payload of %llu bytes, expected %zu", peer,
                        (unsigned long long)f.length, len);
    if (rc != WANCP_OK)
        return rc;
    rc = io_full(fd, payload, len, false, deadline);
    return rc == 0 ? WANCP_OK : wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s %s", peer, io_reason(rc));
}

/* Waits at the door of listeners[0..n) until the deadline, or until a hello is whole:
 * returns its socket (h, cls and who filled), or -1 at the deadline. */
static int next_caller(const comm *c, comm_door *door, const int *listeners, const int *classes, int n, double deadline,
                       hello *h, int *cls, char *who, size_t wholen)
{
    for (;;) {
        int fd = comm_door_next(c, door, h, cls, who, wholen);
        if (fd >= 0)
            return fd;
        int left = (int)((deadline - comm_now()) * 1000);
        if (left <= 0)
            return -1;
        struct pollfd fds[COMM_NCLASSES + COMM_DOOR_SLOTS];
        for (int i = 0; i < n; i++)
            fds[i] = (struct pollfd){.fd = listeners[i], .events = POLLIN};
        int nfds = n + comm_door_pollfds(door, fds + n);
        poll(fds, (nfds_t)nfds, left < 100 ? left : 100);
        for (int i = 0; i < n; i++)
            if (fds[i].revents & POLLIN)
                comm_door_admit(c, door, listeners[i], classes[i]);
    }
}

static int listen_on(const char *ip, int port, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        close(fd);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "'%s' is not an IPv4 address", ip);
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot listen on %s:%d: %s", ip, port, strerror(e));
    }
    return fd;
}

/* Connects to ip:port, retrying until the deadline (the peer may not listen yet). */
static int connect_to(const char *host, int port, double deadline, char *err, size_t errlen)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "cannot resolve '%s': %s", host, gai_strerror(gai));
    int last = 0;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            freeaddrinfo(res);
            return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "socket: %s", strerror(errno));
        }
        if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
            freeaddrinfo(res);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        last = errno;
        close(fd);
        if (comm_now() > deadline)
            break;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    freeaddrinfo(res);
    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot connect to %s:%d within the timeout: %s", host, port,
                      strerror(last));
}

static int make_listeners(comm *c, const char *ip, char *err, size_t errlen)
{
    for (int cls = 0; cls < COMM_NCLASSES; cls++) {
        int fd = listen_on(ip, comm_port(&c->opt, c->opt.rank, cls), err, errlen);
        if (fd < 0)
            return fd;
        c->listeners[cls] = fd;
    }
    return WANCP_OK;
}

/* Rank 0: collects every rank's hello on the rendezvous port and answers with the table. */
static int rendezvous_root(comm *c, double deadline, char *err, size_t errlen)
{
    const int world = c->opt.world;
    int rv = listen_on(c->opt.master_addr, c->opt.master_port, err, errlen);
    if (rv < 0)
        return rv;
    int rc = make_listeners(c, c->opt.master_addr, err, errlen);
    int fds[COMM_MAX_RANKS];
    for (int r = 0; r < world; r++)
        fds[r] = -1;
    snprintf(c->addr[0], 64, "%s", c->opt.master_addr);
    comm_door door;
    comm_door_init(&door);
    const int rv_class = -1;
    for (int joined = 1; joined < world && rc == WANCP_OK;) {
        hello h;
        int cls;
        char who[96], why[WANCP_ERRLEN];
        int fd = next_caller(c, &door, &rv, &rv_class, 1, deadline, &h, &cls, who, sizeof who);
        if (fd < 0) {
            char missing[256] = "";
            size_t used = 0;
            for (int r = 1; r < world && used < sizeof missing; r++)
                if (fds[r] < 0)
                    used += (size_t)snprintf(missing + used, sizeof missing - used, " %d", r);
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "rendezvous: ranks%s did not join within the timeout",
                            missing);
            break;
        }
        if (h.world != (uint32_t)world || h.rank == 0 || h.rank >= (uint32_t)world || fds[h.rank] >= 0) {
            snprintf(why, sizeof why, "%s: claims rank %u of %u, which is not expected", who, h.rank, h.world);
            comm_door_refuse(c, fd, cls, why);
            continue;
        }
        fds[h.rank] = fd;
        snprintf(c->addr[h.rank], 64, "%s", h.addr);
        joined++;
    }
    comm_door_free(&door);
    if (rc == WANCP_OK) {
        for (int r = 1; r < world && rc == WANCP_OK; r++)
            if (send_frame(c, fds[r], COMM_CONTROL, FRAME_TABLE, c->addr, (size_t)world * 64, deadline) != 0)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "rendezvous: rank %d left before the table", r);
    }
    for (int r = 1; r < world; r++)
        if (fds[r] >= 0)
            close(fds[r]);
    close(rv);
    return rc;
}

/* Other ranks: call rank 0, learn the local address, listen, say hello, get the table. */
static int rendezvous_member(comm *c, double deadline, char *err, size_t errlen)
{
    int fd = connect_to(c->opt.master_addr, c->opt.master_port, deadline, err, errlen);
    if (fd < 0)
        return fd;
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    char ip[INET_ADDRSTRLEN] = "";
    getsockname(fd, (struct sockaddr *)&local, &len);
    inet_ntop(AF_INET, &local.sin_addr, ip, sizeof ip);
    int rc = make_listeners(c, ip, err, errlen);
    if (rc == WANCP_OK) {
        hello h = {.rank = (uint32_t)c->opt.rank, .world = (uint32_t)c->opt.world, .cls = COMM_CONTROL};
        snprintf(h.addr, sizeof h.addr, "%s", ip);
        uint8_t payload[HELLO_BYTES];
        hello_encode(&h, payload);
        if (send_frame(c, fd, COMM_CONTROL, FRAME_HELLO, payload, sizeof payload, deadline) != 0)
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "rendezvous: rank 0 at %s:%d closed the connection",
                            c->opt.master_addr, c->opt.master_port);
    }
    if (rc == WANCP_OK) {
        char peer[96];
        snprintf(peer, sizeof peer, "rank 0 (%s:%d)", c->opt.master_addr, c->opt.master_port);
        rc = recv_frame(c, fd, COMM_CONTROL, FRAME_TABLE, c->addr, (size_t)c->opt.world * 64, deadline, peer, err,
                        errlen);
        for (int r = 0; r < c->opt.world && rc == WANCP_OK; r++)
            c->addr[r][63] = 0;
    }
    close(fd);
    return rc;
}

static void name_conn(comm *c, conn *cn)
{
    snprintf(cn->name, sizeof cn->name, "rank %d (%s), %s", cn->peer, c->addr[cn->peer], comm_class_name(cn->cls));
}

static int setup(comm *c, char *err, size_t errlen)
{
    const double deadline = comm_now() + c->opt.timeout_ms / 1000.0;
    const int rank = c->opt.rank, world = c->opt.world;
    int rc = rank == 0 ? rendezvous_root(c, deadline, err, errlen) : rendezvous_member(c, deadline, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    /* Call every lower rank (the kernel completes the handshake before they accept). */
    for (int peer = 0; peer < rank && rc == WANCP_OK; peer++)
        for (int cls = 0; cls < COMM_NCLASSES && rc == WANCP_OK; cls++) {
            conn *cn = comm_conn(c, peer, cls);
            int fd = connect_to(c->addr[peer], comm_port(&c->opt, peer, cls), deadline, err, errlen);
            if (fd < 0)
                return fd;
            cn->fd = fd;
            hello h = {.rank = (uint32_t)rank, .world = (uint32_t)world, .cls = (uint32_t)cls};
            uint8_t payload[HELLO_BYTES];
            hello_encode(&h, payload);
            if (send_frame(c, fd, cls, FRAME_HELLO, payload, sizeof payload, deadline) != 0)
                rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "rank %d (%s) closed the connection during setup", peer,
                                c->addr[peer]);
        }
    /* Accept every higher rank on every class at once; strangers are refused and logged. */
    comm_door door;
    comm_door_init(&door);
    int classes[COMM_NCLASSES];
    for (int cls = 0; cls < COMM_NCLASSES; cls++)
        classes[cls] = cls;
    for (int joined = 0; joined < (world - rank - 1) * COMM_NCLASSES && rc == WANCP_OK;) {
        hello h;
        int cls;
        char who[96], why[WANCP_ERRLEN];
        int fd = next_caller(c, &door, c->listeners, classes, COMM_NCLASSES, deadline, &h, &cls, who, sizeof who);
        if (fd < 0) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM,
                            "mesh: %d of the connections from higher ranks did not arrive within the timeout",
                            (world - rank - 1) * COMM_NCLASSES - joined);
            break;
        }
        if (h.rank <= (uint32_t)rank || h.rank >= (uint32_t)world || h.cls != (uint32_t)cls ||
            comm_conn(c, (int)h.rank, cls)->fd >= 0) {
            snprintf(why, sizeof why, "%s: claims rank %u class %u, which is not expected", who, h.rank, h.cls);
            comm_door_refuse(c, fd, cls, why);
            continue;
        }
        comm_conn(c, (int)h.rank, cls)->fd = fd;
        joined++;
    }
    comm_door_free(&door);
    if (rc != WANCP_OK)
        return rc;
    for (int peer = 0; peer < world; peer++)
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            if (peer != rank)
                name_conn(c, comm_conn(c, peer, cls));
    return rc;
}

/* ---- open and close: rendezvous and mesh first, then the progress thread ---- */

int comm_open(comm **out, const comm_options *o, char *err, size_t errlen)
{
    *out = NULL;
    if (o->world < 1 || o->world > COMM_MAX_RANKS || o->rank < 0 || o->rank >= o->world)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "rank %d of %d: need 0 <= rank < world <= %d", o->rank,
                          o->world, COMM_MAX_RANKS);
    comm *c = calloc(1, sizeof *c);
    if (c == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the communicator");
    c->opt = *o;
    c->wake[0] = c->wake[1] = -1;
    comm_door_init(&c->door);
    for (int cls = 0; cls < COMM_NCLASSES; cls++)
        c->listeners[cls] = -1;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    for (int i = COMM_REQUESTS - 1; i >= 0; i--) {
        c->requests[i].next = c->free_requests;
        c->free_requests = &c->requests[i];
    }
    c->conns = calloc((size_t)o->world * COMM_NCLASSES, sizeof *c->conns);
    c->addr = calloc((size_t)o->world, sizeof *c->addr);
    if (c->conns == NULL || c->addr == NULL) {
        comm_close(c);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the communicator");
    }
    for (int p = 0; p < o->world; p++)
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            *comm_conn(c, p, cls) = (conn){.fd = -1, .peer = p, .cls = cls};
    int rc = WANCP_OK;
    if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "pipe: %s", strerror(errno));
    if (rc == WANCP_OK && o->world > 1)
        rc = setup(c, err, errlen);
    if (rc == WANCP_OK && comm_progress_start(c) != 0)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "cannot start the progress thread");
    if (rc == WANCP_OK)
        rc = comm_barrier(c, err, errlen);
    if (rc != WANCP_OK) {
        comm_close(c);
        return rc;
    }
    *out = c;
    return WANCP_OK;
}

void comm_close(comm *c)
{
    if (c == NULL)
        return;
    comm_progress_stop(c);
    comm_door_free(&c->door);
    for (int i = 0; c->conns != NULL && i < c->opt.world * COMM_NCLASSES; i++)
        if (c->conns[i].fd >= 0)
            close(c->conns[i].fd);
    for (int cls = 0; cls < COMM_NCLASSES; cls++)
        if (c->listeners[cls] >= 0)
            close(c->listeners[cls]);
    if (c->wake[0] >= 0) {
        close(c->wake[0]);
        close(c->wake[1]);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c->conns);
    free(c->addr);
    free(c->scratch);
    free(c);
}
