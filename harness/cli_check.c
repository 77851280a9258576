/* wancp check: validate inputs before a run uses them, reporting every problem at once. */
#include "cli.h"

#include "../core/status.h"
#include "../shaper/profile.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "Usage: wancp check profile FILE...\n"
    "\n"
    "  profile   link profiles (INI, one [link] section; see scenarios/profiles/): prints one\n"
    "            line per valid profile; otherwise every problem of the file, each with\n"
    "            file:line, and exit status 2.\n";

int cli_check(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("check", "missing what to check: profile");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(argv[1], "profile") != 0)
        return cli_usage_error("check", "unknown input kind '%s': expected profile", argv[1]);
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
