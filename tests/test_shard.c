/* Token shards: llm.c's format written and read back, and every kind of bad shard refused. */
#include "test_helpers.h"

#include "core/data/loader.h"
#include "core/data/shard.h"
#include "core/base/status.h"
#include "core/util/buf.h"

#include <dirent.h>

/* A shard image built the way llm.c's Python writer does: int32 header, uint16 body. */
static size_t make_image(uint8_t *image, int32_t magic, int32_t version, int32_t count, const uint16_t *tokens,
                         size_t ntokens)
{
    int32_t header[256] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = count;
    memcpy(image, header, sizeof header);
    memcpy(image + sizeof header, tokens, ntokens * 2);
    return sizeof header + ntokens * 2;
}

static void roundtrip(void **state)
{
    (void)state;
    char path[512], err[WANCP_ERRLEN];
    test_path(path, sizeof path, "roundtrip.bin");
    uint16_t tokens[1000];
    for (int i = 0; i < 1000; i++)
        tokens[i] = (uint16_t)(i * 50 % 50257);
    assert_int_equal(shard_write(path, tokens, 1000, err, sizeof err), WANCP_OK);

    bytebuf raw = {0};
    assert_int_equal(file_read_all(path, &raw, err, sizeof err), WANCP_OK);
    assert_int_equal(raw.len, 1024 + 2000);
    int32_t header[3];
    memcpy(header, raw.data, sizeof header);
    assert_int_equal(header[0], 20240520);
    assert_int_equal(header[1], 1);
    assert_int_equal(header[2], 1000);
    for (int i = 3; i < 256; i++)
        assert_int_equal(raw.data[4 * i], 0);
    bytebuf_free(&raw);

    shard s;
    assert_int_equal(shard_read(path, 50257, &s, err, sizeof err), WANCP_OK);
    assert_int_equal(s.count, 1000);
    assert_memory_equal(s.tokens, tokens, sizeof tokens);
    shard_free(&s);

    /* No temporary file is left beside it. */
    DIR *d = opendir(test_tmpdir());
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".tmp.") != NULL)
            fail_msg("leftover %s", e->d_name);
    closedir(d);
}

static void llmc_image_parses(void **state)
{
    (void)state;
    uint8_t image[1024 + 6];
    uint16_t tokens[3] = {50256, 464, 50255};
    size_t len = make_image(image, 20240520, 1, 3, tokens, 3);
    shard s;
    char err[WANCP_ERRLEN];
    assert_int_equal(shard_parse(image, len, "x.bin", 50257, &s, err, sizeof err), WANCP_OK);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.tokens[0], 50256);
    assert_int_equal(s.tokens[2], 50255);
    shard_free(&s);
}

static void expect_refused(const uint8_t *image, size_t len, int vocab, const char *needle)
{
    shard s;
    char err[WANCP_ERRLEN] = "";
    assert_int_equal(shard_parse(image, len, "bad.bin", vocab, &s, err, sizeof err), WANCP_ERR_INPUT);
    assert_null(s.tokens);
    assert_err_mentions(err, "bad.bin");
    assert_err_mentions(err, needle);
    assert_null(strchr(err, '\n'));
}

static void bad_shards(void **state)
{
    (void)state;
    uint8_t image[1024 + 8];
    uint16_t tokens[4] = {1, 2, 3, 4};
    size_t len = make_image(image, 20240520, 1, 4, tokens, 4);

    expect_refused(image, 100, 50257, "shorter than the 1024-byte header");
    expect_refused(image, 0, 50257, "truncated");
    make_image(image, 20240521, 1, 4, tokens, 4);
    expect_refused(image, len, 50257, "bad magic 20240521");
    make_image(image, 20240520, 2, 4, tokens, 4);
    expect_refused(image, len, 50257, "unsupported version 2");
    make_image(image, 20240520, 1, 0, tokens, 4);
    expect_refused(image, 1024, 50257, "token count 0");
    make_image(image, 20240520, 1, -5, tokens, 4);
    expect_refused(image, len, 50257, "token count -5");
    make_image(image, 20240520, 1, 4, tokens, 4);
    expect_refused(image, len - 1, 50257, "truncated");
    make_image(image, 20240520, 1, 3, tokens, 4);
    expect_refused(image, len, 50257, "trailing bytes");
    make_image(image, 20240520, 1, 4, tokens, 4);
    expect_refused(image, len, 4, "token 3 is 4, outside the vocabulary of 4");
    /* Tokens equal to vocab - 1 are fine. */
    shard s;
    char err[WANCP_ERRLEN];
    assert_int_equal(shard_parse(image, len, "ok.bin", 5, &s, err, sizeof err), WANCP_OK);
    shard_free(&s);
}

static void missing_and_empty(void **state)
{
    (void)state;
    char path[512], err[WANCP_ERRLEN];
    shard s;
    test_path(path, sizeof path, "does-not-exist.bin");
    assert_int_equal(shard_read(path, 256, &s, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "does-not-exist.bin");
    assert_err_mentions(err, "No such file");

    test_path(path, sizeof path, "empty.bin");
    assert_int_equal(shard_write(path, NULL, 0, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "empty shard");
    assert_int_equal(access(path, F_OK), -1);

    test_write_file(path, "", 0);
    assert_int_equal(shard_read(path, 256, &s, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "truncated");
}

/* Seeds start the training data at different places, seed 1 at the first token; every start
 * leaves a whole batch and its last target inside the shard. */
static void seeded_starts(void **state)
{
    (void)state;
    uint16_t tokens[1000];
    for (int i = 0; i < 1000; i++)
        tokens[i] = (uint16_t)(i % 256);
    char path[512], err[WANCP_ERRLEN];
    snprintf(path, sizeof path, "%s/seeded.bin", test_tmpdir());
    assert_int_equal(shard_write(path, tokens, 1000, err, sizeof err), WANCP_OK);
    loader l;
    assert_int_equal(loader_open(&l, path, 256, 2, 100, err, sizeof err), WANCP_OK);
    size_t starts[8];
    for (uint64_t seed = 0; seed < 8; seed++) {
        loader_start_at_seed(&l, seed);
        starts[seed] = l.pos;
        assert_true(l.pos + 200 + 1 <= 1000);
        loader_next(&l);
        assert_int_equal(l.inputs[0], tokens[starts[seed]]);
        assert_int_equal(l.targets[199], tokens[starts[seed] + 200]);
    }
    assert_int_equal(starts[1], 0);
    /* 800 possible starts; frac((s - 1) / phi): seed 2 at 0.618, seed 3 at 0.236 of them */
    assert_int_equal(starts[2], (size_t)(0.6180339887498949 * 800));
    assert_int_equal(starts[3], (size_t)(0.2360679774997897 * 800));
    for (int a = 1; a < 8; a++)
        for (int b = 1; b < a; b++)
            assert_true(starts[a] > starts[b] ? starts[a] - starts[b] >= 50 : starts[b] - starts[a] >= 50);
    loader_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),         cmocka_unit_test(llmc_image_parses), cmocka_unit_test(bad_shards),
        cmocka_unit_test(missing_and_empty), cmocka_unit_test(seeded_starts),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
