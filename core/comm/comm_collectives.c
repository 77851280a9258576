/* Collectives over the point-to-point layer. Every rank calls them in the same order; the
 * algorithm fixes who sends what to whom, so results are bitwise equal on every rank. */
#include "comm_internal.h"

#include "../base/status.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The communicator's reduction scratch, at least floats long; grown (rarely), never shrunk,
 * so steady-state collectives allocate nothing and touch warm pages. */
static float *scratch(comm *c, size_t floats)
{
    if (floats > c->scratch_floats) {
        float *grown = realloc(c->scratch, floats * sizeof *grown);
        if (grown == NULL)
            return NULL;
        c->scratch = grown;
        c->scratch_floats = floats;
    }
    return c->scratch;
}

/* Block b of count split into world nearly equal blocks: [*start, *start + *len). */
static void block_of(size_t count, int world, int b, size_t *start, size_t *len)
{
    size_t base = count / (size_t)world, extra = count % (size_t)world;
    *start = (size_t)b * base + ((size_t)b < extra ? (size_t)b : extra);
    *len = base + ((size_t)b < extra ? 1 : 0);
}

int comm_allgather(comm *c, int cls, const void *send, void *recv, size_t bytes, int algo, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    uint8_t *out = recv, *own = out + (size_t)rank * bytes;
    if (world == 1) {
        if (own != send)
            memmove(own, send, bytes);
        return WANCP_OK;
    }
    /* Every first send goes out of send itself, so copying it into its place in recv
     * happens while the bytes are on the wire. */
    comm_request *reqs[2 * COMM_MAX_RANKS];
    int n = 0, rc = WANCP_OK;
    if (algo == COMM_DIRECT) {
        for (int p = 0; p < world && rc == WANCP_OK; p++)
            if (p != rank)
                rc = comm_irecv(c, p, cls, out + (size_t)p * bytes, bytes, &reqs[n++], err, errlen);
        for (int p = 0; p < world && rc == WANCP_OK; p++)
            if (p != rank)
                rc = comm_isend(c, p, cls, send, bytes, &reqs[n++], err, errlen);
        if (rc == WANCP_OK && own != send)
            memmove(own, send, bytes);
        return rc == WANCP_OK ? comm_wait_all(c, reqs, n, err, errlen) : rc;
    }
    /* Ring: in step s, pass block (rank - s) right and take block (rank - s - 1) from the left. */
    const int right = (rank + 1) % world, left = (rank + world - 1) % world;
    for (int s = 0; s < world - 1 && rc == WANCP_OK; s++) {
        int give = (rank - s + world) % world, take = (rank - s - 1 + world) % world;
        rc = comm_irecv(c, left, cls, out + (size_t)take * bytes, bytes, &reqs[0], err, errlen);
        if (rc == WANCP_OK)
            rc = comm_isend(c, right, cls, s == 0 ? send : out + (size_t)give * bytes, bytes, &reqs[1], err, errlen);
        if (rc == WANCP_OK && s == 0 && own != send)
            memmove(own, send, bytes);
        if (rc == WANCP_OK)
            rc = comm_wait_all(c, reqs, 2, err, errlen);
    }
    return rc;
}

/* One ring step: sends give (gl floats) right while tl floats arrive from the left, summed
 * with other into sum as they land (sum may be other). */
static int sendrecv_reduce(comm *c, int cls, const float *give, size_t gl, size_t tl, const float *other, float *sum,
                           char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    const int right = (rank + 1) % world, left = (rank + world - 1) % world;
    comm_request *reqs[2];
    int rc = comm_irecv_sum(c, left, cls, other, sum, tl, &reqs[0], err, errlen);
    if (rc == WANCP_OK)
        rc = comm_isend(c, right, cls, give, gl * sizeof *give, &reqs[1], err, errlen);
    return rc == WANCP_OK ? comm_wait_all(c, reqs, 2, err, errlen) : rc;
}

/* Ring reduce-scatter in place on data (count floats): afterwards block (rank + 1) % world
 * holds the full sum. */
static int ring_reduce_scatter(comm *c, int cls, float *data, size_t count, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    for (int s = 0; s < world - 1; s++) {
        int give = (rank - s + world) % world, take = (rank - s - 1 + world) % world;
        size_t gs, gl, ts, tl;
        block_of(count, world, give, &gs, &gl);
        block_of(count, world, take, &ts, &tl);
        int rc = sendrecv_reduce(c, cls, data + gs, gl, tl, data + ts, data + ts, err, errlen);
        if (rc != WANCP_OK)
            return rc;
    }
    return WANCP_OK;
}

int comm_allreduce_sum(comm *c, int cls, float *data, size_t count, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    if (world == 1)
        return WANCP_OK;
    int rc = ring_reduce_scatter(c, cls, data, count, err, errlen);
    /* All-gather of the reduced blocks: rank r starts with block (r + 1) % world. */
    const int right = (rank + 1) % world, left = (rank + world - 1) % world;
    for (int s = 0; s < world - 1 && rc == WANCP_OK; s++) {
        int give = (rank + 1 - s + world) % world, take = (rank - s + world) % world;
        size_t gs, gl, ts, tl;
        block_of(count, world, give, &gs, &gl);
        block_of(count, world, take, &ts, &tl);
        comm_request *reqs[2];
        rc = comm_irecv(c, left, cls, data + ts, tl * sizeof *data, &reqs[0], err, errlen);
        if (rc == WANCP_OK)
            rc = comm_isend(c, right, cls, data + gs, gl * sizeof *data, &reqs[1], err, errlen);
        if (rc == WANCP_OK)
            rc = comm_wait_all(c, reqs, 2, err, errlen);
    }
    return rc;
}

/* Ring reduce-scatter: in step s rank r sends its partial sum of block (r - s - 1) to the
 * right (its own input block in step 0) and adds its own input to the partial of block
 * (r - s - 2) arriving from the left; after P-1 steps it holds block r, summed over every
 * rank. Partial sums alternate between recv and one scratch block, arranged so the last
 * lands in recv: no pass over memory is spent on copies. */
int comm_reduce_scatter_sum(comm *c, int cls, const float *send, float *recv, size_t count, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    if (world == 1) {
        if (recv != send)
            memmove(recv, send, count * sizeof *recv);
        return WANCP_OK;
    }
    /* In place, recv is the input block the last step adds, so it cannot hold a partial. */
    const bool in_place = recv == send + (size_t)rank * count;
    float *spare = world > 2 ? scratch(c, (in_place ? 2 : 1) * (count + 1)) : NULL;
    if (world > 2 && spare == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the reduce-scatter");
    const float *give = send + (size_t)((rank - 1 + world) % world) * count;
    int rc = WANCP_OK;
    for (int s = 0; s < world - 1 && rc == WANCP_OK; s++) {
        const float *mine = send + (size_t)((rank - s - 2 + 2 * world) % world) * count;
        float *sum = s == world - 2             ? recv
                     : in_place                 ? spare + (size_t)(s % 2) * (count + 1)
                     : (world - 2 - s) % 2 == 0 ? recv
                                                : spare;
        rc = sendrecv_reduce(c, cls, give, count, count, mine, sum, err, errlen);
        give = sum;
    }
    return rc;
}

int comm_broadcast(comm *c, int cls, void *buf, size_t bytes, int root, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    if (world == 1)
        return WANCP_OK;
    if (rank != root)
        return comm_recv(c, root, cls, buf, bytes, err, errlen);
    comm_request *reqs[COMM_MAX_RANKS];
    int n = 0, rc = WANCP_OK;
    for (int p = 0; p < world && rc == WANCP_OK; p++)
        if (p != root)
            rc = comm_isend(c, p, cls, buf, bytes, &reqs[n++], err, errlen);
    return rc == WANCP_OK ? comm_wait_all(c, reqs, n, err, errlen) : rc;
}

int comm_barrier(comm *c, char *err, size_t errlen)
{
    uint8_t mine = 1, all[COMM_MAX_RANKS];
    return comm_allgather(c, COMM_CONTROL, &mine, all, 1, COMM_DIRECT, err, errlen);
}
