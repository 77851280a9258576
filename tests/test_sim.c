/* The step simulator: the event model against its closed form where overlap is off, the
 * paper-scale arithmetic of SIMULATION.md, overlap doing what it should, and the speed of
 * projecting 10,000 steps. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "harness/dilation.h"
#include "harness/sim/sim_hardware.h"
#include "harness/sim/sim_step.h"
#include "shaper/topology.h"

#include <math.h>
#include <time.h>

#define HARDWARE_DIR PROFILE_DIR "/../hardware"

static sim_hardware a100(void)
{
    sim_hardware hw;
    char err[WANCP_ERRLEN];
    if (sim_hardware_load(&hw, HARDWARE_DIR "/a100-bf16.ini", err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    return hw;
}

/* SIMULATION.md's setting: 800M (ffn 11456 makes the matmul parameters 0.800e9), 132,000
 * tokens over 8 ranks, bf16. */
static sim_setup paper(const link_profile *p, int topology)
{
    sim_setup s = {.hw = a100(), .wire_bytes = 2, .sync = 'A', .sync_every = 500, .time_scale = 1};
    s.shape = (sim_shape){.ranks = 8,
                          .layers = 8,
                          .dim = 2048,
                          .heads = 8,
                          .kv_heads = 8,
                          .ffn = 11456,
                          .vocab = 50257,
                          .batch = 1,
                          .chunk = 132000 / 16,
                          .tied = true};
    s.link = (link_model_config){.nodes = 8, .topology = topology, .profile = p};
    return s;
}

static void compressed(sim_setup *s)
{
    s->compress = true;
    s->compress_last = true;
    s->shape.psi_k = 1;
    s->shape.rank_k = 41;  /* ceil(0.02 x 2048) */
    s->shape.rank_v = 103; /* ceil(0.05 x 2048) */
}

static sim_result run(const sim_setup *s, int steps)
{
    sim_result r;
    char err[WANCP_ERRLEN];
    if (sim_run(s, steps, &r, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    return r;
}

static double kv_exposed(const sim_result *r)
{
    return r->steady.exposed_s[COMM_KV_FORWARD] + r->steady.exposed_s[COMM_KV_BACKWARD];
}

/* With overlap off the event model is the closed form: uplink and mesh, Mode S every step
 * and Mode A every c, uncompressed and compressed, paper and quickstart shapes. */
static void event_model_equals_closed_form(void **state)
{
    (void)state;
    link_profile wan = {.rate_bps = 300000000, .delay_ns = 20000000};
    char err[WANCP_ERRLEN];
    for (int topo = 0; topo < 2; topo++)
        for (int sync = 0; sync < 2; sync++)
            for (int comp = 0; comp < 2; comp++)
                for (int shape = 0; shape < 2; shape++) {
                    sim_setup s = paper(&wan, topo == 0 ? TOPOLOGY_UPLINK : TOPOLOGY_MESH);
                    if (shape == 1) { /* quickstart's model */
                        s.shape = (sim_shape){.ranks = 4,
                                              .layers = 4,
                                              .dim = 256,
                                              .heads = 4,
                                              .kv_heads = 4,
                                              .ffn = 704,
                                              .vocab = 256,
                                              .batch = 1,
                                              .chunk = 512,
                                              .tied = true};
                        s.link.nodes = 4;
                    }
                    s.no_overlap = true;
                    s.allgather = true;
                    s.link.no_burst = true; /* the closed form has no htb bucket */
                    s.sync = sync == 0 ? 'S' : 'A';
                    s.sync_every = 10;
                    if (comp) {
                        compressed(&s);
                        s.shape.rank_k = shape == 1 ? 6 : 41;
                        s.shape.rank_v = shape == 1 ? 13 : 103;
                    }
                    sim_result r = run(&s, 10);
                    const double closed = sim_closed_form(&s, comp != 0, err, sizeof err);
                    const double event = s.sync == 'S' ? r.steady.step_s : r.total_s / 10;
                    print_message("topology %d sync %c compressed %d shape %d: event %.4f s, closed form %.4f s\n",
                                  topo, s.sync, comp, shape, event, closed);
                    assert_true(fabs(event - closed) / closed < 0.01);
                    sim_result_free(&r);
                }
}

/* SIMULATION.md's paper-scale arithmetic, with its assumptions: every chunk to every rank
 * and back (all-gather), the raw link rate (eta = 1), no overlap. */
static void paper_arithmetic(void **state)
{
    (void)state;
    link_profile slow = {.rate_bps = 300000000}, fast = {.rate_bps = 100000000000ull};
    /* K+V of one chunk: 8250 x 2048 x 2 x 2 B; a rank's link carries 2 (P-1) = 14 of them per
     * layer and pass: 946 MB; 15.14 GB per step over 8 layers, forward and backward. */
    const double per_step = 14 * 8250.0 * 2048 * 2 * 2 * 8 * 2;
    const struct {
        const link_profile *p;
        int topology;
        bool compress;
        double want_s, stated_s;
    } rows[] = {
        {&slow, TOPOLOGY_UPLINK, false, per_step * 8 / 300e6, 404},
        {&slow, TOPOLOGY_MESH, false, per_step / 7 * 8 / 300e6, 58},
        {&fast, TOPOLOGY_UPLINK, false, per_step * 8 / 100e9, 1.2},
        /* all blocks compressed: (41 + 103) / 4096 of the bytes, plus theta */
        {&slow, TOPOLOGY_UPLINK, true, (14 * (8250.0 * 144 * 2 + 8) * 8 * 2) * 8 / 300e6, 0.53e9 * 8 / 300e6},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        sim_setup s = paper(rows[i].p, rows[i].topology);
        s.allgather = true;
        s.no_overlap = true;
        s.link.eta = 1.0;
        if (rows[i].compress)
            compressed(&s);
        sim_result r = run(&s, 600);
        const double got = kv_exposed(&r);
        print_message("row %zu: K/V exchange %.2f s; arithmetic %.2f s; SIMULATION.md says %.3g s\n", i, got,
                      rows[i].want_s, rows[i].stated_s);
        assert_true(fabs(got - rows[i].want_s) / rows[i].want_s < 0.01);
        assert_true(fabs(got - rows[i].stated_s) / rows[i].stated_s < 0.015); /* its figures are rounded */
        sim_result_free(&r);
    }
    /* Compute per GPU: 2.9e14 FLOP (6NT + 6LT^2d over 8), 0.94 s at the 312 TFLOP/s peak. */
    sim_setup s = paper(&slow, TOPOLOGY_UPLINK);
    sim_work w;
    double moved;
    char err[WANCP_ERRLEN];
    assert_int_equal(sim_step_work(&s, false, 0, &w, &moved, err, sizeof err), WANCP_OK);
    const double flops = w.amount[SIM_MATMUL] + w.amount[SIM_ATTENTION];
    const double want = (6 * 0.8e9 * 132000 + 6.0 * 8 * 132000.0 * 132000 * 2048) / 8;
    print_message("per GPU %.4g FLOP (arithmetic %.4g), %.3f s at peak\n", flops, want, flops / 312e12);
    assert_true(fabs(flops - want) / want < 0.01);
    /* The weight all-reduce of 800M bf16 parameters at 300 Mbit/s: about 75 s (ring). */
    s.link.eta = 1.0;
    s.sync = 'A';
    s.sync_every = 2;
    sim_result r = run(&s, 2);
    const double ring = r.sync_step.exposed_s[COMM_WEIGHT_SYNC];
    print_message("weight all-reduce %.1f s (SIMULATION.md: about 75 s)\n", ring);
    assert_true(fabs(ring - 75) / 75 < 0.02);
    sim_result_free(&r);
}

/* Overlap hides communication: the step with overlap is never slower, and on a fast link it
 * is compute plus little. */
static void overlap_hides_communication(void **state)
{
    (void)state;
    link_profile fast = {.rate_bps = 100000000000ull, .delay_ns = 5000};
    sim_setup s = paper(&fast, TOPOLOGY_UPLINK);
    sim_result with = run(&s, 10);
    s.no_overlap = true;
    sim_result without = run(&s, 10);
    print_message("100G: step %.3f s with overlap, %.3f s without; compute %.3f s\n", with.steady.step_s,
                  without.steady.step_s, with.steady.compute_s);
    assert_true(with.steady.step_s < without.steady.step_s);
    assert_true(with.steady.step_s < 1.25 * with.steady.compute_s);
    /* bytes are what METHOD.md 5 says rank 0 sends: (P-1) + 0 chunks forward, 2P-2 back */
    const double mu0 = 2 * 8250.0 * 2048 * 2;
    assert_true(fabs(with.steady.bytes[COMM_KV_FORWARD] - 7 * mu0 * 8) < 1);
    assert_true(fabs(with.steady.bytes[COMM_KV_BACKWARD] - 14 * mu0 * 8) < 1);
    sim_result_free(&with);
    sim_result_free(&without);
}

/* Jitter makes every step its own: simulated step by step, p95 above the median. */
static void jitter_is_simulated_per_step(void **state)
{
    (void)state;
    link_profile j = {
        .rate_bps = 300000000, .delay_ns = 20000000, .jitter_ns = 10000000, .distribution = JITTER_PARETONORMAL};
    sim_setup s = paper(&j, TOPOLOGY_MESH);
    compressed(&s);
    s.shape.layers = 2;
    s.warm_steps = 0;
    s.link.seed = 3;
    sim_result r = run(&s, 40);
    assert_true(r.stepwise);
    assert_true(r.p95_s > r.p50_s);
    sim_result_free(&r);
}

/* 10,000 paper-scale steps in under a second (the projection of a whole run). */
static void ten_thousand_steps_fast(void **state)
{
    (void)state;
    link_profile wan = {.rate_bps = 300000000};
    sim_setup s = paper(&wan, TOPOLOGY_MESH);
    compressed(&s);
    s.warm_steps = 500;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    sim_result r = run(&s, 10000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    const double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    print_message("10,000 paper-scale steps: %.3f s of simulation, %.0f s projected\n", took, r.total_s);
    assert_int_equal(r.steps, 10000);
    assert_true(r.total_s > 9500 * r.steady.step_s);
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(took < 1.0);
#endif
    sim_result_free(&r);
}

/* The quickstart's shape on a host whose ranks share cores: efficiencies of a CPU-like pace
 * (a step's compute near a second), cores and link cost as a calibration writes them. */
static sim_setup host_quickstart(const link_profile *p, double cores, double link_cost_s)
{
    sim_setup s = {.hw = a100(), .wire_bytes = 2, .sync = 'A', .sync_every = 50, .time_scale = 1};
    s.hw.host = true;
    s.hw.peak_flops = 300e9;
    s.hw.memory_bytes_s = 6e9;
    s.hw.cores = cores;
    s.hw.link_cost.cost_s[0] = link_cost_s;
    s.hw.link_cost.n = link_cost_s > 0;
    s.shape = (sim_shape){.ranks = 4,
                          .layers = 4,
                          .dim = 256,
                          .heads = 4,
                          .kv_heads = 4,
                          .ffn = 704,
                          .vocab = 256,
                          .batch = 1,
                          .chunk = 4096 / 8,
                          .tied = true};
    s.link = (link_model_config){.nodes = 4, .topology = TOPOLOGY_UPLINK, .profile = p};
    return s;
}

static bool near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

/* Processor sharing: a core per rank and nothing charged to the links is the plain model;
 * fewer cores than ranks lets a rank run ahead while others wait (never beyond its one
 * thread); the shaped links' packet work slows compute by what it takes, and unshaped links
 * (whose price the byte cost holds) take nothing extra. */
static void shared_cores(void **state)
{
    (void)state;
    link_profile slow = {.rate_bps = 100000000};
    sim_setup off = host_quickstart(&slow, 0, 0), own = host_quickstart(&slow, 4, 0);
    sim_result r_off = run(&off, 6), r_own = run(&own, 6);
    print_message("100 Mbit/s: plain %.4f s (compute %.4f), a core per rank %.4f s (compute %.4f)\n",
                  r_off.steady.step_s, r_off.steady.compute_s, r_own.steady.step_s, r_own.steady.compute_s);
    assert_true(near(r_own.steady.step_s, r_off.steady.step_s, 1e-9));
    assert_true(near(r_own.steady.compute_s, r_off.steady.compute_s, 1e-9));

    /* four ranks on two cores: a rank computes up to twice the calibration's pace while
     * others wait for K/V */
    sim_setup two = host_quickstart(&slow, 2, 0);
    sim_result r_two = run(&two, 6);
    print_message("two cores: %.4f s (compute %.4f)\n", r_two.steady.step_s, r_two.steady.compute_s);
    assert_true(r_two.steady.compute_s < 0.98 * r_off.steady.compute_s);
    assert_true(r_two.steady.compute_s > 0.5 * r_off.steady.compute_s);
    assert_true(r_two.steady.step_s <= r_off.steady.step_s * (1 + 1e-9));

    /* the links' packet work: 10 ns of a core per payload byte, at 300 Mbit/s where the
     * bytes trickle while the ranks compute (a slower host: compute near two seconds) */
    link_profile wan = {.rate_bps = 300000000};
    sim_setup quiet = host_quickstart(&wan, 2, 0), priced = host_quickstart(&wan, 2, 10e-9);
    quiet.hw.peak_flops = priced.hw.peak_flops = 50e9;
    sim_result r_quiet = run(&quiet, 6), r_priced = run(&priced, 6);
    double payload = 0; /* every rank's K/V in a step: rank 0's x P (they send alike) */
    for (int c = 0; c < COMM_NCLASSES; c++)
        payload += r_priced.steady.bytes[c] * 4;
    const double taken = 10e-9 * payload / 2; /* seconds of the two cores the links take per step */
    const double slower = r_priced.steady.step_s - r_quiet.steady.step_s;
    print_message("300 Mbit/s: %.4f s (compute %.4f), priced links %.4f s (compute %.4f): +%.4f s; the links "
                  "take %.4f s of both cores a step\n",
                  r_quiet.steady.step_s, r_quiet.steady.compute_s, r_priced.steady.step_s, r_priced.steady.compute_s,
                  slower, taken);
    assert_true(r_priced.steady.compute_s > r_quiet.steady.compute_s);
    assert_true(slower > 0.25 * taken && slower < 2 * taken);

    /* links that delay take the delay emulator's price, and only they */
    link_profile wan_delay = {.rate_bps = 300000000, .delay_ns = 1000000};
    sim_setup delayed = host_quickstart(&wan_delay, 2, 0), delayed_priced = host_quickstart(&wan_delay, 2, 0),
              rate_only = host_quickstart(&wan, 2, 0);
    delayed.hw.peak_flops = delayed_priced.hw.peak_flops = rate_only.hw.peak_flops = 50e9;
    delayed_priced.hw.delay_link_cost.cost_s[0] = rate_only.hw.delay_link_cost.cost_s[0] = 10e-9;
    delayed_priced.hw.delay_link_cost.n = rate_only.hw.delay_link_cost.n = 1;
    sim_result r_delayed = run(&delayed, 6), r_delayed_priced = run(&delayed_priced, 6),
               r_rate_only = run(&rate_only, 6);
    print_message("300 Mbit/s, 1 ms: %.4f s, the delay emulator priced %.4f s\n", r_delayed.steady.step_s,
                  r_delayed_priced.steady.step_s);
    assert_true(r_delayed_priced.steady.compute_s > r_delayed.steady.compute_s);
    assert_true(r_delayed_priced.steady.step_s > r_delayed.steady.step_s);
    assert_true(near(r_rate_only.steady.step_s, r_quiet.steady.step_s, 1e-12));
    sim_result_free(&r_delayed);
    sim_result_free(&r_delayed_priced);
    sim_result_free(&r_rate_only);

    sim_setup bare = host_quickstart(NULL, 2, 0), bare_priced = host_quickstart(NULL, 2, 10e-9);
    sim_result r_bare = run(&bare, 6), r_bare_priced = run(&bare_priced, 6);
    assert_true(near(r_bare_priced.steady.step_s, r_bare.steady.step_s, 1e-12));
    sim_result_free(&r_off);
    sim_result_free(&r_own);
    sim_result_free(&r_two);
    sim_result_free(&r_quiet);
    sim_result_free(&r_priced);
    sim_result_free(&r_bare);
    sim_result_free(&r_bare_priced);
}

static void bad_hardware_files(void **state)
{
    (void)state;
    char path[512], err[WANCP_ERRLEN];
    sim_hardware hw;
    test_path(path, sizeof path, "bad.ini");
    test_write_file(path, "[hardware]\nname = x\npeak_flops = -3\nmatmul = 0.5\nfoo = 1\n", 58);
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.ini:3: peak_flops");
    assert_err_mentions(err, "bad.ini:5: unknown key 'foo'");
    assert_err_mentions(err, "missing key 'attention'");
    const char *shared = "[hardware]\nname = x\npeak_flops = 1e9\nmatmul = 0.5\nattention = 0.5\ncodec = 0.5\n"
                         "memory_bytes_s = 1e9\nop_overhead_s = 0\nact_bytes = 4\nparam_bytes = 4\nbyte_cost_s = 0\n"
                         "host = false\ncores = 2\nlink_cost_s = 0\ndelay_link_cost_s = 0\n";
    test_write_file(path, shared, strlen(shared));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "cores = 2 with host = false");
    const char *old = "[hardware]\nname = x\npeak_flops = 1e9\nmatmul = 0.5\nattention = 0.5\ncodec = 0.5\n"
                      "memory_bytes_s = 1e9\nop_overhead_s = 0\nact_bytes = 4\nparam_bytes = 4\nbyte_cost_s = 0\n"
                      "host = true\n";
    test_write_file(path, old, strlen(old));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "missing key 'cores'");
    assert_err_mentions(err, "run `wancp bench calibrate` again");
    /* prices by rate: log-linear between the measured rates, the ends beyond them */
    char priced[1024];
    snprintf(priced, sizeof priced,
             "%scores = 2\nlink_cost_s = 2e-08@5e+07, 1e-08@2e+08, 4e-09@1e+09\ndelay_link_cost_s = 3e-08@3e+08\n",
             old);
    test_write_file(path, priced, strlen(priced));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_OK);
    assert_int_equal(hw.link_cost.n, 3);
    assert_int_equal(hw.delay_link_cost.n, 1);
    assert_true(sim_link_cost_at(&hw.link_cost, 1e7) == 2e-8 && sim_link_cost_at(&hw.link_cost, 1e10) == 4e-9);
    assert_true(near(sim_link_cost_at(&hw.link_cost, 1e8), 1.5e-8, 1e-12)); /* halfway in log rate */
    /* delayed links take their own prices (one rate: every rate), rate-shaped ones not */
    assert_true(sim_link_cost_of(&hw, 1e8, true) == 3e-8 && sim_link_cost_of(&hw, 1e9, true) == 3e-8);
    assert_true(sim_link_cost_of(&hw, 1e9, false) == 4e-9);
    /* a host without delay prices charges delayed links the rate-shaped ones' */
    hw.delay_link_cost.n = 0;
    assert_true(sim_link_cost_of(&hw, 1e9, true) == 4e-9);
    /* inih reads 200 bytes a line: a longer comment is read, a longer key line is named
     * (not cut short, nor its rest taken for a line of its own) */
    char pad[300], longer[1024];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(longer, sizeof longer, "; %s\n%scores = 2\nlink_cost_s = 0\ndelay_link_cost_s = 0\n", pad, old);
    test_write_file(path, longer, strlen(longer));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_OK);
    snprintf(longer, sizeof longer, "%scores = 2\nlink_cost_s = 0 ; %s\ndelay_link_cost_s = 0\n", old, pad);
    test_write_file(path, longer, strlen(longer));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.ini:14: line longer than 199 characters");
    assert_err_mentions(err, "missing key 'link_cost_s'");
    snprintf(priced, sizeof priced, "%scores = 2\nlink_cost_s = 1e-08@2e+08, 2e-08@5e+07\ndelay_link_cost_s = 0\n",
             old);
    test_write_file(path, priced, strlen(priced));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.ini:14: link_cost_s = '1e-08@2e+08, 2e-08@5e+07' must be");
    snprintf(priced, sizeof priced, "%scores = 2\nlink_cost_s = 0\ndelay_link_cost_s = 2e-08@1e9, x\n", old);
    test_write_file(path, priced, strlen(priced));
    assert_int_equal(sim_hardware_load(&hw, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.ini:15: delay_link_cost_s = '2e-08@1e9, x' must be");
    assert_int_equal(sim_hardware_find(&hw, "tpu-v9", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "unknown hardware 'tpu-v9'");
    assert_int_equal(sim_hardware_find(&hw, "a100-bf16", err, sizeof err), WANCP_OK);
    assert_true(hw.peak_flops == 312e12);
    test_remove_tmpdir();
}

/* dilation = auto's rule with stand-in timings: the uncompressed exchange through one link
 * at rate / D takes exchange_ratio x compute on any host, so a host 2x or 4x slower runs
 * at 2x or 4x the D and its verdict stays; the bytes are METHOD.md's for the quickstart. */
static void dilation_auto_rule(void **state)
{
    (void)state;
    const double bytes = 18874368, rate = 300e6, ratio = 1.5; /* quickstart: 9 x 4 layers x 2 x 512 x 256 x 2 B */
    for (double compute = 0.5; compute <= 8; compute *= 2) {
        const double d = dilation_rule(compute, bytes, rate, ratio);
        const double exchange_s = bytes * 8 / (rate / d);
        assert_true(fabs(exchange_s / compute - ratio) < 0.01 * ratio); /* D rounded to 0.01 */
        assert_true(fabs(dilation_rule(2 * compute, bytes, rate, ratio) / d - 2) < 0.01);
    }
    assert_true(dilation_rule(0.01, bytes, rate, ratio) == 1);   /* never faster than real time */
    assert_true(dilation_rule(1e6, bytes, rate, ratio) == 1000); /* the scenario's bound */
    assert_true(dilation_rule(NAN, bytes, rate, ratio) == 1 && dilation_rule(1, 0, rate, ratio) == 1);

    scenario *s = calloc(1, sizeof *s);
    assert_non_null(s);
    char err[WANCP_ERRLEN];
    char *sets[] = {"scenario.dilation=auto", "scenario.exchange_ratio=2"};
    if (scenario_load(s, PROFILE_DIR "/../quickstart.ini", sets, 2, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    assert_true(s->dilation_auto && s->exchange_ratio == 2);
    assert_true(dilation_exchange_bytes(s) == bytes);
    assert_true(dilation_slow_rate(s) == rate);
    dilation_choice c;
    dilation_choose(s, 0.64, &c);
    assert_true(fabs(c.dilation - 2 * 0.64 * rate / (8 * bytes)) < 0.01 && s->dilation == c.dilation);
    assert_non_null(strstr(c.why, "18.87 MB"));
    scenario_free(s);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(event_model_equals_closed_form),
        cmocka_unit_test(paper_arithmetic),
        cmocka_unit_test(overlap_hides_communication),
        cmocka_unit_test(jitter_is_simulated_per_step),
        cmocka_unit_test(ten_thousand_steps_fast),
        cmocka_unit_test(shared_cores),
        cmocka_unit_test(bad_hardware_files),
        cmocka_unit_test(dilation_auto_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
