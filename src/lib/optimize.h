/* optimize.h -- the batch assignment optimizer of smart routing.
 *
 * Given N queries and M models as a dense matrix of predicted quality and
 * estimated cost, assign every query to one model so that either
 *   - the total cost is least while the mean quality is at least alpha
 *     (the quality form, the integer program of the ECCOS paper), or
 *   - the mean quality is greatest while the total cost is within a budget
 *     (the budget form),
 * and no model j receives more than its capacity L_j queries.
 *
 * The module knows nothing of text, models or configs: callers (the smart
 * strategy, benchmarks, tests) build the matrices. It allocates only scratch
 * memory, which it frees before returning; the caller owns every array it
 * passes in. The functions keep no state, so any thread may call them.
 *
 * Method: a Lagrangian relaxation of the quality (or budget) constraint whose
 * subproblem, an assignment with capacities, is solved exactly as a min-cost
 * flow by successive shortest paths over the M model nodes. The multiplier is
 * found by a parametric (secant) search on the lower convex hull of
 * (cost, quality), which gives the linear-programming bound; a repair and
 * local-improvement pass then turns the two hull points around the target
 * into an integral assignment. See optimize.c.
 */
#ifndef LR_OPTIMIZE_H
#define LR_OPTIMIZE_H

#include <stddef.h>

#include "llmroute.h"

/* Constraints are judged with this relative tolerance, so rounding in long
 * sums does not turn a met constraint into a missed one: the sum of the
 * qualities >= alpha * n * (1 - LR__OPT_TOL), the total cost <= budget *
 * (1 + LR__OPT_TOL) (LR_BATCH_TOLERANCE, documented in llmroute.h). */
#define LR__OPT_TOL LR_BATCH_TOLERANCE

/* The exact solver refuses instances whose search space M^N exceeds this. */
#define LR__OPT_EXACT_MAX_SPACE 1e9

struct lr__opt_problem {
    size_t n, m;           /* queries, models */
    const double *quality; /* n*m row-major predicted quality in [0,1];
                              NaN = model j is not a candidate for query i */
    const double *cost;    /* n*m estimated cost >= 0 (ignored where quality is NaN) */
    const int *capacity;   /* m entries, <= 0 = unlimited (L_j); NULL = all unlimited */
    double alpha;          /* quality form: mean quality over the counted queries >= alpha */
    double budget;         /* budget form: total cost <= budget */
    const unsigned char *fixed; /* n entries, or NULL for none: a nonzero entry marks a
                                   query left out of every sum (the mean quality alpha
                                   bounds, the cost the budget bounds, and the result's
                                   mean_quality and total_cost); it takes one unit of the
                                   capacity of the candidate it gets, and its quality and
                                   cost are not read (only which are NaN) */
    double quality_slack;  /* quality form: a mean up to this much below alpha meets it too
                              (absolute; 0 or less: none). The smart strategy's predictions
                              come from 32-bit floats, where a stored 0.7 is 0.69999999. */
    lr_stop_fn stop;       /* NULL, or asked before each subproblem and each improving
                              move: nonzero ends the solve with LR_ECANCELED (no result) */
    void *stop_arg;
};

struct lr__opt_result {
    int *assign;        /* caller-allocated, n entries: the model j for query i */
    int feasible;       /* 1 if all constraints hold (0 exactly when LR_EINFEASIBLE) */
    double mean_quality, total_cost; /* over the queries not fixed; NaN when none is */
    double lower_bound; /* best dual bound found: in the quality form a lower
                           bound on the total cost, in the budget form an upper
                           bound on the mean quality; NaN if none */
    int iterations;     /* Lagrangian subproblems solved plus improving moves */
    char message[256];  /* why the result is infeasible and what was reached;
                           names the bad field on LR_EINVAL; else empty */
};

/* Minimise the total cost subject to mean quality >= alpha and load_j <= L_j.
 * Returns 0; LR_EINVAL for bad input (message names it); LR_ENOMEM;
 * LR_ECANCELED when p->stop answered (r->assign is then not an answer);
 * LR_ETOOBIG when n or m do not fit an int; or LR_EINFEASIBLE with the best
 * reachable assignment in r->assign and r->message saying why:
 *   - capacities (with the candidate sets) cannot hold all n queries: the
 *     fewest queries go over capacity, on the models where they best serve
 *     the constraint (the capacities are raised by that many, in the ways
 *     the overflow can be spread that are tried), and the rest is solved
 *     as below; the message says how many went over, and whether alpha
 *     holds and at what mean quality and cost;
 *   - alpha is above the highest mean quality the capacities allow: the
 *     assignment of highest mean quality (cheapest among those) is returned. */
int lr__optimize_quality(const struct lr__opt_problem *p, struct lr__opt_result *r);

/* Maximise the mean quality subject to total cost <= budget and
 * load_j <= L_j. Same returns; when the budget is below the cheapest
 * assignment the capacities allow, that cheapest assignment is returned
 * with LR_EINFEASIBLE. */
int lr__optimize_budget(const struct lr__opt_problem *p, struct lr__opt_result *r);

/* Exact branch and bound over all assignments, for small instances (tests
 * and checks). quality_form selects lr__optimize_quality's problem (1) or
 * lr__optimize_budget's (0). Same returns and result as those, with
 * lower_bound equal to the optimum; LR_ETOOBIG when M^N is over
 * LR__OPT_EXACT_MAX_SPACE. When the constraint cannot be met the assignment
 * returned is the exact best reachable one (highest quality, or lowest
 * cost, within capacities). */
int lr__optimize_exact(const struct lr__opt_problem *p, struct lr__opt_result *r,
                       int quality_form);

#endif /* LR_OPTIMIZE_H */
