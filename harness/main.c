/* wancp: the command line. Dispatches to one subcommand per room of work. */
#include "cli.h"

#include "../core/device_query.h"

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <string.h>

extern const char *const wancp_git_commit;

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"data", cli_data, "tokenize text into token shards (GPT-2 BPE or bytes); check and decode shards"},
    {"bench", cli_bench, "measure this machine against its own ceilings (tokenizer)"},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: wancp <command> [options]\n"
            "       wancp --version | --help\n"
            "\n"
            "A testbed for context-parallel training over slow, shaped links.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f,
            "\n"
            "Each command takes --help. Exit status: 0 ok, 1 the work failed, 2 usage or input error.\n");
}

static int version(void)
{
    char pcre2_version[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre2_version);
    char devices[2048];
    device_query(devices, sizeof devices);
    printf("wancp %s (commit %s)\n"
           "libraries: pcre2 %s, jansson %s\n"
           "%s\n",
           WANCP_VERSION, wancp_git_commit, pcre2_version, jansson_version_str(), devices);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return version();
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "wancp: unknown command '%s' (see wancp --help)\n", argv[1]);
    return 2;
}
