#ifndef WANCP_THREAD_POOL_H
#define WANCP_THREAD_POOL_H

/*
 * A fixed set of worker threads for the loops that OpenBLAS does not parallelise for us: the
 * CPU backend's (attention blocks, the softmax of the LM head, the optimizer) and context
 * parallelism's codec stages on the host. On a 2-core machine a single-threaded loop leaves
 * half of it idle. It knows nothing of ops or models: any room of core/ may use it.
 *
 * pool_run(count, fn, ctx) calls fn(ctx, i) once for every i in [0, count), spread over the
 * workers and the calling thread, and returns when all are done. Which thread runs which i
 * varies, so callers make results independent of it (each i writes its own outputs; sums are
 * combined in i order afterwards), which keeps every result bitwise reproducible.
 */
#define POOL_MAX_THREADS 16

typedef void pool_task(void *ctx, int index);

/* Starts (or resizes to) threads - 1 workers; 1 runs everything on the caller. Not while a
 * pool_run is in progress. A process forked later starts with none (its own calls start
 * them): fork() does not copy the workers. */
void pool_set_threads(int threads);
int pool_threads(void);

void pool_run(int count, pool_task *fn, void *ctx);

#endif
