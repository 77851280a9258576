/* The delay emulator's jitter distributions (shaper/relay.c): each has mean 0 and the
 * configured standard deviation (uniform: within +-jitter), from the same uniform draws
 * the relay makes; pareto's tail is longer than normal's. The relay itself is measured
 * with real packets by shaper_topology (root). */
#include "test_helpers.h"

#include "shaper/profile.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(distributions)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
