/* libFuzzer: link profiles (INI, the unit grammar, schedules) and the mahimahi traces they
 * name. Input: PROFILE "\n==\n" TRACE (written as p.ini and t.trace side by side), the
 * profile's first line also parsed as a rate, a time and a size. A profile is refused with
 * one printable line naming its file, or accepted with every value one the links can play. */
#include "fuzz_input.h"
#include "shaper/profile.h"
#include "shaper/units.h"

static void units_round_trip(const uint8_t *data, size_t size)
{
    char text[80], err[WANCP_ERRLEN], again[64];
    size_t n = 0;
    while (n < size && n < sizeof text - 1 && data[n] != '\n' && data[n] != 0)
        n++;
    memcpy(text, data, n);
    text[n] = 0;
    uint64_t v, w;
    if (shaper_parse_rate(text, &v, err, sizeof err) == WANCP_OK) {
        shaper_format_rate(v, again, sizeof again);
        if (shaper_parse_rate(again, &w, err, sizeof err) != WANCP_OK || w != v)
            abort();
    }
    if (shaper_parse_time(text, &v, err, sizeof err) == WANCP_OK) {
        shaper_format_time(v, again, sizeof again);
        if (shaper_parse_time(again, &w, err, sizeof err) != WANCP_OK || w != v)
            abort();
    }
    shaper_parse_size(text, &v, err, sizeof err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    units_round_trip(data, size);
    const uint8_t *part[2];
    size_t len[2];
    fuzz_split(data, size, part, len, 2);
    fuzz_write("p.ini", part[0], len[0]);
    fuzz_write("t.trace", part[1], len[1]);
    char path[256], err[4096];
    fuzz_path(path, sizeof path, "p.ini");
    link_profile p;
    int rc = link_profile_load(&p, path, err, sizeof err);
    if (rc != WANCP_OK) {
        fuzz_check_refusal(rc, err, "p.ini");
        return 0;
    }
    if (p.rate_bps == 0 && p.ntrace == 0)
        abort();
    for (size_t i = 0; i < p.nschedule; i++)
        if (p.schedule[i].rate_bps == 0 || (i == 0 ? p.schedule[i].at_ns != 0
                                                   : p.schedule[i].at_ns <= p.schedule[i - 1].at_ns))
            abort();
    for (size_t i = 1; i < p.ntrace; i++)
        if (p.trace_ms[i] < p.trace_ms[i - 1])
            abort();
    if (p.name[0] == 0 || p.loss_ppm > 1000000)
        abort();
    char line[512];
    link_profile_describe(&p, line, sizeof line);
    link_profile dilated;
    if (link_profile_dilate(&p, 3.0, &dilated) != 0)
        abort();
    link_profile_free(&dilated);
    link_profile_free(&p);
    return 0;
}
