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

/* A xorshift64 stream over the state *s (never 0): deterministic synthetic
 * data. next_u64() steps the program's stream, which a program may seed by
 * setting bench_rng; a thread of its own keeps its own state. */
static inline uint64_t xorshift64(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next_u64(void)
{
    return xorshift64(&bench_rng);
}

#endif
