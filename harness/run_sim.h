#ifndef WANCP_RUN_SIM_H
#define WANCP_RUN_SIM_H

#include <stddef.h>

/*
 * The simulator beside a run (a scenario's `simulate = true`, the default): `wancp bench
 * calibrate` of this host just before the arms, into RUN/hardware.ini (its report in
 * RUN/calibrate.txt), and `wancp sim --hardware RUN/hardware.ini --against RUN --json` just
 * after them, into RUN/sim.json, which the summary and the step-time figure read. Both run as
 * child commands of this binary with the run's scenario and --set options, so a run's
 * prediction is exactly what a user gets by typing them. Either failing costs the run
 * nothing but the prediction: why says what happened.
 */

/* Calibrates this host for scenario_path (with the run's sets) at the run's dilation. */
int run_sim_calibrate(const char *scenario_path, char *const *sets, int nsets, double dilation, const char *dir,
                      char *why, size_t len);

/* Predicts every arm with RUN/hardware.ini and compares with the run's measured steps. */
int run_sim_predict(const char *scenario_path, char *const *sets, int nsets, double dilation, const char *dir,
                    char *why, size_t len);

#endif
