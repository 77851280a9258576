/* Who am I and where is everyone: rank, world size and rendezvous from the environment the
 * usual launchers set (torchrun, srun, mpirun). */
#include "comm_internal.h"

#include "../base/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the first of names that is set, as a whole number in [min, max]. 1 found, 0 not set,
 * -1 bad (problem appended to list). */
static int env_int(const char *const *names, long min, long max, long *out, char *list, size_t len, int *problems)
{
    for (; *names != NULL; names++) {
        const char *v = getenv(*names);
        if (v == NULL || v[0] == 0)
            continue;
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (*end != 0 || errno != 0 || x < min || x > max) {
            size_t used = strlen(list);
            snprintf(list + used, len - used, "%s%s='%s' must be %ld..%ld", *problems ? "; " : "", *names, v, min, max);
            (*problems)++;
            return -1;
        }
        *out = x;
        return 1;
    }
    return 0;
}

int comm_options_from_env(comm_options *o, char *err, size_t errlen)
{
    static const char *const RANK[] = {"RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", NULL};
    static const char *const WORLD[] = {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", NULL};
    static const char *const PORT[] = {"MASTER_PORT", NULL};
    static const char *const TIMEOUT[] = {"WANCP_COMM_TIMEOUT", NULL};
    char list[WANCP_ERRLEN] = "";
    int problems = 0;
    long rank = 0, world = 1, port = 29500, timeout_s = 60;
    int has_rank = env_int(RANK, 0, COMM_MAX_RANKS - 1, &rank, list, sizeof list, &problems);
    int has_world = env_int(WORLD, 1, COMM_MAX_RANKS, &world, list, sizeof list, &problems);
    env_int(PORT, 1024, 65535, &port, list, sizeof list, &problems);
    env_int(TIMEOUT, 1, 86400, &timeout_s, list, sizeof list, &problems);
    if (has_rank == 1 && has_world == 1 && rank >= world) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%srank %ld is not below the world size %ld", problems ? "; " : "",
                 rank, world);
        problems++;
    }
    if (problems == 0 && port + 1 + COMM_NCLASSES * world > 65535) {
        snprintf(list, sizeof list, "MASTER_PORT=%ld leaves no room for %ld ranks x %d class ports", port, world,
                 COMM_NCLASSES);
        problems++;
    }
    if (problems > 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "environment: %s", list);
    const char *addr = getenv("MASTER_ADDR");
    *o = (comm_options){
        .rank = (int)rank, .world = (int)world, .master_port = (int)port, .timeout_ms = (int)(timeout_s * 1000)};
    snprintf(o->master_addr, sizeof o->master_addr, "%s", addr != NULL && addr[0] ? addr : "127.0.0.1");
    const char *job = getenv("WANCP_JOB_ID");
    if (job != NULL && job[0] != 0) {
        char *end;
        o->job_id = strtoull(job, &end, 10);
        if (*end != 0)
            return wancp_fail(err, errlen, WANCP_ERR_INPUT, "environment: WANCP_JOB_ID='%s' is not a number", job);
    } else { /* the same on every rank of one launch */
        uint64_t h = 1469598103934665603ull;
        char key[128];
        snprintf(key, sizeof key, "%s:%d/%d", o->master_addr, o->master_port, o->world);
        for (const char *p = key; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        o->job_id = h;
    }
    return WANCP_OK;
}
