// The fused attention kernels (core/ops/cuda/attention_fused_kernels.h) on the host under
// the warp emulator, against the cpu reference: every head dimension they take, key sets
// merged in turn, grouped-query heads, rows that see nothing, a zig-zag rank over several
// blocks of every kernel, and the launch plans: two stages (copies overlapping use) and one,
// four-warp and two-warp dQ blocks (an H100's shared memory and an A100's).
//
// With the emulator's exact operands the kernels compute in fp32, so they must agree with the
// cpu within 1e-5 (max |fused - cpu| / max |cpu| over each output): an indexing, masking,
// scaling or synchronisation mistake shows as an error near 1. With TF32 operands, as on a
// GPU, they must stay within the 1e-2 that test_ops_cuda asks of the GPU; with bf16 operands
// (the m16n8k16 variants), within its 3e-2 for bf16.
//
// This needs no GPU and runs everywhere (also under the sanitizers); test_ops_cuda runs the
// same kernels on a GPU where there is one.
#include "warp_emulator.h"

#include "core/ops/cuda/attention_fused_kernels.h"

extern "C" {
#include "test_cpu.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/ops/ops.h"
#include "core/util/rng.h"
}

#include <vector>

namespace
{

constexpr fused::plan_limits H100 = {232448, 2};         // opt-in shared memory per block, bytes
constexpr fused::plan_limits H100_WAITING = {232448, 1}; // WANCP_FUSED_STAGES=1: one buffer per tile
constexpr fused::plan_limits A100 = {166912, 2};         // two stages fit only the small kernels
constexpr double EXACT_TOL = 1e-5;
constexpr double TF32_TOL = 1e-2;
constexpr double BF16_TOL = 3e-2; // 7 mantissa bits: about 8 times TF32's rounding

rng g_rng;

std::vector<float> randn(size_t n)
{
    std::vector<float> x(n);
    for (float &v : x)
        v = rng_normal(&g_rng);
    return x;
}

double compare(const char *what, const std::vector<float> &got, const std::vector<float> &want, double tol)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < want.size(); i++) {
        if (std::isnan(want[i])) // fmax below would skip it: a NaN reference hides any answer
            fail_msg("%s: element %zu is NaN on the cpu", what, i);
        if (std::isinf(want[i]) && got[i] == want[i])
            continue;
        if (!std::isfinite(got[i]))
            fail_msg("%s: element %zu is %g, cpu %g", what, i, (double)got[i], (double)want[i]);
        diff = std::fmax(diff, std::fabs((double)got[i] - want[i]));
        scale = std::fmax(scale, std::fabs((double)want[i]));
    }
    const double rel = scale > 0.0 ? diff / scale : diff;
    printf("  %-58s %.2e (tolerance %.0e)\n", what, rel, tol);
    if (rel > tol)
        fail_msg("%s: fused differs from cpu by %.2e (tolerance %.0e)", what, rel, tol);
    return rel;
}

struct key_set {
    std::vector<int32_t> pos;
    std::vector<float> k, v;
};

// Forward over every key set in turn, then the backward of each, on the cpu and through the
// fused kernels; every output compared.
// With ds_rows > 0 the backward keeps dS for the dQ kernel, in passes of ds_rows queries (a
// buffer of just that size per key set, starting as NaN so that a read of a cell the dK/dV
// kernel never wrote shows); with 0 the dQ kernel recomputes it.
void run_case(const char *name, const attn_shape &shape, const std::vector<int32_t> &q_pos,
              const std::vector<std::vector<int32_t>> &key_positions, fused::plan_limits lim, double tol,
              bool bf16 = false, int ds_rows = 0)
{
    const ops *cpu = test_cpu();
    const int tq = (int)q_pos.size(), hd = shape.head_dim;
    const size_t qd = (size_t)shape.n_heads * hd, kvd = (size_t)shape.n_kv_heads * hd;
    const size_t hq = (size_t)shape.n_heads * tq;
    const std::vector<float> q = randn(tq * qd), dout = randn(tq * qd);
    std::vector<key_set> sets;
    for (const std::vector<int32_t> &pos : key_positions)
        sets.push_back({pos, randn(pos.size() * kvd), randn(pos.size() * kvd)});

    // The cpu reference.
    std::vector<float> acc(tq * qd), mx(hq), sm(hq), o(tq * qd), lse(hq), delta(hq), dq(tq * qd);
    std::vector<float> scratch(attn_scratch_floats(&shape));
    attn_state st = {acc.data(), mx.data(), sm.data(), tq};
    cpu->attn_begin(&st, &shape);
    for (key_set &s : sets)
        cpu->attn_block(&st, q.data(), q_pos.data(), s.k.data(), s.v.data(), s.pos.data(), (int)s.pos.size(), &shape,
                        scratch.data());
    cpu->attn_end(o.data(), lse.data(), &st, &shape);
    cpu->attn_bwd_delta(delta.data(), o.data(), dout.data(), tq, &shape);
    std::vector<std::vector<float>> dk, dv;
    for (key_set &s : sets) {
        dk.emplace_back(s.k.size()), dv.emplace_back(s.v.size());
        cpu->attn_block_bwd(dq.data(), dk.back().data(), dv.back().data(), q.data(), q_pos.data(), tq, s.k.data(),
                            s.v.data(), s.pos.data(), (int)s.pos.size(), dout.data(), lse.data(), delta.data(), &shape,
                            scratch.data());
    }

    // The fused kernels; the state's begin and end, and delta, are the cpu's (plain loops
    // over the same layout).
    std::vector<float> f_acc(tq * qd), f_mx(hq), f_sm(hq), f_o(tq * qd), f_lse(hq), f_delta(hq), f_dq(tq * qd);
    attn_state fst = {f_acc.data(), f_mx.data(), f_sm.data(), tq};
    cpu->attn_begin(&fst, &shape);
    fused::fused_args base = {};
    base.tq = tq, base.hs = tq, base.group = shape.n_heads / shape.n_kv_heads;
    base.qs = (int)qd, base.ks = (int)kvd, base.scale = 1.0f / std::sqrt((float)hd);
    base.q = q.data(), base.dout = dout.data(), base.q_pos = q_pos.data();
    // The bf16 kernels stage bf16 copies, as the launcher makes them (rounded to nearest even).
    auto to_bf16 = [](const std::vector<float> &x) {
        std::vector<uint16_t> y(x.size());
        for (size_t i = 0; i < x.size(); i++)
            y[i] = bf16_from_float(x[i]);
        return y;
    };
    const std::vector<uint16_t> q16 = to_bf16(q), dout16 = to_bf16(dout);
    std::vector<std::vector<uint16_t>> k16, v16;
    for (const key_set &ks : sets)
        k16.push_back(to_bf16(ks.k)), v16.push_back(to_bf16(ks.v));
    if (bf16)
        base.q16 = q16.data(), base.dout16 = dout16.data();
    int launches = 0;
    auto launch = [&launches](auto kernel, size_t smem, int gx, int gy, int threads, const fused::fused_args &a) {
        if (smem > H100.smem)
            fail_msg("a kernel asked for %zu bytes of shared memory", smem);
        emu::launch(kernel, smem, gx, gy, threads, a);
        launches++;
    };
    for (size_t si = 0; si < sets.size(); si++) {
        const key_set &s = sets[si];
        fused::fused_args a = base;
        a.k = s.k.data(), a.v = s.v.data(), a.k_pos = s.pos.data(), a.tk = (int)s.pos.size();
        if (bf16)
            a.k16 = k16[si].data(), a.v16 = v16[si].data();
        a.acc = f_acc.data(), a.max = f_mx.data(), a.sum = f_sm.data();
        assert_true(fused::forward_any(a, hd, shape.n_heads, bf16, lim, launch));
    }
    cpu->attn_end(f_o.data(), f_lse.data(), &fst, &shape);
    cpu->attn_bwd_delta(f_delta.data(), f_o.data(), dout.data(), tq, &shape);
    std::vector<std::vector<float>> f_dk, f_dv;
    int backward_launches = 0;
    for (size_t si = 0; si < sets.size(); si++) {
        const key_set &s = sets[si];
        f_dk.emplace_back(s.k.size()), f_dv.emplace_back(s.v.size());
        fused::fused_args a = base;
        a.k = s.k.data(), a.v = s.v.data(), a.k_pos = s.pos.data(), a.tk = (int)s.pos.size();
        if (bf16)
            a.k16 = k16[si].data(), a.v16 = v16[si].data();
        a.lse = f_lse.data(), a.delta = f_delta.data();
        a.dq = f_dq.data(), a.dk = f_dk.back().data(), a.dv = f_dv.back().data();
        std::vector<float> ds;
        backward_launches += 2;
        if (ds_rows > 0) {
            // The budget that gives passes of exactly ds_rows queries.
            const int ld = (a.tk + fused::KEYS_PER_TILE - 1) / fused::KEYS_PER_TILE * fused::KEYS_PER_TILE;
            const fused::ds_plan plan = fused::stored_ds_plan(
                tq, a.tk, shape.n_heads, (size_t)ds_rows * shape.n_heads * ld * sizeof(float) + sizeof(float) - 1);
            assert_int_equal(plan.rows, ds_rows);
            assert_int_equal(plan.ld, ld);
            ds.assign(plan.floats, std::nanf(""));
            a.ds = ds.data(), a.ds_ld = plan.ld, a.ds_rows = plan.rows;
            backward_launches += 2 * ((tq + ds_rows - 1) / ds_rows - 1);
        }
        assert_true(fused::backward_any(a, hd, shape.n_heads, shape.n_kv_heads, bf16, lim, launch));
    }
    assert_int_equal(launches, (int)sets.size() + backward_launches);

    char what[160];
    snprintf(what, sizeof what, "%s: output", name);
    compare(what, f_o, o, tol);
    snprintf(what, sizeof what, "%s: log-sum-exp", name);
    compare(what, f_lse, lse, tol);
    snprintf(what, sizeof what, "%s: dq", name);
    compare(what, f_dq, dq, tol);
    for (size_t s = 0; s < sets.size(); s++) {
        snprintf(what, sizeof what, "%s: dk of key set %zu", name, s);
        compare(what, f_dk[s], dk[s], tol);
        snprintf(what, sizeof what, "%s: dv of key set %zu", name, s);
        compare(what, f_dv[s], dv[s], tol);
    }
}

std::vector<int32_t> span(int32_t first, int count)
{
    std::vector<int32_t> p((size_t)count);
    for (int i = 0; i < count; i++)
        p[(size_t)i] = first + i;
    return p;
}

// test_ops_cuda's two cases: 48 queries at 40..87 against an earlier chunk, the diagonal and
// a chunk wholly in the future; queries 0..15 against keys 10..40 (rows 0..9 see nothing).
void basic_cases(int hd, fused::plan_limits lim, double tol, const char *mode, bool bf16 = false, int ds_rows = 0)
{
    const attn_shape shape = {4, 2, hd, 16};
    char name[96];
    snprintf(name, sizeof name, "hd %d, %s, chunks merged", hd, mode);
    run_case(name, shape, span(40, 48), {span(0, 40), span(40, 48), span(100, 21)}, lim, tol, bf16, ds_rows);
    snprintf(name, sizeof name, "hd %d, %s, rows that see nothing", hd, mode);
    run_case(name, shape, span(0, 16), {span(10, 31)}, lim, tol, bf16, ds_rows);
}

// A zig-zag rank: 150 query rows in two runs (0..74 and 225..299) against its own keys and a
// chunk between (100..199): three forward and dQ blocks, key tiles cut short, dK/dV blocks
// whose first query is found by position, 8 heads over 2.
void zigzag_case(int hd, fused::plan_limits lim, double tol, const char *mode, bool bf16 = false, int ds_rows = 0)
{
    const attn_shape shape = {8, 2, hd, 16};
    std::vector<int32_t> q_pos = span(0, 75), late = span(225, 75);
    q_pos.insert(q_pos.end(), late.begin(), late.end());
    char name[96];
    snprintf(name, sizeof name, "hd %d, %s, zig-zag rank, 8 heads over 2", hd, mode);
    run_case(name, shape, q_pos, {q_pos, span(100, 100)}, lim, tol, bf16, ds_rows);
}

void exact_every_head_dim(void **state)
{
    (void)state;
    emu::exact = true;
    for (int hd : {16, 32, 64, 128, 256})
        basic_cases(hd, H100, EXACT_TOL, "fp32");
}

void exact_zigzag(void **state)
{
    (void)state;
    emu::exact = true;
    zigzag_case(32, H100, EXACT_TOL, "fp32");
    zigzag_case(32, H100_WAITING, EXACT_TOL, "fp32, one stage");
    zigzag_case(256, A100, EXACT_TOL, "fp32, A100 plan"); // one stage; dQ in two-warp blocks
}

void tf32_operands(void **state)
{
    (void)state;
    emu::exact = false;
    basic_cases(64, H100, TF32_TOL, "tf32");
    zigzag_case(128, H100, TF32_TOL, "tf32");
}

// The m16n8k16 variants: the smallest head dimension (one k step per product), the largest
// (warp pairs splitting it in dK/dV), and a zig-zag rank on each launch plan.
void bf16_operands(void **state)
{
    (void)state;
    emu::exact = false;
    basic_cases(16, H100, BF16_TOL, "bf16", true);
    basic_cases(256, H100, BF16_TOL, "bf16", true);
    zigzag_case(64, H100, BF16_TOL, "bf16", true);
    zigzag_case(32, H100_WAITING, BF16_TOL, "bf16, one stage", true);
    zigzag_case(128, A100, BF16_TOL, "bf16, A100 plan", true);
}

// dQ from the dS the dK/dV kernel stored: one pass (64 rows hold every query of the basic
// cases), and the zig-zag rank's 150 queries in three passes of 64, on each launch plan; the
// buffer starts as NaN, so a cell read but never written fails the comparison.
void stored_ds(void **state)
{
    (void)state;
    emu::exact = true;
    basic_cases(16, H100, EXACT_TOL, "fp32, stored dS", false, 64);
    basic_cases(256, H100, EXACT_TOL, "fp32, stored dS", false, 64);
    zigzag_case(64, H100, EXACT_TOL, "fp32, stored dS in 3 passes", false, 64);
    zigzag_case(32, H100_WAITING, EXACT_TOL, "fp32, one stage, stored dS in 3 passes", false, 64);
    zigzag_case(256, A100, EXACT_TOL, "fp32, A100 plan, stored dS in 2 passes", false, 128);
    emu::exact = false;
    zigzag_case(128, H100, TF32_TOL, "tf32, stored dS in 3 passes", false, 64);
    basic_cases(256, H100, BF16_TOL, "bf16, stored dS", true, 64);
}

// The plan for stored dS: whole key tiles per row, passes of whole 64-row blocks within the
// budget, no more rows than the queries need, none when 64 rows do not fit.
void stored_ds_plan(void **state)
{
    (void)state;
    const size_t row = (size_t)8 * 64 * sizeof(float); // 8 heads of 64 floats (tk 33 rounds up to 64)
    fused::ds_plan p = fused::stored_ds_plan(1000, 33, 8, 200 * row);
    assert_int_equal(p.ld, 64);
    assert_int_equal(p.rows, 192);
    assert_true(p.floats == (size_t)8 * 192 * 64);
    p = fused::stored_ds_plan(100, 64, 8, 1000 * row); // only 100 queries: 128 rows
    assert_int_equal(p.rows, 128);
    p = fused::stored_ds_plan(1000, 64, 8, 63 * row);
    assert_int_equal(p.rows, 0);
    assert_true(p.floats == 0);
}

// Shapes the kernels do not take are left to the products path, having started nothing.
void declines(void **state)
{
    (void)state;
    int launches = 0;
    auto count = [&launches](auto, size_t, int, int, int, const fused::fused_args &) { launches++; };
    fused::fused_args a = {};
    for (bool bf16 : {false, true}) {
        assert_false(fused::forward_any(a, 48, 4, bf16, H100, count));
        assert_false(fused::backward_any(a, 96, 4, 2, bf16, H100, count));
        assert_false(fused::backward_any(a, 256, 4, 2, bf16, {60000, 2}, count)); // too little shared memory
    }
    assert_int_equal(launches, 0);
    for (int hd : {16, 32, 64, 128, 256})
        assert_true(fused::takes_head_dim(hd));
    assert_false(fused::takes_head_dim(8));
}

} // namespace

int main(void)
{
    rng_seed(&g_rng, 2026);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_every_head_dim),
        cmocka_unit_test(exact_zigzag),
        cmocka_unit_test(tf32_operands),
        cmocka_unit_test(bf16_operands),
        cmocka_unit_test(stored_ds),
        cmocka_unit_test(stored_ds_plan),
        cmocka_unit_test(declines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
