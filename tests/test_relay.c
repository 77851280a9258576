/* The shaper's time: the delay emulator's jitter distributions (shaper/relay.c) have mean 0
 * and the configured standard deviation (uniform: within +-jitter), pareto's tail longer
 * than normal's; rate plans (shaper/rate_player.c) play a schedule once and a mahimahi
 * trace as per-bin rates, repeating. The relay and the player are measured with real
 * packets by shaper_topology (root). */
#include "test_helpers.h"

#include "core/base/status.h"
#include "shaper/profile.h"
#include "shaper/rate_player.h"
#include "shaper/relay.h"

#include <math.h>

static double u01(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static void distributions(void **state)
{
    (void)state;
    static const char *names[] = {"uniform", "normal", "pareto", "paretonormal"};
    double tail[4];
    for (int d = JITTER_UNIFORM; d <= JITTER_PARETONORMAL; d++) {
        uint64_t s = 12345;
        const int n = 400000;
        double sum = 0, sumsq = 0, lo = 1e300, hi = -1e300;
        int beyond3 = 0;
        for (int i = 0; i < n; i++) {
            double x = relay_jitter_sample(d, 5.0, u01(&s), u01(&s), u01(&s));
            sum += x, sumsq += x * x;
            lo = fmin(lo, x), hi = fmax(hi, x);
            beyond3 += x > 15.0;
        }
        double mean = sum / n, sd = sqrt(sumsq / n - mean * mean);
        tail[d] = (double)beyond3 / n;
        printf("  %-12s mean %+.3f, sd %.3f, range [%.1f, %.1f], P(x > 3 sd) %.4f\n", names[d], mean, sd, lo, hi,
               tail[d]);
        if (d == JITTER_UNIFORM) {
            assert_true(lo >= -5.0 && hi <= 5.0 && fabs(sd - 5.0 / sqrt(3.0)) < 0.02);
        } else {
            assert_true(fabs(mean) < 0.05 && fabs(sd - 5.0) < 0.25);
        }
    }
    assert_true(tail[JITTER_PARETO] > 2 * tail[JITTER_NORMAL]); /* a heavier tail */
}

static void rate_plans(void **state)
{
    (void)state;
    char err[256];
    rate_step steps[3] = {{0, 300000000ull}, {30000000000ull, 100000000ull}, {60000000000ull, 300000000ull}};
    link_profile sched = {.rate_bps = 300000000ull, .schedule = steps, .nschedule = 3};
    rate_plan plan;
    assert_int_equal(rate_plan_of(&sched, &plan, err, sizeof err), WANCP_OK);
    assert_int_equal(plan.n, 3);
    assert_true(plan.period_ns == 0);
    assert_true(rate_plan_at(&plan, 29999999999ull) == 300000000ull);
    assert_true(rate_plan_at(&plan, 30000000000ull) == 100000000ull);
    assert_true(rate_plan_at(&plan, 3600000000000ull) == 300000000ull); /* the last rate holds */
    rate_plan_free(&plan);

    /* a trace: 4 opportunities per ms for 200 ms (48 Mbit/s), none for 100 ms, 1 per ms for
     * 100 ms (12 Mbit/s); then it repeats */
    uint32_t ms[900];
    size_t n = 0;
    for (uint32_t t = 0; t < 200; t++)
        for (int k = 0; k < 4; k++)
            ms[n++] = t;
    for (uint32_t t = 300; t < 400; t++)
        ms[n++] = t;
    link_profile trace = {.trace_ms = ms, .ntrace = n};
    assert_int_equal(rate_plan_of(&trace, &plan, err, sizeof err), WANCP_OK);
    assert_int_equal(plan.n, 3); /* 48M (two bins merged), the empty bin's floor, 12M */
    assert_true(plan.period_ns == 400000000ull);
    assert_true(rate_plan_at(&plan, 150000000ull) == 48000000ull);
    assert_true(rate_plan_at(&plan, 250000000ull) == RATE_MIN_BPS);
    assert_true(rate_plan_at(&plan, 350000000ull) == 12000000ull);
    assert_true(rate_plan_at(&plan, 400000000ull + 150000000ull) == 48000000ull); /* repeats */
    rate_plan_free(&plan);

    link_profile fixed = {.rate_bps = 5000};
    assert_int_equal(rate_plan_of(&fixed, &plan, err, sizeof err), WANCP_OK);
    assert_true(plan.n == 1 && rate_plan_at(&plan, 123) == 5000);
    rate_plan_free(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(distributions), cmocka_unit_test(rate_plans)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
