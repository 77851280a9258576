#include "link_price.h"

#include "../../core/base/status.h"
#include "../cli.h"
#include "../bench/iperf3_ring.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPINNERS 256
/* The streams run STREAM_S seconds, the first OMIT_S left out of iperf3's figure; the
 * spinners count over the middle SPIN_S of them, after TCP's ramp. */
#define STREAM_S 4
#define OMIT_S 1
#define SPIN_START_S 1.6
#define SPIN_S 2.0

typedef struct turns {
    volatile uint64_t count[MAX_SPINNERS];
} turns;

/* Spins from delay_s after now for spin_s seconds, counting turns of a cheap loop that
 * checks the clock every 4096 turns. */
static uint64_t spin(double delay_s, double spin_s)
{
    const double start = cli_now() + delay_s;
    while (cli_now() < start) {
        struct timespec nap = {0, 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    volatile uint64_t x = 0;
    uint64_t n = 0;
    const double end = start + spin_s;
    for (;;) {
        for (int i = 0; i < 4096; i++)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        n += 4096;
        if (cli_now() >= end)
            return n;
    }
}

/* Starts one spinner per core (their counts land in t); returns how many started. */
static int start_spinners(int cores, turns *t, double delay_s, pid_t *pids)
{
    int started = 0;
    for (; started < cores; started++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            t->count[started] = spin(delay_s, SPIN_S);
            _exit(0);
        }
        pids[started] = pid;
    }
    return started;
}

static uint64_t join_spinners(int n, const turns *t, const pid_t *pids)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        waitpid(pids[i], NULL, 0);
        sum += t->count[i];
    }
    return sum;
}

int link_price_measure(const char *prefix, int ranks, int port, link_price *out,
                       const volatile sig_atomic_t *interrupted, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    const int cores = online < 1 ? 1 : online > MAX_SPINNERS ? MAX_SPINNERS : (int)online;
    turns *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        return snprintf(why, why_len, "out of memory for the spinners"), WANCP_ERR_NOMEM;
    pid_t pids[MAX_SPINNERS];
    /* quiet: the spinners alone */
    int n = start_spinners(cores, t, 0.05, pids);
    const uint64_t quiet = join_spinners(n, t, pids);
    int rc = n == cores ? WANCP_OK : (snprintf(why, why_len, "cannot fork the spinners"), WANCP_ERR_SYSTEM);
    /* streaming: the spinners in the middle of the streams (iperf3_ring starts the servers,
     * waits 0.3 s, then the clients) */
    double bps = -1;
    if (rc == WANCP_OK) {
        n = start_spinners(cores, t, 0.3 + SPIN_START_S, pids);
        bps = n == cores ? iperf3_ring(prefix, ranks, port, STREAM_S, OMIT_S, interrupted, why, why_len) : -1;
        if (n != cores)
            snprintf(why, why_len, "cannot fork the spinners");
        const uint64_t busy = join_spinners(n, t, pids);
        if (bps > 0 && quiet > 0) {
            out->cores_taken = fmax(0.0, cores * (1.0 - (double)busy / (double)quiet));
            out->stream_bps = bps;
            out->payload_bytes_s = bps * ranks / 8.0;
        } else {
            rc = WANCP_ERR_SYSTEM;
        }
    }
    munmap(t, sizeof *t);
    return rc;
}
