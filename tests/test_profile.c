/* Link profiles: the shipped profiles load; a bad profile names every problem with its
 * line at once; traces and schedules are checked. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "shaper/profile.h"

#include <sys/stat.h>

static void write_text(const char *name, const char *text, char *path, size_t len)
{
    test_path(path, len, name);
    test_write_file(path, text, strlen(text));
}

static void shipped_profiles(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        uint64_t rate, delay, jitter;
        uint32_t loss_ppm;
    } want[] = {
        {"wan-300m.ini", 300000000, 20000000, 0, 0},
        {"dc-100g.ini", 100000000000ull, 5000, 0, 0},
        {"wan-300m-jitter.ini", 300000000, 20000000, 5000000, 0},
        {"wan-300m-lossy.ini", 300000000, 20000000, 0, 1000},
        {"wan-varying.ini", 300000000, 20000000, 0, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char path[512], err[2048];
        snprintf(path, sizeof path, "%s/%s", PROFILE_DIR, want[i].file);
        link_profile p;
        if (link_profile_load(&p, path, err, sizeof err) != WANCP_OK)
            fail_msg("%s", err);
        assert_int_equal(p.rate_bps, want[i].rate);
        assert_int_equal(p.delay_ns, want[i].delay);
        assert_int_equal(p.jitter_ns, want[i].jitter);
        assert_int_equal(p.loss_ppm, want[i].loss_ppm);
        link_profile_free(&p);
    }
    char path[512], err[2048];
    snprintf(path, sizeof path, "%s/wan-varying.ini", PROFILE_DIR);
    link_profile p;
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_OK);
    assert_int_equal(p.nschedule, 3);
    assert_int_equal(p.schedule[1].at_ns, 30000000000ull);
    assert_int_equal(p.schedule[1].rate_bps, 100000000);
    link_profile_free(&p);
}

static void every_problem_at_once(void **state)
{
    (void)state;
    char path[512], err[2048];
    write_text("bad.ini",
               "[link]\n"
               "rate = -300mbit\n"
               "delay = 20\n"
               "jitter = 5ms\n"
               "color = blue\n"
               "loss = 200%\n"
               "distribution = gaussian\n"
               "schedule = 10s 300mbit\n",
               path, sizeof path);
    link_profile p;
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "bad.ini:2: rate '-300mbit'");
    assert_err_mentions(err, "bad.ini:3: delay: time '20': missing unit");
    assert_err_mentions(err, "bad.ini:5: unknown key 'color'");
    assert_err_mentions(err, "bad.ini:6: loss '200%'");
    assert_err_mentions(err, "bad.ini:7: distribution 'gaussian'");
    assert_err_mentions(err, "bad.ini:8: schedule: the first step must be at 0s");
    assert_null(strchr(err, '\n'));

    write_text("jitter.ini", "[link]\nrate = 1gbit\njitter = 5ms\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "jitter.ini:3: jitter without delay");

    write_text("norate.ini", "[link]\ndelay = 5ms\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "no rate");

    write_text("unit.ini", "[link]\nrate = 300Mbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "unit.ini:2: rate '300Mbit': unknown unit 'Mbit'");

    write_text("order.ini", "[link]\nrate = 1gbit\nschedule = 0s 1gbit, 20s 1mbit, 10s 2mbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "order.ini:3: schedule: 10s does not come after");

    write_text("section.ini", "[wire]\nrate = 1gbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "unknown section [wire]");

    assert_int_equal(link_profile_load(&p, "/nonexistent/x.ini", err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "/nonexistent/x.ini: cannot open");
}

static void traces(void **state)
{
    (void)state;
    char path[512], trace[512], err[2048];
    link_profile p;
    write_text("cell.trace", "0\n0\n1\n3\n3\n7\n", trace, sizeof trace);
    write_text("traced.ini", "[link]\ntrace = cell.trace\ndelay = 30ms\n", path, sizeof path);
    if (link_profile_load(&p, path, err, sizeof err) != WANCP_OK)
        fail_msg("%s", err);
    assert_int_equal(p.ntrace, 6);
    assert_int_equal(p.trace_ms[5], 7);
    assert_int_equal(p.rate_bps, 0);
    link_profile_free(&p);

    write_text("back.trace", "0\n5\n4\n9\nx\n", trace, sizeof trace);
    write_text("back.ini", "[link]\ntrace = back.trace\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "back.trace:3: 4 ms goes backwards (after 5 ms)");
    assert_err_mentions(err, "back.trace:5: 'x' is not a millisecond timestamp");
    assert_err_mentions(err, "back.ini:2:");

    write_text("gone.ini", "[link]\ntrace = nowhere.trace\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "nowhere.trace: cannot open");
}

/* A file says each thing once, and every value it gives is one the links can play. The
 * schedule given twice once wrote past its allocation (heap overflow, under root). */
static void repeats_and_values(void **state)
{
    (void)state;
    char path[512], trace[512], err[2048];
    link_profile p;
    write_text("twice.ini", "[link]\nrate = 300mbit\nschedule = 0s 300mbit, 30s 100mbit\nschedule = 0s 200mbit\n", path,
               sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "twice.ini:4: [link] schedule given again (first at line 3)");

    write_text("links.ini", "[link]\nrate = 300mbit\n\n[link]\nrate = 100mbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "links.ini:4: [link] again (first at line 1)");

    write_text("rates.ini", "[link]\nrate = 1gbit\nrate = 2gbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "rates.ini:3: [link] rate given again (first at line 2)");

    write_text("zero.ini", "[link]\nrate = 300mbit\nschedule = 0s 300mbit, 10s 0mbit\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "zero.ini:3: schedule: 0mbit at 10s: a rate must be above 0");

    write_text("empty.ini", "[link]\nrate = 300mbit\nschedule =\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "empty.ini:3: schedule is empty");

    write_text("long.ini",
               "[link]\nrate = 300mbit\nname = a123456789b123456789c123456789d123456789e123456789f1234567890123\n",
               path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "long.ini:3: name: 1 to 63 characters");

    write_text("far.trace", "0\n100000000000000000000\n5000000000\n", trace, sizeof trace);
    write_text("far.ini", "[link]\ntrace = far.trace\n", path, sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "far.trace:2: '100000000000000000000' is not a millisecond timestamp");
    assert_err_mentions(err, "far.trace:3: '5000000000' is not a millisecond timestamp");

    /* A long section name is kept whole (inih's own copy stops at 49 characters). */
    write_text("sect.ini", "[link-with-a-section-name-far-longer-than-inih-keeps-for-itself]\nrate = 1gbit\n", path,
               sizeof path);
    assert_int_equal(link_profile_load(&p, path, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "unknown section [link-with-a-section-name-far-longer-than-inih-keeps-for-itself]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(shipped_profiles), cmocka_unit_test(every_problem_at_once),
                                       cmocka_unit_test(traces), cmocka_unit_test(repeats_and_values)};
    return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
