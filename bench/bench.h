/* bench.h -- the clock, the comparison, the median and the random stream
 * the benchmark programs share.
 * Header-only: each benchmark is its own executable. */
#ifndef LR_BENCH_H
#define LR_BENCH_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort() order of doubles, ascending. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the `n` values at `v` (n > 0), which it sorts in place. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A xorshift64 stream: deterministic synthetic data; a program may seed it
 * by setting bench_rng (never 0). */
static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next_u64(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return bench_rng;
}

#endif
