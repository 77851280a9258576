/* The whole decoder on one rank: gradients of every tensor against finite differences, an
 * overfit of one batch, bitwise determinism, and checkpoints that resume bitwise and refuse
 * corrupt, truncated or mismatched files by naming the field. */
#include "test_cpu.h"
#include "test_helpers.h"
#include "test_fd.h"

#include "core/model/model.h"
#include "core/util/thread_pool.h"
#include "core/base/status.h"
#include "core/train/checkpoint.h"
#include "core/train/optimizer.h"
#include "core/util/buf.h"
#include "core/util/rng.h"

#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

static model_config tiny_config(int tied)
{
    model_config c = model_config_default();
    c.n_layers = 2;
    c.dim = 16;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 24;
    c.vocab = 29;
    c.context = 16;
    c.attn_block = 4;
    c.tied_head = tied;
    return c;
}

/* Every tensor: 16 sampled elements (all of small ones) against Richardson-extrapolated
 * central differences of the mean loss, judged as in test_ops: relative error below 2e-2 on
 * significant elements, absolute error below 2e-3 of the largest sampled gradient. */
static void check_model_gradients(int tied)
{
    model_config cfg = tiny_config(tied);
    model m;
    char err[WANCP_ERRLEN];
    const int batch = 2, seq = 11; /* 11: not a multiple of the attention block */
    assert_int_equal(model_init(&m, &cfg, test_cpu(), batch, seq, 7, err, sizeof err), WANCP_OK);
    /* Larger weights than the 0.02 init so every path carries signal. */
    rng r;
    rng_seed(&r, 99);
    for (size_t i = 0; i < m.table.total; i++)
        if (m.params[i] != 1.0f)
            m.params[i] = 0.3f * rng_normal(&r);
    uint16_t inputs[22], targets[22];
    random_tokens(inputs, 22, cfg.vocab, 1);
    random_tokens(targets, 22, cfg.vocab, 2);
    model_zero_grads(&m);
    model_step(&m, inputs, targets, true);
    printf("  %s head:\n", tied ? "tied" : "untied");
    for (int t = 0; t < m.table.count; t++) {
        const tensor_info *info = &m.table.tensors[t];
        fd_result f = fd_check_tensor(&m, t, inputs, targets, &r, 16);
        printf("    %-20s worst relative error %.2e, absolute %.2e of max (max |g| %.2e)\n", info->name, f.worst,
               f.worst_abs, f.amax);
        if (f.worst > 2e-2 || f.worst_abs > 2e-3 || f.amax == 0.0)
            fail_msg("%s: model gradient differs from finite differences", info->name);
    }
    model_free(&m);
}

static void gradients_untied(void **state)
{
    (void)state;
    check_model_gradients(0);
}

static void gradients_tied(void **state)
{
    (void)state;
    check_model_gradients(1);
}

static double train_steps(model *m, const optim_config *oc, const uint16_t *in, const uint16_t *tg, int first,
                          int count, double *losses)
{
    double loss = 0.0;
    for (int s = first; s < first + count; s++) {
        model_zero_grads(m);
        loss = model_step(m, in, tg, true);
        optim_step(m, oc, s);
        if (losses != NULL)
            losses[s] = loss;
    }
    return loss;
}

/* A tiny model memorises one fixed batch: the loss goes below 0.1. */
static void overfit_one_batch(void **state)
{
    (void)state;
    model_config cfg = model_config_default();
    cfg.n_layers = 2;
    cfg.dim = 64;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.ffn_dim = 128;
    cfg.vocab = 256;
    cfg.context = 64;
    cfg.attn_block = 16;
    model m;
    char err[WANCP_ERRLEN];
    assert_int_equal(model_init(&m, &cfg, test_cpu(), 2, 64, 3, err, sizeof err), WANCP_OK);
    uint16_t in[128], tg[128];
    random_tokens(in, 128, 256, 5);
    random_tokens(tg, 128, 256, 6);
    optim_config oc = optim_config_default();
    oc.lr = 1e-2f;
    oc.warmup_steps = 10;
    oc.total_steps = 300;
    oc.weight_decay = 0.0f;
    double first = model_step(&m, in, tg, false);
    double loss = train_steps(&m, &oc, in, tg, 0, 300, NULL);
    loss = model_step(&m, in, tg, false);
    printf("  overfit: loss %.4f -> %.4f after 300 steps\n", first, loss);
    assert_true(first > 5.0);
    assert_true(loss < 0.1);
    model_free(&m);
}

/* Same seed, same data: bitwise the same losses and parameters; another seed differs. */
static void deterministic(void **state)
{
    (void)state;
    model_config cfg = tiny_config(0);
    optim_config oc = optim_config_default();
    oc.lr = 1e-3f;
    oc.total_steps = 5;
    uint16_t in[32], tg[32];
    random_tokens(in, 32, cfg.vocab, 11);
    random_tokens(tg, 32, cfg.vocab, 12);
    double losses[3][5];
    model ms[3];
    char err[WANCP_ERRLEN];
    for (int k = 0; k < 3; k++) {
        assert_int_equal(model_init(&ms[k], &cfg, test_cpu(), 2, 16, k == 2 ? 43 : 42, err, sizeof err), WANCP_OK);
        train_steps(&ms[k], &oc, in, tg, 0, 5, losses[k]);
    }
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
    assert_memory_equal(ms[0].params, ms[1].params, ms[0].table.total * sizeof(float));
    assert_memory_not_equal(losses[0], losses[2], sizeof losses[0]);
    for (int k = 0; k < 3; k++)
        model_free(&ms[k]);
}

/* The CPU backend's own threads (attention heads, softmax rows, optimizer pieces) change
 * nothing: 1 and 3 threads give bitwise the same losses and parameters. Tensors are large
 * enough that the optimizer splits them. */
static void threads_do_not_change_results(void **state)
{
    (void)state;
    model_config cfg = tiny_config(1);
    cfg.dim = 256;
    cfg.vocab = 300;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    optim_config oc = optim_config_default();
    oc.lr = 1e-3f;
    oc.total_steps = 3;
    uint16_t in[32], tg[32];
    random_tokens(in, 32, cfg.vocab, 31);
    random_tokens(tg, 32, cfg.vocab, 32);
    double losses[2][3];
    model ms[2];
    char err[WANCP_ERRLEN];
    for (int k = 0; k < 2; k++) {
        pool_set_threads(k == 0 ? 1 : 3);
        assert_int_equal(model_init(&ms[k], &cfg, test_cpu(), 2, 16, 8, err, sizeof err), WANCP_OK);
        train_steps(&ms[k], &oc, in, tg, 0, 3, losses[k]);
    }
    pool_set_threads(1);
    assert_int_equal(pool_threads(), 1);
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
    assert_memory_equal(ms[0].params, ms[1].params, ms[0].table.total * sizeof(float));
    assert_memory_equal(ms[0].adam_v, ms[1].adam_v, ms[0].table.total * sizeof(float));
    for (int k = 0; k < 2; k++)
        model_free(&ms[k]);
}

static void square_into(void *ctx, int i) { ((int *)ctx)[i] = i * i; }

/* A process forked while the pool has workers has none of them (fork copies one thread): its
 * jobs must still run, on itself, instead of waiting forever for workers that are not there. */
static void pool_survives_fork(void **state)
{
    (void)state;
    pool_set_threads(3);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(10); /* a hang is a failure, not a stuck test */
        int out[64] = {0};
        pool_run(64, square_into, out);
        int wrong = pool_threads() != 1;
        for (int i = 0; i < 64; i++)
            wrong |= out[i] != i * i;
        pool_set_threads(2); /* and its own workers start and work */
        int again[64] = {0};
        pool_run(64, square_into, again);
        for (int i = 0; i < 64; i++)
            wrong |= again[i] != i * i;
        _exit(wrong);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int out[64] = {0};
    pool_run(64, square_into, out); /* the parent's workers are still there */
    assert_int_equal(out[63], 63 * 63);
    pool_set_threads(1);
}

static void checkpoint_resume_bitwise(void **state)
{
    (void)state;
    model_config cfg = tiny_config(0);
    optim_config oc = optim_config_default();
    oc.lr = 1e-3f;
    oc.warmup_steps = 2;
    oc.total_steps = 8;
    uint16_t in[32], tg[32];
    random_tokens(in, 32, cfg.vocab, 21);
    random_tokens(tg, 32, cfg.vocab, 22);
    char err[WANCP_ERRLEN], path[512];
    test_path(path, sizeof path, "resume.ckpt");

    model straight, first, second;
    double want[8], got[8];
    assert_int_equal(model_init(&straight, &cfg, test_cpu(), 2, 16, 5, err, sizeof err), WANCP_OK);
    train_steps(&straight, &oc, in, tg, 0, 8, want);

    assert_int_equal(model_init(&first, &cfg, test_cpu(), 2, 16, 5, err, sizeof err), WANCP_OK);
    train_steps(&first, &oc, in, tg, 0, 4, got);
    train_state ts = {.step = 4, .data_pos = 1234};
    rng_seed(&ts.rng, 77);
    assert_int_equal(checkpoint_save(path, &first, &ts, err, sizeof err), WANCP_OK);
    model_free(&first);

    /* A different seed: everything must come from the checkpoint. */
    assert_int_equal(model_init(&second, &cfg, test_cpu(), 2, 16, 999, err, sizeof err), WANCP_OK);
    train_state back;
    assert_int_equal(checkpoint_load(path, &second, &back, err, sizeof err), WANCP_OK);
    assert_int_equal(back.step, 4);
    assert_int_equal(back.data_pos, 1234);
    assert_memory_equal(&back.rng, &ts.rng, sizeof back.rng);
    train_steps(&second, &oc, in, tg, 4, 4, got);
    assert_memory_equal(want, got, sizeof want);
    assert_memory_equal(straight.params, second.params, straight.table.total * sizeof(float));
    model_free(&second);
    model_free(&straight);
}

static void expect_load_error(const char *path, const model_config *cfg, const char *needle)
{
    model m;
    char err[WANCP_ERRLEN] = "";
    assert_int_equal(model_init(&m, cfg, test_cpu(), 1, 8, 1, err, sizeof err), WANCP_OK);
    float first = m.params[0];
    train_state ts;
    assert_int_equal(checkpoint_load(path, &m, &ts, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, path);
    assert_err_mentions(err, needle);
    assert_null(strchr(err, '\n'));
    assert_true(m.params[0] == first); /* untouched */
    model_free(&m);
}

static void checkpoint_refuses_bad_files(void **state)
{
    (void)state;
    model_config cfg = tiny_config(1);
    model m;
    char err[WANCP_ERRLEN], path[512], bad[512];
    assert_int_equal(model_init(&m, &cfg, test_cpu(), 1, 8, 1, err, sizeof err), WANCP_OK);
    train_state ts = {.step = 3};
    test_path(path, sizeof path, "good.ckpt");
    assert_int_equal(checkpoint_save(path, &m, &ts, err, sizeof err), WANCP_OK);
    model_free(&m);
    bytebuf image = {0};
    assert_int_equal(file_read_all(path, &image, err, sizeof err), WANCP_OK);

    test_path(bad, sizeof bad, "flipped.ckpt");
    image.data[image.len / 2] ^= 0x40;
    test_write_file(bad, image.data, image.len);
    expect_load_error(bad, &cfg, "field checksum");
    image.data[image.len / 2] ^= 0x40;

    test_path(bad, sizeof bad, "truncated.ckpt");
    test_write_file(bad, image.data, image.len - 100);
    expect_load_error(bad, &cfg, "truncated");

    test_path(bad, sizeof bad, "magic.ckpt");
    image.data[0] = 'X';
    test_write_file(bad, image.data, image.len);
    expect_load_error(bad, &cfg, "field magic");
    image.data[0] = 'W';

    /* A header byte flipped is corruption (the hash is judged first), not a field that
     * disagrees; a field that disagrees under a correct hash is named. */
    test_path(bad, sizeof bad, "header.ckpt");
    const uint8_t version = image.data[8];
    image.data[8] = 9;
    test_write_file(bad, image.data, image.len);
    expect_load_error(bad, &cfg, "field checksum does not match the contents (corrupt)");
    test_path(bad, sizeof bad, "version.ckpt");
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 of every byte before the trailer */
    for (size_t i = 0; i + 8 < image.len; i++)
        h = (h ^ image.data[i]) * 1099511628211ull;
    for (int i = 0; i < 8; i++)
        image.data[image.len - 8 + i] = (uint8_t)(h >> (8 * i));
    test_write_file(bad, image.data, image.len);
    expect_load_error(bad, &cfg, "field version is 9");
    image.data[8] = version;

    model_config other = cfg;
    other.dim = 32;
    expect_load_error(path, &other, "field dim is 16 but this run has 32");
    other = cfg;
    other.tied_head = 0;
    expect_load_error(path, &other, "field tied_head is 1 but this run has 0");
    expect_load_error("/nonexistent/x.ckpt", &cfg, "cannot open");
    bytebuf_free(&image);
}

static void config_errors(void **state)
{
    (void)state;
    model_config c = model_config_default();
    c.dim = 250;
    c.n_heads = 4;
    c.n_kv_heads = 3;
    c.context = 1000;
    c.attn_block = 64;
    char err[WANCP_ERRLEN];
    assert_int_equal(model_config_validate(&c, "run.ini", err, sizeof err), WANCP_ERR_INPUT);
    /* every problem at once */
    assert_err_mentions(err, "run.ini: ");
    assert_err_mentions(err, "dim = 250 is not divisible by heads = 4");
    assert_err_mentions(err, "heads = 4 is not divisible by kv_heads = 3");
    assert_err_mentions(err, "context = 1000 is not divisible by attn_block = 64");
    c = model_config_default();
    c.n_layers = 0;
    assert_int_equal(model_config_validate(&c, "cli", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "layers = 0 must be 1..");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradients_untied),
        cmocka_unit_test(gradients_tied),
        cmocka_unit_test(overfit_one_batch),
        cmocka_unit_test(deterministic),
        cmocka_unit_test(threads_do_not_change_results),
        cmocka_unit_test(pool_survives_fork),
        cmocka_unit_test(checkpoint_resume_bitwise),
        cmocka_unit_test(checkpoint_refuses_bad_files),
        cmocka_unit_test(config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
