// The NCCL transport: weight-sync collectives on the cuda backend's stream, NCCL loaded at
// run time (see comm_nccl.h).
extern "C" {
#include "comm_nccl.h"

#include "../base/status.h"
}

#include "../ops/cuda/ops_cuda.h"
#include "../ops/cuda/ops_cuda_internal.h"

#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// The NCCL entry points wancp uses, found with dlsym in the library loaded at first use.
typedef struct nccl_api {
    ncclResult_t (*get_unique_id)(ncclUniqueId *id);
    ncclResult_t (*init_rank_config)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config);
    ncclResult_t (*all_reduce)(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*broadcast)(const void *send, void *recv, size_t count, ncclDataType_t type, int root,
                              ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*get_async_error)(ncclComm_t comm, ncclResult_t *error);
    ncclResult_t (*abort)(ncclComm_t comm);
    ncclResult_t (*destroy)(ncclComm_t comm);
    const char *(*error_string)(ncclResult_t result);
    ncclResult_t (*get_version)(int *version);
} nccl_api;

static nccl_api g_nccl;
static char g_nccl_path[512];

// WANCP_NCCL_LIB names the library; else the loader's search path finds libnccl.so.2.
static int load_nccl(char *err, size_t errlen)
{
    if (g_nccl.all_reduce != NULL)
        return WANCP_OK;
    const char *env = getenv("WANCP_NCCL_LIB");
    const char *names[] = {env != NULL && env[0] ? env : "libnccl.so.2", "libnccl.so"};
    void *lib = NULL;
    for (int i = 0; i < 2 && lib == NULL; i++) {
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib != NULL)
            snprintf(g_nccl_path, sizeof g_nccl_path, "%s", names[i]);
    }
    if (lib == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT,
                          "transport nccl: cannot load %s (%s); put NCCL's lib folder on LD_LIBRARY_PATH or set "
                          "WANCP_NCCL_LIB to the library",
                          names[0], dlerror());
    nccl_api api;
    struct {
        void **slot;
        const char *name;
    } syms[] = {{(void **)&api.get_unique_id, "ncclGetUniqueId"},
                {(void **)&api.init_rank_config, "ncclCommInitRankConfig"},
                {(void **)&api.all_reduce, "ncclAllReduce"},
                {(void **)&api.broadcast, "ncclBroadcast"},
                {(void **)&api.get_async_error, "ncclCommGetAsyncError"},
                {(void **)&api.abort, "ncclCommAbort"},
                {(void **)&api.destroy, "ncclCommDestroy"},
                {(void **)&api.error_string, "ncclGetErrorString"},
                {(void **)&api.get_version, "ncclGetVersion"}};
    for (auto &s : syms)
        if ((*s.slot = dlsym(lib, s.name)) == NULL)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "transport nccl: %s has no %s (NCCL 2.14 or later needed)",
                              g_nccl_path, s.name);
    g_nccl = api;
    return WANCP_OK;
}

struct comm_nccl {
    ncclComm_t comm;
    int rank, world;
    int timeout_ms;
    uint64_t tx_bytes;
    bool broken; // aborted: every later call fails at once
    char what[700];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int broken(comm_nccl *n, char *err, size_t errlen, const char *what, const char *why)
{
    if (!n->broken && n->comm != NULL)
        g_nccl.abort(n->comm); // the others see this rank go and fail in turn
    n->broken = true;
    n->comm = NULL;
    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "transport nccl: rank %d of %d: %s: %s", n->rank, n->world, what,
                      why);
}

// Waits until NCCL has no call in progress and, with stream, the stream has run everything
// issued so far; fails on an asynchronous NCCL error or after the timeout.
static int wait_done(comm_nccl *n, bool stream, const char *what, char *err, size_t errlen)
{
    const double start = now_s();
    for (unsigned spin = 0;; spin++) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t rc = g_nccl.get_async_error(n->comm, &state);
        if (rc != ncclSuccess)
            state = rc;
        if (state != ncclSuccess && state != ncclInProgress)
            return broken(n, err, errlen, what, g_nccl.error_string(state));
        if (state == ncclSuccess) {
            if (!stream)
                return WANCP_OK;
            cudaError_t q = cudaStreamQuery(g_cuda.stream);
            if (q == cudaSuccess)
                return WANCP_OK;
            if (q != cudaErrorNotReady)
                return broken(n, err, errlen, what, cudaGetErrorString(q));
        }
        if (now_s() - start > n->timeout_ms * 1e-3) {
            char why[160];
            snprintf(why, sizeof why, "not finished after %d s (a rank died or stalled)", n->timeout_ms / 1000);
            return broken(n, err, errlen, what, why);
        }
        if (spin > 1000)
            usleep(100);
    }
}

extern "C" int comm_nccl_open(comm_nccl **out, comm *tcp, int timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (ops_cuda_table(err, errlen) == NULL) // the device and its stream
        return WANCP_ERR_INPUT;
    int rc = load_nccl(err, errlen);
    if (rc != WANCP_OK)
        return rc;
    comm_nccl *n = (comm_nccl *)calloc(1, sizeof *n);
    if (n == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "transport nccl: out of memory");
    n->rank = tcp != NULL ? comm_rank(tcp) : 0;
    n->world = tcp != NULL ? comm_size(tcp) : 1;
    n->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    ncclUniqueId id = {};
    ncclResult_t r = n->rank == 0 ? g_nccl.get_unique_id(&id) : ncclSuccess;
    if (r != ncclSuccess) {
        free(n);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "transport nccl: ncclGetUniqueId: %s", g_nccl.error_string(r));
    }
    if (tcp != NULL && (rc = comm_broadcast(tcp, COMM_CONTROL, &id, sizeof id, 0, err, errlen)) != WANCP_OK) {
        free(n);
        return rc;
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; // so that a missing rank is a timeout here, not a hang
    r = g_nccl.init_rank_config(&n->comm, n->world, id, n->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "transport nccl: rank %d: ncclCommInitRank: %s", n->rank,
                   g_nccl.error_string(r));
        free(n);
        return WANCP_ERR_SYSTEM;
    }
    if ((rc = wait_done(n, false, "joining the communicator", err, errlen)) != WANCP_OK) {
        free(n);
        return rc;
    }
    int version = 0;
    g_nccl.get_version(&version);
    snprintf(n->what, sizeof n->what, "NCCL %d.%d.%d (%.500s), %d rank%s", version / 10000, version / 100 % 100,
             version % 100, g_nccl_path, n->world, n->world == 1 ? "" : "s");
    *out = n;
    return WANCP_OK;
}

extern "C" void comm_nccl_close(comm_nccl *n)
{
    if (n == NULL)
        return;
    if (n->comm != NULL)
        g_nccl.destroy(n->comm);
    free(n);
}

// Issues one collective and waits for it (and what the stream held before it).
static int collective(comm_nccl *n, bool reduce, float *x, size_t count, int root, char *err, size_t errlen)
{
    const char *what = reduce ? "all-reduce" : "broadcast";
    if (n->broken)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "transport nccl: %s after an earlier failure", what);
    ncclResult_t r = reduce ? g_nccl.all_reduce(x, x, count, ncclFloat32, ncclSum, n->comm, g_cuda.stream)
                            : g_nccl.broadcast(x, x, count, ncclFloat32, root, n->comm, g_cuda.stream);
    if (r != ncclSuccess && r != ncclInProgress)
        return broken(n, err, errlen, what, g_nccl.error_string(r));
    int rc = wait_done(n, true, what, err, errlen);
    if (rc == WANCP_OK && n->world > 1)
        n->tx_bytes += reduce ? 2 * (uint64_t)(n->world - 1) * count * sizeof *x / (uint64_t)n->world
                              : (uint64_t)count * sizeof *x;
    return rc;
}

extern "C" int comm_nccl_allreduce_sum(comm_nccl *n, float *x, size_t count, char *err, size_t errlen)
{
    return collective(n, true, x, count, 0, err, errlen);
}

extern "C" int comm_nccl_broadcast(comm_nccl *n, float *x, size_t count, int root, char *err, size_t errlen)
{
    return collective(n, false, x, count, root, err, errlen);
}

extern "C" uint64_t comm_nccl_tx_bytes(const comm_nccl *n) { return n != NULL ? n->tx_bytes : 0; }

extern "C" const char *comm_nccl_describe(const comm_nccl *n) { return n != NULL ? n->what : "none"; }
