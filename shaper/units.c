#include "units.h"

#include "../core/base/status.h"

#include <stdio.h>
#include <string.h>

typedef struct unit {
    const char *suffix;
    uint64_t scale; /* base units per one of these */
} unit;

static const unit RATE_UNITS[] = {
    {"bit", 1},
    {"kbit", 1000},
    {"mbit", 1000000},
    {"gbit", 1000000000},
    {"tbit", 1000000000000ull},
    {"kibit", 1024},
    {"mibit", 1048576},
    {"gibit", 1073741824},
    {"tibit", 1099511627776ull},
    {"bps", 8},
    {"kbps", 8000},
    {"mbps", 8000000},
    {"gbps", 8000000000ull},
    {"tbps", 8000000000000ull},
};
static const unit TIME_UNITS[] = {
    {"ns", 1}, {"us", 1000}, {"usec", 1000}, {"ms", 1000000}, {"msec", 1000000}, {"s", 1000000000}, {"sec", 1000000000},
};
static const unit SIZE_UNITS[] = {
    {"b", 1},        {"k", 1024},      {"kb", 1024},      {"kib", 1024},      {"m", 1048576},
    {"mb", 1048576}, {"mib", 1048576}, {"g", 1073741824}, {"gb", 1073741824}, {"gib", 1073741824},
};

/* "12.5mbit" -> 12500000 with the given table. */
static int parse_with(const char *what, const unit *units, size_t nunits, const char *text, uint64_t *out, char *err,
                      size_t errlen)
{
    const char *p = text;
    uint64_t mantissa = 0;
    int digits = 0, frac_digits = 0, seen_point = 0;
    for (;; p++) {
        if (*p >= '0' && *p <= '9') {
            if (mantissa > (UINT64_MAX - 9) / 10)
                return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': number too large", what, text);
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            digits++;
            frac_digits += seen_point;
        } else if (*p == '.' && !seen_point) {
            seen_point = 1;
        } else {
            break;
        }
    }
    if (digits == 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': expected a number followed by a unit", what, text);
    const unit *u = NULL;
    for (size_t i = 0; i < nunits; i++)
        if (strcmp(p, units[i].suffix) == 0)
            u = &units[i];
    if (u == NULL) {
        char list[256];
        size_t used = 0;
        for (size_t i = 0; i < nunits && used < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", units[i].suffix);
        if (*p == 0)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': missing unit (expected one of: %s)", what, text,
                              list);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': unknown unit '%s' (expected one of: %s)", what, text,
                          p, list);
    }
    uint64_t divisor = 1;
    for (int i = 0; i < frac_digits; i++) {
        if (divisor > UINT64_MAX / 10)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': too many decimals", what, text);
        divisor *= 10;
    }
    /* value = mantissa * scale / divisor, exactly; 128-bit product avoids overflow. */
    unsigned __int128 product = (unsigned __int128)mantissa * u->scale;
    if (product % divisor != 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': not a whole number of %s", what, text,
                          units[0].suffix);
    product /= divisor;
    if (product > UINT64_MAX)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s '%s': too large", what, text);
    *out = (uint64_t)product;
    return WANCP_OK;
}

int shaper_parse_rate(const char *text, uint64_t *bps, char *err, size_t errlen)
{
    return parse_with("rate", RATE_UNITS, sizeof RATE_UNITS / sizeof RATE_UNITS[0], text, bps, err, errlen);
}

int shaper_parse_time(const char *text, uint64_t *ns, char *err, size_t errlen)
{
    return parse_with("time", TIME_UNITS, sizeof TIME_UNITS / sizeof TIME_UNITS[0], text, ns, err, errlen);
}

int shaper_parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen)
{
    return parse_with("size", SIZE_UNITS, sizeof SIZE_UNITS / sizeof SIZE_UNITS[0], text, bytes, err, errlen);
}

/* Largest decimal unit that divides value exactly; units listed smallest first. */
static void format_with(const char *const *suffixes, const uint64_t *scales, size_t n, uint64_t value, char *buf,
                        size_t len)
{
    size_t best = 0;
    for (size_t i = 0; i < n; i++)
        if (value != 0 && value % scales[i] == 0)
            best = i;
    snprintf(buf, len, "%llu%s", (unsigned long long)(value / scales[best]), suffixes[best]);
}

void shaper_format_rate(uint64_t bps, char *buf, size_t len)
{
    static const char *const s[] = {"bit", "kbit", "mbit", "gbit", "tbit"};
    static const uint64_t k[] = {1, 1000, 1000000, 1000000000, 1000000000000ull};
    format_with(s, k, 5, bps, buf, len);
}

void shaper_format_time(uint64_t ns, char *buf, size_t len)
{
    static const char *const s[] = {"ns", "us", "ms", "s"};
    static const uint64_t k[] = {1, 1000, 1000000, 1000000000};
    format_with(s, k, 4, ns, buf, len);
}
