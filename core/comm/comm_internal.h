#ifndef WANCP_COMM_INTERNAL_H
#define WANCP_COMM_INTERNAL_H

/* Shared by the files of core/comm; nothing outside includes it. */
#include "comm.h"
#include "frame.h"

#include <pthread.h>
#include <stdbool.h>

#define COMM_REQUESTS 8192 /* in flight at once; a CP step needs a few per peer and layer */
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
    char name[96];           /* "rank 2 (198.18.0.3), kv-forward" for errors */
    uint64_t send_seq, recv_seq;
    struct comm_request *sends, *sends_tail; /* FIFO */
    struct comm_request *recvs, *recvs_tail; /* FIFO */
    double last_progress;    /* when data last moved while requests were pending */
    comm_counts counts;
} conn;

struct comm {
    comm_options opt;
    conn *conns;              /* (world * COMM_NCLASSES), [peer * COMM_NCLASSES + cls]; self unused */
    int listeners[COMM_NCLASSES];
    char (*addr)[64];         /* (world,) every rank's IPv4 address */

    pthread_t thread;
    bool thread_started;
    int wake[2];              /* pipe: tells the progress thread that queues changed */
    pthread_mutex_t lock;
    pthread_cond_t changed;   /* a request completed or the communicator failed */
    bool stopping;
    bool failed;
    char error[512];
    double blocked_s[COMM_NCLASSES]; /* time callers spent waiting in comm_wait*, by class */

    float bounce[COMM_BOUNCE_FLOATS]; /* the progress thread's landing place for summing receives */
    float *scratch;           /* reduction buffers of the collectives, grown once, reused */
    size_t scratch_floats;

    struct comm_request requests[COMM_REQUESTS];
    struct comm_request *free_requests;
};

static inline conn *comm_conn(comm *c, int peer, int cls)
{
    return &c->conns[peer * COMM_NCLASSES + cls];
}

double comm_now(void);

/* Rendezvous through rank 0 and the mesh of connections (comm_setup.c). */
int comm_setup(comm *c, char *err, size_t errlen);

/* The progress thread (comm_progress.c). */
void *comm_progress_main(void *arg);

/* Marks the communicator failed with this message (first failure wins); lock held. */
void comm_fail_locked(comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Port of rank r's listener for class cls. */
static inline int comm_port(const comm_options *o, int rank, int cls)
{
    return o->master_port + 1 + COMM_NCLASSES * rank + cls;
}

#endif
