/* The Brown corpus to plain text: the documented rules on a hand-made sample, errors with
 * file and line, the real corpus's shape, and the 90/10 document split. */
#include "test_helpers.h"

#include "core/data/brown.h"
#include "core/data/corpus.h"
#include "core/base/status.h"

static void detag(const char *tagged, const char *want)
{
    bytebuf out = {0};
    char err[WANCP_ERRLEN];
    assert_int_equal(brown_detag("sample", tagged, strlen(tagged), &out, err, sizeof err), WANCP_OK);
    assert_int_equal(bytebuf_append(&out, "", 1), WANCP_OK);
    if (strcmp((char *)out.data, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", (char *)out.data, want);
    bytebuf_free(&out);
}

static void rules(void **state)
{
    (void)state;
    /* Sentences on consecutive lines share a paragraph; a tab or a blank line starts one. */
    detag("\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n"
          "It/pps cost/vbd 1-1/2/cd million/cd (/( or/cc so/rb )/) ;/. done/vbn !/.\n\n\n"
          "\tShe/pps said/vbd ,/, `/` fine/jj '/' ./.\n",
          "The jury said \"no evidence\" was found. It cost 1-1/2 million (or so); done!\n\n"
          "She said, 'fine'.\n");
    /* A headline stands alone even without a blank line after it. */
    detag("\n\n\n\nWards/nns-hl protected/vbn-hl \nThe/at jury/nn agreed/vbd ./.\n",
          "Wards protected\n\nThe jury agreed.\n");
}

static void bad_input(void **state)
{
    (void)state;
    bytebuf out = {0};
    char err[WANCP_ERRLEN];
    const char *bad = "\tThe/at jury/nn\n\tsaid nothing/nn\n";
    assert_int_equal(brown_detag("ca99", bad, strlen(bad), &out, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "ca99:2: token 'said' is not word/TAG");
    assert_int_equal(brown_detag("ca98", "\n\n\n", 3, &out, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "ca98: no sentences");
    corpus c = {0};
    assert_int_equal(brown_load(&c, "/nonexistent-brown", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "/nonexistent-brown");
    bytebuf_free(&out);
    corpus_free(&c);
}

static void real_corpus(void **state)
{
    (void)state;
    corpus c = {0};
    char err[WANCP_ERRLEN];
    if (brown_load(&c, BROWN_DIR, err, sizeof err) != WANCP_OK)
        fail_msg("%s (run harness/setup)", err);
    assert_int_equal(c.count, 500);
    size_t len;
    assert_memory_equal(corpus_name(&c, 0, &len), "ca01", 4);
    assert_memory_equal(corpus_name(&c, 499, &len), "cr09", 4);
    const char *first = (const char *)corpus_text(&c, 0, &len);
    const char *want = "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
                       "election produced \"no evidence\" that any irregularities took place.";
    assert_memory_equal(first, want, strlen(want));
    /* Plain text: no tags survive, and it is ASCII as the corpus is. */
    for (size_t i = 0; i < c.text.len; i++)
        assert_true(c.text.data[i] < 0x80);
    assert_null(memmem(c.text.data, c.text.len, "/nn", 3));
    assert_null(memmem(c.text.data, c.text.len, "``", 2));
    assert_true(c.text.len > 5000000 && c.text.len < 7000000);
    corpus_free(&c);
}

static void split(void **state)
{
    (void)state;
    size_t val = 0;
    for (size_t i = 0; i < 500; i++)
        val += (size_t)corpus_is_validation(i, 10);
    assert_int_equal(val, 50);
    assert_false(corpus_is_validation(0, 10));
    assert_true(corpus_is_validation(9, 10));
    assert_true(corpus_is_validation(499, 10));
    assert_false(corpus_is_validation(9, 0));
}

static void jsonl_roundtrip(void **state)
{
    (void)state;
    corpus c = {0}, back = {0};
    char path[512], err[WANCP_ERRLEN];
    assert_int_equal(corpus_add(&c, "one", "caf\xc3\xa9\n\"quoted\"", 15), WANCP_OK);
    assert_int_equal(corpus_add(&c, "two", "a\0b", 3), WANCP_OK);
    test_path(path, sizeof path, "docs.jsonl");
    assert_int_equal(corpus_write_jsonl(&c, path, err, sizeof err), WANCP_OK);
    assert_int_equal(corpus_load(&back, path, err, sizeof err), WANCP_OK);
    assert_int_equal(back.count, 2);
    size_t len;
    const uint8_t *text = corpus_text(&back, 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(text, "a\0b", 3);
    assert_memory_equal(corpus_name(&back, 0, &len), "one", 3);

    test_path(path, sizeof path, "bad.jsonl");
    test_write_file(path, "{\"text\": \"ok\"}\n\n{\"txt\": 1}\n", 27);
    assert_int_equal(corpus_load(&back, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.jsonl:3: expected an object with a string \"text\"");
    test_write_file(path, "{\"text\": \"ok\"\n", 14);
    assert_int_equal(corpus_load(&back, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.jsonl:1:");
    test_write_file(path, "\n\n", 2);
    assert_int_equal(corpus_load(&back, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "empty input");
    corpus_free(&c);
    corpus_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules), cmocka_unit_test(bad_input),       cmocka_unit_test(real_corpus),
        cmocka_unit_test(split), cmocka_unit_test(jsonl_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
