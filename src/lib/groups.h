/* groups.h -- groups of similar past queries and each group's per-model
 * totals: the predictor's middle level (see predict.h).
 *
 * The records are cut into groups by spherical k-means over the same unit
 * vectors the kNN index holds (tfidf-v1 sparse vectors, or a remote
 * embedder's dense ones). Each group keeps, per model, the count, the sum
 * of correctness and the sum of output tokens of its records' outcomes, so
 * the predictor reads a query's group-level estimate off the groups of its
 * k neighbours in O(k x models), instead of fetching and reading a wide
 * neighbourhood of a hundred or more records per decision.
 *
 * Groups are built whenever the store builds its in-memory copy (open,
 * import, and the re-weighing after growth by a quarter): the copy's
 * vectors are computed there anyway. A dense store's appends do not weigh
 * anything, but its copy is rebuilt on the same schedule all the same (and
 * first on reaching LR__GROUPS_MIN_RECORDS), beside the writers, for its
 * groups (the build alone: 1.9 to 2.7 s at 100,000 records of dimension
 * 384, bench/regroup_bench). The
 * clustering fits on a sample of at most LR__GROUPS_SAMPLE records, then
 * assigns every record once: about 3 s of a 100,000-record sparse store's
 * open (24 s before, measured with bench/smart_bench --reuse). Nothing is
 * persisted, so stores written by any version get groups at open. An
 * appended record joins the group of its nearest centroid and its outcomes
 * join that group's totals at once; a sparse record that shares no feature
 * with any centroid (at the fit, or appended later) joins none
 * (LR__GROUPS_NONE), and is left out of the fit's centroids too.
 * Stores below LR__GROUPS_MIN_RECORDS records have no groups (n == 0); the
 * predictor then shrinks straight to the store's mean.
 *
 * Deterministic: the same vectors give the same groups (a fixed seed).
 *
 * Threads: building and adding write; the store calls them with readers
 * excluded (or on a copy no reader sees yet: a build writes only the
 * struct lr__groups it is given, and reads the copy's vectors and outcomes,
 * which only the one writer changes). A build may split its scans over
 * threads of its own (groups.c), joined before it returns. Reading is
 * lock-free under the store's read lock.
 */
#ifndef LR_GROUPS_H
#define LR_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"

struct lr__hist;

/* How many groups a store of n records gets: n / LR__GROUPS_RECORDS_EACH,
 * at most LR__GROUPS_MAX, none (0) below LR__GROUPS_MIN_RECORDS. */
#define LR__GROUPS_RECORDS_EACH 128
#define LR__GROUPS_MAX 64
#define LR__GROUPS_MIN_RECORDS 256
/* Records the k-means fits on (evenly spread over the store), its rounds,
 * and the features a sparse centroid keeps (its strongest). */
#define LR__GROUPS_SAMPLE 8192
#define LR__GROUPS_ROUNDS 12
#define LR__GROUPS_CENTROID_FEATURES 256

/* The group of a record that is in none: a sparse vector that shares no
 * feature with any centroid (a query unlike every group the fit found,
 * such as an appended one on a new subject). Its outcomes are in no
 * group's totals, and the predictor reads the store's means for it. */
#define LR__GROUPS_NONE UINT32_MAX

/* A model's totals over one group's records. */
struct lr__group_stats {
    double n, sum_correct, sum_output;
};

/* One feature of a sparse centroid; the array is sorted by feature, then
 * group, so each feature's entries are together, found through chash. */
struct lr__group_feat {
    uint32_t feat;
    uint32_t group;
    float w;
};

struct lr__groups {
    uint32_t n;                    /* groups; 0: none */
    uint32_t *of;                  /* per record: its group, or LR__GROUPS_NONE */
    size_t cap;                    /* records `of` has room for */
    struct lr__group_stats *stats; /* model-major: stats[model * n + group] */
    size_t models_cap;             /* models `stats` has room for */
    struct lr__group_feat *cfeat;  /* sparse centroids */
    size_t n_cfeat;
    /* Open addressing over the centroids' features (chash_mask + 1 slots,
     * at least twice the features): 1 + the index in cfeat of a feature's
     * first entry, 0 for an empty slot. */
    uint32_t *chash;
    uint32_t chash_mask;
    float *cdense; /* dense centroids, n x dim */
    size_t dim;
};

/* The number of groups for a store of n records (0: none). */
size_t lr__groups_count_for(size_t n);

/* Cluster h->n records into n_groups (fewer if the records allow fewer
 * distinct centroids; 0 or 1: no groups) and total h's outcomes per group.
 * Sparse: record i's features are feats[off[i] .. off[i + 1]), sorted by
 * feature, unit length. Dense: rows of dim floats, unit length. g must be
 * zeroed or freed; on LR_ENOMEM it is left without groups. The per-record
 * scans run on up to `threads` threads (0: the default, 1: the calling
 * thread only, see parallel.h); the groups are the same for any count. */
int lr__groups_build_sparse(struct lr__groups *g, const struct lr__hist *h,
                            const struct lr__feat *feats, const size_t *off, size_t n_groups,
                            unsigned threads);
int lr__groups_build_dense(struct lr__groups *g, const struct lr__hist *h, const float *rows,
                           size_t dim, size_t n_groups, unsigned threads);
void lr__groups_free(struct lr__groups *g);

/* Room for `records` records and `models` models without allocating (a
 * no-op without groups). Returns 0 or LR_ENOMEM. */
int lr__groups_reserve(struct lr__groups *g, size_t records, size_t models);

/* The group whose centroid is nearest to a sparse (features sorted by id)
 * or dense unit vector; 0 without groups. A sparse vector with no feature
 * in any centroid is in LR__GROUPS_NONE (a dense one always has a nearest
 * centroid). */
uint32_t lr__groups_nearest_sparse(const struct lr__groups *g, const struct lr__feat *v, size_t n);
uint32_t lr__groups_nearest_dense(const struct lr__groups *g, const float *v);

/* Record `rec` (whose outcomes are in h) joins `group` (LR__GROUPS_NONE:
 * no group's totals): needs room reserved for it and for its models. A
 * no-op without groups. */
void lr__groups_add(struct lr__groups *g, const struct lr__hist *h, uint32_t rec, uint32_t group);

/* A model's totals in a group (the model must have room in stats). */
static inline const struct lr__group_stats *lr__groups_stats(const struct lr__groups *g,
                                                             uint32_t model, uint32_t group)
{
    return &g->stats[(size_t)model * g->n + group];
}

#endif /* LR_GROUPS_H */
