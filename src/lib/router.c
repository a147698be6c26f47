/* router.c -- the router: a strategy over a configuration.
 *
 * The router validates a request (resolves candidate names to config
 * indices, rejects unknown or repeated names, checks the requirement),
 * estimates its input tokens when the caller gave none, lets the strategy
 * refuse what it could never route (its check(), before its state is looked
 * at), asks the strategy for a ranking and copies its head into the
 * caller's decision. Every strategy's answer is a ranking, so the gateway's
 * fallback order is the strategy's own judgement.
 *
 * Threads: lr_router_route(), lr_router_route_batch() and the sequential
 * cursor's functions may run on several threads at once; the router itself
 * holds no mutable state (strategies keep theirs safe). lr_router_new() and
 * lr_router_free() are not concurrent with anything on the same router.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"
#include "predict.h" /* lr__predict_mode_parse() */
#include "record.h"
#include "strategy.h"

/* ==== The strategy table ==== */

static const struct lr__strategy *const strategies[] = {
    &lr__strategy_sequential,
    &lr__strategy_smart,
};
#define N_STRATEGIES (sizeof strategies / sizeof strategies[0])

const struct lr__strategy *lr__strategy_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_STRATEGIES; i++)
        if (strcmp(strategies[i]->name, name) == 0)
            return strategies[i];
    return NULL;
}

static char strategy_names[256];
static pthread_once_t strategy_names_once = PTHREAD_ONCE_INIT;

static void strategy_names_build(void)
{
    size_t off = 0;
    for (size_t i = 0; i < N_STRATEGIES && off < sizeof strategy_names; i++)
        off += (size_t)snprintf(strategy_names + off, sizeof strategy_names - off, "%s%s",
                                i ? ", " : "", strategies[i]->name);
}

/* Built once, whichever thread asks first (two routers, or two config
 * loads, refusing an unknown strategy at once): pthread_once orders the
 * writes before every reader. */
const char *lr__strategy_names(void)
{
    pthread_once(&strategy_names_once, strategy_names_build);
    return strategy_names;
}

/* ==== Router ==== */

struct lr_router {
    const struct lr_config *cfg;
    const struct lr__strategy *strategy;
    void *state;
    double requirement;
    size_t n_models;
};

void lr_router_options_init(struct lr_router_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->performance_requirement = NAN;
}

void lr_request_init(struct lr_request *req)
{
    if (!req)
        return;
    memset(req, 0, sizeof *req);
    req->input_tokens = -1;
    req->performance_requirement = NAN;
}

void lr_decision_init(struct lr_decision *d)
{
    if (!d)
        return;
    memset(d, 0, sizeof *d);
    d->index = -1;
    d->predicted_quality = NAN;
    d->predicted_output_tokens = NAN;
    d->estimated_cost = NAN;
    d->input_tokens = -1;
}

void lr_batch_options_init(struct lr_batch_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->mode = LR_BATCH_PER_QUERY;
    opts->alpha = NAN;
    opts->budget = NAN;
}

int lr_router_new(const struct lr_config *cfg, const struct lr_router_options *opts,
                  struct lr_router **out, struct lr_error *err)
{
    const struct lr_router_defaults *d;
    struct lr_router_options o;
    struct lr_router *r;
    char nt[LR__NUMBER_TEXT];
    int rc;

    if (!out)
        return lr__error_set(err, LR_EINVAL, "lr_router_new: out is NULL");
    *out = NULL;
    if (!cfg)
        return lr__error_set(err, LR_EINVAL, "lr_router_new: no configuration");
    d = lr_config_router_defaults(cfg);
    if (opts)
        o = *opts;
    else
        lr_router_options_init(&o);
    if (!o.strategy)
        o.strategy = d->strategy;
    if (isnan(o.performance_requirement))
        o.performance_requirement = d->performance_requirement;
    if (!(o.performance_requirement >= 0 && o.performance_requirement <= 1))
        return lr__error_set(err, LR_EINVAL,
                             "performance requirement: expected a number from 0 to 1, got %s",
                             lr__error_number(nt, o.performance_requirement));
    if (o.n_similar == 0)
        o.n_similar = d->n_similar;
    if (o.n_similar < 1 || o.n_similar > LR_MAX_N_SIMILAR)
        return lr__error_set(err, LR_EINVAL, "n_similar: expected 1 to %d, got %d",
                             LR_MAX_N_SIMILAR, o.n_similar);
    if (!o.predictor)
        o.predictor = d->predictor;
    /* Whatever the strategy: a misspelt predictor taken without a word by
     * the sequential one would fail only once the router became smart. */
    enum lr__predict_mode mode;
    if (lr__predict_mode_parse(o.predictor, &mode) != 0) {
        char shown[LR__SHOWN_CAP(LR__SHOWN_NAME)];
        return lr__error_set(err, LR_ESTRATEGY,
                             "unknown predictor '%s' (expected \"default\" or \"aios\")",
                             lr__error_shown(o.predictor, LR__SHOWN_NAME, shown, sizeof shown));
    }

    r = calloc(1, sizeof *r);
    if (!r)
        return lr__error_set(err, LR_ENOMEM, "out of memory creating the router");
    r->cfg = cfg;
    r->n_models = lr_config_model_count(cfg);
    r->requirement = o.performance_requirement;
    r->strategy = lr__strategy_find(o.strategy);
    if (!r->strategy) {
        char shown[LR__SHOWN_CAP(LR__SHOWN_NAME)];
        free(r);
        return lr__error_set(err, LR_ESTRATEGY, "unknown strategy '%s' (known: %s)",
                             lr__error_shown(o.strategy, LR__SHOWN_NAME, shown, sizeof shown),
                             lr__strategy_names());
    }
    rc = r->strategy->create(cfg, &o, &r->state, err);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void lr_router_free(struct lr_router *router)
{
    if (!router)
        return;
    if (router->strategy->destroy)
        router->strategy->destroy(router->state);
    free(router);
}

const char *lr_router_strategy(const struct lr_router *router)
{
    return router ? router->strategy->name : NULL;
}

const struct lr_config *lr_router_config(const struct lr_router *router)
{
    return router ? router->cfg : NULL;
}

/* ==== The sequential cursor ==== */

/* A router's strategy is fixed at lr_router_new(), so the cursor meant is
 * always that strategy's own; a strategy without one is refused, not given
 * a cursor that nothing reads. */
static int no_cursor(const struct lr_router *router, struct lr_error *err)
{
    return lr__error_set(err, LR_ESTRATEGY,
                         "the router's strategy is %s, which keeps no round-robin cursor (only "
                         "a sequential router has one)",
                         router->strategy->name);
}

int lr_router_sequential_cursor(const struct lr_router *router, uint64_t *cursor,
                                struct lr_error *err)
{
    if (!router || !cursor)
        return lr__error_set(err, LR_EINVAL,
                             "lr_router_sequential_cursor: router and cursor are needed");
    if (!router->strategy->cursor_load)
        return no_cursor(router, err);
    *cursor = router->strategy->cursor_load(router->state);
    return 0;
}

int lr_router_set_sequential_cursor(struct lr_router *router, uint64_t cursor,
                                    struct lr_error *err)
{
    if (!router)
        return lr__error_set(err, LR_EINVAL, "lr_router_set_sequential_cursor: no router");
    if (!router->strategy->cursor_store)
        return no_cursor(router, err);
    router->strategy->cursor_store(router->state, cursor);
    return 0;
}

long lr_estimate_tokens(const char *text, size_t len)
{
    /* About four bytes of UTF-8 per token for English text with a BPE
     * tokenizer; the count only scales the input-price term. */
    if (!text || len == 0)
        return 0;
    /* Rounded up without len + 3, which wraps for a len near SIZE_MAX. */
    size_t n = len / 4 + (len % 4 != 0);
    return n > (size_t)LONG_MAX ? LONG_MAX : (long)n;
}

/* ==== Routing ==== */

/* Candidates live in a small buffer on the stack, or on the heap when a
 * request names more than this many models. */
#define STACK_CANDS 64

struct resolved {
    int stack_idx[STACK_CANDS];
    struct lr_candidate stack_rank[STACK_CANDS];
    int *idx;
    struct lr_candidate *rank;
    size_t n;
};

static void resolved_free(struct resolved *res)
{
    if (res->idx != res->stack_idx)
        free(res->idx);
    if (res->rank != res->stack_rank)
        free(res->rank);
}

/* Resolve and validate a request into ctx; res owns the buffers. */
static int resolve(struct lr_router *r, const struct lr_request *req, struct lr__route_ctx *ctx,
                   struct resolved *res, struct lr_error *err)
{
    size_t n = req->n_models ? req->n_models : r->n_models;
    unsigned char seen_stack[256], *seen = seen_stack;
    char nt[LR__NUMBER_TEXT];
    int rc = 0;

    res->idx = res->stack_idx;
    res->rank = res->stack_rank;
    res->n = n;
    if (req->models && req->model_indices)
        return lr__error_set(err, LR_EINVAL,
                             "request: both models and model_indices are given: give one "
                             "candidate list");
    if (req->n_models && !req->models && !req->model_indices)
        return lr__error_set(err, LR_EINVAL, "request: n_models is %zu but no models are given",
                             req->n_models);
    /* An explicit list (models or model_indices given) with no entry is a
     * mistake of the caller's, never "every model" (which is no list). */
    if (!req->n_models && (req->models || req->model_indices))
        return lr__error_set(err, LR_EEMPTY,
                             "request: the candidate list is empty (%s is given with n_models "
                             "0): give at least one model, or no list for every model",
                             req->models ? "models" : "model_indices");
    /* Candidates are distinct configured models, so a list longer than
     * the configuration holds an unknown or a repeated one among its
     * first r->n_models + 1 entries: only those are read, so nothing is
     * sized by the list's length (n times an element size could
     * overflow), and the error names the entry at fault, as for a list
     * of any other length ("unknown model 'x'", not a count). */
    if (req->n_models > r->n_models)
        res->n = n = r->n_models + 1;
    if (n > STACK_CANDS) {
        res->idx = malloc(n * sizeof *res->idx);
        res->rank = malloc(n * sizeof *res->rank);
        if (!res->idx || !res->rank)
            return lr__error_set(err, LR_ENOMEM, "out of memory routing a request");
    }
    if (r->n_models > sizeof seen_stack) {
        seen = calloc(r->n_models, 1);
        if (!seen)
            return lr__error_set(err, LR_ENOMEM, "out of memory routing a request");
    } else {
        memset(seen, 0, r->n_models);
    }

    for (size_t i = 0; i < n; i++) {
        int k;
        if (!req->n_models) {
            k = (int)i;
        } else if (req->models) {
            const char *name = req->models[i];
            if (!name) {
                rc = lr__error_set(err, LR_EINVAL, "models[%zu]: missing model name", i);
                goto out;
            }
            k = lr_config_model_index(r->cfg, name);
            if (k < 0) {
                char shown[LR__SHOWN_CAP(LR__SHOWN_NAME)];
                rc = lr__error_set(err, LR_ENOMODEL, "unknown model '%s'",
                                   lr__error_shown(name, LR__SHOWN_NAME, shown, sizeof shown));
                goto out;
            }
        } else {
            k = req->model_indices[i];
            if (k < 0 || (size_t)k >= r->n_models) {
                rc = lr__error_set(err, LR_ENOMODEL,
                                   "model index %d is out of range (%zu models configured)", k,
                                   r->n_models);
                goto out;
            }
        }
        if (seen[k]) {
            rc = lr__error_set(err, LR_EINVAL, "model '%s' is listed twice among the candidates",
                               lr_config_model(r->cfg, (size_t)k)->name);
            goto out;
        }
        seen[k] = 1;
        res->idx[i] = k;
    }
    if (req->n_models > r->n_models) { /* unreachable: the loop above found the fault */
        rc = lr__error_set(err, LR_EINVAL,
                           "request: n_models %zu exceeds the %zu configured models (a "
                           "candidate list that long must repeat a model)",
                           req->n_models, r->n_models);
        goto out;
    }

    ctx->cfg = r->cfg;
    ctx->req = req;
    ctx->cands = res->idx;
    ctx->n_cands = n;
    ctx->requirement = isnan(req->performance_requirement) ? r->requirement
                                                           : req->performance_requirement;
    if (!(ctx->requirement >= 0 && ctx->requirement <= 1)) {
        rc = lr__error_set(err, LR_EINVAL,
                           "performance requirement: expected a number from 0 to 1, got %s",
                           lr__error_number(nt, req->performance_requirement));
        goto out;
    }
    /* A vector and its dimension go together; one without the other is a
     * caller's slip that routing would otherwise ignore. */
    if (req->embedding_dim && !req->embedding) {
        rc = lr__error_set(err, LR_EINVAL, "embedding_dim is %zu but no embedding is given",
                           req->embedding_dim);
        goto out;
    }
    if (req->embedding && !req->embedding_dim) {
        rc = lr__error_set(err, LR_EINVAL, "an embedding is given with embedding_dim 0");
        goto out;
    }
    if (req->input_tokens > LR__RECORD_MAX_TOKENS) {
        rc = lr__error_set(err, LR_EINVAL, "input_tokens: %ld is over the cap of %d",
                           req->input_tokens, LR__RECORD_MAX_TOKENS);
        goto out;
    }
    /* The text is held to the rule a stored query is (lr_store_add,
     * lr_record_check_query), with its words, whatever the strategy: text
     * that could never be stored is never routed either. */
    if (req->query) {
        size_t qlen = strlen(req->query);
        char msg[sizeof err->message];
        if (lr__record_check_utf8("query", req->query, qlen, msg, sizeof msg) != 0) {
            rc = lr__error_set(err, LR_EINVAL, "%s", msg);
            goto out;
        }
        ctx->input_tokens =
            req->input_tokens >= 0 ? req->input_tokens : lr_estimate_tokens(req->query, qlen);
    } else {
        ctx->input_tokens = req->input_tokens >= 0 ? req->input_tokens : 0;
    }
out:
    if (seen != seen_stack)
        free(seen);
    return rc;
}

/* The strategy's own refusal of a resolved request (its check(), if any),
 * before its state is looked at: what it could never route (smart: a
 * choice to make and no query text) is named as the caller's fault, and
 * not hidden behind the state's (an empty history store). A batch checks
 * its queries once all are resolved, so that a name at fault in any query
 * is still named first, as before the strategy had a say. */
static int check(struct lr_router *r, const struct lr__route_ctx *ctx, struct lr_error *err)
{
    return r->strategy->check ? r->strategy->check(r->state, ctx, err) : 0;
}

static void fill_decision(struct lr_decision *out, const struct lr_candidate *rank, size_t n,
                          long input_tokens)
{
    out->index = rank[0].index;
    out->predicted_quality = rank[0].predicted_quality;
    out->predicted_output_tokens = rank[0].predicted_output_tokens;
    out->estimated_cost = rank[0].estimated_cost;
    out->input_tokens = input_tokens;
    out->n_ranked = 0;
    if (out->ranking && out->ranking_cap) {
        size_t k = n < out->ranking_cap ? n : out->ranking_cap;
        memcpy(out->ranking, rank, k * sizeof *rank);
        out->n_ranked = k;
    }
}

int lr_router_route(struct lr_router *router, const struct lr_request *req,
                    struct lr_decision *out, struct lr_error *err)
{
    struct lr__route_ctx ctx;
    struct resolved res;
    int rc;

    if (!router || !req || !out)
        return lr__error_set(err, LR_EINVAL, "lr_router_route: router, req and out are needed");
    rc = resolve(router, req, &ctx, &res, err);
    if (rc == 0)
        rc = check(router, &ctx, err);
    if (rc == 0)
        rc = router->strategy->rank(router->state, &ctx, res.rank, err);
    if (rc == 0)
        fill_decision(out, res.rank, res.n, ctx.input_tokens);
    resolved_free(&res);
    return rc;
}

/* The per-query mode: each request routed as lr_router_route routes it, but
 * all or nothing. Every request is resolved and checked first (its
 * candidates' indices kept), so a bad request fails the batch before any
 * takes a turn of the sequential cursor; the decisions are then made from
 * what was kept, into a block of this call's own, and copied to out only
 * when every request has one, so a failed batch leaves out as it was.
 * Tickets are still drawn one request at a time: under concurrency another
 * thread's routes may come between a batch's. */
static int route_per_query(struct lr_router *router, const struct lr_request *reqs, size_t n,
                           struct lr_decision *out, const struct lr__stop *stop,
                           struct lr_error *err)
{
    struct lr__route_ctx *ctxs;
    struct lr_decision *tmp;
    struct lr_candidate *scratch, *rank;
    int *idx;
    size_t i, n_idx = 0, n_rank = 0, max_cands = 0;
    void *block;
    int rc = 0;

    /* Sizes: at most every configured model per request (a longer list
     * fails its check), and each ranking as long as the caller's buffer
     * takes, at most one entry per candidate. */
    for (i = 0; i < n; i++) {
        size_t c = reqs[i].n_models ? reqs[i].n_models : router->n_models;
        size_t cap = out[i].ranking ? out[i].ranking_cap : 0;
        if (c > router->n_models)
            c = router->n_models;
        if (n_idx > SIZE_MAX / 2 - c)
            return lr__error_set(err, LR_ENOMEM, "out of memory routing a batch of %zu", n);
        n_idx += c;
        n_rank += cap < c ? cap : c; /* at most n_idx */
        if (c > max_cands)
            max_cands = c;
    }
    if (n > SIZE_MAX / (sizeof *ctxs + sizeof *tmp) ||
        n_rank + max_cands > (SIZE_MAX - n * (sizeof *ctxs + sizeof *tmp)) / sizeof *rank ||
        n_idx > (SIZE_MAX - n * (sizeof *ctxs + sizeof *tmp) -
                 (n_rank + max_cands) * sizeof *rank) / sizeof *idx)
        return lr__error_set(err, LR_ENOMEM, "out of memory routing a batch of %zu", n);
    block = malloc(n * (sizeof *ctxs + sizeof *tmp) + (n_rank + max_cands) * sizeof *rank +
                   n_idx * sizeof *idx);
    if (!block)
        return lr__error_set(err, LR_ENOMEM, "out of memory routing a batch of %zu", n);
    tmp = block;
    ctxs = (struct lr__route_ctx *)(tmp + n);
    scratch = (struct lr_candidate *)(ctxs + n);
    rank = scratch + max_cands;
    idx = (int *)(rank + n_rank);

    for (i = 0; i < n; i++) {
        struct resolved res;
        rc = resolve(router, &reqs[i], &ctxs[i], &res, err);
        if (rc == 0) {
            memcpy(idx, res.idx, res.n * sizeof *idx);
            ctxs[i].cands = idx;
            idx += res.n;
        }
        resolved_free(&res);
        if (rc) {
            lr__error_prefix(err, "query %zu: ", i);
            free(block);
            return rc;
        }
    }
    for (i = 0; i < n; i++)
        if ((rc = check(router, &ctxs[i], err)) != 0) {
            lr__error_prefix(err, "query %zu: ", i);
            free(block);
            return rc;
        }
    for (i = 0; i < n; i++) {
        size_t cap = out[i].ranking ? out[i].ranking_cap : 0;
        if (lr__stopped(stop)) {
            rc = lr__error_set(err, LR_ECANCELED,
                               "stopped at the caller's request at query %zu of %zu", i, n);
            break;
        }
        rc = router->strategy->rank(router->state, &ctxs[i], scratch, err);
        if (rc) {
            lr__error_prefix(err, "query %zu: ", i);
            break;
        }
        lr_decision_init(&tmp[i]);
        if (cap > ctxs[i].n_cands)
            cap = ctxs[i].n_cands;
        if (cap) {
            tmp[i].ranking = rank;
            tmp[i].ranking_cap = cap;
            rank += cap;
        }
        fill_decision(&tmp[i], scratch, ctxs[i].n_cands, ctxs[i].input_tokens);
    }
    if (rc == 0)
        for (i = 0; i < n; i++) {
            struct lr_candidate *ranking = out[i].ranking;
            size_t cap = out[i].ranking_cap;
            if (tmp[i].n_ranked)
                memcpy(ranking, tmp[i].ranking, tmp[i].n_ranked * sizeof *ranking);
            out[i] = tmp[i];
            out[i].ranking = ranking;
            out[i].ranking_cap = cap;
        }
    free(block);
    return rc;
}

static int route_batch(struct lr_router *router, const struct lr_request *reqs, size_t n,
                       const struct lr_batch_options *opts, struct lr_decision *out,
                       struct lr_batch_report *report, const struct lr__stop *stop,
                       struct lr_error *err)
{
    struct lr_batch_options o;
    struct lr_batch_report rep;
    char nt[LR__NUMBER_TEXT];
    int rc = 0;

    if (!router || (!reqs && n) || (!out && n))
        return lr__error_set(err, LR_EINVAL, "lr_router_route_batch: missing arguments");
    if (n == 0)
        return lr__error_set(err, LR_EEMPTY, "the batch has no queries");
    if (opts)
        o = *opts;
    else
        lr_batch_options_init(&o);
    memset(&rep, 0, sizeof rep);

    if (o.mode != LR_BATCH_PER_QUERY) {
        struct lr__route_ctx *ctxs;
        struct resolved *res;
        struct lr_candidate **ranks;
        int *assign;
        size_t done = 0;

        if (o.mode != LR_BATCH_QUALITY && o.mode != LR_BATCH_BUDGET)
            return lr__error_set(err, LR_EINVAL, "batch mode %d is not a known mode", (int)o.mode);
        if (!router->strategy->rank_batch)
            return lr__error_set(err, LR_ESTRATEGY,
                                 "the %s strategy predicts no quality or cost, so it cannot "
                                 "solve a batch assignment: use the smart strategy",
                                 router->strategy->name);
        /* Each mode has one constraint; a value given for the other would
         * be ignored without a word. */
        if (o.mode == LR_BATCH_BUDGET && !isnan(o.alpha))
            return lr__error_set(err, LR_EINVAL,
                                 "alpha: the budget mode takes none (it maximises quality "
                                 "within the budget); give alpha or budget, not both");
        if (o.mode == LR_BATCH_QUALITY && !isnan(o.budget))
            return lr__error_set(err, LR_EINVAL,
                                 "budget: the quality mode takes none (it meets alpha at the "
                                 "least cost); give alpha or budget, not both");
        if (isnan(o.alpha))
            o.alpha = lr_config_router_defaults(router->cfg)->alpha;
        if (o.mode == LR_BATCH_QUALITY && !(o.alpha >= 0 && o.alpha <= 1))
            return lr__error_set(err, LR_EINVAL, "alpha: expected a number from 0 to 1, got %s",
                                 lr__error_number(nt, o.alpha));
        if (o.mode == LR_BATCH_BUDGET && !(o.budget >= 0 && o.budget <= LR_BATCH_MAX_BUDGET))
            return lr__error_set(err, LR_EINVAL, "budget: expected a number from 0 to %g, got %s",
                                 LR_BATCH_MAX_BUDGET, lr__error_number(nt, o.budget));
        ctxs = calloc(n, sizeof *ctxs);
        res = calloc(n, sizeof *res);
        ranks = calloc(n, sizeof *ranks);
        assign = calloc(n, sizeof *assign);
        if (!ctxs || !res || !ranks || !assign) {
            rc = lr__error_set(err, LR_ENOMEM, "out of memory routing a batch of %zu", n);
            goto batch_out;
        }
        for (; done < n; done++) {
            rc = resolve(router, &reqs[done], &ctxs[done], &res[done], err);
            if (rc) {
                lr__error_prefix(err, "query %zu: ", done);
                done++; /* its buffers were set up and must be freed */
                goto batch_out;
            }
            ranks[done] = res[done].rank;
        }
        for (size_t i = 0; i < n; i++)
            if ((rc = check(router, &ctxs[i], err)) != 0) {
                lr__error_prefix(err, "query %zu: ", i);
                goto batch_out;
            }
        rc = router->strategy->rank_batch(router->state, ctxs, n, &o, ranks, assign, &rep, stop,
                                          err);
        if (rc == 0 || rc == LR_EINFEASIBLE) {
            for (size_t i = 0; i < n; i++) {
                size_t j = 0;
                /* The head of the ranking is the assignment. */
                while (j < res[i].n && ranks[i][j].index != assign[i])
                    j++;
                if (j < res[i].n && j > 0) {
                    struct lr_candidate head = ranks[i][j];
                    memmove(&ranks[i][1], &ranks[i][0], j * sizeof head);
                    ranks[i][0] = head;
                }
                fill_decision(&out[i], ranks[i], res[i].n, ctxs[i].input_tokens);
            }
        }
    batch_out:
        if (res)
            for (size_t i = 0; i < done; i++)
                resolved_free(&res[i]);
        free(ctxs);
        free(res);
        free(ranks);
        free(assign);
    } else {
        double q = 0, c = 0;
        size_t nq = 0, nc = 0;
        /* Each query is routed alone: there is no constraint for a value
         * to bound, and one given would be ignored without a word. */
        if (!isnan(o.budget))
            return lr__error_set(err, LR_EINVAL,
                                 "budget: the per-query mode takes none (each query is routed "
                                 "on its own); use the budget mode");
        if (!isnan(o.alpha))
            return lr__error_set(err, LR_EINVAL,
                                 "alpha: the per-query mode takes none (each query meets its "
                                 "performance requirement); use the quality mode");
        rc = route_per_query(router, reqs, n, out, stop, err);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++) {
            if (!isnan(out[i].predicted_quality)) {
                q += out[i].predicted_quality;
                nq++;
            }
            if (!isnan(out[i].estimated_cost)) {
                c += out[i].estimated_cost;
                nc++;
            }
        }
        rep.feasible = 1;
        rep.mean_quality = nq ? q / (double)nq : NAN;
        rep.total_cost = nc ? c : NAN;
    }
    *report = rep;
    return rc;
}

int lr_router_route_batch_stoppable(struct lr_router *router, const struct lr_request *reqs,
                                    size_t n, const struct lr_batch_options *opts,
                                    struct lr_decision *out, struct lr_batch_report *report,
                                    struct lr_error *err, lr_stop_fn stop, void *stop_arg)
{
    struct lr__stop st = {stop, stop_arg};
    struct lr_batch_report rep;
    int rc;

    /* On any error but LR_EINFEASIBLE there is no assignment to describe:
     * the report says so the same way whatever failed, before or after the
     * strategy ran. */
    memset(&rep, 0, sizeof rep);
    rep.mean_quality = NAN;
    rep.total_cost = NAN;
    rc = route_batch(router, reqs, n, opts, out, &rep, &st, err);
    if (rc && rc != LR_EINFEASIBLE) {
        memset(&rep, 0, sizeof rep);
        rep.mean_quality = NAN;
        rep.total_cost = NAN;
    }
    if (report)
        *report = rep;
    return rc;
}

int lr_router_route_batch(struct lr_router *router, const struct lr_request *reqs, size_t n,
                          const struct lr_batch_options *opts, struct lr_decision *out,
                          struct lr_batch_report *report, struct lr_error *err)
{
    return lr_router_route_batch_stoppable(router, reqs, n, opts, out, report, err, NULL, NULL);
}
