/* GPT-2 and bytes tokenizers: known ids, round trips of arbitrary bytes, the merge loop
 * against GPT-2's reference loop, and bad vocabulary files refused with file and line. */
#include "test_helpers.h"

#include <sys/stat.h>

#include "core/data/bpe.h"
#include "core/data/tokenizer.h"
#include "core/base/status.h"

static tokenizer *gpt2;

static int setup(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    if (tokenizer_open_gpt2(&gpt2, GPT2_DIR, err, sizeof err) != WANCP_OK) {
        fprintf(stderr, "cannot load GPT-2 files (run harness/setup): %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tokenizer_free(gpt2);
    test_remove_tmpdir();
    return 0;
}

static size_t encode(tokenizer *t, const char *text, size_t len, uint16_t *ids, size_t max)
{
    tokbuf out = {0};
    char err[WANCP_ERRLEN];
    assert_int_equal(tokenizer_encode(t, (const uint8_t *)text, len, &out, err, sizeof err), WANCP_OK);
    assert_true(out.len <= max);
    if (out.len > 0)
        memcpy(ids, out.data, out.len * sizeof *ids);
    size_t n = out.len;
    tokbuf_free(&out);
    return n;
}

/* Ids printed by the npm gpt-3-encoder for the same strings. */
static void known_ids(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint16_t ids[12];
        size_t n;
    } cases[] = {
        {"Hello world", {15496, 995}, 2},
        {" I'm fine, don't you think?", {314, 1101, 3734, 11, 836, 470, 345, 892, 30}, 9},
        {"   leading", {220, 220, 3756}, 3},
        {"a\n\nb", {64, 198, 198, 65}, 4},
        {"2024 numbers 1234567", {1238, 1731, 3146, 17031, 2231, 3134}, 6},
        {"na\xc3\xafve caf\xc3\xa9", {2616, 38776, 40304}, 3},
        {"\xf0\x9f\x91\x8d", {41840, 235}, 2},
    };
    assert_int_equal(tokenizer_vocab_size(gpt2), 50257);
    assert_int_equal(tokenizer_eot(gpt2), 50256);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint16_t ids[64];
        size_t n = encode(gpt2, cases[c].text, strlen(cases[c].text), ids, 64);
        if (n != cases[c].n || memcmp(ids, cases[c].ids, n * sizeof *ids) != 0) {
            fprintf(stderr, "\"%s\": got", cases[c].text);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %u", ids[i]);
            fail_msg("ids differ from gpt-3-encoder's for case %zu", c);
        }
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* decode(encode(x)) == x for arbitrary bytes: invalid UTF-8, NULs, long runs. */
static void roundtrip_arbitrary_bytes(void **state)
{
    (void)state;
    static const char *const pieces[] = {" ",
                                         "  ",
                                         "\n",
                                         "\t",
                                         "'s",
                                         "'ll",
                                         "a",
                                         "The",
                                         "42",
                                         "\xc3\xa9",
                                         "\xf0\x9f\x98\x80",
                                         "\xe4\xb8\xad",
                                         "\xc2\xa0",
                                         "\xef\xbb\xbf"};
    uint8_t text[600];
    char err[WANCP_ERRLEN];
    tokenizer *bytes = NULL;
    assert_int_equal(tokenizer_open_bytes(&bytes, err, sizeof err), WANCP_OK);
    for (int round = 0; round < 3000; round++) {
        size_t len = 0, want = rng() % 512;
        while (len < want) {
            if (rng() % 3 == 0) {
                text[len++] = (uint8_t)rng(); /* any byte, often invalid UTF-8 */
            } else {
                const char *p = pieces[rng() % (sizeof pieces / sizeof pieces[0])];
                size_t n = strlen(p);
                memcpy(text + len, p, n);
                len += n;
            }
        }
        tokenizer *ts[2] = {gpt2, bytes};
        for (int k = 0; k < 2; k++) {
            tokbuf ids = {0};
            bytebuf back = {0};
            assert_int_equal(tokenizer_encode(ts[k], text, len, &ids, err, sizeof err), WANCP_OK);
            for (size_t i = 0; i < ids.len; i++)
                assert_true(ids.data[i] < tokenizer_vocab_size(ts[k]) && ids.data[i] != 50256);
            assert_int_equal(tokenizer_decode(ts[k], ids.data, ids.len, &back, err, sizeof err), WANCP_OK);
            assert_int_equal(back.len, len);
            if (len > 0)
                assert_memory_equal(back.data, text, len);
            if (k == 1)
                assert_int_equal(ids.len, len);
            tokbuf_free(&ids);
            bytebuf_free(&back);
        }
    }
    tokenizer_free(bytes);
}

/* GPT-2's own loop (encoder.py's bpe): merge every occurrence of the best pair, repeat. */
static size_t reference_merge(const bpe_merges *m, uint16_t *ids, size_t n)
{
    for (;;) {
        uint32_t best = UINT32_MAX, rank;
        uint16_t a = 0, b = 0, merged = 0, mm;
        for (size_t i = 0; i + 1 < n; i++)
            if (bpe_merges_find(m, ids[i], ids[i + 1], &rank, &mm) && rank < best) {
                best = rank;
                a = ids[i];
                b = ids[i + 1];
                merged = mm;
            }
        if (best == UINT32_MAX)
            return n;
        size_t out = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && ids[i] == a && ids[i + 1] == b) {
                ids[out++] = merged;
                i += 2;
            } else {
                ids[out++] = ids[i++];
            }
        }
        n = out;
    }
}

/* A small merge table where order and overlap matter, checked against the reference loop
 * on every string over a 3-letter alphabet up to length 9, and on random long strings. */
static void merge_loop_matches_reference(void **state)
{
    (void)state;
    bpe_merges m;
    assert_int_equal(bpe_merges_init(&m, 16), WANCP_OK);
    /* ids 0,1,2 = a,b,c; 3=aa 4=ab 5=aab 6=ba 7=bc 8=aaa 9=cab 10=abab */
    assert_int_equal(bpe_merges_add(&m, 0, 0, 0, 3), 0);
    assert_int_equal(bpe_merges_add(&m, 0, 1, 1, 4), 0);
    assert_int_equal(bpe_merges_add(&m, 3, 1, 2, 5), 0);
    assert_int_equal(bpe_merges_add(&m, 1, 0, 3, 6), 0);
    assert_int_equal(bpe_merges_add(&m, 1, 2, 4, 7), 0);
    assert_int_equal(bpe_merges_add(&m, 3, 0, 5, 8), 0);
    assert_int_equal(bpe_merges_add(&m, 2, 4, 6, 9), 0);
    assert_int_equal(bpe_merges_add(&m, 4, 4, 7, 10), 0);
    assert_int_equal(bpe_merges_add(&m, 4, 4, 8, 11), 1); /* a pair listed twice is reported */
    bpe_scratch scratch = {0};
    uint16_t x[400], y[400];
    for (size_t len = 0; len <= 9; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= 3;
        for (size_t code = 0; code < total; code++) {
            size_t c = code;
            for (size_t i = 0; i < len; i++, c /= 3)
                x[i] = y[i] = (uint16_t)(c % 3);
            size_t n = len;
            assert_int_equal(bpe_apply(&m, &scratch, x, &n), WANCP_OK);
            size_t want = reference_merge(&m, y, len);
            assert_int_equal(n, want);
            assert_memory_equal(x, y, n * sizeof *x);
        }
    }
    for (int round = 0; round < 200; round++) {
        size_t len = 1 + rng() % 400;
        for (size_t i = 0; i < len; i++)
            x[i] = y[i] = (uint16_t)(rng() % 3);
        size_t n = len;
        assert_int_equal(bpe_apply(&m, &scratch, x, &n), WANCP_OK);
        assert_int_equal(n, reference_merge(&m, y, len));
        assert_memory_equal(x, y, n * sizeof *x);
    }
    bpe_scratch_free(&scratch);
    bpe_merges_free(&m);
}

/* The heap loop against GPT-2's own loop on GPT-2's real merge table, over random
 * pre-tokens; and the cache gives the same ids as a cold merge. */
static void gpt2_merges_match_reference(void **state)
{
    (void)state;
    const bpe_merges *m = tokenizer_merges(gpt2);
    bpe_scratch scratch = {0};
    static const char alphabet[] = "etaoinshrdlucmfwypvbgkjqxz ETAOINSHR'-,.0123456789\xc3\xa9";
    uint8_t text[64];
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + rng() % 40;
        uint16_t x[64], y[64], cold[64], warm[64];
        for (size_t i = 0; i < len; i++) {
            text[i] = (uint8_t)alphabet[rng() % (sizeof alphabet - 1)];
            x[i] = y[i] = tokenizer_byte_id(gpt2, text[i]);
        }
        size_t n = len;
        assert_int_equal(bpe_apply(m, &scratch, x, &n), WANCP_OK);
        size_t want = reference_merge(m, y, len);
        if (n != want || memcmp(x, y, n * sizeof *x) != 0)
            fail_msg("merge loops disagree on \"%.*s\"", (int)len, (const char *)text);
        size_t n1 = encode(gpt2, (const char *)text, len, cold, 64);
        size_t n2 = encode(gpt2, (const char *)text, len, warm, 64);
        assert_int_equal(n1, n2);
        assert_memory_equal(cold, warm, n1 * sizeof *cold);
    }
    bpe_scratch_free(&scratch);
}

static void long_runs(void **state)
{
    (void)state;
    size_t len = 200000;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, ' ', len);
    text[len - 1] = 'x';
    tokbuf ids = {0};
    bytebuf back = {0};
    char err[WANCP_ERRLEN];
    assert_int_equal(tokenizer_encode(gpt2, (uint8_t *)text, len, &ids, err, sizeof err), WANCP_OK);
    assert_int_equal(tokenizer_decode(gpt2, ids.data, ids.len, &back, err, sizeof err), WANCP_OK);
    assert_int_equal(back.len, len);
    assert_memory_equal(back.data, text, len);
    tokbuf_free(&ids);
    bytebuf_free(&back);
    free(text);
}

static void decode_refuses_bad_ids(void **state)
{
    (void)state;
    uint16_t ids[2] = {100, 50257};
    bytebuf out = {0};
    char err[WANCP_ERRLEN];
    assert_int_equal(tokenizer_decode(gpt2, ids, 2, &out, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "token 1 is 50257");
    bytebuf_free(&out);
}

/* Writes dir/encoder.json and dir/vocab.bpe and expects opening to fail mentioning needle. */
static void expect_bad_vocab(const char *name, const char *encoder_json, const char *vocab_bpe, const char *needle)
{
    char dir[512], path[600], err[WANCP_ERRLEN] = "";
    test_path(dir, sizeof dir, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    if (encoder_json != NULL) {
        snprintf(path, sizeof path, "%s/encoder.json", dir);
        test_write_file(path, encoder_json, strlen(encoder_json));
    }
    if (vocab_bpe != NULL) {
        snprintf(path, sizeof path, "%s/vocab.bpe", dir);
        test_write_file(path, vocab_bpe, strlen(vocab_bpe));
    }
    tokenizer *t = NULL;
    assert_int_equal(tokenizer_open_gpt2(&t, dir, err, sizeof err), WANCP_ERR_INPUT);
    assert_null(t);
    assert_err_mentions(err, needle);
    assert_null(strchr(err, '\n'));
}

/* A valid 257-token encoder.json (256 bytes + <|endoftext|>) and merges using it. */
static char *small_encoder(const char *extra)
{
    static char buf[16384];
    size_t used = (size_t)snprintf(buf, sizeof buf, "{");
    for (int b = 0; b < 256; b++) {
        /* GPT-2's byte alphabet: printable bytes as themselves, the rest from U+0100. */
        unsigned cp = b;
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)))
            cp = b <= 0x20 ? 256u + b : b <= 0xA0 ? 256u + 33 + (b - 0x7Fu) : 256u + 67;
        char key[8];
        if (cp == '"' || cp == '\\')
            snprintf(key, sizeof key, "\\%c", cp);
        else if (cp < 0x80)
            snprintf(key, sizeof key, "%c", cp);
        else
            snprintf(key, sizeof key, "%c%c", 0xC0 | cp >> 6, 0x80 | (cp & 0x3F));
        used += (size_t)snprintf(buf + used, sizeof buf - used, "\"%s\": %d, ", key, b);
    }
    snprintf(buf + used, sizeof buf - used, "\"<|endoftext|>\": 256%s}", extra);
    return buf;
}

static void bad_vocab_files(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    tokenizer *t = NULL;
    assert_int_equal(tokenizer_open_gpt2(&t, "/nonexistent-wancp", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "/nonexistent-wancp/encoder.json");

    expect_bad_vocab("syntax", "{\"a\": 1,\n \"b\" 2}", "#version: 0.2\n", "encoder.json:2:");
    expect_bad_vocab("small", "{\"a\": 0}", "#version: 0.2\n", "expected an object of 256..65536 tokens");
    expect_bad_vocab("no-merges-file", small_encoder(""), NULL, "vocab.bpe: cannot open");
    expect_bad_vocab("version", small_encoder(", \"ab\": 257"), "a b\n", "vocab.bpe:1: expected a '#version' line");
    expect_bad_vocab("bad-line", small_encoder(", \"ab\": 257"), "#version: 0.2\na b\nab\n", "vocab.bpe:3:");
    expect_bad_vocab("missing-token", small_encoder(", \"ab\": 257"), "#version: 0.2\na c\n",
                     "vocab.bpe:2: merge 'a c'");
    expect_bad_vocab("twice", small_encoder(", \"ab\": 257"), "#version: 0.2\na b\na b\n",
                     "vocab.bpe:3: merge listed twice");
    expect_bad_vocab("id-range", small_encoder(", \"ab\": 900"), "#version: 0.2\na b\n", "has id 900");
    expect_bad_vocab("id-twice", small_encoder(", \"ab\": 5"), "#version: 0.2\na b\n", "id 5 is given to two");

    /* And the small valid one loads and merges. */
    char dir[512], path[600];
    test_path(dir, sizeof dir, "valid");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    const char *enc = small_encoder(", \"ab\": 257");
    test_write_file(path, enc, strlen(enc));
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    test_write_file(path, "#version: 0.2\na b\n", 18);
    assert_int_equal(tokenizer_open_gpt2(&t, dir, err, sizeof err), WANCP_OK);
    uint16_t ids[8];
    assert_int_equal(encode(t, "abab", 4, ids, 8), 2);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], 257);
    tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_ids),
        cmocka_unit_test(roundtrip_arbitrary_bytes),
        cmocka_unit_test(merge_loop_matches_reference),
        cmocka_unit_test(gpt2_merges_match_reference),
        cmocka_unit_test(long_runs),
        cmocka_unit_test(decode_refuses_bad_ids),
        cmocka_unit_test(bad_vocab_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
