/* The link model (shaper/link_model.h): one message's time, FIFO pipelining, max-min fair
 * sharing on uplinks, independent mesh links, jitter keeping order, the Mathis cap, a rate
 * schedule, heterogeneity, and the alpha-beta formulas. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "shaper/link_model.h"
#include "shaper/topology.h"

#include <math.h>

/* Runs the model until idle; returns the last arrival. */
static double drain(link_net *n)
{
    int done[64];
    double t;
    while (isfinite(t = link_net_next_event(n)))
        link_net_advance(n, t, done, 64);
    return t;
}

static link_net *make(link_model_config *c)
{
    link_net *n = NULL;
    char err[WANCP_ERRLEN];
    if (link_net_init(&n, c, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    return n;
}

static link_profile profile(uint64_t rate, uint64_t delay_ns)
{
    link_profile p = {.rate_bps = rate, .delay_ns = delay_ns};
    snprintf(p.name, sizeof p.name, "test");
    return p;
}

static void one_message(void **state)
{
    (void)state;
    link_profile p = profile(100000000, 20000000);
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_UPLINK, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int id = link_net_send(n, 0, 1, 0, 1e6, 0.5);
    drain(n);
    /* 8 Mbit at 100 Mbit/s: 80 ms on the wire, then 20 ms of delay, from t = 0.5 */
    assert_true(fabs(link_net_sent_at(n, id) - 0.58) < 1e-9);
    assert_true(fabs(link_net_arrival(n, id) - 0.60) < 1e-9);
    assert_true(fabs(link_net_bytes(n, 0, 0) - 1e6) < 1e-6);
    link_net_free(n);
}

/* Back-to-back messages on one connection: serialised one after the other, the delay paid
 * once per message but overlapping (pipelined), arrivals in order. */
static void fifo_pipelines(void **state)
{
    (void)state;
    link_profile p = profile(8000000, 50000000); /* 1 MB/s payload with eta 1 */
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int a = link_net_send(n, 0, 1, 0, 1e5, 0), b = link_net_send(n, 0, 1, 0, 1e5, 0);
    drain(n);
    assert_true(fabs(link_net_arrival(n, a) - 0.15) < 1e-9);
    assert_true(fabs(link_net_arrival(n, b) - 0.25) < 1e-9); /* not 0.30: latency pipelines */
    link_net_free(n);
}

/* Uplink: two flows from one node share its uplink; a third into another node is limited by
 * that node's downlink; max-min fairness gives each what the bottleneck leaves. */
static void uplink_shares_max_min(void **state)
{
    (void)state;
    link_profile p = profile(8000000, 0);
    link_model_config c = {.nodes = 3, .topology = TOPOLOGY_UPLINK, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int a = link_net_send(n, 0, 1, 0, 1e6, 0), b = link_net_send(n, 0, 2, 0, 1e6, 0);
    drain(n);
    /* both at 0.5 MB/s until both are done: 2 s, not 1 s */
    assert_true(fabs(link_net_arrival(n, a) - 2.0) < 1e-9);
    assert_true(fabs(link_net_arrival(n, b) - 2.0) < 1e-9);
    link_net_free(n);

    n = make(&c);
    /* 0 -> 1 (1 MB) and 2 -> 1 (0.5 MB): node 1's downlink is shared; the small flow ends at
     * 1 s, the big one takes the whole link after: 0.5 MB at 0.5 + 0.5 MB at 1 MB/s = 1.5 s */
    a = link_net_send(n, 0, 1, 0, 1e6, 0);
    b = link_net_send(n, 2, 1, 0, 5e5, 0);
    drain(n);
    assert_true(fabs(link_net_arrival(n, b) - 1.0) < 1e-9);
    assert_true(fabs(link_net_arrival(n, a) - 1.5) < 1e-9);
    link_net_free(n);
}

static void mesh_pairs_are_independent(void **state)
{
    (void)state;
    link_profile p = profile(8000000, 0);
    link_model_config c = {.nodes = 3, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int a = link_net_send(n, 0, 1, 0, 1e6, 0), b = link_net_send(n, 0, 2, 0, 1e6, 0);
    int d = link_net_send(n, 0, 1, 1, 1e6, 0); /* a second class shares the pair 0 -> 1 */
    drain(n);
    assert_true(fabs(link_net_arrival(n, b) - 1.0) < 1e-9);
    assert_true(fabs(link_net_arrival(n, a) - 2.0) < 1e-9);
    assert_true(fabs(link_net_arrival(n, d) - 2.0) < 1e-9);
    link_net_free(n);
}

/* Jitter moves arrivals but never reorders a connection; the mean delay stays the profile's. */
static void jitter_keeps_order(void **state)
{
    (void)state;
    link_profile p = profile(1000000000, 20000000);
    p.jitter_ns = 10000000;
    p.distribution = JITTER_NORMAL;
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0, .seed = 7};
    link_net *n = make(&c);
    enum { N = 400 };
    int ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = link_net_send(n, 0, 1, 0, 125, i * 0.1); /* 1 us on the wire, far apart */
    drain(n);
    double sum = 0, spread = 0;
    for (int i = 0; i < N; i++) {
        double d = link_net_arrival(n, ids[i]) - link_net_sent_at(n, ids[i]);
        sum += d;
        spread = fmax(spread, fabs(d - 0.02));
        if (i > 0)
            assert_true(link_net_arrival(n, ids[i]) >= link_net_arrival(n, ids[i - 1]));
    }
    assert_true(fabs(sum / N - 0.02) < 0.002);
    assert_true(spread > 0.01); /* the jitter is there */
    link_net_free(n);
}

static void mathis_caps_lossy_links(void **state)
{
    (void)state;
    /* 1448 B per 40 ms RTT x 1.22 / sqrt(0.01): 3.53 Mbit/s */
    assert_true(fabs(link_mathis_bps(1448, 0.04, 0.01) - 1448 * 8 / 0.04 * 12.2) < 1);
    assert_true(isinf(link_mathis_bps(1448, 0.04, 0)));
    link_profile p = profile(100000000, 20000000);
    p.loss_ppm = 10000;
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int id = link_net_send(n, 0, 1, 0, 1e6, 0);
    drain(n);
    const double cap = link_mathis_bps(LINK_MSS_BYTES, 0.04, 0.01) / 8;
    assert_true(fabs(link_net_sent_at(n, id) - 1e6 / cap) < 1e-6);
    link_net_free(n);
}

/* A schedule halves the rate at 1 s: 1 MB/s for a second, then 0.5 MB/s. */
static void schedule_changes_rate(void **state)
{
    (void)state;
    rate_step steps[2] = {{0, 8000000}, {1000000000, 4000000}};
    link_profile p = profile(8000000, 0);
    p.schedule = steps;
    p.nschedule = 2;
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    int id = link_net_send(n, 0, 1, 0, 1.5e6, 0);
    drain(n);
    assert_true(fabs(link_net_sent_at(n, id) - 2.0) < 1e-9);
    link_net_free(n);
}

/* One straggler at B/4 slows what it sends four times; eta scales every rate. */
static void straggler_and_eta(void **state)
{
    (void)state;
    link_profile p = profile(8000000, 0);
    const double scale[2] = {0.25, 1.0};
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_UPLINK, .profile = &p, .eta = 0.5, .node_scale = scale};
    link_net *n = make(&c);
    int a = link_net_send(n, 0, 1, 0, 1e5, 0), b = link_net_send(n, 1, 0, 0, 1e5, 0);
    drain(n);
    assert_true(fabs(link_net_arrival(n, a) - 0.8) < 1e-9); /* 1e5 B at 1 MB/s x 0.25 x 0.5 */
    assert_true(fabs(link_net_arrival(n, b) - 0.8) < 1e-9); /* into the straggler: its downlink */
    assert_true(fabs(link_net_payload_bps(n, 1) - 4e6) < 1e-6);
    link_net_free(n);
}

static void bad_configurations(void **state)
{
    (void)state;
    link_net *n = NULL;
    char err[WANCP_ERRLEN];
    link_model_config c = {.nodes = 0, .topology = TOPOLOGY_UPLINK};
    assert_int_equal(link_net_init(&n, &c, err, sizeof err), WANCP_ERR_INPUT);
    assert_non_null(strstr(err, "nodes"));
    const double bad[2] = {1.0, 0.0};
    c = (link_model_config){.nodes = 2, .topology = TOPOLOGY_MESH, .node_scale = bad};
    assert_int_equal(link_net_init(&n, &c, err, sizeof err), WANCP_ERR_INPUT);
    assert_non_null(strstr(err, "node 1"));
    c.node_scale = NULL;
    n = make(&c);
    assert_int_equal(link_net_send(n, 0, 0, 0, 10, 0), WANCP_ERR_INPUT);
    assert_int_equal(link_net_send(n, 0, 5, 0, 10, 0), WANCP_ERR_INPUT);
    link_net_free(n);
}

/* The alpha-beta formulas and nccl-tests' bus bandwidth factors. */
static void collective_formulas(void **state)
{
    (void)state;
    assert_true(fabs(link_ring_allgather_s(4, 4e6, 0.01, 1e-6) - (0.03 + 3.0)) < 1e-12);
    assert_true(fabs(link_ring_reduce_scatter_s(4, 4e6, 0.01, 1e-6) - (0.03 + 3.0)) < 1e-12);
    assert_true(fabs(link_ring_allreduce_s(8, 8e6, 0.001, 1e-6) - (0.014 + 14.0)) < 1e-12);
    assert_true(fabs(link_busbw_factor("all_reduce", 4) - 1.5) < 1e-12);
    assert_true(fabs(link_busbw_factor("all_gather", 4) - 0.75) < 1e-12);
}

/* A ring all-reduce played as messages on the model (each round after the last) takes the
 * formula's time on a mesh of pair links. */
static void ring_matches_formula(void **state)
{
    (void)state;
    const int P = 4;
    link_profile p = profile(80000000, 5000000); /* 10 MB/s, 5 ms */
    link_model_config c = {.nodes = P, .topology = TOPOLOGY_MESH, .profile = &p, .eta = 1.0};
    link_net *n = make(&c);
    const double total = 8e6;
    double ready[8];
    for (int r = 0; r < P; r++)
        ready[r] = 0;
    for (int round = 0; round < 2 * (P - 1); round++) {
        int ids[8];
        for (int r = 0; r < P; r++)
            ids[r] = link_net_send(n, r, (r + 1) % P, 2, total / P, ready[r]);
        drain(n);
        for (int r = 0; r < P; r++)
            ready[(r + 1) % P] = link_net_arrival(n, ids[r]);
    }
    const double want = link_ring_allreduce_s(P, total, 0.005, 1.0 / 1e7);
    assert_true(fabs(ready[0] - want) / want < 1e-9);
    link_net_free(n);
}

/* TCP's framing (eta left 0): a lone stream gets 1448/1514 of the rate; streams both ways
 * also carry each other's ACKs, 1448/(1514 + 33) each; without htb's bucket. */
static void tcp_framing_and_acks(void **state)
{
    (void)state;
    link_profile p = profile(100000000, 0);
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_UPLINK, .profile = &p, .no_burst = true};
    link_net *n = make(&c);
    int one = link_net_send(n, 0, 1, 0, 1e6, 0);
    drain(n);
    assert_true(fabs(link_net_arrival(n, one) - 8e6 / (1e8 * 1448 / 1514)) < 1e-9);
    link_net_free(n);
    for (int topo = 0; topo < 2; topo++) {
        c.topology = topo == 0 ? TOPOLOGY_UPLINK : TOPOLOGY_MESH;
        n = make(&c);
        int there = link_net_send(n, 0, 1, 0, 1e6, 0), back = link_net_send(n, 1, 0, 0, 1e6, 0);
        drain(n);
        const double want = 8e6 / (1e8 * 1448 / (1514 + 33));
        print_message("both ways (%s): %.6f s each, want %.6f s\n", topo == 0 ? "uplink" : "mesh",
                      link_net_arrival(n, there), want);
        assert_true(fabs(link_net_arrival(n, there) - want) < 1e-9);
        assert_true(fabs(link_net_arrival(n, back) - want) < 1e-9);
        assert_true(fabs(link_net_duplex_payload_bps(n, 0) - 1e8 * 1448 / (1514 + 33)) < 1e-3);
        link_net_free(n);
    }
}

/* htb's bucket: on idle links a message passes at the unshaped rate until the bucket is dry
 * (it refills at the rate meanwhile), then at the rate; after an idle second it is full
 * again; a message smaller than the bucket takes no time at the rate at all. */
static void htb_bucket(void **state)
{
    (void)state;
    link_profile p = profile(100000000, 0);
    link_model_config c = {.nodes = 2, .topology = TOPOLOGY_UPLINK, .profile = &p};
    link_net *n = make(&c);
    const double R = 1e8 / 8, U = LINK_UNSHAPED_BPS / 8, W = 1e6 * 1514 / 1448; /* wire bytes */
    const double t1 = LINK_BURST_BYTES / (U - R), want = t1 + (W - U * t1) / R;
    int a = link_net_send(n, 0, 1, 0, 1e6, 0);
    drain(n);
    print_message("1 MB on idle links: %.6f s (without the bucket %.6f s)\n", link_net_arrival(n, a), W / R);
    assert_true(fabs(link_net_arrival(n, a) - want) < 1e-9);
    int b = link_net_send(n, 0, 1, 0, 1e6, 2.0); /* after an idle second: the same again */
    drain(n);
    assert_true(fabs(link_net_arrival(n, b) - 2.0 - want) < 1e-9);
    int small = link_net_send(n, 0, 1, 0, 65536, 4.0);
    drain(n);
    assert_true(fabs(link_net_arrival(n, small) - 4.0 - 65536.0 * 1514 / 1448 / U) < 1e-9);
    link_net_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_message),
        cmocka_unit_test(fifo_pipelines),
        cmocka_unit_test(uplink_shares_max_min),
        cmocka_unit_test(mesh_pairs_are_independent),
        cmocka_unit_test(jitter_keeps_order),
        cmocka_unit_test(mathis_caps_lossy_links),
        cmocka_unit_test(schedule_changes_rate),
        cmocka_unit_test(straggler_and_eta),
        cmocka_unit_test(bad_configurations),
        cmocka_unit_test(collective_formulas),
        cmocka_unit_test(ring_matches_formula),
        cmocka_unit_test(tcp_framing_and_acks),
        cmocka_unit_test(htb_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
