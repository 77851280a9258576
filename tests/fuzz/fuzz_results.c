/* libFuzzer: what `wancp plot` and `wancp check` read back from a results folder: run.json,
 * and an arm's metrics.csv and wire.csv. Input: RUN_JSON "\n==\n" METRICS "\n==\n" WIRE,
 * written as RUN/run.json, RUN/a/metrics.csv and RUN/a/wire.csv. Refused with one printable
 * line, or summarised (and the summary written) without a crash. */
#include "fuzz_input.h"
#include "harness/report/results.h"

#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    char path[256];
    fuzz_path(path, sizeof path, "a");
    mkdir(path, 0755);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    fuzz_split(data, size, part, len, 3);
    fuzz_write("run.json", part[0], len[0]);
    fuzz_write("a/metrics.csv", part[1], len[1]);
    fuzz_write("a/wire.csv", part[2], len[2]);
    static run_summary s;
    char err[WANCP_ERRLEN];
    int rc = results_summarize(&s, fuzz_dir, err, sizeof err);
    if (rc != WANCP_OK) {
        fuzz_check_refusal(rc, err, fuzz_dir);
        return 0;
    }
    if (results_write_summary(&s, err, sizeof err) != WANCP_OK)
        abort();
    return 0;
}
