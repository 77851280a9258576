#ifndef WANCP_LAUNCH_LOCAL_H
#define WANCP_LAUNCH_LOCAL_H

/*
 * Starts ranks copies of this executable with child_argv (NULL-terminated, argv[0] first),
 * each with RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT and one
 * WANCP_JOB_ID, and watches them through the one launcher (ranks.h): when one fails, the
 * others are stopped by its sequence and the failure is named; Ctrl-C is passed to every
 * rank. Returns 0
 * when every rank exited 0, else 1. For development on one host; shaped, namespaced
 * launches belong to the harness's run.
 */
int launch_local_ranks(const char *cmd, int ranks, char **child_argv);

#endif
