#ifndef WANCP_STATS_H
#define WANCP_STATS_H

/*
 * What a reader needs to tell an effect from noise: the mean of a few seeds' results and its
 * 95% confidence interval from Student's t distribution (the seeds are few, their spread is
 * estimated from themselves), and the same for paired differences (arm minus baseline, seed
 * by seed: the seed's own luck cancels).
 */
typedef struct interval {
    int n;             /* finite values used */
    double mean;       /* NAN when n == 0 */
    double half_width; /* of the 95% interval, mean +- half_width; NAN when n < 2 */
} interval;

/* t such that P(|T| <= t) = p for Student's t with df degrees of freedom (df >= 1, 0 < p < 1):
 * exact to double precision (the closed-form CDF for whole df, solved by bisection). */
double student_t_two_sided(double p, int df);

/* The mean of the finite values among x[0..n) and its 95% interval. */
interval interval_95(const double *x, int n);

/* The same for x[i] - y[i] over the i where both are finite. */
interval paired_interval_95(const double *x, const double *y, int n);

#endif
