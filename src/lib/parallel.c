/* parallel.c -- contiguous chunks of a job on short-lived threads (see
 * parallel.h).
 *
 * Threads are started per job and joined before it returns: the jobs are
 * rebuilds of the store's in-memory copy (hundreds of milliseconds and up),
 * against which starting a thread (tens of microseconds) is noise, and no
 * thread outlives the call that needed it.
 *
 * Threads: no shared state.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include "parallel.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

struct chunk_job {
    lr__parallel_fn fn;
    void *ctx;
    size_t begin, end;
    unsigned chunk;
};

static void *chunk_main(void *arg)
{
    struct chunk_job *j = arg;
    j->fn(j->ctx, j->begin, j->end, j->chunk);
    return NULL;
}

/* The CPUs this process may run on (taskset, a container's cpuset), else
 * the online ones. */
unsigned lr__parallel_default_threads(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                           : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > LR__PARALLEL_MAX_THREADS ? LR__PARALLEL_MAX_THREADS : (unsigned)n;
}

unsigned lr__parallel_chunks(size_t n, unsigned threads, size_t min_per_chunk)
{
    if (threads == 0)
        threads = lr__parallel_default_threads();
    if (threads > LR__PARALLEL_MAX_THREADS)
        threads = LR__PARALLEL_MAX_THREADS;
    if (min_per_chunk == 0)
        min_per_chunk = 1;
    size_t most = n / min_per_chunk;
    if (most < 1)
        return 1;
    return most < threads ? (unsigned)most : threads;
}

void lr__parallel_run(size_t n, unsigned chunks, lr__parallel_fn fn, void *ctx)
{
    struct chunk_job jobs[LR__PARALLEL_MAX_THREADS];
    pthread_t tid[LR__PARALLEL_MAX_THREADS];
    int started[LR__PARALLEL_MAX_THREADS] = {0};

    if (chunks < 1)
        chunks = 1;
    if (chunks > LR__PARALLEL_MAX_THREADS)
        chunks = LR__PARALLEL_MAX_THREADS;
    for (unsigned w = 0; w < chunks; w++)
        jobs[w] = (struct chunk_job){fn, ctx, n * w / chunks, n * (w + 1) / chunks, w};
    for (unsigned w = 1; w < chunks; w++)
        started[w] = pthread_create(&tid[w], NULL, chunk_main, &jobs[w]) == 0;
    chunk_main(&jobs[0]);
    /* A chunk whose thread could not start runs here. */
    for (unsigned w = 1; w < chunks; w++)
        if (!started[w])
            chunk_main(&jobs[w]);
    for (unsigned w = 1; w < chunks; w++)
        if (started[w])
            pthread_join(tid[w], NULL);
}
