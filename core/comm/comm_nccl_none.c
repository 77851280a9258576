/* The NCCL transport's entry points in a build without CUDA or without nccl.h: they say
 * why there is none. */
#include "comm_nccl.h"

#include "../base/status.h"

int comm_nccl_open(comm_nccl **out, comm *tcp, int timeout_ms, char *err, size_t errlen)
{
    (void)tcp, (void)timeout_ms;
    *out = NULL;
    return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                      "transport nccl: this build has none (nvcc or nccl.h was not found when it was "
                      "configured)");
}

void comm_nccl_close(comm_nccl *n) { (void)n; }

int comm_nccl_allreduce_sum(comm_nccl *n, float *x, size_t count, char *err, size_t errlen)
{
    (void)n, (void)x, (void)count;
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "transport nccl: not in this build");
}

int comm_nccl_broadcast(comm_nccl *n, float *x, size_t count, int root, char *err, size_t errlen)
{
    (void)n, (void)x, (void)count, (void)root;
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "transport nccl: not in this build");
}

uint64_t comm_nccl_tx_bytes(const comm_nccl *n)
{
    (void)n;
    return 0;
}

const char *comm_nccl_describe(const comm_nccl *n)
{
    (void)n;
    return "none (not in this build)";
}
