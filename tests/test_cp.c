/* Context parallelism over real rank processes against the single-process model:
 * loss and every gradient for P in {1, 2, 4} at the same chunk length, zig-zag and
 * contiguous; byte counters against METHOD.md section 5; 20 Mode S steps leave every rank
 * with bitwise the same parameters; the layout's balance and round trip. */
#include "test_cpu.h"
#include "test_helpers.h"
#include "test_ranks.h"

#include "core/comm/comm.h"
#include "core/cp/cp_attention.h"
#include "core/cp/cp_layout.h"
#include "core/cp/cp_message.h"
#include "core/model/model.h"
#include "core/base/status.h"
#include "core/train/optimizer.h"
#include "core/util/rng.h"

#include <math.h>
#include <signal.h>

#define CHUNK 16
#define BATCH 2

static model_config config_for(int ranks)
{
    model_config c = model_config_default();
    c.n_layers = 2;
    c.dim = 32;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 48;
    c.vocab = 61;
    c.context = 2 * ranks * CHUNK;
    c.attn_block = 8;
    c.tied_head = 0;
    return c;
}

static void batch_tokens(uint16_t *in, uint16_t *tg, int n, int vocab)
{
    rng r;
    rng_seed(&r, 77);
    for (int i = 0; i < n; i++) {
        in[i] = (uint16_t)(rng_next(&r) % (uint64_t)vocab);
        tg[i] = (uint16_t)(rng_next(&r) % (uint64_t)vocab);
    }
}

typedef struct cp_case {
    int ranks;
    enum cp_layout_kind kind;
    bool regather; /* the backward gathers K/V again */
} cp_case;

/* One rank: CP loss and gradients (all-reduced), compared with the single-process model
 * computed in the same process; byte counters; then 20 Mode S steps and a parameter hash. */
static int rank_body(comm *c, const void *arg, char *err, size_t errlen)
{
    const cp_case *k = arg;
    const int P = k->ranks, rank = comm_rank(c), N = 2 * P * CHUNK;
    model_config cfg = config_for(P);
    uint16_t in[BATCH * 2 * 4 * CHUNK], tg[BATCH * 2 * 4 * CHUNK], lin[BATCH * 2 * CHUNK], ltg[BATCH * 2 * CHUNK];
    batch_tokens(in, tg, BATCH * N, cfg.vocab);

    model ref, m;
    int rc = model_init(&ref, &cfg, test_cpu(), BATCH, N, 5, err, errlen);
    if (rc == WANCP_OK)
        rc = model_init(&m, &cfg, test_cpu(), BATCH, 2 * CHUNK, 5, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    cp_layout layout = {.kind = k->kind, .ranks = P, .chunk = CHUNK};
    cp_attention cp;
    cp_options opt = {.regather = k->regather};
    rc = cp_attention_init(&cp, c, &layout, &opt, &m, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    m.loss_tokens = (long)BATCH * N;
    cp_select_tokens(&layout, rank, in, BATCH, lin);
    cp_select_tokens(&layout, rank, tg, BATCH, ltg);

    model_zero_grads(&ref);
    double want = model_step(&ref, in, tg, true);
    model_zero_grads(&m);
    float loss = (float)model_step(&m, lin, ltg, true);
    if (isnan(loss))
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", cp.error);
    rc = comm_allreduce_sum(c, COMM_CONTROL, &loss, 1, err, errlen);
    if (rc == WANCP_OK)
        rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, m.grads, m.table.total, err, errlen);
    if (rc != WANCP_OK)
        return rc;
    double loss_diff = fabs(loss - want) / fabs(want), worst = loss_diff;
    char worst_name[64] = "loss";
    for (int t = 0; t < m.table.count; t++) {
        const tensor_info *info = &m.table.tensors[t];
        double diff = 0, scale = 0;
        for (size_t i = 0; i < info->count; i++) {
            diff = fmax(diff, fabs(m.grads[info->offset + i] - ref.grads[info->offset + i]));
            scale = fmax(scale, fabs(ref.grads[info->offset + i]));
        }
        if (diff / scale > worst) {
            worst = diff / scale;
            snprintf(worst_name, sizeof worst_name, "%s", info->name);
        }
    }
    if (rank == 0)
        printf("  P=%d %s%s: loss %.6f vs %.6f; worst relative difference %.2e (%s)\n", P,
               k->kind == CP_ZIGZAG ? "zig-zag" : "contiguous", k->regather ? ", K/V gathered again" : "", (double)loss,
               want, worst, worst_name);
    if (worst >= 1e-5)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "rank %d: %s differs from one process by %.2e", rank,
                          worst_name, worst);

    /* Bytes: one forward and one backward, per layer and sequence (zig-zag formulas). */
    if (k->kind == CP_ZIGZAG) {
        const uint64_t mu0 = 2ull * CHUNK * (uint64_t)(cfg.n_kv_heads * model_head_dim(&cfg)) * 4;
        const uint64_t per = (uint64_t)cfg.n_layers * BATCH * mu0;
        if ((rc = test_kv_bytes(c, (uint64_t)(P - 1 + rank) * per, (uint64_t)(P - 1 + P - 1 - rank) * per,
                                k->regather ? 2 : 1, err, errlen)) != WANCP_OK)
            return rc;
    }

    /* 20 steps of Mode S: all-reduce the gradients, identical AdamW steps. */
    optim_config oc = optim_config_default();
    oc.lr = 1e-2f;
    oc.total_steps = 20;
    for (int s = 0; s < 20 && rc == WANCP_OK; s++) {
        model_zero_grads(&m);
        if (isnan(model_step(&m, lin, ltg, true)))
            return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s", cp.error);
        rc = comm_allreduce_sum(c, COMM_WEIGHT_SYNC, m.grads, m.table.total, err, errlen);
        if (rc == WANCP_OK)
            optim_step(&m, &oc, s);
    }
    uint64_t h = 1469598103934665603ull;
    const uint8_t *bytes = (const uint8_t *)m.params;
    for (size_t i = 0; i < m.table.total * sizeof(float); i++)
        h = (h ^ bytes[i]) * 1099511628211ull;
    if (rc == WANCP_OK)
        rc = test_same_on_every_rank(c, h, "parameters after 20 Mode S steps", err, errlen);
    cp_attention_free(&cp);
    model_free(&m);
    model_free(&ref);
    return rc;
}

static void run_case(const cp_case *k)
{
    int port = 10260 + (int)(getpid() % 500) * 40; /* below the ephemeral range */
    assert_int_equal(test_run_ranks(k->ranks, port, 9, rank_body, k), 0);
}

static void equivalence(void **state)
{
    (void)state;
    static const cp_case cases[] = {
        {1, CP_ZIGZAG, false},     {2, CP_ZIGZAG, false},     {4, CP_ZIGZAG, false},
        {2, CP_CONTIGUOUS, false}, {4, CP_CONTIGUOUS, false}, {4, CP_ZIGZAG, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* The one definition of a message's size, against METHOD.md section 5's numbers worked out
 * here by hand (independently of the code): a 128-token chunk, d_kv = 256. */
static void message_bytes(void **state)
{
    (void)state;
    cp_message_shape s = {.chunk = 128, .d_kv = 256, .rank_k = 6, .rank_v = 13, .psi_k = 1, .wire_bytes = 2};
    assert_int_equal(cp_kv_message_bytes(&s), 2 * 128 * 256 * 2); /* K and V in bf16: 131072 */
    s.wire_bytes = 4;
    assert_int_equal(cp_kv_message_bytes(&s), 262144);
    s.compressed = true;
    assert_int_equal(cp_kv_message_bytes(&s), 8 + 128 * 19 * 4); /* theta, tau; C and E in fp32 */
    s.wire_bytes = 2, s.psi_k = 3;
    assert_int_equal(cp_kv_message_bytes(&s), 24 + 4864);
}

static void layout(void **state)
{
    (void)state;
    for (int P = 1; P <= 8; P++) {
        cp_layout z = {.kind = CP_ZIGZAG, .ranks = P, .chunk = 5}, c = {.kind = CP_CONTIGUOUS, .ranks = P, .chunk = 5};
        const int N = 2 * P * 5;
        /* scatter then gather is the identity, and every chunk has exactly one owner */
        uint16_t full[80], local[10], back[80];
        for (int i = 0; i < N; i++)
            full[i] = (uint16_t)(i * 7 + 3);
        for (int r = 0; r < P; r++) {
            cp_select_tokens(&z, r, full, 1, local);
            int32_t pos[10];
            cp_positions(&z, r, pos);
            for (int i = 0; i < 10; i++)
                back[pos[i]] = local[i];
            int mine[CP_MAX_LOCAL];
            cp_chunks_of(&z, r, mine);
            assert_int_equal(cp_owner(&z, mine[0]), r);
            assert_int_equal(cp_owner(&z, mine[1]), r);
            assert_int_equal(cp_owner(&c, 2 * r + 1), r);
        }
        assert_memory_equal(back, full, (size_t)N * sizeof *full);
        /* zig-zag balances causal work exactly; contiguous does not */
        for (int r = 1; r < P; r++) {
            assert_int_equal(cp_causal_pairs(&z, r), cp_causal_pairs(&z, 0));
            assert_true(cp_causal_pairs(&c, r) > cp_causal_pairs(&c, r - 1));
        }
        /* messages: rank p sends (P-1)+p chunk copies and receives (P-1)+(P-1-p) */
        for (int p = 0; p < P; p++) {
            int out = 0, in = 0, mine[CP_MAX_LOCAL];
            cp_chunks_of(&z, p, mine);
            for (int r = 0; r < P; r++)
                for (int k = 0; k < 2 && r != p; k++)
                    out += cp_rank_needs(&z, r, mine[k]);
            for (int j = 0; j < 2 * P; j++)
                in += cp_owner(&z, j) != p && cp_rank_needs(&z, p, j);
            assert_int_equal(out, P - 1 + p);
            assert_int_equal(in, P - 1 + P - 1 - p);
        }
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {cmocka_unit_test(layout), cmocka_unit_test(message_bytes),
                                       cmocka_unit_test(equivalence)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
