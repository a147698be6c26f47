/* store.h -- the history store's internals, for the smart strategy and the
 * predictor (the public half is lr_store_* in llmroute.h).
 *
 * A store is a SQLite file (the truth) plus an in-memory copy built at open:
 * the records' outcomes in a compact form, per-model totals, and the kNN
 * index. Routing reads the copy under the store's read lock; writers (one at
 * a time) commit to SQLite first and then update the copy under the write
 * lock. An import replaces the whole copy at once (every TF-IDF weight is
 * recomputed). A single append is added in place: it joins the document
 * frequencies, and the documents already indexed keep their weights until
 * the next rebuild (open, import, refresh, or growth by a quarter since
 * the last; rebuilds other than open and import run beside the writers,
 * see store.c).
 * A dense store's appends have no weights to redo, but on the same schedule
 * (and first on reaching LR__GROUPS_MIN_RECORDS) its copy is rebuilt all the
 * same, beside the writers, for its groups.
 *
 * Threads: call the lr__hist_* and lr__store_knn_* functions only between
 * lr__store_rdlock() and lr__store_unlock(). A struct lr__store_scratch is
 * one thread's at a time.
 */
#ifndef LR_STORE_H
#define LR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"
#include "groups.h"
#include "index.h"
#include "llmroute.h"
#include "record.h"
#include "twins.h"

/* Caps on what a store accepts. */
#define LR__STORE_MAX_QUERY LR__RECORD_MAX_QUERY           /* bytes of one query */
#define LR__STORE_MAX_OUTCOMES LR__RECORD_MAX_OUTCOMES     /* outcomes per record */
#define LR__STORE_MAX_MODEL_NAME LR__RECORD_MAX_MODEL_NAME /* bytes of a model name */
#define LR__STORE_MAX_MODELS 4096        /* distinct model names */
#define LR__STORE_MAX_EMBEDDER 128       /* bytes of an embedder id */
#define LR__STORE_MAX_DIM 65536          /* dense dimension */
#define LR__STORE_HARD_MAX_RECORDS 100000000u            /* with max_records = 0 */
#define LR__STORE_SCHEMA_VERSION 1

/* Rebuilding the in-memory copy (open, refresh, import, the re-weighing)
 * splits its per-record work over threads (lr_store_options.threads) only
 * from this many records on; below, everything runs on the calling thread.
 * lr__store_parallel_min is read at each rebuild; tests lower it to have
 * small stores use threads. */
#define LR__STORE_PARALLEL_MIN 4096
extern size_t lr__store_parallel_min;

/* A TF-IDF rebuild reads the records' texts from the database this many at
 * a time, twice (a pass for the document frequencies, one for the
 * vectors), so that only one batch's texts are in memory at once.
 * lr__store_text_batch is read at each rebuild; tests lower it to have
 * small stores use several batches. */
#define LR__STORE_TEXT_BATCH 16384
extern size_t lr__store_text_batch;

/* One model's outcome on one record, as kept in memory. */
struct lr__outcome {
    uint32_t model; /* store model id */
    float correctness;
    float output_tokens;
};

/* A model's totals over the whole store (the predictor's prior). */
struct lr__model_stats {
    double n;
    double sum_correct;
    double sum_output;
};

/* Model names and their ids (0, 1, ... in order of first appearance). */
struct lr__names {
    char **names;    /* id -> name (owned) */
    size_t n, cap;
    uint32_t *slots; /* open addressing: id + 1, 0 = empty */
    size_t n_slots;  /* power of two, >= 2 * cap */
};

/* The id of `name`, or -1. A zeroed table is empty. */
int lr__names_find(const struct lr__names *t, const char *name);
/* Room for `extra` more names, so that lr__names_add() allocates nothing:
 * 0 or LR_ENOMEM. */
int lr__names_reserve(struct lr__names *t, size_t extra);
/* Add an owned (malloc'd) name not in t, with room reserved; its id. */
uint32_t lr__names_add(struct lr__names *t, char *name);
/* Free the names and the table, and zero it. */
void lr__names_free(struct lr__names *t);

/* The in-memory copy routing reads. */
struct lr__hist {
    size_t n, cap;       /* records */
    uint32_t *out_start; /* cap + 1 entries: record i's outcomes are outs[out_start[i] ..) */
    struct lr__outcome *outs;
    size_t n_outs, cap_outs;

    struct lr__names models;
    struct lr__model_stats *mstats; /* models.cap entries */

    /* tfidf-v1: document frequencies of the last rebuild, and the index */
    uint32_t *df; /* LR__TFIDF_SPACE entries */
    uint32_t df_ndocs;
    struct lr__sindex sidx;
    /* a remote embedder's vectors */
    struct lr__dindex didx;

    /* groups of similar records and their per-model totals (groups.h),
     * built with the index; n == 0 when the store has none */
    struct lr__groups groups;
    /* each model's slope over the records' near-duplicate pairs (twins.h),
     * built with the groups */
    struct lr__twins twins;

    /* The largest rowid of the outcomes table in the copy (0: none): a
     * rebuild or a writer's catch-up reads the outcomes committed after it
     * by rowid, as that table has no other index. */
    int64_t out_rowid;
};

/* Test knob: when set, a rebuild of the copy beside the writers (a
 * refresh, a writer's catch-up with many new rows, the re-weighing) calls
 * it on the rebuilding thread once the new copy is built from its read
 * snapshot, before it takes wmu to bring that copy up to date and publish
 * it. It returns 0 to go on, or a negative LR_E* that fails the rebuild
 * (the old copy stays). */
extern int (*lr__store_rebuild_hook)(struct lr_store *store);

/* Test knob: the clock, in unix seconds, that stamps idempotency keys,
 * ages them and stamps the keys of a store migrated to key times; NULL
 * (the default) is time(). Read at each keyed append and each writable
 * open. */
extern int64_t (*lr__store_clock)(void);

/* The most expired idempotency keys one keyed append deletes (store.c). */
#define LR__STORE_KEY_PURGE 32

void lr__store_rdlock(const struct lr_store *store);
void lr__store_unlock(const struct lr_store *store);

/* The copy; valid while the read lock is held. */
const struct lr__hist *lr__store_hist(const struct lr_store *store);
/* 1 when the store's vectors come from a remote embedder (dense). */
int lr__store_is_dense(const struct lr_store *store);
/* The dense dimension (0: not known yet), and the embedder's id. */
size_t lr__store_dim(const struct lr_store *store);
const char *lr__store_embedder(const struct lr_store *store);

/* The store model id of `name`, or -1. */
int lr__hist_model_id(const struct lr__hist *h, const char *name);

static inline const struct lr__outcome *lr__hist_outcomes(const struct lr__hist *h, uint32_t rec,
                                                          size_t *n)
{
    *n = h->out_start[rec + 1] - h->out_start[rec];
    return h->outs + h->out_start[rec];
}

/* Record rec's outcome for store model `model` (its first, should a record
 * hold two), or NULL when it has none. */
static inline const struct lr__outcome *lr__hist_outcome_of(const struct lr__hist *h, uint32_t rec,
                                                            uint32_t model)
{
    size_t n;
    const struct lr__outcome *o = lr__hist_outcomes(h, rec, &n);
    for (size_t x = 0; x < n; x++)
        if (o[x].model == model)
            return &o[x];
    return NULL;
}

/* Scratch for one search at a time. */
struct lr__store_scratch {
    struct lr__terms terms;
    struct lr__knn_scratch knn;
    struct lr__feat q[LR__TFIDF_MAX_FEATURES];
    float *dq;
    size_t dq_cap;
};
void lr__store_scratch_init(struct lr__store_scratch *s);
void lr__store_scratch_free(struct lr__store_scratch *s);

/* The k nearest records to a query text (tfidf-v1 store) or to a dense
 * vector (remote-embedder store; it is normalised here). Writes up to k
 * neighbours to out, best first; returns the count or a negative LR_E*. */
int lr__store_knn_text(const struct lr_store *store, const char *text, size_t len, size_t k,
                       struct lr__store_scratch *s, struct lr__neighbor *out);
int lr__store_knn_vec(const struct lr_store *store, const float *vec, size_t dim, size_t k,
                      struct lr__store_scratch *s, struct lr__neighbor *out);

/* The k nearest records to each of nq dense vectors (vecs[i], dim floats
 * each; normalised here) with one pass over the rows for all of them, into
 * out (nq x k) and counts. Returns 0, LR_ENOMEM, or LR_EINVAL when the store
 * is not dense, dim is not its dimension or a vector is zero or not finite. */
int lr__store_knn_vecs(const struct lr_store *store, const float *const *vecs, size_t nq,
                       size_t dim, size_t k, struct lr__neighbor *out, size_t *counts);

/* Embed a text into a tfidf-v1 query vector with the store's statistics
 * (read lock held); returns the feature count written to s->q. */
int lr__store_embed_text(const struct lr_store *store, const char *text, size_t len,
                         struct lr__store_scratch *s);

#endif /* LR_STORE_H */
