/* parallel.h -- splitting independent per-item work over a few threads.
 *
 * lr__parallel_run() cuts [0, n) into `chunks` contiguous ranges, chunk w
 * being [n * w / chunks, n * (w + 1) / chunks), and calls fn once per chunk:
 * chunk 0 on the calling thread, each other one on a thread of its own. The
 * cut depends only on n and chunks, never on timing, so a caller that keeps
 * per-chunk partial results (indexed by the chunk number it is given) and
 * merges them in chunk order gets the same answer on every run; a caller
 * whose items are independent gets the answer of one thread. When a thread
 * cannot be started its chunk runs on the calling thread instead (no error:
 * only the time changes).
 *
 * Threads: fn runs concurrently with itself; it must write only what its
 * chunk owns. lr__parallel_run() returns after every chunk has finished.
 */
#ifndef LR_PARALLEL_H
#define LR_PARALLEL_H

#include <stddef.h>

/* At most this many threads work on one job. */
#define LR__PARALLEL_MAX_THREADS 8

typedef void (*lr__parallel_fn)(void *ctx, size_t begin, size_t end, unsigned chunk);

/* The default thread count: the CPUs the process may run on (its
 * affinity mask), at least 1, at most LR__PARALLEL_MAX_THREADS. */
unsigned lr__parallel_default_threads(void);

/* How many chunks to cut n items into for `threads` threads (0: the
 * default), so that every chunk holds at least min_per_chunk items: 1 when
 * n is small, never more than LR__PARALLEL_MAX_THREADS. */
unsigned lr__parallel_chunks(size_t n, unsigned threads, size_t min_per_chunk);

/* Run fn over [0, n) in `chunks` chunks (see above); chunks is clamped to
 * [1, LR__PARALLEL_MAX_THREADS]. */
void lr__parallel_run(size_t n, unsigned chunks, lr__parallel_fn fn, void *ctx);

#endif /* LR_PARALLEL_H */
