#include "iperf3_ring.h"

#include "../../core/comm/comm.h"
#include "../../core/base/status.h"
#include "../../core/util/buf.h"
#include "../../shaper/topology.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Rank r's address: its namespace's, or loopback's. */
static void rank_addr(const char *prefix, int rank, char *buf, size_t len)
{
    if (prefix != NULL)
        topology_rank_addr(rank, buf, len);
    else
        snprintf(buf, len, "127.0.0.1");
}

/* argv run by a child inside rank's namespace (or here), stdout into out_fd (or /dev/null
 * when out_fd < 0), stderr to /dev/null. */
static pid_t spawn_at(const char *prefix, int rank, char *const argv[], int out_fd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char err[WANCP_ERRLEN];
    if (prefix != NULL && topology_enter(prefix, rank, err, sizeof err) != WANCP_OK)
        _exit(126);
    int null = open("/dev/null", O_WRONLY);
    if (null < 0)
        _exit(127);
    dup2(out_fd >= 0 ? out_fd : null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    execvp(argv[0], argv);
    _exit(127);
}

double iperf3_ring(const char *prefix, int ranks, int port, int seconds, int omit,
                   const volatile sig_atomic_t *interrupted, char *why, size_t why_len)
{
    const int streams = ranks;
    if (streams < 2 || streams > COMM_MAX_RANKS)
        return snprintf(why, why_len, "iperf3 ring: %d ranks (2 to %d)", streams, COMM_MAX_RANKS), -1;
    pid_t servers[COMM_MAX_RANKS];
    char portbuf[COMM_MAX_RANKS][16], addr[COMM_MAX_RANKS][32], secs[16], skip[16];
    snprintf(secs, sizeof secs, "%d", seconds);
    snprintf(skip, sizeof skip, "%d", omit);
    for (int k = 0; k < streams; k++) {
        const int to = (k + 1) % streams;
        snprintf(portbuf[k], sizeof portbuf[k], "%d", port + k);
        rank_addr(prefix, to, addr[k], sizeof addr[k]);
        char *argv[] = {"iperf3", "-s", "-1", "-B", addr[k], "-p", portbuf[k], NULL};
        servers[k] = spawn_at(prefix, to, argv, -1);
    }
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int fds[COMM_MAX_RANKS];
    pid_t clients[COMM_MAX_RANKS];
    int started = 0;
    for (; started < streams; started++) {
        int p[2];
        if (pipe(p) != 0)
            break;
        char *argv[] = {"iperf3", "-c", addr[started], "-p", portbuf[started], "-t", secs, "-O", skip, "-J", NULL};
        clients[started] = spawn_at(prefix, started, argv, p[1]);
        close(p[1]);
        fds[started] = p[0];
    }
    double total = 0;
    int ok = started == streams;
    if (!ok)
        snprintf(why, why_len, "pipe failed: %s", strerror(errno));
    for (int k = 0; k < started; k++) {
        bytebuf text = {0};
        char chunk[4096];
        ssize_t n;
        while ((n = read(fds[k], chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR && !*interrupted))
            if (n > 0)
                bytebuf_append(&text, chunk, (size_t)n);
        close(fds[k]);
        if (*interrupted)
            kill(clients[k], SIGKILL);
        waitpid(clients[k], NULL, 0);
        json_error_t jerr;
        json_t *j = text.len ? json_loadb((const char *)text.data, text.len, 0, &jerr) : NULL;
        json_t *bps = json_object_get(json_object_get(json_object_get(j, "end"), "sum_received"), "bits_per_second");
        if (!json_is_number(bps)) {
            if (ok)
                snprintf(why, why_len, "%s",
                         *interrupted
                             ? "interrupted"
                             : "an iperf3 stream gave no result (is iperf3 installed? harness/setup installs it)");
            ok = 0;
        } else {
            total += json_number_value(bps);
        }
        json_decref(j);
        bytebuf_free(&text);
    }
    for (int k = 0; k < streams; k++) {
        kill(servers[k], SIGTERM);
        waitpid(servers[k], NULL, 0);
    }
    return ok ? total / streams : -1;
}
