/* The scripts a topology is made of: steps of `ip`/`tc -batch` lines (or one ethtool or
 * sysctl inside a namespace), run one by one, or printed for --dry-run. */
#include "shaper_internal.h"

#include "../core/base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>

/* A rank's TCP is tuned as hosts for long fat paths are, so the link is the limit, not the
 * host: buffers may grow to 64 MiB (Linux's default 4 MiB send buffer caps a stream at
 * 4 MiB per round trip, under 300 Mbit/s at 100 ms once the link's queue adds its own
 * delay), and a connection keeps its window across the compute gaps between a step's
 * exchanges (with slow start after idle, every exchange longer than a retransmission
 * timeout apart starts again from 10 segments and needs several round trips to fill the
 * link: on a 20 ms link that more than doubled the exposed communication of a CP step). */
#define TCP_RMEM "4096 131072 67108864"
#define TCP_WMEM "4096 16384 67108864"
#define TCP_TUNING "net.ipv4.tcp_rmem=" TCP_RMEM, "net.ipv4.tcp_wmem=" TCP_WMEM, "net.ipv4.tcp_slow_start_after_idle=0"
#define TCP_TUNING_SHELL                                                                                               \
    "net.ipv4.tcp_rmem='" TCP_RMEM "' net.ipv4.tcp_wmem='" TCP_WMEM "' net.ipv4.tcp_slow_start_after_idle=0"

/* Segmentation offloads off, so packets on the wire are real MTU-sized frames: htb shapes
 * them smoothly and the capture counts the headers each segment really carries. */
#define OFFLOADS_OFF "tso off gso off gro off"

void add_line(step *s, const char *fmt, ...)
{
    size_t used = strlen(s->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->text + used, sizeof s->text - used, fmt, ap);
    va_end(ap);
    used = strlen(s->text);
    if (used + 1 < sizeof s->text)
        strcat(s->text, "\n");
}

size_t step_print(const step *s, char *buf, size_t len)
{
    if (s->tcp_tuning)
        return (size_t)snprintf(buf, len, "ip netns exec %s sysctl -q -w " TCP_TUNING_SHELL "\n", s->ns);
    if (s->dev[0])
        return (size_t)snprintf(buf, len, "ip netns exec %s ethtool -K %s " OFFLOADS_OFF "%s\n", s->ns, s->dev,
                                s->tx_off ? " tx off" : "");
    return (size_t)snprintf(buf, len, "%s%s%s -batch - <<'EOF'\n%sEOF\n", s->is_tc ? "tc" : "ip",
                            s->ns[0] ? " -n " : "", s->ns, s->text);
}

/* Runs `ip|tc [-n ns] -batch -` with text on stdin; the first line of its complaints goes
 * into err. */
int run_batch(const step *s, char *err, size_t errlen)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDERR_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        const char *tool = s->is_tc ? "tc" : "ip";
        if (s->tcp_tuning)
            execlp("ip", "ip", "netns", "exec", s->ns, "sysctl", "-q", "-w", TCP_TUNING, (char *)NULL);
        else if (s->dev[0] && s->tx_off)
            execlp("ip", "ip", "netns", "exec", s->ns, "ethtool", "-K", s->dev, "tso", "off", "gso", "off", "gro",
                   "off", "tx", "off", (char *)NULL);
        else if (s->dev[0])
            execlp("ip", "ip", "netns", "exec", s->ns, "ethtool", "-K", s->dev, "tso", "off", "gso", "off", "gro",
                   "off", (char *)NULL);
        else if (s->ns[0])
            execlp(tool, tool, "-n", s->ns, "-batch", "-", (char *)NULL);
        else if (s->force)
            execlp(tool, tool, "-force", "-batch", "-", (char *)NULL);
        else
            execlp(tool, tool, "-batch", "-", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    size_t len = strlen(s->text);
    if (write(in[1], s->text, len) != (ssize_t)len) {
        /* the tool died early: its status says why */
    }
    close(in[1]);
    char said[2048] = "";
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof said && (r = read(out[0], said + got, sizeof said - 1 - got)) > 0)
        got += (size_t)r;
    said[got] = 0;
    close(out[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return WANCP_OK;
    /* the complaint, without the "Command failed -:N" trailer */
    char *nl = strchr(said, '\n');
    if (nl != NULL)
        *nl = 0;
    const bool exec = s->dev[0] || s->tcp_tuning;
    return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s%s%s%s: %s",
                      s->tcp_tuning ? "sysctl in "
                      : s->dev[0]   ? "ethtool in "
                                    : "",
                      exec       ? ""
                      : s->is_tc ? "tc"
                                 : "ip",
                      s->ns[0] && !exec ? " -n " : "", s->ns,
                      said[0]                                     ? said
                      : (WIFEXITED(st) && WEXITSTATUS(st) == 127) ? "not installed"
                                                                  : "failed");
}
