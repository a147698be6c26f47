/* dense_bench.c -- exact kNN over a dense store (a remote embedder's
 * vectors) as the smart router searches it, against a named anchor run
 * side by side in the same process: the flat scan, every row scored with
 * lr__dense_dot into the same top-k heap (what the dense index did before
 * it screened rows through its 8-bit copy). Both give the same neighbours
 * and similarities, to the bit; the bench checks that on every query.
 *
 * Synthetic unit vectors, two corpora:
 *   topics  shaped like sentence embeddings: a direction every vector
 *           shares (unrelated texts have cosine about 0.4), one of 256
 *           topics (same topic about 0.75), and noise of its own
 *   iso     independent Gaussian coordinates: no structure, cosines near 0
 * Each round times every query once with each method, alternating method
 * by round; the median over rounds of each method's p50 is printed, with
 * the median of the rounds' ratios. Then the queries are searched a few to
 * a pass over the rows, as a smart batch over a dense store searches them,
 * against one by one (alternating by round, same check).
 *
 *   dense_bench [--corpus topics|iso] [--records N] [--dim D]
 *               [--queries Q] [--rounds R] [--k K] [--no-centre]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "index.h"
#include "llmroute.h"
#include "smart.h"

static double gauss(void)
{
    double u = ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void unit_gauss(double *v, size_t dim)
{
    double s = 0.0;
    for (size_t j = 0; j < dim; j++) {
        v[j] = gauss();
        s += v[j] * v[j];
    }
    for (size_t j = 0; j < dim; j++)
        v[j] /= sqrt(s);
}

#define TOPICS 256

/* One vector of the corpus into out (unit length). */
static void make_vector(int topics, const double *common, const double *centres, size_t dim,
                        double *noise, float *out)
{
    unit_gauss(noise, dim);
    const double *c = centres + (size_t)(next_u64() % TOPICS) * dim;
    double s = 0.0;
    for (size_t j = 0; j < dim; j++) {
        double x = topics ? 0.62 * common[j] + 0.6 * c[j] + 0.5 * noise[j] : noise[j];
        out[j] = (float)x;
        s += x * x;
    }
    for (size_t j = 0; j < dim; j++)
        out[j] = (float)(out[j] / sqrt(s));
}

int main(int argc, char **argv)
{
    const char *corpus = "topics";
    size_t n = 100000, dim = 384, nq = 200, k = 16;
    int rounds = 5, centre = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-centre") == 0) {
            centre = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "dense_bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--corpus") == 0)
            corpus = v;
        else if (strcmp(a, "--records") == 0)
            n = strtoul(v, NULL, 10);
        else if (strcmp(a, "--dim") == 0)
            dim = strtoul(v, NULL, 10);
        else if (strcmp(a, "--queries") == 0)
            nq = strtoul(v, NULL, 10);
        else if (strcmp(a, "--rounds") == 0)
            rounds = atoi(v);
        else if (strcmp(a, "--k") == 0)
            k = strtoul(v, NULL, 10);
        else {
            fprintf(stderr, "dense_bench: unknown option %s\n", a);
            return 2;
        }
    }
    int topics = strcmp(corpus, "topics") == 0;
    if ((!topics && strcmp(corpus, "iso") != 0) || n == 0 || dim == 0 || nq == 0 || k == 0 ||
        rounds < 1) {
        fprintf(stderr, "dense_bench: bad arguments\n");
        return 2;
    }

    double *common = malloc(dim * sizeof(double)), *noise = malloc(dim * sizeof(double));
    double *centres = malloc(TOPICS * dim * sizeof(double));
    float *row = malloc(dim * sizeof(float)), *qs = malloc(nq * dim * sizeof(float));
    struct lr__neighbor *got = malloc(k * sizeof(*got)), *want = malloc(k * sizeof(*want));
    double *ts = malloc(nq * sizeof(double)), *tf = malloc(nq * sizeof(double));
    double *p_screen = malloc(rounds * sizeof(double)), *p_flat = malloc(rounds * sizeof(double));
    double *ratio = malloc(rounds * sizeof(double));
    struct lr__dindex idx = {0};
    idx.dim = dim;
    if (!common || !noise || !centres || !row || !qs || !got || !want || !ts || !tf ||
        !p_screen || !p_flat || !ratio || lr__dindex_reserve(&idx, n)) {
        fprintf(stderr, "dense_bench: out of memory\n");
        return 1;
    }
    unit_gauss(common, dim);
    for (size_t t = 0; t < TOPICS; t++)
        unit_gauss(centres + t * dim, dim);
    for (size_t r = 0; r < n; r++) {
        make_vector(topics, common, centres, dim, noise, row);
        lr__dindex_add(&idx, row);
    }
    if (centre)
        lr__dindex_recentre(&idx);
    for (size_t i = 0; i < nq; i++)
        make_vector(topics, common, centres, dim, noise, qs + i * dim);

    size_t scored = 0;
    for (int r = 0; r < rounds; r++) {
        for (int pass = 0; pass < 2; pass++) {
            int screen = (pass == 0) == (r % 2 == 0);
            for (size_t i = 0; i < nq; i++) {
                const float *q = qs + i * dim;
                size_t c = 0;
                double a = now();
                if (screen) {
                    size_t s = 0;
                    if (lr__dindex_knn_scored(&idx, q, 1, k, got, &c, &s)) {
                        fprintf(stderr, "dense_bench: out of memory\n");
                        return 1;
                    }
                    ts[i] = now() - a;
                    if (r == 0)
                        scored += s;
                } else {
                    c = lr__dindex_knn_flat(&idx, q, k, want);
                    tf[i] = now() - a;
                }
            }
        }
        /* Same neighbours, same bits. */
        for (size_t i = 0; i < nq; i++) {
            size_t c = 0, cw = lr__dindex_knn_flat(&idx, qs + i * dim, k, want);
            lr__dindex_knn_scored(&idx, qs + i * dim, 1, k, got, &c, NULL);
            if (c != cw || memcmp(got, want, c * sizeof(*got)) != 0) {
                fprintf(stderr, "dense_bench: query %zu: the screened search differs\n", i);
                return 1;
            }
        }
        p_screen[r] = median(ts, (int)nq);
        p_flat[r] = median(tf, (int)nq);
        ratio[r] = p_screen[r] / p_flat[r];
    }
    /* A smart batch over a dense store searches LR__SMART_SHARED_SEARCH
     * queries a pass (lr__smart_knn_batch): that against one by one. */
    struct lr__neighbor *gb = malloc(nq * k * sizeof(*gb)), *g1 = malloc(nq * k * sizeof(*g1));
    size_t *cb = malloc(nq * sizeof(*cb)), *c1 = malloc(nq * sizeof(*c1));
    double *t_shared = malloc(rounds * sizeof(double)), *t_one = malloc(rounds * sizeof(double));
    double *bratio = malloc(rounds * sizeof(double));
    if (!gb || !g1 || !cb || !c1 || !t_shared || !t_one || !bratio) {
        fprintf(stderr, "dense_bench: out of memory\n");
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        for (int pass = 0; pass < 2; pass++) {
            int shared = (pass == 0) == (r % 2 == 0);
            double a = now();
            for (size_t i0 = 0; i0 < nq; i0 += LR__SMART_SHARED_SEARCH) {
                size_t c = nq - i0 < LR__SMART_SHARED_SEARCH ? nq - i0 : LR__SMART_SHARED_SEARCH;
                for (size_t i = 0; i < (shared ? 1 : c); i++)
                    if (lr__dindex_knn_batch(&idx, qs + (i0 + i) * dim, shared ? c : 1, k,
                                             (shared ? gb : g1) + (i0 + i) * k,
                                             (shared ? cb : c1) + i0 + i)) {
                        fprintf(stderr, "dense_bench: out of memory\n");
                        return 1;
                    }
            }
            (shared ? t_shared : t_one)[r] = now() - a;
        }
        for (size_t i = 0; i < nq; i++)
            if (cb[i] != c1[i] || memcmp(gb + i * k, g1 + i * k, c1[i] * sizeof(*gb)) != 0) {
                fprintf(stderr, "dense_bench: query %zu: the shared search differs\n", i);
                return 1;
            }
        bratio[r] = t_shared[r] / t_one[r];
    }

    printf("corpus %s: %zu rows of %zu, %zu queries, k=%zu, centre %s\n", corpus, n, dim, nq, k,
           centre ? "on" : "off");
    printf("rows scored exactly: mean %.1f per query\n", (double)scored / (double)nq);
    printf("kNN p50, median of %d rounds: screened %.3f ms, flat scan %.3f ms; "
           "median ratio %.3f (%.1fx faster); results identical on every query\n",
           rounds, median(p_screen, rounds) * 1e3, median(p_flat, rounds) * 1e3,
           median(ratio, rounds), 1.0 / median(ratio, rounds));
    printf("%d queries to a pass over the rows, as a smart batch searches them: %.3f ms a "
           "query against %.3f one by one, median ratio %.3f; results identical\n",
           LR__SMART_SHARED_SEARCH, median(t_shared, rounds) * 1e3 / (double)nq,
           median(t_one, rounds) * 1e3 / (double)nq, median(bratio, rounds));
    lr__dindex_free(&idx);
    free(common);
    free(noise);
    free(centres);
    free(row);
    free(qs);
    free(got);
    free(want);
    free(ts);
    free(tf);
    free(p_screen);
    free(p_flat);
    free(ratio);
    free(gb);
    free(g1);
    free(cb);
    free(c1);
    free(t_shared);
    free(t_one);
    free(bratio);
    return 0;
}
