#ifndef WANCP_SCENARIO_H
#define WANCP_SCENARIO_H

#include "../shaper/profile.h"
#include "run_options.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * An experiment description (an .ini file in scenarios/): what to train, on how many ranks, and the
 * arms to compare, each one training run from the same seed and data over its own links.
 *
 *   [scenario]  name, ranks, steps, seed (one) or seeds (a list: every arm runs once per seed,
 *               its initialisation and data order), baseline (the arm others are compared
 *               with, seed by seed; default the first uncompressed unshaped arm, else the
 *               first), target_val_loss, dilation (>= 1, or auto: harness/dilation.h),
 *               exchange_ratio (auto's target, 1.5), timeout (s per arm and seed),
 *               simulate (true: `wancp run` calibrates this host before the arms and puts
 *               the simulator's step time beside each arm's measured one; harness/run_sim.h)
 *   [model]     layers, dim, heads, kv_heads, ffn, context, vocab
 *   [train]     train, val (shards, relative to the scenario's folder), or corpus (NAME: the
 *               shards `wancp data NAME` writes into data/, bytes or gpt2 by the vocabulary:
 *               brown, sotu, mail), batch, lr, warmup,
 *               eval_every, val_tokens, sync (S|A), sync_every, and any switch of the
 *               run-options table (run_options.h: wire, device, precision, attention,
 *               rank_k, psi_k, stiefel, ...), for every arm
 *   [sweep]     key (any key an arm takes), values (comma-separated), arms (comma-separated
 *               names; default every arm): each named arm becomes one arm per value, named
 *               NAME+KEY-VALUE, with that key set (Table 3: key = warm_steps)
 *   [arm NAME]  profile (a link profile file, or none: unshaped), link_model (uplink|mesh),
 *               train, val or corpus (the arm's own data; a [sweep] over corpus draws one
 *               panel per corpus),
 *               compress (true|false), compress_last (true|false), warm_steps, sync,
 *               sync_every (the arm's own), straggler (RANK:K: that rank's links at the
 *               profile's rate / K), and any switch of the run-options table for this arm;
 *               NAME: 1 to 63 of A-Z a-z 0-9 @ + _ - . (not starting with .)
 *
 * The whole file is read and checked before anything uses it: every problem is reported at
 * once, each with file:line and the key, and `--set section.key=value` overrides apply as
 * if they were the file's last lines (an arm's section is `arm.NAME`).
 */
#define SCENARIO_MAX_ARMS 16
#define SCENARIO_MAX_SEEDS 16
#define SCENARIO_MAX_RUNS 64 /* arms x seeds */

typedef struct scenario_arm {
    char name[64];
    char profile_path[1024]; /* resolved; "" when unshaped */
    link_profile profile;
    bool shaped;
    int link_model; /* enum topology_model */
    bool compress;
    bool compress_last; /* the last layer's K/V too (METHOD.md 5: all blocks compressed) */
    int warm_steps;     /* -1: a tenth of the steps */
    char sync;          /* 'S' or 'A' */
    int sync_every;
    int straggler; /* with straggler_k > 1: this rank's links at the rate / k */
    double straggler_k;
    char method[RUN_OPTIONS_MAX][RUN_OPTION_VALUE]; /* run_options.h rows; "": [train]'s */
    char train[1024], val[1024];                    /* the arm's own shards (resolved); "": [train]'s */
    char corpus[32];     /* corpus = NAME, resolved into train and val once the vocabulary is known */
    char swept_from[64]; /* made by [sweep] from this arm; "" otherwise */
    char sweep_value[RUN_OPTION_VALUE];
} scenario_arm;

#define SCENARIO_MAX_SWEEP 16

typedef struct scenario {
    char path[1024], dir[1024];
    char name[64];
    int ranks, steps;
    unsigned long seeds[SCENARIO_MAX_SEEDS];
    int nseeds;
    char baseline[64];       /* resolved: always an arm's name */
    double target_val_loss;  /* 0: none given */
    double dilation;         /* 1 while dilation_auto waits for `wancp run` to choose it */
    bool dilation_auto;      /* dilation = auto: chosen on this host by harness/dilation.h's rule */
    double exchange_ratio;   /* the rule's target: the slow link's uncompressed exchange over compute */
    char dilation_note[400]; /* how a chosen D was chosen (a comment in the resolved print) */
    int timeout_s;
    bool simulate; /* the simulator beside the run (run_sim.h) */
    int layers, dim, heads, kv_heads, ffn, context, vocab;
    char train[1024], val[1024];
    char corpus[32]; /* [train] corpus = NAME (resolved into train and val) */
    int batch, warmup, eval_every;
    long val_tokens;
    double lr;
    char sync;
    int sync_every;
    char method[RUN_OPTIONS_MAX][RUN_OPTION_VALUE]; /* run_options.h rows for every arm; "": auto */
    scenario_arm arms[SCENARIO_MAX_ARMS];
    int narms;
    char sweep_key[32]; /* "" without a [sweep] */
    char sweep_values[SCENARIO_MAX_SWEEP][RUN_OPTION_VALUE];
    int nsweep;
    char sweep_arms[1024]; /* as given; "" for every arm */
} scenario;

/* Reads and checks path with the overrides ("section.key=value") applied. */
int scenario_load(scenario *s, const char *path, char *const *sets, int nsets, char *err, size_t errlen);
void scenario_free(scenario *s);

/* The training and validation shards arm a trains on: its own, else [train]'s. */
const char *scenario_train_shard(const scenario *s, const scenario_arm *a);
const char *scenario_val_shard(const scenario *s, const scenario_arm *a);

/* The results folder of arm a's run with seeds[seed_index], relative to the run's: ARM with
 * one seed, ARM/seed-S with several. */
void scenario_run_dir(const scenario *s, const scenario_arm *a, int seed_index, char *out, size_t len);

/* What scenario_load does not open: the train and val shards, each read whole and checked
 * against the model's vocabulary (a token id at or above vocab is refused), so that `check
 * scenario` and `run` refuse a scenario before anything is created. Every problem at once. */
int scenario_check_data(const scenario *s, char *err, size_t errlen);

/* The value of run option i for arm a: the arm's, else [train]'s; "" when auto. */
const char *scenario_method(const scenario *s, const scenario_arm *a, int i);

/* The value of the run-options row key for arm a (NULL: the [train] value for every arm),
 * with the row's default where none is set; "auto" for a row whose default is derived. */
const char *scenario_switch(const scenario *s, const scenario_arm *a, const char *key);

/* The switches of arm a (NULL: [train]'s, for every arm), typed, as its ranks take them. */
run_method scenario_run_method(const scenario *s, const scenario_arm *a);

/* The model one rank of arm a trains, as the arm's command line makes `wancp train` build it
 * (attention block fitted to a rank's chunks; the compression's ranks when a compresses; a
 * NULL: none): the one conversion of a scenario into a model, which the calibration and the
 * simulator take. */
struct model_config;
struct model_config scenario_model(const scenario *s, const scenario_arm *a);

/* The resolved scenario as INI (every value explicit), so a run can be repeated exactly. */
void scenario_write(const scenario *s, FILE *f);

#endif
