/* cmd_eval.c -- `llmroute eval`: route every record of a data file with each
 * strategy and score the choices with the record's real outcomes.
 *
 * For each strategy: success rate (mean real correctness of the chosen
 * model), total real cost (the record's input tokens, which are also the
 * request's, and the chosen model's real output tokens at the config's
 * prices), for smart rows the router's predicted total cost beside it, each
 * model's share, and the decision time (per query: p50 and p99; a batch is
 * timed whole, so only its time divided by the queries). Rows: every single
 * model, random (the exact expectation of a uniform choice, and with --seed
 * one draw), sequential, the oracle (the cheapest model with the best real
 * correctness), smart per query at each alpha, smart batch at each alpha,
 * smart under each budget (a cap on the predicted cost), for each
 * predictor; with --sweep (rows marked sweep): the batch over a range of
 * alpha and the budget form at each single model's real total cost (first
 * predictor), and for each single model the best point of that predictor's
 * frontier that costs no more than it does (see versus_single()). A smart
 * row is marked frontier when no smart row of its predictor beats it on
 * success and real cost (mark_frontier()). At each budget (given, and with
 * --sweep each single model's cost), the task ceiling: the most success a
 * router that knows only each query's task can reach (task_ceiling()).
 *
 * Only records with an outcome for every candidate model are scored (the
 * others are counted on standard error), so every row is measured on the
 * same queries. Scored queries whose text the history store also holds are
 * counted and reported (queries_in_store): the smart rows would then see
 * their own outcomes among the neighbours, not held-out data. With a remote embedder (router.embedding) the store is
 * dense: every scored query is embedded through it, in batches, before the
 * smart rows, so decision times measure routing alone. Uses the public API
 * only.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "embed_http.h"

static const char help[] =
    "usage: llmroute eval --config FILE --store FILE --data FILE [options]\n"
    "Route every record of DATA with each strategy and score it with the record's\n"
    "real outcomes: success rate, total real cost, model shares, decision time.\n"
    "\n"
    "  --config FILE        models and prices (candidates: the models that are both\n"
    "                       configured and present in the data)\n"
    "  --store FILE         history store for smart routing (default: router.store)\n"
    "  --data FILE          records to score (AIOS format, array or JSONL; - reads\n"
    "                       standard input)\n"
    "  --split NAME         score only records of this split (e.g. test)\n"
    "  --alpha A[,A...]     quality targets for smart rows (default: the config's)\n"
    "  --budget B[,B...]    caps on the PREDICTED total cost for smart-budget rows\n"
    "                       (the real cost can end above one: see within_budget);\n"
    "                       and caps on the real total cost for task-ceiling rows:\n"
    "                       the most success a router that knows only each query's\n"
    "                       task label could reach (it reads the answers; needs\n"
    "                       every record's label)\n"
    "  --predictors P[,P]   smart predictors to compare (default: default,aios)\n"
    "  --sweep              add rows for the frontier (sweep: true): batch over alpha\n"
    "                       0.50..0.98, and the budget form at each single model's\n"
    "                       real cost, for the first predictor; then compare every\n"
    "                       single model with that predictor's frontier\n"
    "  --format F           table (default), json or csv\n"
    "  --plot FILE.svg      draw success against cost: single models as labelled\n"
    "                       points, each predictor's frontier as a line\n"
    "  --seed N             also print random-draw:N, one seeded draw of the random\n"
    "                       strategy (N from 1)\n"
    "\n"
    "Each record is routed with its own input_token_length as the request's input\n"
    "tokens (a record without one: estimated from the query, one token per 4\n"
    "bytes), and its real cost counts the same input tokens and the chosen model's\n"
    "real output tokens at the config's prices. predicted_cost is the router's own\n"
    "estimate of the total, from predicted output tokens; feasible is the\n"
    "library's report on that estimate, within_budget compares the real cost.\n"
    "random is the exact expectation of a uniform choice per query (each query's\n"
    "mean over the candidates), not a draw. decision_timing per_query: p50 and p99\n"
    "are percentiles of single decisions; batch_mean (smart-batch, smart-budget):\n"
    "p50 is the one call's time divided by the queries, and there is no p99.\n"
    "frontier: a smart row that no smart row of the same predictor beats on\n"
    "success and real cost (at least as good in both, better in one).\n"
    "\n"
    "With router.embedding in the config (a remote embedder), every scored query\n"
    "is embedded through that server before the smart rows.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage, configuration or data error.\n";

/* ==== Rows ==== */

/* How a row's decision time was measured. */
enum timing {
    TIMING_NONE,      /* no router decided (single models, random, oracle, ceiling) */
    TIMING_PER_QUERY, /* each query timed alone: p50 and p99 are percentiles */
    TIMING_BATCH,     /* one batch timed whole: p50 is its time / queries, no p99 */
};

struct row {
    char strategy[96];
    const char *predictor; /* NULL for non-smart rows */
    double alpha, budget;
    int frontier; /* on its predictor's success-vs-real-cost frontier (mark_frontier()) */
    int sweep;    /* made by --sweep */
    int feasible; /* -1 when not a constrained batch */
    double success, cost, predicted_quality;
    double predicted_cost; /* the router's estimate of the total cost; NaN if none */
    double *share;         /* per candidate: queries (an expectation may be fractional) */
    enum timing timing;
    double p50, p99;
};

struct eval {
    const struct lr_config *cfg;
    const struct lr_dataset *ds;
    int *cands;  /* config indices of the candidate models */
    size_t n_cands;
    int *cand_of_config; /* config index -> candidate slot or -1 */
    size_t *recs;        /* scored record indices */
    size_t n;
    long *in_tokens;      /* per scored record */
    double *correct;      /* n x n_cands real correctness */
    double *real_cost;    /* n x n_cands real cost */
    const float *vecs;    /* n x dim query vectors (remote embedder), or NULL */
    size_t dim;
    struct row *rows;
    size_t n_rows, cap_rows;
    const char *swept; /* the predictor --sweep ran with, or NULL */
    long in_store;     /* scored queries the history store holds; -1: no store */
};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, size_t n, double p)
{
    size_t k;
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    k = (size_t)ceil(p * (double)n) - (p > 0);
    return v[k < n ? k : n - 1];
}

static struct row *new_row(struct eval *e, const char *name, const char *predictor, double alpha,
                           double budget)
{
    struct row *r;
    if (e->n_rows == e->cap_rows) {
        size_t cap = e->cap_rows ? e->cap_rows * 2 : 32;
        struct row *grown = realloc(e->rows, cap * sizeof *grown);
        if (!grown)
            return NULL;
        e->rows = grown;
        e->cap_rows = cap;
    }
    r = &e->rows[e->n_rows];
    memset(r, 0, sizeof *r);
    r->share = calloc(e->n_cands, sizeof *r->share);
    if (!r->share)
        return NULL;
    snprintf(r->strategy, sizeof r->strategy, "%s", name);
    r->predictor = predictor;
    r->alpha = alpha;
    r->budget = budget;
    r->feasible = -1;
    r->predicted_quality = NAN;
    r->predicted_cost = NAN;
    r->timing = TIMING_NONE;
    r->p50 = r->p99 = NAN;
    e->n_rows++;
    return r;
}

/* Score a choice (candidate slot per scored record) into row r. */
static void score(struct eval *e, struct row *r, const int *slot)
{
    double s = 0, c = 0;
    for (size_t i = 0; i < e->n; i++) {
        s += e->correct[i * e->n_cands + (size_t)slot[i]];
        c += e->real_cost[i * e->n_cands + (size_t)slot[i]];
        r->share[slot[i]] += 1;
    }
    r->success = s / (double)e->n;
    r->cost = c;
}

/* ==== Strategies ==== */

/* The single models, random, the oracle. random is the exact expectation of
 * choosing uniformly among the candidates for every query: success is the
 * mean over queries of the candidates' mean real correctness, cost the sum
 * over queries of their mean real cost, each share 1/n. One seeded draw of
 * it (random-draw) is added only when seed is not 0. */
static int run_baselines(struct eval *e, int *slot, unsigned long seed)
{
    char name[96];
    struct row *r;
    uint64_t x = seed;

    for (size_t j = 0; j < e->n_cands; j++) {
        snprintf(name, sizeof name, "single:%s",
                 lr_config_model(e->cfg, (size_t)e->cands[j])->name);
        if (!(r = new_row(e, name, NULL, NAN, NAN)))
            return -1;
        for (size_t i = 0; i < e->n; i++)
            slot[i] = (int)j;
        score(e, r, slot);
    }
    if (!(r = new_row(e, "random", NULL, NAN, NAN)))
        return -1;
    {
        double s = 0, c = 0;
        for (size_t i = 0; i < e->n; i++) {
            double si = 0, ci = 0;
            for (size_t j = 0; j < e->n_cands; j++) {
                si += e->correct[i * e->n_cands + j];
                ci += e->real_cost[i * e->n_cands + j];
            }
            s += si / (double)e->n_cands;
            c += ci / (double)e->n_cands;
        }
        r->success = s / (double)e->n;
        r->cost = c;
        for (size_t j = 0; j < e->n_cands; j++)
            r->share[j] = (double)e->n / (double)e->n_cands;
    }
    if (seed) {
        snprintf(name, sizeof name, "random-draw:%lu", seed);
        if (!(r = new_row(e, name, NULL, NAN, NAN)))
            return -1;
        for (size_t i = 0; i < e->n; i++) {
            x ^= x << 13; /* xorshift64: reproducible across platforms */
            x ^= x >> 7;
            x ^= x << 17;
            slot[i] = (int)(x % e->n_cands);
        }
        score(e, r, slot);
    }
    if (!(r = new_row(e, "oracle", NULL, NAN, NAN)))
        return -1;
    for (size_t i = 0; i < e->n; i++) {
        size_t best = 0;
        for (size_t j = 1; j < e->n_cands; j++) {
            double cj = e->correct[i * e->n_cands + j], cb = e->correct[i * e->n_cands + best];
            if (cj > cb ||
                (cj == cb && e->real_cost[i * e->n_cands + j] < e->real_cost[i * e->n_cands + best]))
                best = j;
        }
        slot[i] = (int)best;
    }
    score(e, r, slot);
    return 0;
}

static void fill_requests(struct eval *e, struct lr_request *reqs, double requirement)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct lr_record *rec = lr_dataset_record(e->ds, e->recs[i]);
        lr_request_init(&reqs[i]);
        reqs[i].model_indices = e->cands;
        reqs[i].n_models = e->n_cands;
        reqs[i].query = rec->query;
        reqs[i].input_tokens = e->in_tokens[i];
        reqs[i].performance_requirement = requirement;
        if (e->vecs) {
            reqs[i].embedding = e->vecs + i * e->dim;
            reqs[i].embedding_dim = e->dim;
        }
    }
}

/* Embed every scored query with the remote embedder, in batches. */
static int embed_all(struct eval *e, const struct lr_store *store, float **vecs)
{
    struct embed_http *emb = NULL;
    struct lr_error err = {0};
    const char **texts = NULL;
    size_t dim = lr_store_dim(store);
    double t0 = now_us();
    int rc;

    *vecs = NULL;
    if (dim == 0)
        return 0; /* an empty store: the router says so */
    texts = calloc(e->n, sizeof *texts);
    *vecs = calloc(e->n, dim * sizeof **vecs);
    if (!texts || !*vecs) {
        free(texts);
        cli_error("eval", "out of memory");
        return CLI_RUNTIME;
    }
    for (size_t i = 0; i < e->n; i++)
        texts[i] = lr_dataset_record(e->ds, e->recs[i])->query;
    if ((rc = embed_http_new(lr_config_embedding(e->cfg), &emb, &err)) ||
        (rc = embed_http_embed(emb, texts, e->n, *vecs, dim, &err))) {
        cli_error("eval", "%s", err.message);
        rc = rc == LR_ECONFIG ? CLI_USAGE : CLI_RUNTIME;
    } else {
        fprintf(stderr,
                "llmroute eval: embedded %zu queries with %s at %s in %.2f s (not part of the "
                "decision times)\n",
                e->n, lr_store_embedder(store), embed_http_url(emb), (now_us() - t0) / 1e6);
        e->vecs = *vecs;
        e->dim = dim;
    }
    embed_http_free(emb);
    free(texts);
    return rc;
}

/* Per-query routing of every record with router; times each decision. */
static int run_per_query(struct eval *e, struct lr_router *router, struct row *r, int *slot,
                         struct lr_request *reqs, double *times, double requirement)
{
    struct lr_error err = {0};
    double q = 0, pc = 0;
    size_t nq = 0, npc = 0;
    fill_requests(e, reqs, requirement);
    for (size_t i = 0; i < e->n; i++) {
        struct lr_decision d;
        double t0;
        lr_decision_init(&d);
        t0 = now_us();
        int rc = lr_router_route(router, &reqs[i], &d, &err);
        times[i] = now_us() - t0;
        if (rc) {
            cli_error("eval", "%s: record %zu: %s", r->strategy, e->recs[i], err.message);
            return rc;
        }
        slot[i] = e->cand_of_config[d.index];
        if (!isnan(d.predicted_quality)) {
            q += d.predicted_quality;
            nq++;
        }
        if (!isnan(d.estimated_cost)) {
            pc += d.estimated_cost;
            npc++;
        }
    }
    score(e, r, slot);
    r->predicted_quality = nq ? q / (double)nq : NAN;
    /* A total only when every decision had an estimate (smart routing). */
    r->predicted_cost = r->predictor && npc == e->n ? pc : NAN;
    r->timing = TIMING_PER_QUERY;
    r->p50 = percentile(times, e->n, 0.5);
    r->p99 = percentile(times, e->n, 0.99);
    return 0;
}

/* d as the shortest text that reads back as d, at least 6 digits' worth:
 * the library words a batch's bound so (alpha 0.92, budget
 * 0.0016065390000000004), and a row's name in front of its message must
 * not call the same bound something else (optimize.c's bound_text(), behind
 * the public header, is the library's side). */
static const char *bound_text(char buf[32], double d)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        if (!isfinite(d) || strtod(buf, NULL) == d)
            break;
    }
    return buf;
}

static int run_batch(struct eval *e, struct lr_router *router, struct row *r, int *slot,
                     struct lr_request *reqs, struct lr_decision *decs, enum lr_batch_mode mode)
{
    char bt[32];
    struct lr_batch_options bo;
    struct lr_batch_report rep = {0};
    struct lr_error err = {0};
    double t0, dt;
    int rc;

    fill_requests(e, reqs, NAN);
    memset(decs, 0, e->n * sizeof *decs);
    lr_batch_options_init(&bo);
    bo.mode = mode;
    bo.alpha = r->alpha;
    bo.budget = r->budget;
    t0 = now_us();
    rc = lr_router_route_batch(router, reqs, e->n, &bo, decs, &rep, &err);
    dt = now_us() - t0;
    if (rc && rc != LR_EINFEASIBLE) {
        cli_error("eval", "%s: %s", r->strategy, err.message);
        return rc;
    }
    /* Name the row by its one constraint: the other is NaN, not a value. */
    if (rc == LR_EINFEASIBLE && mode == LR_BATCH_BUDGET)
        cli_error("eval", "%s (%s) budget %s: %s", r->strategy, r->predictor,
                  bound_text(bt, r->budget), rep.message);
    else if (rc == LR_EINFEASIBLE)
        cli_error("eval", "%s (%s) alpha %s: %s", r->strategy, r->predictor,
                  bound_text(bt, r->alpha), rep.message);
    for (size_t i = 0; i < e->n; i++)
        slot[i] = e->cand_of_config[decs[i].index];
    score(e, r, slot);
    /* feasible is the library's report on its own estimates: for a budget,
     * that the predicted total cost is within it, not the real one. */
    r->feasible = rep.feasible;
    r->predicted_quality = rep.mean_quality;
    r->predicted_cost = rep.total_cost;
    /* One call decided the whole batch: its time per query is a mean, and
     * there is no distribution of single decisions to take a p99 of. */
    r->timing = TIMING_BATCH;
    r->p50 = dt / (double)e->n;
    r->p99 = NAN;
    return 0;
}

/* ==== The task ceiling ==== */

static const struct lr_record *scored(const struct eval *e, size_t i)
{
    return lr_dataset_record(e->ds, e->recs[i]);
}

struct by_task {
    const char *task;
    size_t i; /* scored record */
};

static int cmp_by_task(const void *a, const void *b)
{
    const struct by_task *x = a, *y = b;
    int c = strcmp(x->task, y->task);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

struct hull_step {
    size_t task;
    int from, to; /* candidate slots */
    double dc, ds; /* cost and success added by moving the task's queries */
};

static int cmp_step(const void *a, const void *b)
{
    const struct hull_step *x = a, *y = b;
    /* More success per dollar first: x->ds/x->dc > y->ds/y->dc. */
    double l = x->ds * y->dc, r = y->ds * x->dc;
    if (l != r)
        return l > r ? -1 : 1;
    return (x->task > y->task) - (x->task < y->task);
}

/* The task ceiling at budget B: the most success any router can reach
 * within B when all it knows of a query is its task label. Such a router
 * sees a task's queries as alike, so all it chooses is what share of each
 * task goes to each model; each task's real total success and cost per
 * model are taken from these very queries (it reads the answers: a ceiling
 * to compare with, not a strategy). The best shares are the linear
 * relaxation of a multiple-choice knapsack, solved exactly: every task
 * starts on its cheapest model, and the steps along each task's upper hull
 * of (cost, success) are taken in order of success gained per dollar until
 * B is spent, the last one in part (one task's queries split between two
 * models). Success and cost are then expectations over which of a task's
 * queries go where; the share counts round the split. Every scored record
 * needs a task label; else it returns 1 and adds no row. */
static int task_ceiling(struct eval *e, double budget)
{
    size_t nc = e->n_cands, nt = 0, ns = 0;
    struct by_task *order = malloc(e->n * sizeof *order);
    size_t *first = calloc(e->n + 1, sizeof *first);
    double *S = calloc(e->n * nc, sizeof *S), *C = calloc(e->n * nc, sizeof *C);
    int *hull = malloc(e->n * nc * sizeof *hull), *at = calloc(e->n, sizeof *at);
    struct hull_step *steps = malloc(e->n * nc * sizeof *steps);
    struct row *r;
    int rc = -1;

    if (!order || !first || !S || !C || !hull || !at || !steps)
        goto out;
    for (size_t i = 0; i < e->n; i++) {
        if (!scored(e, i)->task) {
            rc = 1;
            goto out;
        }
        order[i].task = scored(e, i)->task;
        order[i].i = i;
    }
    qsort(order, e->n, sizeof *order, cmp_by_task);
    /* Tasks: runs of one label; first[t] is where task t starts in order. */
    for (size_t k = 0; k < e->n; k++) {
        size_t i = order[k].i;
        if (k == 0 || strcmp(order[k].task, order[k - 1].task) != 0)
            first[nt++] = k;
        for (size_t j = 0; j < nc; j++) {
            S[(nt - 1) * nc + j] += e->correct[i * nc + j];
            C[(nt - 1) * nc + j] += e->real_cost[i * nc + j];
        }
    }
    first[nt] = e->n;

    /* Each task's upper hull from its cheapest model: the models by cost
     * (equal costs: the better first), each kept only if it adds success,
     * and the one before dropped while it gains no more per dollar than
     * the step over it. */
    double spent = 0, gained = 0;
    for (size_t t = 0; t < nt; t++) {
        const double *s = S + t * nc, *c = C + t * nc;
        int *h = hull + t * nc;
        size_t n = 0;
        for (size_t j = 0; j < nc; j++) { /* insertion sort into h */
            size_t k = n++;
            while (k > 0 && (c[h[k - 1]] > c[j] || (c[h[k - 1]] == c[j] && s[h[k - 1]] < s[j]))) {
                h[k] = h[k - 1];
                k--;
            }
            h[k] = (int)j;
        }
        size_t kept = 0;
        for (size_t k = 0; k < n; k++) {
            int p = h[k];
            if (kept && !(s[p] > s[h[kept - 1]]))
                continue;
            while (kept >= 2) {
                int x = h[kept - 2], y = h[kept - 1];
                if ((s[y] - s[x]) * (c[p] - c[y]) <= (s[p] - s[y]) * (c[y] - c[x]))
                    kept--;
                else
                    break;
            }
            h[kept++] = p;
        }
        n = kept;
        spent += c[h[0]];
        gained += s[h[0]];
        for (size_t k = 1; k < n; k++) {
            steps[ns].task = t;
            steps[ns].from = h[k - 1];
            steps[ns].to = h[k];
            steps[ns].dc = c[h[k]] - c[h[k - 1]];
            steps[ns].ds = s[h[k]] - s[h[k - 1]];
            ns++;
        }
    }
    if (!(r = new_row(e, "task-ceiling", NULL, NAN, budget)))
        goto out;
    r->feasible = spent <= budget;
    if (!r->feasible)
        cli_error("eval", "task-ceiling budget %.6g: below the cheapest choice for every "
                          "query (%.6f); the row is that choice",
                  budget, spent);
    /* A task's steps gain less per dollar one after another, so in this
     * order each task's steps come in hull order. */
    qsort(steps, ns, sizeof *steps, cmp_step);
    size_t split_task = nt;
    double split = 0;
    int split_to = -1;
    for (size_t k = 0; k < ns && spent < budget; k++) {
        const struct hull_step *st = &steps[k];
        if (spent + st->dc <= budget) {
            spent += st->dc;
            gained += st->ds;
            at[st->task]++;
            continue;
        }
        split = (budget - spent) / st->dc;
        split_task = st->task;
        split_to = st->to;
        gained += split * st->ds;
        spent = budget;
        break;
    }
    for (size_t t = 0; t < nt; t++) {
        long n_t = (long)(first[t + 1] - first[t]);
        int m = hull[t * nc + (size_t)at[t]];
        if (t == split_task) {
            long moved = lround(split * (double)n_t);
            r->share[split_to] += (double)moved;
            n_t -= moved;
        }
        r->share[m] += (double)n_t;
    }
    r->success = gained / (double)e->n;
    r->cost = spent;
    rc = 0;
out:
    free(order);
    free(first);
    free(S);
    free(C);
    free(hull);
    free(at);
    free(steps);
    return rc;
}

/* ==== The frontier ==== */

static int same_predictor(const struct row *a, const struct row *b)
{
    return a->predictor && b->predictor && strcmp(a->predictor, b->predictor) == 0;
}

/* Whether row o dominates row r: no more real cost and no less success,
 * and better in one of the two. */
static int dominates(const struct row *o, const struct row *r)
{
    return o->cost <= r->cost && o->success >= r->success &&
           (o->cost < r->cost || o->success > r->success);
}

/* Mark each smart row that is on its predictor's frontier: no smart row of
 * the same predictor (per query, batch or budget, given or swept) dominates
 * it in success and real cost. Rows at one and the same point are all
 * marked. Sorted by cost, the marked rows climb in success: the upper
 * envelope that the plot draws as its line. */
static void mark_frontier(struct eval *e)
{
    for (size_t k = 0; k < e->n_rows; k++) {
        struct row *r = &e->rows[k];
        r->frontier = r->predictor != NULL;
        for (size_t o = 0; r->frontier && o < e->n_rows; o++)
            if (o != k && same_predictor(&e->rows[o], r) && dominates(&e->rows[o], r))
                r->frontier = 0;
    }
}

/* ==== Output ==== */

static const char *cand_name(const struct eval *e, size_t j)
{
    return lr_config_model(e->cfg, (size_t)e->cands[j])->name;
}

static json_t *num_or_null(double d)
{
    return isnan(d) ? json_null() : json_real(d);
}

/* For single-model row s: the row of the swept predictor's frontier with the
 * highest success among those whose real cost is no higher than s's (ties:
 * the cheaper), or NULL. "Above" the model means that row's success is at
 * least the model's: the frontier offers its quality for no more money. */
static const struct row *versus_single(const struct eval *e, const struct row *s)
{
    const struct row *best = NULL;
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (!r->frontier || strcmp(r->predictor, e->swept) != 0 || r->cost > s->cost)
            continue;
        if (!best || r->success > best->success ||
            (r->success == best->success && r->cost < best->cost))
            best = r;
    }
    return best;
}

/* How frontier point f stands against single-model row s (f costs no
 * more, by versus_single()): "higher" success, the same success "cheaper",
 * the "same" point (routing adds nothing there), or "below". */
static const char *relation(const struct row *f, const struct row *s)
{
    if (!f || f->success < s->success)
        return "below";
    if (f->success > s->success)
        return "higher";
    return f->cost < s->cost ? "cheaper" : "same";
}

static int is_single(const struct row *r)
{
    return strncmp(r->strategy, "single:", 7) == 0;
}

/* Whether the real total cost is within the row's budget: 1, 0, or -1 for a
 * row without one. A budget caps the predicted total cost, so a smart-budget
 * row can be feasible and still cost more. */
static int within_budget(const struct row *r)
{
    return isnan(r->budget) ? -1 : r->cost <= r->budget;
}

static const char *timing_name(enum timing t)
{
    return t == TIMING_PER_QUERY ? "per_query" : t == TIMING_BATCH ? "batch_mean" : NULL;
}

static void print_json(const struct eval *e)
{
    json_t *root = json_object(), *results = json_array(), *versus = NULL;
    char *s;
    json_object_set_new(root, "queries", json_integer((json_int_t)e->n));
    json_object_set_new(root, "queries_in_store",
                        e->in_store < 0 ? json_null() : json_integer((json_int_t)e->in_store));
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        json_t *o = json_object(), *share = json_object();
        json_object_set_new(o, "strategy", json_string(r->strategy));
        json_object_set_new(o, "predictor", r->predictor ? json_string(r->predictor)
                                                          : json_null());
        json_object_set_new(o, "alpha", num_or_null(r->alpha));
        json_object_set_new(o, "budget", num_or_null(r->budget));
        json_object_set_new(o, "frontier", json_boolean(r->frontier));
        json_object_set_new(o, "sweep", json_boolean(r->sweep));
        json_object_set_new(o, "feasible", r->feasible < 0 ? json_null()
                                                            : json_boolean(r->feasible));
        json_object_set_new(o, "success_rate", json_real(r->success));
        json_object_set_new(o, "total_cost", json_real(r->cost));
        json_object_set_new(o, "predicted_cost", num_or_null(r->predicted_cost));
        json_object_set_new(o, "within_budget", within_budget(r) < 0
                                                    ? json_null()
                                                    : json_boolean(within_budget(r)));
        json_object_set_new(o, "predicted_quality", num_or_null(r->predicted_quality));
        for (size_t j = 0; j < e->n_cands; j++)
            json_object_set_new(share, cand_name(e, j), json_real(r->share[j] / (double)e->n));
        json_object_set_new(o, "model_share", share);
        json_object_set_new(o, "decision_timing", timing_name(r->timing)
                                                      ? json_string(timing_name(r->timing))
                                                      : json_null());
        json_object_set_new(o, "decision_us_p50", num_or_null(r->p50));
        json_object_set_new(o, "decision_us_p99", num_or_null(r->p99));
        json_array_append_new(results, o);
    }
    json_object_set_new(root, "results", results);
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k], *f;
        json_t *o;
        if (!is_single(r) || !e->swept)
            continue;
        if (!versus)
            versus = json_array();
        f = versus_single(e, r);
        o = json_object();
        json_object_set_new(o, "model", json_string(r->strategy + 7));
        json_object_set_new(o, "success_rate", json_real(r->success));
        json_object_set_new(o, "total_cost", json_real(r->cost));
        json_object_set_new(o, "frontier_strategy", f ? json_string(f->strategy) : json_null());
        json_object_set_new(o, "frontier_alpha", f ? num_or_null(f->alpha) : json_null());
        json_object_set_new(o, "frontier_budget", f ? num_or_null(f->budget) : json_null());
        json_object_set_new(o, "frontier_success_rate", f ? json_real(f->success) : json_null());
        json_object_set_new(o, "frontier_total_cost", f ? json_real(f->cost) : json_null());
        json_object_set_new(o, "above", json_boolean(f && f->success >= r->success));
        json_object_set_new(o, "relation", json_string(relation(f, r)));
        json_array_append_new(versus, o);
    }
    if (versus)
        json_object_set_new(root, "versus_single", versus);
    s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(root);
}

static void csv_field(const char *s)
{
    if (strpbrk(s, ",\"\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"')
                putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
}

static void csv_num(double d)
{
    if (isnan(d))
        fputs(",", stdout);
    else
        printf(",%.10g", d);
}

static void print_csv(const struct eval *e)
{
    printf("strategy,predictor,alpha,budget,frontier,sweep,feasible,success_rate,total_cost,"
           "predicted_cost,within_budget,predicted_quality,decision_timing,decision_us_p50,"
           "decision_us_p99");
    for (size_t j = 0; j < e->n_cands; j++) {
        /* One field: "share:a,b" quoted whole, not share: then "a,b". */
        const char *name = cand_name(e, j);
        size_t len = strlen(name) + 7;
        char *col = malloc(len);
        putchar(',');
        if (col) {
            snprintf(col, len, "share:%s", name);
            csv_field(col);
        }
        free(col);
    }
    putchar('\n');
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        csv_field(r->strategy);
        printf(",%s", r->predictor ? r->predictor : "");
        csv_num(r->alpha);
        csv_num(r->budget);
        printf(",%d,%d,%s", r->frontier, r->sweep,
               r->feasible < 0 ? "" : r->feasible ? "1" : "0");
        csv_num(r->success);
        csv_num(r->cost);
        csv_num(r->predicted_cost);
        printf(",%s", within_budget(r) < 0 ? "" : within_budget(r) ? "1" : "0");
        csv_num(r->predicted_quality);
        printf(",%s", timing_name(r->timing) ? timing_name(r->timing) : "");
        csv_num(r->p50);
        csv_num(r->p99);
        for (size_t j = 0; j < e->n_cands; j++)
            printf(",%.6f", r->share[j] / (double)e->n);
        putchar('\n');
    }
}

static void print_table(const struct eval *e)
{
    int any_budget = 0, any_batch = 0, any_sweep = 0, any_frontier = 0, any_draw = 0;
    int any_infeasible = 0;
    printf("%zu queries, %zu candidate models", e->n, e->n_cands);
    if (e->in_store > 0)
        printf("; %ld of the queries are in the history store: not held out", e->in_store);
    printf("\n\n");
    printf("%-44s %6s %11s %8s %11s %11s %6s %8s %9s %9s  %s\n", "strategy", "alpha", "budget",
           "success", "cost($)", "pred.cost", "within", "pred.q", "p50(us)", "p99(us)",
           "largest shares");
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        char name[128], a[16], b[32], pc[32], pq[16], p50[16], p99[16], shares[160] = "";
        const char *within = within_budget(r) < 0 ? "-" : within_budget(r) ? "yes" : "NO";
        size_t off = 0;
        int used[3] = {-1, -1, -1};
        snprintf(name, sizeof name, "%s%s%s%s%s%s%s",
                 strcmp(r->strategy, "random") == 0 ? "random (expectation)" : r->strategy,
                 r->predictor ? " (" : "", r->predictor ? r->predictor : "",
                 r->predictor ? ")" : "", r->sweep ? " [sweep]" : "", r->frontier ? " *" : "",
                 r->feasible == 0 ? " !" : "");
        any_infeasible |= r->feasible == 0;
        any_budget |= !isnan(r->budget);
        any_batch |= r->timing == TIMING_BATCH;
        any_sweep |= r->sweep;
        any_frontier |= r->frontier;
        any_draw |= strncmp(r->strategy, "random-draw:", 12) == 0;
        snprintf(a, sizeof a, isnan(r->alpha) ? "-" : "%.3f", r->alpha);
        /* As many decimals as the cost, so that an overrun shows. */
        snprintf(b, sizeof b, isnan(r->budget) ? "-" : "%.6f", r->budget);
        snprintf(pc, sizeof pc, isnan(r->predicted_cost) ? "-" : "%.6f", r->predicted_cost);
        snprintf(pq, sizeof pq, isnan(r->predicted_quality) ? "-" : "%.3f", r->predicted_quality);
        snprintf(p50, sizeof p50, isnan(r->p50) ? "-" : "%.1f", r->p50);
        snprintf(p99, sizeof p99, isnan(r->p99) ? "-" : "%.1f", r->p99);
        for (int t = 0; t < 3; t++) {
            double best = 0;
            for (size_t j = 0; j < e->n_cands; j++)
                if (r->share[j] > best && (int)j != used[0] && (int)j != used[1]) {
                    best = r->share[j];
                    used[t] = (int)j;
                }
            if (used[t] < 0)
                break;
            off += (size_t)snprintf(shares + off, sizeof shares - off, "%s%s %.0f%%",
                                    t ? ", " : "", cand_name(e, (size_t)used[t]),
                                    100.0 * best / (double)e->n);
            if (off >= sizeof shares)
                break;
        }
        printf("%-44s %6s %11s %8.4f %11.6f %11s %6s %8s %9s %9s  %s\n", name, a, b, r->success,
               r->cost, pc, within, pq, p50, p99, shares);
    }
    printf("\ncost($) is real: each record's input tokens (its input_token_length, else\n"
           "estimated from the query) and the chosen model's real output tokens at the\n"
           "config's prices. pred.cost is the router's own estimate of that total, from\n"
           "predicted output tokens.\n");
    if (any_budget)
        printf("A budget caps the predicted total cost (pred.cost), not the real one: a\n"
               "budget row can be feasible and still cost more. within: whether the real\n"
               "cost is within the budget.\n");
    printf("random (expectation): the exact expected success and cost of choosing a\n"
           "candidate uniformly at random for each query (each query's mean over the\n"
           "candidates), not one draw.%s\n",
           any_draw ? " random-draw:N is one draw with seed N." : "");
    printf("p50(us), p99(us): percentiles of the single decisions' times for rows routed\n"
           "query by query.%s\n",
           any_batch ? " smart-batch and smart-budget rows are decided in one call:\n"
                       "their p50 is that call's time divided by the queries (a mean, not a\n"
                       "percentile), and they have no p99."
                     : "");
    if (any_frontier)
        printf("* on the frontier: no smart row of the same predictor has at least its\n"
               "success for no more real cost and is better in one of the two.\n");
    if (any_infeasible)
        printf("! infeasible: its alpha or budget could not be met (smart rows: on the\n"
               "predicted figures); the row is the best reachable, as said on standard\n"
               "error.\n");
    if (any_sweep)
        printf("[sweep]: added by --sweep (the batch over alpha 0.50..0.98 and the budget\n"
               "form at each single model's real cost, for the first predictor; the task\n"
               "ceiling at those costs).\n");
    for (size_t k = 0; k < e->n_rows; k++)
        if (strcmp(e->rows[k].strategy, "task-ceiling") == 0) {
            printf("task-ceiling: the most success a router that knows only each query's task\n"
                   "can reach within the budget (each task's queries shared among the models by\n"
                   "their real success and cost on these queries: it reads the answers). Above\n"
                   "it, a router needs signal within a task.\n");
            break;
        }
    if (!e->swept)
        return;
    printf("\nSingle models against the frontier of the %s predictor (its best point at\n"
           "no higher real cost):\n",
           e->swept);
    printf("%-40s %8s %11s   %8s %11s  %-7s %s\n", "model", "success", "cost($)", "frontier",
           "cost($)", "versus", "point");
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k], *f;
        char point[160] = "-";
        if (!is_single(r))
            continue;
        f = versus_single(e, r);
        if (f && !isnan(f->budget))
            snprintf(point, sizeof point, "%s budget %.6f%s", f->strategy, f->budget,
                     f->feasible == 0 ? " (not met)" : "");
        else if (f)
            snprintf(point, sizeof point, "%s alpha %.2f%s", f->strategy, f->alpha,
                     f->feasible == 0 ? " (not met)" : "");
        if (f)
            printf("%-40s %8.4f %11.6f   %8.4f %11.6f  %-7s %s\n", r->strategy + 7, r->success,
                   r->cost, f->success, f->cost, relation(f, r), point);
        else
            printf("%-40s %8.4f %11.6f   %8s %11s  %-7s %s\n", r->strategy + 7, r->success,
                   r->cost, "-", "-", relation(f, r), point);
    }
    printf("\nversus: higher (more success for no more cost), cheaper (the same success\n"
           "for less), same (the same point: routing adds nothing there), below.\n");
}

/* ==== The plot ==== */

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *predictor_colour(const char *predictor)
{
    return strcmp(predictor, "aios") == 0 ? "#ff7f0e" : "#1f77b4";
}

static int cmp_row_cost(const void *a, const void *b)
{
    const struct row *x = *(const struct row *const *)a, *y = *(const struct row *const *)b;
    if (x->cost != y->cost)
        return (x->cost > y->cost) - (x->cost < y->cost);
    return (x->success > y->success) - (x->success < y->success);
}

static int write_plot(const struct eval *e, const char *path)
{
    const double W = 960, H = 620, L = 80, R = 250, T = 50, B = 60;
    double cmin = INFINITY, cmax = 0, smin = 1, smax = 0;
    const struct row **front;
    size_t nf = 0;
    FILE *f = fopen(path, "w");

    if (!f) {
        cli_error("eval", "--plot %s: cannot write the file: %s", path, strerror(errno));
        return CLI_RUNTIME;
    }
    front = calloc(e->n_rows + 1, sizeof *front);
    if (!front) {
        fclose(f);
        return CLI_RUNTIME;
    }
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (r->cost > 0) {
            cmin = fmin(cmin, r->cost);
            cmax = fmax(cmax, r->cost);
        }
        smin = fmin(smin, r->success);
        smax = fmax(smax, r->success);
    }
    if (!isfinite(cmin) || cmax <= cmin) {
        cmin = cmin > 0 && isfinite(cmin) ? cmin / 2 : 1e-3;
        cmax = cmin * 4;
    }
    {
        /* Log scale on cost, padded; linear on success, padded. */
        double lx0 = floor(log10(cmin) * 4 - 0.5) / 4, lx1 = ceil(log10(cmax) * 4 + 0.5) / 4;
        double y0 = floor(smin * 20 - 0.5) / 20, y1 = fmin(1.0, ceil(smax * 20 + 0.5) / 20);
#define X(c) (L + ((log10(c) - lx0) / (lx1 - lx0)) * (W - L - R))
#define Y(s) (H - B - (((s) - y0) / (y1 - y0)) * (H - T - B))
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
                W, H, W, H);
        fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
        fprintf(f, "<text x=\"%.0f\" y=\"28\" font-size=\"16\">llmroute eval: success rate "
                   "against total cost (%zu queries)</text>\n",
                L, e->n);
        for (double lx = floor(lx0); lx <= lx1 + 1e-9; lx += 1) {
            for (int m = 1; m < 10; m++) {
                double c = pow(10, lx) * m;
                if (log10(c) < lx0 || log10(c) > lx1)
                    continue;
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
                           "stroke=\"%s\"/>\n",
                        X(c), T, X(c), H - B, m == 1 ? "#bbb" : "#eee");
                if (m == 1 || m == 2 || m == 5)
                    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">$%g</text>\n",
                            X(c), H - B + 18, c);
            }
        }
        for (double s = y0; s <= y1 + 1e-9; s += 0.05) {
            fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                    L, Y(s), W - R, Y(s));
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", L - 6,
                    Y(s) + 4, s);
        }
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                   "stroke=\"#333\"/>\n",
                L, T, W - L - R, H - T - B);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">total cost (USD, log "
                   "scale)</text>\n",
                L + (W - L - R) / 2, H - 18);
        fprintf(f, "<text x=\"18\" y=\"%.0f\" transform=\"rotate(-90 18 %.0f)\" "
                   "text-anchor=\"middle\">success rate</text>\n",
                T + (H - T - B) / 2, T + (H - T - B) / 2);

        /* One line per predictor through its frontier rows (mark_frontier()),
         * by cost: the upper envelope of its smart rows. A predictor's rows
         * are drawn with its first row. */
        for (size_t k = 0; k < e->n_rows; k++) {
            const struct row *r = &e->rows[k];
            int first = r->predictor != NULL;
            for (size_t o = 0; first && o < k; o++)
                if (same_predictor(&e->rows[o], r))
                    first = 0;
            if (!first)
                continue;
            nf = 0;
            for (size_t o = k; o < e->n_rows; o++)
                if (e->rows[o].frontier && e->rows[o].cost > 0 && same_predictor(&e->rows[o], r))
                    front[nf++] = &e->rows[o];
            if (nf < 2)
                continue;
            qsort(front, nf, sizeof *front, cmp_row_cost);
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                    predictor_colour(r->predictor));
            for (size_t j = 0; j < nf; j++)
                fprintf(f, "%.1f,%.1f ", X(front[j]->cost), Y(front[j]->success));
            fprintf(f, "\"><title>frontier, ");
            svg_text(f, r->predictor);
            fprintf(f, " predictor</title></polyline>\n");
        }
        /* The task ceiling first and smaller, so that a model's point at the
         * same place is drawn over it and stays visible. */
        for (int pass = 0; pass < 2; pass++)
            for (size_t k = 0; k < e->n_rows; k++) {
                const struct row *r = &e->rows[k];
                int ceiling = strcmp(r->strategy, "task-ceiling") == 0;
                const char *colour;
                int label;
                if (r->cost <= 0 || ceiling != (pass == 0))
                    continue;
                colour = ceiling        ? "#bbb"
                         : is_single(r) ? "#d62728"
                         : r->predictor ? predictor_colour(r->predictor)
                                        : "#555";
                if (r->sweep && r->predictor) {
                    /* A swept row: a vertex of the line, or a small open circle. */
                    if (!r->frontier)
                        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"none\" "
                                   "stroke=\"%s\"/>\n",
                                X(r->cost), Y(r->success), colour);
                    continue;
                }
                label = is_single(r) || (!r->predictor && !ceiling);
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"><title>",
                        X(r->cost), Y(r->success), ceiling ? 3 : 4, colour);
                svg_text(f, r->strategy);
                fprintf(f, ": success %.3f, cost $%.4f</title></circle>\n", r->success, r->cost);
                if (label) {
                    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">",
                            X(r->cost) + 6, Y(r->success) - 4, colour);
                    svg_text(f, is_single(r) ? r->strategy + 7 : r->strategy);
                    fprintf(f, "</text>\n");
                }
            }
        {
            double lx = W - R + 16, ly = T + 10;
            const char *items[][2] = {{"#1f77b4", "smart rows and their frontier (line)"},
                                      {"#ff7f0e", "the same, aios predictor"},
                                      {"#d62728", "single models"},
                                      {"#555", "oracle, random, sequential"},
                                      {"#bbb", "task ceiling (reads the answers)"}};
            for (size_t k = 0; k < 5; k++) {
                fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"%s\"/>", lx,
                        ly + 18.0 * (double)k, items[k][0]);
                fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", lx + 10,
                        ly + 18.0 * (double)k + 4, items[k][1]);
            }
        }
        fprintf(f, "</svg>\n");
#undef X
#undef Y
    }
    free(front);
    if (fclose(f) != 0) {
        cli_error("eval", "--plot %s: write error", path);
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* ==== The command ==== */

/* Whether the --plot file can be written, found out before the work rather
 * than after it: opened for appending (which changes nothing in a file
 * that exists), and removed again if this made it. */
static int plot_check(const char *path)
{
    struct stat sb;
    int existed = stat(path, &sb) == 0;
    FILE *f;

    if (existed && S_ISDIR(sb.st_mode)) {
        cli_error("eval", "--plot %s: is a directory; give a file name such as plot.svg", path);
        return CLI_USAGE;
    }
    if (!(f = fopen(path, "a"))) {
        cli_error("eval", "--plot %s: cannot write the file: %s", path, strerror(errno));
        return CLI_USAGE;
    }
    fclose(f);
    if (!existed)
        unlink(path);
    return CLI_OK;
}

static int parse_list(const char *opt, const char *csv, double lo, double hi, double **out,
                      size_t *n)
{
    char **items = NULL;
    size_t k = 0;
    int rc = cli_split_list("eval", opt, csv, "number", &items, &k);
    if (rc)
        return rc;
    *out = calloc(k, sizeof **out);
    if (!*out) {
        free(items);
        return CLI_RUNTIME;
    }
    for (size_t i = 0; i < k; i++) {
        if ((rc = cli_parse_double("eval", opt, items[i], lo, hi, &(*out)[i]))) {
            free(items);
            return rc;
        }
        /* 0.7 and 0.70 are one value: its rows would be printed twice. */
        for (size_t j = 0; j < i; j++)
            if ((*out)[j] == (*out)[i]) {
                cli_error("eval", "%s: %g is given twice ('%s' and '%s')", opt, (*out)[i],
                          items[j], items[i]);
                free(items);
                return CLI_USAGE;
            }
    }
    *n = k;
    free(items);
    return CLI_OK;
}

/* Models of the data that the config does not name: their outcomes are not
 * scored, which eval says rather than dropping them unseen. Up to
 * MAX_UNCONFIGURED_SHOWN names are kept (each once) and printed; *more is
 * set when there were others. */
#define MAX_UNCONFIGURED_SHOWN 8

static void note_unconfigured(const char **names, size_t *n, int *more, const char *model)
{
    for (size_t u = 0; u < *n; u++)
        if (strcmp(names[u], model) == 0)
            return;
    if (*n < MAX_UNCONFIGURED_SHOWN)
        names[(*n)++] = model;
    else
        *more = 1;
}

/* Count the scored queries whose text the history store holds (e->in_store)
 * and warn when there are any: smart routing would find each one's own
 * outcomes among its neighbours, and its rows would not measure routing on
 * held-out data. */
static int check_held_out(struct eval *e, const struct lr_store *store, const char *path)
{
    const char **qs = malloc((e->n ? e->n : 1) * sizeof *qs);
    struct lr_error err = {0};
    size_t found = 0;
    int rc;

    if (!qs) {
        cli_error("eval", "out of memory");
        return CLI_RUNTIME;
    }
    for (size_t i = 0; i < e->n; i++)
        qs[i] = lr_dataset_record(e->ds, e->recs[i])->query;
    rc = lr_store_find_queries(store, qs, e->n, NULL, &found, &err);
    free(qs);
    if (rc) {
        cli_error("eval", "%s", err.message);
        return cli_exit_code(rc);
    }
    e->in_store = (long)found;
    if (found)
        cli_error("eval", "warning: %zu of the %zu scored queries are also in the history store "
                          "'%s' (the same text): for them smart routing finds their own outcomes "
                          "among the neighbours, so its rows are not wholly measured on "
                          "held-out data (import one split, e.g. --split train, and score "
                          "another)",
                  found, e->n, path);
    return CLI_OK;
}

/* Find the candidates and the scored records; fill the real outcome tables. */
static int prepare(struct eval *e)
{
    size_t n_models = lr_config_model_count(e->cfg), n_recs = lr_dataset_count(e->ds);
    size_t incomplete = 0, n_unknown = 0;
    const char *unknown[MAX_UNCONFIGURED_SHOWN];
    int more_unknown = 0;
    char *in_data = calloc(n_models, 1);

    e->cand_of_config = malloc(n_models * sizeof *e->cand_of_config);
    e->cands = calloc(n_models, sizeof *e->cands);
    if (!in_data || !e->cand_of_config || !e->cands) {
        free(in_data);
        return CLI_RUNTIME;
    }
    for (size_t i = 0; i < n_recs; i++) {
        const struct lr_record *r = lr_dataset_record(e->ds, i);
        for (size_t k = 0; k < r->n_outcomes; k++) {
            int m = lr_config_model_index(e->cfg, r->outcomes[k].model);
            if (m >= 0)
                in_data[m] = 1;
            else
                note_unconfigured(unknown, &n_unknown, &more_unknown, r->outcomes[k].model);
        }
    }
    for (size_t u = 0; u < n_unknown; u++)
        cli_error("eval", "warning: model '%s' has outcomes in the data but is not in the "
                          "config: they are not scored",
                  unknown[u]);
    if (more_unknown)
        cli_error("eval", "warning: and more models of the data are not in the config");
    for (size_t m = 0; m < n_models; m++) {
        const struct lr_model_info *mi = lr_config_model(e->cfg, m);
        e->cand_of_config[m] = -1;
        if (!in_data[m]) {
            cli_error("eval", "warning: model '%s' has no outcomes in the data; "
                              "it is not a candidate",
                      mi->name);
            continue;
        }
        if (isnan(mi->cost_per_input_token) || isnan(mi->cost_per_output_token)) {
            cli_error("eval", "models[%zu] '%s' has no %s in the config: eval needs both prices",
                      m, mi->name,
                      isnan(mi->cost_per_input_token) ? "cost_per_input_token"
                                                      : "cost_per_output_token");
            free(in_data);
            return CLI_USAGE;
        }
        e->cand_of_config[m] = (int)e->n_cands;
        e->cands[e->n_cands++] = (int)m;
    }
    free(in_data);
    if (e->n_cands == 0) {
        cli_error("eval", "no configured model has outcomes in the data: check the model names");
        return CLI_USAGE;
    }

    e->recs = calloc(n_recs, sizeof *e->recs);
    e->in_tokens = calloc(n_recs, sizeof *e->in_tokens);
    e->correct = calloc(n_recs * e->n_cands, sizeof *e->correct);
    e->real_cost = calloc(n_recs * e->n_cands, sizeof *e->real_cost);
    if (!e->recs || !e->in_tokens || !e->correct || !e->real_cost)
        return CLI_RUNTIME;
    for (size_t i = 0; i < n_recs; i++) {
        const struct lr_record *r = lr_dataset_record(e->ds, i);
        size_t found = 0, row = e->n;
        long in = r->input_tokens >= 0 ? r->input_tokens
                                       : lr_estimate_tokens(r->query, strlen(r->query));
        for (size_t k = 0; k < r->n_outcomes; k++) {
            int m = lr_config_model_index(e->cfg, r->outcomes[k].model);
            const struct lr_model_info *mi;
            int j;
            if (m < 0 || (j = e->cand_of_config[m]) < 0)
                continue;
            mi = lr_config_model(e->cfg, (size_t)m);
            e->correct[row * e->n_cands + (size_t)j] = r->outcomes[k].correctness;
            e->real_cost[row * e->n_cands + (size_t)j] =
                (double)in * mi->cost_per_input_token +
                r->outcomes[k].output_tokens * mi->cost_per_output_token;
            found++;
        }
        if (found < e->n_cands) {
            incomplete++;
            continue;
        }
        e->recs[e->n] = i;
        e->in_tokens[e->n] = in;
        e->n++;
    }
    if (incomplete)
        fprintf(stderr, "llmroute eval: %zu records lack an outcome for some candidate and are "
                        "not scored\n",
                incomplete);
    if (e->n == 0) {
        cli_error("eval", "no record has outcomes for every candidate model");
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cmd_eval(int argc, char **argv)
{
    const char *config = NULL, *store_path = NULL, *data = NULL, *split = NULL, *alpha_s = NULL,
               *budget_s = NULL, *pred_s = NULL, *format = NULL, *plot = NULL, *seed_s = NULL;
    int sweep = 0, help_flag = 0, n_pos = 0, rc, lrc;
    const struct cli_opt opts[] = {
        {"config", &config, NULL},  {"store", &store_path, NULL}, {"data", &data, NULL},
        {"split", &split, NULL},    {"alpha", &alpha_s, NULL},    {"budget", &budget_s, NULL},
        {"predictors", &pred_s, NULL}, {"format", &format, NULL}, {"plot", &plot, NULL},
        {"seed", &seed_s, NULL},    {"sweep", NULL, &sweep},      {"help", NULL, &help_flag},
        {NULL, NULL, NULL},
    };
    struct lr_config *cfg = NULL;
    struct lr_store *store = NULL;
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    struct eval e;
    char **pos = NULL, **preds = NULL;
    double *alphas = NULL, *budgets = NULL, one_alpha;
    size_t n_alphas = 0, n_budgets = 0, n_preds = 0;
    long seed = 0; /* no random-draw row without --seed */
    int *slot = NULL;
    double *times = NULL, *single_cost = NULL;
    size_t n_single = 0;
    struct lr_request *reqs = NULL;
    struct lr_decision *decs = NULL;
    struct lr_router *router = NULL;
    float *vecs = NULL;
    static const char *default_preds[] = {"default", "aios"};

    memset(&e, 0, sizeof e);
    e.in_store = -1;
    rc = cli_parse("eval", argc, argv, opts, &pos, &n_pos);
    if (rc)
        return rc;
    if (help_flag) {
        fputs(help, stdout);
        free(pos);
        return CLI_OK;
    }
    if (n_pos) {
        cli_error("eval", "unexpected argument '%s'", pos[0]);
        rc = CLI_USAGE;
        goto out;
    }
    if (!data) {
        cli_error("eval", "--data FILE is required");
        rc = CLI_USAGE;
        goto out;
    }
    /* '-' is standard input, as for import; the data loader reads it as
     * it reads a pipe, and names it /dev/stdin. */
    if (strcmp(data, "-") == 0)
        data = "/dev/stdin";
    if (!format)
        format = "table";
    if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0 &&
        strcmp(format, "csv") != 0) {
        cli_error("eval", "--format: expected table, json or csv, got '%s'", format);
        rc = CLI_USAGE;
        goto out;
    }
    if ((alpha_s && (rc = parse_list("--alpha", alpha_s, 0, 1, &alphas, &n_alphas))) ||
        (budget_s && (rc = parse_list("--budget", budget_s, 0, LR_BATCH_MAX_BUDGET, &budgets,
                                      &n_budgets))) ||
        (seed_s && (rc = cli_parse_long("eval", "--seed", seed_s, 1, 2147483647L, &seed))) ||
        (pred_s &&
         (rc = cli_split_list("eval", "--predictors", pred_s, "name", &preds, &n_preds))))
        goto out;
    /* Checked here, not by the first router made with it: that comes after
     * the data is read and every other row scored, and only with a store. */
    for (size_t p = 0; p < n_preds; p++) {
        size_t k = 0, known = sizeof default_preds / sizeof *default_preds;
        while (k < known && strcmp(preds[p], default_preds[k]) != 0)
            k++;
        if (k == known) {
            cli_error("eval", "--predictors: unknown predictor '%s' (expected \"%s\" or \"%s\")",
                      preds[p], default_preds[0], default_preds[1]);
            rc = CLI_USAGE;
            goto out;
        }
    }
    if ((rc = cli_check_split("eval", split)))
        goto out;
    if ((rc = cli_load_config("eval", config, &cfg)))
        goto out;
    /* Refused before the data is read and scored, which may take minutes:
     * a store that does not exist (as route refuses it) and a plot that
     * could not be written at the end. */
    if (!store_path)
        store_path = lr_config_router_defaults(cfg)->store_path;
    if ((rc = cli_check_store_exists("eval", store_path)))
        goto out;
    if (plot && (rc = plot_check(plot)))
        goto out;
    if (!alphas) {
        one_alpha = lr_config_router_defaults(cfg)->performance_requirement;
        alphas = malloc(sizeof *alphas);
        if (!alphas) {
            rc = CLI_RUNTIME;
            goto out;
        }
        alphas[0] = one_alpha;
        n_alphas = 1;
    }
    {
        struct lr_import_options io;
        struct lr_import_report rep;
        lr_import_options_init(&io);
        io.split = split;
        if ((rc = lr_dataset_load(data, &io, &ds, &rep, &err))) {
            cli_error("eval", "%s", err.message);
            /* Out of memory is a runtime failure, as route and import say
             * it; every other fault is the data's. */
            rc = rc == LR_ENOMEM ? CLI_RUNTIME : CLI_USAGE;
            goto out;
        }
        if (rep.bad)
            cli_error("eval", "%s: skipped %zu bad (first: %s)", data, rep.bad, rep.first_bad);
        if (lr_dataset_count(ds) == 0) {
            if (rep.read == rep.bad)
                cli_error("eval", "%s: the file holds no %srecords", data, rep.bad ? "good " : "");
            else
                cli_error("eval", "%s: no records in split %s (%zu in other splits)", data,
                          split ? split : "", rep.skipped_split);
            rc = CLI_USAGE;
            goto out;
        }
    }
    e.cfg = cfg;
    e.ds = ds;
    if ((rc = prepare(&e)))
        goto out;

    slot = calloc(e.n, sizeof *slot);
    times = calloc(e.n, sizeof *times);
    reqs = calloc(e.n, sizeof *reqs);
    decs = calloc(e.n, sizeof *decs);
    if (!slot || !times || !reqs || !decs || run_baselines(&e, slot, (unsigned long)seed)) {
        cli_error("eval", "out of memory");
        rc = CLI_RUNTIME;
        goto out;
    }
    {
        struct lr_router_options ro;
        struct row *r;
        lr_router_options_init(&ro);
        ro.strategy = "sequential";
        if ((rc = lr_router_new(cfg, &ro, &router, &err)) ||
            !(r = new_row(&e, "sequential", NULL, NAN, NAN)) ||
            (rc = run_per_query(&e, router, r, slot, reqs, times, NAN))) {
            if (rc == 0)
                rc = LR_ENOMEM;
            rc = cli_exit_code(rc);
            goto out;
        }
        lr_router_free(router);
        router = NULL;
    }

    if (!store_path) {
        fprintf(stderr, "llmroute eval: no history store (--store or router.store): smart rows "
                        "are left out\n");
    } else {
        struct lr_store_options so;
        lr_store_options_init(&so);
        embed_store_options(cfg, &so);
        so.read_only = 1;
        if ((lrc = lr_store_open(store_path, &so, &store, &err))) {
            /* The same exit code as route and import give for this store. */
            cli_error("eval", "%s", err.message);
            rc = cli_exit_code(lrc) == CLI_USAGE ? CLI_USAGE : CLI_RUNTIME;
            goto out;
        }
        if ((rc = check_held_out(&e, store, store_path)))
            goto out;
        if (embed_store_is_dense(store) && (rc = embed_all(&e, store, &vecs)))
            goto out;
        if (!preds) {
            preds = (char **)default_preds;
            n_preds = 2;
        }
        for (size_t p = 0; p < n_preds; p++) {
            struct lr_router_options ro;
            lr_router_options_init(&ro);
            ro.strategy = "smart";
            ro.store = store;
            ro.predictor = preds[p];
            if ((rc = lr_router_new(cfg, &ro, &router, &err))) {
                cli_error("eval", "%s", err.message);
                rc = cli_exit_code(rc);
                goto out;
            }
            for (size_t a = 0; a < n_alphas; a++) {
                struct row *r = new_row(&e, "smart", preds[p], alphas[a], NAN);
                if (!r || (rc = run_per_query(&e, router, r, slot, reqs, times, alphas[a])))
                    goto smart_failed;
            }
            for (size_t a = 0; a < n_alphas; a++) {
                struct row *r = new_row(&e, "smart-batch", preds[p], alphas[a], NAN);
                if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_QUALITY)))
                    goto smart_failed;
            }
            for (size_t b = 0; b < n_budgets; b++) {
                struct row *r = new_row(&e, "smart-budget", preds[p], NAN, budgets[b]);
                if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_BUDGET)))
                    goto smart_failed;
            }
            if (sweep && p == 0) {
                /* (50 + 2k) / 100: the double nearest each step's decimal
                 * (0.92), where 0.50 + 0.02 k drifts (0.9199999999999999). */
                for (int k = 0; k <= 24; k++) {
                    struct row *r =
                        new_row(&e, "smart-batch", preds[p], (50 + 2 * k) / 100.0, NAN);
                    if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_QUALITY)))
                        goto smart_failed;
                    r->sweep = 1;
                }
                /* Copy the costs first: new_row may move the rows. */
                single_cost = calloc(e.n_rows, sizeof *single_cost);
                if (!single_cost) {
                    rc = CLI_RUNTIME;
                    goto smart_failed;
                }
                for (size_t k = 0; k < e.n_rows; k++)
                    if (is_single(&e.rows[k]))
                        single_cost[n_single++] = e.rows[k].cost;
                for (size_t k = 0; k < n_single; k++) {
                    struct row *r = new_row(&e, "smart-budget", preds[p], NAN, single_cost[k]);
                    if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_BUDGET)))
                        goto smart_failed;
                    r->sweep = 1;
                }
                e.swept = preds[p];
            }
            lr_router_free(router);
            router = NULL;
            continue;
        smart_failed:
            rc = rc ? cli_exit_code(rc) : CLI_RUNTIME;
            goto out;
        }
    }

    /* The task ceiling at each budget: the given ones, and with --sweep
     * each single model's real cost. */
    {
        size_t nb = n_budgets, rows0 = e.n_rows;
        double *at_cost = calloc(n_budgets + rows0 + 1, sizeof *at_cost);
        if (!at_cost) {
            rc = CLI_RUNTIME;
            goto out;
        }
        if (n_budgets) /* budgets is NULL without --budget */
            memcpy(at_cost, budgets, n_budgets * sizeof *budgets);
        for (size_t k = 0; sweep && k < rows0; k++)
            if (is_single(&e.rows[k]))
                at_cost[nb++] = e.rows[k].cost;
        for (size_t b = 0; b < nb; b++) {
            int trc = task_ceiling(&e, at_cost[b]);
            if (trc == 0 && b >= n_budgets)
                e.rows[e.n_rows - 1].sweep = 1;
            if (trc < 0) {
                free(at_cost);
                cli_error("eval", "out of memory");
                rc = CLI_RUNTIME;
                goto out;
            }
            if (trc > 0) {
                fprintf(stderr, "llmroute eval: no task-ceiling rows: some scored records have "
                                "no task label (task or eval_name)\n");
                break;
            }
        }
        free(at_cost);
    }

    mark_frontier(&e);
    if (strcmp(format, "json") == 0)
        print_json(&e);
    else if (strcmp(format, "csv") == 0)
        print_csv(&e);
    else
        print_table(&e);
    rc = plot ? write_plot(&e, plot) : CLI_OK;
out:
    cli_flush_stdout();
    for (size_t k = 0; k < e.n_rows; k++)
        free(e.rows[k].share);
    free(e.rows);
    free(e.cands);
    free(e.cand_of_config);
    free(e.recs);
    free(e.in_tokens);
    free(e.correct);
    free(e.real_cost);
    free(vecs);
    free(slot);
    free(times);
    free(single_cost);
    free(reqs);
    free(decs);
    lr_router_free(router);
    lr_store_free(store);
    lr_dataset_free(ds);
    lr_config_free(cfg);
    if (preds != (char **)default_preds)
        free(preds);
    free(alphas);
    free(budgets);
    free(pos);
    return rc;
}
