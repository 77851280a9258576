/* Rendezvous through rank 0, then the full mesh: one connection per peer and class. */
#include "comm_internal.h"

#include "../status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What a caller says first: who it is, for which class, and (rendezvous) its address. */
typedef struct hello {
    uint32_t rank, world, cls;
    char addr[64];
} hello;
#define HELLO_BYTES (12 + 64)

static void hello_encode(const hello *h, uint8_t *out)
{
    memset(out, 0, HELLO_BYTES);
    for (int i = 0; i < 4; i++) {
        out[i] = (uint8_t)(h->rank >> (8 * i));
        out[4 + i] = (uint8_t)(h->world >> (8 * i));
        out[8 + i] = (uint8_t)(h->cls >> (8 * i));
    }
    memcpy(out + 12, h->addr, strnlen(h->addr, 63));
}

static void hello_decode(const uint8_t *in, hello *h)
{
    h->rank = h->world = h->cls = 0;
    for (int i = 0; i < 4; i++) {
        h->rank |= (uint32_t)in[i] << (8 * i);
        h->world |= (uint32_t)in[4 + i] << (8 * i);
        h->cls |= (uint32_t)in[8 + i] << (8 * i);
    }
    memcpy(h->addr, in + 12, 63);
    h->addr[63] = 0;
}

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

static void describe_peer(int fd, char *buf, size_t len)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    char ip[INET_ADDRSTRLEN] = "?";
    if (getpeername(fd, (struct sockaddr *)&a, &alen) == 0)
        inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(buf, len, "connection from %s:%d", ip, alen == sizeof a ? ntohs(a.sin_port) : 0);
}

/* Reads the hello a new connection must start with; who names it for errors. */
static int read_hello(const comm *c, int fd, int cls, hello *h, char *who, size_t who_len, char *why, size_t why_len)
{
    describe_peer(fd, who, who_len);
    uint8_t payload[HELLO_BYTES];
    int rc = recv_frame(c, fd, cls, FRAME_HELLO, payload, sizeof payload, comm_now() + 5.0, who, why, why_len);
    if (rc == WANCP_OK)
        hello_decode(payload, h);
    return rc;
}

/* Closes a connection that is not welcome, saying why; the job goes on. */
static void refuse(const comm *c, int fd, const char *why)
{
    fprintf(stderr, "wancp comm: rank %d refused a %s\n", c->opt.rank, why);
    close(fd);
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

/* Accepts one connection on a listener, waiting until the deadline. */
static int accept_until(int listener, double deadline)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        int left = (int)((deadline - comm_now()) * 1000);
        if (left <= 0)
            return -3;
        struct pollfd p = {.fd = listener, .events = POLLIN};
        poll(&p, 1, left < 200 ? left : 200);
    }
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
    for (int joined = 1; joined < world && rc == WANCP_OK;) {
        int fd = accept_until(rv, deadline);
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
        char who[96], why[WANCP_ERRLEN];
        hello h;
        int got = read_hello(c, fd, COMM_CONTROL, &h, who, sizeof who, why, sizeof why);
        if (got == WANCP_OK &&
            (h.world != (uint32_t)world || h.rank == 0 || h.rank >= (uint32_t)world || fds[h.rank] >= 0)) {
            snprintf(why, sizeof why, "%s: claims rank %u of %u, which is not expected", who, h.rank, h.world);
            got = WANCP_ERR_INPUT;
        }
        if (got != WANCP_OK) {
            refuse(c, fd, why);
            continue;
        }
        fds[h.rank] = fd;
        snprintf(c->addr[h.rank], 64, "%s", h.addr);
        joined++;
    }
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

int comm_setup(comm *c, char *err, size_t errlen)
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
    /* Accept every higher rank, class by class; strangers are refused and logged. */
    for (int cls = 0; cls < COMM_NCLASSES && rc == WANCP_OK; cls++)
        for (int joined = rank + 1; joined < world && rc == WANCP_OK;) {
            int fd = accept_until(c->listeners[cls], deadline);
            if (fd < 0)
                return wancp_fail(err, errlen, WANCP_ERR_SYSTEM,
                                  "mesh: %d higher ranks did not connect for class %s within the timeout",
                                  world - joined, comm_class_name(cls));
            char who[96], why[WANCP_ERRLEN];
            hello h;
            int got = read_hello(c, fd, cls, &h, who, sizeof who, why, sizeof why);
            if (got == WANCP_OK && (h.rank <= (uint32_t)rank || h.rank >= (uint32_t)world || h.cls != (uint32_t)cls ||
                                    comm_conn(c, (int)h.rank, cls)->fd >= 0)) {
                snprintf(why, sizeof why, "%s: claims rank %u class %u, which is not expected", who, h.rank, h.cls);
                got = WANCP_ERR_INPUT;
            }
            if (got != WANCP_OK) {
                refuse(c, fd, why);
                continue;
            }
            comm_conn(c, (int)h.rank, cls)->fd = fd;
            joined++;
        }
    for (int peer = 0; peer < world; peer++)
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            if (peer != rank)
                name_conn(c, comm_conn(c, peer, cls));
    return rc;
}
