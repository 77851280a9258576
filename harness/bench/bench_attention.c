/* wancp bench attention: causal attention alone (forward, and backward with its delta), its
 * FLOP rate against the best matmul rate measured on the same device in the same run. On a
 * GPU it compares the two attention paths (--attention products|fused) on the step's
 * shapes without the rest of the step around them. */
#include "../cli.h"

#include "../../core/model/model.h"
#include "../../core/ops/ops.h"
#include "../../core/base/status.h"
#include "../../core/util/rng.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] = "Usage: wancp bench attention [options]\n"
                            "\n"
                            "Times causal attention over one sequence held by one process: the forward (begin, one\n"
                            "key set, end) and the backward (delta, then dQ, dK, dV), each the median of --reps runs\n"
                            "after one untimed run, and compares their FLOP rates with the best matmul rate of the\n"
                            "same backend in the same run.\n"
                            "  FLOPs: forward 2 x tokens^2 x heads x head_dim (QK^T and PV over the causal half),\n"
                            "  backward twice that (the model FLOP convention of wancp bench step)\n"
                            "\n"
                            "  --tokens N (4096)   sequence length\n"
                            "  --heads N (8) --kv-heads N (= heads) --head-dim N (64)\n"
                            "  --block N (64)      the cpu backend's query/key block\n"
                            "  --reps N (3)        timed runs of each direction\n"
                            "  --threads N         BLAS threads (default: one per CPU)\n"
                            "  --device cpu|cuda (cpu) --precision tf32|bf16|fp32 (tf32)\n"
                            "  --attention products|fused (products)  cuda's attention path (fused: tf32 or bf16)\n"
                            "  --json              one JSON object on stdout\n";

typedef struct attn_bench {
    const ops *o;
    attn_shape shape;
    int tokens;
    int32_t *pos;
    float *q, *k, *v, *dout, *acc, *max, *sum, *out, *lse, *delta, *dq, *dk, *dv, *scratch;
} attn_bench;

static void bench_free(attn_bench *b)
{
    float *const arrays[] = {b->q,   b->k,   b->v,     b->dout, b->acc, b->max, b->sum,
                             b->out, b->lse, b->delta, b->dq,   b->dk,  b->dv,  b->scratch};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        if (arrays[i] != NULL)
            b->o->release(arrays[i]);
    free(b->pos);
}

/* Every array in the backend's memory; q, k, v and dout random (uploaded from the host). */
static int bench_alloc(attn_bench *b, char *err, size_t errlen)
{
    const size_t t = (size_t)b->tokens, qn = t * b->shape.n_heads * b->shape.head_dim;
    const size_t kn = t * b->shape.n_kv_heads * b->shape.head_dim, hq = t * b->shape.n_heads;
    struct {
        float **p;
        size_t n;
    } want[] = {{&b->q, qn},   {&b->k, kn},
                {&b->v, kn},   {&b->dout, qn},
                {&b->acc, qn}, {&b->max, hq},
                {&b->sum, hq}, {&b->out, qn},
                {&b->lse, hq}, {&b->delta, hq},
                {&b->dq, qn},  {&b->dk, kn},
                {&b->dv, kn},  {&b->scratch, attn_scratch_floats(&b->shape)}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if ((*want[i].p = b->o->alloc((want[i].n > 0 ? want[i].n : 1) * sizeof(float))) == NULL)
            return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for attention over %d tokens", b->tokens);
    b->pos = malloc(t * sizeof *b->pos);
    float *host = malloc(qn * sizeof *host);
    if (b->pos == NULL || host == NULL) {
        free(host);
        return wancp_fail(err, errlen, WANCP_ERR_NOMEM, "out of memory for attention over %d tokens", b->tokens);
    }
    for (size_t i = 0; i < t; i++)
        b->pos[i] = (int32_t)i;
    rng r;
    rng_seed(&r, 5);
    float *const inputs[] = {b->q, b->k, b->v, b->dout};
    const size_t counts[] = {qn, kn, kn, qn};
    for (int a = 0; a < 4; a++) {
        for (size_t i = 0; i < counts[a]; i++)
            host[i] = rng_normal(&r);
        b->o->upload(inputs[a], host, counts[a]);
    }
    b->o->sync();
    free(host);
    return WANCP_OK;
}

static double forward(attn_bench *b)
{
    const ops *o = b->o;
    attn_state st = {.acc = b->acc, .max = b->max, .sum = b->sum, .tq = b->tokens};
    double t0 = cli_now();
    o->attn_begin(&st, &b->shape);
    o->attn_block(&st, b->q, b->pos, b->k, b->v, b->pos, b->tokens, &b->shape, b->scratch);
    o->attn_end(b->out, b->lse, &st, &b->shape);
    o->sync();
    return cli_now() - t0;
}

/* The gradients accumulate run after run; only the time matters here. */
static double backward(attn_bench *b)
{
    const ops *o = b->o;
    double t0 = cli_now();
    o->attn_bwd_delta(b->delta, b->out, b->dout, b->tokens, &b->shape);
    o->attn_block_bwd(b->dq, b->dk, b->dv, b->q, b->pos, b->tokens, b->k, b->v, b->pos, b->tokens, b->dout, b->lse,
                      b->delta, &b->shape, b->scratch);
    o->sync();
    return cli_now() - t0;
}

static double median_of(double (*run)(attn_bench *), attn_bench *b, int reps)
{
    double t[100];
    run(b); /* untimed: first-touch, kernel loading, cuBLAS heuristics */
    for (int i = 0; i < reps; i++)
        t[i] = run(b);
    qsort(t, (size_t)reps, sizeof t[0], cli_cmp_double);
    return t[reps / 2];
}

int bench_attention(int argc, char **argv)
{
    enum {
        O_TOKENS = 256,
        O_HEADS,
        O_KV_HEADS,
        O_HEAD_DIM,
        O_BLOCK,
        O_REPS,
        O_THREADS,
        O_JSON,
        O_DEVICE,
        O_PRECISION,
        O_ATTENTION
    };
    static const struct option LONG[] = {
        {"tokens", 1, 0, O_TOKENS},
        {"heads", 1, 0, O_HEADS},
        {"kv-heads", 1, 0, O_KV_HEADS},
        {"head-dim", 1, 0, O_HEAD_DIM},
        {"block", 1, 0, O_BLOCK},
        {"reps", 1, 0, O_REPS},
        {"threads", 1, 0, O_THREADS},
        {"json", 0, 0, O_JSON},
        {"device", 1, 0, O_DEVICE},
        {"precision", 1, 0, O_PRECISION},
        {"attention", 1, 0, O_ATTENTION},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    int tokens = 4096, heads = 8, kv_heads = 0, head_dim = 64, block = 64, reps = 3, threads = 0, json = 0;
    cli_device device = {0};
    optind = 1;
    opterr = 0;
    for (int opt, li = -1; (opt = getopt_long(argc, argv, ":h", LONG, &li)) != -1; li = -1) {
        unsigned long u = 0;
        char name[48];
        cli_option_name(name, sizeof name, LONG, li, argv);
        int bad = 0;
        switch (opt) {
        case O_TOKENS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1 << 20, &u);
            tokens = (int)u;
            break;
        case O_HEADS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            heads = (int)u;
            break;
        case O_KV_HEADS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            kv_heads = (int)u;
            break;
        case O_HEAD_DIM:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            head_dim = (int)u;
            break;
        case O_BLOCK:
            bad = cli_parse_ulong("bench", name, optarg, 1, 4096, &u);
            block = (int)u;
            break;
        case O_REPS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 99, &u);
            reps = (int)u;
            break;
        case O_THREADS:
            bad = cli_parse_ulong("bench", name, optarg, 1, 1024, &u);
            threads = (int)u;
            break;
        case O_JSON: json = 1; break;
        case O_DEVICE:
        case O_PRECISION:
        case O_ATTENTION: bad = cli_device_option("bench", name, optarg, &device); break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("bench", "%s needs a value", name);
        default: return cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
        if (bad)
            return bad;
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (kv_heads == 0)
        kv_heads = heads;
    if (heads % kv_heads != 0)
        return cli_usage_error("bench", "--heads %d is not a multiple of --kv-heads %d", heads, kv_heads);

    device.threads = threads;
    const ops *o = cli_device_open("bench", &device);
    if (o == NULL)
        return 2;
    char device_name[512], err[WANCP_ERRLEN], peak_shape[64] = "";
    cli_device_describe(o, device_name, sizeof device_name);
    attn_bench b = {.o = o, .tokens = tokens};
    b.shape = (attn_shape){.n_heads = heads, .n_kv_heads = kv_heads, .head_dim = head_dim, .block = block};
    int rc = bench_alloc(&b, err, sizeof err);
    if (rc != WANCP_OK) {
        bench_free(&b);
        return cli_report("bench", rc, err);
    }
    model_config c = model_config_default();
    c.dim = heads * head_dim;
    c.ffn_dim = c.dim * 4;
    const double peak = bench_sgemm_peak(o, &c, tokens, peak_shape, sizeof peak_shape);
    if (!json)
        fprintf(stderr, "bench attention: %d tokens, %d heads (%d kv) of %d on %s\n", tokens, heads, kv_heads, head_dim,
                device_name);
    const double fwd_s = median_of(forward, &b, reps), bwd_s = median_of(backward, &b, reps);
    const double fwd_flops = 2.0 * tokens * (double)tokens * heads * head_dim, bwd_flops = 2.0 * fwd_flops;
    const double fwd_g = fwd_flops / fwd_s / 1e9, bwd_g = bwd_flops / bwd_s / 1e9;
    const double all_g = (fwd_flops + bwd_flops) / (fwd_s + bwd_s) / 1e9;
    const char *kind = device.fused_attention ? "fused" : "products";
    /* The fused backward's dQ path ("-" for products), so a JSON says what it timed. */
    const char *dq = device.fused_attention ? ops_cuda_fused_dq(head_dim) : "-";
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:f, s:f, s:f, s:f, s:f, "
                              "s:f, s:f, s:f, s:f, s:f}",
                              "bench", "attention", "device", device_name, "attention", kind, "fused_dq", dq, "tokens",
                              tokens, "heads", heads, "kv_heads", kv_heads, "head_dim", head_dim, "block", block,
                              "reps", reps, "matmul_peak_gflops", peak, "matmul_peak_shape", peak_shape, "forward_s",
                              fwd_s, "backward_s", bwd_s, "forward_flops", fwd_flops, "backward_flops", bwd_flops,
                              "forward_gflops", fwd_g, "backward_gflops", bwd_g, "forward_ratio", fwd_g / peak,
                              "backward_ratio", bwd_g / peak, "gflops", all_g, "ratio", all_g / peak);
        cli_print_json(j);
    } else {
        printf("attention (%s%s%s) on %s: %d tokens, %d heads (%d kv) of %d\n", kind,
               device.fused_attention ? ", dQ from " : "", device.fused_attention ? dq : "", device_name, tokens, heads,
               kv_heads, head_dim);
        printf("  matmul peak   %10.1f GFLOP/s (%s, this run)\n", peak, peak_shape);
        printf("  forward  %8.4f s %10.1f GFLOP/s  %.3f of peak\n", fwd_s, fwd_g, fwd_g / peak);
        printf("  backward %8.4f s %10.1f GFLOP/s  %.3f of peak\n", bwd_s, bwd_g, bwd_g / peak);
        printf("  both     %8.4f s %10.1f GFLOP/s  %.3f of peak\n", fwd_s + bwd_s, all_g, all_g / peak);
    }
    bench_free(&b);
    return 0;
}
