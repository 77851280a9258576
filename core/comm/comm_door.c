/* The door: connections that have arrived but have not yet said who they are. */
#include "comm_internal.h"

#include "../base/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void comm_door_init(comm_door *d)
{
    for (int i = 0; i < COMM_DOOR_SLOTS; i++)
        d->guests[i].fd = -1;
}

void comm_door_refuse(const comm *c, int fd, int cls, const char *why)
{
    fprintf(stderr, "wancp comm: rank %d refused a connection on its %s port: %s\n", c->opt.rank,
            cls < 0 ? "rendezvous" : comm_class_name(cls), why);
    close(fd);
}

static void turn_away(const comm *c, door_guest *g, const char *why)
{
    comm_door_refuse(c, g->fd, g->cls, why);
    g->fd = -1;
}

void comm_door_free(comm_door *d)
{
    for (int i = 0; i < COMM_DOOR_SLOTS; i++)
        if (d->guests[i].fd >= 0) {
            close(d->guests[i].fd);
            d->guests[i].fd = -1;
        }
}

static void describe_peer(int fd, char *buf, size_t len)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    char ip[INET_ADDRSTRLEN] = "?";
    if (getpeername(fd, (struct sockaddr *)&a, &alen) == 0)
        inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(buf, len, "%s:%d", ip, alen == sizeof a ? ntohs(a.sin_port) : 0);
}

static int hear(const comm *c, door_guest *g, double now);

/* A slot for a newcomer: a free one, or else, after hearing everyone, the one that has sent
 * the least and waited longest among those without a whole hello (a rank's hello comes
 * with its connection; a caller that stays silent while the door fills is not a rank).
 * NULL when every guest has a whole hello waiting to be collected. */
static door_guest *free_slot(const comm *c, comm_door *d)
{
    double now = comm_now();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < COMM_DOOR_SLOTS; i++) {
            door_guest *g = &d->guests[i];
            if (g->fd < 0 || (pass == 1 && hear(c, g, now) < 0))
                return g;
        }
    door_guest *victim = NULL;
    for (int i = 0; i < COMM_DOOR_SLOTS; i++) {
        door_guest *g = &d->guests[i];
        if (g->got < FRAME_BYTES + HELLO_BYTES &&
            (victim == NULL || g->got < victim->got || (g->got == victim->got && g->deadline < victim->deadline)))
            victim = g;
    }
    if (victim != NULL) {
        char why[WANCP_ERRLEN];
        snprintf(why, sizeof why, "%s: %zu bytes, no hello, while %d more callers arrived", victim->who, victim->got,
                 COMM_DOOR_SLOTS);
        turn_away(c, victim, why);
    }
    return victim;
}

void comm_door_admit(const comm *c, comm_door *d, int listener, int cls)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return; /* EAGAIN: nobody else waits; anything else: the listener's problem, seen at poll */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        door_guest *slot = free_slot(c, d);
        if (slot == NULL) { /* everyone at the door has said hello: they go first */
            char who[96], why[WANCP_ERRLEN];
            describe_peer(fd, who, sizeof who);
            snprintf(why, sizeof why, "%s: %d callers wait at the door already", who, COMM_DOOR_SLOTS);
            comm_door_refuse(c, fd, cls, why);
            continue;
        }
        *slot = (door_guest){.fd = fd, .cls = cls, .deadline = comm_now() + COMM_DOOR_WAIT_S};
        describe_peer(fd, slot->who, sizeof slot->who);
        wancp_text_clean(slot->who);
    }
}

int comm_door_pollfds(const comm_door *d, struct pollfd *fds)
{
    int n = 0;
    for (int i = 0; i < COMM_DOOR_SLOTS; i++)
        if (d->guests[i].fd >= 0)
            fds[n++] = (struct pollfd){.fd = d->guests[i].fd, .events = POLLIN};
    return n;
}

/* Reads what g has sent without waiting; 1 when its hello is whole, 0 when more is due, -1
 * when it was turned away (closed, refused frame, time up). */
static int hear(const comm *c, door_guest *g, double now)
{
    char why[WANCP_ERRLEN];
    for (;;) {
        size_t want = g->got < FRAME_BYTES ? FRAME_BYTES : FRAME_BYTES + HELLO_BYTES;
        if (g->got == want)
            break;
        ssize_t n = recv(g->fd, g->bytes + g->got, want - g->got, MSG_DONTWAIT);
        if (n > 0) {
            g->got += (size_t)n;
            if (g->got == FRAME_BYTES) { /* judge the header before reading on */
                frame f;
                if (frame_decode(g->bytes, c->opt.job_id, g->cls < 0 ? COMM_CONTROL : g->cls, FRAME_HELLO, 0,
                                 HELLO_BYTES, &f, g->who, why, sizeof why) != WANCP_OK ||
                    (f.length != HELLO_BYTES && snprintf(why, sizeof why, "%s: a hello of %llu bytes, expected %d",
                                                         g->who, (unsigned long long)f.length, HELLO_BYTES) > 0)) {
                    turn_away(c, g, why);
                    return -1;
                }
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (now < g->deadline)
                return 0;
            snprintf(why, sizeof why, "%s: sent %zu bytes in %.0f s, not a hello", g->who, g->got, COMM_DOOR_WAIT_S);
        } else {
            snprintf(why, sizeof why, "%s: %s after %zu bytes, before a whole hello", g->who,
                     n == 0 ? "closed" : strerror(errno), g->got);
        }
        turn_away(c, g, why);
        return -1;
    }
    return 1;
}

int comm_door_next(const comm *c, comm_door *d, hello *h, int *cls, char *who, size_t wholen)
{
    double now = comm_now();
    for (int i = 0; i < COMM_DOOR_SLOTS; i++) {
        door_guest *g = &d->guests[i];
        if (g->fd < 0 || hear(c, g, now) != 1)
            continue;
        hello_decode(g->bytes + FRAME_BYTES, h);
        *cls = g->cls;
        snprintf(who, wholen, "%s", g->who);
        int fd = g->fd;
        g->fd = -1;
        return fd;
    }
    return -1;
}
