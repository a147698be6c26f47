/* twins.c -- near-duplicate pairs of the history and each model's slope
 * over them (see twins.h for what they are for).
 *
 * The searches (one a sampled record: its two nearest, itself among them)
 * are split over threads by contiguous chunks (parallel.h), each writing
 * only its own items' twins; the sums are then taken on the calling thread
 * in record order, so the slopes are the same whatever the thread count.
 *
 * Threads: see twins.h.
 */
#include "twins.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "llmroute.h"
#include "parallel.h"
#include "store.h"

/* Searches below which a chunk is not worth a thread. */
#define CHUNK_MIN 256
#define NO_TWIN UINT32_MAX

struct job {
    const struct lr__hist *h;
    const struct lr__feat *feats; /* sparse, or NULL: dense */
    const size_t *off;
    size_t n, step; /* sampled records: i * step for i < n */
    uint32_t *twin; /* per sampled record: its twin, or NO_TWIN */
    int failed[LR__PARALLEL_MAX_THREADS];
};

/* The best of a search's results that is not the record itself. */
static uint32_t pick(const struct lr__neighbor *nb, int got, uint32_t self)
{
    for (int i = 0; i < got; i++)
        if (nb[i].doc != self)
            return lr__twins_is_twin(nb[i].sim) ? nb[i].doc : NO_TWIN;
    return NO_TWIN;
}

static void search_chunk(void *ctx, size_t begin, size_t end, unsigned chunk)
{
    struct job *j = ctx;
    struct lr__knn_scratch scratch;
    struct lr__neighbor nb[2];
    memset(&scratch, 0, sizeof(scratch));
    for (size_t i = begin; i < end; i++) {
        uint32_t rec = (uint32_t)(i * j->step);
        int got;
        if (j->feats)
            got = lr__sindex_knn(&j->h->sidx, j->feats + j->off[rec],
                                 j->off[rec + 1] - j->off[rec], 2, &scratch, nb);
        else
            got = lr__dindex_knn(&j->h->didx, j->h->didx.m + (size_t)rec * j->h->didx.dim, 2, nb);
        if (got < 0) {
            j->failed[chunk] = 1;
            break;
        }
        j->twin[i] = pick(nb, got, rec);
    }
    lr__knn_scratch_free(&scratch);
}

/* Per model: pairs, sums of a, b, a*b and b*b (a the record's correctness,
 * b its twin's). */
struct sums {
    double n, a, b, ab, bb;
};

static int build(struct lr__twins *t, const struct lr__hist *h, const struct lr__feat *feats,
                 const size_t *off, unsigned threads)
{
    struct job j;
    struct sums *s = NULL;
    size_t models = h->models.n;

    lr__twins_free(t);
    if (h->n < 2 || models == 0)
        return 0;
    memset(&j, 0, sizeof(j));
    j.h = h;
    j.feats = feats;
    j.off = off;
    j.step = (h->n + LR__TWINS_SAMPLE - 1) / LR__TWINS_SAMPLE;
    j.n = (h->n + j.step - 1) / j.step;
    j.twin = malloc(j.n * sizeof(*j.twin));
    s = calloc(models, sizeof(*s));
    t->beta = malloc(models * sizeof(*t->beta));
    t->mean = malloc(models * sizeof(*t->mean));
    if (!j.twin || !s || !t->beta || !t->mean)
        goto nomem;
    lr__parallel_run(j.n, lr__parallel_chunks(j.n, threads, CHUNK_MIN), search_chunk, &j);
    for (unsigned c = 0; c < LR__PARALLEL_MAX_THREADS; c++)
        if (j.failed[c])
            goto nomem;

    for (size_t i = 0; i < j.n; i++) {
        uint32_t rec = (uint32_t)(i * j.step), tw = j.twin[i];
        size_t no;
        const struct lr__outcome *o;
        if (tw == NO_TWIN)
            continue;
        t->pairs++;
        o = lr__hist_outcomes(h, rec, &no);
        for (size_t x = 0; x < no; x++) {
            const struct lr__outcome *ob = lr__hist_outcome_of(h, tw, o[x].model);
            struct sums *m = &s[o[x].model];
            double a = o[x].correctness, b;
            if (!ob)
                continue;
            b = ob->correctness;
            m->n += 1.0;
            m->a += a;
            m->b += b;
            m->ab += a * b;
            m->bb += b * b;
        }
    }
    for (size_t m = 0; m < models; m++) {
        double n = s[m].n, mb = n > 0.0 ? s[m].b / n : 0.0;
        double cov = s[m].ab - n * (s[m].a / (n > 0.0 ? n : 1.0)) * mb;
        double var = s[m].bb - n * mb * mb;
        t->mean[m] = mb;
        t->beta[m] = n >= LR__TWINS_MIN_PAIRS && var > 1e-9 * n ? cov / var : NAN;
    }
    t->models = models;
    free(j.twin);
    free(s);
    return 0;
nomem:
    free(j.twin);
    free(s);
    lr__twins_free(t);
    return LR_ENOMEM;
}

int lr__twins_build_sparse(struct lr__twins *t, const struct lr__hist *h,
                           const struct lr__feat *feats, const size_t *off, unsigned threads)
{
    return build(t, h, feats, off, threads);
}

int lr__twins_build_dense(struct lr__twins *t, const struct lr__hist *h, unsigned threads)
{
    return build(t, h, NULL, NULL, threads);
}

void lr__twins_free(struct lr__twins *t)
{
    free(t->beta);
    free(t->mean);
    memset(t, 0, sizeof(*t));
}
