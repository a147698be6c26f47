/* index.c -- exact kNN: an inverted index for sparse tfidf-v1 vectors and a
 * flat SIMD scan for dense vectors (see index.h).
 *
 * Memory: a sparse index built at once keeps all postings in one block; a
 * list that grows afterwards (an appended document) moves to its own
 * allocation, so appends cost O(features) and never rebuild anything.
 *
 * Threads: searches read only; adds and reserves need searches excluded.
 */
#include "index.h"

#include <stdlib.h>
#include <string.h>

#include "llmroute.h"

/* ==== Top-k selection ==== */

void lr__topk_init(struct lr__topk *t, struct lr__neighbor *buf, size_t k)
{
    t->h = buf;
    t->n = 0;
    t->k = k;
}

/* The heap keeps its worst element at the root. */
static int worse(const struct lr__neighbor *a, const struct lr__neighbor *b)
{
    return lr__neighbor_better(b->doc, b->sim, a->doc, a->sim);
}

static void sift_down(struct lr__neighbor *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m]))
            m = l;
        if (r < n && worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct lr__neighbor x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

void lr__topk_push(struct lr__topk *t, uint32_t doc, float sim)
{
    struct lr__neighbor *h = t->h;
    if (t->k == 0)
        return;
    if (t->n < t->k) {
        size_t i = t->n++;
        h[i].doc = doc;
        h[i].sim = sim;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&h[i], &h[p]))
                break;
            struct lr__neighbor x = h[i];
            h[i] = h[p];
            h[p] = x;
            i = p;
        }
        return;
    }
    if (!lr__neighbor_better(doc, sim, h[0].doc, h[0].sim))
        return;
    h[0].doc = doc;
    h[0].sim = sim;
    sift_down(h, t->n, 0);
}

static int cmp_best_first(const void *a, const void *b)
{
    const struct lr__neighbor *x = a, *y = b;
    if (lr__neighbor_better(x->doc, x->sim, y->doc, y->sim))
        return -1;
    if (lr__neighbor_better(y->doc, y->sim, x->doc, x->sim))
        return 1;
    return 0;
}

size_t lr__topk_finish(struct lr__topk *t)
{
    qsort(t->h, t->n, sizeof(*t->h), cmp_best_first);
    return t->n;
}

/* ==== Sparse index ==== */

int lr__sindex_build(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                     uint32_t n)
{
    size_t total = n ? off[n] : 0;
    memset(idx, 0, sizeof(*idx));
    idx->lists = calloc(LR__TFIDF_SPACE, sizeof(*idx->lists));
    if (!idx->lists)
        return LR_ENOMEM;
    if (total > 0) {
        idx->block = malloc(total * sizeof(*idx->block));
        if (!idx->block) {
            free(idx->lists);
            idx->lists = NULL;
            return LR_ENOMEM;
        }
    }
    /* Counting sort from document-major to feature-major: count, place the
     * lists' starts, then fill in document order so every list is sorted. */
    for (size_t i = 0; i < total; i++)
        idx->lists[feats[i].id].n++;
    size_t at = 0;
    for (size_t f = 0; f < LR__TFIDF_SPACE; f++) {
        idx->lists[f].p = idx->block ? idx->block + at : NULL;
        at += idx->lists[f].n;
        idx->lists[f].n = 0;
    }
    for (uint32_t d = 0; d < n; d++) {
        for (size_t i = off[d]; i < off[d + 1]; i++) {
            struct lr__plist *l = &idx->lists[feats[i].id];
            l->p[l->n].doc = d;
            l->p[l->n].w = feats[i].w;
            l->n++;
        }
    }
    idx->ndocs = n;
    return 0;
}

void lr__sindex_free(struct lr__sindex *idx)
{
    if (!idx || !idx->lists) {
        if (idx)
            memset(idx, 0, sizeof(*idx));
        return;
    }
    for (size_t f = 0; f < LR__TFIDF_SPACE; f++)
        if (idx->lists[f].cap)
            free(idx->lists[f].p);
    free(idx->lists);
    free(idx->block);
    memset(idx, 0, sizeof(*idx));
}

int lr__sindex_reserve(struct lr__sindex *idx, const struct lr__feat *v, size_t n)
{
    if (!idx->lists) {
        idx->lists = calloc(LR__TFIDF_SPACE, sizeof(*idx->lists));
        if (!idx->lists)
            return LR_ENOMEM;
    }
    if (idx->ndocs == UINT32_MAX)
        return LR_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct lr__plist *l = &idx->lists[v[i].id];
        if (l->cap > l->n)
            continue;
        if (l->n >= UINT32_MAX / 2)
            return LR_ENOMEM;
        uint32_t cap = l->n < 4 ? 8 : l->n + l->n / 2;
        struct lr__posting *p = malloc((size_t)cap * sizeof(*p));
        if (!p)
            return LR_ENOMEM;
        if (l->n)
            memcpy(p, l->p, (size_t)l->n * sizeof(*p));
        if (l->cap)
            free(l->p);
        l->p = p;
        l->cap = cap;
    }
    return 0;
}

void lr__sindex_add(struct lr__sindex *idx, const struct lr__feat *v, size_t n)
{
    uint32_t d = idx->ndocs;
    for (size_t i = 0; i < n; i++) {
        struct lr__plist *l = &idx->lists[v[i].id];
        l->p[l->n].doc = d;
        l->p[l->n].w = v[i].w;
        l->n++;
    }
    idx->ndocs = d + 1;
}

void lr__knn_scratch_free(struct lr__knn_scratch *s)
{
    if (!s)
        return;
    free(s->acc);
    free(s->touched);
    memset(s, 0, sizeof(*s));
}

static int scratch_reserve(struct lr__knn_scratch *s, size_t n)
{
    if (s->cap >= n && s->acc)
        return 0;
    size_t cap = n < 1024 ? 1024 : n + n / 4;
    float *acc = calloc(cap, sizeof(*acc));
    uint32_t *touched = malloc(cap * sizeof(*touched));
    if (!acc || !touched) {
        free(acc);
        free(touched);
        return LR_ENOMEM;
    }
    free(s->acc);
    free(s->touched);
    s->acc = acc;
    s->touched = touched;
    s->cap = cap;
    return 0;
}

int lr__sindex_knn(const struct lr__sindex *idx, const struct lr__feat *q, size_t n, size_t k,
                   struct lr__knn_scratch *scratch, struct lr__neighbor *out)
{
    uint32_t ndocs = idx->ndocs;
    struct lr__topk top;
    size_t nt = 0;

    if (k > ndocs)
        k = ndocs;
    if (k == 0)
        return 0;
    if (scratch_reserve(scratch, ndocs) != 0)
        return LR_ENOMEM;
    float *acc = scratch->acc;
    uint32_t *touched = scratch->touched;

    /* Accumulate. Weights are positive, so a document's sum is > 0 from its
     * first shared feature on, and acc == 0 means "not yet touched". */
    if (idx->lists) {
        /* The list headers and the postings are scattered over a large
         * table: fetch them all first, so their cache misses overlap
         * instead of coming one after another. */
        for (size_t i = 0; i < n; i++)
            __builtin_prefetch(&idx->lists[q[i].id]);
        for (size_t i = 0; i < n; i++)
            __builtin_prefetch(idx->lists[q[i].id].p);
        for (size_t i = 0; i < n; i++) {
            const struct lr__plist *l = &idx->lists[q[i].id];
            const float qw = q[i].w;
            const struct lr__posting *p = l->p;
            for (uint32_t j = 0; j < l->n; j++) {
                uint32_t d = p[j].doc;
                if (acc[d] == 0.0f && nt < ndocs)
                    touched[nt++] = d;
                acc[d] += qw * p[j].w;
            }
        }
    }
    lr__topk_init(&top, out, k);
    for (size_t i = 0; i < nt; i++) {
        uint32_t d = touched[i];
        /* Most documents lose to the current k-th at once: test inline. */
        if (top.n == k && !lr__neighbor_better(d, acc[d], out[0].doc, out[0].sim))
            continue;
        lr__topk_push(&top, d, acc[d]);
    }
    /* Fewer than k documents share a feature: the rest rank at 0 in document
     * order, as a full scan would have them. */
    for (uint32_t d = 0; top.n < k && d < ndocs; d++)
        if (acc[d] == 0.0f)
            lr__topk_push(&top, d, 0.0f);
    for (size_t i = 0; i < nt; i++)
        acc[touched[i]] = 0.0f;
    return (int)lr__topk_finish(&top);
}

/* ==== Dense index ==== */

void lr__dindex_free(struct lr__dindex *idx)
{
    if (!idx)
        return;
    free(idx->m);
    idx->m = NULL;
    idx->n = idx->cap = 0;
}

int lr__dindex_reserve(struct lr__dindex *idx, size_t extra)
{
    if (idx->dim == 0)
        return LR_EINVAL;
    if (idx->n + extra <= idx->cap)
        return 0;
    size_t cap = idx->cap < 64 ? 64 : idx->cap + idx->cap / 2;
    if (cap < idx->n + extra)
        cap = idx->n + extra;
    if (cap > SIZE_MAX / sizeof(float) / idx->dim)
        return LR_ENOMEM;
    float *m = realloc(idx->m, cap * idx->dim * sizeof(float));
    if (!m)
        return LR_ENOMEM;
    idx->m = m;
    idx->cap = cap;
    return 0;
}

void lr__dindex_add(struct lr__dindex *idx, const float *v)
{
    memcpy(idx->m + idx->n * idx->dim, v, idx->dim * sizeof(float));
    idx->n++;
}

static float dot(const float *restrict a, const float *restrict b, size_t dim)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (size_t j = 0; j < dim; j++)
        s += a[j] * b[j];
    return s;
}

int lr__dindex_knn(const struct lr__dindex *idx, const float *q, size_t k,
                   struct lr__neighbor *out)
{
    size_t c = 0;
    int rc = lr__dindex_knn_batch(idx, q, 1, k, out, &c);
    return rc < 0 ? rc : (int)c;
}

#define DENSE_ROW_BLOCK 256

int lr__dindex_knn_batch(const struct lr__dindex *idx, const float *qs, size_t nq, size_t k,
                         struct lr__neighbor *out, size_t *counts)
{
    struct lr__topk stack_tops[16];
    struct lr__topk *tops = stack_tops;
    size_t kk = k < idx->n ? k : idx->n;

    if (nq > 16) {
        tops = malloc(nq * sizeof(*tops));
        if (!tops)
            return LR_ENOMEM;
    }
    for (size_t i = 0; i < nq; i++)
        lr__topk_init(&tops[i], out + i * k, kk);
    /* Rows in blocks that stay in cache while every query passes over them. */
    for (size_t r0 = 0; r0 < idx->n; r0 += DENSE_ROW_BLOCK) {
        size_t r1 = r0 + DENSE_ROW_BLOCK < idx->n ? r0 + DENSE_ROW_BLOCK : idx->n;
        for (size_t i = 0; i < nq; i++) {
            const float *q = qs + i * idx->dim;
            for (size_t r = r0; r < r1; r++)
                lr__topk_push(&tops[i], (uint32_t)r, dot(idx->m + r * idx->dim, q, idx->dim));
        }
    }
    for (size_t i = 0; i < nq; i++)
        counts[i] = lr__topk_finish(&tops[i]);
    if (tops != stack_tops)
        free(tops);
    return 0;
}
