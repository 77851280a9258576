#ifndef WANCP_COMM_H
#define WANCP_COMM_H

#include <stddef.h>
#include <stdint.h>

/*
 * A communicator over TCP: P ranks in a full mesh with one connection per peer and traffic
 * class, so a packet capture tells the classes apart by port. Messages are framed
 * (frame.h); every byte is counted per peer and class. A progress thread moves all data,
 * so non-blocking sends and receives overlap the caller's compute.
 *
 * Failure never hangs a rank: a peer that exits or crashes is seen as a closed connection,
 * a peer that stalls as a timeout (default 60 s); either fails the communicator with a
 * message naming the rank, and every later call returns that error at once.
 *
 * Ports: rank 0 takes rendezvous calls on master_port; rank r listens for class c on
 * master_port + 1 + 4 r + c, so a port names its rank and class. The higher rank of each
 * pair calls the lower one. Keep these ports below the kernel's ephemeral range (32768 on
 * Linux): outgoing connections take ports from it, and one may hold a listener's port.
 */
enum comm_class {
    COMM_KV_FORWARD = 0,
    COMM_KV_BACKWARD = 1,
    COMM_WEIGHT_SYNC = 2,
    COMM_CONTROL = 3,
    COMM_NCLASSES = 4,
};

#define COMM_MAX_RANKS 256

const char *comm_class_name(int cls);

typedef struct comm_options {
    int rank, world;
    char master_addr[64];
    int master_port;
    uint64_t job_id;
    int timeout_ms;
} comm_options;

/* Reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (torchrun), else SLURM_PROCID /
 * SLURM_NTASKS or OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE for rank and size, with
 * MASTER_ADDR defaulting to 127.0.0.1 and MASTER_PORT to 29500; WANCP_JOB_ID (default: a
 * hash of MASTER_ADDR:MASTER_PORT and WORLD_SIZE) and WANCP_COMM_TIMEOUT (seconds, 60).
 * Every problem is named. */
int comm_options_from_env(comm_options *o, char *err, size_t errlen);

typedef struct comm comm;
typedef struct comm_request comm_request;

/* Rendezvous and mesh; returns when every connection is up (or the timeout passed). */
int comm_open(comm **out, const comm_options *o, char *err, size_t errlen);

/* Closes every connection and stops the progress thread. NULL is fine. */
void comm_close(comm *c);

int comm_rank(const comm *c);
int comm_size(const comm *c);

/* Non-blocking point-to-point. The buffer must stay valid until comm_wait returns. A
 * receive takes exactly len bytes: a message of another length is a protocol error.
 * Messages between two ranks in one class arrive in the order they were sent. */
int comm_isend(comm *c, int peer, int cls, const void *buf, size_t len, comm_request **req, char *err,
               size_t errlen);
int comm_irecv(comm *c, int peer, int cls, void *buf, size_t len, comm_request **req, char *err, size_t errlen);

/* A summing receive of count floats: sum[i] = arrived[i] + add[i] (add may be sum). The
 * progress thread sums each piece as it lands, while it is in cache, so a reducing
 * collective costs no pass over memory beyond its inputs and output. */
int comm_irecv_sum(comm *c, int peer, int cls, const float *add, float *sum, size_t count, comm_request **req,
                   char *err, size_t errlen);

/* Waits for a request and frees it; on failure, the communicator's error. */
int comm_wait(comm *c, comm_request *req, char *err, size_t errlen);

/* Waits for all n requests (all are freed, even after a failure). */
int comm_wait_all(comm *c, comm_request **reqs, int n, char *err, size_t errlen);

int comm_send(comm *c, int peer, int cls, const void *buf, size_t len, char *err, size_t errlen);
int comm_recv(comm *c, int peer, int cls, void *buf, size_t len, char *err, size_t errlen);

/* Payload bytes sent to and received from peer in a class, and frames (header bytes are
 * frames x FRAME_BYTES). */
typedef struct comm_counts {
    uint64_t tx_bytes, rx_bytes;
    uint64_t tx_frames, rx_frames;
} comm_counts;
comm_counts comm_counts_of(const comm *c, int peer, int cls);

/* Seconds this rank's callers spent blocked in comm_wait (and so in every blocking call
 * and collective) on requests of a class: the communication compute did not hide. */
double comm_blocked_seconds(const comm *c, int cls);

/* ---- collectives (blocking; every rank calls them in the same order) ---- */

enum comm_allgather_algo { COMM_DIRECT, COMM_RING };

/* recv (world x bytes) gets every rank's send (bytes) in rank order. send is either apart
 * from recv or exactly this rank's block of it (in place). */
int comm_allgather(comm *c, int cls, const void *send, void *recv, size_t bytes, int algo, char *err, size_t errlen);

/* In-place sum over ranks (ring: reduce-scatter then all-gather); every rank ends with the
 * same bits. */
int comm_allreduce_sum(comm *c, int cls, float *data, size_t count, char *err, size_t errlen);

/* send (world x count) summed over ranks; rank r gets block r in recv (count). recv is
 * either apart from send or exactly block r of it (in place). */
int comm_reduce_scatter_sum(comm *c, int cls, const float *send, float *recv, size_t count, char *err,
                            size_t errlen);

int comm_broadcast(comm *c, int cls, void *buf, size_t bytes, int root, char *err, size_t errlen);

int comm_barrier(comm *c, char *err, size_t errlen);


#endif
