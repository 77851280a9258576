/* libFuzzer: scenario files. Refused with one printable line naming the file, or accepted;
 * an accepted scenario's resolved form (what a run records) reads back to itself. */
#include "fuzz_input.h"
#include "harness/scenario.h"

#include <sys/stat.h>

/* The scenario reader's default shards live in the source tree; none is read here. */
const char *cli_source_dir(void)
{
    return "/nonexistent-wancp-source";
}

static char *resolved(const scenario *s, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (f == NULL)
        abort();
    scenario_write(s, f);
    fclose(f);
    char *body = strchr(text, '\n'); /* the first line names the file read */
    memmove(text, body + 1, strlen(body + 1) + 1);
    *len = strlen(text);
    return text;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    /* The profiles the shipped scenarios name, so that their arms read as they do at home. */
    static const char *const PROFILES[] = {"dc-100g", "rate-100m", "rate-1g", "rate-50m", "wan-300m-jitter",
                                           "wan-300m-rate", "wan-300m"};
    char path[256];
    fuzz_path(path, sizeof path, "profiles");
    mkdir(path, 0755);
    for (size_t i = 0; i < sizeof PROFILES / sizeof PROFILES[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "profiles/%s.ini", PROFILES[i]);
        static const char text[] = "[link]\nrate = 300mbit\ndelay = 20ms\n";
        fuzz_write(name, text, sizeof text - 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static scenario s, again;
    fuzz_write("s.ini", data, size);
    char path[256], err[8192];
    fuzz_path(path, sizeof path, "s.ini");
    int rc = scenario_load(&s, path, NULL, 0, err, sizeof err);
    if (rc != WANCP_OK) {
        fuzz_check_refusal(rc, err, "s.ini");
        return 0;
    }
    size_t n1, n2;
    char *first = resolved(&s, &n1);
    fuzz_write("r.ini", first, n1);
    fuzz_path(path, sizeof path, "r.ini");
    if (scenario_load(&again, path, NULL, 0, err, sizeof err) != WANCP_OK)
        abort(); /* what a run records must read back */
    char *second = resolved(&again, &n2);
    if (n1 != n2 || memcmp(first, second, n1) != 0)
        abort();
    free(first);
    free(second);
    scenario_free(&again);
    scenario_free(&s);
    return 0;
}
