/* wancp bench step: the training step's achieved GFLOP/s against this machine's sgemm peak,
 * both measured in the same run with the same BLAS threads. */
#include "../cli.h"
#include "../cli_model.h"
#include "../run_options.h"

#include "../../core/cp/cp_attention.h"
#include "../../core/model/model.h"
#include "../../core/base/status.h"
#include "../../core/train/optimizer.h"
#include "../../core/util/rng.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char USAGE[] =
    "Usage: wancp bench step [options]\n"
    "\n"
    "Times full training steps (forward, backward, AdamW) of a model on random tokens and\n"
    "compares the model FLOP rate with the best sgemm rate measured in the same run.\n"
    "  model FLOPs = 6 x matmul params x tokens + 6 x layers x seq^2 x dim x batch\n"
    "  (matmul params include the LM head, not the embedding lookup; the attention term is\n"
    "  causal attention's forward 2 seq^2 dim plus a backward of twice that)\n"
    "\n"
    "  --layers N (4) --dim N (256) --heads N (4) --kv-heads N (= heads) --ffn N (704)\n"
    "  --vocab N (50257) --context N (2048) --attn-block N (256) --batch N (1)\n"
    "  --steps N (3)   timed steps after one untimed warm-up step; the median counts\n"
    "  --chunks N      attention over N chunks of the sequence, as one rank of context\n"
    "                  parallelism sees them (METHOD.md section 2's model on one process)\n"
    "  --compress      compress K/V between chunks (every block; default ranks; --chunks 8\n"
    "                  unless given) and report the compression maths (compress, decompress,\n"
    "                  E, tau and the owner's sums, forward and backward) as a fraction of the step\n"
    "  --cheap-rotation  with --compress: the cheaper rotation (r planes pairing U0 with a complement)\n"
    "  --threads N     BLAS threads (default: one per CPU)\n"
    "  --device cpu|cuda (cpu)  cuda: CUDA kernels and cuBLAS; the peak is cuBLAS's on that GPU,\n"
    "                  so the ratio is the model FLOP utilisation (MFU) in the same maths\n"
    "  --precision tf32|bf16|fp32 (tf32)  cuda's products (matmuls, attention) on tensor cores\n"
    "                  with TF32 or bf16 operands, or in full fp32; all accumulate in fp32\n"
    "  --attention products|fused (products)  cuda attention as cuBLAS products around row\n"
    "                  kernels, or fused tensor-core kernels that keep score tiles on chip\n"
    "                  (tf32 or bf16; head dimensions 16, 32, 64, 128, 256)\n"
    "  --json          one JSON object on stdout\n";

/* Best GFLOP/s of the backend's matmul over square and training-shaped products, 3 tries
 * each (on a GPU also larger squares, which its peak needs). On a GPU the products are
 * cuBLAS's plain GEMM at the backend's precision on operands already in the type the
 * tensor cores read (bf16 arrays for bf16): the device's own ceiling, without the operand
 * copies the backend's bf16 matmul makes. */
double bench_sgemm_peak(const ops *o, const model_config *c, int tokens, char *shape, size_t shape_len)
{
    const int shapes[][3] = {
        {2048, 2048, 2048},      {tokens, c->ffn_dim, c->dim}, {tokens, c->dim, c->ffn_dim},
        {256, c->vocab, c->dim}, {4096, 4096, 4096},           {8192, 8192, 8192},
    };
    const size_t count = strcmp(o->name, "cpu") == 0 ? 4 : 6;
    double best = 0.0;
    for (size_t s = 0; s < count; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        if (strcmp(o->name, "cuda") == 0) {
            double g = ops_cuda_gemm_peak_gflops(m, n, k);
            if (g > best) {
                best = g;
                snprintf(shape, shape_len, "%dx%dx%d", m, n, k);
            }
            continue;
        }
        float *a = o->alloc((size_t)m * k * sizeof *a), *b = o->alloc((size_t)k * n * sizeof *b);
        float *out = o->alloc((size_t)m * n * sizeof *out);
        if (a == NULL || b == NULL || out == NULL) {
            o->release(a), o->release(b), o->release(out);
            continue;
        }
        for (size_t i = 0; i < (size_t)m * k; i++)
            a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)k * n; i++)
            b[i] = (float)(i % 5) * 0.1f;
        o->matmul(out, a, b, m, n, k, false, false, 1.0f, 0.0f); /* warm-up */
        o->sync();
        for (int r = 0; r < 3; r++) {
            double t0 = cli_now();
            o->matmul(out, a, b, m, n, k, false, false, 1.0f, 0.0f);
            o->sync();
            double g = 2.0 * m * n * k / (cli_now() - t0) / 1e9;
            if (g > best) {
                best = g;
                snprintf(shape, shape_len, "%dx%dx%d", m, n, k);
            }
        }
        o->release(a), o->release(b), o->release(out);
    }
    return best;
}

/* What bench_sgemm_peak timed: OpenBLAS, or cuBLAS at the backend's precision. */
static const char *peak_kind(const ops *o)
{
    if (strcmp(o->name, "cpu") == 0)
        return "OpenBLAS sgemm";
    switch (o->options.precision) {
    case CUDA_BF16: return "cuBLAS bf16 GEMM (fp32 accumulation)";
    case CUDA_FP32: return "cuBLAS sgemm in full fp32";
    default: return "cuBLAS sgemm on TF32 tensor cores";
    }
}

int bench_step(int argc, char **argv)
{
    enum {
        O_BATCH = 256,
        O_STEPS,
        O_THREADS,
        O_JSON,
        O_CHUNKS,
        O_COMPRESS,
        O_CHEAP,
        O_DEVICE,
        O_PRECISION,
        O_ATTENTION
    };
    static const struct option LONG[] = {
        CLI_MODEL_OPTIONS,
        {"batch", 1, 0, O_BATCH},
        {"steps", 1, 0, O_STEPS},
        {"threads", 1, 0, O_THREADS},
        {"json", 0, 0, O_JSON},
        {"chunks", 1, 0, O_CHUNKS},
        {"compress", 0, 0, O_COMPRESS},
        {"cheap-rotation", 0, 0, O_CHEAP},
        {"device", 1, 0, O_DEVICE},
        {"precision", 1, 0, O_PRECISION},
        {"attention", 1, 0, O_ATTENTION},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    model_config c = model_config_default();
    c.context = 2048;
    c.n_kv_heads = 0;
    c.attn_block = 0;
    int batch = 1, steps = 3, threads = 0, json = 0, chunks = 0, compress = 0, cheap = 0;
    cli_device device = {0};
    optind = 1;
    opterr = 0;
    for (int opt, li = -1; (opt = getopt_long(argc, argv, ":h", LONG, &li)) != -1; li = -1) {
        unsigned long u = 0;
        char name[48];
        cli_option_name(name, sizeof name, LONG, li, argv);
        int bad = 0;
        switch (opt) {
        case O_BATCH:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            batch = (int)u;
            break;
        case O_STEPS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1000, &u);
            steps = (int)u;
            break;
        case O_THREADS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            threads = (int)u;
            break;
        case O_JSON: json = 1; break;
        case O_CHUNKS:
            bad = cli_parse_ulong("bench", name, optarg, 1, CP_MAX_LOCAL, &u);
            chunks = (int)u;
            break;
        case O_COMPRESS: compress = 1; break;
        case O_CHEAP: cheap = 1; break;
        case O_DEVICE:
        case O_PRECISION:
        case O_ATTENTION: bad = cli_device_option("bench", name, optarg, &device); break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("bench", "%s needs a value", name);
        default:
            if (opt < CLI_MODEL_FIRST || opt > CLI_MODEL_LAST)
                return cli_usage_error("bench", "unknown option '%s'", name);
            bad = cli_model_option("bench", opt, name, optarg, &c);
        }
        if (bad)
            return 2;
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    const bool block_given = c.attn_block != 0;
    cli_model_finish(&c);
    if (cheap && !compress)
        return cli_usage_error("bench", "--cheap-rotation needs --compress");
    if (compress && chunks == 0)
        chunks = 8;
    if (compress) {
        const run_method defaults = run_method_defaults();
        run_method_compression(&defaults, &c);
    }
    if (!block_given) /* the default block also divides a chunk */
        cli_model_fit_block(&c, c.context, chunks);
    if (chunks > 0 && (c.context % chunks != 0 || (c.context / chunks) % c.attn_block != 0))
        return cli_usage_error("bench",
                               "--chunks %d: the context %d must split into %d chunks, each a multiple of "
                               "the attention block %d",
                               chunks, c.context, chunks, c.attn_block);

    device.threads = threads;
    char err[WANCP_ERRLEN];
    const ops *o = cli_device_open("bench", &device);
    if (o == NULL)
        return 2;
    const bool gpu = strcmp(o->name, "cpu") != 0;
    char device_name[512];
    cli_device_describe(o, device_name, sizeof device_name);
    model m;
    cp_attention cp = {0};
    int rc = model_config_validate(&c, "command line", err, sizeof err);
    if (rc == WANCP_OK)
        rc = model_init(&m, &c, o, batch, c.context, 1, err, sizeof err);
    if (rc != WANCP_OK)
        return cli_report("bench", rc, err);
    if (chunks > 0) {
        cp_layout layout = {.kind = CP_CONTIGUOUS, .ranks = 1, .chunk = c.context / chunks, .per_rank = chunks};
        cp_options co = {.wire_bf16 = true, .compress_last = true, .seed = 3, .cheap_rotation = cheap};
        rc = cp_attention_init(&cp, NULL, &layout, &co, &m, err, sizeof err);
        if (rc == WANCP_OK && compress)
            rc = cp_attention_set_compression(&cp, &m, true, err, sizeof err);
        if (rc != WANCP_OK) {
            model_free(&m);
            return cli_report("bench", rc, err);
        }
    }
    const int tokens = batch * c.context;
    char peak_shape[64] = "";
    double peak = bench_sgemm_peak(o, &c, tokens, peak_shape, sizeof peak_shape);

    uint16_t *in = malloc((size_t)tokens * sizeof *in), *tg = malloc((size_t)tokens * sizeof *tg);
    double *times = malloc((size_t)steps * sizeof *times), *codec = malloc((size_t)steps * sizeof *codec);
    if (in == NULL || tg == NULL || times == NULL || codec == NULL) {
        free(in), free(tg), free(times), free(codec);
        cp_attention_free(&cp);
        model_free(&m);
        return cli_report("bench", WANCP_ERR_NOMEM, "out of memory for the batch");
    }
    rng r;
    rng_seed(&r, 2);
    for (int i = 0; i < tokens; i++) {
        in[i] = (uint16_t)(rng_next(&r) % (uint64_t)c.vocab);
        tg[i] = (uint16_t)(rng_next(&r) % (uint64_t)c.vocab);
    }
    optim_config oc = optim_config_default();
    oc.total_steps = steps + 1;
    for (int s = 0; s <= steps; s++) {
        double t0 = cli_now(), c0 = cp.codec_s;
        model_zero_grads(&m);
        model_step(&m, in, tg, true);
        optim_step(&m, &oc, s);
        o->sync(); /* a GPU may still be running the last update */
        if (s > 0) {
            times[s - 1] = cli_now() - t0;
            codec[s - 1] = (cp.codec_s - c0) / times[s - 1];
        }
        if (!json)
            fprintf(stderr, "bench step: step %d/%d %.3f s%s\n", s, steps, cli_now() - t0, s == 0 ? " (warm-up)" : "");
    }
    qsort(times, (size_t)steps, sizeof *times, cli_cmp_double);
    qsort(codec, (size_t)steps, sizeof *codec, cli_cmp_double);
    double median = times[steps / 2], overhead = codec[steps / 2];
    double flops = model_step_flops(&c, batch, c.context);
    double gflops = flops / median / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;

    if (json) {
        json_t *j = json_pack(
            "{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:i, s:f, s:s, s:I, s:f, s:s, s:f, "
            "s:f, s:f, s:f, s:f}",
            "bench", "step", "layers", c.n_layers, "dim", c.dim, "heads", c.n_heads, "kv_heads", c.n_kv_heads,
            "ffn_dim", c.ffn_dim, "vocab", c.vocab, "seq", c.context, "attn_block", c.attn_block, "batch", batch,
            "steps", steps, "blas", ops_cpu_blas_name(), "blas_core", ops_cpu_blas_core(), "threads",
            o->options.cpu_threads, "sgemm_peak_gflops", peak, "sgemm_peak_shape", peak_shape, "matmul_params",
            (json_int_t)model_matmul_params(&c), "step_flops", flops, "flops_formula",
            "6*matmul_params*tokens + 6*layers*seq^2*dim*batch", "step_s_median", median, "step_gflops", gflops,
            "ratio", gflops / peak, "tokens_per_s", tokens / median, "peak_rss_mb", rss_mb);
        json_object_set_new(j, "device", json_string(device_name));
        json_object_set_new(j, "mfu", json_real(gflops / peak));
        json_object_set_new(j, "attention", json_string(device.fused_attention ? "fused" : "products"));
        char source[96];
        snprintf(source, sizeof source, "%s on this %s, this run", peak_kind(o), gpu ? "device" : "host");
        json_object_set_new(j, "peak_source", json_string(source));
        if (gpu)
            json_object_set_new(j, "precision", json_string(cuda_precision_name(o->options.precision)));
        json_object_set_new(j, "chunks", json_integer(chunks));
        json_object_set_new(j, "compressed", json_boolean(compress));
        if (compress) {
            json_object_set_new(j, "rank_k", json_integer(c.rank_k));
            json_object_set_new(j, "rank_v", json_integer(c.rank_v));
            json_object_set_new(j, "kv_bases", json_integer(model_kv_bases(&c)));
            json_object_set_new(j, "compression_overhead", json_real(overhead));
            json_object_set_new(j, "rotation", json_string(cheap ? "cheap" : "givens"));
        }
        cli_print_json(j);
    } else {
        printf("# training step: %d layers, dim %d, %d/%d heads, ffn %d, vocab %d, %d x %d tokens, attention "
               "blocks of %d; %s\n",
               c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab, batch, c.context, c.attn_block,
               device_name);
        printf("%-26s %12s\n", "# measure", "value");
        printf("%-26s %12.1f  (%s, %s)\n", "matmul peak GFLOP/s", peak, peak_shape, peak_kind(o));
        printf("%-26s %12.3f\n", "step seconds (median)", median);
        printf("%-26s %12.1f  (%.1f GFLOP per step)\n", "step GFLOP/s", gflops, flops / 1e9);
        printf("%-26s %12.2f%s\n", "ratio step / peak", gflops / peak, gpu ? "  (MFU)" : "");
        printf("%-26s %12.0f\n", "tokens/s", tokens / median);
        printf("%-26s %12.0f\n", "peak RSS MB", rss_mb);
        if (chunks > 0)
            printf("%-26s %12d  (%s)\n", "chunks", chunks, compress ? "K/V compressed between chunks" : "uncompressed");
        if (compress)
            printf("%-26s %12.4f  (ranks %d/%d, %s rotation; median of per-step fractions)\n", "compression / step",
                   overhead, c.rank_k, c.rank_v, cheap ? "cheaper" : "Givens");
    }
    free(in), free(tg), free(times), free(codec);
    cp_attention_free(&cp);
    model_free(&m);
    return 0;
}
