#ifndef WANCP_TEST_RANKS_H
#define WANCP_TEST_RANKS_H

/* Shared by the tests that run real rank processes: fork world ranks on loopback, each
 * opening a communicator and running one body. */
#include "core/comm/comm.h"
#include "core/base/status.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int test_rank_body(comm *c, const void *arg, char *err, size_t errlen);

/* Runs body on world ranks (at most 8) and returns how many failed; a failing rank prints
 * its error on stderr. port must stay below the ephemeral range (32768). */
static inline int test_run_ranks(int world, int port, uint64_t job_id, test_rank_body *body, const void *arg)
{
    pid_t pids[8];
    fflush(stdout);
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        if (pids[r] < 0)
            return world;
        if (pids[r] == 0) {
            comm_options o = {.rank = r, .world = world, .master_port = port, .job_id = job_id, .timeout_ms = 30000};
            snprintf(o.master_addr, sizeof o.master_addr, "127.0.0.1");
            char err[WANCP_ERRLEN];
            comm *c = NULL;
            int rc = comm_open(&c, &o, err, sizeof err);
            if (rc == WANCP_OK)
                rc = body(c, arg, err, sizeof err);
            if (rc != WANCP_OK)
                fprintf(stderr, "rank %d: %s\n", r, err);
            fflush(stdout);
            comm_close(c);
            _exit(rc == WANCP_OK ? 0 : 1);
        }
    }
    int failed = 0;
    for (int r = 0; r < world; r++) {
        int st;
        waitpid(pids[r], &st, 0);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return failed;
}

/* Fails naming the first rank whose h differs from rank 0's. */
static inline int test_same_on_every_rank(comm *c, uint64_t h, const char *what, char *err, size_t errlen)
{
    uint64_t all[8];
    int rc = comm_allgather(c, COMM_CONTROL, &h, all, sizeof h, COMM_DIRECT, err, errlen);
    for (int p = 0; p < comm_size(c) && rc == WANCP_OK; p++)
        if (all[p] != all[0])
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "rank %d's %s differs from rank 0's", p, what);
    return rc;
}

/* Checks this rank's kv-forward and kv-backward payload bytes, summed over peers: out sent
 * forward (gathers times: 2 when the backward gathers K/V again) and received backward,
 * in_ the other two. */
static inline int test_kv_bytes(comm *c, uint64_t out, uint64_t in_, int gathers, char *err, size_t errlen)
{
    uint64_t fwd_tx = 0, fwd_rx = 0, bwd_tx = 0, bwd_rx = 0;
    for (int p = 0; p < comm_size(c); p++) {
        comm_counts f = comm_counts_of(c, p, COMM_KV_FORWARD), b = comm_counts_of(c, p, COMM_KV_BACKWARD);
        fwd_tx += f.tx_bytes, fwd_rx += f.rx_bytes, bwd_tx += b.tx_bytes, bwd_rx += b.rx_bytes;
    }
    if (fwd_tx == gathers * out && fwd_rx == gathers * in_ && bwd_tx == in_ && bwd_rx == out)
        return WANCP_OK;
    return wancp_fail(
        err, errlen, WANCP_ERR_INPUT,
        "rank %d bytes: kv-forward tx %llu rx %llu, kv-backward tx %llu rx %llu; want %llu %llu %llu %llu",
        comm_rank(c), (unsigned long long)fwd_tx, (unsigned long long)fwd_rx, (unsigned long long)bwd_tx,
        (unsigned long long)bwd_rx, (unsigned long long)(gathers * out), (unsigned long long)(gathers * in_),
        (unsigned long long)in_, (unsigned long long)out);
}

#endif
