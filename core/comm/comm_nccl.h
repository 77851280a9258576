#ifndef WANCP_COMM_NCCL_H
#define WANCP_COMM_NCCL_H

#include "comm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The NCCL transport, for clusters with one GPU per rank: the weight-sync class (gradient
 * all-reduce in Mode S, weight averaging in Mode A, the bases' broadcast) runs as NCCL
 * collectives on the cuda backend's stream, on op memory, with no host staging. K/V keep
 * the TCP transport (host staging through pinned buffers): they are what the shaped links
 * carry, and TCP is what the capture and the byte counters see.
 *
 * libnccl.so.2 is loaded when a communicator is first opened, so a build with CUDA runs
 * without NCCL installed until --transport nccl asks for it. The ncclUniqueId travels from
 * rank 0 to the others over the TCP communicator's control class (the same rendezvous as
 * everything else). Every wait is bounded: a rank that dies or stalls makes the others fail
 * within the timeout (the communicator is aborted), never hang.
 */
typedef struct comm_nccl comm_nccl;

/* Opens a communicator over tcp's ranks (tcp NULL: one rank). timeout_ms bounds each wait. */
int comm_nccl_open(comm_nccl **out, comm *tcp, int timeout_ms, char *err, size_t errlen);
void comm_nccl_close(comm_nccl *n);

/* In place on op memory of the cuda backend: x = the sum over ranks; x = root's x. */
int comm_nccl_allreduce_sum(comm_nccl *n, float *x, size_t count, char *err, size_t errlen);
int comm_nccl_broadcast(comm_nccl *n, float *x, size_t count, int root, char *err, size_t errlen);

/* Bytes this rank has sent: NCCL's ring volume, 2 (P-1)/P of each all-reduce's bytes and
 * each broadcast's bytes (none with one rank). */
uint64_t comm_nccl_tx_bytes(const comm_nccl *n);

/* "NCCL 2.28.9, 4 ranks" style. */
const char *comm_nccl_describe(const comm_nccl *n);

#endif
