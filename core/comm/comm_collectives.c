/* Collectives over the point-to-point layer. Every rank calls them in the same order; the
 * algorithm fixes who sends what to whom, so results are bitwise equal on every rank. */
#include "comm_internal.h"

#include "../status.h"

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
    uint8_t *out = recv;
    if (out + (size_t)rank * bytes != send)
        memmove(out + (size_t)rank * bytes, send, bytes);
    if (world == 1)
        return WANCP_OK;
    if (algo == COMM_DIRECT) {
        comm_request *reqs[2 * COMM_MAX_RANKS];
        int n = 0, rc = WANCP_OK;
        for (int p = 0; p < world && rc == WANCP_OK; p++)
            if (p != rank)
                rc = comm_irecv(c, p, cls, out + (size_t)p * bytes, bytes, &reqs[n++], err, errlen);
        for (int p = 0; p < world && rc == WANCP_OK; p++)
            if (p != rank)
                rc = comm_isend(c, p, cls, out + (size_t)rank * bytes, bytes, &reqs[n++], err, errlen);
        return rc == WANCP_OK ? comm_wait_all(c, reqs, n, err, errlen) : rc;
    }
    /* Ring: in step s, pass block (rank - s) right and take block (rank - s - 1) from the left. */
    const int right = (rank + 1) % world, left = (rank + world - 1) % world;
    for (int s = 0; s < world - 1; s++) {
        int give = (rank - s + world) % world, take = (rank - s - 1 + world) % world;
        comm_request *reqs[2];
        int rc = comm_irecv(c, left, cls, out + (size_t)take * bytes, bytes, &reqs[0], err, errlen);
        if (rc == WANCP_OK)
            rc = comm_isend(c, right, cls, out + (size_t)give * bytes, bytes, &reqs[1], err, errlen);
        if (rc == WANCP_OK)
            rc = comm_wait_all(c, reqs, 2, err, errlen);
        if (rc != WANCP_OK)
            return rc;
    }
    return WANCP_OK;
}

int comm_ring_pieces(size_t block_bytes)
{
    return block_bytes >= (1u << 20) ? 4 : 1;
}

/* One ring step: sends give (gl floats) right while tl floats arrive from the left into
 * tmp; as each piece lands, sum[i] = tmp[i] + other[i] for it (sum may be tmp or other). */
static int sendrecv_reduce(comm *c, int cls, const float *give, size_t gl, float *tmp, size_t tl, const float *other,
                           float *sum, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    const int right = (rank + 1) % world, left = (rank + world - 1) % world;
    const int rp = comm_ring_pieces(tl * sizeof *tmp), sp = comm_ring_pieces(gl * sizeof *give);
    comm_request *recvs[4], *sends[4];
    int rc = WANCP_OK, posted_recvs = 0, posted_sends = 0;
    for (int p = 0; p < rp && rc == WANCP_OK; p++, posted_recvs++) {
        size_t a = tl * (size_t)p / (size_t)rp, b = tl * (size_t)(p + 1) / (size_t)rp;
        rc = comm_irecv(c, left, cls, tmp + a, (b - a) * sizeof *tmp, &recvs[p], err, errlen);
    }
    for (int p = 0; p < sp && rc == WANCP_OK; p++, posted_sends++) {
        size_t a = gl * (size_t)p / (size_t)sp, b = gl * (size_t)(p + 1) / (size_t)sp;
        rc = comm_isend(c, right, cls, give + a, (b - a) * sizeof *give, &sends[p], err, errlen);
    }
    for (int p = 0; p < posted_recvs && rc == WANCP_OK; p++) {
        rc = comm_wait(c, recvs[p], err, errlen);
        size_t a = tl * (size_t)p / (size_t)rp, b = tl * (size_t)(p + 1) / (size_t)rp;
        for (size_t i = a; i < b && rc == WANCP_OK; i++)
            sum[i] = tmp[i] + other[i];
    }
    if (rc == WANCP_OK)
        rc = comm_wait_all(c, sends, posted_sends, err, errlen);
    return rc;
}

/* Ring reduce-scatter in place on data (count floats): afterwards block (rank + 1) % world
 * holds the full sum. tmp holds one block. */
static int ring_reduce_scatter(comm *c, int cls, float *data, size_t count, float *tmp, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    for (int s = 0; s < world - 1; s++) {
        int give = (rank - s + world) % world, take = (rank - s - 1 + world) % world;
        size_t gs, gl, ts, tl;
        block_of(count, world, give, &gs, &gl);
        block_of(count, world, take, &ts, &tl);
        int rc = sendrecv_reduce(c, cls, data + gs, gl, tmp, tl, data + ts, data + ts, err, errlen);
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
    size_t max_block = count / (size_t)world + 1;
    float *tmp = scratch(c, max_block);
    if (tmp == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the all-reduce");
    int rc = ring_reduce_scatter(c, cls, data, count, tmp, err, errlen);
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

/* Ring reduce-scatter with two block buffers: in step s rank r sends its partial sum of
 * block (r - s - 1) to the right and adds its own input to the partial of block (r - s - 2)
 * arriving from the left; after P-1 steps it holds block r, summed over every rank. */
int comm_reduce_scatter_sum(comm *c, int cls, const float *send, float *recv, size_t count, char *err, size_t errlen)
{
    const int rank = c->opt.rank, world = c->opt.world;
    if (world == 1) {
        memcpy(recv, send, count * sizeof *recv);
        return WANCP_OK;
    }
    float *out = scratch(c, 2 * (count + 1)), *in = out + count + 1;
    if (out == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for the reduce-scatter");
    memcpy(out, send + (size_t)((rank - 1 + world) % world) * count, count * sizeof *out);
    int rc = WANCP_OK;
    for (int s = 0; s < world - 1 && rc == WANCP_OK; s++) {
        const float *mine = send + (size_t)((rank - s - 2 + 2 * world) % world) * count;
        rc = sendrecv_reduce(c, cls, out, count, in, count, mine, in, err, errlen);
        float *t = out;
        out = in;
        in = t;
    }
    if (rc == WANCP_OK)
        memcpy(recv, out, count * sizeof *recv);
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
