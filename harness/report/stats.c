/* Means and t intervals over seeds. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>

/* P(|T| <= t) for whole df: Abramowitz and Stegun 26.7.3 (odd df) and 26.7.4 (even df), in
 * theta = atan(t / sqrt(df)); finite sums, no special functions. */
static double t_two_sided_cdf(double t, int df)
{
    const double theta = atan(t / sqrt((double)df)), c2 = cos(theta) * cos(theta);
    if (df % 2 == 0) {
        double term = 1, sum = 1;
        for (int k = 2; k <= df - 2; k += 2) {
            term *= c2 * (k - 1) / k;
            sum += term;
        }
        return sin(theta) * sum;
    }
    if (df == 1)
        return 2 * theta / M_PI;
    double term = 1, sum = 1;
    for (int k = 3; k <= df - 2; k += 2) {
        term *= c2 * (k - 1) / k;
        sum += term;
    }
    return 2 / M_PI * (theta + sin(theta) * cos(theta) * sum);
}

double student_t_two_sided(double p, int df)
{
    if (df < 1 || !(p > 0 && p < 1))
        return NAN;
    double lo = 0, hi = 1;
    while (t_two_sided_cdf(hi, df) < p && hi < 1e300)
        hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) { /* the CDF rises with t */
        const double mid = 0.5 * (lo + hi);
        if (t_two_sided_cdf(mid, df) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

interval interval_95(const double *x, int n)
{
    interval r = {.mean = NAN, .half_width = NAN};
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]))
            sum += x[i], r.n++;
    if (r.n == 0)
        return r;
    r.mean = sum / r.n;
    if (r.n < 2)
        return r;
    double squares = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]))
            squares += (x[i] - r.mean) * (x[i] - r.mean);
    const double sd = sqrt(squares / (r.n - 1));
    r.half_width = student_t_two_sided(0.95, r.n - 1) * sd / sqrt((double)r.n);
    return r;
}

interval paired_interval_95(const double *x, const double *y, int n)
{
    double *d = malloc((n > 0 ? (size_t)n : 1) * sizeof *d);
    if (d == NULL)
        return (interval){.mean = NAN, .half_width = NAN};
    for (int i = 0; i < n; i++)
        d[i] = isfinite(x[i]) && isfinite(y[i]) ? x[i] - y[i] : NAN;
    interval r = interval_95(d, n);
    free(d);
    return r;
}
