#ifndef WANCP_TEST_CPU_H
#define WANCP_TEST_CPU_H

#include "../core/ops/ops.h"

#include <string.h>

/* The cpu backend as the unit tests use it, made once: one host thread, so no worker of the
 * loops' pool exists to be lost in a rank forked after it (a forked child has only the thread
 * that forked, and would wait on the missing workers forever). */
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
