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
 * correctness: the cheapest right one, or where none was right the
 * cheapest), smart per query at each alpha, smart batch at each alpha,
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
#include <strings.h>
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
    "  --alpha A[,A...]     quality targets for smart rows (default: the config's\n"
    "                       performance_requirement per query, router.alpha for\n"
    "                       the batch)\n"
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
    "  --sweep-alpha LO:HI:STEP\n"
    "                       --sweep with the batch over alpha LO, LO+STEP, .. HI\n"
    "                       instead (0 <= LO <= HI <= 1, at most 1,001 steps)\n"
    "  --format F           table (default), json or csv\n"
    "  --plot FILE.svg      draw success against cost: single models and the\n"
    "                       baselines as labelled points, each predictor's frontier\n"
    "                       as a line, smart rows by form (circle per query, square\n"
    "                       batch, diamond budget); cost on a log axis when it spans\n"
    "                       10x or more ($0 left of a break), else linear\n"
    "  --seed N             also print random-draw:N, one seeded draw of the random\n"
    "                       strategy (N from 1; xorshift64, the same on every\n"
    "                       platform)\n"
    "\n"
    "Each record is routed with its own input_token_length as the request's input\n"
    "tokens (a record without one: estimated from the query, one token per 4\n"
    "bytes), and its real cost counts the same input tokens and the chosen model's\n"
    "real output tokens at the config's prices. predicted_cost is the router's own\n"
    "estimate of the total, from predicted output tokens; feasible is the\n"
    "library's report on that estimate, within_budget compares the real cost.\n"
    "random is the exact expectation of a uniform choice per query (each query's\n"
    "mean over the candidates), not a draw. oracle: for each query the cheapest\n"
    "model that was right (the highest correctness, then the cheapest); where every\n"
    "model scored 0, the cheapest model, scored 0. decision_timing per_query: p50\n"
    "and p99 are nearest-rank percentiles of single decisions (the ceil(p*n)-th\n"
    "smallest time); batch_mean (smart-batch, smart-budget):\n"
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
    char *strategy;        /* owned: "single:" and a model's name of any length */
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
    double sweep_lo, sweep_hi; /* its alphas' range */
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

/* The nearest-rank percentile: the ceil(p*n)-th smallest of the n values
 * (p = 0.5 of 4 values: the 2nd; p = 0.99 of 945: the 936th), which it sorts
 * in place. */
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
    r->strategy = strdup(name);
    if (!r->share || !r->strategy) {
        free(r->share);
        free(r->strategy);
        return NULL;
    }
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
    char name[48];
    struct row *r;
    uint64_t x = seed;

    for (size_t j = 0; j < e->n_cands; j++) {
        const char *model = lr_config_model(e->cfg, (size_t)e->cands[j])->name;
        size_t len = strlen(model) + sizeof "single:";
        char *single = malloc(len);
        if (!single)
            return -1;
        snprintf(single, len, "single:%s", model);
        r = new_row(e, single, NULL, NAN, NAN);
        free(single);
        if (!r)
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

/* d with `decimals` decimals, as the table's columns have it, unless that
 * reads back as another number (alpha 0.7001 at three, a budget of 1e-7 at
 * six): then bound_text()'s, so that two rows' bounds never print alike. */
static const char *column_text(char buf[32], double d, int decimals)
{
    snprintf(buf, 32, "%.*f", decimals, d);
    return strtod(buf, NULL) == d ? buf : bound_text(buf, d);
}

/* Characters of UTF-8 text s (names are valid UTF-8: the config and data
 * loaders check it): a label's width is estimated from them, and a
 * table's column padded by them. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* s left-aligned in a column of `width` characters (printf's %-*s pads by
 * bytes: a name with accents would push the row's numbers left). */
static void put_padded(const char *s, size_t width)
{
    size_t n = utf8_chars(s);
    fputs(s, stdout);
    for (; n < width; n++)
        putchar(' ');
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

/* The real success (a sum over the scored records, not yet a rate) and
 * cost of a task-ceiling mix, summed record by record in the order score()
 * sums a single model's, so that a mix of one model for every task has that
 * model's very figures: task t's queries on candidate hull[t * nc + at[t]],
 * and the fraction `split` of task split_task's on split_to instead (no
 * task when split_task is past the last). */
static void mix_figures(const struct eval *e, const size_t *task_of, const int *hull, const int *at,
                        size_t split_task, int split_to, double split, double *success,
                        double *cost)
{
    size_t nc = e->n_cands;
    double s = 0, c = 0;
    for (size_t i = 0; i < e->n; i++) {
        size_t t = task_of[i], m = (size_t)hull[t * nc + (size_t)at[t]];
        const double *ok = e->correct + i * nc, *price = e->real_cost + i * nc;
        if (t == split_task) {
            s += (1 - split) * ok[m] + split * ok[split_to];
            c += (1 - split) * price[m] + split * price[split_to];
        } else {
            s += ok[m];
            c += price[m];
        }
    }
    *success = s;
    *cost = c;
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
 * queries go where, and the shares are that same mix, a fraction of a
 * query where a task is split (rounded to whole queries they described
 * another mix than the one scored, one over the budget). Every scored record
 * needs a task label; else it returns 1 and adds no row.
 *
 * The tasks' totals order the steps, but a mix's figures are summed record
 * by record (mix_figures()), as score() sums a single model's: added task
 * by task the same costs can round an ulp apart, and at a single model's
 * own cost (a --sweep budget) the ceiling that is that model called its
 * cheapest choice over the budget. So the records' sum decides whether the
 * cheapest choice is within B and, at B's edge, whether a step fits whole. */
static int task_ceiling(struct eval *e, double budget)
{
    size_t nc = e->n_cands, nt = 0, ns = 0;
    struct by_task *order = malloc(e->n * sizeof *order);
    size_t *first = calloc(e->n + 1, sizeof *first);
    double *S = calloc(e->n * nc, sizeof *S), *C = calloc(e->n * nc, sizeof *C);
    int *hull = malloc(e->n * nc * sizeof *hull), *at = calloc(e->n, sizeof *at);
    struct hull_step *steps = malloc(e->n * nc * sizeof *steps);
    size_t *task_of = malloc(e->n * sizeof *task_of); /* scored record -> task */
    struct row *r;
    int rc = -1;

    if (!order || !first || !S || !C || !hull || !at || !steps || !task_of)
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
        task_of[i] = nt - 1;
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
    double spent = 0; /* the mix's cost by the tasks' totals: decides a step away from B */
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
    double success, cost; /* of the mix at hand, record by record */
    mix_figures(e, task_of, hull, at, nt, -1, 0, &success, &cost);
    r->feasible = cost <= budget;
    if (!r->feasible)
        /* %g as the budget: at a fraction of a cent "(0.000000)" read as
         * a choice that costs nothing, below any budget. */
        cli_error("eval", "task-ceiling budget %.6g: below the cheapest choice for every "
                          "query (%.6g); the row is that choice",
                  budget, cost);
    /* A task's steps gain less per dollar one after another, so in this
     * order each task's steps come in hull order. */
    qsort(steps, ns, sizeof *steps, cmp_step);
    size_t split_task = nt;
    double split = 0, edge = LR_BATCH_TOLERANCE * budget;
    int split_to = -1;
    for (size_t k = 0; r->feasible && k < ns; k++) {
        const struct hull_step *st = &steps[k];
        double after = spent + st->dc;
        int whole = after <= budget;
        if (fabs(after - budget) <= edge) {
            /* At B's edge, by the records' own sum. */
            at[st->task]++;
            mix_figures(e, task_of, hull, at, nt, -1, 0, &success, &cost);
            at[st->task]--;
            whole = cost <= budget;
        }
        if (whole) {
            spent = after;
            at[st->task]++;
            continue;
        }
        /* The part of the step that what is left of B pays for; none when
         * the mix so far spends it all but rounding (its records' sum a few
         * ulps off the tasks' one), which would move 1e-17 of a query. */
        mix_figures(e, task_of, hull, at, nt, -1, 0, &success, &cost);
        if (budget - cost > edge) {
            split = fmin((budget - cost) / st->dc, 1);
            split_task = st->task;
            split_to = st->to;
        }
        break;
    }
    for (size_t t = 0; t < nt; t++) {
        double n_t = (double)(first[t + 1] - first[t]);
        int m = hull[t * nc + (size_t)at[t]];
        if (t == split_task) {
            double moved = split * n_t;
            r->share[split_to] += moved;
            n_t -= moved;
        }
        r->share[m] += n_t;
    }
    mix_figures(e, task_of, hull, at, split_task, split_to, split, &success, &cost);
    r->success = success / (double)e->n;
    /* A task split between two models spends B whole, by construction. */
    r->cost = split_task < nt ? budget : cost;
    rc = 0;
out:
    free(order);
    free(first);
    free(S);
    free(C);
    free(hull);
    free(at);
    free(steps);
    free(task_of);
    return rc;
}

/* ==== The frontier ==== */

static int same_predictor(const struct row *a, const struct row *b)
{
    return a->predictor && b->predictor && strcmp(a->predictor, b->predictor) == 0;
}

/* Whether row k is its predictor's first row (0 for a row of none): the
 * plot draws a predictor's line and legend entry once, with that row. */
static int first_of_predictor(const struct eval *e, size_t k)
{
    if (!e->rows[k].predictor)
        return 0;
    for (size_t o = 0; o < k; o++)
        if (same_predictor(&e->rows[o], &e->rows[k]))
            return 0;
    return 1;
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
    /* jansson's default precision, 17 digits: every real reads back as the
     * double it is, so a total_cost compares with its budget as
     * within_budget did, and two figures that differ never print alike. */
    s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
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

/* A field as the shortest text that reads back as d, as the JSON's reals
 * do: at ten digits a total cost of 0.11484000000000012 read 0.11484. */
static void csv_num(double d)
{
    char buf[32];
    if (isnan(d))
        fputs(",", stdout);
    else
        printf(",%s", bound_text(buf, d));
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
            csv_num(r->share[j] / (double)e->n);
        putchar('\n');
    }
}

/* Row r's name as the table shows it (its predictor, and its marks), whole,
 * left-aligned in a column of `width` characters. */
static void put_row_name(const struct row *r, size_t width)
{
    const char *part[] = {strcmp(r->strategy, "random") == 0 ? "random (expectation)"
                                                              : r->strategy,
                          r->predictor ? " (" : "",
                          r->predictor ? r->predictor : "",
                          r->predictor ? ")" : "",
                          r->sweep ? " [sweep]" : "",
                          r->frontier ? " *" : "",
                          r->feasible == 0 ? " !" : ""};
    size_t n = 0;
    for (size_t i = 0; i < sizeof part / sizeof *part; i++) {
        fputs(part[i], stdout);
        n += utf8_chars(part[i]);
    }
    for (; n < width; n++)
        putchar(' ');
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
        char a[32], b[32], pc[32], pq[16], p50[16], p99[16];
        const char *within = within_budget(r) < 0 ? "-" : within_budget(r) ? "yes" : "NO";
        int used[3] = {-1, -1, -1};
        any_infeasible |= r->feasible == 0;
        any_budget |= !isnan(r->budget);
        any_batch |= r->timing == TIMING_BATCH;
        any_sweep |= r->sweep;
        any_frontier |= r->frontier;
        any_draw |= strncmp(r->strategy, "random-draw:", 12) == 0;
        if (isnan(r->alpha))
            snprintf(a, sizeof a, "-");
        else
            column_text(a, r->alpha, 3);
        /* As many decimals as the cost, so that an overrun shows. */
        if (isnan(r->budget))
            snprintf(b, sizeof b, "-");
        else
            column_text(b, r->budget, 6);
        snprintf(pc, sizeof pc, isnan(r->predicted_cost) ? "-" : "%.6f", r->predicted_cost);
        snprintf(pq, sizeof pq, isnan(r->predicted_quality) ? "-" : "%.3f", r->predicted_quality);
        snprintf(p50, sizeof p50, isnan(r->p50) ? "-" : "%.1f", r->p50);
        snprintf(p99, sizeof p99, isnan(r->p99) ? "-" : "%.1f", r->p99);
        put_row_name(r, 44);
        printf(" %6s %11s %8.4f %11.6f %11s %6s %8s %9s %9s  ", a, b, r->success, r->cost, pc,
               within, pq, p50, p99);
        /* The largest shares, last: the models' names whole, however long. */
        for (int t = 0; t < 3; t++) {
            double best = 0;
            for (size_t j = 0; j < e->n_cands; j++)
                if (r->share[j] > best && (int)j != used[0] && (int)j != used[1]) {
                    best = r->share[j];
                    used[t] = (int)j;
                }
            if (used[t] < 0)
                break;
            /* A model chosen for a few queries of many is not "0%", nor
             * one chosen for all but a few "100%". */
            double p = 100.0 * best / (double)e->n;
            printf("%s%s ", t ? ", " : "", cand_name(e, (size_t)used[t]));
            printf(p < 0.5 ? "<1%%" : p >= 99.5 && p < 100 ? ">99%%" : "%.0f%%", p);
        }
        putchar('\n');
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
    printf("oracle: for each query the cheapest model with the best correctness; where\n"
           "every model scored 0, the cheapest model (scored 0).\n");
    printf("p50(us), p99(us): nearest-rank percentiles of the single decisions' times\n"
           "for rows routed query by query.%s\n",
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
        printf("[sweep]: added by --sweep (the batch over alpha %g..%g and the budget\n"
               "form at each single model's real cost, for the first predictor; the task\n"
               "ceiling at those costs).\n",
               e->sweep_lo, e->sweep_hi);
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
        char point[160] = "-", bound[32];
        if (!is_single(r))
            continue;
        f = versus_single(e, r);
        if (f && !isnan(f->budget))
            snprintf(point, sizeof point, "%s budget %s%s", f->strategy,
                     column_text(bound, f->budget, 6), f->feasible == 0 ? " (not met)" : "");
        else if (f)
            snprintf(point, sizeof point, "%s alpha %s%s", f->strategy,
                     column_text(bound, f->alpha, 2), f->feasible == 0 ? " (not met)" : "");
        put_padded(r->strategy + 7, 40);
        if (f)
            printf(" %8.4f %11.6f   %8.4f %11.6f  %-7s %s\n", r->success, r->cost, f->success,
                   f->cost, relation(f, r), point);
        else
            printf(" %8.4f %11.6f   %8s %11s  %-7s %s\n", r->success, r->cost, "-", "-",
                   relation(f, r), point);
    }
    printf("\nversus: higher (more success for no more cost), cheaper (the same success\n"
           "for less), same (the same point: routing adds nothing there), below.\n");
}

/* ==== The plot ==== */

/* Success (y, linear) against real total cost (x): each predictor's
 * frontier as a line, single models and the other baselines as labelled
 * points, the smart rows given on the command line as points whose shape
 * says their form (circle per query, square batch, diamond budget) and
 * whose colour says their predictor, with a short label (alpha or budget)
 * where one fits. The cost axis is logarithmic when the costs span a
 * factor of 10 or more (RouterBench's single models: $0.08 to $4.73), with
 * rows that cost nothing at a "$0" mark left of a break; else linear.
 * Labels are placed by a greedy search over spots around each point that
 * avoids the frame, the other points, the labels placed before and the
 * frontier lines; a label that had to move away from its point gets a
 * leader line. Its width is estimated (LABEL_CHAR_W a character), so a
 * browser's font can make one a little wider or narrower. */

#define LABEL_CHAR_W 6.0 /* px per character of a 10 px sans-serif label, generous */
#define LABEL_H 11.0
#define ZERO_STRIP 34.0 /* px left of the log axis for rows that cost $0 */

enum shape { SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_DIAMOND };

struct box {
    double x0, y0, x1, y1;
};

struct plot {
    FILE *f;
    double W, H, L, R, T, B;
    int log_x;        /* logarithmic cost axis */
    double x0, x1;    /* axis range: log10 of the cost when log_x, else the cost */
    double zero_w;    /* width of the $0 strip (log axis with a row at $0), else 0 */
    double y0, y1;    /* success range */
    struct box *obst; /* markers and placed labels */
    size_t n_obst, cap_obst;
    double (*seg)[4]; /* frontier segments */
    size_t n_seg, cap_seg;
};

/* Text into SVG character data or a double-quoted attribute value. */
static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
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

static double plot_x(const struct plot *p, double c)
{
    double left = p->L + p->zero_w, right = p->W - p->R;
    if (!p->log_x)
        return left + (c - p->x0) / (p->x1 - p->x0) * (right - left);
    if (c <= 0)
        return p->L + p->zero_w / 2;
    return left + (log10(c) - p->x0) / (p->x1 - p->x0) * (right - left);
}

static double plot_y(const struct plot *p, double s)
{
    return p->H - p->B - (s - p->y0) / (p->y1 - p->y0) * (p->H - p->T - p->B);
}

static int add_obstacle(struct plot *p, struct box b)
{
    if (p->n_obst == p->cap_obst) {
        size_t cap = p->cap_obst ? p->cap_obst * 2 : 64;
        struct box *grown = realloc(p->obst, cap * sizeof *grown);
        if (!grown)
            return -1;
        p->obst = grown;
        p->cap_obst = cap;
    }
    p->obst[p->n_obst++] = b;
    return 0;
}

static int add_segment(struct plot *p, double xa, double ya, double xb, double yb)
{
    if (p->n_seg == p->cap_seg) {
        size_t cap = p->cap_seg ? p->cap_seg * 2 : 64;
        double(*grown)[4] = realloc(p->seg, cap * sizeof *grown);
        if (!grown)
            return -1;
        p->seg = grown;
        p->cap_seg = cap;
    }
    p->seg[p->n_seg][0] = xa;
    p->seg[p->n_seg][1] = ya;
    p->seg[p->n_seg][2] = xb;
    p->seg[p->n_seg][3] = yb;
    p->n_seg++;
    return 0;
}

static double overlap(const struct box *a, const struct box *b)
{
    double w = fmin(a->x1, b->x1) - fmax(a->x0, b->x0), h = fmin(a->y1, b->y1) - fmax(a->y0, b->y0);
    return w > 0 && h > 0 ? w * h : 0;
}

/* Whether segment s crosses box b (Liang-Barsky clipping). */
static int segment_hits(const double s[4], const struct box *b)
{
    double t0 = 0, t1 = 1, dx = s[2] - s[0], dy = s[3] - s[1];
    double pq[4][2] = {{-dx, s[0] - b->x0}, {dx, b->x1 - s[0]}, {-dy, s[1] - b->y0},
                       {dy, b->y1 - s[1]}};
    for (int k = 0; k < 4; k++) {
        double pk = pq[k][0], qk = pq[k][1];
        if (pk == 0) {
            if (qk < 0)
                return 0;
            continue;
        }
        double t = qk / pk;
        if (pk < 0)
            t0 = fmax(t0, t);
        else
            t1 = fmin(t1, t);
        if (t0 > t1)
            return 0;
    }
    return 1;
}

/* Place and draw a label for the point at (x, y) drawn in colour. Spots to
 * its right, then left, ever further above and below; each is scored by
 * leaving the frame, covering a point or a label, and crossing a line, and
 * the best is taken. A label that must be drawn (single models, the
 * baselines) takes the best spot there is; one that may be left out (a
 * smart row's alpha or budget; its point's tooltip says it too) only a
 * spot that covers and crosses nothing. */
static int place_label(struct plot *p, double x, double y, const char *text, const char *colour,
                       int must)
{
    static const double dys[] = {0, -11, 11, -22, 22, -33, 33, -44, 44, -55, 55};
    double w = LABEL_CHAR_W * (double)utf8_chars(text), best_score = INFINITY;
    struct box best = {0, 0, 0, 0};
    size_t n_dys = sizeof dys / sizeof *dys;

    for (size_t k = 0; k < n_dys; k++)
        for (int side = 0; side < 2; side++) {
            struct box b;
            double score = (double)k + side * 0.5;
            b.x0 = side == 0 ? x + 7 : x - 7 - w;
            b.x1 = b.x0 + w;
            b.y0 = y + dys[k] - LABEL_H / 2;
            b.y1 = b.y0 + LABEL_H;
            if (b.x0 < p->L + 1 || b.x1 > p->W - p->R - 1 || b.y0 < p->T + 1 ||
                b.y1 > p->H - p->B - 1)
                score += 1e6;
            for (size_t o = 0; o < p->n_obst; o++)
                score += 100 * overlap(&b, &p->obst[o]);
            for (size_t s = 0; s < p->n_seg; s++)
                score += 30 * segment_hits(p->seg[s], &b);
            if (score < best_score) {
                best_score = score;
                best = b;
            }
        }
    if (!must && best_score >= 30)
        return 0;
    if (fabs((best.y0 + best.y1) / 2 - y) > 1) {
        /* Moved off its point: a leader from the point to the label's near edge. */
        double lx = best.x0 > x ? best.x0 - 1 : best.x1 + 1;
        fprintf(p->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                      "stroke-width=\"0.8\"/>\n",
                x, y, lx, (best.y0 + best.y1) / 2, colour);
    }
    fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">", best.x0,
            best.y1 - 2.5, colour);
    svg_text(p->f, text);
    fprintf(p->f, "</text>\n");
    return add_obstacle(p, best);
}

/* A marker: its element opened, filled (or, when open, outlined) in colour,
 * its tooltip from the row, closed. */
static void marker(const struct plot *p, const struct row *r, enum shape shape, double size,
                   const char *colour, int open)
{
    char bt[32];
    double x = plot_x(p, r->cost), y = plot_y(p, r->success);
    const char *elem = shape == SHAPE_SQUARE ? "rect" : shape == SHAPE_DIAMOND ? "polygon"
                                                                                : "circle";
    if (shape == SHAPE_SQUARE)
        fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"", x - size,
                y - size, 2 * size, 2 * size);
    else if (shape == SHAPE_DIAMOND)
        fprintf(p->f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\"", x,
                y - size * 1.3, x + size * 1.3, y, x, y + size * 1.3, x - size * 1.3, y);
    else
        fprintf(p->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"", x, y, size);
    if (open)
        fprintf(p->f, " fill=\"white\" stroke=\"%s\">", colour);
    else
        fprintf(p->f, " fill=\"%s\">", colour);
    /* The tooltip names the row wholly: strategy, predictor, its alpha or
     * budget, whether --sweep made it. */
    fprintf(p->f, "<title>");
    svg_text(p->f, r->strategy);
    if (r->predictor) {
        fprintf(p->f, " (");
        svg_text(p->f, r->predictor);
        fprintf(p->f, ")");
    }
    if (!isnan(r->alpha))
        fprintf(p->f, " alpha %s", bound_text(bt, r->alpha));
    if (!isnan(r->budget))
        fprintf(p->f, " budget $%s", bound_text(bt, r->budget));
    if (r->sweep)
        fprintf(p->f, " [sweep]");
    if (r->feasible == 0)
        fprintf(p->f, " (not met)");
    fprintf(p->f, ": success %.4f, cost $%.4f</title></%s>\n", r->success, r->cost, elem);
}

static enum shape row_shape(const struct row *r)
{
    if (strcmp(r->strategy, "smart-batch") == 0)
        return SHAPE_SQUARE;
    if (strcmp(r->strategy, "smart-budget") == 0)
        return SHAPE_DIAMOND;
    return SHAPE_CIRCLE;
}

/* The step between cost ticks of a linear axis over span: 1, 2 or 5 times
 * a power of ten, about five of them. */
static double nice_step(double span)
{
    double raw = span / 5, mag = pow(10, floor(log10(raw))), m = raw / mag;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * mag;
}

static void plot_axes(struct plot *p, int any_zero)
{
    FILE *f = p->f;
    double left = p->L + p->zero_w, right = p->W - p->R;
    char lab[32];

    if (p->log_x) {
        /* Gridlines at 1..9 times each power of ten; labels at 1, 2 and 5,
         * or at every one when that leaves fewer than three. */
        int n_lab = 0, all;
        for (int pass = 0; pass < 2; pass++) {
            all = pass == 1 && n_lab < 3;
            for (double lx = floor(p->x0); lx <= p->x1 + 1e-9; lx += 1)
                for (int m = 1; m < 10; m++) {
                    double c = pow(10, lx) * m, x;
                    int labelled = m == 1 || m == 2 || m == 5 || all;
                    if (log10(c) < p->x0 - 1e-9 || log10(c) > p->x1 + 1e-9)
                        continue;
                    if (pass == 0) {
                        n_lab += labelled;
                        continue;
                    }
                    x = plot_x(p, c);
                    fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
                               "stroke=\"%s\"/>\n",
                            x, p->T, x, p->H - p->B, m == 1 ? "#bbb" : "#eee");
                    if (labelled) {
                        snprintf(lab, sizeof lab, "$%g", c);
                        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
                                x, p->H - p->B + 18, lab);
                    }
                }
        }
        if (any_zero) {
            /* The $0 mark, and a break between it and the log axis. */
            double x = p->L + p->zero_w / 2, yb = p->H - p->B;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#bbb\"/>\n",
                    x, p->T, x, yb);
            fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">$0</text>\n", x,
                    yb + 18);
            fprintf(f, "<path d=\"M%.1f %.1f l-4 8 M%.1f %.1f l-4 8\" stroke=\"#333\" "
                       "fill=\"none\"/>\n",
                    left - 1, yb - 4, left + 3, yb - 4);
        }
    } else {
        double step = nice_step(p->x1 - p->x0);
        for (int k = 0;; k++) {
            double c = p->x0 + step * k, x;
            if (c > p->x1 + step * 1e-6)
                break;
            x = plot_x(p, c);
            snprintf(lab, sizeof lab, "$%g", fabs(c) < step * 1e-6 ? 0.0 : c);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n",
                    x, p->T, x, p->H - p->B);
            fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", x,
                    p->H - p->B + 18, lab);
        }
    }
    for (int k = 0;; k++) {
        double s = p->y0 + 0.05 * k;
        if (s > p->y1 + 1e-9)
            break;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                p->L, plot_y(p, s), right, plot_y(p, s));
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", p->L - 6,
                plot_y(p, s) + 4, s);
    }
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
               "stroke=\"#333\"/>\n",
            p->L, p->T, right - p->L, p->H - p->T - p->B);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">total cost of the queries "
               "(USD%s)</text>\n",
            p->L + (right - p->L) / 2, p->H - 18,
            p->log_x ? (any_zero ? ", log scale; $0 left of the break" : ", log scale") : "");
    fprintf(f, "<text x=\"18\" y=\"%.0f\" transform=\"rotate(-90 18 %.0f)\" "
               "text-anchor=\"middle\">success rate (mean real correctness)</text>\n",
            p->T + (p->H - p->T - p->B) / 2, p->T + (p->H - p->T - p->B) / 2);
}

/* The legend, in the margin right of the frame: what is drawn, only. */
static void plot_legend(struct plot *p, const struct eval *e)
{
    FILE *f = p->f;
    double x = p->W - p->R + 16, y = p->T + 8;
    int have[3] = {0, 0, 0}, any_swept = 0, any_single = 0, any_base = 0, any_ceiling = 0;
    const char *shape_text[3] = {"per query, at alpha α", "batch, at alpha α",
                                 "budget: cap on predicted cost"};

    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (r->predictor && !r->sweep)
            have[row_shape(r)] = 1;
        any_swept |= r->predictor && r->sweep && !r->frontier;
        any_single |= is_single(r);
        any_ceiling |= strcmp(r->strategy, "task-ceiling") == 0;
        any_base |= !r->predictor && !is_single(r) && strcmp(r->strategy, "task-ceiling") != 0;
    }
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (!first_of_predictor(e, k))
            continue;
        if (y == p->T + 8) {
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">smart routing, by "
                       "predictor</text>\n",
                    x, y + 4);
            y += 18;
        }
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                   "stroke-width=\"2\"/>",
                x - 6, y, x + 6, y, predictor_colour(r->predictor));
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", x + 14, y + 4);
        svg_text(f, r->predictor);
        fprintf(f, ": its frontier (line)</text>\n");
        y += 18;
    }
    for (int s = 0; s < 3; s++) {
        if (!have[s])
            continue;
        if (s == SHAPE_SQUARE)
            fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"8\" height=\"8\" fill=\"#555\"/>",
                    x - 4, y - 4);
        else if (s == SHAPE_DIAMOND)
            fprintf(f, "<polygon points=\"%.0f,%.1f %.1f,%.0f %.0f,%.1f %.1f,%.0f\" "
                       "fill=\"#555\"/>",
                    x, y - 5.2, x + 5.2, y, x, y + 5.2, x - 5.2, y);
        else
            fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"#555\"/>", x, y);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", x + 14, y + 4, shape_text[s]);
        y += 18;
    }
    if (any_swept) {
        fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"2.5\" fill=\"white\" stroke=\"#555\"/>"
                   "<text x=\"%.0f\" y=\"%.0f\">swept (--sweep), off the line</text>\n",
                x, y, x + 14, y + 4);
        y += 18;
    }
    y += 6;
    if (any_single) {
        fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"#d62728\"/>"
                   "<text x=\"%.0f\" y=\"%.0f\">single models</text>\n",
                x, y, x + 14, y + 4);
        y += 18;
    }
    if (any_base) {
        fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"#555\"/>"
                   "<text x=\"%.0f\" y=\"%.0f\">oracle, random, sequential</text>\n",
                x, y, x + 14, y + 4);
        y += 18;
    }
    if (any_ceiling)
        fprintf(f, "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"3\" fill=\"#bbb\"/>"
                   "<text x=\"%.0f\" y=\"%.0f\">task ceiling (reads the answers)</text>\n",
                x, y, x + 14, y + 4);
}

static int write_plot(const struct eval *e, const char *path)
{
    struct plot p = {.W = 980, .H = 640, .L = 80, .R = 240, .T = 50, .B = 60};
    double cmin = INFINITY, cmax = 0, smin = 1, smax = 0;
    const struct row **front = NULL;
    int any_zero = 0, rc = CLI_RUNTIME, werr = 0, regular;
    size_t nf = 0;
    struct stat sb;

    p.f = fopen(path, "w");
    if (!p.f) {
        cli_error("eval", "--plot %s: cannot write the file: %s", path, strerror(errno));
        return CLI_RUNTIME;
    }
    errno = 0; /* a failed write sets it: the reason the message gives */
    front = calloc(e->n_rows + 1, sizeof *front);
    if (!front)
        goto out;
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (r->cost > 0) {
            cmin = fmin(cmin, r->cost);
            cmax = fmax(cmax, r->cost);
        } else {
            any_zero = 1;
        }
        smin = fmin(smin, r->success);
        smax = fmax(smax, r->success);
    }
    /* Costs over a factor of 10 or more: log scale, padded by at least a
     * quarter of a decade; else a linear one from a round value. */
    p.log_x = isfinite(cmin) && cmax >= 10 * cmin;
    if (p.log_x) {
        p.x0 = floor(log10(cmin) * 4 - 0.5) / 4;
        p.x1 = ceil(log10(cmax) * 4 + 0.5) / 4;
        p.zero_w = any_zero ? ZERO_STRIP : 0;
    } else {
        double lo = any_zero || !isfinite(cmin) ? 0 : cmin, hi = isfinite(cmin) ? cmax : 0, step;
        if (hi - lo <= 0.01 * hi) {
            /* One cost, or costs that differ only in their last digits (a
             * sum taken in another order): a range around them. */
            double mid = (lo + hi) / 2;
            lo = mid > 0 && !any_zero ? mid * 0.75 : 0;
            hi = mid > 0 ? mid * 1.25 : 0.01;
        }
        step = nice_step(hi - lo);
        p.x0 = fmax(0, floor((lo - (hi - lo) * 0.05) / step) * step);
        p.x1 = ceil((hi + (hi - lo) * 0.05) / step) * step;
    }
    p.y0 = fmax(0, floor(smin * 20 - 0.5) / 20);
    p.y1 = fmin(1, ceil(smax * 20 + 0.5) / 20);

    fprintf(p.f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            p.W, p.H, p.W, p.H);
    fprintf(p.f, "<title>llmroute eval: success rate against total cost (%zu queries)</title>\n",
            e->n);
    fprintf(p.f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(p.f, "<text x=\"%.0f\" y=\"28\" font-size=\"16\">llmroute eval: success rate "
                 "against total cost (%zu queries)</text>\n",
            p.L, e->n);
    plot_axes(&p, any_zero);

    /* One line per predictor through its frontier rows (mark_frontier()),
     * by cost: the upper envelope of its smart rows. A predictor's rows
     * are drawn with its first row. */
    for (size_t k = 0; k < e->n_rows; k++) {
        const struct row *r = &e->rows[k];
        if (!first_of_predictor(e, k))
            continue;
        nf = 0;
        for (size_t o = k; o < e->n_rows; o++)
            if (e->rows[o].frontier && same_predictor(&e->rows[o], r))
                front[nf++] = &e->rows[o];
        if (nf < 2)
            continue;
        qsort(front, nf, sizeof *front, cmp_row_cost);
        fprintf(p.f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                predictor_colour(r->predictor));
        for (size_t j = 0; j < nf; j++) {
            double x = plot_x(&p, front[j]->cost), y = plot_y(&p, front[j]->success);
            fprintf(p.f, "%.1f,%.1f ", x, y);
            if (j && add_segment(&p, plot_x(&p, front[j - 1]->cost),
                                 plot_y(&p, front[j - 1]->success), x, y))
                goto out;
        }
        fprintf(p.f, "\"><title>frontier, ");
        svg_text(p.f, r->predictor);
        fprintf(p.f, " predictor</title></polyline>\n");
    }

    /* The markers: the task ceiling first and smaller, so that a model's
     * point at the same place is drawn over it and stays visible; then the
     * swept smart rows (small: a vertex of the line, or open off it), the
     * given smart rows, and the baselines and single models on top. */
    for (int pass = 0; pass < 4; pass++)
        for (size_t k = 0; k < e->n_rows; k++) {
            const struct row *r = &e->rows[k];
            int ceiling = strcmp(r->strategy, "task-ceiling") == 0;
            int this_pass = ceiling ? 0 : r->predictor ? (r->sweep ? 1 : 2) : 3;
            const char *colour = ceiling        ? "#bbb"
                                 : is_single(r) ? "#d62728"
                                 : r->predictor ? predictor_colour(r->predictor)
                                                : "#555";
            double size = ceiling ? 3 : r->sweep ? 2.5 : 4;
            double x = plot_x(&p, r->cost), y = plot_y(&p, r->success);
            if (this_pass != pass)
                continue;
            marker(&p, r, row_shape(r), size, colour, r->sweep && !r->frontier);
            if (!ceiling && add_obstacle(&p, (struct box){x - size - 1, y - size - 1,
                                                          x + size + 1, y + size + 1}))
                goto out;
        }

    /* The labels: those that must be drawn first, then the given smart
     * rows' alpha or budget where there is room. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < e->n_rows; k++) {
            const struct row *r = &e->rows[k];
            char text[64], bt[32];
            double x = plot_x(&p, r->cost), y = plot_y(&p, r->success);
            if (strcmp(r->strategy, "task-ceiling") == 0 || r->sweep)
                continue;
            if (pass == 0 && !r->predictor) {
                if (place_label(&p, x, y, is_single(r) ? r->strategy + 7 : r->strategy,
                                is_single(r) ? "#d62728" : "#555", 1))
                    goto out;
            } else if (pass == 1 && r->predictor) {
                if (!isnan(r->budget))
                    snprintf(text, sizeof text, "budget $%s", bound_text(bt, r->budget));
                else
                    snprintf(text, sizeof text, "%s α %s", r->timing == TIMING_BATCH ? "batch"
                             : "query", bound_text(bt, r->alpha));
                if (place_label(&p, x, y, text, predictor_colour(r->predictor), 0))
                    goto out;
            }
        }
    plot_legend(&p, e);
    fprintf(p.f, "</svg>\n");
    rc = CLI_OK;
out:
    free(front);
    free(p.obst);
    free(p.seg);
    /* A write that failed (a full disk, a file size limit) set the stream's
     * error and errno; the flush writes what is left, and fails alike. */
    if (fflush(p.f) != 0 || ferror(p.f))
        werr = errno ? errno : -1;
    regular = fstat(fileno(p.f), &sb) == 0 && S_ISREG(sb.st_mode);
    if (fclose(p.f) != 0 && !werr)
        werr = errno ? errno : -1;
    if (rc != CLI_OK || werr) {
        /* Half an SVG is no plot: a file is removed (a device, /dev/full
         * say, is left as it is). */
        int removed = regular && unlink(path) == 0;
        const char *why = rc != CLI_OK ? "out of memory"
                          : werr > 0   ? strerror(werr)
                                       : "write error";
        cli_error("eval", "--plot %s: %s%s%s", path, rc != CLI_OK ? "" : "cannot write the file: ",
                  why, removed ? " (the incomplete file is removed)" : "");
        rc = CLI_RUNTIME;
    }
    return rc;
}

/* ==== The command ==== */

/* Whether the --plot file can be written, found out before the work rather
 * than after it: opened for appending (which changes nothing in a file
 * that exists), and removed again if this made it. */
static int plot_check(const char *path, const char *const inputs[3])
{
    static const char *const input_name[3] = {"--config", "--store", "--data"};
    static const char *const store_side[] = {"-wal", "-shm", "-journal"};
    struct stat sb;
    int existed = stat(path, &sb) == 0;
    FILE *f;

    if (existed && S_ISDIR(sb.st_mode)) {
        cli_error("eval", "--plot %s: is a directory; give a file name such as plot.svg", path);
        return CLI_USAGE;
    }
    /* The plot is written over whatever the file held: never over one of
     * the command's own inputs (a history store, named twice by a slip),
     * nor over one of SQLite's files beside the store: an SVG written
     * over its -wal, while another process (a gateway) held the store,
     * left the store "malformed", its last records lost. */
    for (int i = 0; i < 3; i++)
        if (inputs[i] && cli_same_file(path, inputs[i])) {
            cli_error("eval", "--plot %s: is the file %s names; give another file name", path,
                      input_name[i]);
            return CLI_USAGE;
        }
    for (size_t i = 0; inputs[1] && i < sizeof store_side / sizeof *store_side; i++) {
        size_t size = strlen(inputs[1]) + strlen(store_side[i]) + 1;
        char *name = malloc(size);
        int same;
        if (!name) {
            cli_error("eval", "out of memory");
            return CLI_RUNTIME;
        }
        snprintf(name, size, "%s%s", inputs[1], store_side[i]);
        same = cli_same_file(path, name);
        free(name);
        if (same) {
            cli_error("eval",
                      "--plot %s: is the history store's %s file (--store); give "
                      "another file name",
                      path, store_side[i]);
            return CLI_USAGE;
        }
    }
    /* The plot is SVG whatever the name says: a name that says another
     * format (plot.png) would leave a file its viewer cannot open. A name
     * with no suffix (a device, a pipe) is taken as it is. */
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (dot && dot > base && dot[1] && strcasecmp(dot, ".svg") != 0) {
        cli_error("eval",
                  "--plot %s: the plot is written as SVG, not as %s; give a name ending in .svg",
                  path, dot);
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

/* The most alphas --sweep-alpha makes. */
#define MAX_SWEEP_ALPHAS 1001

/* --sweep-alpha LO:HI:STEP: the alphas LO, LO + STEP, .. up to HI (HI
 * itself when STEP divides the range), each the double nearest its
 * decimal to nine places (0.92, where LO + k STEP drifts to
 * 0.9199999999999999). */
static int parse_sweep(const char *s, double **out, size_t *n)
{
    static const char *const part[] = {"LO", "HI", "STEP"};
    double v[3], steps;
    char buf[64], what[40], *at = buf;
    size_t k;
    if (strlen(s) >= sizeof buf) {
        cli_error("eval", "--sweep-alpha: expected LO:HI:STEP, got %zu characters", strlen(s));
        return CLI_USAGE;
    }
    memcpy(buf, s, strlen(s) + 1);
    for (int i = 0; i < 3; i++) {
        char *end = i < 2 ? strchr(at, ':') : NULL;
        int rc;
        if (i < 2 && !end) {
            cli_error("eval", "--sweep-alpha: expected LO:HI:STEP, got '%s'", s);
            return CLI_USAGE;
        }
        if (end)
            *end = '\0';
        snprintf(what, sizeof what, "--sweep-alpha %s", part[i]);
        if ((rc = cli_parse_double("eval", what, at, 0, 1, &v[i])))
            return rc;
        at = end + 1;
    }
    if (v[0] > v[1]) {
        cli_error("eval", "--sweep-alpha: LO %g is above HI %g", v[0], v[1]);
        return CLI_USAGE;
    }
    if (!(v[2] > 0)) {
        cli_error("eval", "--sweep-alpha: STEP must be above 0");
        return CLI_USAGE;
    }
    /* The 1e-9 keeps HI when rounding left STEP's multiple a hair short. */
    steps = (v[1] - v[0]) / v[2] + 1e-9;
    if (steps >= MAX_SWEEP_ALPHAS) {
        cli_error("eval", "--sweep-alpha: %s makes more than %d alphas", s, MAX_SWEEP_ALPHAS);
        return CLI_USAGE;
    }
    k = (size_t)floor(steps) + 1;
    *out = calloc(k, sizeof **out);
    if (!*out)
        return CLI_RUNTIME;
    for (size_t i = 0; i < k; i++) {
        double a = round((v[0] + (double)i * v[2]) * 1e9) / 1e9;
        (*out)[i] = a > 1 ? 1 : a;
    }
    *n = k;
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

/* The most candidates the note on records lacking an outcome, and the
 * warning on candidates the history store lacks, name. */
#define MAX_MISSING_SHOWN 8

/* Warn of each candidate the history store holds no outcome of: smart
 * routing cannot predict its quality, whatever the data holds, and each
 * predictor's rows stand on its fallback for it. An empty store is left to
 * the router, which refuses it. */
static void check_store_models(const struct eval *e, const struct lr_store *store,
                               const char *path, char *const *preds, size_t n_preds)
{
    char fallback[256] = "";
    size_t off = 0, shown = 0, more = 0;

    if (lr_store_count(store) == 0)
        return;
    for (size_t p = 0; p < n_preds && off < sizeof fallback; p++)
        off += (size_t)snprintf(fallback + off, sizeof fallback - off, "%s%s", off ? "; " : "",
                                strcmp(preds[p], "aios") == 0
                                    ? "aios predicts it quality 0 and no output tokens"
                                    : "the default predictor ranks it after every candidate "
                                      "the store knows");
    for (size_t j = 0; j < e->n_cands; j++) {
        if (lr_store_model_outcomes(store, cand_name(e, j)) > 0)
            continue;
        if (shown == MAX_MISSING_SHOWN) {
            more++;
            continue;
        }
        cli_error("eval", "warning: candidate '%s' has no outcomes in the history store '%s': "
                          "smart routing cannot predict its quality (%s)",
                  cand_name(e, j), path, fallback);
        shown++;
    }
    if (more)
        cli_error("eval", "warning: and %zu more candidate%s no outcomes in the store", more,
                  more == 1 ? " has" : "s have");
}

/* Find the candidates and the scored records; fill the real outcome tables. */
static int prepare(struct eval *e)
{
    size_t n_models = lr_config_model_count(e->cfg), n_recs = lr_dataset_count(e->ds);
    size_t incomplete = 0, n_unknown = 0, *missing;
    unsigned char *seen;
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
    missing = calloc(e->n_cands, sizeof *missing);
    seen = malloc(e->n_cands);
    if (!e->recs || !e->in_tokens || !e->correct || !e->real_cost || !missing || !seen) {
        free(missing);
        free(seen);
        return CLI_RUNTIME;
    }
    for (size_t i = 0; i < n_recs; i++) {
        const struct lr_record *r = lr_dataset_record(e->ds, i);
        size_t found = 0, row = e->n;
        long in = r->input_tokens >= 0 ? r->input_tokens
                                       : lr_estimate_tokens(r->query, strlen(r->query));
        memset(seen, 0, e->n_cands);
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
            seen[j] = 1;
            found++;
        }
        if (found < e->n_cands) {
            for (size_t j = 0; j < e->n_cands; j++)
                missing[j] += !seen[j];
            incomplete++;
            continue;
        }
        e->recs[e->n] = i;
        e->in_tokens[e->n] = in;
        e->n++;
    }
    if (incomplete) {
        /* Which candidates they lack: a model with few outcomes in the
         * data can leave most records unscored. */
        size_t shown = 0, more = 0;
        fprintf(stderr, "llmroute eval: %zu records lack an outcome for some candidate and are "
                        "not scored:",
                incomplete);
        for (size_t j = 0; j < e->n_cands; j++) {
            if (!missing[j])
                continue;
            if (shown == MAX_MISSING_SHOWN) {
                more++;
                continue;
            }
            fprintf(stderr, "%s '%s' has none in %zu record%s", shown ? "," : "",
                    cand_name(e, j), missing[j], missing[j] == 1 ? "" : "s");
            shown++;
        }
        if (more)
            fprintf(stderr, ", and %zu more candidate%s", more, more == 1 ? "" : "s");
        fputc('\n', stderr);
    }
    free(missing);
    free(seen);
    if (e->n == 0) {
        cli_error("eval", "no record has outcomes for every candidate model");
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cmd_eval(int argc, char **argv)
{
    const char *config = NULL, *store_path = NULL, *data = NULL, *split = NULL, *alpha_s = NULL,
               *budget_s = NULL, *pred_s = NULL, *format = NULL, *plot = NULL, *seed_s = NULL,
               *sweep_s = NULL;
    int sweep = 0, help_flag = 0, n_pos = 0, rc, lrc;
    const struct cli_opt opts[] = {
        {"config", &config, NULL},  {"store", &store_path, NULL}, {"data", &data, NULL},
        {"split", &split, NULL},    {"alpha", &alpha_s, NULL},    {"budget", &budget_s, NULL},
        {"predictors", &pred_s, NULL}, {"format", &format, NULL}, {"plot", &plot, NULL},
        {"seed", &seed_s, NULL},    {"sweep", NULL, &sweep},      {"help", NULL, &help_flag},
        {"sweep-alpha", &sweep_s, NULL}, {NULL, NULL, NULL},
    };
    struct lr_config *cfg = NULL;
    struct lr_store *store = NULL;
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    struct eval e;
    char **pos = NULL, **preds = NULL;
    double *alphas = NULL, *budgets = NULL, *sweep_alphas = NULL;
    const double *batch_alphas = NULL; /* alphas, or router.alpha without --alpha */
    size_t n_alphas = 0, n_budgets = 0, n_preds = 0, n_sweep = 0;
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
        ((sweep_s || sweep) &&
         (rc = parse_sweep(sweep_s ? sweep_s : "0.5:0.98:0.02", &sweep_alphas, &n_sweep))) ||
        (pred_s &&
         (rc = cli_split_list("eval", "--predictors", pred_s, "name", &preds, &n_preds))))
        goto out;
    if (sweep_s)
        sweep = 1;
    if (sweep) {
        e.sweep_lo = sweep_alphas[0];
        e.sweep_hi = sweep_alphas[n_sweep - 1];
    }
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
    if (plot) {
        const char *const inputs[3] = {config, store_path,
                                       data && strcmp(data, "-") != 0 ? data : NULL};
        if ((rc = plot_check(plot, inputs)))
            goto out;
    }
    /* Without --alpha, each kind of smart row takes the config's own
     * target: per query the performance requirement, a batch router.alpha
     * (the mean-quality target route --batch meets, the requirement when
     * the config gives none). */
    batch_alphas = alphas;
    if (!alphas) {
        alphas = malloc(2 * sizeof *alphas);
        if (!alphas) {
            rc = CLI_RUNTIME;
            goto out;
        }
        alphas[0] = lr_config_router_defaults(cfg)->performance_requirement;
        alphas[1] = lr_config_router_defaults(cfg)->alpha;
        batch_alphas = alphas + 1;
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
            /* Records with no "split" field are in no split: say so, as
             * --split on a file that names none drops every record. */
            size_t unsplit = rep.skipped_unsplit;
            size_t other = rep.skipped_split - unsplit;
            char why[96] = "";
            if (unsplit)
                snprintf(why, sizeof why, ", %zu with no \"split\" field", unsplit);
            if (split && !rep.bad && unsplit && unsplit == rep.read)
                cli_error("eval",
                          "%s: no record has a \"split\" field, so --split %s dropped all %zu",
                          data, split, rep.read);
            else if (split && rep.bad)
                cli_error("eval",
                          "%s: no good records in split %s (%zu bad, %zu in other splits%s)", data,
                          split, rep.bad, other, why);
            else if (rep.read == rep.bad)
                cli_error("eval", "%s: the file holds no %srecords", data, rep.bad ? "good " : "");
            else
                cli_error("eval", "%s: no records in split %s (%zu in other splits%s)", data,
                          split ? split : "", other, why);
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
        check_store_models(&e, store, store_path, preds, n_preds);
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
                struct row *r = new_row(&e, "smart-batch", preds[p], batch_alphas[a], NAN);
                if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_QUALITY)))
                    goto smart_failed;
            }
            for (size_t b = 0; b < n_budgets; b++) {
                struct row *r = new_row(&e, "smart-budget", preds[p], NAN, budgets[b]);
                if (!r || (rc = run_batch(&e, router, r, slot, reqs, decs, LR_BATCH_BUDGET)))
                    goto smart_failed;
            }
            if (sweep && p == 0) {
                for (size_t k = 0; k < n_sweep; k++) {
                    struct row *r = new_row(&e, "smart-batch", preds[p], sweep_alphas[k], NAN);
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
    free(sweep_alphas);
    for (size_t k = 0; k < e.n_rows; k++) {
        free(e.rows[k].share);
        free(e.rows[k].strategy);
    }
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
