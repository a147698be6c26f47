/* index.h -- exact k-nearest-neighbour search over the history's vectors.
 *
 * Two kinds of index, both exact (no approximation anywhere):
 *   - sparse (tfidf-v1): an inverted index, one posting list per feature
 *     holding (document, weight), plus per-block upper bounds for the long
 *     lists, so a search walks only the short lists and then scores just
 *     the documents whose bound can still reach the top k (index.c).
 *     Vectors are unit length, so the dot product is the cosine.
 *   - dense (a remote embedder): a flat row-major matrix of unit vectors,
 *     screened through a copy quantised to 8 bits a coordinate, with a
 *     bound on each row's error, and the rows that can still reach the
 *     top k scored exactly (index.c).
 * Both rank by similarity, higher first, ties broken by lower document
 * number (documents are numbered in insertion order; the sparse index
 * orders them its own way inside, which callers never see). When fewer than k
 * documents share anything with a sparse query, the rest are filled with
 * similarity 0 in document order, exactly as a full scan would rank them.
 *
 * Threads: searches only read an index and may run concurrently; adding to
 * an index must exclude searches (the store holds its rwlock for writing).
 * A search's scratch belongs to one search at a time.
 */
#ifndef LR_INDEX_H
#define LR_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"

/* One neighbour: a document number and its similarity to the query. */
struct lr__neighbor {
    uint32_t doc;
    float sim;
};

/* ==== Sparse (inverted) index ==== */

struct lr__posting {
    uint32_t doc;
    float w;
};

struct lr__plist {
    struct lr__posting *p;
    uint32_t n;
    uint32_t cap; /* 0: p points into the index's shared block */
};

/* Documents are cut into blocks of this many consecutive numbers; the
 * bounds that let a search skip documents are kept per block. */
#define LR__SINDEX_BLOCK_SHIFT 6
#define LR__SINDEX_BLOCK (1u << LR__SINDEX_BLOCK_SHIFT)
/* lr__sindex_build_with's long_min: choose it from the index's size. */
#define LR__SINDEX_LONG_AUTO 0u

/* Directions kept for the long-list part of the vectors (index.c: the
 * documents' long parts are bounded by their coordinates along a few
 * directions and their norm off them). */
#define LR__SINDEX_DIRS 3
#define LR__SINDEX_PROJ (LR__SINDEX_DIRS + 1)
/* lr__sindex.block_sum_perp as a build sets it. */
#define LR__SINDEX_BLOCK_SUM_PERP 0.75f

/* One of a document's features that has a long posting list: its row (see
 * below) and its weight. */
struct lr__rowfeat {
    uint32_t row;
    float w;
};

struct lr__sindex {
    struct lr__plist *lists; /* LR__TFIDF_SPACE lists */
    struct lr__posting *block;
    /* The features whose lists hold postings or memory of their own:
     * ascending as built, then in the order adds first reached them. Walks
     * over the lists (build, free) go through these, so a small index
     * touches a few pages of lists rather than the whole feature space. */
    uint32_t *used;
    size_t nused, used_cap;
    uint32_t ndocs;
    /* Inside the index documents are renumbered (index.c says why); the
     * lists and everything below use the index's numbers, results and
     * ties the caller's: */
    uint32_t *orig;           /* per index number: the caller's number */

    /* Bounds for the long lists (those with at least long_min postings when
     * the index was built), which a search does not walk (index.c explains
     * how they are used). Each long list has a row: */
    uint32_t *row_of;         /* feature -> row + 1, 0: not a long list */
    uint32_t nrows;
    float *bmax;              /* nrows x bstride: the row's largest weight in each block */
    float *hmax;              /* per block: the largest hnorm of its documents */
    size_t bstride;           /* blocks allocated per row */
    float *hnorm;             /* per document: the norm of its weights on long lists */
    size_t *fwd_off;          /* per document: its long-list features are */
    struct lr__rowfeat *fwd;  /* fwd[fwd_off[d] .. fwd_off[d + 1]) */
    size_t fwd_n, fwd_cap, docs_cap;

    /* A few directions over the rows, near the common long parts: */
    uint32_t ndirs;           /* directions in use, at most LR__SINDEX_DIRS */
    float *basis;             /* ndirs x nrows, orthonormal up to rounding */
    double gram[LR__SINDEX_DIRS * LR__SINDEX_DIRS]; /* basis . basis, as stored */
    float *proj;              /* per document, LR__SINDEX_PROJ: its long part's
                               * coordinates along the basis, then its norm off it */
    float *pmax, *pmin;       /* per block, LR__SINDEX_PROJ: the largest and smallest */
    /* A search adds the block sums of bmax to its bounds only when the
     * query's long part lies off the basis by more than this share of its
     * norm (builds set LR__SINDEX_BLOCK_SUM_PERP; 0: nearly always, 2: never). */
    float block_sum_perp;
};

/* Build from n document vectors given document-major: doc i's features are
 * feats[off[i] .. off[i+1]). Lists holding at least long_min postings are
 * bounded per block rather than walked (LR__SINDEX_LONG_AUTO: three
 * postings per block on average). Returns 0 or LR_ENOMEM (idx left empty). */
int lr__sindex_build_with(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                          uint32_t n, uint32_t long_min);
/* lr__sindex_build_with(..., LR__SINDEX_LONG_AUTO). */
int lr__sindex_build(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                     uint32_t n);
void lr__sindex_free(struct lr__sindex *idx);

/* Make room to add one document with these features without allocating;
 * call with searches excluded. Returns 0 or LR_ENOMEM. */
int lr__sindex_reserve(struct lr__sindex *idx, const struct lr__feat *v, size_t n);
/* Add document number idx->ndocs; needs a successful reserve for v first. */
void lr__sindex_add(struct lr__sindex *idx, const struct lr__feat *v, size_t n);

/* A block and the bound on its documents' similarities (search scratch). */
struct lr__block_ub {
    float ub;
    uint32_t b;
};

/* Per-search scratch; grows to the index's size. acc and qrow are all zero
 * between searches. */
struct lr__knn_scratch {
    float *acc;  /* per document */
    size_t cap;
    float *bub;  /* per block: bound from the long lists */
    float *bacc; /* per block: largest acc */
    struct lr__block_ub *heap;
    size_t bcap;
    float *qrow; /* per row: the query's weight */
    size_t rcap;
};
void lr__knn_scratch_free(struct lr__knn_scratch *s);

/* The k nearest documents to q (n features sorted by id, unit length) into
 * out (room for k), best first. Returns how many were written
 * (min(k, ndocs)), or LR_ENOMEM. */
int lr__sindex_knn(const struct lr__sindex *idx, const struct lr__feat *q, size_t n, size_t k,
                   struct lr__knn_scratch *scratch, struct lr__neighbor *out);

/* ==== Dense (flat) index ==== */

/* A row's quantisation (index.c): its scale, and bounds on the norms of
 * its rounding error, of the row less the centre, and of the row. */
struct lr__dquant {
    float scale, err, norm_c, norm;
};

struct lr__dindex {
    float *m; /* n rows of dim floats */
    size_t dim, n, cap;
    int8_t *m8;            /* n rows of dim: each row less mu, quantised */
    struct lr__dquant *rq; /* per row */
    float *mu;             /* dim floats taken off every row first, or NULL */
};

void lr__dindex_free(struct lr__dindex *idx);
/* Room for `extra` more rows without allocating (searches excluded). */
int lr__dindex_reserve(struct lr__dindex *idx, size_t extra);
/* Append a row (already unit length); needs room reserved first. */
void lr__dindex_add(struct lr__dindex *idx, const float *v);
/* Append a row of a bulk load, not yet quantised: lr__dindex_recentre
 * must follow before any search. */
void lr__dindex_load(struct lr__dindex *idx, const float *v);
/* Take the rows' mean as the centre and quantise every row again (after a
 * bulk load; searches excluded). Only the search's speed depends on the
 * centre: without memory for it the rows are quantised about zero. */
void lr__dindex_recentre(struct lr__dindex *idx);

/* The dot product of two dense vectors: the dense index's similarity, and
 * the groups' (groups.c) for dense stores. */
static inline float lr__dense_dot(const float *restrict a, const float *restrict b, size_t dim)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (size_t j = 0; j < dim; j++)
        s += a[j] * b[j];
    return s;
}

/* k nearest rows to q (unit length, idx->dim floats). Returns the count,
 * or LR_ENOMEM. The similarities are lr__dense_dot's, and the result is
 * the same as scoring every row with it. */
int lr__dindex_knn(const struct lr__dindex *idx, const float *q, size_t k,
                   struct lr__neighbor *out);
/* nq queries at once (row-major nq x dim), out is nq x k; the matrix is
 * read once per block of rows for all queries. counts[i] = how many.
 * Returns 0 or LR_ENOMEM. */
int lr__dindex_knn_batch(const struct lr__dindex *idx, const float *qs, size_t nq, size_t k,
                         struct lr__neighbor *out, size_t *counts);
/* The same search scoring every row with lr__dense_dot: the reference the
 * tests and bench/dense_bench compare lr__dindex_knn with. */
size_t lr__dindex_knn_flat(const struct lr__dindex *idx, const float *q, size_t k,
                           struct lr__neighbor *out);
/* For the tests: 1 keeps every search to the portable integer kernel (SSE2
 * on x86-64), 0 (the default) lets it take AVX2 where the processor has
 * it. Not to be changed while searches run. */
void lr__dindex_portable(int on);
/* lr__dindex_knn_batch, adding to *scored (when not NULL) how many rows
 * the screen left to score exactly (bench/dense_bench.c). */
int lr__dindex_knn_scored(const struct lr__dindex *idx, const float *qs, size_t nq, size_t k,
                          struct lr__neighbor *out, size_t *counts, size_t *scored);

/* ==== Top-k selection (shared by both) ==== */

/* A bounded min-heap of the k best neighbours seen so far. */
struct lr__topk {
    struct lr__neighbor *h;
    size_t n, k;
};
void lr__topk_init(struct lr__topk *t, struct lr__neighbor *buf, size_t k);
void lr__topk_push(struct lr__topk *t, uint32_t doc, float sim);
/* Sort the heap's content best first in place (h[0] best); returns n. */
size_t lr__topk_finish(struct lr__topk *t);

/* a ranks before b: higher similarity, then lower document number. */
static inline int lr__neighbor_better(uint32_t da, float sa, uint32_t db, float sb)
{
    return sa > sb || (sa == sb && da < db);
}

#endif /* LR_INDEX_H */
