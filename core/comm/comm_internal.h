#ifndef WANCP_COMM_INTERNAL_H
#define WANCP_COMM_INTERNAL_H

/* Shared by the files of core/comm; nothing outside includes it. */
#include "comm.h"
#include "frame.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>

#define COMM_REQUESTS 8192             /* in flight at once; a CP step needs a few per peer and layer */
#define COMM_BOUNCE_FLOATS (16 * 1024) /* 64 KiB: a summing receive's bytes, summed while in cache */

struct comm_request {
    struct comm_request *next; /* in its connection's queue, or the free list */
    struct conn *cn;
    bool is_send;
    bool complete;
    const uint8_t *send_buf;
    uint8_t *recv_buf;
    const float *add;   /* a summing receive: recv_buf (floats) = what arrives + add */
    uint8_t partial[4]; /* a summing receive: the bytes of a float not yet whole */
    size_t len;
    size_t header_done; /* bytes of the 32-byte header moved */
    size_t done;        /* payload bytes moved */
    uint8_t header[FRAME_BYTES];
};

/* One TCP connection to one peer for one class. */
typedef struct conn {
    int fd;
    int peer, cls;
    char name[96]; /* "rank 2 (198.18.0.3), kv-forward" for errors */
    uint64_t send_seq, recv_seq;
    struct comm_request *sends, *sends_tail; /* FIFO */
    struct comm_request *recvs, *recvs_tail; /* FIFO */
    double last_progress;                    /* when data last moved while requests were pending */
    comm_counts counts;
} conn;

/*
 * The door: connections that arrived on a listener but have not yet said who they are. A
 * rank says hello as soon as it connects; anyone else is a stranger. Everyone at the door is
 * heard at once and without blocking, so strangers, however many or however slow, never
 * delay a rank: each is given COMM_DOOR_WAIT_S to send a whole hello frame, and when more
 * arrive than the door holds, the one that has waited longest is turned away.
 */
#define COMM_DOOR_SLOTS 16
#define COMM_DOOR_WAIT_S 2.0

typedef struct door_guest {
    int fd;  /* -1: the slot is free */
    int cls; /* the class of the listener it came in on */
    double deadline;
    size_t got;
    uint8_t bytes[FRAME_BYTES + HELLO_BYTES];
    char who[96]; /* "198.18.0.3:40112" */
} door_guest;

typedef struct comm_door {
    door_guest guests[COMM_DOOR_SLOTS];
} comm_door;

struct comm {
    comm_options opt;
    conn *conns; /* (world * COMM_NCLASSES), [peer * COMM_NCLASSES + cls]; self unused */
    int listeners[COMM_NCLASSES];
    char (*addr)[64]; /* (world,) every rank's IPv4 address */

    pthread_t thread;
    bool thread_started;
    int wake[2]; /* pipe: tells the progress thread that queues changed */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a request completed or the communicator failed */
    bool stopping;
    bool failed;
    char error[512];
    double blocked_s[COMM_NCLASSES]; /* time callers spent waiting in comm_wait*, by class */

    float bounce[COMM_BOUNCE_FLOATS]; /* the progress thread's landing place for summing receives */
    float *scratch;                   /* reduction buffers of the collectives, grown once, reused */
    size_t scratch_floats;

    comm_door door; /* the progress thread's: after setup, every caller is a stranger */

    struct comm_request requests[COMM_REQUESTS];
    struct comm_request *free_requests;
};

static inline conn *comm_conn(comm *c, int peer, int cls) { return &c->conns[peer * COMM_NCLASSES + cls]; }

double comm_now(void);

/* The progress thread (comm_progress.c). */
void *comm_progress_main(void *arg);
int comm_progress_start(comm *c); /* 0, or -1 when the thread could not start */
void comm_progress_stop(comm *c); /* joins it; nothing when it never started */

/* Marks the communicator failed with this message (first failure wins); lock held. */
void comm_fail_locked(comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The door (comm_door.c). */
void comm_door_init(comm_door *d);
void comm_door_free(comm_door *d); /* closes everyone still at the door */
/* Accepts everyone waiting on listener (which must be non-blocking) into the door; cls is
 * the listener's class, -1 for the rendezvous port (whose hellos say class control). */
void comm_door_admit(const comm *c, comm_door *d, int listener, int cls);
/* Fills fds with one POLLIN entry per guest (COMM_DOOR_SLOTS at most); returns how many. */
int comm_door_pollfds(const comm_door *d, struct pollfd *fds);
/* Hears every guest without blocking, turning away those that failed or ran out of time;
 * returns the socket of one whose hello frame is whole (the caller owns it now; h, cls and
 * who filled), or -1 when none is yet. */
int comm_door_next(const comm *c, comm_door *d, hello *h, int *cls, char *who, size_t wholen);
/* Closes a connection that is not welcome, saying why on stderr; the job goes on. */
void comm_door_refuse(const comm *c, int fd, int cls, const char *why); /* cls -1: the rendezvous port */

/* Port of rank r's listener for class cls. */
static inline int comm_port(const comm_options *o, int rank, int cls)
{
    return o->master_port + 1 + COMM_NCLASSES * rank + cls;
}

#endif
