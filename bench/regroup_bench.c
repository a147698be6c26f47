/* regroup_bench.c -- what a dense store's regrouping costs the append that
 * triggers it.
 *
 *   regroup_bench [--records N] [--dim D] [--topics T] [--store PATH] [--seed S]
 *
 * Appends N records (default 100,000) of dimension D (default 384) one by
 * one to a dense store that starts empty (PATH, default ":memory:", so the
 * figures are the library's work without SQLite's fsync; a file store adds
 * one fsync per append). An existing non-empty file at PATH is refused:
 * the store must start empty for the figures to mean what they say. The
 * vectors are T (default 256) random topic centres plus noise, so the
 * groups have something to find. Prints each
 * append that regrouped the store (its size, the groups it got, the time),
 * the median and 99th percentile of the other appends, the total, the
 * regroups' time as a ratio to the other appends' (the anchor: appending
 * without regrouping), and lr__groups_build_dense timed directly on the
 * final copy (the median of three), which is what the next regroup would
 * cost.
 *
 * --writer adds a second thread that appends to the same handle all along,
 * one append per millisecond (as the gateway's feedback requests do beside
 * each other, at a brisk pace), and prints
 * how long its appends took: the median, and the longest, which is the
 * longest any feedback waited for a regroup. Use a file store for it (an
 * in-memory one is rebuilt under the writer lock).
 *
 * --defer opens the store as the gateway does (defer_reweigh) and adds a
 * thread that calls lr_store_refresh() every 100 ms, as the gateway's
 * refresh worker does: the regrouping then runs there, and the appends
 * print as regrouping none of it.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "groups.h"
#include "store.h"
#include "bench.h"

static double uniform(void)
{
    return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
}
static double gaussian(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* The second writer (--writer): appends until told to stop. */
struct writer {
    struct lr_store *st;
    size_t dim;
    atomic_int stop;
    double *took; /* each append's seconds */
    size_t n, cap;
    int failed;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    uint64_t x = 0x9E3779B97F4A7C15u;
    float *v = malloc(w->dim * sizeof(*v));
    char query[64];
    while (v && !atomic_load(&w->stop) && w->n < w->cap) {
        for (size_t d = 0; d < w->dim; d++)
            v[d] = (float)((double)(xorshift64(&x) >> 11) / 9007199254740992.0 - 0.5);
        snprintf(query, sizeof(query), "feedback %zu", w->n);
        struct lr_outcome o = {"m", 1.0, 10};
        struct lr_record r = {query, 5, NULL, &o, 1};
        struct lr_error err;
        double t0 = now();
        if (lr_store_add(w->st, &r, v, w->dim, &err) != 0) {
            fprintf(stderr, "regroup_bench: writer: %s\n", err.message);
            w->failed = 1;
            break;
        }
        w->took[w->n++] = now() - t0;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    free(v);
    return NULL;
}

/* --defer: the gateway's refresh worker. */
struct refresher {
    struct lr_store *st;
    atomic_int stop;
    int failed;
};

static void *refresher_run(void *arg)
{
    struct refresher *r = arg;
    while (!atomic_load(&r->stop)) {
        struct lr_error err;
        if (lr_store_refresh(r->st, NULL, &err) != 0) {
            fprintf(stderr, "regroup_bench: refresh: %s\n", err.message);
            r->failed = 1;
            break;
        }
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    return NULL;
}

static long arg_long(const char *flag, const char *v, long lo, long hi)
{
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "regroup_bench: %s expects a number in [%ld, %ld]\n", flag, lo, hi);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    size_t n = 100000, dim = 384, topics = 256;
    const char *path = ":memory:";
    int with_writer = 0, defer = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--writer") == 0 || strcmp(a, "--defer") == 0) {
            *(a[2] == 'w' ? &with_writer : &defer) = 1;
            continue;
        }
        if (strcmp(a, "--records") == 0)
            n = (size_t)arg_long(a, v, 1, 10000000);
        else if (strcmp(a, "--dim") == 0)
            dim = (size_t)arg_long(a, v, 1, 65536);
        else if (strcmp(a, "--topics") == 0)
            topics = (size_t)arg_long(a, v, 1, 100000);
        else if (strcmp(a, "--store") == 0 && v)
            path = v;
        else if (strcmp(a, "--seed") == 0)
            bench_rng = (uint64_t)arg_long(a, v, 1, 1L << 62);
        else {
            fprintf(stderr, "usage: regroup_bench [--records N] [--dim D] [--topics T] "
                            "[--store PATH] [--seed S] [--writer] [--defer]\n");
            return 2;
        }
        i++;
    }

    float *centre = malloc(topics * dim * sizeof(*centre));
    float *v = malloc(dim * sizeof(*v));
    double *plain = malloc(n * sizeof(*plain));
    if (!centre || !v || !plain) {
        fprintf(stderr, "regroup_bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < topics * dim; i++)
        centre[i] = (float)gaussian();

    struct stat sb;
    if (strcmp(path, ":memory:") != 0 && stat(path, &sb) == 0 && sb.st_size > 0) {
        fprintf(stderr,
                "regroup_bench: %s exists and is not empty; the store must start empty: "
                "remove it or name a new file\n",
                path);
        return 2;
    }

    struct lr_store *st = NULL;
    struct lr_error err;
    struct lr_store_options so = {"openai:bench", (int)dim, 0, 0, 0, defer};
    if (lr_store_open(path, &so, &st, &err) != 0) {
        fprintf(stderr, "regroup_bench: %s\n", err.message);
        return 1;
    }
    printf("%zu appends of dimension %zu (%zu topics) to %s\n", n, dim, topics, path);
    printf("%10s %8s %12s\n", "records", "groups", "append ms");

    struct writer w = {.st = st, .dim = dim, .cap = 4 * n + 16};
    struct refresher rf = {.st = st};
    pthread_t wt, rt;
    if (defer && pthread_create(&rt, NULL, refresher_run, &rf) != 0) {
        fprintf(stderr, "regroup_bench: cannot start the refresher\n");
        return 1;
    }
    if (with_writer) {
        if (!(w.took = malloc(w.cap * sizeof(*w.took))) ||
            pthread_create(&wt, NULL, writer_run, &w) != 0) {
            fprintf(stderr, "regroup_bench: cannot start the writer\n");
            return 1;
        }
    }

    size_t n_plain = 0, regroups = 0;
    const float *centroids = NULL;
    double total = 0.0, regroup_total = 0.0;
    char query[64];
    for (size_t i = 0; i < n; i++) {
        const float *c = centre + (next_u64() % topics) * dim;
        for (size_t d = 0; d < dim; d++)
            v[d] = c[d] + 0.8f * (float)gaussian();
        snprintf(query, sizeof(query), "query %zu", i);
        struct lr_outcome o = {"m", (double)(next_u64() % 2), 10};
        struct lr_record r = {query, 5, NULL, &o, 1};
        double t0 = now();
        if (lr_store_add(st, &r, v, dim, &err) != 0) {
            fprintf(stderr, "regroup_bench: record %zu: %s\n", i, err.message);
            return 1;
        }
        double dt = now() - t0;
        total += dt;
        /* A regroup swaps in centroids built (allocated) before the old
         * ones were freed, so their address changes; a plain append leaves
         * them alone. */
        lr__store_rdlock(st);
        const struct lr__groups *g = &lr__store_hist(st)->groups;
        int regrouped = g->cdense != centroids;
        centroids = g->cdense;
        uint32_t n_groups = g->n;
        size_t n_now = lr__store_hist(st)->n;
        lr__store_unlock(st);
        if (regrouped) {
            regroups++;
            regroup_total += dt;
            printf("%10zu %8u %12.1f\n", n_now, n_groups, dt * 1e3);
        } else {
            plain[n_plain++] = dt;
        }
    }
    if (defer) {
        atomic_store(&rf.stop, 1);
        pthread_join(rt, NULL);
        if (rf.failed)
            return 1;
    }
    if (with_writer) {
        atomic_store(&w.stop, 1);
        pthread_join(wt, NULL);
        if (w.failed || w.n == 0)
            return 1;
        qsort(w.took, w.n, sizeof(*w.took), cmp_double);
        printf("writer: %zu appends beside, p50 %.1f us, p99 %.1f us, longest %.1f ms\n", w.n,
               w.took[w.n / 2] * 1e6, w.took[w.n * 99 / 100] * 1e6, w.took[w.n - 1] * 1e3);
        free(w.took);
    }
    qsort(plain, n_plain, sizeof(*plain), cmp_double);
    printf("other appends: p50 %.1f us, p99 %.1f us, max %.1f ms\n", plain[n_plain / 2] * 1e6,
           plain[n_plain * 99 / 100] * 1e6, plain[n_plain - 1] * 1e3);
    printf("%zu regroups: %.2f s of %.2f s of appending (%.1f us per append)\n", regroups,
           regroup_total, total, regroup_total / (double)n * 1e6);
    printf("regroups against the other appends: %.2fx their time\n",
           regroup_total / (total - regroup_total));

    /* The build alone on the final copy, as the last regroup ran it. */
    double runs[3];
    lr__store_rdlock(st);
    const struct lr__hist *h = lr__store_hist(st);
    size_t n_final = h->n; /* with --writer, more than the N appended here */
    for (int k = 0; k < 3; k++) {
        struct lr__groups g;
        double t0 = now();
        if (lr__groups_build_dense(&g, h, h->didx.m, h->didx.dim, lr__groups_count_for(h->n), 1)) {
            fprintf(stderr, "regroup_bench: out of memory building groups\n");
            return 1;
        }
        runs[k] = now() - t0;
        lr__groups_free(&g);
    }
    lr__store_unlock(st);
    printf("lr__groups_build_dense at %zu records", n_final);
    if (n_final != n)
        printf(" (%zu appended by the main thread, %zu by the writer)", n, n_final - n);
    printf(": %.1f ms (median of 3)\n", median(runs, 3) * 1e3);
    lr_store_free(st);
    free(centre);
    free(v);
    free(plain);
    return 0;
}
