/* test_index.c -- exact kNN: the inverted index (with its pruning, on
 * data shaped like few-shot prompts, and with pruning forced everywhere or
 * turned off) and the dense scan agree with brute-force cosine, ties go to
 * the lower document, appends are searched. Single-threaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static int cmp_id(const void *a, const void *b)
{
    uint32_t x = ((const struct lr__feat *)a)->id, y = ((const struct lr__feat *)b)->id;
    return (x > y) - (x < y);
}

static int has_id(const struct lr__feat *v, size_t m, uint32_t id)
{
    for (size_t j = 0; j < m; j++)
        if (v[j].id == id)
            return 1;
    return 0;
}

/* v[0 .. m) scaled to unit length and sorted by id; returns m. */
static size_t unit_sorted(struct lr__feat *v, size_t m)
{
    double s = 0;
    for (size_t j = 0; j < m; j++)
        s += (double)v[j].w * v[j].w;
    for (size_t j = 0; j < m; j++)
        v[j].w = (float)(v[j].w / sqrt(s));
    qsort(v, m, sizeof(*v), cmp_id);
    return m;
}

/* A random sparse unit vector over a skewed vocabulary of `vocab` ids. */
static size_t random_sparse(struct lr__feat *v, size_t maxn, uint32_t vocab)
{
    size_t n = 1 + rnd() % maxn, m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = rnd() % vocab, b = rnd() % vocab;
        uint32_t id = (a < b ? a : b) * 7919u % LR__TFIDF_SPACE; /* skew toward small */
        if (has_id(v, m, id))
            continue;
        v[m].id = id;
        v[m].w = 0.05f + (float)(rnd() % 1000) / 1000.0f;
        m++;
    }
    return unit_sorted(v, m);
}

static float sparse_dot(const struct lr__feat *a, size_t na, const struct lr__feat *b, size_t nb)
{
    double s = 0;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i].id == b[j].id)
            s += (double)a[i++].w * b[j++].w;
        else if (a[i].id < b[j].id)
            i++;
        else
            j++;
    }
    return (float)s;
}

static int cmp_nb(const void *a, const void *b)
{
    const struct lr__neighbor *x = a, *y = b;
    if (lr__neighbor_better(x->doc, x->sim, y->doc, y->sim))
        return -1;
    return lr__neighbor_better(y->doc, y->sim, x->doc, x->sim) ? 1 : 0;
}

/* out must match the brute-force top k: same similarities in order, and
 * every returned document truly that close (floating sums may differ in
 * the last bits, which may swap near-equal neighbours). */
static void check_topk(const struct lr__neighbor *got, int ngot, struct lr__neighbor *all,
                       size_t n, size_t k)
{
    qsort(all, n, sizeof(*all), cmp_nb);
    size_t want = k < n ? k : n;
    assert_int_equal(ngot, (int)want);
    for (size_t i = 0; i < want; i++) {
        assert_true(fabsf(got[i].sim - all[i].sim) < 1e-5f);
        float truth = -1;
        for (size_t j = 0; j < n; j++)
            if (all[j].doc == got[i].doc)
                truth = all[j].sim;
        assert_true(fabsf(truth - got[i].sim) < 1e-5f);
        if (i)
            assert_true(lr__neighbor_better(got[i - 1].doc, got[i - 1].sim, got[i].doc,
                                            got[i].sim));
    }
}

#define NDOCS 3000
#define MAXF 40

static void sparse_knn_matches_brute_force(void **st)
{
    (void)st;
    struct lr__feat *feats = malloc((size_t)NDOCS * MAXF * sizeof(*feats));
    size_t *off = malloc((NDOCS + 1) * sizeof(*off));
    struct lr__neighbor *all = malloc(NDOCS * sizeof(*all)), got[50];
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    assert_non_null(feats);
    off[0] = 0;
    for (size_t d = 0; d < NDOCS; d++)
        off[d + 1] = off[d] + random_sparse(feats + off[d], MAXF, 800);
    assert_int_equal(lr__sindex_build(&idx, feats, off, NDOCS), 0);
    for (int qi = 0; qi < 60; qi++) {
        struct lr__feat q[MAXF];
        size_t nq = random_sparse(q, MAXF, 800);
        size_t k = qi % 3 == 0 ? 1 : qi % 3 == 1 ? 16 : 50;
        int n = lr__sindex_knn(&idx, q, nq, k, &sc, got);
        for (size_t d = 0; d < NDOCS; d++) {
            all[d].doc = (uint32_t)d;
            all[d].sim = sparse_dot(q, nq, feats + off[d], off[d + 1] - off[d]);
        }
        check_topk(got, n, all, NDOCS, k);
    }
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
    free(feats);
    free(off);
    free(all);
}

static void ties_go_to_the_lower_document(void **st)
{
    (void)st;
    /* Five identical documents and one unrelated; k = 3 of the five. */
    struct lr__feat f[12] = {
        {10, 0.6f}, {20, 0.8f}, {10, 0.6f}, {20, 0.8f}, {10, 0.6f}, {20, 0.8f},
        {99, 1.0f}, {10, 0.6f}, {20, 0.8f}, {10, 0.6f}, {20, 0.8f},
    };
    size_t off[7] = {0, 2, 4, 6, 7, 9, 11};
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    struct lr__neighbor got[8];
    struct lr__feat q[2] = {{10, 0.6f}, {20, 0.8f}};
    assert_int_equal(lr__sindex_build(&idx, f, off, 6), 0);
    for (int rep = 0; rep < 3; rep++) {
        int n = lr__sindex_knn(&idx, q, 2, 3, &sc, got);
        assert_int_equal(n, 3);
        assert_int_equal(got[0].doc, 0);
        assert_int_equal(got[1].doc, 1);
        assert_int_equal(got[2].doc, 2);
    }
    /* Asking for all: the unrelated one comes last with similarity 0. */
    int n = lr__sindex_knn(&idx, q, 2, 8, &sc, got);
    assert_int_equal(n, 6);
    assert_int_equal(got[4].doc, 5);
    assert_int_equal(got[5].doc, 3);
    assert_true(got[5].sim == 0.0f);
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
}

static void renumbered_documents_keep_their_numbers_and_ties(void **st)
{
    (void)st;
    /* Features 1 and 2 are long (in at least three documents), 7 short.
     * Documents 0 and 4 tie on q, but 4's long part is larger, so the
     * index puts it first in its own order: the result must still give 0
     * before 4, under the caller's numbers. */
    struct lr__feat f[11] = {
        {1, 0.3f}, {7, 0.5f}, {1, 0.3f}, {2, 0.3f}, {1, 0.3f}, {2, 0.3f},
        {2, 0.3f}, {9, 0.2f}, {1, 0.8f}, {7, 0.5f}, {2, 0.1f},
    };
    size_t off[7] = {0, 2, 4, 6, 8, 10, 11};
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    struct lr__neighbor got[6];
    struct lr__feat q[1] = {{7, 1.0f}};
    assert_int_equal(lr__sindex_build_with(&idx, f, off, 6, 3), 0);
    assert_int_equal(idx.nrows, 2);
    int moved = 0;
    for (uint32_t d = 0; d < idx.ndocs; d++)
        moved |= idx.orig[d] != d;
    assert_true(moved);
    int n = lr__sindex_knn(&idx, q, 1, 1, &sc, got);
    assert_int_equal(n, 1);
    assert_int_equal(got[0].doc, 0);
    n = lr__sindex_knn(&idx, q, 1, 6, &sc, got);
    assert_int_equal(n, 6);
    assert_int_equal(got[0].doc, 0);
    assert_int_equal(got[1].doc, 4);
    assert_true(got[0].sim == got[1].sim);
    for (int i = 2; i < 6; i++) { /* the rest at 0, in the caller's order */
        assert_true(got[i].sim == 0.0f);
        assert_int_equal(got[i].doc, i == 2 ? 1 : i == 3 ? 2 : i == 4 ? 3 : 5);
    }
    /* A query on the long features too: the same as scoring all. */
    struct lr__feat q2[2] = {{1, 0.6f}, {7, 0.8f}};
    n = lr__sindex_knn(&idx, q2, 2, 2, &sc, got);
    assert_int_equal(n, 2);
    assert_int_equal(got[0].doc, 4);
    assert_int_equal(got[1].doc, 0);
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
}

static void appended_documents_are_found(void **st)
{
    (void)st;
    struct lr__feat f[2] = {{5, 1.0f}, {6, 1.0f}};
    size_t off[3] = {0, 1, 2};
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    struct lr__neighbor got[4];
    assert_int_equal(lr__sindex_build(&idx, f, off, 2), 0);
    /* Grow list 5 many times so it moves out of the shared block. */
    for (int i = 0; i < 100; i++) {
        struct lr__feat v[2] = {{5, 0.6f}, {7, 0.8f}};
        assert_int_equal(lr__sindex_reserve(&idx, v, 2), 0);
        lr__sindex_add(&idx, v, 2);
    }
    struct lr__feat q[1] = {{7, 1.0f}};
    int n = lr__sindex_knn(&idx, q, 1, 2, &sc, got);
    assert_int_equal(n, 2);
    assert_int_equal(got[0].doc, 2);
    assert_int_equal(got[1].doc, 3);
    assert_true(fabsf(got[0].sim - 0.8f) < 1e-6f);
    /* An empty index answers nothing. */
    struct lr__sindex empty;
    assert_int_equal(lr__sindex_build(&empty, NULL, off, 0), 0);
    assert_int_equal(lr__sindex_knn(&empty, q, 1, 4, &sc, got), 0);
    lr__sindex_free(&empty);
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
}

/* Builds and frees walk only the features present (index.h: used), found
 * through a bitmap of the feature space: features at both of its ends and
 * on both sides of a 64-feature word are listed in order, searched,
 * appended to, and their lists freed (ASan checks a new list's memory). */
static void features_at_the_ends_of_the_space_are_indexed(void **st)
{
    (void)st;
    const uint32_t ids[5] = {0, 63, 64, LR__TFIDF_SPACE - 64, LR__TFIDF_SPACE - 1};
    struct lr__feat f[5];
    size_t off[6] = {0};
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    struct lr__neighbor got[4];
    for (uint32_t d = 0; d < 5; d++) {
        f[4 - d] = (struct lr__feat){ids[d], 1.0f}; /* document 4 - d has ids[d] */
        off[d + 1] = d + 1;
    }
    assert_int_equal(lr__sindex_build(&idx, f, off, 5), 0);
    assert_int_equal(idx.nused, 5);
    for (size_t u = 0; u < 5; u++)
        assert_int_equal(idx.used[u], ids[u]);
    for (uint32_t d = 0; d < 5; d++) {
        struct lr__feat q[1] = {{ids[d], 1.0f}};
        assert_int_equal(lr__sindex_knn(&idx, q, 1, 1, &sc, got), 1);
        assert_int_equal(got[0].doc, 4 - d);
        assert_true(fabsf(got[0].sim - 1.0f) < 1e-6f);
    }
    /* Document 5: one more posting on the top feature's list, and a list
     * of its own just below it. */
    struct lr__feat a[2] = {{LR__TFIDF_SPACE - 2, 0.8f}, {LR__TFIDF_SPACE - 1, 0.6f}};
    assert_int_equal(lr__sindex_reserve(&idx, a, 2), 0);
    lr__sindex_add(&idx, a, 2);
    struct lr__feat q[1] = {{LR__TFIDF_SPACE - 2, 1.0f}};
    assert_int_equal(lr__sindex_knn(&idx, q, 1, 1, &sc, got), 1);
    assert_int_equal(got[0].doc, 5);
    assert_true(fabsf(got[0].sim - 0.8f) < 1e-6f);
    q[0].id = LR__TFIDF_SPACE - 1;
    assert_int_equal(lr__sindex_knn(&idx, q, 1, 2, &sc, got), 2);
    assert_int_equal(got[0].doc, 0);
    assert_int_equal(got[1].doc, 5);
    assert_true(fabsf(got[1].sim - 0.6f) < 1e-6f);
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
}

/* ==== Pruning against brute force on prompt-shaped data ==== */

/* A corpus shaped like few-shot traffic: most documents of a task carry
 * the task's long shared prefix (the same features, weights varying with
 * each document's norm), then a few features of their own drawn from a
 * skewed vocabulary; every seventh document is an exact copy of an earlier
 * one, so true ties are common. dup_of[d] is the first document with d's
 * vector. */
#define PDOCS 4000
#define PMAXF 96
#define PREFIX 40

static size_t prompt_doc(struct lr__feat *v, int task)
{
    size_t m = 0;
    if (task < 3) {
        for (uint32_t i = 0; i < PREFIX; i++) {
            if (rnd() % 16 == 0)
                continue; /* cut by the strongest-features rule now and then */
            v[m].id = 100000u * (uint32_t)(task + 1) + i;
            v[m].w = 0.2f + (float)(i % 5) * 0.05f;
            m++;
        }
    }
    size_t own = 2 + rnd() % 40;
    for (size_t i = 0; i < own && m < PMAXF; i++) {
        uint32_t a = rnd() % 3000, b = rnd() % 3000;
        uint32_t id = 500000u + (a < b ? a : b); /* skewed: low ids common */
        if (has_id(v, m, id))
            continue;
        v[m].id = id;
        v[m].w = 0.1f + (float)(rnd() % 1000) / 250.0f;
        m++;
    }
    return unit_sorted(v, m);
}

static void make_prompt_corpus(struct lr__feat *feats, size_t *off, uint32_t *dup_of, size_t n)
{
    off[0] = 0;
    for (size_t d = 0; d < n; d++) {
        dup_of[d] = (uint32_t)d;
        if (d > 0 && d % 7 == 0) {
            size_t src = rnd() % d;
            size_t len = off[src + 1] - off[src];
            memcpy(feats + off[d], feats + off[src], len * sizeof(*feats));
            off[d + 1] = off[d] + len;
            dup_of[d] = dup_of[src];
            continue;
        }
        off[d + 1] = off[d] + prompt_doc(feats + off[d], (int)(rnd() % 4));
    }
}

/* got must be the brute-force top k (check_topk), and a copy of a returned
 * document with a lower number must be returned too, before it. */
static void check_prompt_topk(const struct lr__neighbor *got, int ngot, const struct lr__feat *q,
                              size_t nq, const struct lr__feat *feats, const size_t *off,
                              const uint32_t *dup_of, size_t n, size_t k,
                              struct lr__neighbor *all)
{
    for (size_t d = 0; d < n; d++) {
        all[d].doc = (uint32_t)d;
        all[d].sim = sparse_dot(q, nq, feats + off[d], off[d + 1] - off[d]);
    }
    check_topk(got, ngot, all, n, k);
    for (int i = 0; i < ngot; i++) {
        for (uint32_t d = dup_of[got[i].doc]; d < got[i].doc; d++) {
            if (dup_of[d] != dup_of[got[i].doc] || got[i].sim == 0.0f)
                continue;
            int found = 0;
            for (int j = 0; j < i; j++)
                found |= got[j].doc == d;
            assert_true(found);
        }
    }
}

static void pruned_knn_matches_brute_force_on_long_shared_lists(void **st)
{
    (void)st;
    struct lr__feat *feats = malloc((size_t)PDOCS * PMAXF * sizeof(*feats));
    size_t *off = malloc((PDOCS + 1) * sizeof(*off));
    uint32_t *dup_of = malloc(PDOCS * sizeof(*dup_of));
    struct lr__neighbor *all = malloc(PDOCS * sizeof(*all)), got[3][64];
    /* Automatic threshold; every list bounded (nothing walked); no list
     * bounded (everything walked, no pruning). */
    const uint32_t long_min[3] = {LR__SINDEX_LONG_AUTO, 1, UINT32_MAX};
    struct lr__sindex idx[3];
    struct lr__knn_scratch sc = {0};
    assert_non_null(feats);
    make_prompt_corpus(feats, off, dup_of, PDOCS);
    for (int v = 0; v < 3; v++)
        assert_int_equal(lr__sindex_build_with(&idx[v], feats, off, PDOCS, long_min[v]), 0);
    assert_true(idx[0].nrows >= 3 * PREFIX); /* the prefixes are bounded, not walked */
    assert_int_equal(idx[2].nrows, 0);
    for (int qi = 0; qi < 120; qi++) {
        struct lr__feat q[PMAXF];
        size_t nq;
        if (qi % 3 == 0) { /* a stored document: it and its copies tie at the top */
            size_t d = rnd() % PDOCS;
            nq = off[d + 1] - off[d];
            memcpy(q, feats + off[d], nq * sizeof(*q));
        } else {
            nq = prompt_doc(q, (int)(rnd() % 4));
        }
        size_t k = qi % 4 == 0 ? 1 : qi % 4 == 1 ? 16 : qi % 4 == 2 ? 5 : 64;
        for (int v = 0; v < 3; v++) {
            int n = lr__sindex_knn(&idx[v], q, nq, k, &sc, got[v]);
            check_prompt_topk(got[v], n, q, nq, feats, off, dup_of, PDOCS, k, all);
        }
        /* The block sums in every query's bounds, then in none. */
        for (int s = 0; s < 2; s++) {
            idx[0].block_sum_perp = s == 0 ? 0.0f : 2.0f;
            int n = lr__sindex_knn(&idx[0], q, nq, k, &sc, got[0]);
            check_prompt_topk(got[0], n, q, nq, feats, off, dup_of, PDOCS, k, all);
        }
        idx[0].block_sum_perp = LR__SINDEX_BLOCK_SUM_PERP;
    }
    for (int v = 0; v < 3; v++)
        lr__sindex_free(&idx[v]);
    lr__knn_scratch_free(&sc);
    free(feats);
    free(off);
    free(dup_of);
    free(all);
}

static void pruned_knn_stays_exact_as_documents_are_appended(void **st)
{
    (void)st;
    /* Build over the first 300 documents, then append the rest one by one:
     * appends update the bounds in place, cross into new blocks and make
     * the bound rows grow past what the build allocated. */
    const size_t n0 = 300, n = 2000;
    struct lr__feat *feats = malloc(n * PMAXF * sizeof(*feats));
    size_t *off = malloc((n + 1) * sizeof(*off));
    uint32_t *dup_of = malloc(n * sizeof(*dup_of));
    struct lr__neighbor *all = malloc(n * sizeof(*all)), got[16];
    struct lr__sindex idx;
    struct lr__knn_scratch sc = {0};
    make_prompt_corpus(feats, off, dup_of, n);
    assert_int_equal(lr__sindex_build(&idx, feats, off, (uint32_t)n0), 0);
    assert_true(idx.nrows > 0);
    for (size_t d = n0; d < n; d++) {
        const struct lr__feat *v = feats + off[d];
        size_t nv = off[d + 1] - off[d];
        assert_int_equal(lr__sindex_reserve(&idx, v, nv), 0);
        lr__sindex_add(&idx, v, nv);
        if (d % 97 == 0 || d == n - 1) {
            struct lr__feat q[PMAXF];
            size_t nq = prompt_doc(q, (int)(rnd() % 4));
            int got_n = lr__sindex_knn(&idx, q, nq, 16, &sc, got);
            check_prompt_topk(got, got_n, q, nq, feats, off, dup_of, d + 1, 16, all);
        }
    }
    /* An index that was never built (an empty store's) takes appends too. */
    struct lr__sindex fresh;
    memset(&fresh, 0, sizeof(fresh));
    for (size_t d = 0; d < 200; d++) {
        assert_int_equal(lr__sindex_reserve(&fresh, feats + off[d], off[d + 1] - off[d]), 0);
        lr__sindex_add(&fresh, feats + off[d], off[d + 1] - off[d]);
    }
    int got_n = lr__sindex_knn(&fresh, feats, off[1], 16, &sc, got);
    check_prompt_topk(got, got_n, feats, off[1], feats, off, dup_of, 200, 16, all);
    lr__sindex_free(&fresh);
    lr__sindex_free(&idx);
    lr__knn_scratch_free(&sc);
    free(feats);
    free(off);
    free(dup_of);
    free(all);
}

#define DDIM 37
#define DROWS 2000

/* The similarity the index defines, computed the plain way for every
 * document: the short lists' terms in the query's order (each list's
 * postings added to their documents' sums), then the long part from each
 * document's long features. sim[d] is for the index's document d
 * (idx->orig[d] the caller's). Each list it reads must hold its documents
 * once each in ascending order, as the search's walk by blocks assumes. */
static void plain_sims(const struct lr__sindex *idx, const struct lr__feat *q, size_t nq,
                       const float *qrow, float *sim)
{
    for (uint32_t d = 0; d < idx->ndocs; d++)
        sim[d] = 0.0f;
    for (size_t i = 0; i < nq; i++) {
        const struct lr__plist *l = &idx->lists[q[i].id];
        uint32_t out_of_order = 0;
        if (idx->row_of && idx->row_of[q[i].id])
            continue;
        for (uint32_t j = 0; j < l->n; j++) {
            out_of_order += j > 0 && l->p[j - 1].doc >= l->p[j].doc;
            sim[l->p[j].doc] = sim[l->p[j].doc] + q[i].w * l->p[j].w;
        }
        assert_int_equal(out_of_order, 0);
    }
    for (uint32_t d = 0; d < idx->ndocs; d++) {
        float lp = 0.0f;
        if (idx->nrows)
            for (size_t j = idx->fwd_off[d]; j < idx->fwd_off[d + 1]; j++)
                lp += qrow[idx->fwd[j].row] * idx->fwd[j].w;
        sim[d] = sim[d] + lp;
    }
}

/* The search must return exactly (same documents, same float bits, same
 * order) what scoring every document the plain way and sorting gives. */
static void check_exact(const struct lr__sindex *idx, const struct lr__feat *q, size_t nq,
                        size_t k, struct lr__knn_scratch *sc, struct lr__neighbor *got,
                        struct lr__neighbor *all, float *qrow)
{
    size_t n = 0;
    float *sim = malloc(idx->ndocs * sizeof(*sim) + 1);
    assert_non_null(sim);
    for (size_t r = 0; r < idx->nrows; r++)
        qrow[r] = 0.0f;
    for (size_t i = 0; i < nq; i++)
        if (idx->row_of && idx->row_of[q[i].id])
            qrow[idx->row_of[q[i].id] - 1] = q[i].w;
    plain_sims(idx, q, nq, qrow, sim);
    for (uint32_t d = 0; d < idx->ndocs; d++) {
        if (sim[d] > 0.0f) {
            all[n].doc = idx->orig[d];
            all[n].sim = sim[d];
            n++;
        }
    }
    free(sim);
    qsort(all, n, sizeof(*all), cmp_nb);
    /* Fewer than k share a feature: the rest at 0 in document order. */
    for (uint32_t d = 0, shared = (uint32_t)n; n < k && d < idx->ndocs; d++) {
        int in = 0;
        for (size_t j = 0; j < shared && !in; j++)
            in = all[j].doc == d;
        if (!in) {
            all[n].doc = d;
            all[n].sim = 0.0f;
            n++;
        }
    }
    size_t want = k < idx->ndocs ? k : idx->ndocs;
    int ngot = lr__sindex_knn(idx, q, nq, k, sc, got);
    assert_int_equal(ngot, (int)want);
    for (size_t i = 0; i < want; i++) {
        assert_int_equal(got[i].doc, all[i].doc);
        assert_memory_equal(&got[i].sim, &all[i].sim, sizeof(float));
    }
}

#define XDOCS 20000
#define XMAXF 48

/* More documents than one slice of the walk, skewed features (long lists
 * with the automatic threshold), copies (ties), k on both sides of the
 * first-k-th shortcut's limit, a query longer than a vector, and appends.
 * Queries with few short postings per block and with many (the long query,
 * and every query when nothing is bounded) take both ways the walk keeps
 * each block's largest partial sum. */
static void knn_equals_plain_scoring_bit_for_bit(void **st)
{
    (void)st;
    struct lr__feat *feats = malloc((size_t)XDOCS * XMAXF * sizeof(*feats));
    size_t *off = malloc((XDOCS + 1) * sizeof(*off));
    struct lr__neighbor *all = malloc(XDOCS * sizeof(*all)), *got = malloc(300 * sizeof(*got));
    float *qrow = malloc(LR__TFIDF_SPACE * sizeof(*qrow));
    struct lr__feat *q = malloc(400 * sizeof(*q));
    const uint32_t long_min[3] = {LR__SINDEX_LONG_AUTO, 1, UINT32_MAX};
    const size_t ks[5] = {1, 16, 64, 65, 300};
    struct lr__knn_scratch sc = {0};
    assert_non_null(feats);
    assert_non_null(off);
    assert_non_null(all);
    assert_non_null(got);
    assert_non_null(qrow);
    assert_non_null(q);
    off[0] = 0;
    for (size_t d = 0; d < XDOCS; d++) {
        if (d % 10 == 9) { /* a copy of an earlier document */
            size_t c = rnd() % d;
            memcpy(feats + off[d], feats + off[c], (off[c + 1] - off[c]) * sizeof(*feats));
            off[d + 1] = off[d] + off[c + 1] - off[c];
        } else {
            off[d + 1] = off[d] + random_sparse(feats + off[d], XMAXF, 600);
        }
    }
    for (int v = 0; v < 4; v++) {
        struct lr__sindex idx;
        if (v < 3) {
            assert_int_equal(lr__sindex_build_with(&idx, feats, off, XDOCS, long_min[v]), 0);
        } else { /* built over the first 15000, then appended */
            assert_int_equal(lr__sindex_build(&idx, feats, off, 15000), 0);
            for (size_t d = 15000; d < XDOCS; d++) {
                size_t nf = off[d + 1] - off[d];
                assert_int_equal(lr__sindex_reserve(&idx, feats + off[d], nf), 0);
                lr__sindex_add(&idx, feats + off[d], nf);
            }
        }
        if (v == 0)
            assert_true(idx.nrows > 0);
        for (int qi = 0; qi < 12; qi++) {
            size_t nq;
            if (qi % 3 == 0) { /* a stored document: it and its copies tie */
                size_t d = rnd() % XDOCS;
                nq = off[d + 1] - off[d];
                memcpy(q, feats + off[d], nq * sizeof(*q));
            } else if (qi % 3 == 1) {
                nq = random_sparse(q, XMAXF, 600);
            } else { /* longer than any vector the embedder makes */
                nq = 0;
                for (uint32_t id = rnd() % 5; id < 1200 && nq < 400; id += 1 + rnd() % 5) {
                    q[nq].id = id * 7919u % LR__TFIDF_SPACE;
                    q[nq].w = 0.01f + (float)(rnd() % 100) / 2000.0f;
                    nq++;
                }
                qsort(q, nq, sizeof(*q), cmp_id);
                assert_true(nq > LR__TFIDF_MAX_FEATURES);
            }
            check_exact(&idx, q, nq, ks[qi % 5], &sc, got, all, qrow);
            /* The block sums in the bounds always, then never. */
            for (int s = 0; s < 2 && idx.nrows > 0; s++) {
                idx.block_sum_perp = s == 0 ? 0.0f : 2.0f;
                check_exact(&idx, q, nq, ks[qi % 5], &sc, got, all, qrow);
            }
            idx.block_sum_perp = LR__SINDEX_BLOCK_SUM_PERP;
        }
        lr__sindex_free(&idx);
    }
    lr__knn_scratch_free(&sc);
    free(feats);
    free(off);
    free(all);
    free(got);
    free(qrow);
    free(q);
}

/* Few-shot shaped documents over more than two slices of the walk: nine
 * in ten carry one of two task prefixes of 60 features, the rest a few
 * features of their own from a small skewed vocabulary, so a query walks
 * lists holding thousands of postings (the prefix's too when nothing is
 * bounded) and fetches each a slice ahead as it goes. */
#define FDOCS 17000
#define FMAXF 96

static size_t fewshot_doc(struct lr__feat *v)
{
    size_t m = 0;
    uint32_t task = rnd() % 10;
    if (task < 9) {
        for (uint32_t i = 0; i < 60; i++) {
            if (rnd() % 12 == 0)
                continue; /* cut by the strongest-features rule now and then */
            v[m].id = 200000u * (task % 2 + 1) + i * 3u;
            v[m].w = 0.1f + (float)(i % 7) * 0.03f;
            m++;
        }
    }
    size_t own = 4 + rnd() % 30;
    for (size_t i = 0; i < own && m < FMAXF; i++) {
        uint32_t a = rnd() % 400, b = rnd() % 400;
        uint32_t id = (i % 2 ? LR__TFIDF_CHAR_BIT : 700000u) + (a < b ? a : b);
        if (has_id(v, m, id))
            continue;
        v[m].id = id;
        v[m].w = 0.05f + (float)(rnd() % 1000) / 400.0f;
        m++;
    }
    return unit_sorted(v, m);
}

static void knn_equals_plain_scoring_on_shared_prefixes(void **st)
{
    (void)st;
    struct lr__feat *feats = malloc((size_t)FDOCS * FMAXF * sizeof(*feats));
    size_t *off = malloc((FDOCS + 1) * sizeof(*off));
    struct lr__neighbor *all = malloc(FDOCS * sizeof(*all)), got[64];
    float *qrow = malloc(LR__TFIDF_SPACE * sizeof(*qrow));
    struct lr__feat q[FMAXF];
    /* Automatic threshold; the prefixes bounded and the rest walked;
     * everything walked. */
    const uint32_t long_min[3] = {LR__SINDEX_LONG_AUTO, 3000, UINT32_MAX};
    const size_t ks[3] = {1, 16, 64};
    struct lr__knn_scratch sc = {0};
    assert_non_null(feats);
    assert_non_null(off);
    assert_non_null(all);
    assert_non_null(qrow);
    off[0] = 0;
    for (size_t d = 0; d < FDOCS; d++) {
        if (d % 11 == 10) { /* a copy of an earlier document */
            size_t c = rnd() % d;
            memcpy(feats + off[d], feats + off[c], (off[c + 1] - off[c]) * sizeof(*feats));
            off[d + 1] = off[d] + off[c + 1] - off[c];
        } else {
            off[d + 1] = off[d] + fewshot_doc(feats + off[d]);
        }
    }
    for (int v = 0; v < 3; v++) {
        struct lr__sindex idx;
        assert_int_equal(lr__sindex_build_with(&idx, feats, off, FDOCS, long_min[v]), 0);
        for (int qi = 0; qi < 6; qi++) {
            size_t nq;
            if (qi % 2 == 0) { /* a stored document: it and its copies tie */
                size_t d = rnd() % FDOCS;
                nq = off[d + 1] - off[d];
                memcpy(q, feats + off[d], nq * sizeof(*q));
            } else {
                nq = fewshot_doc(q);
            }
            check_exact(&idx, q, nq, ks[qi % 3], &sc, got, all, qrow);
        }
        lr__sindex_free(&idx);
    }
    lr__knn_scratch_free(&sc);
    free(feats);
    free(off);
    free(all);
    free(qrow);
}

static void dense_knn_matches_brute_force_and_batches_agree(void **st)
{
    (void)st;
    struct lr__dindex idx = {0};
    struct lr__neighbor *all = malloc(DROWS * sizeof(*all));
    struct lr__neighbor got[20], batch[5 * 20];
    size_t counts[5];
    float qs[5 * DDIM];
    idx.dim = DDIM;
    assert_int_equal(lr__dindex_reserve(&idx, DROWS), 0);
    for (size_t r = 0; r < DROWS; r++) {
        float v[DDIM];
        double s = 0;
        for (size_t j = 0; j < DDIM; j++) {
            v[j] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
            s += (double)v[j] * v[j];
        }
        for (size_t j = 0; j < DDIM; j++)
            v[j] = (float)(v[j] / sqrt(s));
        if (r > 5 && r % 97 == 5) /* exact duplicates of row 5 */
            memcpy(v, idx.m + 5 * DDIM, sizeof(v));
        lr__dindex_add(&idx, v);
    }
    for (size_t qi = 0; qi < 5; qi++) {
        float *q = qs + qi * DDIM;
        if (qi == 0)
            memcpy(q, idx.m + 5 * DDIM, DDIM * sizeof(float));
        else {
            double s = 0;
            for (size_t j = 0; j < DDIM; j++) {
                q[j] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
                s += (double)q[j] * q[j];
            }
            for (size_t j = 0; j < DDIM; j++)
                q[j] = (float)(q[j] / sqrt(s));
        }
        int n = lr__dindex_knn(&idx, q, 20, got);
        for (size_t r = 0; r < DROWS; r++) {
            double s = 0;
            for (size_t j = 0; j < DDIM; j++)
                s += (double)q[j] * idx.m[r * DDIM + j];
            all[r].doc = (uint32_t)r;
            all[r].sim = (float)s;
        }
        check_topk(got, n, all, DROWS, 20);
        if (qi == 0) /* the duplicates tie: lower rows first */
            for (int i = 1; i < n && got[i].sim == got[0].sim; i++)
                assert_true(got[i].doc > got[i - 1].doc);
    }
    assert_int_equal(lr__dindex_knn_batch(&idx, qs, 5, 20, batch, counts), 0);
    for (size_t qi = 0; qi < 5; qi++) {
        int n = lr__dindex_knn(&idx, qs + qi * DDIM, 20, got);
        assert_int_equal(counts[qi], (size_t)n);
        assert_memory_equal(batch + qi * 20, got, (size_t)n * sizeof(*got));
    }
    lr__dindex_free(&idx);
    free(all);
}

/* ==== The dense screen: the same result as scoring every row ==== */

static void unit_f(float *v, size_t dim)
{
    double s = 0;
    for (size_t j = 0; j < dim; j++)
        s += (double)v[j] * v[j];
    if (s > 0)
        for (size_t j = 0; j < dim; j++)
            v[j] = (float)(v[j] / sqrt(s));
}

static float uniform_f(void)
{
    return (float)((int)(rnd() % 200001) - 100000) / 100000.0f;
}

static void check_dense_same(const struct lr__dindex *idx, const float *q, size_t k)
{
    struct lr__neighbor *got = malloc((k + 1) * sizeof(*got));
    struct lr__neighbor *want = malloc((k + 1) * sizeof(*want));
    assert_non_null(got);
    assert_non_null(want);
    size_t nw = lr__dindex_knn_flat(idx, q, k, want);
    /* Both integer kernels: the one this processor gets, and the portable. */
    for (int portable = 0; portable < 2; portable++) {
        lr__dindex_portable(portable);
        int n = lr__dindex_knn(idx, q, k, got);
        assert_int_equal(n, (int)nw);
        assert_memory_equal(got, want, nw * sizeof(*got));
    }
    lr__dindex_portable(0);
    free(got);
    free(want);
}

/* Kinds of rows that try the screen's bounds: near-ties below the 8-bit
 * step, a large shared part (what the centre takes off), one large
 * coordinate, zeros, exact copies. */
static void dense_row(int kind, const float *base, size_t dim, float *v)
{
    switch (kind) {
    case 0: /* the base with a change far below the quantisation step */
        for (size_t j = 0; j < dim; j++)
            v[j] = base[j] + 1e-7f * (float)((int)(rnd() % 3) - 1);
        break;
    case 1: /* a large part shared by every row of this kind */
        for (size_t j = 0; j < dim; j++)
            v[j] = (j % 7 == 0 ? 3.0f : 0.0f) + 0.3f * uniform_f();
        break;
    case 2: /* one coordinate far larger than the rest */
        for (size_t j = 0; j < dim; j++)
            v[j] = 0.01f * uniform_f();
        v[rnd() % dim] = 1.0f;
        break;
    case 3: /* an exact copy of the base */
        memcpy(v, base, dim * sizeof(*v));
        return;
    case 4: /* zeros but one coordinate */
        memset(v, 0, dim * sizeof(*v));
        v[rnd() % dim] = rnd() % 2 ? 1.0f : -1.0f;
        return;
    default:
        for (size_t j = 0; j < dim; j++)
            v[j] = uniform_f();
    }
    unit_f(v, dim);
}

static void dense_screen_equals_the_flat_scan_bit_for_bit(void **st)
{
    (void)st;
    static const size_t dims[] = {1, 3, 16, 17, 37, 384, 4099};
    static const size_t ks[] = {1, 2, 16, 50, 10000};
    for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++) {
        size_t dim = dims[di], n = dim > 1000 ? 300 : 1500;
        struct lr__dindex idx = {0};
        float *v = malloc(dim * sizeof(*v)), *base = malloc(dim * sizeof(*base));
        float *q = malloc(dim * sizeof(*q));
        assert_non_null(v);
        assert_non_null(base);
        assert_non_null(q);
        idx.dim = dim;
        dense_row(5, NULL, dim, base);
        assert_int_equal(lr__dindex_reserve(&idx, n), 0);
        for (size_t r = 0; r < n; r++) {
            dense_row((int)(rnd() % 7), base, dim, v);
            lr__dindex_add(&idx, v);
        }
        /* Before and after the centre, and with rows added after it. */
        for (int phase = 0; phase < 3; phase++) {
            if (phase == 1)
                lr__dindex_recentre(&idx);
            if (phase == 2) {
                assert_int_equal(lr__dindex_reserve(&idx, 200), 0);
                for (size_t r = 0; r < 200; r++) {
                    dense_row((int)(rnd() % 7), base, dim, v);
                    lr__dindex_add(&idx, v);
                }
            }
            for (size_t qi = 0; qi < 12; qi++) {
                if (qi < 4)
                    dense_row(0, base, dim, q); /* among the near-ties */
                else if (qi < 6)
                    memcpy(q, idx.m + (rnd() % idx.n) * dim, dim * sizeof(*q));
                else
                    dense_row((int)(qi % 7), base, dim, q);
                check_dense_same(&idx, q, ks[qi % 5]);
            }
        }
        /* The same rows as a store's load reads them: appended unquantised,
         * then all quantised about their mean. */
        struct lr__dindex loaded = {0};
        loaded.dim = dim;
        assert_int_equal(lr__dindex_reserve(&loaded, idx.n), 0);
        for (size_t r = 0; r < idx.n; r++)
            lr__dindex_load(&loaded, idx.m + r * dim);
        lr__dindex_recentre(&loaded);
        for (size_t qi = 0; qi < 6; qi++) {
            if (qi < 3)
                dense_row(0, base, dim, q);
            else
                dense_row((int)(qi % 7), base, dim, q);
            check_dense_same(&loaded, q, ks[qi % 5]);
        }
        lr__dindex_free(&loaded);
        lr__dindex_free(&idx);
        free(v);
        free(base);
        free(q);
    }
}

/* Rows whose similarities to the query are all within the screen's error
 * of each other: it must score them all and keep the flat scan's order. */
static void dense_screen_keeps_ties_below_its_resolution(void **st)
{
    (void)st;
    enum { DIM = 64, N = 3000 };
    struct lr__dindex idx = {0};
    float v[DIM], q[DIM];
    idx.dim = DIM;
    assert_int_equal(lr__dindex_reserve(&idx, N), 0);
    for (size_t j = 0; j < DIM; j++)
        q[j] = uniform_f();
    unit_f(q, DIM);
    for (size_t r = 0; r < N; r++) {
        /* The query, each coordinate nudged by at most one float step. */
        for (size_t j = 0; j < DIM; j++)
            v[j] = nextafterf(q[j], rnd() % 2 ? INFINITY : -INFINITY);
        if (r % 5 == 0)
            memcpy(v, q, sizeof(v));
        lr__dindex_add(&idx, v);
    }
    lr__dindex_recentre(&idx);
    size_t scored = 0, count = 0;
    struct lr__neighbor got[16];
    assert_int_equal(lr__dindex_knn_scored(&idx, q, 1, 16, got, &count, &scored), 0);
    assert_int_equal(count, 16);
    /* Every row is within the error of the best, so none is ruled out. */
    assert_int_equal(scored, N);
    check_dense_same(&idx, q, 16);
    check_dense_same(&idx, q, N);
    lr__dindex_free(&idx);
}

/* In a few dimensions the quantisation errors often point along the
 * query, so the bounds are nearly reached: rows packed in a narrow cone,
 * queries inside it, with and without the centre. */
static void dense_screen_bounds_hold_where_they_are_tight(void **st)
{
    (void)st;
    enum { N = 2000 };
    for (size_t dim = 2; dim <= 5; dim++) {
        for (int centre = 0; centre < 2; centre++) {
            struct lr__dindex idx = {0};
            float axis[8], v[8], q[8];
            idx.dim = dim;
            for (size_t j = 0; j < dim; j++)
                axis[j] = uniform_f();
            unit_f(axis, dim);
            assert_int_equal(lr__dindex_reserve(&idx, N), 0);
            for (size_t r = 0; r < N; r++) {
                for (size_t j = 0; j < dim; j++)
                    v[j] = axis[j] + 0.02f * uniform_f();
                unit_f(v, dim);
                lr__dindex_add(&idx, v);
            }
            if (centre)
                lr__dindex_recentre(&idx);
            for (size_t qi = 0; qi < 200; qi++) {
                for (size_t j = 0; j < dim; j++)
                    q[j] = axis[j] + 0.02f * uniform_f();
                unit_f(q, dim);
                check_dense_same(&idx, q, 1 + qi % 20);
            }
            lr__dindex_free(&idx);
        }
    }
}

/* Two rows on the 8-bit grid (no rounding error of their own) and
 * queries that all but tie them: what orders them in the screen is then
 * the query's 16-bit rounding, which the bounds must cover. Among these
 * queries the rounding reverses the two rows' order by up to 3e-5 where
 * their cosines differ by 2e-6. */
static void dense_screen_covers_the_query_rounding(void **st)
{
    (void)st;
    static const double a[3] = {127, 113, -68}, b[3] = {127, -104, 87};
    /* q = (a + b) / 2 + lambda (a - b) is as near to each at this lambda. */
    const double tie = 0.006974716652136004;
    struct lr__dindex idx = {0};
    float v[3], q[3];
    idx.dim = 3;
    assert_int_equal(lr__dindex_reserve(&idx, 2), 0);
    for (size_t j = 0; j < 3; j++)
        v[j] = (float)(a[j] / 128.0);
    lr__dindex_add(&idx, v);
    for (size_t j = 0; j < 3; j++)
        v[j] = (float)(b[j] / 128.0);
    lr__dindex_add(&idx, v);
    for (int step = -400; step <= 400; step++) {
        double lambda = tie + step * 5e-7;
        for (size_t j = 0; j < 3; j++)
            q[j] = (float)((a[j] + b[j]) / 2.0 + lambda * (a[j] - b[j]));
        unit_f(q, 3);
        check_dense_same(&idx, q, 1);
    }
    lr__dindex_free(&idx);
}

/* On rows apart by more than its error the screen rules most rows out. */
static void dense_screen_scores_few_rows_when_they_are_apart(void **st)
{
    (void)st;
    enum { DIM = 128, N = 5000 };
    struct lr__dindex idx = {0};
    float v[DIM];
    idx.dim = DIM;
    assert_int_equal(lr__dindex_reserve(&idx, N), 0);
    for (size_t r = 0; r < N; r++) {
        dense_row(5, NULL, DIM, v);
        lr__dindex_add(&idx, v);
    }
    lr__dindex_recentre(&idx);
    size_t scored = 0, count = 0;
    struct lr__neighbor got[16];
    assert_int_equal(lr__dindex_knn_scored(&idx, idx.m + 77 * DIM, 1, 16, got, &count, &scored),
                     0);
    assert_int_equal(count, 16);
    assert_int_equal(got[0].doc, 77);
    assert_true(scored >= 16 && scored < N / 10);
    check_dense_same(&idx, idx.m + 77 * DIM, 16);
    lr__dindex_free(&idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sparse_knn_matches_brute_force),
        cmocka_unit_test(ties_go_to_the_lower_document),
        cmocka_unit_test(renumbered_documents_keep_their_numbers_and_ties),
        cmocka_unit_test(appended_documents_are_found),
        cmocka_unit_test(features_at_the_ends_of_the_space_are_indexed),
        cmocka_unit_test(pruned_knn_matches_brute_force_on_long_shared_lists),
        cmocka_unit_test(pruned_knn_stays_exact_as_documents_are_appended),
        cmocka_unit_test(knn_equals_plain_scoring_bit_for_bit),
        cmocka_unit_test(knn_equals_plain_scoring_on_shared_prefixes),
        cmocka_unit_test(dense_knn_matches_brute_force_and_batches_agree),
        cmocka_unit_test(dense_screen_equals_the_flat_scan_bit_for_bit),
        cmocka_unit_test(dense_screen_keeps_ties_below_its_resolution),
        cmocka_unit_test(dense_screen_bounds_hold_where_they_are_tight),
        cmocka_unit_test(dense_screen_covers_the_query_rounding),
        cmocka_unit_test(dense_screen_scores_few_rows_when_they_are_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
