#include "thread_pool.h"

#include <pthread.h>
#include <stdatomic.h>

/* One job at a time: workers wait for a new generation, claim indices from a shared
 * counter, and the last one to finish wakes the caller. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t workers[POOL_MAX_THREADS];
    int nworkers;
    unsigned long generation;
    int quit;
    /* the current job */
    pool_task *fn;
    void *ctx;
    int count;
    atomic_int next;
    int busy; /* workers still inside the job */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void drain(pool_task *fn, void *ctx, int count)
{
    for (int i; (i = atomic_fetch_add(&pool.next, 1)) < count;)
        fn(ctx, i);
}

static void *worker(void *arg)
{
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen && !pool.quit)
            pthread_cond_wait(&pool.wake, &pool.lock);
        if (pool.quit)
            break;
        seen = pool.generation;
        pool_task *fn = pool.fn;
        void *ctx = pool.ctx;
        int count = pool.count;
        pthread_mutex_unlock(&pool.lock);
        drain(fn, ctx, count);
        pthread_mutex_lock(&pool.lock);
        if (--pool.busy == 0)
            pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.quit = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.nworkers; i++)
        pthread_join(pool.workers[i], NULL);
    pool.nworkers = 0;
    pool.quit = 0;
}

/* fork() copies only the thread that forks: a child of a process with workers has none, and
 * would wait for them forever in its first pool_run. The child starts with no workers (it
 * runs every job itself until pool_set_threads starts its own) and a fresh lock, which the
 * parent held across the fork so that no worker had it half-taken. */
static void before_fork(void) { pthread_mutex_lock(&pool.lock); }

static void after_fork_parent(void) { pthread_mutex_unlock(&pool.lock); }

static void after_fork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.nworkers = 0;
    pool.quit = 0;
}

static void watch_forks(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

void pool_set_threads(int threads)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watch_forks);
    if (threads < 1)
        threads = 1;
    if (threads > POOL_MAX_THREADS)
        threads = POOL_MAX_THREADS;
    if (threads - 1 == pool.nworkers)
        return;
    stop_workers();
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&pool.workers[i], NULL, worker, NULL) != 0)
            break; /* fewer workers: slower, still correct */
        pool.nworkers++;
    }
}

int pool_threads(void) { return pool.nworkers + 1; }

void pool_run(int count, pool_task *fn, void *ctx)
{
    if (pool.nworkers == 0 || count <= 1) {
        for (int i = 0; i < count; i++)
            fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.count = count;
    atomic_store(&pool.next, 0);
    pool.busy = pool.nworkers;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    drain(fn, ctx, count);
    pthread_mutex_lock(&pool.lock);
    while (pool.busy > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}
