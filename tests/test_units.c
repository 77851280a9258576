/* The shaper's unit grammar: tc spellings to integers, and everything else refused. */
#include "test_helpers.h"

#include "core/base/status.h"
#include "shaper/units.h"

static void rates(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bps;
    } ok[] = {
        {"300mbit", 300000000},
        {"100gbit", 100000000000ull},
        {"1.5gbit", 1500000000},
        {"12.5kbit", 12500},
        {"8bit", 8},
        {"1mibit", 1048576},
        {"10mbps", 80000000},
        {"0.001gbit", 1000000},
        {"1tbit", 1000000000000ull},
    };
    char err[WANCP_ERRLEN];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 0;
        if (shaper_parse_rate(ok[i].text, &v, err, sizeof err) != WANCP_OK)
            fail_msg("%s: %s", ok[i].text, err);
        assert_int_equal(v, ok[i].bps);
    }
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"300", "missing unit"},          {"300Mbit", "unknown unit 'Mbit'"},
        {"300mb", "unknown unit 'mb'"},   {"-1mbit", "expected a number"},
        {"mbit", "expected a number"},    {"", "expected a number"},
        {"1.5bit", "not a whole number"}, {"99999999999999999999gbit", "too large"},
        {"20000000tbit", "too large"},    {"1..5mbit", "unknown unit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        err[0] = 0;
        assert_int_equal(shaper_parse_rate(bad[i].text, &v, err, sizeof err), WANCP_ERR_INPUT);
        assert_err_mentions(err, bad[i].needle);
    }
}

static void times_and_sizes(void **state)
{
    (void)state;
    char err[WANCP_ERRLEN];
    uint64_t v;
    assert_int_equal(shaper_parse_time("20ms", &v, err, sizeof err), WANCP_OK);
    assert_int_equal(v, 20000000);
    assert_int_equal(shaper_parse_time("1.5s", &v, err, sizeof err), WANCP_OK);
    assert_int_equal(v, 1500000000);
    assert_int_equal(shaper_parse_time("250usec", &v, err, sizeof err), WANCP_OK);
    assert_int_equal(v, 250000);
    assert_int_equal(shaper_parse_time("0.5ns", &v, err, sizeof err), WANCP_ERR_INPUT);
    assert_int_equal(shaper_parse_time("20", &v, err, sizeof err), WANCP_ERR_INPUT);
    assert_err_mentions(err, "expected one of: ns us usec ms msec s sec");
    assert_int_equal(shaper_parse_size("128kb", &v, err, sizeof err), WANCP_OK);
    assert_int_equal(v, 131072);
    assert_int_equal(shaper_parse_size("1.5m", &v, err, sizeof err), WANCP_OK);
    assert_int_equal(v, 1572864);
    assert_int_equal(shaper_parse_size("3q", &v, err, sizeof err), WANCP_ERR_INPUT);
}

static void formatting_round_trips(void **state)
{
    (void)state;
    char buf[64], err[WANCP_ERRLEN];
    uint64_t v;
    shaper_format_rate(300000000, buf, sizeof buf);
    assert_string_equal(buf, "300mbit");
    shaper_format_rate(1500000000, buf, sizeof buf);
    assert_string_equal(buf, "1500mbit");
    shaper_format_time(1500000, buf, sizeof buf);
    assert_string_equal(buf, "1500us");
    shaper_format_time(0, buf, sizeof buf);
    assert_string_equal(buf, "0ns");
    for (uint64_t x = 1; x < 1000000000000ull; x = x * 7 + 3) {
        shaper_format_rate(x, buf, sizeof buf);
        assert_int_equal(shaper_parse_rate(buf, &v, err, sizeof err), WANCP_OK);
        assert_int_equal(v, x);
        shaper_format_time(x, buf, sizeof buf);
        assert_int_equal(shaper_parse_time(buf, &v, err, sizeof err), WANCP_OK);
        assert_int_equal(v, x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rates),
        cmocka_unit_test(times_and_sizes),
        cmocka_unit_test(formatting_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
