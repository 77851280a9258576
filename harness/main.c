/* wancp: the command line. Dispatches to one subcommand per room of work. */
#include "cli.h"

#include "../core/device_query.h"
#include "../core/ops/ops.h"

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"data", cli_data, "tokenize text into token shards (GPT-2 BPE or bytes); check and decode shards"},
    {"train", cli_train, "train on token shards (cpu or cuda); --ranks P context-parallel, --compress K/V subspaces"},
    {"shape", cli_shape, "shaped rank namespaces (rate, delay, jitter, loss); capture bytes; check"},
    {"run", cli_run, "run a scenario's arms over shaped links: results, summary and figures"},
    {"plot", cli_plot, "redraw a results folder's summary and figures"},
    {"sim", cli_sim, "predict step times at any scale: event model of a CP step over the link model"},
    {"check", cli_check, "validate inputs (profiles, scenarios); check a run's communication volume"},
    {"bench", cli_bench, "measure against this machine's ceilings (tokenizer, training step, attention, collectives)"},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: wancp <command> [options]\n"
               "       wancp --version | --help\n"
               "\n"
               "A testbed for context-parallel training over slow, shaped links.\n"
               "\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n"
               "Each command takes --help. Exit status: 0 ok, 1 the work failed, 2 usage or input error.\n");
}

/*
 * OpenBLAS picks its kernels when the library loads, before main, from OPENBLAS_CORETYPE.
 * Debian's 0.3.21 takes its Haswell (AVX2) kernels on AVX-512 CPUs it does not recognise,
 * at half the sgemm speed of its SkylakeX kernels, and an inherited OPENBLAS_CORETYPE may
 * name a slower core than the CPU has. So wancp chooses: WANCP_BLAS_CORE names a core, or
 * "auto" (the default) takes SkylakeX where the CPU has the AVX-512 subsets those kernels
 * use; when that differs from the loaded choice, wancp sets OPENBLAS_CORETYPE and
 * re-executes itself once (children, the ranks, inherit it). The chosen core is reported
 * by --version, the benchmarks and the metrics files. WANCP_BLAS_CORE=keep leaves it alone.
 */
static void choose_blas_kernels(char **argv)
{
    const char *want = getenv("WANCP_BLAS_CORE");
    if (want != NULL && strcmp(want, "keep") == 0)
        return;
    const char *core = NULL;
    if (want != NULL && want[0] != 0 && strcmp(want, "auto") != 0) {
        core = want;
    } else {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512cd"))
            core = "SkylakeX";
#endif
    }
    const char *current = getenv("OPENBLAS_CORETYPE");
    if (core == NULL || (current != NULL && strcmp(current, core) == 0))
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    /* Idle OpenBLAS threads spin (sched_yield) for 2^28 cycles by default, competing with
     * wancp's own threads for the cores between BLAS calls; 2^4 makes them sleep at once. */
    if (getenv("OPENBLAS_THREAD_TIMEOUT") == NULL)
        setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels already loaded */
}

static int version(void)
{
    char pcre2_version[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre2_version);
    char devices[2048];
    device_query(devices, sizeof devices);
    printf("wancp %s (commit %s)\n"
           "libraries: pcre2 %s, jansson %s\n"
           "blas: %s, core %s, %d threads\n"
           "%s\n",
           WANCP_VERSION, wancp_git_commit, pcre2_version, jansson_version_str(), ops_cpu_blas_name(),
           ops_cpu_blas_core(), ops_make("cpu", NULL, NULL, 0)->options.cpu_threads, devices);
    return 0;
}

int main(int argc, char **argv)
{
    choose_blas_kernels(argv);
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
