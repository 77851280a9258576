/* libFuzzer: the simulator's hardware files (and bench calibrate's output). Refused with one
 * printable line naming the file, or accepted, written and read back. */
#include "fuzz_input.h"
#include "harness/sim/sim_hardware.h"

const char *cli_source_dir(void) { return "/nonexistent-wancp-source"; }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("h.ini", data, size);
    char path[256], out[256], err[4096];
    fuzz_path(path, sizeof path, "h.ini");
    fuzz_path(out, sizeof out, "w.ini");
    sim_hardware hw, again;
    int rc = sim_hardware_load(&hw, path, err, sizeof err);
    if (rc != WANCP_OK) {
        fuzz_check_refusal(rc, err, "h.ini");
        return 0;
    }
    if (sim_hardware_write(&hw, out, "fuzz", err, sizeof err) != WANCP_OK ||
        sim_hardware_load(&again, out, err, sizeof err) != WANCP_OK)
        abort();
    return 0;
}
