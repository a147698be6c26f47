/* optimize.c -- the batch assignment optimizer (see optimize.h).
 *
 * Both forms are solved as one generic problem:
 *
 *     minimise  A(x) = sum_i a[i][x_i]
 *     subject   B(x) = sum_i b[i][x_i] >= T,   load_j(x) <= L_j,
 *
 * with a = cost, b = quality, T = alpha*n for the quality form, and
 * a = -quality, b = -cost, T = -budget for the budget form (maximising
 * quality under a cost ceiling is minimising -quality under a floor on -cost).
 *
 * The method, after the ECCOS paper's Lagrangian dual:
 *
 *  1. For weights (wa, wb) >= 0 the relaxed problem "minimise
 *     wa*A(x) - wb*B(x) subject to capacities" is a transportation problem,
 *     solved exactly by successive shortest paths (struct flow): queries are
 *     inserted one at a time, and a query whose best model is full displaces
 *     a chain of queries along the cheapest path in the M-node graph of
 *     "move one query from model a to model b", found by Dijkstra's
 *     algorithm on costs reduced by the model potentials. The cheapest
 *     move out of each full model to each other is kept in an M x M
 *     table, from per-pair heaps, or for a model of small capacity from
 *     the list of its queries. The model potentials of that flow are the
 *     capacity multipliers mu_j, found exactly rather than by subgradient
 *     steps. Each solve gives a Lagrangian bound on A.
 *
 *  2. The quality multiplier lambda = wb/wa is found by a parametric secant
 *     search on the lower convex hull of the points (A(x), B(x)): keep the
 *     best hull point on each side of the target and weigh the next solve by
 *     the normal of the segment between them; when no point lies below the
 *     segment it is a hull edge and the bound equals the LP relaxation's
 *     optimum. B is monotone in lambda, so this is a bracketing search that
 *     ends in a few solves.
 *
 *  3. Repair and improvement: the hull point on the feasible side is
 *     integral and meets every constraint; the one on the other side is
 *     repaired by the cheapest upgrades per unit of B. Both are improved by
 *     single moves and by pairs of moves (a saving paired with an upgrade or
 *     with a move that frees the capacity it needs), and the better is kept.
 *
 *  4. Small batches get a depth-first branch and bound under a node budget,
 *     pruned with the Lagrangian bounds of the multipliers found above
 *     (with capacities, the flow's potentials as well). The same search
 *     without a budget is the exact solver, for tests on small instances.
 *
 * Threads: no shared state; every call works on its own scratch memory.
 */
#include "optimize.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>

/* ==== Result and messages ==== */

static void result_message(struct lr__opt_result *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void result_message(struct lr__opt_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

static void result_reset(struct lr__opt_result *r)
{
    r->feasible = 0;
    r->mean_quality = NAN;
    r->total_cost = NAN;
    r->lower_bound = NAN;
    r->iterations = 0;
    r->message[0] = '\0';
}

/* Check the problem; on error write a message naming the bad field. */
static int problem_check(const struct lr__opt_problem *p, struct lr__opt_result *r,
                         int quality_form)
{
    size_t i, j;

    if (p->n == 0) {
        result_message(r, "n is zero: there are no queries to assign");
        return LR_EINVAL;
    }
    if (p->m == 0) {
        result_message(r, "m is zero: there are no models to assign to");
        return LR_EINVAL;
    }
    if (p->n > (size_t)INT_MAX || p->m > (size_t)INT_MAX || p->n > SIZE_MAX / p->m / 8) {
        result_message(r, "%zu queries x %zu models is too large", p->n, p->m);
        return LR_ETOOBIG;
    }
    if (p->quality == NULL || p->cost == NULL) {
        result_message(r, "%s is NULL", p->quality == NULL ? "quality" : "cost");
        return LR_EINVAL;
    }
    for (i = 0; i < p->n; i++) {
        size_t n_cand = 0;
        for (j = 0; j < p->m; j++) {
            double q = p->quality[i * p->m + j], c = p->cost[i * p->m + j];
            if (isnan(q))
                continue;
            n_cand++;
            if (p->fixed != NULL && p->fixed[i])
                continue; /* its values are not read */
            if (!(q >= 0.0 && q <= 1.0)) {
                result_message(r, "quality[%zu][%zu] = %g is outside [0,1]", i, j, q);
                return LR_EINVAL;
            }
            if (!(c >= 0.0) || !isfinite(c)) {
                result_message(r, "cost[%zu][%zu] = %g: expected a finite number >= 0", i, j,
                               c);
                return LR_EINVAL;
            }
        }
        if (n_cand == 0) {
            result_message(r, "query %zu has no candidate model (its quality is NaN for all "
                              "%zu models)", i, p->m);
            return LR_EINVAL;
        }
    }
    if (quality_form && !isfinite(p->alpha)) {
        result_message(r, "alpha = %g: expected a finite number", p->alpha);
        return LR_EINVAL;
    }
    if (!quality_form && !isfinite(p->budget)) {
        result_message(r, "budget = %g: expected a finite number", p->budget);
        return LR_EINVAL;
    }
    return 0;
}

/* The queries that count in the sums: those not fixed. */
static size_t counted(const struct lr__opt_problem *p)
{
    size_t i, k = p->n;
    if (p->fixed != NULL)
        for (i = 0; i < p->n; i++)
            k -= p->fixed[i] != 0;
    return k;
}

/* The mean quality the quality form must reach: alpha, less the slack the
 * caller allows (never below 0). Messages still name alpha itself. */
static double alpha_floor(const struct lr__opt_problem *p)
{
    double slack = p->quality_slack > 0.0 ? p->quality_slack : 0.0;
    return p->alpha - slack > 0.0 ? p->alpha - slack : 0.0;
}

/* Whether sums of quality qsum and cost csum over k counted queries meet
 * the constraint: the one rule, which gen_build's target and tolerance
 * restate for the solver (the same expressions, so both judge a sum
 * alike). */
static int constraint_met(const struct lr__opt_problem *p, int quality_form, size_t k,
                          double qsum, double csum)
{
    if (quality_form) {
        double target = alpha_floor(p) * (double)k;
        return qsum >= target - LR__OPT_TOL * target;
    }
    return -csum >= -p->budget - LR__OPT_TOL * p->budget;
}

/* Fill mean_quality, total_cost and feasible from the original data; the
 * sums are over the queries not fixed. */
static int result_measure(const struct lr__opt_problem *p, struct lr__opt_result *r,
                          int quality_form)
{
    size_t i, j, n = p->n, m = p->m, k = counted(p);
    double qsum = 0.0, csum = 0.0;
    int ok = 1;
    int *load = calloc(m, sizeof *load);

    if (load == NULL)
        return LR_ENOMEM;
    for (i = 0; i < n; i++) {
        int a = r->assign[i];
        if (a < 0 || (size_t)a >= m || isnan(p->quality[i * m + (size_t)a])) {
            ok = 0;
            continue;
        }
        load[a]++;
        if (p->fixed != NULL && p->fixed[i])
            continue;
        qsum += p->quality[i * m + (size_t)a];
        csum += p->cost[i * m + (size_t)a];
    }
    if (p->capacity != NULL) {
        for (j = 0; j < m; j++)
            if (p->capacity[j] > 0 && load[j] > p->capacity[j])
                ok = 0;
    }
    free(load);
    r->mean_quality = k ? qsum / (double)k : NAN;
    r->total_cost = k ? csum : NAN;
    r->feasible = ok && constraint_met(p, quality_form, k, qsum, csum);
    return 0;
}

/* ==== The generic problem ==== */

struct gen {
    size_t n, m;
    double *a, *b; /* n*m; a is NaN where model j is not a candidate */
    int *cap;      /* m effective capacities; n stands for unlimited */
    int capped;    /* some capacity is below n */
    long long cap_sum;
    double target; /* T */
    double tol_b;  /* B >= T - tol_b counts as met (constraint_met's rule) */
    double sa, sb; /* largest |a|, |b| over candidates (at least 1e-300) */
    int quality_form; /* a is cost (else b is minus cost) */
    lr_stop_fn stop;  /* the caller's (lr__opt_problem.stop), or NULL */
    void *stop_arg;
};

/* The caller asked to stop (asked before each subproblem and each move). */
static int gen_stopped(const struct gen *g)
{
    return g->stop != NULL && g->stop(g->stop_arg);
}

static void gen_free(struct gen *g)
{
    free(g->a);
    free(g->b);
    free(g->cap);
}

static int gen_build(const struct lr__opt_problem *p, int quality_form, struct gen *g)
{
    size_t i, j, n = p->n, m = p->m;

    memset(g, 0, sizeof *g);
    g->n = n;
    g->m = m;
    g->a = malloc(n * m * sizeof *g->a);
    g->b = malloc(n * m * sizeof *g->b);
    g->cap = malloc(m * sizeof *g->cap);
    if (g->a == NULL || g->b == NULL || g->cap == NULL) {
        gen_free(g);
        return LR_ENOMEM;
    }
    g->sa = g->sb = 1e-300;
    g->quality_form = quality_form;
    g->stop = p->stop;
    g->stop_arg = p->stop_arg;
    for (i = 0; i < n * m; i++) {
        double q = p->quality[i], c = p->cost[i];
        if (isnan(q)) {
            g->a[i] = NAN;
            g->b[i] = NAN;
            continue;
        }
        if (p->fixed != NULL && p->fixed[i / m]) {
            /* In no sum: any candidate is as good as another. */
            g->a[i] = 0.0;
            g->b[i] = 0.0;
            continue;
        }
        g->a[i] = quality_form ? c : -q;
        g->b[i] = quality_form ? q : -c;
        g->sa = fmax(g->sa, fabs(g->a[i]));
        g->sb = fmax(g->sb, fabs(g->b[i]));
    }
    g->cap_sum = 0;
    for (j = 0; j < m; j++) {
        int c = p->capacity != NULL ? p->capacity[j] : 0;
        g->cap[j] = (c <= 0 || (size_t)c >= n) ? (int)n : c;
        if ((size_t)g->cap[j] < n)
            g->capped = 1;
        g->cap_sum += g->cap[j];
    }
    /* constraint_met()'s rule as B >= T - tol_b, in the same expressions. */
    if (quality_form) {
        g->target = alpha_floor(p) * (double)counted(p);
        g->tol_b = LR__OPT_TOL * g->target;
    } else {
        g->target = -p->budget;
        g->tol_b = LR__OPT_TOL * p->budget;
    }
    return 0;
}

/* Differences in A below this, next to a sum of A, are noise: the rounding
 * of a sum of n terms, with a margin. It is relative to the sum itself and
 * not to the largest |a| over the candidates, which with costs from 1e-9
 * to 1e6 put the noise above the whole of a cheap optimum, and the repair
 * and the search stopped well short of it. Every a of a form has the same
 * sign, so |A| is the sum of the magnitudes added. */
static double gen_noise_a(const struct gen *g, double A)
{
    return (1e-12 + 4.0 * (double)g->n * DBL_EPSILON) * fabs(A);
}

#define CAND(g, i, j) (!isnan((g)->a[(i) * (g)->m + (j)]))

/* Query i's estimated cost on model j, in either form. */
static double gen_cost(const struct gen *g, size_t i, size_t j)
{
    return g->quality_form ? g->a[i * g->m + j] : -g->b[i * g->m + j];
}

/* Sums over the queries of the least (largest when most) a and b among
 * their candidates: bounds on A and B that hold for every assignment.
 * problem_check saw a candidate in every row, so both end finite. */
static void gen_extremes(const struct gen *g, int most, double *A, double *B)
{
    size_t i, j, m = g->m;
    double sa = 0.0, sb = 0.0;
    for (i = 0; i < g->n; i++) {
        double a = most ? -INFINITY : INFINITY, b = a;
        for (j = 0; j < m; j++) {
            double aj = g->a[i * m + j], bj = g->b[i * m + j];
            if (isnan(aj))
                continue;
            if (most ? aj > a : aj < a)
                a = aj;
            if (most ? bj > b : bj < b)
                b = bj;
        }
        sa += a;
        sb += b;
    }
    *A = sa;
    *B = sb;
}

static void gen_sums(const struct gen *g, const int *asg, double *A, double *B)
{
    size_t i;
    double sa = 0.0, sb = 0.0;
    for (i = 0; i < g->n; i++) {
        sa += g->a[i * g->m + (size_t)asg[i]];
        sb += g->b[i * g->m + (size_t)asg[i]];
    }
    *A = sa;
    *B = sb;
}

/* ==== Transportation subproblem by successive shortest paths ==== */

struct hent {
    double key;
    int query;
    unsigned ver;
};

struct heap {
    struct hent *v;
    size_t len, cap;
};

/* A capped model of capacity up to this many times m keeps the list of its
 * queries, and the cheapest moves out of it are found by scanning them
 * rather than kept in heaps: with many models of small capacity the heaps
 * took most of the time, each move pushing m entries, while a scan is
 * needed only for the moves whose cheapest query has left. With 11 models
 * of capacity 1,000 and more the heaps were faster (measured with
 * bench/optimize_bench: 10,000 queries, capacities 10% and 30%). */
#ifndef LR__FLOW_LIST_PER_MODEL
#define LR__FLOW_LIST_PER_MODEL 16
#endif

struct flow {
    const struct gen *g;
    double *w;      /* n*m weights, INFINITY where not a candidate */
    int *asg;       /* n; -1 while unplaced */
    int *load;      /* m */
    unsigned *ver;  /* n; bumped on every move so old heap entries go stale */
    struct heap *h; /* m*m; h[a*m+b] holds queries at (full-capable) model a */
    double *top;    /* m*m, when capped: top[a*m+b] is the least w_qb - w_qa over the
                       queries q at full model a (INFINITY if none), kept from a's heaps
                       or its list */
    int *top_query; /* m*m: that q */
    int *list;      /* the queries at each listed model (flow_listed), from
                       list_start[j], list_len[j] of them */
    size_t *list_start;
    int *list_len;  /* m */
    int *slot;      /* n: a listed query's index in its model's list */
    double *pot;    /* m: minus the capacity multiplier; 0 while a model has room */
    double *dist;   /* m: reduced distances of the current search */
    int *pred;      /* m */
    size_t *open;   /* m: the models a search has not settled, then those it has */
    size_t unplaced;
};

/* Whether capped model j keeps a list of its queries rather than heaps. */
static int flow_listed(const struct gen *g, size_t j)
{
    return (size_t)g->cap[j] < g->n && (size_t)g->cap[j] <= LR__FLOW_LIST_PER_MODEL * g->m;
}

static void flow_free(struct flow *f)
{
    size_t k;
    if (f->h != NULL)
        for (k = 0; k < f->g->m * f->g->m; k++)
            free(f->h[k].v);
    free(f->h);
    free(f->top);
    free(f->top_query);
    free(f->list);
    free(f->list_start);
    free(f->list_len);
    free(f->slot);
    free(f->w);
    free(f->asg);
    free(f->load);
    free(f->ver);
    free(f->pot);
    free(f->dist);
    free(f->pred);
    free(f->open);
}

static int flow_init(struct flow *f, const struct gen *g)
{
    size_t n = g->n, m = g->m, j, listed = 0;
    memset(f, 0, sizeof *f);
    f->g = g;
    f->list_start = malloc(m * sizeof *f->list_start);
    f->list_len = malloc(m * sizeof *f->list_len);
    if (f->list_start != NULL)
        for (j = 0; j < m; j++) {
            f->list_start[j] = listed;
            if (flow_listed(g, j))
                listed += (size_t)g->cap[j];
        }
    if (listed > 0) {
        f->list = malloc(listed * sizeof *f->list);
        f->slot = malloc(n * sizeof *f->slot);
    }
    f->w = malloc(n * m * sizeof *f->w);
    f->asg = malloc(n * sizeof *f->asg);
    f->load = malloc(m * sizeof *f->load);
    f->ver = calloc(n, sizeof *f->ver);
    f->pot = malloc(m * sizeof *f->pot);
    f->dist = malloc(m * sizeof *f->dist);
    f->pred = malloc(m * sizeof *f->pred);
    f->open = malloc(m * sizeof *f->open);
    f->h = g->capped ? calloc(m * m, sizeof *f->h) : NULL;
    f->top = g->capped ? malloc(m * m * sizeof *f->top) : NULL;
    f->top_query = g->capped ? malloc(m * m * sizeof *f->top_query) : NULL;
    if (f->w == NULL || f->asg == NULL || f->load == NULL || f->ver == NULL ||
        f->list_start == NULL || f->list_len == NULL ||
        (listed > 0 && (f->list == NULL || f->slot == NULL)) ||
        f->pot == NULL || f->dist == NULL || f->pred == NULL || f->open == NULL ||
        (g->capped && (f->h == NULL || f->top == NULL || f->top_query == NULL))) {
        flow_free(f);
        return LR_ENOMEM;
    }
    return 0;
}

static int heap_push(struct heap *h, double key, int query, unsigned ver)
{
    size_t k;
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        struct hent *nv = realloc(h->v, ncap * sizeof *nv);
        if (nv == NULL)
            return LR_ENOMEM;
        h->v = nv;
        h->cap = ncap;
    }
    k = h->len++;
    while (k > 0) {
        size_t parent = (k - 1) / 2;
        if (h->v[parent].key <= key)
            break;
        h->v[k] = h->v[parent];
        k = parent;
    }
    h->v[k].key = key;
    h->v[k].query = query;
    h->v[k].ver = ver;
    return 0;
}

static void heap_pop(struct heap *h)
{
    struct hent last;
    size_t k = 0;
    if (h->len == 0)
        return;
    last = h->v[--h->len];
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->v[c + 1].key < h->v[c].key)
            c++;
        if (last.key <= h->v[c].key)
            break;
        h->v[k] = h->v[c];
        k = c;
    }
    if (h->len > 0)
        h->v[k] = last;
}

/* The cheapest live move out of model a into model b, or INFINITY. */
static double flow_top(struct flow *f, size_t a, size_t b)
{
    struct heap *h = &f->h[a * f->g->m + b];
    while (h->len > 0 && h->v[0].ver != f->ver[h->v[0].query])
        heap_pop(h);
    return h->len > 0 ? h->v[0].key : INFINITY;
}

/* Put query i on model j (moving it from where it was, if anywhere) and,
 * when j is full and keeps heaps, record i's possible moves out of j.
 * Moves out of a model are only ever needed once it is full, and a full
 * model stays full, so its heaps are built when it fills (flow_fill). The
 * caller refreshes top for the models a move leaves and fills. */
static int flow_place(struct flow *f, size_t i, size_t j)
{
    size_t b, m = f->g->m;
    const double *wi = f->w + i * m;
    int from = f->asg[i];
    if (from >= 0 && flow_listed(f->g, (size_t)from)) {
        int *list = f->list + f->list_start[from], last = --f->list_len[from];
        list[f->slot[i]] = list[last];
        f->slot[list[last]] = f->slot[i];
    }
    f->asg[i] = (int)j;
    f->ver[i]++;
    if (flow_listed(f->g, j)) {
        f->slot[i] = f->list_len[j]++;
        f->list[f->list_start[j] + (size_t)f->slot[i]] = (int)i;
        return 0;
    }
    if (f->load[j] < f->g->cap[j])
        return 0;
    for (b = 0; b < m; b++) {
        if (b == j || wi[b] == INFINITY)
            continue;
        if (heap_push(&f->h[j * m + b], wi[b] - wi[j], (int)i, f->ver[i]) != 0)
            return LR_ENOMEM;
    }
    return 0;
}

static void flow_scan(struct flow *f, size_t a);

/* Model j has just filled: build the heaps of moves out of it from the
 * queries it holds (entries appended, then each heap ordered bottom-up),
 * and its row of top; a listed model has no heaps, only the row. */
static int flow_fill(struct flow *f, size_t j)
{
    size_t n = f->g->n, m = f->g->m, k, b;
    if (flow_listed(f->g, j)) {
        flow_scan(f, j);
        return 0;
    }
    for (k = 0; k < n; k++) {
        const double *wk = f->w + k * m;
        if (f->asg[k] != (int)j)
            continue;
        for (b = 0; b < m; b++) {
            struct heap *h = &f->h[j * m + b];
            if (b == j || wk[b] == INFINITY)
                continue;
            if (h->len == h->cap) {
                size_t ncap = h->cap ? h->cap * 2 : 64;
                struct hent *nv = realloc(h->v, ncap * sizeof *nv);
                if (nv == NULL)
                    return LR_ENOMEM;
                h->v = nv;
                h->cap = ncap;
            }
            h->v[h->len].key = wk[b] - wk[j];
            h->v[h->len].query = (int)k;
            h->v[h->len].ver = f->ver[k];
            h->len++;
        }
    }
    for (b = 0; b < m; b++) {
        struct heap *h = &f->h[j * m + b];
        size_t top;
        for (top = h->len / 2; top-- > 0;) {
            struct hent v = h->v[top];
            size_t pos = top;
            for (;;) {
                size_t c = 2 * pos + 1;
                if (c >= h->len)
                    break;
                if (c + 1 < h->len && h->v[c + 1].key < h->v[c].key)
                    c++;
                if (v.key <= h->v[c].key)
                    break;
                h->v[pos] = h->v[c];
                pos = c;
            }
            h->v[pos] = v;
        }
        f->top[j * m + b] = h->len > 0 ? h->v[0].key : INFINITY;
        f->top_query[j * m + b] = h->len > 0 ? h->v[0].query : -1;
    }
    return 0;
}

/* Set listed model a's row of top and top_query from its queries. */
static void flow_scan(struct flow *f, size_t a)
{
    size_t b, m = f->g->m;
    double *top = f->top + a * m;
    int *top_query = f->top_query + a * m;
    const int *list = f->list + f->list_start[a];
    int k;
    for (b = 0; b < m; b++) {
        top[b] = INFINITY;
        top_query[b] = -1;
    }
    for (k = 0; k < f->list_len[a]; k++) {
        const double *wq = f->w + (size_t)list[k] * m;
        double base = wq[a];
        for (b = 0; b < m; b++)
            if (wq[b] - base < top[b]) {
                top[b] = wq[b] - base;
                top_query[b] = list[k];
            }
    }
    top[a] = INFINITY; /* no move from a model to itself */
    top_query[a] = -1;
}

/* Full model a has given up query left and taken query in (whose moves
 * flow_place has pushed if a keeps heaps): update a's row of top. Only the
 * moves whose cheapest was left's are looked for again, in a's heaps or
 * by scanning its list; the others stay unless in's is cheaper. */
static void flow_replace(struct flow *f, size_t a, int left, int in)
{
    size_t b, m = f->g->m;
    double *top = f->top + a * m;
    int *top_query = f->top_query + a * m;
    const double *wi = f->w + (size_t)in * m;
    int k, listed = flow_listed(f->g, a);

    for (b = 0; b < m; b++) {
        if (b == a)
            continue;
        if (top_query[b] != left) {
            if (wi[b] - wi[a] < top[b]) {
                top[b] = wi[b] - wi[a];
                top_query[b] = in;
            }
            continue;
        }
        if (!listed) {
            top[b] = flow_top(f, a, b);
            top_query[b] = top[b] < INFINITY ? f->h[a * m + b].v[0].query : -1;
            continue;
        }
        top[b] = INFINITY;
        top_query[b] = -1;
        for (k = 0; k < f->list_len[a]; k++) {
            int q = f->list[f->list_start[a] + (size_t)k];
            const double *wq = f->w + (size_t)q * m;
            if (wq[b] - wq[a] < top[b]) {
                top[b] = wq[b] - wq[a];
                top_query[b] = q;
            }
        }
    }
}

/* Solve min sum w[i][x_i] subject to capacities exactly. Queries that no
 * augmenting path can place are left at -1 and counted in f->unplaced. */
static int flow_solve(struct flow *f)
{
    const struct gen *g = f->g;
    size_t n = g->n, m = g->m, i, j, k;

    memset(f->load, 0, m * sizeof *f->load);
    memset(f->list_len, 0, m * sizeof *f->list_len);
    for (j = 0; j < m; j++)
        f->pot[j] = 0.0;
    for (i = 0; i < n; i++)
        f->asg[i] = -1; /* flow_fill scans asg: queries not yet placed must not match */
    f->unplaced = 0;
    if (f->h != NULL)
        for (k = 0; k < m * m; k++) {
            f->h[k].len = 0;
            f->top[k] = INFINITY;
        }

    for (i = 0; i < n; i++) {
        const double *wi = f->w + i * m;
        size_t t = m, cur, n_open, next, o;
        int left;
        double best = INFINITY;
        int rc;

        if (!g->capped) {
            for (j = 0; j < m; j++)
                if (wi[j] < best) {
                    best = wi[j];
                    t = j;
                }
            if (t == m) {
                /* flow_eval keeps every candidate's weight finite, so this
                 * is not reached; were it, the query is left unplaced
                 * rather than counted on a model m that does not exist. */
                f->asg[i] = -1;
                f->unplaced++;
                continue;
            }
            f->asg[i] = (int)t;
            f->load[t]++;
            continue;
        }
        /* Dijkstra over the model graph with potentials. pot[j] is 0 while
         * model j has room and at most 0 once it is full (minus its
         * capacity multiplier): the current partial flow is optimal, so
         * every placed query sits at a model of least w - pot, every move
         * of a query from model a to model b has the reduced cost
         * w_qb - w_qa + pot[a] - pot[b] >= 0, and dist[j] + pot[j] is the
         * cheapest way to make room for query i ending with model j. The
         * first model with room taken from the queue ends the cheapest path
         * (its pot is 0, and every other path goes on from a model reached
         * no sooner). Each model is settled once, relaxing its m moves: at
         * most m^2 steps per query, where Bellman-Ford took up to m^3. */
        next = 0;
        for (j = 0; j < m; j++) {
            f->dist[j] = wi[j] == INFINITY ? INFINITY : wi[j] - f->pot[j];
            if (f->dist[j] < f->dist[next])
                next = j;
        }
        if (f->dist[next] < INFINITY && f->load[next] < g->cap[next]) {
            /* The nearest model has room: the path is the query alone,
             * and no potential changes. */
            if ((rc = flow_place(f, i, next)) != 0)
                return rc;
            if (++f->load[next] == g->cap[next] && (size_t)g->cap[next] < n &&
                (rc = flow_fill(f, next)) != 0)
                return rc;
            continue;
        }
        for (j = 0; j < m; j++) {
            f->pred[j] = -1;
            f->open[j] = j;
        }
        /* open[0 .. n_open) holds the models not settled, next the place
         * in it of the nearest, and open[n_open .. m) those settled;
         * relaxing a model's moves also finds the next nearest. */
        n_open = m;
        while (n_open > 0) {
            size_t a = f->open[next], b;
            double da = f->dist[a], dn = INFINITY;
            const double *top_a;
            if (da == INFINITY)
                break; /* no model with room is reachable */
            f->open[next] = f->open[--n_open];
            f->open[n_open] = a;
            if (f->load[a] < g->cap[a]) {
                t = a;
                break;
            }
            top_a = f->top + a * m;
            da += f->pot[a];
            next = 0;
            for (o = 0; o < n_open; o++) {
                double nd;
                b = f->open[o];
                nd = da + top_a[b] - f->pot[b];
                /* No margin: one of 1e-13 of the largest weight, which
                 * Bellman-Ford needed against cycles made by rounding,
                 * was 1e-4 with costs up to 1e9, and paths that saved
                 * less were not taken, though a batch of cheap models
                 * costs less in all. Dijkstra settles each model once, so
                 * pred stays a tree whatever the rounding. */
                if (nd < f->dist[b]) {
                    f->dist[b] = nd;
                    f->pred[b] = (int)a;
                }
                if (f->dist[b] < dn) {
                    dn = f->dist[b];
                    next = o;
                }
            }
        }
        if (t == m) {
            f->asg[i] = -1;
            f->unplaced++;
            continue;
        }
        /* Keep every reduced cost >= 0 after the augmentation: each model
         * settled before t (all of them full) comes closer by what it was
         * short of t; t and the models not settled keep theirs. */
        for (o = n_open; o < m; o++) {
            j = f->open[o];
            if (j != t && f->dist[j] < f->dist[t])
                f->pot[j] += f->dist[j] - f->dist[t];
        }
        /* Along the path each full model gives up one query and takes
         * the one behind it (query i at the path's first model). */
        for (cur = t, left = -1; f->pred[cur] >= 0;) {
            size_t a = (size_t)f->pred[cur];
            int moved = f->top_query[a * m + cur];
            if ((rc = flow_place(f, (size_t)moved, cur)) != 0)
                return rc;
            if (left >= 0)
                flow_replace(f, cur, left, moved);
            left = moved;
            cur = a;
        }
        if ((rc = flow_place(f, i, cur)) != 0)
            return rc;
        if (left >= 0)
            flow_replace(f, cur, left, (int)i);
        if (++f->load[t] == g->cap[t] && (size_t)g->cap[t] < n &&
            (rc = flow_fill(f, t)) != 0)
            return rc;
    }
    return 0;
}

/* INFINITY marks a model that is not a candidate. A candidate's weight
 * that overflowed, or came out NaN (inf * 0), would lose to it or compare
 * false with everything, and flow_solve would find no model for the query:
 * hold every candidate's weight finite. */
static void flow_hold_finite(struct flow *f)
{
    const struct gen *g = f->g;
    size_t k;
    for (k = 0; k < g->n * g->m; k++) {
        if (isnan(g->a[k]))
            continue;
        if (!(f->w[k] <= DBL_MAX))
            f->w[k] = DBL_MAX;
        else if (f->w[k] < -DBL_MAX)
            f->w[k] = -DBL_MAX;
    }
}

/* Solve the relaxation for weights (wa, wb): minimise wa*A - wb*B. */
static int flow_eval(struct flow *f, double wa, double wb, double *A, double *B)
{
    const struct gen *g = f->g;
    size_t k, i;
    double sa = 0.0, sb = 0.0;
    int rc;

    if (gen_stopped(g))
        return LR_ECANCELED;
    for (k = 0; k < g->n * g->m; k++)
        f->w[k] = isnan(g->a[k]) ? INFINITY : wa * g->a[k] - wb * g->b[k];
    /* |a| <= sa and |b| <= sb, so below this every weight is finite. */
    if (!(fabs(wa) * g->sa + fabs(wb) * g->sb < DBL_MAX / 2))
        flow_hold_finite(f);
    if ((rc = flow_solve(f)) != 0)
        return rc;
    for (i = 0; i < g->n; i++) {
        if (f->asg[i] < 0)
            continue;
        sa += g->a[i * g->m + (size_t)f->asg[i]];
        sb += g->b[i * g->m + (size_t)f->asg[i]];
    }
    *A = sa;
    *B = sb;
    return 0;
}

/* ==== Repair and local improvement ==== */

struct move {
    int query, to;
    double dA, dB, key;
};

/* Keep the k moves of smallest key in list (sorted ascending). */
static void top_keep(struct move *list, size_t *len, size_t k, const struct move *mv)
{
    size_t pos;
    if (*len == k && mv->key >= list[k - 1].key)
        return;
    pos = *len < k ? (*len)++ : k - 1;
    while (pos > 0 && list[pos - 1].key > mv->key) {
        list[pos] = list[pos - 1];
        pos--;
    }
    list[pos] = *mv;
}

#define LIST_K 16

struct search {
    const struct gen *g;
    int *asg, *load;
    double A, B;
    double lambda; /* the Lagrangian price of one unit of B, in units of A */
    struct move lists[5][LIST_K];
    size_t lens[5];
    int moves;
    int stopped; /* the caller asked to stop (gen_stopped): the moves end there */
};

static void search_apply(struct search *s, const struct move *mv)
{
    size_t i = (size_t)mv->query;
    s->load[s->asg[i]]--;
    s->load[mv->to]++;
    s->asg[i] = mv->to;
    s->A += mv->dA;
    s->B += mv->dB;
    s->moves++;
}

/* Raise B to the target by the cheapest upgrades per unit of B into models
 * with room. Returns 1 when the target is met. */
static int search_restore(struct search *s)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m, i, j;

    while (s->B < g->target - g->tol_b) {
        struct move best = {-1, -1, 0.0, 0.0, INFINITY};
        int best_saves = 0;
        if (gen_stopped(g)) {
            s->stopped = 1;
            return 0;
        }
        for (i = 0; i < n; i++) {
            size_t from = (size_t)s->asg[i];
            for (j = 0; j < m; j++) {
                double dA, dB, key;
                int saves;
                if (j == from || !CAND(g, i, j) || s->load[j] >= g->cap[j])
                    continue;
                dB = g->b[i * m + j] - g->b[i * m + from];
                if (dB <= 0.0)
                    continue;
                dA = g->a[i * m + j] - g->a[i * m + from];
                /* Upgrades that also save are taken first, biggest saving
                 * first; otherwise cheapest per unit, with overshoot
                 * beyond the missing amount not counted as gain. (The
                 * first rule was a key of -1e300 + dA / sa, which rounds
                 * to -1e300 whatever the saving: the first found won.) */
                saves = dA <= 0.0;
                key = saves ? dA : dA / fmin(dB, g->target - s->B);
                if (saves > best_saves || (saves == best_saves && key < best.key)) {
                    best_saves = saves;
                    best.query = (int)i;
                    best.to = (int)j;
                    best.dA = dA;
                    best.dB = dB;
                    best.key = key;
                }
            }
        }
        if (best.query < 0)
            return 0;
        search_apply(s, &best);
    }
    return 1;
}

/* Whether applying u after d keeps every capacity. */
static int pair_fits(const struct search *s, const struct move *d, const struct move *u)
{
    const struct gen *g = s->g;
    int fd = s->asg[d->query], fu = s->asg[u->query];
    int ld = s->load[d->to] + 1 - (fd == d->to) - (fu == d->to) + (u->to == d->to);
    int lu = s->load[u->to] + 1 - (fu == u->to) - (fd == u->to) + (d->to == u->to);
    return ld <= g->cap[d->to] && lu <= g->cap[u->to];
}

/* Improve a feasible assignment (B >= T) by single moves and pairs of moves
 * until none lowers A. */
static void search_improve(struct search *s, int max_moves)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m, i, j, x, y, dl, ul;

    while (s->moves < max_moves) {
        struct move single = {-1, -1, 0.0, 0.0, 0.0};
        struct move pd, pu;
        double slack = s->B - (g->target - g->tol_b), tol_a = gen_noise_a(g, s->A);
        double best_pair = -tol_a;

        if (gen_stopped(g)) {
            s->stopped = 1;
            return;
        }

        memset(s->lens, 0, sizeof s->lens);
        for (i = 0; i < n; i++) {
            size_t from = (size_t)s->asg[i];
            int from_full = s->load[from] >= g->cap[from];
            for (j = 0; j < m; j++) {
                struct move mv;
                int room;
                if (j == from || !CAND(g, i, j))
                    continue;
                mv.query = (int)i;
                mv.to = (int)j;
                mv.key = 0.0;
                mv.dA = g->a[i * m + j] - g->a[i * m + from];
                mv.dB = g->b[i * m + j] - g->b[i * m + from];
                room = s->load[j] < g->cap[j];
                if (room && mv.dA < single.dA - tol_a && mv.dB >= -slack)
                    single = mv;
                /* Savings: largest first, and best by reduced cost. */
                if (mv.dA < 0.0) {
                    mv.key = mv.dA;
                    top_keep(s->lists[0], &s->lens[0], LIST_K, &mv);
                    mv.key = mv.dA - s->lambda * mv.dB;
                    top_keep(s->lists[1], &s->lens[1], LIST_K, &mv);
                }
                /* Upgrades: best by reduced cost and by cost per unit. */
                if (mv.dB > 0.0) {
                    mv.key = mv.dA - s->lambda * mv.dB;
                    top_keep(s->lists[2], &s->lens[2], LIST_K, &mv);
                    mv.key = mv.dA / mv.dB;
                    top_keep(s->lists[3], &s->lens[3], LIST_K, &mv);
                }
                /* Moves that free room in a full model, cheapest first. */
                if (from_full && room) {
                    mv.key = mv.dA - s->lambda * mv.dB;
                    top_keep(s->lists[4], &s->lens[4], LIST_K, &mv);
                }
            }
        }
        if (single.query >= 0) {
            search_apply(s, &single);
            continue;
        }
        pd.query = pu.query = -1;
        for (dl = 0; dl < 2; dl++)
            for (x = 0; x < s->lens[dl]; x++) {
                const struct move *d = &s->lists[dl][x];
                for (ul = 1; ul < 5; ul++)
                    for (y = 0; y < s->lens[ul]; y++) {
                        const struct move *u = &s->lists[ul][y];
                        double dA = d->dA + u->dA;
                        if (u->query == d->query || dA >= best_pair ||
                            d->dB + u->dB < -slack || !pair_fits(s, d, u))
                            continue;
                        best_pair = dA;
                        pd = *d;
                        pu = *u;
                    }
            }
        if (pd.query < 0)
            break;
        search_apply(s, &pd);
        search_apply(s, &pu);
    }
}

/* ==== Exact branch and bound ====
 *
 * Depth-first over the queries, cheapest candidates first, pruned by the
 * sum of the cheapest remaining choices and by the largest B still
 * reachable. Used by lr__optimize_exact, and by the optimizer to close the
 * gap on small batches where one query's choice is a large share of the
 * total, under a node budget; there it also prunes with Lagrangian bounds
 * (bb_set_lambda, and bb_set_duals with the capacity multipliers, which
 * also sets the order of the search), and ends with a limited discrepancy
 * search when the plain one runs out of half its nodes, then, if the answer
 * is still far above the bound, a longer plain search. */

/* Capped models whose being full the bounds follow; with more capped
 * models, the BB_WATCH of smallest capacity. */
#define BB_WATCH 6

struct bb {
    const struct gen *g;
    size_t *order;     /* queries, most spread in a first */
    int *children;     /* n*m: candidate models per query, best first, -1 ends */
    double *min_a_rest; /* n+1: sum of min a over order[k..] */
    double *max_b_rest; /* n+1: sum of max b over order[k..] */
    /* A Lagrangian bound (bb_set_lambda), mode 0: for lambda >= 0, every
     * completion of order[k..] with B + B_rest >= T - tol_b has A_rest >=
     * lag_rest[k] + lambda (T - tol_b - B), lag_rest[k] the sum over
     * order[k..] of min (a - lambda b). Unlike min_a_rest it sees that the
     * rest must still reach T. lambda 0: not used. */
    double lambda;
    double *lag_rest; /* n+1 */
    /* Its capacity-aware form (bb_set_duals), mode 0: with multipliers
     * mu_j >= 0 of the capacities as well, weak duality gives A_rest >=
     * sum over order[k..] of min_j (a - lambda b + mu_j)
     *   + lambda (T - tol_b - B) - sum_j mu_j (L_j - load_j),
     * and a model already full is no candidate for the rest at all. So the
     * sums over the rest are kept per set of full watched models: block
     * rest[set] holds four suffix sums over candidates outside the set,
     * of min (a - lambda b + mu), min (a - lambda b), min a and max b,
     * computed the first time a node has that set of full models.
     * rest NULL: not used. */
    double *mu;            /* m */
    size_t n_watch;
    int watch[BB_WATCH];   /* the capped models watched */
    int *watch_of;         /* m: a model's place in watch, or -1 */
    unsigned set;          /* at the node: its full watched models */
    double room;           /* and sum_j mu_j (L_j - load_j) */
    double *rest;          /* (1 << n_watch) blocks of 4 (n+1) */
    unsigned char *ready;  /* 1 << n_watch: block computed */
    int *cur, *best, *load;
    double best_a, best_b;
    int found, improved; /* improved: a leaf replaced the incumbent */
    int disc; /* limited discrepancy search: how many more times a path may
                 take other than its first child; -1: plain search */
    int max_b_mode; /* 0: min A s.t. B >= T; 1: max B, then min A */
    int children_mode; /* the mode children are ordered for; -1: not yet or
                          their keys changed (bb_set_lambda, bb_set_duals) */
    long nodes, max_nodes; /* max_nodes 0: no limit */
};

/* Order the n queries by key, largest first, ties in their current order
 * (an insertion sort: n is at most LR__OPT_POLISH_MAX_N). */
static void order_by_key(size_t *order, size_t n, const double *key)
{
    for (size_t i = 1; i < n; i++) {
        size_t v = order[i], k;
        for (k = i; k > 0 && key[order[k - 1]] < key[v]; k--)
            order[k] = order[k - 1];
        order[k] = v;
    }
}

/* The block of suffix sums for the set of full watched models, computed on
 * first use. */
static const double *bb_rest(struct bb *s, unsigned set)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m, k, j, w;
    double *r = s->rest + (size_t)set * 4 * (n + 1);
    if (s->ready[set])
        return r;
    r[n] = r[2 * (n + 1) - 1] = r[3 * (n + 1) - 1] = r[4 * (n + 1) - 1] = 0.0;
    for (k = n; k-- > 0;) {
        size_t i = s->order[k];
        double lag_mu = INFINITY, lag = INFINITY, lo = INFINITY, hi = -INFINITY;
        for (j = 0; j < m; j++) {
            double a = g->a[i * m + j], b = g->b[i * m + j];
            int out = 0;
            for (w = 0; w < s->n_watch; w++)
                if ((set >> w & 1u) && s->watch[w] == (int)j)
                    out = 1;
            if (!CAND(g, i, j) || out)
                continue;
            lag_mu = fmin(lag_mu, a - s->lambda * b + s->mu[j]);
            lag = fmin(lag, a - s->lambda * b);
            lo = fmin(lo, a);
            hi = fmax(hi, b);
        }
        r[k] = r[k + 1] + lag_mu;
        r[(n + 1) + k] = r[(n + 1) + k + 1] + lag;
        r[2 * (n + 1) + k] = r[2 * (n + 1) + k + 1] + lo;
        r[3 * (n + 1) + k] = r[3 * (n + 1) + k + 1] + hi;
    }
    s->ready[set] = 1;
    return r;
}

static void bb_visit(struct bb *s, size_t k, double A, double B)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m, i, c;
    double tie = g->tol_b * 1e-3;

    if (s->max_nodes > 0 && s->nodes >= s->max_nodes)
        return;
    s->nodes++;
    if (k == g->n) {
        int better;
        if (!s->max_b_mode)
            better = B >= g->target - g->tol_b && (!s->found || A < s->best_a);
        else
            better = !s->found || B > s->best_b + tie ||
                     (B >= s->best_b - tie && A < s->best_a);
        if (better) {
            s->found = 1;
            s->improved = 1;
            s->best_a = A;
            s->best_b = B;
            memcpy(s->best, s->cur, g->n * sizeof *s->best);
        }
        return;
    }
    if (!s->max_b_mode && s->rest != NULL) {
        double need = g->target - g->tol_b - B;
        const double *r = bb_rest(s, s->set);
        if (B + r[3 * (n + 1) + k] < g->target - g->tol_b)
            return;
        /* Each bound alone, cheapest first: a node pruned by the first
         * does not pay for the others. */
        if (s->found && (A + r[2 * (n + 1) + k] >= s->best_a ||
                         A + r[(n + 1) + k] + s->lambda * need >= s->best_a ||
                         A + r[k] + s->lambda * need - s->room >= s->best_a))
            return;
    } else if (!s->max_b_mode) {
        if (s->found) {
            double lb = A + s->min_a_rest[k];
            if (s->lambda > 0.0)
                lb = fmax(lb, A + s->lag_rest[k] + s->lambda * (g->target - g->tol_b - B));
            if (lb >= s->best_a)
                return;
        }
        if (B + s->max_b_rest[k] < g->target - g->tol_b)
            return;
    } else if (s->found) {
        double reach = B + s->max_b_rest[k];
        if (reach < s->best_b - tie)
            return;
        if (reach <= s->best_b + tie && A + s->min_a_rest[k] >= s->best_a)
            return;
    }
    i = s->order[k];
    {
        int taken = 0;
    unsigned set0 = s->set;
    double room0 = s->room;
    for (c = 0; c < m && s->children[i * m + c] >= 0; c++) {
        size_t j = (size_t)s->children[i * m + c];
        if (s->load[j] >= g->cap[j])
            continue;
        if (s->disc >= 0 && taken > 0) {
            if (s->disc == 0)
                break;
            s->disc--;
        }
        s->load[j]++;
        if (s->rest != NULL) {
            /* The node's full models and room, kept along the path. */
            s->room = room0 - s->mu[j];
            if (s->watch_of[j] >= 0 && s->load[j] >= g->cap[j])
                s->set = set0 | 1u << s->watch_of[j];
        }
        s->cur[i] = (int)j;
        bb_visit(s, k + 1, A + g->a[i * m + j], B + g->b[i * m + j]);
        s->load[j]--;
        s->set = set0;
        s->room = room0;
        if (s->disc >= 0 && taken > 0)
            s->disc++;
        taken++;
    }
    }
}

/* The order of query i's children: best first, cheapest first, or, once
 * bb_set_duals has run, least reduced cost first, so that the first descent
 * follows the relaxation's own choices. */
static double bb_child_key(const struct bb *s, size_t i, size_t j)
{
    const struct gen *g = s->g;
    size_t k = i * g->m + j;
    if (s->max_b_mode)
        return -g->b[k];
    if (s->rest != NULL)
        return g->a[k] - s->lambda * g->b[k] + s->mu[j];
    return g->a[k];
}

/* Order each query's children for the mode: cheapest first, or best first. */
static void bb_order_children(struct bb *s)
{
    const struct gen *g = s->g;
    size_t i, j, m = g->m;
    for (i = 0; i < g->n; i++) {
        size_t c = 0;
        for (j = 0; j < m; j++)
            if (CAND(g, i, j))
                s->children[i * m + c++] = (int)j;
        for (j = c; j < m; j++)
            s->children[i * m + j] = -1;
        {
            size_t x, y;
            for (x = 1; x < c; x++) {
                int v = s->children[i * m + x];
                double kv = bb_child_key(s, i, (size_t)v);
                for (y = x; y > 0; y--) {
                    int u = s->children[i * m + y - 1];
                    double ku = bb_child_key(s, i, (size_t)u);
                    if (ku <= kv)
                        break;
                    s->children[i * m + y] = u;
                }
                s->children[i * m + y] = v;
            }
        }
    }
}

static void bb_free(struct bb *s)
{
    free(s->order);
    free(s->children);
    free(s->min_a_rest);
    free(s->max_b_rest);
    free(s->lag_rest);
    free(s->mu);
    free(s->watch_of);
    free(s->rest);
    free(s->ready);
    free(s->cur);
    free(s->best);
    free(s->load);
}

static int bb_init(struct bb *s, const struct gen *g)
{
    size_t n = g->n, m = g->m, i, j, k;
    double *spread;

    memset(s, 0, sizeof *s);
    s->disc = -1;
    s->children_mode = -1;
    s->g = g;
    s->order = malloc(n * sizeof *s->order);
    s->children = malloc(n * m * sizeof *s->children);
    s->min_a_rest = malloc((n + 1) * sizeof *s->min_a_rest);
    s->max_b_rest = malloc((n + 1) * sizeof *s->max_b_rest);
    s->lag_rest = malloc((n + 1) * sizeof *s->lag_rest);
    s->cur = malloc(n * sizeof *s->cur);
    s->best = malloc(n * sizeof *s->best);
    s->load = malloc(m * sizeof *s->load);
    spread = calloc(n ? n : 1, sizeof *spread);
    if (s->order == NULL || s->children == NULL || s->min_a_rest == NULL ||
        s->max_b_rest == NULL || s->lag_rest == NULL || s->cur == NULL || s->best == NULL || s->load == NULL ||
        spread == NULL) {
        free(spread);
        bb_free(s);
        return LR_ENOMEM;
    }
    /* Branch first on the queries whose choice matters most. */
    for (i = 0; i < n; i++) {
        double lo = INFINITY, hi = -INFINITY;
        for (j = 0; j < m; j++)
            if (CAND(g, i, j)) {
                lo = fmin(lo, g->a[i * m + j]);
                hi = fmax(hi, g->a[i * m + j]);
            }
        spread[i] = hi - lo;
        s->order[i] = i;
    }
    order_by_key(s->order, n, spread);
    free(spread);
    s->min_a_rest[n] = 0.0;
    s->max_b_rest[n] = 0.0;
    for (k = n; k-- > 0;) {
        double lo = INFINITY, hi = -INFINITY;
        i = s->order[k];
        for (j = 0; j < m; j++)
            if (CAND(g, i, j)) {
                lo = fmin(lo, g->a[i * m + j]);
                hi = fmax(hi, g->b[i * m + j]);
            }
        s->min_a_rest[k] = s->min_a_rest[k + 1] + lo;
        s->max_b_rest[k] = s->max_b_rest[k + 1] + hi;
    }
    return 0;
}

/* Use the Lagrangian bound with this multiplier of the B constraint (the
 * LP's, from the secant search); lambda <= 0 or not finite: not used. */
static void bb_set_lambda(struct bb *s, double lambda)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m;
    s->lambda = isfinite(lambda) && lambda > 0.0 ? lambda : 0.0;
    s->children_mode = -1;
    s->lag_rest[n] = 0.0;
    for (size_t k = n; k-- > 0;) {
        size_t i = s->order[k];
        double lo = INFINITY;
        for (size_t j = 0; j < m; j++)
            if (CAND(g, i, j))
                lo = fmin(lo, g->a[i * m + j] - s->lambda * g->b[i * m + j]);
        s->lag_rest[k] = s->lag_rest[k + 1] + lo;
    }
}

/* Use the capacity-aware bound (see struct bb) with the multiplier of
 * bb_set_lambda and capacity multipliers taken from asg, an optimal
 * assignment of the relaxation min sum (a - lambda b) under capacities
 * (flow_eval's): mu_j is the least cost of making room in model j by a
 * chain of moves ending in a model with room, 0 for a model with room.
 * These are the potentials of that flow, so at the root the bound equals
 * the relaxation's optimum. Any mu >= 0 keeps the bound valid, so rounding
 * is only clamped. Without capacities every mu_j is 0 and the bounds are
 * those of bb_set_lambda; the search order below still applies. */
static int bb_set_duals(struct bb *s, const int *asg)
{
    const struct gen *g = s->g;
    size_t n = g->n, m = g->m, i, j, a, b, k, sets;
    double *edge, *key = NULL;
    int *load;

    s->mu = calloc(m, sizeof *s->mu);
    edge = malloc(m * m * sizeof *edge);
    load = calloc(m, sizeof *load);
    if (s->mu == NULL || edge == NULL || load == NULL)
        goto nomem;
    for (k = 0; k < m * m; k++)
        edge[k] = INFINITY;
    for (i = 0; i < n; i++) {
        size_t at = (size_t)asg[i];
        double w_at = g->a[i * m + at] - s->lambda * g->b[i * m + at];
        load[at]++;
        for (b = 0; b < m; b++)
            if (b != at && CAND(g, i, b))
                edge[at * m + b] = fmin(edge[at * m + b],
                                        g->a[i * m + b] - s->lambda * g->b[i * m + b] - w_at);
    }
    for (j = 0; j < m; j++)
        s->mu[j] = load[j] >= g->cap[j] ? INFINITY : 0.0;
    for (k = 0; k < m; k++) {
        int changed = 0;
        for (a = 0; a < m; a++)
            for (b = 0; b < m; b++)
                if (load[a] >= g->cap[a] && edge[a * m + b] + s->mu[b] < s->mu[a]) {
                    s->mu[a] = edge[a * m + b] + s->mu[b];
                    changed = 1;
                }
        if (!changed)
            break;
    }
    for (j = 0; j < m; j++)
        if (!(s->mu[j] > 0.0) || s->mu[j] == INFINITY)
            s->mu[j] = 0.0;
    s->children_mode = -1;

    /* Branch first on the queries whose choice the relaxation is surest
     * of (the largest regret: second least reduced cost minus the least):
     * leaving their choice costs most, so the bound prunes such branches
     * near the root, and the near ties, where the integral optimum departs
     * from the relaxation, are settled deep in the tree where the bound is
     * tightest. Measured on random batches with and without capacities,
     * this order leaves far fewer searches out of nodes than the order by
     * spread of A. */
    key = malloc(n * sizeof *key);
    if (key == NULL)
        goto nomem;
    for (i = 0; i < n; i++) {
        double b1 = INFINITY, b2 = INFINITY;
        for (j = 0; j < m; j++) {
            double v;
            if (!CAND(g, i, j))
                continue;
            v = g->a[i * m + j] - s->lambda * g->b[i * m + j] + s->mu[j];
            if (v < b1) {
                b2 = b1;
                b1 = v;
            } else if (v < b2) {
                b2 = v;
            }
        }
        key[i] = b2 == INFINITY ? INFINITY : b2 - b1; /* one candidate: no choice */
    }
    order_by_key(s->order, n, key);
    free(key);
    key = NULL;

    /* Watch the capped models of smallest capacity. */
    s->n_watch = 0;
    for (j = 0; j < m; j++) {
        size_t w;
        if ((size_t)g->cap[j] >= n)
            continue;
        if (s->n_watch < BB_WATCH)
            s->n_watch++;
        else if (g->cap[j] >= g->cap[s->watch[BB_WATCH - 1]])
            continue;
        for (w = s->n_watch - 1; w > 0 && g->cap[s->watch[w - 1]] > g->cap[j]; w--)
            s->watch[w] = s->watch[w - 1];
        s->watch[w] = (int)j;
    }
    s->watch_of = malloc(m * sizeof *s->watch_of);
    if (s->watch_of == NULL)
        goto nomem;
    for (j = 0; j < m; j++)
        s->watch_of[j] = -1;
    for (k = 0; k < s->n_watch; k++)
        s->watch_of[s->watch[k]] = (int)k;
    sets = (size_t)1 << s->n_watch;
    s->rest = malloc(sets * 4 * (n + 1) * sizeof *s->rest);
    s->ready = calloc(sets, 1);
    if (s->rest == NULL || s->ready == NULL)
        goto nomem;
    free(edge);
    free(load);
    return 0;
nomem:
    free(key);
    free(edge);
    free(load);
    return LR_ENOMEM;
}

/* Search in the given mode. With an incumbent (mode 0 only) the search
 * looks only for strictly better assignments. */
static void bb_run(struct bb *s, int max_b_mode, const int *incumbent, double incumbent_a)
{
    s->max_b_mode = max_b_mode;
    s->found = 0;
    s->best_a = INFINITY;
    s->best_b = -INFINITY;
    s->improved = 0;
    s->nodes = 0;
    if (incumbent != NULL) {
        s->found = 1;
        s->best_a = incumbent_a;
        memcpy(s->best, incumbent, s->g->n * sizeof *s->best);
    }
    memset(s->load, 0, s->g->m * sizeof *s->load);
    if (s->rest != NULL) {
        /* The root's full models (capacity 0) and room. */
        const struct gen *g = s->g;
        size_t w, j;
        s->set = 0;
        s->room = 0.0;
        for (w = 0; w < s->n_watch; w++)
            if (g->cap[s->watch[w]] <= 0)
                s->set |= 1u << w;
        for (j = 0; j < g->m; j++)
            if (s->mu[j] > 0.0)
                s->room += s->mu[j] * (double)g->cap[j];
    }
    if (s->children_mode != max_b_mode) {
        bb_order_children(s); /* once per mode and keys, not per pass */
        s->children_mode = max_b_mode;
    }
    bb_visit(s, 0, 0.0, 0.0);
}

/* One pass of the search (mode 0) from the incumbent out, whose A and B
 * are *A and *B: out, *A and *B take a better answer when it finds one.
 * Returns the nodes it used. */
static long bb_pass(struct bb *s, int *out, double *A, double *B)
{
    bb_run(s, 0, out, *A);
    if (s->improved) {
        memcpy(out, s->best, s->g->n * sizeof *out);
        gen_sums(s->g, out, A, B);
    }
    return s->nodes;
}

/* ==== The generic solver ==== */

/* Batches up to this many queries get the branch-and-bound polish. */
#ifndef LR__OPT_POLISH_MAX_N
#define LR__OPT_POLISH_MAX_N 64
#endif
#ifndef LR__OPT_POLISH_NODES
#define LR__OPT_POLISH_NODES 200000L
#endif
/* A search that used all LR__OPT_POLISH_NODES and left its answer more
 * than LR__OPT_POLISH_GAP (relative) above the bound goes on, plain depth
 * first from the improved answer, up to this many nodes in all. */
#ifndef LR__OPT_POLISH_MORE_NODES
#define LR__OPT_POLISH_MORE_NODES 1000000L
#endif
#ifndef LR__OPT_POLISH_GAP
#define LR__OPT_POLISH_GAP 0.01
#endif

/* GEN_ABOVE: the solve stopped once its bound showed that every assignment
 * meeting the target costs more than the caller's `above` (no answer). */
enum gen_status { GEN_OPTIMAL = 0, GEN_TARGET_UNMET = 1, GEN_CAPACITY = 2, GEN_ABOVE = 3 };

struct gen_answer {
    enum gen_status status;
    double bound;     /* lower bound on A, or NaN */
    double A, B;      /* of the assignment returned */
    size_t unplaced;  /* GEN_CAPACITY: queries put over capacity */
    int target_met;   /* GEN_CAPACITY: B >= T - tol_b with that overflow */
    double lambda;    /* GEN_OPTIMAL after the secant search: its multiplier, else 0 */
    int iterations;
};

static int gen_spread_overflow(const struct gen *g, int *out, struct gen_answer *ans);

/* The weight of the sum that breaks ties when solving for the other: small
 * enough that its whole term over the batch is at most 1e-9 of the largest
 * value of the main sum, s_main (s_tie is the largest value of the tie
 * sum). When every tie value is 0 there is nothing to break ties with, and
 * s_main / s_tie would overflow (inf * 0 is NaN): no tie term then. */
static double tie_weight(double s_main, double s_tie, size_t n)
{
    double w;
    if (s_tie <= 1e-300)
        return 0.0;
    w = 1e-9 * s_main / (s_tie * (double)n);
    return isfinite(w) ? w : 0.0;
}

/* A solve with a tie term may give up some of its main sum to the other:
 * up to 1e-9 of the largest value, which is more than the whole sum when
 * values span many orders of magnitude (a model priced 1e-12 a token next
 * to one at 1e-2). Its answer stands as the least A or the largest B only
 * when it is within this share of that sum (relative). */
#define TIE_TOL 1e-9

/* What rounding and tolerances can take from the Lagrangian bound of a
 * relaxation solved at weights (1, lambda) with answer sums A and B. That
 * bound, A - lambda * (B - T), holds for the assignments with B >= T, but
 * the constraint counts B >= T - tol_b as met; the sums round; and with
 * capacities the flow's n paths of up to m steps each round with its
 * potentials, which are as large as its largest weight (taken here as
 * 1e-13 of it per step, a wide margin over the rounding). With costs many
 * orders of magnitude apart these are no longer small next to the bound. */
static double bound_slack(const struct gen *g, double lambda, double A, double B)
{
    double s = lambda * g->tol_b +
               4.0 * (double)g->n * DBL_EPSILON * (fabs(A) + lambda * (fabs(B) + fabs(g->target)));
    if (g->capped)
        s += 1e-13 * (double)g->n * (double)g->m * (g->sa + lambda * g->sb);
    return s;
}

/* Solve g. When its capacities cannot hold every query, spread says
 * whether to go on as gen_spread_overflow does (else the answer is the
 * least-cost placement with the rest over capacity, GEN_CAPACITY). above
 * is the A past which the caller has no use for an answer (INFINITY:
 * none): once the secant search's bound, less its slack, is above it, no
 * assignment that meets the target is of use, and the solve ends there
 * with GEN_ABOVE and no assignment. With a finite above, a multiplier
 * hint > 0 (a like problem's) is tried first: the Lagrangian bound of that
 * one relaxation often shows at once that the solve is of no use; when it
 * does not, the solve goes on as without it (the bound of the hint is not
 * kept, so the answer is the same). */
static int gen_solve_caps(const struct gen *g, int *out, struct gen_answer *ans, int spread,
                          double above, double hint)
{
    size_t n = g->n, m = g->m, i, j;
    struct flow f;
    int *lo = NULL, *hi = NULL, *cand = NULL, *load = NULL;
    double A_lo, B_lo, A_hi, B_hi, A, B, tiny_b, tiny_a, lambda = 0.0;
    /* bound is the best Lagrangian bound on A; the one reported is less
     * the largest slack of the solves it came from (bound_slack), so that
     * it holds for every assignment that counts as meeting the target. */
    double bound, slack;
    int rc, iter, have_hi = 0;

    memset(ans, 0, sizeof *ans);
    ans->bound = NAN;
    if ((rc = flow_init(&f, g)) != 0)
        return rc;
    lo = malloc(n * sizeof *lo);
    hi = malloc(n * sizeof *hi);
    cand = malloc(n * sizeof *cand);
    load = malloc(m * sizeof *load);
    if (lo == NULL || hi == NULL || cand == NULL || load == NULL) {
        rc = LR_ENOMEM;
        goto out;
    }

    if (above < INFINITY && hint > 0.0 && isfinite(hint)) {
        if ((rc = flow_eval(&f, 1.0, hint, &A, &B)) != 0)
            goto out;
        ans->iterations++;
        if (f.unplaced == 0 &&
            A - hint * (B - g->target) - bound_slack(g, hint, A, B) > above) {
            ans->status = GEN_ABOVE;
            goto out;
        }
    }

    /* The two ends of the hull: least A (ties to the larger B), and
     * largest B (ties to the smaller A). */
    tiny_b = tie_weight(g->sa, g->sb, n);
    tiny_a = tie_weight(g->sb, g->sa, n);
    if ((rc = flow_eval(&f, 1.0, tiny_b, &A_lo, &B_lo)) != 0)
        goto out;
    ans->iterations++;
    if (f.unplaced > 0) {
        /* Capacities cannot hold every query: the least-cost placement of
         * those they hold (in the budget form, that is the largest B), and
         * the rest over capacity on their cheapest candidate, in both
         * forms. */
        if (!g->quality_form) {
            if ((rc = flow_eval(&f, tiny_a, 1.0, &A_lo, &B_lo)) != 0)
                goto out;
            ans->iterations++;
        }
        for (i = 0; i < n; i++) {
            if (f.asg[i] >= 0) {
                out[i] = f.asg[i];
                continue;
            }
            out[i] = -1;
            for (j = 0; j < m; j++)
                if (CAND(g, i, j) && (out[i] < 0 || gen_cost(g, i, j) < gen_cost(g, i, out[i])))
                    out[i] = (int)j;
        }
        ans->status = GEN_CAPACITY;
        ans->unplaced = f.unplaced;
        gen_sums(g, out, &ans->A, &ans->B);
        ans->target_met = ans->B >= g->target - g->tol_b;
        rc = spread ? gen_spread_overflow(g, out, ans) : 0;
        goto out;
    }
    memcpy(lo, f.asg, n * sizeof *lo);
    /* The Lagrangian bound of weights (1, tiny_b). */
    bound = A_lo + tiny_b * (g->target - B_lo);
    slack = bound_slack(g, tiny_b, A_lo, B_lo);
    if (B_lo >= g->target - g->tol_b) {
        /* lo meets the target: it is the answer if its A is the least. Its
         * tie term can have cost it up to tiny_b times the B it gained over
         * any assignment that meets the target, which usually shows the
         * loss is nil. If not, the same with the least B any assignment
         * has, and the sum of the cheapest candidates (exact without
         * capacities). If still not, the plain least A decides. */
        double least = A_lo - tiny_b * (B_lo - (g->target - g->tol_b));
        if (A_lo - least > TIE_TOL * fabs(A_lo)) {
            double a_min, b_min;
            gen_extremes(g, 0, &a_min, &b_min);
            least = fmax(A_lo - tiny_b * (B_lo - fmax(g->target - g->tol_b, b_min)), a_min);
        }
        if (A_lo - least > TIE_TOL * fabs(A_lo)) {
            if ((rc = flow_eval(&f, 1.0, 0.0, &A, &B)) != 0)
                goto out;
            ans->iterations++;
            if (f.unplaced == 0) {
                least = fmax(least, fmin(A, A_lo));
                slack = fmax(slack, bound_slack(g, 0.0, A, B));
                if (A < A_lo - TIE_TOL * fabs(A_lo)) {
                    /* The tie term cost too much A. lo meets the target, so
                     * it stays as the other end of the search, which the
                     * least-A assignment starts when it misses the
                     * target. */
                    memcpy(hi, lo, n * sizeof *hi);
                    A_hi = A_lo;
                    B_hi = B_lo;
                    have_hi = B < g->target - g->tol_b;
                    memcpy(lo, f.asg, n * sizeof *lo);
                    A_lo = A;
                    B_lo = B;
                }
            }
        }
        bound = fmax(bound, least);
        if (!have_hi) {
            memcpy(out, lo, n * sizeof *out);
            ans->A = A_lo;
            ans->B = B_lo;
            ans->status = GEN_OPTIMAL;
            ans->bound = bound - slack;
            goto out;
        }
    }
    if (!have_hi) {
        if ((rc = flow_eval(&f, tiny_a, 1.0, &A_hi, &B_hi)) != 0)
            goto out;
        ans->iterations++;
        memcpy(hi, f.asg, n * sizeof *hi);
        if (B_hi < g->target - g->tol_b) {
            /* The mirror of lo's check: the tie term may have cost hi up
             * to tiny_a times the A it saved in B, and then the target, or
             * a B above the one reported as the most reachable, could
             * still be in reach. The plain largest B decides. */
            double a_max, b_max, most_b;
            gen_extremes(g, 1, &a_max, &b_max);
            most_b = fmin(B_hi + tiny_a * (a_max - A_hi), b_max);
            if (most_b >= g->target - g->tol_b || most_b - B_hi > TIE_TOL * fabs(B_hi)) {
                if ((rc = flow_eval(&f, 0.0, 1.0, &A, &B)) != 0)
                    goto out;
                ans->iterations++;
                if (f.unplaced == 0 &&
                    (B >= g->target - g->tol_b || B > B_hi + TIE_TOL * fabs(B_hi))) {
                    memcpy(hi, f.asg, n * sizeof *hi);
                    A_hi = A;
                    B_hi = B;
                }
            }
        }
        if (B_hi < g->target - g->tol_b) {
            memcpy(out, hi, n * sizeof *out);
            ans->A = A_hi;
            ans->B = B_hi;
            ans->status = GEN_TARGET_UNMET;
            ans->bound = NAN;
            goto out;
        }
    }

    /* Secant search on the hull between lo (B short of T) and hi. */
    for (iter = 0; iter < 100; iter++) {
        double wa = B_hi - B_lo, wb = fmax(A_hi - A_lo, 0.0), v_line, v_new;
        if (bound - slack > above) {
            ans->status = GEN_ABOVE;
            goto out;
        }
        if (wa <= 0.0)
            break;
        if ((rc = flow_eval(&f, wa, wb, &A, &B)) != 0)
            goto out;
        ans->iterations++;
        lambda = wb / wa;
        v_line = wa * A_lo - wb * B_lo;
        v_new = wa * A - wb * B;
        bound = fmax(bound, (v_new + wb * g->target) / wa);
        slack = fmax(slack, bound_slack(g, lambda, A, B));
        if (v_new >= v_line - 1e-12 * (fabs(wa) * g->sa + fabs(wb) * g->sb) * (double)n)
            break; /* lo-hi is an edge of the hull: the LP optimum lies on it */
        if (B >= g->target - g->tol_b) {
            memcpy(hi, f.asg, n * sizeof *hi);
            A_hi = A;
            B_hi = B;
        } else {
            memcpy(lo, f.asg, n * sizeof *lo);
            A_lo = A;
            B_lo = B;
        }
    }
    if (bound - slack > above) {
        ans->status = GEN_ABOVE;
        goto out;
    }

    /* Repair: improve hi; repair lo up to the target and improve it; keep
     * the better. */
    {
        struct search s;
        int max_moves = 200 + (int)(n < 100000 ? n : 100000);

        memset(&s, 0, sizeof s);
        s.g = g;
        s.lambda = lambda;
        s.asg = out;
        s.load = load;
        memcpy(out, hi, n * sizeof *out);
        memset(load, 0, m * sizeof *load);
        for (i = 0; i < n; i++)
            load[out[i]]++;
        s.A = A_hi;
        s.B = B_hi;
        search_improve(&s, max_moves);
        if (s.stopped) {
            rc = LR_ECANCELED;
            goto out;
        }
        gen_sums(g, out, &A_hi, &B_hi);
        ans->iterations += s.moves;

        s.asg = cand;
        s.moves = 0;
        memcpy(cand, lo, n * sizeof *cand);
        memset(load, 0, m * sizeof *load);
        for (i = 0; i < n; i++)
            load[cand[i]]++;
        s.A = A_lo;
        s.B = B_lo;
        if (search_restore(&s)) {
            search_improve(&s, max_moves);
            gen_sums(g, cand, &A, &B);
            if (B >= g->target - g->tol_b && A < A_hi) {
                memcpy(out, cand, n * sizeof *out);
                A_hi = A;
                B_hi = B;
            }
        }
        ans->iterations += s.moves;
        if (s.stopped) {
            rc = LR_ECANCELED;
            goto out;
        }
    }

    /* On small batches one query can be a large share of the total, and the
     * rounding gap may exceed what single and paired moves can close: search
     * for a better assignment under a node budget. */
    if (n <= LR__OPT_POLISH_MAX_N && A_hi - bound > gen_noise_a(g, A_hi)) {
        struct bb s;
        if ((rc = bb_init(&s, g)) != 0)
            goto out;
        s.max_nodes = LR__OPT_POLISH_NODES;
        bb_set_lambda(&s, lambda);
        /* The relaxation's optimum at lambda gives the capacity
         * multipliers; a flow that left a query unplaced (its fallback
         * after a rounding-made negative cycle) gives none, and the search
         * keeps the bounds without them. */
        if ((rc = flow_eval(&f, 1.0, s.lambda, &A, &B)) != 0 ||
            (f.unplaced == 0 && (rc = bb_set_duals(&s, f.asg)) != 0)) {
            bb_free(&s);
            goto out;
        }
        {
            /* Half the nodes for the plain depth-first search, which ends
             * there on most batches, proving its answer optimal. When it
             * does not, its descent has spent the nodes deep in one corner
             * of the tree; the other half goes to a limited discrepancy
             * search (passes that leave the first child at up to 1, 2, ...
             * levels), which reaches the other corners with the same
             * bounds. Measured on random batches of 12 to 64 queries this
             * split left fewer batches above the optimum than the plain
             * search with all the nodes (see docs/internals/optimize.md). */
            long used;
            int d, cut;
            s.max_nodes = LR__OPT_POLISH_NODES / 2;
            used = bb_pass(&s, out, &A_hi, &B_hi);
            cut = used >= s.max_nodes;
            for (d = 1; cut && used < LR__OPT_POLISH_NODES && d <= (int)n; d++) {
                s.disc = d;
                s.max_nodes = LR__OPT_POLISH_NODES - used;
                used += bb_pass(&s, out, &A_hi, &B_hi);
            }
            /* A search that ran out of nodes with its answer still more
             * than LR__OPT_POLISH_GAP above the bound goes on: a plain
             * depth-first search again, pruned from the start by the best
             * answer so far, with the rest of LR__OPT_POLISH_MORE_NODES.
             * It runs on 1 to 3% of the batches of the random mixes in
             * docs/internals/optimize.md; most of them are at the optimum
             * already under a weak bound and pay the nodes for nothing, a
             * few (ties in cost make many assignments look alike to the
             * bounds) end far closer to it. */
            if (used >= LR__OPT_POLISH_NODES && used < LR__OPT_POLISH_MORE_NODES &&
                A_hi - bound > LR__OPT_POLISH_GAP * fabs(A_hi) &&
                A_hi - bound > gen_noise_a(g, A_hi)) {
                s.disc = -1;
                s.max_nodes = LR__OPT_POLISH_MORE_NODES - used;
                used += bb_pass(&s, out, &A_hi, &B_hi);
            }
            ans->iterations += (int)used;
        }
        gen_sums(g, out, &A_hi, &B_hi);
        bb_free(&s);
    }
    ans->status = GEN_OPTIMAL;
    ans->A = A_hi;
    ans->B = B_hi;
    ans->bound = bound - slack;
    ans->lambda = lambda;
    rc = 0;
out:
    flow_free(&f);
    free(lo);
    free(hi);
    free(cand);
    free(load);
    return rc;
}

static int gen_solve(const struct gen *g, int *out, struct gen_answer *ans)
{
    return gen_solve_caps(g, out, ans, 1, INFINITY, 0.0);
}

/* ==== Capacities that cannot hold the batch ==== */

/* When the capacities hold only n - U queries, U is the fewest any
 * assignment puts over capacity (successive shortest paths place as many
 * as can be placed). Which models take the U is a choice that serves the
 * constraint more or less well: the overflow is spread by raising the
 * capacities of the models that can fill by extra_j, with sum extra_j =
 * U, and each such problem, which holds every query, is solved as any
 * other; every assignment with U over capacity fits one of them. The best
 * answer is kept: one that meets the constraint at the least A, else the
 * largest B. The ways tried: the spread of the least-cost placement with
 * the rest on their cheapest candidates (which always holds every query);
 * then every spread when there are at most LR__OPT_SPREAD_WORK of them per
 * query (so, exactly, on small batches), else each model taking all U when
 * that is at most LR__OPT_SPREAD_ONE_WORK models times queries: at most
 * LR__OPT_SPREAD_ONE_TRIES of them, the models the least-cost placement
 * put most over their capacity first (each try is a whole solve: with 100
 * capped models of capacity 1 and 110 queries, trying every one took 27 s
 * where the batch that fits takes 0.3 s; spread_try leaves a try as soon
 * as its bound shows it cannot beat the best so far). */
#ifndef LR__OPT_SPREAD_WORK
#define LR__OPT_SPREAD_WORK 1024.0
#endif
#ifndef LR__OPT_SPREAD_ONE_WORK
#define LR__OPT_SPREAD_ONE_WORK 1000000.0
#endif
#ifndef LR__OPT_SPREAD_ONE_TRIES
#define LR__OPT_SPREAD_ONE_TRIES 16
#endif

struct spread {
    const struct gen *g;
    struct gen relaxed; /* g with raised capacities (its a and b are g's) */
    size_t *models;     /* the models that can fill */
    size_t n_models;
    int *extra;         /* per model of models: its raise */
    int *cand;          /* n: an answer of the relaxed problem */
    int *best;          /* n: the best answer so far */
    struct gen_answer best_ans;
    int have;
    int iterations;
};

/* a is a better answer than b: the constraint met (GEN_OPTIMAL) before
 * not; then the least A when met, the largest B when not. */
static int spread_better(const struct gen *g, const struct gen_answer *a,
                         const struct gen_answer *b)
{
    int met_a = a->status == GEN_OPTIMAL, met_b = b->status == GEN_OPTIMAL;
    if (met_a != met_b)
        return met_a;
    if (met_a) {
        double tol_a = gen_noise_a(g, fmax(fabs(a->A), fabs(b->A)));
        if (a->A < b->A - tol_a)
            return 1;
        return a->A <= b->A + tol_a && a->B > b->B;
    }
    if (a->B != b->B)
        return a->B > b->B;
    return a->A < b->A;
}

/* Solve g with each model of sp->models raised by sp->extra. Once the
 * best answer so far meets the constraint, a spread whose bound shows
 * that it cannot beat it (spread_better: its A would be more than the
 * best's by more than the noise) is not solved to the end: with 100
 * models of capacity 9 and 1,000 queries, 17 spreads of about 13
 * relaxations each were solved whole, and most of them are left after a
 * few. Its answer would have lost, so the best answer is the same. */
static int spread_try(struct spread *sp)
{
    const struct gen *g = sp->g;
    struct gen_answer a;
    size_t k, j;
    int rc;
    double above = INFINITY;

    for (j = 0; j < g->m; j++)
        sp->relaxed.cap[j] = g->cap[j];
    for (k = 0; k < sp->n_models; k++) {
        j = sp->models[k];
        sp->relaxed.cap[j] = (size_t)g->cap[j] + (size_t)sp->extra[k] >= g->n
                                 ? (int)g->n
                                 : g->cap[j] + sp->extra[k];
    }
    sp->relaxed.capped = 0;
    sp->relaxed.cap_sum = 0;
    for (j = 0; j < g->m; j++) {
        sp->relaxed.capped |= (size_t)sp->relaxed.cap[j] < g->n;
        sp->relaxed.cap_sum += sp->relaxed.cap[j];
    }
    if (sp->have && sp->best_ans.status == GEN_OPTIMAL)
        above = sp->best_ans.A + 2.0 * gen_noise_a(g, sp->best_ans.A);
    if ((rc = gen_solve_caps(&sp->relaxed, sp->cand, &a, 0, above, sp->best_ans.lambda)) != 0)
        return rc;
    sp->iterations += a.iterations;
    if (a.status == GEN_CAPACITY || a.status == GEN_ABOVE)
        return 0; /* a spread the candidate sets cannot use, or no better */
    if (!sp->have || spread_better(g, &a, &sp->best_ans)) {
        memcpy(sp->best, sp->cand, g->n * sizeof *sp->best);
        sp->best_ans = a;
        sp->have = 1;
    }
    return 0;
}

/* Every way of giving `left` more to models k, k+1, ... */
static int spread_each(struct spread *sp, size_t k, int left)
{
    int e, rc;
    if (k + 1 == sp->n_models) {
        sp->extra[k] = left;
        return spread_try(sp);
    }
    for (e = left; e >= 0; e--) {
        sp->extra[k] = e;
        if ((rc = spread_each(sp, k + 1, left - e)) != 0)
            return rc;
    }
    return 0;
}

/* out holds the least-cost placement with ans->unplaced queries over
 * capacity (GEN_CAPACITY); replace it with the best spread found. */
static int gen_spread_overflow(const struct gen *g, int *out, struct gen_answer *ans)
{
    size_t n = g->n, m = g->m, i, j, k;
    int u = (int)ans->unplaced, rc = 0;
    double ways = 1.0;
    int *load = NULL, *over = NULL;
    struct spread sp;

    memset(&sp, 0, sizeof sp);
    sp.g = g;
    sp.relaxed = *g;
    sp.relaxed.cap = malloc(m * sizeof *sp.relaxed.cap);
    sp.models = malloc(m * sizeof *sp.models);
    sp.extra = calloc(m, sizeof *sp.extra);
    sp.cand = malloc(n * sizeof *sp.cand);
    sp.best = malloc(n * sizeof *sp.best);
    load = calloc(m, sizeof *load);
    if (!sp.relaxed.cap || !sp.models || !sp.extra || !sp.cand || !sp.best || !load) {
        rc = LR_ENOMEM;
        goto out;
    }
    /* The models that can fill: capped, and some query's candidate. */
    for (j = 0; j < m; j++) {
        if ((size_t)g->cap[j] >= n)
            continue;
        for (i = 0; i < n && !CAND(g, i, j); i++)
            ;
        if (i < n)
            sp.models[sp.n_models++] = j;
    }
    if (sp.n_models == 0)
        goto out;

    /* The least-cost placement's own spread first: it holds every query. */
    for (i = 0; i < n; i++)
        load[out[i]]++;
    for (k = 0; k < sp.n_models; k++) {
        j = sp.models[k];
        sp.extra[k] = load[j] > g->cap[j] ? load[j] - g->cap[j] : 0;
    }
    if ((rc = spread_try(&sp)) != 0)
        goto out;

    /* C(u + s - 1, s - 1) ways to spread u over s models. */
    for (k = 1; k < sp.n_models; k++)
        ways = ways * (double)((size_t)u + k) / (double)k;
    if (ways * (double)n <= LR__OPT_SPREAD_WORK) {
        rc = spread_each(&sp, 0, u);
    } else if ((double)sp.n_models * (double)n <= LR__OPT_SPREAD_ONE_WORK) {
        size_t tries = sp.n_models < LR__OPT_SPREAD_ONE_TRIES ? sp.n_models
                                                              : LR__OPT_SPREAD_ONE_TRIES;
        if (!(over = malloc(sp.n_models * sizeof *over))) {
            rc = LR_ENOMEM;
            goto out;
        }
        memcpy(over, sp.extra, sp.n_models * sizeof *over); /* the first spread's */
        for (size_t t = 0; t < tries && rc == 0; t++) {
            size_t pick = 0;
            for (k = 1; k < sp.n_models; k++)
                if (over[k] > over[pick])
                    pick = k;
            over[pick] = -1; /* tried */
            memset(sp.extra, 0, sp.n_models * sizeof *sp.extra);
            sp.extra[pick] = u;
            rc = spread_try(&sp);
        }
    }
    if (rc != 0)
        goto out;
    if (sp.have) {
        memcpy(out, sp.best, n * sizeof *out);
        ans->A = sp.best_ans.A;
        ans->B = sp.best_ans.B;
        ans->target_met = sp.best_ans.status == GEN_OPTIMAL;
    }
    ans->iterations += sp.iterations;
out:
    free(over);
    free(sp.relaxed.cap);
    free(sp.models);
    free(sp.extra);
    free(sp.cand);
    free(sp.best);
    free(load);
    return rc;
}

/* ==== Public entry points ==== */

/* d as the shortest text that reads back as d (a bound the caller gave:
 * alpha 0.75 + 1e-9 must not read as 0.75), at least 6 digits' worth;
 * cmd_eval.c names its rows the same way, so keep the two alike. */
static const char *bound_text(char buf[32], double d)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        if (!isfinite(d) || strtod(buf, NULL) == d)
            break;
    }
    return buf;
}

/* A reached figure d that misses the bound b (it is below alpha, or over
 * the budget: `above`): 6 significant digits, or as many more as it takes
 * to read on the missed side of b ("total cost 1 is the least reachable;
 * budget 1.0000001 cannot be met" for 1.0000004 would read as met). */
static const char *reached_text(char buf[32], double d, double b, int above)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        double shown = strtod(buf, NULL);
        if (!isfinite(d) || (above ? shown > b : shown < b))
            break;
    }
    return buf;
}

static void explain(const struct lr__opt_problem *p, const struct gen *g,
                    const struct gen_answer *ans, struct lr__opt_result *r, int quality_form)
{
    char bt[32], rt[32];
    const char *bound = bound_text(bt, quality_form ? p->alpha : p->budget);
    const char *reached = reached_text(rt, quality_form ? r->mean_quality : r->total_cost,
                                       quality_form ? p->alpha : p->budget, !quality_form);

    if (ans->status == GEN_CAPACITY) {
        char what[160] = "";
        const char *were = ans->unplaced == 1 ? "was" : "were";
        /* What the constraint came to with that overflow (nothing to say
         * when every query is fixed: no sum is left). */
        if (isnan(r->mean_quality))
            what[0] = '\0';
        else if (quality_form && ans->target_met)
            snprintf(what, sizeof what, "; alpha %s is met: mean quality %.6g at total cost "
                     "%.6g", bound, r->mean_quality, r->total_cost);
        else if (quality_form)
            snprintf(what, sizeof what, "; mean quality %s is the most reachable; alpha %s "
                     "cannot be met", reached, bound);
        else if (ans->target_met)
            snprintf(what, sizeof what, "; budget %s is met: total cost %.6g for mean "
                     "quality %.6g", bound, r->total_cost, r->mean_quality);
        else
            snprintf(what, sizeof what, "; total cost %s is the least reachable; budget "
                     "%s cannot be met", reached, bound);
        if (g->cap_sum < (long long)p->n)
            result_message(r,
                           "capacities sum to %lld, below the %zu queries; %zu %s %s "
                           "placed over capacity%s",
                           g->cap_sum, p->n, ans->unplaced,
                           ans->unplaced == 1 ? "query" : "queries", were, what);
        else
            result_message(r,
                           "capacities and candidate sets hold only %zu of the %zu "
                           "queries; %zu %s placed over capacity%s",
                           p->n - ans->unplaced, p->n, ans->unplaced, were, what);
    } else if (ans->status == GEN_TARGET_UNMET) {
        if (quality_form)
            result_message(r, "mean quality %s is the most reachable%s; alpha %s cannot "
                              "be met", reached, g->capped ? " within capacities" : "", bound);
        else
            result_message(r, "total cost %s is the least reachable%s; budget %s cannot "
                              "be met", reached, g->capped ? " within capacities" : "", bound);
    }
}

/* What every entry point checks first: the arguments, then the problem. */
static int begin(const struct lr__opt_problem *p, struct lr__opt_result *r, int quality_form)
{
    if (r == NULL)
        return LR_EINVAL;
    result_reset(r);
    if (p == NULL || r->assign == NULL) {
        result_message(r, "%s is NULL", p == NULL ? "problem" : "result assign");
        return LR_EINVAL;
    }
    return problem_check(p, r, quality_form);
}

static int optimize(const struct lr__opt_problem *p, struct lr__opt_result *r, int quality_form)
{
    struct gen g;
    struct gen_answer ans;
    int rc;

    if ((rc = begin(p, r, quality_form)) != 0)
        return rc;
    if ((rc = gen_build(p, quality_form, &g)) != 0)
        return rc;
    rc = gen_solve(&g, r->assign, &ans);
    if (rc == 0) {
        r->iterations = ans.iterations;
        if (!isnan(ans.bound) && (quality_form || counted(p) > 0))
            /* The budget form's bound is on the quality sum of the queries
             * that count, as mean_quality is over them. */
            r->lower_bound = quality_form ? ans.bound : -ans.bound / (double)counted(p);
        rc = result_measure(p, r, quality_form);
        if (rc == 0 && ans.status == GEN_OPTIMAL && !r->feasible)
            ans.status = GEN_TARGET_UNMET; /* not met by the report's rule: say so */
        explain(p, &g, &ans, r, quality_form);
        if (rc == 0 && ans.status != GEN_OPTIMAL)
            rc = LR_EINFEASIBLE;
    }
    gen_free(&g);
    return rc;
}

int lr__optimize_quality(const struct lr__opt_problem *p, struct lr__opt_result *r)
{
    return optimize(p, r, 1);
}

int lr__optimize_budget(const struct lr__opt_problem *p, struct lr__opt_result *r)
{
    return optimize(p, r, 0);
}

int lr__optimize_exact(const struct lr__opt_problem *p, struct lr__opt_result *r,
                       int quality_form)
{
    struct gen g;
    struct bb s;
    size_t n, m, i, j;
    double space;
    int rc;

    if ((rc = begin(p, r, quality_form)) != 0)
        return rc;
    n = p->n;
    m = p->m;
    space = pow((double)m, (double)n);
    if (!(space <= LR__OPT_EXACT_MAX_SPACE)) {
        result_message(r, "%zu models ^ %zu queries is over the exact solver's limit of %g",
                       m, n, LR__OPT_EXACT_MAX_SPACE);
        return LR_ETOOBIG;
    }
    if ((rc = gen_build(p, quality_form, &g)) != 0)
        return rc;
    if ((rc = bb_init(&s, &g)) != 0) {
        gen_free(&g);
        return rc;
    }
    bb_run(&s, 0, NULL, 0.0);
    if (s.found) {
        memcpy(r->assign, s.best, n * sizeof *r->assign);
        rc = result_measure(p, r, quality_form);
        r->lower_bound = quality_form ? r->total_cost : r->mean_quality;
        goto out;
    }
    bb_run(&s, 1, NULL, 0.0);
    if (s.found) {
        struct gen_answer ans;
        memset(&ans, 0, sizeof ans);
        ans.status = GEN_TARGET_UNMET;
        memcpy(r->assign, s.best, n * sizeof *r->assign);
        if ((rc = result_measure(p, r, quality_form)) == 0)
            rc = LR_EINFEASIBLE;
        explain(p, &g, &ans, r, quality_form);
        goto out;
    }
    {
        /* No assignment fits the capacities: report it, with every query on
         * its cheapest candidate. */
        for (i = 0; i < n; i++) {
            r->assign[i] = -1;
            for (j = 0; j < m; j++)
                if (CAND(&g, i, j) &&
                    (r->assign[i] < 0 || g.a[i * m + j] < g.a[i * m + (size_t)r->assign[i]]))
                    r->assign[i] = (int)j;
        }
        if ((rc = result_measure(p, r, quality_form)) != 0)
            goto out;
        if (g.cap_sum < (long long)n)
            result_message(r, "capacities sum to %lld, below the %zu queries", g.cap_sum, n);
        else
            result_message(r, "capacities and candidate sets cannot hold all %zu queries", n);
        rc = LR_EINFEASIBLE;
    }
out:
    bb_free(&s);
    gen_free(&g);
    return rc;
}
