#ifndef WANCP_RESULTS_H
#define WANCP_RESULTS_H

#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * A run's results folder, read back: rank 0's metrics.csv and the capture's wire.csv of
 * every arm, turned into the per-arm summary (summary.json, summary.md), the data files
 * the gnuplot scripts in plots/ draw, and the communication-volume checks.
 *
 *   RUN/scenario.ini   the resolved scenario
 *   RUN/run.json       commit, host, libraries, start/end, dilation, master port, arms with
 *                      their outcome and reason
 *   RUN/ARM/metrics.csv, wire.csv, rankK.log (with several seeds: RUN/ARM/seed-S/...)
 *   RUN/summary.json, summary.md, plot-data/, *.png, *.svg
 *
 * Times in summaries and figures are training time: the sum of the steps' times (start-up
 * and evaluation left out, the same for every arm), divided by the dilation D. The time to
 * the target validation loss is interpolated linearly between the evaluations around it.
 *
 * With several seeds every arm ran once per seed: each run is summarised as one arm_summary,
 * and each arm over its seeds as one arm_group (means, 95% t intervals, and the paired
 * difference against the scenario's baseline arm, seed by seed).
 */
#define RESULTS_MAX_RUNS 64
#define RESULTS_MAX_ARMS 16
#define RESULTS_MAX_SEEDS 16

/* One step's row of a metrics CSV (columns found by their header names). */
typedef struct metrics_row {
    int step;
    double wall_s, train_loss, val_loss, step_ms, comm_ms, kv_fwd_wait_ms, kv_bwd_wait_ms, sync_wait_ms, unix_s;
    uint64_t kv_fwd_tx, kv_bwd_tx, sync_tx, control_tx; /* cumulative payload bytes rank 0 sent */
    int compressed;
} metrics_row;

/* A metrics CSV with what its header says about the run. */
typedef struct metrics_file {
    metrics_row *rows;
    int nrows;
    int layers, dim, heads, kv_heads, batch, seq, ranks, psi_k, rank_k, rank_v, compress_last, sync_every;
    char wire[8], sync[4], layout[16], kv[16];
} metrics_file;

/* Reads path; an incomplete last line (a killed run) is left out. Problems name path:line. */
int metrics_read(metrics_file *m, const char *path, char *err, size_t errlen);
void metrics_free(metrics_file *m);

/* METHOD.md section 5: K/V payload bytes rank `rank` sends per training step, forward and
 * backward, for the run the header describes, compressed or not. */
void metrics_kv_formula(const metrics_file *m, int rank, bool compressed, uint64_t *fwd, uint64_t *bwd);

typedef struct arm_summary {
    char name[64];
    char dir[96];        /* the run's folder in RUN: ARM, or ARM/seed-S */
    char swept_from[64]; /* a [sweep] made this arm from that one, with sweep_key = sweep_value; "" otherwise */
    char sweep_key[32], sweep_value[32];
    unsigned long seed; /* 0 when run.json does not say */
    char outcome[16];   /* ok, failed, interrupted, not-run */
    char reason[512];
    char link[160]; /* the arm's link, as run.json describes it */
    char sync[4];
    int sync_every;
    bool compress;
    int steps;               /* training steps done */
    double final_val_loss;   /* NAN: none */
    double time_to_target_s; /* NAN: target not reached (or none) */
    int steady_from;         /* first step of the steady window (after the switch to compression) */
    double step_time_s_median, compute_s_median, comm_s_median;
    double step_time_s_p95; /* the steady window's 95th percentile (as the simulator's) */
    double kv_fwd_wait_s_median, kv_bwd_wait_s_median, sync_wait_s_median;
    double kv_fwd_bytes_per_step_app, kv_bwd_bytes_per_step_app; /* median over the steady window */
    double kv_bytes_per_step_app, kv_bytes_per_step_wire;
    double sync_bytes_per_step;            /* mean over the run */
    double kv_fwd_formula, kv_bwd_formula; /* METHOD.md 5 for the steady steps */
    double kv_block_ratio;                 /* a compressed block's K/V bytes / an exact block's; NAN: uncompressed */
    bool compress_last;                    /* the last block compressed too (not the paper's setup) */
    double wire_payload_over_app;          /* K/V TCP payload (pcap) / app bytes, the whole run; NAN: no capture */
    double wire_over_app;                  /* whole frames / app bytes over the steady window */
    double dilation;
    int spikes;           /* steps whose training loss exceeds twice the median of the 20 before */
    int first_spike_step; /* 0: none */
    bool has_metrics, has_wire;
} arm_summary;

/* An arm over its seeds. Paired differences (this arm minus its baseline, seed by seed: the
 * run's baseline, or with a [sweep] that made both, the baseline's arm for the same value)
 * are NAN-filled for a baseline itself. */
typedef struct arm_group {
    char name[64];
    int runs[RESULTS_MAX_SEEDS]; /* indices into run_summary.arms */
    int nruns, ok;               /* seeds run, seeds that ended ok */
    int reached;                 /* seeds that reached the target */
    int spiky;                   /* seeds whose training loss spiked */
    int outliers;                /* seeds outside the others' 95% prediction interval (3 seeds or more) */
    interval final_val_loss, perplexity, time_to_target_s, step_time_s;
    interval d_final_val_loss, d_time_to_target_s, d_step_time_s;
    char paired_with[64]; /* the group the differences are taken against; "" for a baseline */
    /* The simulator beside the run (sim.json; results_sim.c): its steady step, compute and
     * exposed communication for this arm; NAN without a prediction. */
    double predicted_step_s, predicted_compute_s, predicted_comm_s;
} arm_group;
typedef struct run_summary {
    char dir[1024];
    char scenario[64];
    double dilation, target_val_loss;
    char dilation_why[400]; /* dilation = auto: how D was chosen; "" when the scenario gave it */
    int master_port;
    unsigned long seeds[RESULTS_MAX_SEEDS];
    int nseeds;
    char baseline[64];                  /* the arm paired differences are taken against */
    arm_summary arms[RESULTS_MAX_RUNS]; /* one per arm and seed, as run.json lists them */
    int narms;
    arm_group groups[RESULTS_MAX_ARMS]; /* one per arm name, in first-seen order */
    int ngroups;
    bool simulate;          /* run.json has a "simulation" record (the scenario's simulate = true) */
    char sim_note[600];     /* its note: how the prediction was made, or why there is none */
    char sim_hardware[200]; /* sim.json's hardware: its name and where it came from */
} run_summary;

/* The prediction beside a run (results_sim.c): RUN/sim.json, when present, into each group's
 * predicted_*; a malformed file is an error naming it. */
int results_read_prediction(run_summary *s, char *err, size_t errlen);

/* Each group's predicted against measured steady step (mean over seeds), the difference,
 * and where the model misses by more than 5%: summary.md's section, summary.json's list. */
struct json_t;
void results_prediction_md(FILE *f, const run_summary *s);
struct json_t *results_prediction_json(const run_summary *s);

/* Reads RUN (run.json, each arm's CSVs) into s. Arms without files get outcome not-run
 * or their recorded outcome. */
int results_summarize(run_summary *s, const char *run_dir, char *err, size_t errlen);

/* Writes summary.json and summary.md (temporary names, renamed). */
int results_write_summary(const run_summary *s, char *err, size_t errlen);

/* Writes plot-data/ and runs the gnuplot scripts of plots_dir: the figures, RUN/NAME.png and .svg. */
int results_plot(const run_summary *s, const char *plots_dir, char *err, size_t errlen);

/* gnuplot -e plots_dir=... DATA_DIR/arms.gp SCRIPT, its messages into DATA_DIR/gnuplot.log. */
int results_gnuplot(const char *plots_dir, const char *data_dir, const char *script, char *err, size_t errlen);

/* A gnuplot string literal: double quotes, with backslashes and quotes escaped. */
void results_put_string(FILE *f, const char *s);

/* The run's variables every figure script reads (run_dir, run_name, run_mode, target: NaN
 * when target <= 0, data_dir), one gnuplot assignment per line. */
void results_put_run_vars(FILE *f, const char *run_dir, const char *run_name, const char *run_mode, double target,
                          const char *data_dir);

/* The communication-volume check: each arm's bytes per step against METHOD.md's formulas
 * (exactly) and, with reference (a results folder or its summary.json), against the
 * reference's arms: growth beyond tolerance (a fraction) fails. Prints a readable table
 * and every difference to f; returns 0 when everything passes, 1 when something grew or
 * differs, 2 on unreadable input. */
int results_check(const run_summary *s, const char *reference, double tolerance, FILE *f, char *err, size_t errlen);

#endif
