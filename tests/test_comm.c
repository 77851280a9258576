/* The TCP communicator with real rank processes on loopback: collectives checked against
 * payloads every rank can compute from (seed, rank, iteration), exact byte counters, ordered
 * point-to-point, and faults: a killed rank, a stalled rank, strangers on the ports. */
#include "test_helpers.h"

#include "core/comm/comm.h"
#include "core/comm/frame.h"
#include "core/base/status.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static double comm_now_for_tests(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int base_port(void)
{
    /* Below the kernel's ephemeral range (32768+), where outgoing connections take their
     * ports; spread concurrent test processes; each job uses 1 + 4P ports. */
    static int n;
    return 10240 + (int)(getpid() % 500) * 40 + (n++ % 2) * 20;
}

typedef int rank_fn(comm *c, void *arg, char *err, size_t errlen);

/* Runs fn on world ranks (forked processes); each child's stderr goes to err_dir/rankN.err.
 * Returns the exit statuses in status[] (0 ok, 1 failed, 128+signal killed). */
static void run_ranks(int world, int port, int timeout_ms, rank_fn *fn, void *arg, int *status)
{
    pid_t pids[16];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0) {
            char path[512], name[32];
            snprintf(name, sizeof name, "rank%d.err", r);
            test_path(path, sizeof path, name);
            if (freopen(path, "w", stderr) == NULL)
                _exit(3);
            comm_options o = {.rank = r, .world = world, .master_port = port, .job_id = 42, .timeout_ms = timeout_ms};
            snprintf(o.master_addr, sizeof o.master_addr, "127.0.0.1");
            char err[WANCP_ERRLEN];
            comm *c = NULL;
            int rc = comm_open(&c, &o, err, sizeof err);
            if (rc == WANCP_OK)
                rc = fn(c, arg, err, sizeof err);
            if (rc != WANCP_OK)
                fprintf(stderr, "rank %d: %s\n", r, err);
            comm_close(c);
            fflush(stderr);
            _exit(rc == WANCP_OK ? 0 : 1);
        }
    }
    for (int r = 0; r < world; r++) {
        int st;
        assert_int_equal(waitpid(pids[r], &st, 0), pids[r]);
        status[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
}

static int read_err(int rank, char *buf, size_t len)
{
    char path[512], name[32];
    snprintf(name, sizeof name, "rank%d.err", rank);
    test_path(path, sizeof path, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
    return (int)n;
}

/* The value rank r contributes at index i of iteration it: small integers, so sums are
 * exact in fp32 whatever the order. */
static float payload(int r, int it, size_t i) { return (float)((r * 7 + it * 13 + (int)(i % 97)) % 31) - 15.0f; }

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, __VA_ARGS__);                                              \
    } while (0)

static int collectives_body(comm *c, void *arg, char *err, size_t errlen)
{
    (void)arg;
    const int rank = comm_rank(c), world = comm_size(c);
    /* 300007 floats: ring blocks above 1 MiB travel as pieces */
    static const size_t counts[] = {0, 1, 7, 1000, 100003, 300007};
    for (int it = 0; it < 6; it++) {
        size_t count = counts[it];
        /* all-gather, both algorithms */
        for (int algo = 0; algo < 2; algo++) {
            float *mine = malloc((count + 1) * sizeof *mine), *all = malloc((count * world + 1) * sizeof *all);
            for (size_t i = 0; i < count; i++)
                mine[i] = payload(rank, it, i);
            int rc = comm_allgather(c, COMM_KV_FORWARD, mine, all, count * sizeof *mine, algo, err, errlen);
            for (int p = 0; p < world && rc == WANCP_OK; p++)
                for (size_t i = 0; i < count; i++)
                    CHECK(all[(size_t)p * count + i] == payload(p, it, i), "allgather %d: rank %d block %d differs",
                          algo, rank, p);
            free(mine);
            /* in place: send is this rank's block of recv */
            memset(all, 0, (count * world + 1) * sizeof *all);
            for (size_t i = 0; i < count; i++)
                all[(size_t)rank * count + i] = payload(rank, it, i);
            if (rc == WANCP_OK)
                rc = comm_allgather(c, COMM_KV_FORWARD, all + (size_t)rank * count, all, count * sizeof *all, algo, err,
                                    errlen);
            for (int p = 0; p < world && rc == WANCP_OK; p++)
                for (size_t i = 0; i < count; i++)
                    CHECK(all[(size_t)p * count + i] == payload(p, it, i),
                          "allgather %d in place: rank %d block %d differs", algo, rank, p);
            free(all);
            if (rc != WANCP_OK)
                return rc;
        }
        /* all-reduce */
        float *data = malloc((count + 1) * sizeof *data);
        for (size_t i = 0; i < count; i++)
            data[i] = payload(rank, it, i);
        int rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, data, count, err, errlen);
        for (size_t i = 0; i < count && rc == WANCP_OK; i++) {
            float want = 0;
            for (int p = 0; p < world; p++)
                want += payload(p, it, i);
            CHECK(data[i] == want, "allreduce: rank %d index %zu is %g, want %g", rank, i, (double)data[i],
                  (double)want);
        }
        free(data);
        if (rc != WANCP_OK)
            return rc;
        /* reduce-scatter: block b of rank p's input is payload(p * 10 + b) */
        float *in = malloc((count * world + 1) * sizeof *in), *out = malloc((count + 1) * sizeof *out);
        for (int b = 0; b < world; b++)
            for (size_t i = 0; i < count; i++)
                in[(size_t)b * count + i] = payload(rank * 10 + b, it, i);
        rc = comm_reduce_scatter_sum(c, COMM_KV_BACKWARD, in, out, count, err, errlen);
        for (size_t i = 0; i < count && rc == WANCP_OK; i++) {
            float want = 0;
            for (int p = 0; p < world; p++)
                want += payload(p * 10 + rank, it, i);
            CHECK(out[i] == want, "reduce-scatter: rank %d index %zu", rank, i);
        }
        /* in place: recv is this rank's block of send */
        if (rc == WANCP_OK)
            rc = comm_reduce_scatter_sum(c, COMM_KV_BACKWARD, in, in + (size_t)rank * count, count, err, errlen);
        for (size_t i = 0; i < count && rc == WANCP_OK; i++)
            CHECK(in[(size_t)rank * count + i] == out[i], "reduce-scatter in place: rank %d index %zu", rank, i);
        free(in);
        free(out);
        if (rc != WANCP_OK)
            return rc;
        /* broadcast from a rotating root */
        int root = it % world;
        uint8_t buf[257];
        for (int i = 0; i < 257; i++)
            buf[i] = rank == root ? (uint8_t)(i * 3 + it) : 0;
        rc = comm_broadcast(c, COMM_CONTROL, buf, sizeof buf, root, err, errlen);
        for (int i = 0; i < 257 && rc == WANCP_OK; i++)
            CHECK(buf[i] == (uint8_t)(i * 3 + it), "broadcast: rank %d byte %d", rank, i);
        if (rc != WANCP_OK)
            return rc;
    }
    return comm_barrier(c, err, errlen);
}

static void collectives(void **state)
{
    (void)state;
    for (int world = 1; world <= 4; world++) {
        int status[16];
        run_ranks(world, base_port(), 20000, collectives_body, NULL, status);
        for (int r = 0; r < world; r++) {
            char text[4096] = "";
            read_err(r, text, sizeof text);
            if (status[r] != 0)
                fail_msg("world %d rank %d exit %d: %s", world, r, status[r], text);
        }
        printf("  collectives on %d ranks: ok\n", world);
    }
}

/* Exact counters: a direct all-gather of B bytes moves B each way between every pair in
 * its class, one frame each, and nothing in the other classes beyond the setup barrier. */
static int counters_body(comm *c, void *arg, char *err, size_t errlen)
{
    (void)arg;
    const int rank = comm_rank(c), world = comm_size(c);
    const size_t bytes = 12345;
    uint8_t *mine = calloc(bytes, 1), *all = calloc(bytes * (size_t)world, 1);
    int rc = comm_allgather(c, COMM_KV_FORWARD, mine, all, bytes, COMM_DIRECT, err, errlen);
    /* point to point in order: rank 0 sends three messages of different sizes to rank 1 */
    if (rc == WANCP_OK && world > 1 && rank < 2) {
        uint32_t a[3] = {1, 2, 3}, b[3] = {0};
        if (rank == 0) {
            comm_request *reqs[3];
            for (int i = 0; i < 3 && rc == WANCP_OK; i++)
                rc = comm_isend(c, 1, COMM_KV_BACKWARD, &a[i], sizeof a[i], &reqs[i], err, errlen);
            if (rc == WANCP_OK)
                rc = comm_wait_all(c, reqs, 3, err, errlen);
        } else {
            for (int i = 0; i < 3 && rc == WANCP_OK; i++)
                rc = comm_recv(c, 0, COMM_KV_BACKWARD, &b[i], 4, err, errlen);
            if (rc == WANCP_OK && (b[0] != 1 || b[1] != 2 || b[2] != 3))
                rc =
                    wancp_fail(err, errlen, WANCP_ERR_INPUT, "point-to-point out of order: %u %u %u", b[0], b[1], b[2]);
        }
    }
    for (int p = 0; p < world && rc == WANCP_OK; p++) {
        if (p == rank)
            continue;
        comm_counts kv = comm_counts_of(c, p, COMM_KV_FORWARD), ws = comm_counts_of(c, p, COMM_WEIGHT_SYNC);
        CHECK(kv.tx_bytes == bytes && kv.rx_bytes == bytes && kv.tx_frames == 1 && kv.rx_frames == 1,
              "rank %d: kv-forward with rank %d tx %llu rx %llu frames %llu/%llu", rank, p,
              (unsigned long long)kv.tx_bytes, (unsigned long long)kv.rx_bytes, (unsigned long long)kv.tx_frames,
              (unsigned long long)kv.rx_frames);
        CHECK(ws.tx_bytes == 0 && ws.rx_bytes == 0, "rank %d: weight-sync bytes where none were sent", rank);
        comm_counts ctl = comm_counts_of(c, p, COMM_CONTROL);
        CHECK(ctl.tx_bytes == 1 && ctl.rx_bytes == 1, "rank %d: control should hold the setup barrier's byte", rank);
    }
    free(mine);
    free(all);
    return rc;
}

static void counters_and_order(void **state)
{
    (void)state;
    int status[16];
    run_ranks(3, base_port(), 20000, counters_body, NULL, status);
    for (int r = 0; r < 3; r++) {
        char text[4096] = "";
        read_err(r, text, sizeof text);
        if (status[r] != 0)
            fail_msg("rank %d exit %d: %s", r, status[r], text);
    }
}

/* Rank 1 dies (SIGKILL) after setup; the others must fail quickly, naming rank 1. */
static int killed_body(comm *c, void *arg, char *err, size_t errlen)
{
    (void)arg;
    if (comm_rank(c) == 1)
        raise(SIGKILL);
    float data[1000] = {0};
    double t0 = comm_now_for_tests();
    int rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, data, 1000, err, errlen);
    if (rc == WANCP_OK)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "all-reduce succeeded without rank 1");
    fprintf(stderr, "failed after %.2f s\n", comm_now_for_tests() - t0);
    return rc;
}

static void killed_rank(void **state)
{
    (void)state;
    int status[16];
    run_ranks(4, base_port(), 30000, killed_body, NULL, status);
    assert_int_equal(status[1], 128 + SIGKILL);
    for (int r = 0; r < 4; r++) {
        if (r == 1)
            continue;
        char text[4096] = "";
        read_err(r, text, sizeof text);
        if (status[r] != 1 || strstr(text, "rank") == NULL)
            fail_msg("rank %d: exit %d, stderr: %s", r, status[r], text);
        double seconds = 99;
        const char *p = strstr(text, "failed after ");
        if (p != NULL)
            seconds = atof(p + 13);
        const char *line = strstr(text, "rank ");
        printf("  rank %d saw the death in %.2f s: %s", r, seconds, line ? line : text);
        assert_true(seconds < 10.0);
    }
    /* The neighbours of rank 1 in the ring name it. */
    char text[4096] = "";
    read_err(2, text, sizeof text);
    assert_non_null(strstr(text, "rank 1 ("));
}

/* Rank 1 stops answering (a long sleep) while rank 0 waits for it: rank 0 fails at its
 * 2-second timeout naming rank 1. */
static int stalled_body(comm *c, void *arg, char *err, size_t errlen)
{
    (void)arg;
    if (comm_rank(c) == 1) {
        sleep(6);
        return WANCP_OK;
    }
    uint32_t v;
    int rc = comm_recv(c, 1, COMM_CONTROL, &v, sizeof v, err, errlen);
    return rc == WANCP_OK ? wancp_fail(err, errlen, WANCP_ERR_INPUT, "received from a sleeping rank") : rc;
}

static void stalled_rank(void **state)
{
    (void)state;
    int status[16];
    double t0 = comm_now_for_tests();
    run_ranks(2, base_port(), 2000, stalled_body, NULL, status);
    (void)t0;
    char text[4096] = "";
    read_err(0, text, sizeof text);
    if (status[0] != 1 || strstr(text, "rank 1 (127.0.0.1), control: nothing received for") == NULL)
        fail_msg("rank 0: exit %d, stderr: %s", status[0], text);
    printf("  %s", text);
}

/* Strangers on rank 0's ports, one with garbage and one with another job's header: both are
 * refused and logged, and the job's collectives still succeed. */
static int strangers_body(comm *c, void *arg, char *err, size_t errlen)
{
    const int port = *(int *)arg;
    if (comm_rank(c) == 1) {
        for (int k = 0; k < 2; k++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(port + 1 + k))};
            inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
            if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
                uint8_t header[FRAME_BYTES];
                if (k == 0) {
                    memset(header, 'x', sizeof header);
                } else {
                    frame f = {.cls = 1, .kind = FRAME_HELLO, .job_id = 7, .length = 0};
                    frame_encode(&f, header);
                }
                if (send(fd, header, sizeof header, 0) < 0)
                    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "stranger could not send");
            }
            usleep(300000);
            close(fd);
        }
    }
    return collectives_body(c, NULL, err, errlen);
}

static void strangers_refused(void **state)
{
    (void)state;
    int status[16], port = base_port();
    run_ranks(2, port, 20000, strangers_body, &port, status);
    char text[4096] = "";
    read_err(0, text, sizeof text);
    if (status[0] != 0 || status[1] != 0)
        fail_msg("exit %d/%d: %s", status[0], status[1], text);
    if (strstr(text, "refused a connection on its kv-forward port: 127.0.0.1:") == NULL ||
        strstr(text, "bad magic") == NULL || strstr(text, "job id 7, this job is 42") == NULL)
        fail_msg("rank 0 did not name both strangers: %s", text);
    printf("  %s", text);
}

static void options_from_env(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    comm_options o;
    setenv("RANK", "2", 1);
    setenv("WORLD_SIZE", "4", 1);
    setenv("MASTER_ADDR", "198.18.0.1", 1);
    setenv("MASTER_PORT", "31000", 1);
    assert_int_equal(comm_options_from_env(&o, err, sizeof err), WANCP_OK);
    assert_int_equal(o.rank, 2);
    assert_int_equal(o.world, 4);
    assert_string_equal(o.master_addr, "198.18.0.1");
    assert_int_equal(o.master_port, 31000);
    assert_int_equal(o.timeout_ms, 60000);
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    setenv("SLURM_PROCID", "3", 1);
    setenv("SLURM_NTASKS", "8", 1);
    assert_int_equal(comm_options_from_env(&o, err, sizeof err), WANCP_OK);
    assert_int_equal(o.rank, 3);
    assert_int_equal(o.world, 8);
    unsetenv("SLURM_PROCID");
    unsetenv("SLURM_NTASKS");
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("WANCP_COMM_TIMEOUT", "5", 1);
    assert_int_equal(comm_options_from_env(&o, err, sizeof err), WANCP_OK);
    assert_int_equal(o.rank, 1);
    assert_int_equal(o.timeout_ms, 5000);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    setenv("MASTER_PORT", "port", 1);
    assert_int_equal(comm_options_from_env(&o, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "MASTER_PORT='port' must be 1024..65535");
    assert_err_mentions(err, "rank 2 is not below the world size 2");
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("WANCP_COMM_TIMEOUT");
    unsetenv("MASTER_PORT");
    unsetenv("MASTER_ADDR");
}

static void frames(void **state)
{
    (void)state;
    uint8_t b[FRAME_BYTES];
    frame f = {.cls = 2, .kind = FRAME_DATA, .job_id = 99, .seq = 5, .length = 1000}, g;
    frame_encode(&f, b);
    char err[WANCP_ERRLEN];
    assert_int_equal(frame_decode(b, 99, 2, FRAME_DATA, 5, 1000, &g, "peer", err, sizeof err), WANCP_OK);
    assert_true(g.cls == f.cls && g.kind == f.kind && g.job_id == f.job_id && g.seq == f.seq && g.length == f.length);
    assert_int_equal(frame_decode(b, 98, 2, FRAME_DATA, 5, 1000, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "peer: job id 99, this job is 98");
    assert_int_equal(frame_decode(b, 99, 1, FRAME_DATA, 5, 1000, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    assert_int_equal(frame_decode(b, 99, 2, FRAME_DATA, 6, 1000, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "sequence 5, expected 6");
    assert_int_equal(frame_decode(b, 99, 2, FRAME_DATA, 5, 999, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    b[4] = 9;
    assert_int_equal(frame_decode(b, 99, 2, FRAME_DATA, 5, 1000, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "protocol version 9");
    b[0] ^= 1;
    assert_int_equal(frame_decode(b, 99, 2, FRAME_DATA, 5, 1000, &g, "peer", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad magic");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames),
        cmocka_unit_test(options_from_env),
        cmocka_unit_test(collectives),
        cmocka_unit_test(counters_and_order),
        cmocka_unit_test(killed_rank),
        cmocka_unit_test(stalled_rank),
        cmocka_unit_test(strangers_refused),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
