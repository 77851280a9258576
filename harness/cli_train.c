/* wancp train: one training run in this process, with progress, metrics and checkpoints. */
#include "cli.h"
#include "cli_model.h"
#include "launch_local.h"
#include "run_options.h"

#include "../core/cp/cp_layout.h"
#include "../core/ops/ops.h"
#include "../core/base/status.h"
#include "../core/train/trainer.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp train [options]\n"
    "\n"
    "Trains a LLaMA-style decoder on token shards in this process (fp32, CPU).\n"
    "\n"
    "Data:\n"
    "  --train FILE          training shard (default data/brown_train.bin)\n"
    "  --val FILE            validation shard (default data/brown_val.bin)\n"
    "  --vocab N             vocabulary: 50257 for gpt2 shards (default), 256 for bytes\n"
    "Model:\n"
    "  --layers N (4)  --dim N (256)  --heads N (4)  --kv-heads N (= heads)  --ffn N (704)\n"
    "  --context N (256)  --attn-block N (256 or what divides the context)  --untied (separate LM head)  --rope-theta "
    "X (10000)\n"
    "Optimisation:\n"
    "  --batch N (4)  --seq N (= context)  --steps N (300)  --lr X (3e-3)  --warmup N (steps/10)\n"
    "  --lr-final X (0.1: last rate as a fraction of --lr)  --weight-decay X (0.01)  --clip X (1.0)\n"
    "  --seed N (1)\n"
    "Evaluation and output:\n"
    "  --eval-every N (50)   validation loss every N steps, and at the start and the end\n"
    "  --val-tokens N (65536) held-out tokens per evaluation\n"
    "  --metrics FILE        CSV of every step (written as FILE.partial, renamed at the end)\n"
    "  --checkpoint FILE     checkpoint at the end, on Ctrl-C, and every --checkpoint-every N steps\n"
    "  --resume FILE         continue a checkpointed run (bitwise as if never stopped)\n"
    "  --stop-after N        stop once N steps are done (checkpoint written); resume later\n"
    "  --threads N           BLAS threads (default: one per CPU)\n"
    "  --transport tcp|nccl (tcp)  nccl: the weight sync as NCCL collectives on the GPU (one GPU per rank,\n"
    "                        cuda only); K/V always go over TCP, staged through pinned host memory\n"
    "Context parallelism (each of P ranks holds 2 chunks of every sequence):\n"
    "  --ranks P             start P ranks of this command on loopback and watch them\n"
    "  --sync S|A (S)        S: all-reduce gradients every step; A: average weights every --sync-every\n"
    "  --sync-every C (10)   Mode A's interval\n"
    "  --chunks N            one process: the same model over N chunks of the sequence (no network)\n"
    "  Under srun, mpirun or torchrun, ranks come from RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT\n"
    "  (or SLURM_PROCID/SLURM_NTASKS, OMPI_COMM_WORLD_RANK/SIZE); WANCP_COMM_TIMEOUT (s, 60)\n"
    "  bounds how long a rank waits for a silent peer. Rank 0 prints and writes metrics;\n"
    "  checkpoints are FILE.rankR.\n"
    "Compression of K/V (mixtures of subspaces; needs --ranks P or --chunks N):\n"
    "  --compress            turn it on (every block but the last)\n"
    "  --warm-steps N (steps/10)  uncompressed steps before the warm start\n"
    "  --compress-last       compress the last block too\n";

/* After USAGE: the run-options table's rows, then this. */
static const char USAGE_END[] = "\nProgress goes to stderr: a live line on a terminal, a line every 10 s otherwise.\n";

typedef struct train_cli {
    trainer_config tc;
    const char *metrics_path;
    char metrics_partial[4096];
    int rank;
    int write_errno; /* the first failed write of the metrics file, 0 if none */
    FILE *metrics;
    int tty;
    double last_print;
    double first_wall;
    int first_step;
    int rows;          /* data rows written to the metrics file */
    int ranks;         /* --ranks: launch this many local ranks */
    run_method method; /* the run-options table's switches, autos resolved after parse */
    cli_device device; /* --device, --precision */
    bool nccl;         /* --transport nccl */
    const ops *ops;
} train_cli;

static volatile sig_atomic_t stop_requested;

static volatile sig_atomic_t step_done; /* a training step has finished in this process */

/* Ctrl-C or SIGTERM: stop between steps, keeping metrics and the checkpoint; before the
 * first step there is nothing to keep, so the process ends at once (a rank still starting
 * or in its first evaluation would otherwise hold its launcher's stop for a whole step). */
static void on_signal(int sig)
{
    (void)sig;
    if (!step_done)
        _exit(1);
    stop_requested = 1;
}

static void format_eta(double seconds, char *buf, size_t len)
{
    if (!isfinite(seconds) || seconds < 0)
        snprintf(buf, len, "?");
    else if (seconds < 90)
        snprintf(buf, len, "%.0fs", seconds);
    else if (seconds < 5400)
        snprintf(buf, len, "%.0fm%02.0fs", floor(seconds / 60), fmod(seconds, 60));
    else
        snprintf(buf, len, "%.1fh", seconds / 3600);
}

static void report(void *ctx, const step_report *r)
{
    train_cli *t = ctx;
    if (r->train_loss == r->train_loss) /* not the report before the first step */
        step_done = 1;
    if (t->rank != 0)
        return;
    if (t->metrics != NULL) {
        fprintf(t->metrics, "%d,%.3f,%.6g,", r->step, r->wall_s, (double)r->lr);
        if (isfinite(r->train_loss))
            fprintf(t->metrics, "%.6f", r->train_loss);
        fputc(',', t->metrics);
        if (isfinite(r->val_loss))
            fprintf(t->metrics, "%.6f", r->val_loss);
        fputc(',', t->metrics);
        if (isfinite(r->grad_norm))
            fprintf(t->metrics, "%.6g", r->grad_norm);
        double comm_ms = 0;
        for (int cls = 0; cls < COMM_NCLASSES; cls++)
            comm_ms += r->wait_ms[cls];
        fprintf(t->metrics, ",%lld,%.2f,%llu,%llu,%llu,%llu,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f\n", r->tokens, r->step_ms,
                (unsigned long long)r->tx_bytes[COMM_KV_FORWARD], (unsigned long long)r->tx_bytes[COMM_KV_BACKWARD],
                (unsigned long long)r->tx_bytes[COMM_WEIGHT_SYNC], (unsigned long long)r->tx_bytes[COMM_CONTROL],
                r->compressed, r->step_ms - comm_ms, comm_ms, r->wait_ms[COMM_KV_FORWARD], r->wait_ms[COMM_KV_BACKWARD],
                r->wait_ms[COMM_WEIGHT_SYNC] + r->wait_ms[COMM_CONTROL], r->unix_s);
        if (fflush(t->metrics) != 0 && t->write_errno == 0) {
            t->write_errno = errno != 0 ? errno : EIO;
            stop_requested = 1; /* the run stops at the next step: its rows could not be kept */
        }
        t->rows++;
    }
    if (r->train_loss != r->train_loss) { /* the report before the first step */
        t->first_wall = r->wall_s;
        t->first_step = r->step;
        fprintf(stderr, "step %d/%d: val loss %.4f\n", r->step, r->total_steps, r->val_loss);
        return;
    }
    double elapsed = r->wall_s - t->first_wall;
    int done = r->step - t->first_step;
    double tok_s = done > 0 ? (double)done * t->tc.batch * t->tc.seq / elapsed : 0.0;
    char eta[32], val[32] = "";
    format_eta(done > 0 ? elapsed / done * (r->total_steps - r->step) : NAN, eta, sizeof eta);
    if (isfinite(r->val_loss))
        snprintf(val, sizeof val, " | val %.4f", r->val_loss);
    int last = r->step == r->total_steps;
    if (last && isfinite(r->basis_error))
        fprintf(stderr, "%scompression: every U0 and U_theta orthonormal to %.1e; shared state %016llx on every rank\n",
                t->tty ? "\n" : "", r->basis_error, (unsigned long long)r->shared_hash);
    if (t->tty) {
        fprintf(stderr, "\rstep %d/%d | loss %.4f%s | %.0f tok/s | %.0f ms/step | ETA %s   %s", r->step, r->total_steps,
                r->train_loss, val, tok_s, r->step_ms, eta, last || val[0] ? "\n" : "");
    } else if (last || val[0] || r->wall_s - t->last_print >= 10.0) {
        fprintf(stderr, "step %d/%d | loss %.4f%s | %.0f tok/s | %.0f ms/step | ETA %s\n", r->step, r->total_steps,
                r->train_loss, val, tok_s, r->step_ms, eta);
        t->last_print = r->wall_s;
    }
}

static int open_metrics(train_cli *t, int argc, char **argv)
{
    if (t->metrics_path == NULL)
        return 0;
    snprintf(t->metrics_partial, sizeof t->metrics_partial, "%s.partial", t->metrics_path);
    t->metrics = fopen(t->metrics_partial, "w");
    if (t->metrics == NULL) {
        fprintf(stderr, "wancp train: %s: cannot create\n", t->metrics_partial);
        return 2;
    }
    char cmd[2048], host[256] = "?";
    cli_command_line(argc, argv, cmd, sizeof cmd);
    gethostname(host, sizeof host);
    const model_config *m = &t->tc.model;
    const optim_config *o = &t->tc.optim;
    char device[512];
    cli_device_describe(t->ops, device, sizeof device);
    char method[1024] = ""; /* key=value for every row, as a scenario's [train] takes them */
    for (int i = 0; i < RUN_NOPTIONS; i++) {
        char value[RUN_OPTION_VALUE] = "auto";
        if (t->method.given[i] || RUN_OPTIONS[i].fallback != NULL)
            run_method_value(&t->method, i, value, sizeof value);
        size_t used = strlen(method);
        snprintf(method + used, sizeof method - used, " %s=%s", RUN_OPTIONS[i].key, value);
    }
    fprintf(t->metrics,
            "# wancp train metrics\n# commit: %s\n# command: %s\n# host: %s\n"
            "# blas: %s, core %s, %d threads\n"
            "# device: %s\n"
            "# transport: K/V over TCP%s, weight sync over %s\n"
            "# model: layers=%d dim=%d heads=%d kv_heads=%d ffn_dim=%d vocab=%d context=%d attn_block=%d "
            "tied_head=%d rope_theta=%g norm_eps=%g\n"
            "# optim: lr=%g lr_final_frac=%g warmup=%d steps=%d beta1=%g beta2=%g eps=%g weight_decay=%g clip=%g\n"
            "# data: train=%s val=%s batch=%d seq=%d val_tokens=%ld\n# seed: %llu\n"
            "# cp: ranks=%d sync=%s sync_every=%d chunks=%d (bytes columns: rank 0's payload sent, "
            "cumulative; comm_ms: time blocked on communication, compute_ms the rest of step_ms)\n"
            "# compression: compress=%d warm_steps=%d compress_last=%d kv_bases=%d psi_k=%d rank_k=%d rank_v=%d "
            "(totals over a layer's bases)\n"
            "# method:%s\n"
            "step,wall_s,lr,train_loss,val_loss,grad_norm,tokens,step_ms,kv_fwd_tx_bytes,kv_bwd_tx_bytes,"
            "sync_tx_bytes,control_tx_bytes,compressed,compute_ms,comm_ms,kv_fwd_wait_ms,kv_bwd_wait_ms,"
            "sync_wait_ms,unix_s\n",
            wancp_git_commit, cmd, host, ops_cpu_blas_name(), ops_cpu_blas_core(), t->ops->options.cpu_threads, device,
            t->ops->host_memory ? "" : " (staged through pinned host memory)",
            t->tc.nccl != NULL    ? comm_nccl_describe(t->tc.nccl)
            : t->ops->host_memory ? "TCP"
                                  : "TCP (staged)",
            m->n_layers, m->dim, m->n_heads, m->n_kv_heads, m->ffn_dim, m->vocab, m->context, m->attn_block,
            m->tied_head, (double)m->rope_theta, (double)m->norm_eps, (double)o->lr, (double)o->lr_final_frac,
            o->warmup_steps, o->total_steps, (double)o->beta1, (double)o->beta2, (double)o->eps,
            (double)o->weight_decay, (double)o->grad_clip, t->tc.train_path, t->tc.val_path, t->tc.batch, t->tc.seq,
            t->tc.val_tokens, (unsigned long long)t->tc.seed, t->tc.comm ? comm_size(t->tc.comm) : 1,
            t->tc.sync_mode == SYNC_EVERY_STEP ? "S" : "A", t->tc.sync_every, t->tc.chunks, m->psi_k > 0,
            t->tc.warm_steps, t->tc.cp.compress_last, m->psi_k > 0 ? model_kv_bases(m) : 0, m->psi_k, m->rank_k,
            m->rank_v, method);
    return 0;
}

/* The run-options table's switches into the trainer's config and the backend's options; with compression, the derived
 * values (ranks, covariance steps, Stiefel step size) are resolved and written back into m
 * as given, so the metrics header's "# method:" line says what ran. */
static void apply_method(run_method *m, trainer_config *c, cli_device *device, bool compress)
{
    c->cp.wire_bf16 = m->wire == 0;
    device->name = m->device == 1 ? "cuda" : "cpu";
    device->precision = (cuda_precision)m->precision;
    device->fused_attention = m->attention == 1;
    c->cp_layout = m->cp_layout == 0 ? CP_ZIGZAG : CP_CONTIGUOUS;
    c->cp.regather = m->kv_regather;
    c->cp.cheap_rotation = m->cheap_rotation;
    c->cp.planes = m->planes;
    c->unplug_at = m->unplug_at;
    c->check_shared = m->check_shared;
    c->cp.stiefel = m->stiefel;
    c->stiefel_every = m->stiefel_every;
    if (!compress)
        return;
    const int rank_k = run_option_find("rank_k"), rank_v = run_option_find("rank_v");
    const int stiefel_lr = run_option_find("stiefel_lr");
    run_method_compression(m, &c->model);
    c->cov_steps = m->cov_steps < c->warm_steps ? m->cov_steps : c->warm_steps;
    c->stiefel_lr = m->given[stiefel_lr] ? (float)m->stiefel_lr : c->optim.lr;
    m->rank_k = c->model.rank_k / model_kv_bases(&c->model); /* per basis, as the row reads */
    m->rank_v = c->model.rank_v / model_kv_bases(&c->model);
    if (c->cov_steps > 0) /* none without warm steps: the row keeps its value */
        m->cov_steps = c->cov_steps;
    m->stiefel_lr = c->stiefel_lr;
    m->given[rank_k] = m->given[rank_v] = m->given[stiefel_lr] = true;
}

enum {
    O_TRAIN = 256,
    O_VAL,
    O_BATCH,
    O_SEQ,
    O_STEPS,
    O_LR,
    O_WARMUP,
    O_LR_FINAL,
    O_WD,
    O_CLIP,
    O_SEED,
    O_EVAL,
    O_VAL_TOKENS,
    O_METRICS,
    O_CKPT,
    O_CKPT_EVERY,
    O_RESUME,
    O_THREADS,
    O_STOP_AFTER,
    O_RANKS,
    O_SYNC,
    O_SYNC_EVERY,
    O_CHUNKS,
    O_COMPRESS,
    O_WARM_STEPS,
    O_COMPRESS_LAST,
    O_TRANSPORT,
    O_METHOD = 1024, /* + the row of the run-options table */
};
/* The options of train outside the run-options table. */
static const struct option FIXED[] = {
    {"train", 1, 0, O_TRAIN},
    {"val", 1, 0, O_VAL},
    CLI_MODEL_OPTIONS,
    {"batch", 1, 0, O_BATCH},
    {"seq", 1, 0, O_SEQ},
    {"steps", 1, 0, O_STEPS},
    {"lr", 1, 0, O_LR},
    {"warmup", 1, 0, O_WARMUP},
    {"lr-final", 1, 0, O_LR_FINAL},
    {"weight-decay", 1, 0, O_WD},
    {"clip", 1, 0, O_CLIP},
    {"seed", 1, 0, O_SEED},
    {"eval-every", 1, 0, O_EVAL},
    {"val-tokens", 1, 0, O_VAL_TOKENS},
    {"metrics", 1, 0, O_METRICS},
    {"checkpoint", 1, 0, O_CKPT},
    {"checkpoint-every", 1, 0, O_CKPT_EVERY},
    {"resume", 1, 0, O_RESUME},
    {"threads", 1, 0, O_THREADS},
    {"stop-after", 1, 0, O_STOP_AFTER},
    {"ranks", 1, 0, O_RANKS},
    {"sync", 1, 0, O_SYNC},
    {"sync-every", 1, 0, O_SYNC_EVERY},
    {"chunks", 1, 0, O_CHUNKS},
    {"compress", 0, 0, O_COMPRESS},
    {"warm-steps", 1, 0, O_WARM_STEPS},
    {"compress-last", 0, 0, O_COMPRESS_LAST},
    {"transport", 1, 0, O_TRANSPORT},
    {"help", 0, 0, 'h'},
};

/* Train's own defaults (the table's rows carry theirs). */
static void train_defaults(trainer_config *c)
{
    static char train_default[4096], val_default[4096];
    snprintf(train_default, sizeof train_default, "%s/data/brown_train.bin", cli_source_dir());
    snprintf(val_default, sizeof val_default, "%s/data/brown_val.bin", cli_source_dir());
    c->model = model_config_default();
    c->model.context = 256;
    c->optim = optim_config_default();
    c->optim.lr = 3e-3f;
    c->optim.total_steps = 300;
    c->batch = 4;
    c->seq = 0;
    c->seed = 1;
    c->train_path = train_default;
    c->val_path = val_default;
    c->eval_every = 50;
    c->val_tokens = 65536;
    c->sync_every = 10;
    c->model.n_kv_heads = 0;
    c->model.attn_block = 0;
}

/* What parse saw that finish_config resolves: -1 where not given. */
typedef struct train_flags {
    int warmup, warm_steps;
    bool compress, compress_only; /* --compress; an option that needs it */
} train_flags;

/* After the options: derived values (sequence, attention block, warm-up, the method's autos)
 * and the checks across options; 0 or an exit status. */
static int finish_config(train_cli *t, const train_flags *fl)
{
    trainer_config *c = &t->tc;
    run_method *m = &t->method;
    const int warmup = fl->warmup, warm_steps = fl->warm_steps;
    const bool compress = fl->compress, compress_only = fl->compress_only;
    const bool block_given = c->model.attn_block != 0;
    cli_model_finish(&c->model);
    if (c->seq == 0)
        c->seq = c->model.context;
    /* The default attention block also divides the chunk a rank holds. */
    int world = t->ranks; /* launched ranks learn P from the environment */
    static const char *const WORLD_VARS[] = {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"};
    for (int i = 0; i < 3 && world <= 1; i++)
        if (getenv(WORLD_VARS[i]) != NULL)
            world = atoi(getenv(WORLD_VARS[i]));
    const int pieces = world > 1 ? 2 * world : c->chunks;
    if (!block_given)
        cli_model_fit_block(&c->model, c->seq, pieces);
    c->optim.warmup_steps = warmup >= 0 ? warmup : c->optim.total_steps / 10;
    if (c->optim.warmup_steps > c->optim.total_steps)
        return cli_usage_error("train", "--warmup %d is longer than the run's %d steps", c->optim.warmup_steps,
                               c->optim.total_steps);
    if (warm_steps > c->optim.total_steps)
        return cli_usage_error("train", "--warm-steps %d is longer than the run's %d steps", warm_steps,
                               c->optim.total_steps);
    if (c->checkpoint_path != NULL && cli_check_folder("train", "--checkpoint", c->checkpoint_path) != 0)
        return 2;
    if (compress_only && !compress)
        return cli_usage_error("train", "compression options need --compress");
    if (!compress)
        apply_method(m, c, &t->device, false);
    if (compress) {
        if (t->ranks < 2 && c->chunks == 0 && getenv("WORLD_SIZE") == NULL && getenv("SLURM_NTASKS") == NULL &&
            getenv("OMPI_COMM_WORLD_SIZE") == NULL)
            return cli_usage_error("train", "--compress needs chunks to compress: --ranks P or --chunks N");
        c->warm_steps = warm_steps >= 0 ? warm_steps : c->optim.total_steps / 10;
        apply_method(m, c, &t->device, true);
        if (c->cp.cheap_rotation && (c->cp.planes > 0 || c->cp.stiefel))
            return cli_usage_error("train", "--cheap-rotation fixes the planes to the basis: not with --planes or "
                                            "--stiefel");
        const int width = model_basis_dim(&c->model), rank_v = c->model.rank_v / model_kv_bases(&c->model);
        const char *basis = model_kv_bases(&c->model) > 1 ? "d_head" : "d_kv";
        if (c->cp.cheap_rotation && 2 * rank_v > width)
            return cli_usage_error("train", "--cheap-rotation needs 2 x rank <= %s = %d (rank_v is %d)", basis, width,
                                   rank_v);
        if (c->cp.planes > 0 && 2 * c->cp.planes > width)
            return cli_usage_error("train", "--planes %d: 2 x planes must not exceed %s = %d", c->cp.planes, basis,
                                   width);
    }
    c->cp.seed = c->seed ^ 0x51u;
    if (c->chunks > 0 && t->ranks > 1)
        return cli_usage_error("train", "--chunks is for one process; over --ranks P each rank holds 2 chunks");
    if (t->nccl && (t->device.name == NULL || strcmp(t->device.name, "cuda") != 0))
        return cli_usage_error("train", "--transport nccl runs collectives on GPUs: it needs --device cuda");
    if (c->chunks > 0 && (c->seq % c->chunks != 0 || (c->seq / c->chunks) % c->model.attn_block != 0))
        return cli_usage_error("train",
                               "--chunks %d: a sequence of %d tokens must split into %d chunks, each a "
                               "multiple of the attention block %d",
                               c->chunks, c->seq, c->chunks, c->model.attn_block);
    char err[WANCP_ERRLEN];
    int rc = model_config_validate(&c->model, "command line", err, sizeof err);
    if (rc != WANCP_OK)
        return cli_report("train", rc, err);
    if (c->seq > c->model.context)
        return cli_usage_error("train", "--seq %d is longer than --context %d", c->seq, c->model.context);
    if (t->ranks > 1 && (c->seq % (2 * t->ranks) != 0 || (c->seq / (2 * t->ranks)) % c->model.attn_block != 0))
        return cli_usage_error("train",
                               "a sequence of %d tokens over %d ranks needs 2 x %d chunks, each a multiple of "
                               "the attention block %d",
                               c->seq, t->ranks, t->ranks, c->model.attn_block);
    return 0;
}

/* Parses the command line into t; 0, an exit status, or -1 after --help. */
static int parse(int argc, char **argv, train_cli *t, int *threads)
{
    /* The fixed options, then one per row of the run-options table. */
    enum { NFIXED = sizeof FIXED / sizeof FIXED[0] };
    struct option LONG[NFIXED + RUN_OPTIONS_MAX + 1];
    memcpy(LONG, FIXED, sizeof FIXED);
    for (int i = 0; i < RUN_NOPTIONS; i++)
        LONG[NFIXED + i] =
            (struct option){RUN_OPTIONS[i].flag + 2, RUN_OPTIONS[i].type != RUN_OPT_BOOL, 0, O_METHOD + i};
    LONG[NFIXED + RUN_NOPTIONS] = (struct option){0, 0, 0, 0};
    trainer_config *c = &t->tc;
    train_defaults(c);
    int warmup = -1, compress = 0, warm_steps = -1;
    bool compress_only = false; /* a compression option was given */
    run_method *m = &t->method;
    *m = run_method_defaults();
    optind = 1;
    opterr = 0;
    for (int opt, li = -1; (opt = getopt_long(argc, argv, ":h", LONG, &li)) != -1; li = -1) {
        unsigned long u = 0;
        double f = 0;
        char name[48];
        cli_option_name(name, sizeof name, LONG, li, argv);
        int bad = 0;
        switch (opt) {
        case O_TRAIN: c->train_path = optarg; break;
        case O_VAL: c->val_path = optarg; break;
        case O_BATCH:
            bad = cli_parse_ulong("train", name, optarg, 1, 4096, &u);
            c->batch = (int)u;
            break;
        case O_SEQ:
            bad = cli_parse_ulong("train", name, optarg, 1, 1 << 24, &u);
            c->seq = (int)u;
            break;
        case O_STEPS:
            bad = cli_parse_ulong("train", name, optarg, 1, 100000000, &u);
            c->optim.total_steps = (int)u;
            break;
        case O_LR:
            bad = cli_parse_float("train", name, optarg, 0, 10, &f);
            c->optim.lr = (float)f;
            break;
        case O_WARMUP:
            bad = cli_parse_ulong("train", name, optarg, 0, 100000000, &u);
            warmup = (int)u;
            break;
        case O_LR_FINAL:
            bad = cli_parse_float("train", name, optarg, 0, 1, &f);
            c->optim.lr_final_frac = (float)f;
            break;
        case O_WD:
            bad = cli_parse_float("train", name, optarg, 0, 1, &f);
            c->optim.weight_decay = (float)f;
            break;
        case O_CLIP:
            bad = cli_parse_float("train", name, optarg, 0, 1e9, &f);
            c->optim.grad_clip = (float)f;
            break;
        case O_SEED:
            bad = cli_parse_ulong("train", name, optarg, 0, ~0ul, &u);
            c->seed = u;
            break;
        case O_EVAL:
            bad = cli_parse_ulong("train", name, optarg, 0, 100000000, &u);
            c->eval_every = (int)u;
            break;
        case O_VAL_TOKENS:
            bad = cli_parse_ulong("train", name, optarg, 1, 1ul << 40, &u);
            c->val_tokens = (long)u;
            break;
        case O_METRICS: t->metrics_path = optarg; break;
        case O_CKPT: c->checkpoint_path = optarg; break;
        case O_CKPT_EVERY:
            bad = cli_parse_ulong("train", name, optarg, 1, 100000000, &u);
            c->checkpoint_every = (int)u;
            break;
        case O_RESUME: c->resume_path = optarg; break;
        case O_STOP_AFTER:
            bad = cli_parse_ulong("train", name, optarg, 1, 100000000, &u);
            c->stop_after = (int)u;
            break;
        case O_THREADS:
            bad = cli_parse_ulong("train", name, optarg, 1, 1024, &u);
            *threads = (int)u;
            break;
        case O_RANKS:
            bad = cli_parse_ulong("train", name, optarg, 1, 256, &u);
            t->ranks = (int)u;
            break;
        case O_SYNC:
            if (strcmp(optarg, "S") != 0 && strcmp(optarg, "A") != 0)
                return cli_usage_error("train", "--sync '%s': expected S (every step) or A (average every C)", optarg);
            c->sync_mode = optarg[0] == 'S' ? SYNC_EVERY_STEP : SYNC_AVERAGE;
            break;
        case O_SYNC_EVERY:
            bad = cli_parse_ulong("train", name, optarg, 1, 1000000, &u);
            c->sync_every = (int)u;
            break;
        case O_CHUNKS:
            bad = cli_parse_ulong("train", name, optarg, 1, CP_MAX_LOCAL, &u);
            c->chunks = (int)u;
            break;
        case O_COMPRESS: compress = 1; break;
        case O_TRANSPORT:
            if (strcmp(optarg, "tcp") != 0 && strcmp(optarg, "nccl") != 0)
                return cli_usage_error("train", "--transport '%s': expected tcp or nccl", optarg);
            t->nccl = strcmp(optarg, "nccl") == 0;
            break;
        case O_WARM_STEPS:
            bad = cli_parse_ulong("train", name, optarg, 0, 100000000, &u);
            warm_steps = (int)u;
            compress_only = true;
            break;
        case O_COMPRESS_LAST:
            c->cp.compress_last = true;
            compress_only = true;
            break;
        case 'h':
            fputs(USAGE, stdout);
            printf("Method and runtime switches (a scenario sets each in [train] or per [arm NAME], under the key in "
                   "brackets):\n");
            run_option_usage(stdout);
            fputs(USAGE_END, stdout);
            return -1;
        case ':': return cli_usage_error("train", "%s needs a value", name);
        default:
            if (opt >= O_METHOD && opt < O_METHOD + RUN_NOPTIONS) {
                const int row = opt - O_METHOD;
                const char *value = RUN_OPTIONS[row].type == RUN_OPT_BOOL ? "true" : optarg;
                char why[128];
                if (run_option_check(row, value, why, sizeof why) != 0)
                    return cli_usage_error("train", "%s '%s': %s", name, value, why);
                run_method_set(m, row, value);
                compress_only |= RUN_OPTIONS[row].compress_only && m->given[row];
                break;
            }
            if (opt < CLI_MODEL_FIRST || opt > CLI_MODEL_LAST)
                return cli_usage_error("train", "unknown option '%s'", name);
            bad = cli_model_option("train", opt, name, optarg, &c->model);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    const train_flags flags = {warmup, warm_steps, compress, compress_only};
    return finish_config(t, &flags);
}

/* Copies argv without --ranks (and its value) for the rank processes. */
static char **without_ranks(int argc, char **argv)
{
    char **out = calloc((size_t)argc + 2, sizeof *out);
    if (out == NULL)
        return NULL;
    int n = 0;
    out[n++] = "wancp";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--ranks") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--ranks=", 8) == 0)
            continue;
        out[n++] = argv[i];
    }
    return out;
}

/* --resume FILE over P ranks reads FILE.rank0 .. FILE.rank(P-1): all must be there before
 * any rank starts (one line, not one per rank). */
static int check_resume_files(const char *path, int ranks)
{
    char name[4200];
    for (int r = 0; r < ranks; r++) {
        snprintf(name, sizeof name, "%s.rank%d", path, r);
        if (access(name, R_OK) == 0)
            continue;
        if (r == 0 && access(path, R_OK) == 0)
            return cli_usage_error("train",
                                   "--resume %s: a checkpoint of one process; %d ranks read %s.rank0 to "
                                   ".rank%d (resume it without --ranks)",
                                   path, ranks, path, ranks - 1);
        return cli_usage_error("train", "--resume %s: %s: %s", path, name, strerror(errno));
    }
    return 0;
}

int cli_train(int argc, char **argv)
{
    train_cli t = {0};
    int threads = 0;
    int status = parse(argc, argv, &t, &threads);
    if (status != 0)
        return status < 0 ? 0 : status;
    if (t.ranks > 1) {
        if (getenv("WORLD_SIZE") != NULL)
            return cli_usage_error("train", "--ranks inside a launched rank (WORLD_SIZE is set)");
        if (t.tc.resume_path != NULL && check_resume_files(t.tc.resume_path, t.ranks) != 0)
            return 2;
        char **child = without_ranks(argc, argv);
        if (child == NULL)
            return cli_report("train", WANCP_ERR_NOMEM, "out of memory");
        status = launch_local_ranks("train", t.ranks, child);
        free(child);
        return status;
    }
    char err[WANCP_ERRLEN];
    comm *c = NULL;
    int rank = 0, timeout_ms = 0;
    if (getenv("WORLD_SIZE") != NULL || getenv("SLURM_NTASKS") != NULL || getenv("OMPI_COMM_WORLD_SIZE") != NULL) {
        comm_options co;
        int rc = comm_options_from_env(&co, err, sizeof err);
        if (rc == WANCP_OK && co.world > 1)
            rc = comm_open(&c, &co, err, sizeof err);
        if (rc != WANCP_OK)
            return cli_report("train", rc, err);
        rank = co.rank;
        timeout_ms = co.timeout_ms;
        t.tc.comm = c;
    }
    t.device.threads = threads;
    if ((t.ops = cli_device_open("train", &t.device)) == NULL) {
        comm_close(c);
        return 2;
    }
    if (t.nccl) {
        int rc = comm_nccl_open(&t.tc.nccl, c, timeout_ms, err, sizeof err);
        if (rc != WANCP_OK) {
            comm_close(c);
            if (c != NULL)
                fprintf(stderr, "wancp train: rank %d: %s\n", rank, err);
            return c != NULL ? wancp_exit_status(rc) : cli_report("train", rc, err);
        }
    }
    t.tty = isatty(STDERR_FILENO);
    if (rank == 0 && (status = open_metrics(&t, argc, argv)) != 0) {
        comm_nccl_close(t.tc.nccl);
        comm_close(c);
        return status;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int stopped_at = 0;
    t.rank = rank;
    int rc = trainer_run(&t.tc, t.ops, report, &t, &stop_requested, &stopped_at, err, sizeof err);
    if (t.metrics != NULL) {
        /* A full disk shows here at the latest: the run fails naming the file, which is removed. */
        int werr = t.write_errno;
        if (werr == 0 && (ferror(t.metrics) != 0 || fflush(t.metrics) != 0))
            werr = errno != 0 ? errno : EIO;
        if (fclose(t.metrics) != 0 && werr == 0)
            werr = errno != 0 ? errno : EIO;
        if (werr != 0 && (rc == WANCP_OK || stop_requested)) {
            rc = wancp_fail(err, sizeof err, WANCP_ERR_SYSTEM, "%.400s: cannot write: %s", t.metrics_partial,
                            strerror(werr));
            unlink(t.metrics_partial);
        } else if (rc == WANCP_OK && rename(t.metrics_partial, t.metrics_path) != 0)
            rc = wancp_fail(err, sizeof err, WANCP_ERR_SYSTEM, "%.400s: cannot rename into place", t.metrics_path);
        else if (rc != WANCP_OK && t.rows == 0)
            unlink(t.metrics_partial); /* refused before any step: nothing worth keeping */
    }
    comm_nccl_close(t.tc.nccl);
    comm_close(c);
    if (rc != WANCP_OK && c != NULL) {
        fprintf(stderr, "wancp train: rank %d: %s\n", rank, err);
        return wancp_exit_status(rc);
    }
    if (rc != WANCP_OK)
        return cli_report("train", rc, err);
    if (stopped_at < t.tc.optim.total_steps && rank == 0) {
        /* Interrupted (exit 1), or stopped early as asked with --stop-after (exit 0). */
        fprintf(stderr, "%swancp train: %s at step %d of %d%s%s\n", t.tty ? "\n" : "",
                stop_requested ? "interrupted" : "stopped as asked", stopped_at, t.tc.optim.total_steps,
                t.tc.checkpoint_path ? "; continue with --resume " : "",
                t.tc.checkpoint_path ? t.tc.checkpoint_path : "");
    }
    return stopped_at < t.tc.optim.total_steps && stop_requested ? 1 : 0;
}
