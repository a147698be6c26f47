/* smart.c -- the "smart" routing strategy (see smart.h).
 *
 * Decisions where AIOS leaves things open, and why:
 *   - An empty store cannot predict anything: rank() answers LR_EEMPTY
 *     ("the history store is empty: import data first"), except with a
 *     single candidate, which is its own ranking with unknown (NaN) figures.
 *     The strategy is still created over an empty store, so a gateway can
 *     start before its first feedback arrives.
 *   - Model names in the history are matched to config names exactly.
 *   - A candidate the history has never seen: in "aios" mode quality 0 and
 *     0 output tokens, as AIOS does; in "default" mode its quality is
 *     unknown (NaN, ranked after every known candidate) and its output
 *     length is the neighbours' pooled over all models, so its cost is still
 *     a fair estimate.
 *   - A blank query (only spaces, tabs, line breaks) has no neighbours: it
 *     is ranked on the candidates' store-wide priors (default predictor)
 *     or as one no neighbour knows (aios: quality 0, so the cheapest
 *     first), not on whatever records a search for nothing returns. An
 *     empty one (with a choice to make and no vector) is refused ("smart
 *     routing needs the query text") by smart_check(), before the store is
 *     looked at: over an empty store too, where it was LR_EEMPTY, and the
 *     caller who imported data as told was then refused for the text.
 *   - A predicted quality up to LR__SMART_QUALITY_SLACK (smart.h) below the
 *     requirement meets it: the store holds outcomes as 32-bit floats, and a
 *     neighbour's 0.7 read back is 0.69999999, which must not fall short of
 *     a requirement of 0.7 (the router then took a model 60 times dearer).
 *   - Ties: among candidates meeting the requirement, equal cost goes to the
 *     earlier candidate (AIOS's min() does the same); among the rest, equal
 *     quality goes to the cheaper, then the earlier.
 *
 * Threads: rank() from many threads at once; each call takes its scratch
 * from a mutex-guarded pool and holds the store's read lock while it
 * searches and predicts.
 */
#include "smart.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct scratch {
    struct scratch *next;
    struct lr__store_scratch ss;
    struct lr__neighbor nb[LR__SMART_MAX_K];
};

struct lr__smart {
    struct lr_store *store;
    enum lr__predict_mode mode;
    struct lr__predict_params params;
    size_t k;
    pthread_mutex_t mu;
    struct scratch *pool;
};

/* Whether text is spaces, tabs and line breaks alone (and not empty). */
static int text_blank(const char *text, size_t len)
{
    if (!text || len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\n\v\f\r", text[i]) || text[i] == '\0')
            return 0;
    return 1;
}

/* ==== State ==== */

int lr__smart_new(struct lr_store *store, const char *predictor, int n_similar,
                  struct lr__smart **out, struct lr_error *err)
{
    enum lr__predict_mode mode;
    struct lr__smart *s;

    *out = NULL;
    if (!store)
        return lr__error_set(err, LR_ESTRATEGY, "smart routing needs a history store");
    if (lr__predict_mode_parse(predictor, &mode) != 0)
        return lr__error_set(err, LR_ESTRATEGY,
                             "unknown predictor '%s' (expected \"default\" or \"aios\")",
                             predictor);
    if (n_similar < 0 || n_similar > LR__SMART_MAX_K)
        return lr__error_set(err, LR_ESTRATEGY, "n_similar %d is out of range [1, %d]", n_similar,
                    LR__SMART_MAX_K);
    s = calloc(1, sizeof(*s));
    if (!s)
        return lr__error_set(err, LR_ENOMEM, "out of memory creating the smart strategy");
    s->store = store;
    s->mode = mode;
    s->k = n_similar > 0 ? (size_t)n_similar : LR__SMART_DEFAULT_K;
    lr__predict_params_default(&s->params);
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

void lr__smart_free(struct lr__smart *s)
{
    if (!s)
        return;
    while (s->pool) {
        struct scratch *x = s->pool;
        s->pool = x->next;
        lr__store_scratch_free(&x->ss);
        free(x);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void lr__smart_set_params(struct lr__smart *s, const struct lr__predict_params *p)
{
    s->params = *p;
}

static struct scratch *scratch_get(struct lr__smart *s)
{
    struct scratch *x;
    pthread_mutex_lock(&s->mu);
    x = s->pool;
    if (x)
        s->pool = x->next;
    pthread_mutex_unlock(&s->mu);
    if (!x) {
        x = malloc(sizeof(*x));
        if (x)
            lr__store_scratch_init(&x->ss);
    }
    return x;
}

static void scratch_put(struct lr__smart *s, struct scratch *x)
{
    pthread_mutex_lock(&s->mu);
    x->next = s->pool;
    s->pool = x;
    pthread_mutex_unlock(&s->mu);
}

/* ==== The per-query rule ==== */

struct ranked {
    double q, cost;
    size_t pos;
    int meets;
};

static int cmp_ranked(const void *pa, const void *pb)
{
    const struct ranked *a = pa, *b = pb;
    if (a->meets != b->meets)
        return a->meets ? -1 : 1;
    if (!a->meets) {
        int an = isnan(a->q), bn = isnan(b->q);
        if (an != bn)
            return an ? 1 : -1;
        if (!an && a->q != b->q)
            return a->q > b->q ? -1 : 1;
    }
    /* Unknown costs sort after known ones. */
    int ac = isnan(a->cost), bc = isnan(b->cost);
    if (ac != bc)
        return ac ? 1 : -1;
    if (!ac && a->cost != b->cost)
        return a->cost < b->cost ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

void lr__smart_order(const double *quality, const double *cost, size_t m, double requirement,
                     size_t *order)
{
    struct ranked stack_r[64];
    struct ranked *r = m <= 64 ? stack_r : malloc(m * sizeof(*r));
    if (!r) {
        /* Without scratch, keep the given order rather than fail. */
        for (size_t j = 0; j < m; j++)
            order[j] = j;
        return;
    }
    for (size_t j = 0; j < m; j++) {
        r[j].q = quality[j];
        r[j].cost = cost[j];
        r[j].pos = j;
        r[j].meets = !isnan(quality[j]) && quality[j] >= requirement - LR__SMART_QUALITY_SLACK;
    }
    qsort(r, m, sizeof(*r), cmp_ranked);
    for (size_t j = 0; j < m; j++)
        order[j] = r[j].pos;
    if (r != stack_r)
        free(r);
}

/* ==== Ranking ==== */

static void fill_unknown(const struct lr__smart_model *models, size_t m,
                         struct lr_candidate *out)
{
    for (size_t j = 0; j < m; j++) {
        out[j].index = models[j].index;
        out[j].predicted_quality = NAN;
        out[j].predicted_output_tokens = NAN;
        out[j].estimated_cost = NAN;
    }
}

/* Rank as lr__smart_rank_models does; with given (n_given neighbours of
 * q, found by lr__smart_knn_batch) the search is not run again, unless the
 * store no longer holds one of them. */
static int rank(struct lr__smart *s, const struct lr__smart_query *q,
                const struct lr__neighbor *given, size_t n_given,
                const struct lr__smart_model *models, size_t m, struct lr_candidate *out,
                struct lr_error *err)
{
    double stack_buf[4 * 32];
    int stack_ids[32];
    size_t stack_order[32];
    double *buf = m <= 32 ? stack_buf : malloc(4 * m * sizeof(*buf));
    int *ids = m <= 32 ? stack_ids : malloc(m * sizeof(*ids));
    size_t *order = m <= 32 ? stack_order : malloc(m * sizeof(*order));
    struct scratch *x = NULL;
    int rc = 0, locked = 0, nn;

    if (m == 0) {
        rc = lr__error_set(err, LR_EEMPTY, "no candidates to rank");
        goto out;
    }
    if (!buf || !ids || !order || !(x = scratch_get(s))) {
        rc = lr__error_set(err, LR_ENOMEM, "out of memory ranking candidates");
        goto out;
    }
    double *quality = buf, *tokens = buf + m, *cost = buf + 2 * m;

    lr__store_rdlock(s->store);
    locked = 1;
    const struct lr__hist *h = lr__store_hist(s->store);
    if (h->n == 0) {
        if (m == 1) {
            fill_unknown(models, m, out);
            goto out;
        }
        rc = lr__error_set(err, LR_EEMPTY, "the history store is empty: import data first");
        goto out;
    }
    size_t fetch = s->k;
    if (!q->embedding && q->text && text_blank(q->text, q->len)) {
        /* Spaces and line breaks alone: nothing to search by. The built-in
         * embedder gives such a text no term, and the search then returned
         * the store's first k records at similarity 0 as its neighbours (a
         * remote embedder, some vector of the blank), so the store's first
         * records decided. No neighbours instead: each candidate's
         * store-wide prior under the default predictor, 0 under aios's
         * (then the cheapest candidate leads, as for a query no neighbour
         * knows). An empty text is still refused below. */
        nn = 0;
    } else if (lr__store_is_dense(s->store)) {
        if (!q->embedding && (!q->text || q->len == 0)) {
            /* Neither a vector nor a text to embed: refused in the words of
             * the built-in store's refusal below. */
            rc = lr__error_set(err, LR_EINVAL, "smart routing needs the query text");
            goto out;
        }
        if (!q->embedding || q->dim != lr__store_dim(s->store)) {
            rc = lr__error_set(err, LR_EINVAL,
                      "the history store uses the remote embedder '%s': the request needs an "
                      "embedding of dimension %zu (got %zu)",
                      lr__store_embedder(s->store), lr__store_dim(s->store),
                      q->embedding ? q->dim : 0);
            goto out;
        }
        nn = -1;
        if (given && n_given <= fetch) {
            size_t i = 0;
            while (i < n_given && given[i].doc < h->n)
                i++;
            if (i == n_given) {
                memcpy(x->nb, given, n_given * sizeof(*given));
                nn = (int)n_given;
            }
        }
        if (nn < 0)
            nn = lr__store_knn_vec(s->store, q->embedding, q->dim, fetch, &x->ss, x->nb);
    } else {
        if (!q->text || q->len == 0) {
            rc = lr__error_set(err, LR_EINVAL, "smart routing needs the query text");
            goto out;
        }
        nn = lr__store_knn_text(s->store, q->text, q->len, fetch, &x->ss, x->nb);
        /* When fewer than k records share a term with the query, the search
         * fills the list with records at similarity 0, in store order (as a
         * full scan ranks them): they say nothing about this query, and a
         * query of words the store has never seen (another script, say) was
         * ranked on the store's first k records. The default predictor
         * leaves them out, so such a query stands on the priors; aios keeps
         * the k, as its mean over the k nearest does. */
        if (s->mode == LR__PREDICT_DEFAULT)
            while (nn > 0 && !(x->nb[nn - 1].sim > 0))
                nn--;
    }
    if (nn < 0) {
        rc = lr__error_set(err, nn, nn == LR_ENOMEM ? "out of memory searching the history"
                                           : "the query's embedding is zero or not finite");
        goto out;
    }
    for (size_t j = 0; j < m; j++)
        ids[j] = models[j].name ? lr__hist_model_id(h, models[j].name) : -1;
    lr__predict(h, s->mode, &s->params, x->nb, (size_t)nn, s->k, ids, m, quality, tokens);
    lr__store_unlock(s->store);
    locked = 0;

    for (size_t j = 0; j < m; j++)
        cost[j] = (double)q->input_tokens * models[j].price_in + tokens[j] * models[j].price_out;
    lr__smart_order(quality, cost, m, q->requirement, order);
    for (size_t r = 0; r < m; r++) {
        size_t j = order[r];
        out[r].index = models[j].index;
        out[r].predicted_quality = quality[j];
        out[r].predicted_output_tokens = tokens[j];
        out[r].estimated_cost = cost[j];
    }
out:
    if (locked)
        lr__store_unlock(s->store);
    if (x)
        scratch_put(s, x);
    if (buf != stack_buf)
        free(buf);
    if (ids != stack_ids)
        free(ids);
    if (order != stack_order)
        free(order);
    return rc;
}

int lr__smart_rank_models(struct lr__smart *s, const struct lr__smart_query *q,
                          const struct lr__smart_model *models, size_t m,
                          struct lr_candidate *out, struct lr_error *err)
{
    return rank(s, q, NULL, 0, models, m, out, err);
}

int lr__smart_rank_given(struct lr__smart *s, const struct lr__smart_query *q,
                         const struct lr__neighbor *nb, size_t n_nb,
                         const struct lr__smart_model *models, size_t m,
                         struct lr_candidate *out, struct lr_error *err)
{
    return rank(s, q, nb, n_nb, models, m, out, err);
}

size_t lr__smart_k(const struct lr__smart *s)
{
    return s->k;
}

int lr__smart_check_query(struct lr__smart *s, const struct lr__smart_query *q,
                          struct lr_error *err)
{
    /* Whether the store is dense is set at its open and never changes: no
     * lock is needed to read it. */
    if (q->embedding && !lr__store_is_dense(s->store))
        return lr__error_set(err, LR_EINVAL,
                             "embedding: the history store uses the built-in embedder '%s', "
                             "which embeds the query text: give no embedding",
                             LR_EMBEDDER_BUILTIN);
    return 0;
}

int lr__smart_knn_batch(struct lr__smart *s, const struct lr__smart_query *qs, size_t n,
                        struct lr__neighbor *nb, size_t *counts, const struct lr__stop *stop)
{
    const float *vecs[LR__SMART_SHARED_SEARCH];
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (!qs[i].embedding || qs[i].dim == 0 || qs[i].dim != qs[0].dim)
            return 1;
    for (size_t i0 = 0; i0 < n && rc == 0; i0 += LR__SMART_SHARED_SEARCH) {
        size_t c = n - i0 < LR__SMART_SHARED_SEARCH ? n - i0 : LR__SMART_SHARED_SEARCH;
        if (lr__stopped(stop))
            return LR_ECANCELED;
        for (size_t i = 0; i < c; i++)
            vecs[i] = qs[i0 + i].embedding;
        lr__store_rdlock(s->store);
        if (!lr__store_is_dense(s->store) || lr__store_hist(s->store)->n == 0)
            rc = 1;
        else
            rc = lr__store_knn_vecs(s->store, vecs, c, qs[0].dim, s->k, nb + i0 * s->k,
                                    counts + i0);
        lr__store_unlock(s->store);
    }
    return rc == LR_EINVAL ? 1 : rc;
}

/* ==== The strategy interface ==== */

void lr__smart_query_of(const struct lr__route_ctx *ctx, struct lr__smart_query *q)
{
    memset(q, 0, sizeof(*q));
    q->text = ctx->req ? ctx->req->query : NULL;
    q->len = q->text ? strlen(q->text) : 0;
    q->embedding = ctx->req ? ctx->req->embedding : NULL;
    q->dim = ctx->req ? ctx->req->embedding_dim : 0;
    q->input_tokens = ctx->input_tokens;
    q->requirement = ctx->requirement;
}

static int smart_create(const struct lr_config *cfg, const struct lr_router_options *opts,
                        void **state, struct lr_error *err)
{
    struct lr__smart *s = NULL;
    int rc;
    (void)cfg;
    *state = NULL;
    if (!opts)
        return lr__error_set(err, LR_ESTRATEGY, "smart routing needs a history store");
    rc = lr__smart_new(opts->store, opts->predictor, opts->n_similar, &s, err);
    if (rc == 0)
        *state = s;
    return rc;
}

static void smart_destroy(void *state)
{
    lr__smart_free(state);
}

/* What the request itself lacks, refused before the store is looked at
 * (the router calls this once the request is resolved, before rank() or
 * rank_batch()): a candidate without prices, a vector over a store of the
 * built-in embedder, and, with a choice to make, neither a query text nor
 * a vector. The last was found only past the empty store's refusal, so
 * over an empty store the caller was told to import data, and after that
 * was told of the text. One candidate needs neither prices nor text. */
static int smart_check(void *state, const struct lr__route_ctx *ctx, struct lr_error *err)
{
    struct lr__smart_query q;
    int rc;

    for (size_t j = 0; ctx->n_cands > 1 && j < ctx->n_cands; j++) {
        const struct lr_model_info *mi = lr_config_model(ctx->cfg, (size_t)ctx->cands[j]);
        /* A cost cannot be estimated without prices. */
        if (mi && (isnan(mi->cost_per_input_token) || isnan(mi->cost_per_output_token)))
            return lr__error_set(err, LR_EINVAL,
                                 "model '%s' has no %s: smart routing needs both prices",
                                 mi->name,
                                 isnan(mi->cost_per_input_token) ? "cost_per_input_token"
                                                                 : "cost_per_output_token");
    }
    lr__smart_query_of(ctx, &q);
    if ((rc = lr__smart_check_query(state, &q, err)) != 0)
        return rc;
    /* A blank text (spaces alone) is ranked on the priors; an empty one has
     * nothing to rank by, over a store of either embedder, unless a dense
     * store's vector is given (one over a built-in store is refused above). */
    if (ctx->n_cands > 1 && q.len == 0 && !q.embedding)
        return lr__error_set(err, LR_EINVAL, "smart routing needs the query text");
    return 0;
}

/* The request has passed smart_check(). */
static int smart_rank(void *state, const struct lr__route_ctx *ctx, struct lr_candidate *ranking,
                      struct lr_error *err)
{
    /* Zeroed: with no candidates nothing is written to it before it is
     * passed on (rank() then refuses the empty list). */
    struct lr__smart_model stack_m[32] = {{0}};
    struct lr__smart_model *models =
        ctx->n_cands <= 32 ? stack_m : malloc(ctx->n_cands * sizeof(*models));
    struct lr__smart_query q;
    int rc;

    if (!models)
        return lr__error_set(err, LR_ENOMEM, "out of memory ranking candidates");
    for (size_t j = 0; j < ctx->n_cands; j++) {
        const struct lr_model_info *mi = lr_config_model(ctx->cfg, (size_t)ctx->cands[j]);
        models[j].index = ctx->cands[j];
        models[j].name = mi ? mi->name : NULL;
        models[j].price_in = mi ? mi->cost_per_input_token : NAN;
        models[j].price_out = mi ? mi->cost_per_output_token : NAN;
    }
    lr__smart_query_of(ctx, &q);
    rc = lr__smart_rank_models(state, &q, models, ctx->n_cands, ranking, err);
    /* One candidate is its own ranking whatever the history lacks. */
    if (rc != 0 && rc != LR_ENOMEM && ctx->n_cands == 1) {
        fill_unknown(models, 1, ranking);
        rc = 0;
    }
    if (models != stack_m)
        free(models);
    return rc;
}

const struct lr__strategy lr__strategy_smart = {
    .name = "smart",
    .create = smart_create,
    .destroy = smart_destroy,
    .check = smart_check,
    .rank = smart_rank,
    .rank_batch = lr__smart_rank_batch,
};
