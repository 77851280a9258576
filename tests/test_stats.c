/* The interval arithmetic of seeded summaries against known values of Student's t. */
#include "test_helpers.h"

#include "harness/report/stats.h"

#include <math.h>

static void t_quantiles(void **state)
{
    (void)state;
    /* 97.5% points (two-sided 95%) as statistics tables and scipy.stats.t.ppf give them */
    static const struct {
        int df;
        double p, t;
    } known[] = {
        {1, 0.95, 12.706204736174698},    {2, 0.95, 4.302652729749464},
        {3, 0.95, 3.182446305284263},     {4, 0.95, 2.7764451051977934},
        {9, 0.95, 2.2621571628540993},    {30, 0.95, 2.0422724563012373},
        {5, 0.99, 4.032142983557536},     {1, 0.5, 1.0},
        {1000, 0.95, 1.9623390808264074},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        const double t = student_t_two_sided(known[i].p, known[i].df);
        if (fabs(t - known[i].t) > 1e-9 * known[i].t)
            fail_msg("df %d, p %g: %.15g, expected %.15g", known[i].df, known[i].p, t, known[i].t);
    }
    /* df = 2 in closed form: P(|T| <= t) = t / sqrt(t^2 + 2) */
    const double p = 0.8, t2 = student_t_two_sided(p, 2);
    assert_true(fabs(t2 - p * sqrt(2 / (1 - p * p))) < 1e-12);
    assert_true(isnan(student_t_two_sided(0.95, 0)) && isnan(student_t_two_sided(1.0, 3)));
}

static void intervals(void **state)
{
    (void)state;
    const double x[] = {1, 2, 3};
    interval r = interval_95(x, 3);
    assert_int_equal(r.n, 3);
    assert_true(fabs(r.mean - 2) < 1e-15);
    assert_true(fabs(r.half_width - 4.302652729749464 / sqrt(3)) < 1e-9); /* sd 1 */
    const double with_gaps[] = {NAN, 1, INFINITY, 3};
    r = interval_95(with_gaps, 4);
    assert_int_equal(r.n, 2);
    assert_true(fabs(r.mean - 2) < 1e-15 && fabs(r.half_width - 12.706204736174698) < 1e-9); /* sd sqrt 2 */
    const double one[] = {7};
    r = interval_95(one, 1);
    assert_true(r.n == 1 && r.mean == 7 && isnan(r.half_width));
    r = interval_95(one, 0);
    assert_true(r.n == 0 && isnan(r.mean));
    /* paired: differences 0.5, -0.5, 2 (mean 2/3, sd sqrt(19/12)); a seed missing on one side is left out */
    const double y[] = {0.5, 2.5, 1};
    r = paired_interval_95(x, y, 3);
    assert_int_equal(r.n, 3);
    assert_true(fabs(r.mean - 2.0 / 3) < 1e-12);
    assert_true(fabs(r.half_width - 4.302652729749464 * sqrt(19.0 / 12) / sqrt(3)) < 1e-9);
    const double y_gap[] = {0.5, NAN, 1};
    r = paired_interval_95(x, y_gap, 3);
    assert_true(r.n == 2 && fabs(r.mean - 1.25) < 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_quantiles),
        cmocka_unit_test(intervals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
