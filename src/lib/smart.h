/* smart.h -- the "smart" routing strategy (ECCOS per-query rule, as AIOS
 * ships it): embed the query, find its nearest past queries, predict each
 * candidate's quality and output length, price them, and rank: the
 * candidates whose predicted quality meets the requirement, cheapest first,
 * then the others by predicted quality, highest first.
 *
 * Threads: rank() may run on many threads at once against one state, while
 * another thread appends to the store; per-call scratch comes from a pool.
 */
#ifndef LR_SMART_H
#define LR_SMART_H

#include "predict.h"
#include "strategy.h"

#define LR__SMART_DEFAULT_K 16
#define LR__SMART_MAX_K LR_MAX_N_SIMILAR

/* A predicted quality up to this much below a requirement meets it, and a
 * batch's mean up to this much below alpha meets alpha: the store holds
 * outcomes as 32-bit floats, so a stored 0.7 reads back as 0.69999999,
 * which must not fall short of 0.7. Far above a float's rounding of a
 * value in [0, 1] (6e-8) and of a mean of such, far below any difference
 * of quality that matters. */
#define LR__SMART_QUALITY_SLACK 1e-6

/* A candidate as the ranking sees it, independent of the config. */
struct lr__smart_model {
    int index;           /* reported in the ranking */
    const char *name;    /* matched exactly against the history's model names */
    double price_in;     /* per input token */
    double price_out;    /* per output token */
};

/* One query, already resolved: text (built-in embedder) or a dense vector. */
struct lr__smart_query {
    const char *text;
    size_t len;
    const float *embedding;
    size_t dim;
    long input_tokens;
    double requirement;
};

struct lr__smart;

/* State without a config: a store (borrowed), the predictor mode and k. */
int lr__smart_new(struct lr_store *store, const char *predictor, int n_similar,
                  struct lr__smart **out, struct lr_error *err);
void lr__smart_free(struct lr__smart *s);
/* Override the default predictor constants (evaluation and tuning). */
void lr__smart_set_params(struct lr__smart *s, const struct lr__predict_params *p);

/* Rank m candidates into out[0..m), best first. LR_EEMPTY when the store
 * holds nothing (and m > 1); LR_EINVAL when the query lacks what the
 * store's embedder needs. */
int lr__smart_rank_models(struct lr__smart *s, const struct lr__smart_query *q,
                          const struct lr__smart_model *models, size_t m,
                          struct lr_candidate *out, struct lr_error *err);

/* Queries searched together over a dense store by lr__smart_knn_batch: one
 * pass over the rows serves them all (at 100,000 rows of 384, 8 queries
 * together took a median 0.77 of their time one by one, bench/dense_bench,
 * README's Performance), and
 * the store's read lock is held for one such pass at a time, so an append
 * waits for at most that. */
#define LR__SMART_SHARED_SEARCH 8

/* A routed request's query as the smart strategy reads it. */
void lr__smart_query_of(const struct lr__route_ctx *ctx, struct lr__smart_query *q);

/* 0 when q gives what the store's embedder reads; LR_EINVAL, naming the
 * embedding, for a vector given over a store of the built-in embedder,
 * which embeds the query text and would ignore it (as lr_store_add
 * refuses one). Checked before ranking, so that a query with one
 * candidate, which gets it whatever the history lacks, is refused too. */
int lr__smart_check_query(struct lr__smart *s, const struct lr__smart_query *q,
                          struct lr_error *err);

/* The neighbour count k that the state searches for. */
size_t lr__smart_k(const struct lr__smart *s);
/* The k nearest records of n queries over a dense store, searched
 * LR__SMART_SHARED_SEARCH at a time, into nb (n x k, k = lr__smart_k) and
 * counts. Returns 0; 1 when they cannot be searched together (the store
 * is not dense or is empty, a query has no vector or one of another
 * dimension, zero or not finite: lr__smart_rank_models then says what is
 * wrong); LR_ENOMEM; or LR_ECANCELED when stop (NULL: never), asked
 * before each group, answers. */
int lr__smart_knn_batch(struct lr__smart *s, const struct lr__smart_query *qs, size_t n,
                        struct lr__neighbor *nb, size_t *counts, const struct lr__stop *stop);
/* lr__smart_rank_models with q's neighbours already found by
 * lr__smart_knn_batch (searched again only if the store no longer holds
 * one of them). */
int lr__smart_rank_given(struct lr__smart *s, const struct lr__smart_query *q,
                         const struct lr__neighbor *nb, size_t n_nb,
                         const struct lr__smart_model *models, size_t m,
                         struct lr_candidate *out, struct lr_error *err);

/* Order already-predicted candidates by the per-query rule (exposed so the
 * rule can be tested on its own). quality may hold NaN (unknown: ranked
 * last). order receives positions 0..m-1. */
void lr__smart_order(const double *quality, const double *cost, size_t m, double requirement,
                     size_t *order);

/* The strategy's rank_batch (smart_batch.c): predictions for every query,
 * then the optimizer's assignment under the batch constraints. */
int lr__smart_rank_batch(void *state, const struct lr__route_ctx *ctxs, size_t n,
                         const struct lr_batch_options *opts, struct lr_candidate *const *rankings,
                         int *assign, struct lr_batch_report *report, const struct lr__stop *stop,
                         struct lr_error *err);

#endif /* LR_SMART_H */
