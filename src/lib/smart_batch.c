/* smart_batch.c -- the smart strategy's batch assignment (ECCOS).
 *
 * Each query is predicted as the per-query rule does it (lr__smart_rank_models:
 * k nearest past queries, predicted quality and output length, estimated
 * cost), which also gives each query's own ranking, the gateway's fallback
 * order. Over a dense store the queries' neighbours are searched together
 * first, a few queries to each pass over the rows (lr__smart_knn_batch). The predictions become a dense n x m matrix over the models that
 * are a candidate of any query (NaN where a model is not a query's
 * candidate), and the optimizer (optimize.c) solves
 *   quality form: min total cost  s.t. mean quality >= alpha, load_j <= L_j
 *   budget form:  max mean quality s.t. total cost <= budget, load_j <= L_j.
 * A mean quality up to LR__SMART_QUALITY_SLACK (1e-6) below alpha meets it,
 * as a prediction that far below the requirement meets it per query: the
 * predictions come from outcomes held as 32-bit floats.
 * A candidate whose quality the predictor does not know (a model the history
 * has never seen, in the default predictor) counts as quality 0 here: the
 * assignment must rest on what is predicted.
 *
 * A query with a single candidate has no choice to make, and gets that
 * model as a single route does (smart_rank), even when nothing can be
 * predicted for it: the model has no prices, the query no text (or no
 * embedding a dense store needs), the store no history, or the history no
 * word of the model. Such an unpredicted query is "fixed": it still takes
 * one unit of its model's capacity (it is sent there), but it is left out
 * of the quality and cost sums: the mean quality that alpha bounds is the
 * mean over the other queries, the budget bounds their cost, and the
 * report's mean_quality and total_cost are theirs (NaN when there are
 * none), and so are the figures the optimizer's message states: it is
 * told which queries are fixed (lr__opt_problem.fixed) and leaves them out
 * of every sum. A single-candidate query that is predicted is an ordinary
 * row.
 *
 * The caller's stop (lr_router_route_batch_stoppable) is asked before each
 * query's prediction, by the neighbour search between its groups and by
 * the optimizer between its steps; the batch then fails with LR_ECANCELED.
 *
 * Threads: like rank(), from many threads at once; all state is per call.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "optimize.h"
#include "smart.h"

/* A candidate's prices, checked: batch costs must be known, but for a
 * query with one candidate (whose unknown cost makes it fixed). */
static int fill_models(const struct lr__route_ctx *ctx, struct lr__smart_model *models,
                       struct lr_error *err)
{
    for (size_t j = 0; j < ctx->n_cands; j++) {
        const struct lr_model_info *mi = lr_config_model(ctx->cfg, (size_t)ctx->cands[j]);
        models[j].index = ctx->cands[j];
        models[j].name = mi->name;
        models[j].price_in = mi->cost_per_input_token;
        models[j].price_out = mi->cost_per_output_token;
        if (ctx->n_cands > 1 && (isnan(models[j].price_in) || isnan(models[j].price_out)))
            return lr__error_set(err, LR_EINVAL,
                                 "model '%s' has no %s: smart routing needs both prices",
                                 mi->name,
                                 isnan(models[j].price_in) ? "cost_per_input_token"
                                                           : "cost_per_output_token");
    }
    return 0;
}

int lr__smart_rank_batch(void *state, const struct lr__route_ctx *ctxs, size_t n,
                         const struct lr_batch_options *opts, struct lr_candidate *const *rankings,
                         int *assign, struct lr_batch_report *report, const struct lr__stop *stop,
                         struct lr_error *err)
{
    const struct lr_config *cfg = ctxs[0].cfg;
    size_t n_models = lr_config_model_count(cfg), m = 0, max_cands = 0;
    int *col_of = NULL, *model_of_col = NULL, *cap = NULL, *col_assign = NULL;
    unsigned char *fixed = NULL;
    double *quality = NULL, *cost = NULL;
    struct lr__smart_model *models = NULL;
    struct lr__smart_query *qs = NULL;
    struct lr__neighbor *nb = NULL;
    size_t *nb_n = NULL;
    struct lr__opt_problem p;
    struct lr__opt_result r;
    int rc = 0;

    memset(report, 0, sizeof *report);
    col_of = malloc(n_models * sizeof *col_of);
    model_of_col = malloc(n_models * sizeof *model_of_col);
    if (!col_of || !model_of_col)
        goto nomem;
    for (size_t k = 0; k < n_models; k++)
        col_of[k] = -1;
    for (size_t i = 0; i < n; i++) {
        if (ctxs[i].n_cands > max_cands)
            max_cands = ctxs[i].n_cands;
        for (size_t j = 0; j < ctxs[i].n_cands; j++) {
            int k = ctxs[i].cands[j];
            if (col_of[k] < 0) {
                col_of[k] = (int)m;
                model_of_col[m++] = k;
            }
        }
    }
    /* n is the caller's; m is at most the configured models. */
    if (m && n > SIZE_MAX / m / sizeof *quality)
        goto nomem;
    quality = malloc(n * m * sizeof *quality);
    cost = malloc(n * m * sizeof *cost);
    cap = calloc(m, sizeof *cap);
    col_assign = malloc(n * sizeof *col_assign);
    models = malloc(max_cands * sizeof *models);
    fixed = calloc(n, 1);
    if (!quality || !cost || !cap || !col_assign || !models || !fixed)
        goto nomem;
    for (size_t c = 0; c < m; c++) {
        int k = model_of_col[c];
        cap[c] = opts->capacities ? opts->capacities[k]
                                  : lr_config_model(cfg, (size_t)k)->capacity;
    }

    /* The queries; over a dense store their neighbours are searched
     * together first (lr__smart_knn_batch). */
    qs = calloc(n, sizeof *qs);
    if (!qs)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        lr__smart_query_of(&ctxs[i], &qs[i]);
    if (n > 1 && qs[0].embedding) {
        size_t k = lr__smart_k(state);
        if (n > SIZE_MAX / k / sizeof *nb)
            goto nomem;
        nb = malloc(n * k * sizeof *nb);
        nb_n = malloc(n * sizeof *nb_n);
        if (!nb || !nb_n)
            goto nomem;
        int kr = lr__smart_knn_batch(state, qs, n, nb, nb_n, stop);
        if (kr == LR_ECANCELED) {
            rc = lr__error_set(err, kr,
                               "stopped at the caller's request while searching the history "
                               "for the queries' neighbours");
            goto out;
        }
        if (kr < 0) {
            rc = lr__error_set(err, kr, "out of memory searching the history");
            goto out;
        }
        if (kr > 0) { /* searched query by query */
            free(nb);
            nb = NULL;
        }
    }

    /* Predict every query; its ranking is its fallback order. */
    for (size_t i = 0; i < n; i++) {
        const struct lr__route_ctx *ctx = &ctxs[i];
        if (lr__stopped(stop)) {
            rc = lr__error_set(err, LR_ECANCELED,
                               "stopped at the caller's request at query %zu of %zu", i, n);
            goto out;
        }
        if ((rc = lr__smart_check_query(state, &qs[i], err)) ||
            (rc = fill_models(ctx, models, err)))
            goto fail_query;
        rc = nb ? lr__smart_rank_given(state, &qs[i], nb + i * lr__smart_k(state), nb_n[i],
                                       models, ctx->n_cands, rankings[i], err)
                : lr__smart_rank_models(state, &qs[i], models, ctx->n_cands, rankings[i], err);
        /* One candidate is its own ranking whatever the history or the
         * query lacks, as in smart_rank. */
        if (rc != 0 && rc != LR_ENOMEM && ctx->n_cands == 1) {
            rankings[i][0].index = models[0].index;
            rankings[i][0].predicted_quality = NAN;
            rankings[i][0].predicted_output_tokens = NAN;
            rankings[i][0].estimated_cost = NAN;
            rc = 0;
        }
        if (rc)
            goto fail_query;
        for (size_t c = 0; c < m; c++) {
            quality[i * m + c] = NAN;
            cost[i * m + c] = 0;
        }
        if (ctx->n_cands == 1 && (isnan(rankings[i][0].predicted_quality) ||
                                  isnan(rankings[i][0].estimated_cost))) {
            size_t c = (size_t)col_of[rankings[i][0].index];
            fixed[i] = 1;
            quality[i * m + c] = 0.0; /* not read: the query is in no sum */
            cost[i * m + c] = 0.0;
            continue;
        }
        for (size_t j = 0; j < ctx->n_cands; j++) {
            const struct lr_candidate *cd = &rankings[i][j];
            size_t c = (size_t)col_of[cd->index];
            quality[i * m + c] = isnan(cd->predicted_quality) ? 0.0 : cd->predicted_quality;
            cost[i * m + c] = cd->estimated_cost;
            if (isnan(cd->estimated_cost)) {
                rc = lr__error_set(err, LR_EINVAL,
                                   "model '%s': no output length could be predicted",
                                   lr_config_model(cfg, (size_t)cd->index)->name);
                goto fail_query;
            }
        }
        continue;
    fail_query:
        lr__error_prefix(err, "query %zu: ", i);
        goto out;
    }

    memset(&p, 0, sizeof p);
    memset(&r, 0, sizeof r);
    p.n = n;
    p.m = m;
    p.quality = quality;
    p.cost = cost;
    p.capacity = cap;
    p.alpha = opts->alpha;
    /* As the per-query requirement is: a mean of predictions read from
     * 32-bit floats (a stored 0.7 is 0.69999999) must not miss alpha 0.7,
     * which sent queries to a dearer model or failed a batch that meets it. */
    p.quality_slack = LR__SMART_QUALITY_SLACK;
    p.budget = opts->budget;
    p.fixed = fixed;
    p.stop = stop ? stop->fn : NULL;
    p.stop_arg = stop ? stop->arg : NULL;
    r.assign = col_assign;
    rc = opts->mode == LR_BATCH_BUDGET ? lr__optimize_budget(&p, &r) : lr__optimize_quality(&p, &r);
    if (rc == LR_ECANCELED) {
        lr__error_set(err, rc, "stopped at the caller's request in the batch assignment");
        goto out;
    }
    if (rc != 0 && rc != LR_EINFEASIBLE) {
        lr__error_set(err, rc, "batch assignment: %s",
                      r.message[0] ? r.message : lr_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        assign[i] = model_of_col[col_assign[i]];
    /* The sums are the predicted queries' only (NaN when none is). */
    report->feasible = r.feasible;
    report->mean_quality = r.mean_quality;
    report->total_cost = r.total_cost;
    report->iterations = r.iterations;
    memcpy(report->message, r.message, sizeof report->message < sizeof r.message
                                            ? sizeof report->message
                                            : sizeof r.message);
    report->message[sizeof report->message - 1] = '\0';
    if (rc == LR_EINFEASIBLE)
        lr__error_set(err, rc, "batch assignment: %s", r.message);
    goto out;
nomem:
    rc = lr__error_set(err, LR_ENOMEM, "out of memory assigning a batch of %zu queries", n);
out:
    free(col_of);
    free(model_of_col);
    free(cap);
    free(col_assign);
    free(fixed);
    free(quality);
    free(cost);
    free(models);
    free(qs);
    free(nb);
    free(nb_n);
    return rc;
}
