#ifndef WANCP_TEST_CPU_H
#define WANCP_TEST_CPU_H

#include "../core/ops/ops.h"

#include <string.h>

/* The cpu backend as the unit tests use it, made once, with one host thread: the tests fork
 * ranks and run beside one another, where more threads would only contend for the cores.
 * (A rank forked from a process with pool workers starts with none: thread_pool.h.) */
static inline const ops *test_cpu(void)
{
    static const ops *made;
    if (made == NULL) {
        ops_options one_thread;
        memset(&one_thread, 0, sizeof one_thread);
        one_thread.cpu_threads = 1;
        made = ops_make("cpu", &one_thread, NULL, 0);
    }
    return made;
}

#endif
