/* wancp check: validate inputs before a run uses them, reporting every problem at once. */
#include "cli.h"

#include "../core/base/status.h"
#include "../shaper/profile.h"
#include "report/results.h"
#include "scenario.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char USAGE[] = "Usage: wancp check profile FILE...\n"
                            "       wancp check scenario FILE [--set section.key=value]...\n"
                            "       wancp check RESULTS_DIR [--against REFERENCE] [--tolerance PERCENT]\n"
                            "\n"
                            "  profile   link profiles (INI, one [link] section; see scenarios/profiles/): prints one\n"
                            "            line per valid profile; otherwise every problem of the file, each with\n"
                            "            file:line, and exit status 2.\n"
                            "  scenario  an experiment (see scenarios/README.md) with its overrides (arm.NAME.key for\n"
                            "            an arm): prints it resolved, every value explicit, with its arms' link\n"
                            "            profiles checked too; otherwise every problem at once, and exit status 2.\n";

static int check_scenario(int argc, char **argv)
{
    char *sets[64];
    int nsets = 0;
    const char *path = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 || strncmp(argv[i], "--set=", 6) == 0) {
            const char *v = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL)
                return cli_usage_error("check", "--set needs section.key=value");
            if (nsets == 64)
                return cli_usage_error("check", "at most 64 --set");
            sets[nsets++] = (char *)v;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("check", "unknown option '%s'", argv[i]);
        } else if (path != NULL) {
            return cli_usage_error("check", "scenario takes one FILE");
        } else {
            path = argv[i];
        }
    }
    if (path == NULL)
        return cli_usage_error("check", "scenario needs a FILE");
    static scenario s;
    char err[4096];
    int rc = scenario_load(&s, path, sets, nsets, err, sizeof err);
    if (rc != WANCP_OK)
        return cli_report("check", rc, err);
    rc = scenario_check_data(&s, err, sizeof err);
    if (rc != WANCP_OK) {
        scenario_free(&s);
        return cli_report("check", rc, err);
    }
    scenario_write(&s, stdout);
    fprintf(stderr, "%s: ok (%d arm%s, %d ranks, %d steps)\n", path, s.narms, s.narms == 1 ? "" : "s", s.ranks,
            s.steps);
    scenario_free(&s);
    return 0;
}

static int check_results(int argc, char **argv)
{
    const char *dir = argv[1], *against = NULL;
    double tolerance = 1.0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--against") == 0 && i + 1 < argc) {
            against = argv[++i];
        } else if (strcmp(argv[i], "--tolerance") == 0 && i + 1 < argc) {
            if (cli_parse_float("check", "--tolerance", argv[++i], 0, 1000, &tolerance) != 0)
                return 2;
        } else {
            return cli_usage_error("check", "unknown option '%s' for a results folder", argv[i]);
        }
    }
    static run_summary s;
    char err[4096];
    int rc = results_summarize(&s, dir, err, sizeof err);
    if (rc != WANCP_OK) {
        fprintf(stderr, "wancp check: %s\n", err);
        return wancp_exit_status(rc);
    }
    int status = results_check(&s, against, tolerance / 100, stdout, err, sizeof err);
    if (status == 2)
        fprintf(stderr, "wancp check: %s\n", err);
    return status;
}

int cli_check(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("check", "missing what to check: profile or scenario");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(argv[1], "scenario") == 0)
        return check_scenario(argc, argv);
    struct stat st;
    if (stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode))
        return check_results(argc, argv);
    if (strcmp(argv[1], "profile") != 0)
        return cli_usage_error("check", "unknown input kind '%s': expected profile, scenario or a results folder",
                               argv[1]);
    if (argc < 3)
        return cli_usage_error("check", "profile needs at least one FILE");
    int status = 0;
    for (int i = 2; i < argc; i++) {
        link_profile p;
        char err[2048], line[256];
        int rc = link_profile_load(&p, argv[i], err, sizeof err);
        if (rc != WANCP_OK) {
            fprintf(stderr, "wancp check: %s\n", err);
            status = wancp_exit_status(rc);
            continue;
        }
        link_profile_describe(&p, line, sizeof line);
        printf("%s: ok (%s)\n", argv[i], line);
        link_profile_free(&p);
    }
    return status;
}
