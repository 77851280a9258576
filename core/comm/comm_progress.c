/* The progress thread that moves every byte of non-blocking sends and receives, checks every
 * frame, refuses strangers at the door and notices dead or stalled peers; the requests that
 * feed it. Opening and closing the communicator is comm_setup.c's. */
#include "comm_internal.h"

#include "../base/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double comm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *comm_class_name(int cls)
{
    static const char *const names[COMM_NCLASSES] = {"kv-forward", "kv-backward", "weight-sync", "control"};
    return cls >= 0 && cls < COMM_NCLASSES ? names[cls] : "?";
}

void comm_fail_locked(comm *c, const char *fmt, ...)
{
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        va_end(ap);
        c->failed = true;
    }
    pthread_cond_broadcast(&c->changed);
}

static void wake(comm *c)
{
    char b = 1;
    if (write(c->wake[1], &b, 1) < 0) {
        /* the pipe is full: the thread is already due to wake */
    }
}

/* ---- the progress thread ---- */

static void complete(comm *c, conn *cn, bool is_send)
{
    struct comm_request **head = is_send ? &cn->sends : &cn->recvs;
    struct comm_request **tail = is_send ? &cn->sends_tail : &cn->recvs_tail;
    struct comm_request *r = *head;
    *head = r->next;
    if (*head == NULL)
        *tail = NULL;
    r->next = NULL;
    r->complete = true;
    if (is_send) {
        cn->counts.tx_bytes += r->len;
        cn->counts.tx_frames++;
    } else {
        cn->counts.rx_bytes += r->len;
        cn->counts.rx_frames++;
    }
    pthread_cond_broadcast(&c->changed);
}

/* Moves as much of the head send as the socket takes. */
static void progress_send(comm *c, conn *cn, double now)
{
    while (cn->sends != NULL) {
        struct comm_request *r = cn->sends;
        ssize_t n;
        if (r->header_done < FRAME_BYTES)
            n = send(cn->fd, r->header + r->header_done, FRAME_BYTES - r->header_done, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = r->len == r->done ? 0
                                  : send(cn->fd, r->send_buf + r->done, r->len - r->done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            comm_fail_locked(c, "%s: connection lost while sending (%s): the rank exited or crashed", cn->name,
                             strerror(errno));
            return;
        }
        cn->last_progress = now;
        if (r->header_done < FRAME_BYTES)
            r->header_done += (size_t)n;
        else
            r->done += (size_t)n;
        if (r->header_done == FRAME_BYTES && r->done == r->len)
            complete(c, cn, true);
    }
}

/* A summing receive's payload goes through the bounce buffer: n new bytes after the part
 * of a float left from the last read; every whole float is summed into place while it is
 * still in cache, and what is left of a float waits for the next read. */
static void add_into(float *restrict sum, const float *restrict arrived, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum[i] += arrived[i];
}

static void add_apart(float *restrict sum, const float *restrict arrived, const float *restrict add, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum[i] = arrived[i] + add[i];
}

static void sum_arrived(comm *c, struct comm_request *r, size_t part, size_t n)
{
    const size_t total = part + n, whole = total / sizeof(float), first = (r->done - part) / sizeof(float);
    float *sum = (float *)(void *)r->recv_buf + first;
    const float *add = r->add + first;
    /* the same float sum either way: arrived + add, one rounding (in place or apart) */
    if (sum == add)
        add_into(sum, c->bounce, whole);
    else
        add_apart(sum, c->bounce, add, whole);
    memcpy(r->partial, (uint8_t *)c->bounce + whole * sizeof(float), total % sizeof(float));
    r->done += n;
}

/* Reads into the head receive: the header first (checked), then the payload in place (or,
 * for a summing receive, through the bounce buffer). */
static void progress_recv(comm *c, conn *cn, double now)
{
    while (cn->recvs != NULL) {
        struct comm_request *r = cn->recvs;
        ssize_t n;
        size_t part = r->done % sizeof(float);
        if (r->header_done < FRAME_BYTES)
            n = recv(cn->fd, r->header + r->header_done, FRAME_BYTES - r->header_done, MSG_DONTWAIT);
        else if (r->len == r->done)
            n = 1;
        else if (r->add != NULL) {
            uint8_t *landing = (uint8_t *)c->bounce;
            size_t room = sizeof c->bounce - part, want = r->len - r->done < room ? r->len - r->done : room;
            memcpy(landing, r->partial, part);
            n = recv(cn->fd, landing + part, want, MSG_DONTWAIT);
        } else
            n = recv(cn->fd, r->recv_buf + r->done, r->len - r->done, MSG_DONTWAIT);
        if (n == 0) {
            comm_fail_locked(c, "%s closed the connection: the rank exited or crashed", cn->name);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            comm_fail_locked(c, "%s: connection lost (%s): the rank exited or crashed", cn->name, strerror(errno));
            return;
        }
        cn->last_progress = now;
        if (r->header_done < FRAME_BYTES) {
            r->header_done += (size_t)n;
            if (r->header_done == FRAME_BYTES) {
                frame f;
                char why[WANCP_ERRLEN];
                if (frame_decode(r->header, c->opt.job_id, cn->cls, FRAME_DATA, cn->recv_seq, r->len, &f, cn->name, why,
                                 sizeof why) != WANCP_OK) {
                    comm_fail_locked(c, "%s", why);
                    return;
                }
                if (f.length != r->len) {
                    comm_fail_locked(c, "%s: sent %llu bytes where %zu were expected (ranks disagree on the step)",
                                     cn->name, (unsigned long long)f.length, r->len);
                    return;
                }
                cn->recv_seq++;
            }
        } else if (r->len > r->done && r->add != NULL) {
            sum_arrived(c, r, part, (size_t)n);
        } else if (r->len > r->done) {
            r->done += (size_t)n;
        }
        if (r->header_done == FRAME_BYTES && r->done == r->len)
            complete(c, cn, false);
    }
}

void *comm_progress_main(void *arg)
{
    comm *c = arg;
    const int world = c->opt.world, npoll = 1 + COMM_NCLASSES + world * COMM_NCLASSES + COMM_DOOR_SLOTS;
    struct pollfd *fds = calloc((size_t)npoll, sizeof *fds);
    conn **owner = calloc((size_t)npoll, sizeof *owner);
    if (fds == NULL || owner == NULL) {
        pthread_mutex_lock(&c->lock);
        comm_fail_locked(c, "rank %d: out of memory in the progress thread", c->opt.rank);
        pthread_mutex_unlock(&c->lock);
        free(fds);
        free(owner);
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = c->wake[0], .events = POLLIN};
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            fds[n++] = (struct pollfd){.fd = c->listeners[cls], .events = POLLIN};
        const int first_conn = n;
        for (int i = 0; i < world * COMM_NCLASSES; i++) {
            conn *cn = &c->conns[i];
            if (cn->fd < 0 || (cn->sends == NULL && cn->recvs == NULL) || c->failed)
                continue;
            owner[n] = cn;
            fds[n++] =
                (struct pollfd){.fd = cn->fd, .events = (short)((cn->sends ? POLLOUT : 0) | (cn->recvs ? POLLIN : 0))};
        }
        const int nconn = n;
        n += comm_door_pollfds(&c->door, fds + n);
        pthread_mutex_unlock(&c->lock);
        poll(fds, (nfds_t)n, 100);
        pthread_mutex_lock(&c->lock);
        if (fds[0].revents & POLLIN) {
            char drain[64];
            while (read(c->wake[0], drain, sizeof drain) > 0)
                ;
        }
        /* Every caller now is a stranger: heard without waiting, named, refused. */
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            if (fds[1 + cls].revents & POLLIN)
                comm_door_admit(c, &c->door, c->listeners[cls], cls);
        hello h;
        int cls;
        char who[96], why[WANCP_ERRLEN];
        for (int fd; (fd = comm_door_next(c, &c->door, &h, &cls, who, sizeof who)) >= 0;) {
            snprintf(why, sizeof why, "%s: says it is rank %u, but the mesh is complete; no connection is expected",
                     who, h.rank);
            comm_door_refuse(c, fd, cls, why);
        }
        double now = comm_now();
        for (int i = first_conn; i < nconn && !c->failed; i++) {
            conn *cn = owner[i];
            if (fds[i].revents & (POLLOUT | POLLERR | POLLHUP))
                progress_send(c, cn, now);
            if (!c->failed && fds[i].revents & (POLLIN | POLLERR | POLLHUP))
                progress_recv(c, cn, now);
        }
        /* Stalls: data pending for longer than the timeout without a byte moving. */
        for (int i = 0; i < world * COMM_NCLASSES && !c->failed; i++) {
            conn *cn = &c->conns[i];
            if ((cn->sends || cn->recvs) && now - cn->last_progress > c->opt.timeout_ms / 1000.0)
                comm_fail_locked(c, "%s: nothing %s for %.0f s: the rank is stalled or unreachable", cn->name,
                                 cn->recvs ? "received" : "sent", now - cn->last_progress);
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(fds);
    free(owner);
    return NULL;
}

/* ---- requests ---- */

static int post(comm *c, int peer, int cls, bool is_send, const void *buf, const float *add, size_t len,
                comm_request **req, char *err, size_t errlen)
{
    if (peer < 0 || peer >= c->opt.world || peer == c->opt.rank || cls < 0 || cls >= COMM_NCLASSES)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "rank %d: no connection to rank %d in class %d", c->opt.rank,
                          peer, cls);
    pthread_mutex_lock(&c->lock);
    int rc = WANCP_OK;
    struct comm_request *r = c->free_requests;
    if (c->failed)
        rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", c->error);
    else if (r == NULL)
        rc = wancp_fail(err, errlen, WANCP_ERR_NOMEM, "rank %d: more than %d requests in flight", c->opt.rank,
                        COMM_REQUESTS);
    if (rc != WANCP_OK) {
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    c->free_requests = r->next;
    conn *cn = comm_conn(c, peer, cls);
    *r = (struct comm_request){.cn = cn, .is_send = is_send, .len = len};
    if (is_send) {
        r->send_buf = buf;
        frame f = {
            .cls = (uint8_t)cls, .kind = FRAME_DATA, .job_id = c->opt.job_id, .seq = cn->send_seq++, .length = len};
        frame_encode(&f, r->header);
    } else {
        r->recv_buf = (uint8_t *)buf;
        r->add = add;
    }
    struct comm_request **head = is_send ? &cn->sends : &cn->recvs,
                        **tail = is_send ? &cn->sends_tail : &cn->recvs_tail;
    if (*head == NULL && (is_send ? cn->recvs : cn->sends) == NULL)
        cn->last_progress = comm_now(); /* the stall clock starts when work appears */
    if (*tail != NULL)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
    pthread_mutex_unlock(&c->lock);
    wake(c);
    *req = r;
    return WANCP_OK;
}

int comm_isend(comm *c, int peer, int cls, const void *buf, size_t len, comm_request **req, char *err, size_t errlen)
{
    return post(c, peer, cls, true, buf, NULL, len, req, err, errlen);
}

int comm_irecv(comm *c, int peer, int cls, void *buf, size_t len, comm_request **req, char *err, size_t errlen)
{
    return post(c, peer, cls, false, buf, NULL, len, req, err, errlen);
}

int comm_irecv_sum(comm *c, int peer, int cls, const float *add, float *sum, size_t count, comm_request **req,
                   char *err, size_t errlen)
{
    return post(c, peer, cls, false, sum, add, count * sizeof *sum, req, err, errlen);
}

int comm_wait_all(comm *c, comm_request **reqs, int n, char *err, size_t errlen)
{
    if (n == 0)
        return WANCP_OK;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n && !c->failed; i++) {
        if (reqs[i]->complete)
            continue;
        const double t0 = comm_now();
        while (!reqs[i]->complete && !c->failed)
            pthread_cond_wait(&c->changed, &c->lock);
        c->blocked_s[reqs[i]->cn->cls] += comm_now() - t0; /* exposed communication */
    }
    int rc = c->failed ? wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", c->error) : WANCP_OK;
    /* After a failure requests may still sit in queues; the communicator is unusable then,
     * and comm_close releases everything. */
    for (int i = 0; i < n && !c->failed; i++) {
        reqs[i]->next = c->free_requests;
        c->free_requests = reqs[i];
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int comm_wait(comm *c, comm_request *req, char *err, size_t errlen) { return comm_wait_all(c, &req, 1, err, errlen); }

int comm_send(comm *c, int peer, int cls, const void *buf, size_t len, char *err, size_t errlen)
{
    comm_request *r = NULL;
    int rc = comm_isend(c, peer, cls, buf, len, &r, err, errlen);
    return rc == WANCP_OK ? comm_wait(c, r, err, errlen) : rc;
}

int comm_recv(comm *c, int peer, int cls, void *buf, size_t len, char *err, size_t errlen)
{
    comm_request *r = NULL;
    int rc = comm_irecv(c, peer, cls, buf, len, &r, err, errlen);
    return rc == WANCP_OK ? comm_wait(c, r, err, errlen) : rc;
}

comm_counts comm_counts_of(const comm *c, int peer, int cls)
{
    comm *m = (comm *)c;
    pthread_mutex_lock(&m->lock);
    comm_counts counts = peer == c->opt.rank ? (comm_counts){0} : comm_conn(m, peer, cls)->counts;
    pthread_mutex_unlock(&m->lock);
    return counts;
}

double comm_blocked_seconds(const comm *c, int cls)
{
    comm *m = (comm *)c;
    pthread_mutex_lock(&m->lock);
    double s = c->blocked_s[cls];
    pthread_mutex_unlock(&m->lock);
    return s;
}

int comm_rank(const comm *c) { return c->opt.rank; }

int comm_size(const comm *c) { return c->opt.world; }

/* ---- the thread's life ---- */

int comm_progress_start(comm *c)
{
    if (pthread_create(&c->thread, NULL, comm_progress_main, c) != 0)
        return -1;
    c->thread_started = true;
    return 0;
}

void comm_progress_stop(comm *c)
{
    if (!c->thread_started)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_mutex_unlock(&c->lock);
    wake(c);
    pthread_join(c->thread, NULL);
    c->thread_started = false;
}
