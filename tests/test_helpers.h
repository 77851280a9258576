#ifndef WANCP_TEST_HELPERS_H
#define WANCP_TEST_HELPERS_H

/* Shared by the cmocka unit tests: a private temporary folder and file helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh folder under $TMPDIR for this test process; removed by the caller's teardown. */
static inline const char *test_tmpdir(void)
{
    static char dir[256];
    if (dir[0] == 0) {
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof dir, "%s/wancp-test-XXXXXX", base);
        if (mkdtemp(dir) == NULL)
            fail_msg("mkdtemp %s failed", dir);
    }
    return dir;
}

static inline void test_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", test_tmpdir(), name);
}

static inline void test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len > 0)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static inline void test_remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", test_tmpdir());
}

/* The group teardown of tests that write under test_tmpdir(). */
static inline int test_teardown_tmpdir(void **state)
{
    (void)state;
    test_remove_tmpdir();
    return 0;
}

/* Asserts that err mentions needle, printing both when it does not. */
#define assert_err_mentions(err, needle)                                                                               \
    do {                                                                                                               \
        if (strstr((err), (needle)) == NULL)                                                                           \
            fail_msg("error \"%s\" does not mention \"%s\"", (err), (needle));                                         \
    } while (0)

#endif
